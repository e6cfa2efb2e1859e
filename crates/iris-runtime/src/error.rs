//! Errors of the runtime.

use iris_core::{Coded, ErrorCode, Pair, SessionId, TeamName};

/// Why a runtime operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A team is not in the configuration.
    #[error(
        "unknown team {team}: add [{}] to the configuration, or check the spelling",
        iris_core::config::team_table(team)
    )]
    UnknownTeam {
        /// The team.
        team: TeamName,
    },
    /// A team's configuration failed validation at start-up.
    #[error("invalid configuration for team {team}: {reason}")]
    InvalidTeam {
        /// The team.
        team: TeamName,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The pair has a session already.
    #[error("the pair {pair} already has session {existing}; use it, or delete it first")]
    AlreadyExists {
        /// The pair.
        pair: Pair,
        /// Its session.
        existing: SessionId,
    },
    /// No session has this id (or this pair has none).
    #[error("no session {what}; list sessions to find the right one")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// Starting the session's agent failed.
    #[error("could not start the agent of {pair}: {reason}")]
    Agent {
        /// The pair.
        pair: Pair,
        /// The error code of the agent failure.
        code: ErrorCode,
        /// What happened.
        reason: String,
    },
    /// The store failed.
    #[error("{0}")]
    Store(String, ErrorCode),
    /// The session's actor failed repeatedly; the session is in status `error`.
    #[error(
        "session {pair} failed repeatedly and is in status error ({reason}); wake or reset it to try again"
    )]
    SessionFailed {
        /// The pair.
        pair: Pair,
        /// The last failure.
        reason: String,
    },
    /// The session is busy with a lifecycle change.
    #[error("session {pair} is {what}; retry in a moment")]
    Busy {
        /// The pair.
        pair: Pair,
        /// What it is doing.
        what: String,
    },
    /// An answer did not come in time.
    #[error("{what} did not answer in time; retry, or check the node's logs")]
    Timeout {
        /// What did not answer.
        what: String,
    },
    /// The session's queue is full; the tell was not queued.
    #[error(
        "the queue of session {pair} is full ({depth} turns waiting); retry after some finish, or raise queue_depth"
    )]
    QueueFull {
        /// The pair.
        pair: Pair,
        /// `queue_depth`.
        depth: usize,
    },
    /// The runtime is shutting down or has stopped.
    #[error("the iris runtime is shutting down; retry against a running node")]
    ShuttingDown,
    /// The configured agent containment is not available here (the message says why and what
    /// to change).
    #[error("{0}")]
    Containment(String),
}

impl Coded for RuntimeError {
    fn code(&self) -> ErrorCode {
        match self {
            RuntimeError::UnknownTeam { .. } => ErrorCode::TeamNotFound,
            RuntimeError::InvalidTeam { .. } | RuntimeError::Containment(_) => {
                ErrorCode::ConfigError
            }
            RuntimeError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            RuntimeError::NotFound { .. } => ErrorCode::SessionNotFound,
            RuntimeError::Agent { code, .. } | RuntimeError::Store(_, code) => *code,
            RuntimeError::Timeout { .. } => ErrorCode::Timeout,
            RuntimeError::SessionFailed { .. } | RuntimeError::Busy { .. } => {
                ErrorCode::ProcessError
            }
            RuntimeError::ShuttingDown => ErrorCode::ProcessError,
            RuntimeError::QueueFull { .. } => ErrorCode::QueueFull,
        }
    }
}

impl From<iris_store::StoreError> for RuntimeError {
    fn from(e: iris_store::StoreError) -> Self {
        let code = e.code();
        RuntimeError::Store(e.to_string(), code)
    }
}
