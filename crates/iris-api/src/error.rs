//! The API's errors: [`ApiError`] (`{"error":{"code":"…","message":"…"}}`), its stable
//! [`ApiCode`], and the exit code of each class, so scripts can tell them apart.
//!
//! | exit | class | codes |
//! |---|---|---|
//! | 2 | usage, config or validation | `USAGE_ERROR`, `CONFIG_ERROR`, `VALIDATION_ERROR`, `ALREADY_EXISTS` |
//! | 3 | not found | `TEAM_NOT_FOUND`, `SESSION_NOT_FOUND`, `TURN_NOT_FOUND` |
//! | 4 | busy, or over budget | `QUEUE_FULL`, `POOL_LIMIT_EXCEEDED`, `STORE_LOCKED`, `BUDGET_EXCEEDED` |
//! | 5 | agent failure or timeout | `PROCESS_ERROR`, `TIMEOUT` |
//! | 6 | node unavailable | `NODE_UNAVAILABLE`, `UNAUTHORIZED` |
//! | 1 | anything else | |
//! | 130 | stopped by Ctrl-C | `INTERRUPTED` |

use std::fmt;

use iris_core::ErrorCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stable code of an error the API reports: one of iris-core's [`ErrorCode`]s, or one that
/// only the node and its command line produce. On the wire, the code's name
/// (`"TEAM_NOT_FOUND"`, `"USAGE_ERROR"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiCode {
    /// A code of the domain (a team, a session, the store, an agent).
    Core(ErrorCode),
    /// A usage mistake the CLI itself caught (a bad argument, a bad duration).
    Usage,
    /// No node answered, or the endpoint file is unusable.
    NodeUnavailable,
    /// The node refused the access token.
    Unauthorized,
    /// A turn id that the ledger does not hold.
    TurnNotFound,
    /// The command was stopped by Ctrl-C (exit 130, as shells report SIGINT).
    Interrupted,
    /// A bug or an unexpected failure.
    Internal,
}

/// See [`ApiCode::Usage`].
pub const USAGE_ERROR: ApiCode = ApiCode::Usage;
/// See [`ApiCode::NodeUnavailable`].
pub const NODE_UNAVAILABLE: ApiCode = ApiCode::NodeUnavailable;
/// See [`ApiCode::Unauthorized`].
pub const UNAUTHORIZED: ApiCode = ApiCode::Unauthorized;
/// See [`ApiCode::TurnNotFound`].
pub const TURN_NOT_FOUND: ApiCode = ApiCode::TurnNotFound;
/// See [`ApiCode::Interrupted`].
pub const INTERRUPTED: ApiCode = ApiCode::Interrupted;
/// See [`ApiCode::Internal`].
pub const INTERNAL_ERROR: ApiCode = ApiCode::Internal;

/// The codes only the node and its command line produce.
const NODE_CODES: [ApiCode; 6] = [
    ApiCode::Usage,
    ApiCode::NodeUnavailable,
    ApiCode::Unauthorized,
    ApiCode::TurnNotFound,
    ApiCode::Interrupted,
    ApiCode::Internal,
];

impl ApiCode {
    /// The code's stable name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiCode::Core(code) => code.as_str(),
            ApiCode::Usage => "USAGE_ERROR",
            ApiCode::NodeUnavailable => "NODE_UNAVAILABLE",
            ApiCode::Unauthorized => "UNAUTHORIZED",
            ApiCode::TurnNotFound => "TURN_NOT_FOUND",
            ApiCode::Interrupted => "INTERRUPTED",
            ApiCode::Internal => "INTERNAL_ERROR",
        }
    }

    /// The code named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<ApiCode> {
        ErrorCode::ALL
            .into_iter()
            .map(ApiCode::Core)
            .chain(NODE_CODES)
            .find(|code| code.as_str() == name)
    }

    /// The process exit code for an error with this code (see the module's table).
    pub fn exit_code(self) -> u8 {
        match self {
            ApiCode::Usage
            | ApiCode::Core(
                ErrorCode::ConfigError | ErrorCode::ValidationError | ErrorCode::AlreadyExists,
            ) => 2,
            ApiCode::TurnNotFound
            | ApiCode::Core(ErrorCode::TeamNotFound | ErrorCode::SessionNotFound) => 3,
            ApiCode::Core(
                ErrorCode::QueueFull
                | ErrorCode::PoolLimitExceeded
                | ErrorCode::StoreLocked
                | ErrorCode::BudgetExceeded,
            ) => 4,
            ApiCode::Core(ErrorCode::ProcessError | ErrorCode::Timeout) => 5,
            ApiCode::NodeUnavailable | ApiCode::Unauthorized => 6,
            // 128 + SIGINT, as shells report a command stopped by Ctrl-C.
            ApiCode::Interrupted => 130,
            _ => 1,
        }
    }
}

impl From<ErrorCode> for ApiCode {
    fn from(code: ErrorCode) -> ApiCode {
        ApiCode::Core(code)
    }
}

impl PartialEq<ErrorCode> for ApiCode {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == ApiCode::Core(*other)
    }
}

impl fmt::Display for ApiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ApiCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ApiCode {
    /// A code this build does not know is an error, which a client reports as a reply it cannot
    /// read (a node of another version).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ApiCode, D::Error> {
        let name = String::deserialize(d)?;
        ApiCode::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {name}")))
    }
}

/// An error as the API reports it: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", .error.message)]
pub struct ApiError {
    /// The error.
    pub error: ApiErrorBody,
}

/// The body of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// A stable code: one of [`iris_core::ErrorCode`]'s, or one of the node's own
    /// (`USAGE_ERROR`, `NODE_UNAVAILABLE`, `UNAUTHORIZED`, …).
    pub code: ApiCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<ApiCode>, message: impl Into<String>) -> ApiError {
        ApiError {
            error: ApiErrorBody {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// The stable code.
    pub fn code(&self) -> ApiCode {
        self.error.code
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.code().exit_code()
    }

    /// Any error with a stable code: that code, and its message.
    pub fn coded(error: &(impl iris_core::Coded + std::fmt::Display)) -> ApiError {
        ApiError::new(error.code(), error.to_string())
    }
}

impl From<iris_runtime::RuntimeError> for ApiError {
    fn from(error: iris_runtime::RuntimeError) -> ApiError {
        ApiError::coded(&error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_error_code_has_its_class() {
        for code in ErrorCode::ALL {
            let exit = ApiCode::from(code).exit_code();
            let expected = match code {
                ErrorCode::ConfigError | ErrorCode::ValidationError | ErrorCode::AlreadyExists => 2,
                ErrorCode::TeamNotFound | ErrorCode::SessionNotFound => 3,
                ErrorCode::QueueFull
                | ErrorCode::PoolLimitExceeded
                | ErrorCode::StoreLocked
                | ErrorCode::BudgetExceeded => 4,
                ErrorCode::ProcessError | ErrorCode::Timeout => 5,
                ErrorCode::StoreCorrupt | ErrorCode::StoreError => 1,
                // A code added to iris-core must be given its class here.
                _ => panic!("{code:?} has no exit class in this test"),
            };
            assert_eq!(exit, expected, "{code:?}");
        }
        assert_eq!(USAGE_ERROR.exit_code(), 2);
        assert_eq!(TURN_NOT_FOUND.exit_code(), 3);
        assert_eq!(NODE_UNAVAILABLE.exit_code(), 6);
        assert_eq!(UNAUTHORIZED.exit_code(), 6);
        assert_eq!(INTERRUPTED.exit_code(), 130);
        assert_eq!(INTERNAL_ERROR.exit_code(), 1);
    }

    #[test]
    fn every_code_is_its_name_on_the_wire_and_back() {
        for code in ErrorCode::ALL
            .into_iter()
            .map(ApiCode::Core)
            .chain(NODE_CODES)
        {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ApiCode>(&json).unwrap(), code);
        }
        assert!(serde_json::from_str::<ApiCode>("\"NO_SUCH_CODE\"").is_err());
    }
}
