//! Exit codes: one per class of error, so scripts can tell them apart.
//!
//! | exit | class | codes |
//! |---|---|---|
//! | 2 | usage, config or validation | `USAGE_ERROR`, `CONFIG_ERROR`, `VALIDATION_ERROR`, `ALREADY_EXISTS` |
//! | 3 | not found | `TEAM_NOT_FOUND`, `SESSION_NOT_FOUND`, `TURN_NOT_FOUND` |
//! | 4 | busy | `QUEUE_FULL`, `POOL_LIMIT_EXCEEDED`, `STORE_LOCKED` |
//! | 5 | agent failure or timeout | `PROCESS_ERROR`, `TIMEOUT` |
//! | 6 | node unavailable | `NODE_UNAVAILABLE`, `UNAUTHORIZED` |
//! | 1 | anything else | |
//! | 130 | stopped by Ctrl-C | `INTERRUPTED` |

use crate::api::ApiError;

/// A usage mistake the CLI itself caught (a bad argument, a bad duration).
pub const USAGE_ERROR: &str = "USAGE_ERROR";
/// No node answered, or the endpoint file is unusable.
pub const NODE_UNAVAILABLE: &str = "NODE_UNAVAILABLE";
/// The node refused the access token.
pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
/// A turn id that the ledger does not hold.
pub const TURN_NOT_FOUND: &str = "TURN_NOT_FOUND";
/// The command was stopped by Ctrl-C (exit 130, as shells report SIGINT).
pub const INTERRUPTED: &str = "INTERRUPTED";
/// A bug or an unexpected failure.
pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";

/// The process exit code for an error with `code`.
pub fn exit_code(code: &str) -> u8 {
    match code {
        USAGE_ERROR | "CONFIG_ERROR" | "VALIDATION_ERROR" | "ALREADY_EXISTS" => 2,
        "TEAM_NOT_FOUND" | "SESSION_NOT_FOUND" | TURN_NOT_FOUND => 3,
        "QUEUE_FULL" | "POOL_LIMIT_EXCEEDED" | "STORE_LOCKED" => 4,
        "PROCESS_ERROR" | "TIMEOUT" => 5,
        NODE_UNAVAILABLE | UNAUTHORIZED => 6,
        _ => 1,
    }
}

impl ApiError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        exit_code(self.code())
    }

    /// Any error with a stable code: that code, and its message.
    pub fn coded(error: &(impl iris_core::Coded + std::fmt::Display)) -> ApiError {
        ApiError::new(error.code().as_str(), error.to_string())
    }
}

impl From<iris_runtime::RuntimeError> for ApiError {
    fn from(error: iris_runtime::RuntimeError) -> ApiError {
        ApiError::coded(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_class() {
        use iris_core::ErrorCode;
        for code in ErrorCode::ALL {
            let exit = exit_code(code.as_str());
            let expected = match code {
                ErrorCode::ConfigError | ErrorCode::ValidationError | ErrorCode::AlreadyExists => 2,
                ErrorCode::TeamNotFound | ErrorCode::SessionNotFound => 3,
                ErrorCode::QueueFull | ErrorCode::PoolLimitExceeded | ErrorCode::StoreLocked => 4,
                ErrorCode::ProcessError | ErrorCode::Timeout => 5,
                ErrorCode::StoreCorrupt | ErrorCode::StoreError => 1,
                // A code added to iris-core must be given its class here.
                _ => panic!("{code:?} has no exit class in this test"),
            };
            assert_eq!(exit, expected, "{code:?}");
        }
        assert_eq!(exit_code(USAGE_ERROR), 2);
        assert_eq!(exit_code(TURN_NOT_FOUND), 3);
        assert_eq!(exit_code(NODE_UNAVAILABLE), 6);
        assert_eq!(exit_code(UNAUTHORIZED), 6);
        assert_eq!(exit_code(INTERNAL_ERROR), 1);
    }
}
