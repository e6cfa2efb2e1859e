//! Stable error codes shared by every iris crate.
//!
//! Each crate has its own `thiserror` enums; every one of them maps onto an [`ErrorCode`] through
//! [`Coded`], so that the CLI, the HTTP API and the MCP server can report a code that scripts may
//! rely on. The codes carry over the original system's names where it had one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The string form (`as_str`) never changes once released.
///
/// New codes go at the end: the declaration order is also the stored encoding of a turn's failure
/// code (postcard writes the variant's position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A team name is not in the configuration.
    TeamNotFound,
    /// A session (by id or by pair) does not exist.
    SessionNotFound,
    /// A value failed validation: a team name, a session id, a path.
    ValidationError,
    /// The configuration could not be read, parsed or validated.
    ConfigError,
    /// An agent process failed to start, crashed or misbehaved.
    ProcessError,
    /// The process pool is full and no process could be freed in time.
    PoolLimitExceeded,
    /// An operation did not finish within its time limit.
    Timeout,
    /// The thing being created exists already.
    AlreadyExists,
    /// The database is held by another process.
    StoreLocked,
    /// The database file is not a redb file, is corrupt, or has an unknown schema.
    StoreCorrupt,
    /// A storage operation failed (I/O, a closed store).
    StoreError,
    /// A session's queue of waiting messages is full (`queue_depth`); retry later.
    QueueFull,
    /// A spending cap (`[budgets]`) is reached: the message names the cap, the spend and when
    /// it resets.
    BudgetExceeded,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::TeamNotFound,
        ErrorCode::SessionNotFound,
        ErrorCode::ValidationError,
        ErrorCode::ConfigError,
        ErrorCode::ProcessError,
        ErrorCode::PoolLimitExceeded,
        ErrorCode::Timeout,
        ErrorCode::AlreadyExists,
        ErrorCode::StoreLocked,
        ErrorCode::StoreCorrupt,
        ErrorCode::StoreError,
        ErrorCode::QueueFull,
        ErrorCode::BudgetExceeded,
    ];

    /// The stable string form, e.g. `"TEAM_NOT_FOUND"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::TeamNotFound => "TEAM_NOT_FOUND",
            ErrorCode::SessionNotFound => "SESSION_NOT_FOUND",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::ConfigError => "CONFIG_ERROR",
            ErrorCode::ProcessError => "PROCESS_ERROR",
            ErrorCode::PoolLimitExceeded => "POOL_LIMIT_EXCEEDED",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::StoreLocked => "STORE_LOCKED",
            ErrorCode::StoreCorrupt => "STORE_CORRUPT",
            ErrorCode::StoreError => "STORE_ERROR",
            ErrorCode::QueueFull => "QUEUE_FULL",
            ErrorCode::BudgetExceeded => "BUDGET_EXCEEDED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that carries a stable [`ErrorCode`].
pub trait Coded {
    /// The code that classifies this error.
    fn code(&self) -> ErrorCode;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_order_is_stable() {
        // Stored turn failures encode a code by its position: never reorder, only append.
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i, "{code}");
        }
        assert_eq!(ErrorCode::ALL[4], ErrorCode::ProcessError);
        assert_eq!(ErrorCode::ALL[11], ErrorCode::QueueFull);
        assert_eq!(ErrorCode::ALL[12], ErrorCode::BudgetExceeded);
    }

    #[test]
    fn serde_form_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
