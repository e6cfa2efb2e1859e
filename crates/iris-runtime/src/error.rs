//! Errors of the runtime.

use iris_core::config::budget::{Cap, CapKey};
use iris_core::{Coded, ErrorCode, Pair, SessionId, TeamName, Timestamp};
use iris_store::spend::Spend;

/// Why a runtime operation failed. Local to this process: what crosses a process boundary is
/// its code and message (the node's API error), not this type.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The pair's receiving team is hosted by another node of the cluster, which runs its
    /// sessions: this runtime never starts that team's agents.
    #[error(
        "team {team} is hosted by cluster node {node}, which runs its sessions; send the request through an iris node of the cluster (any node forwards it to {node})"
    )]
    HostedElsewhere {
        /// The team.
        team: TeamName,
        /// The node that hosts it.
        node: iris_core::config::cluster::NodeName,
    },
    /// A team's configuration failed validation at start-up.
    #[error("invalid configuration for team {team}: {reason}")]
    InvalidTeam {
        /// The team.
        team: TeamName,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A tell's request id already named a tell of another pair: request ids must be unique.
    #[error(
        "request id {request_id} already named a tell of session {session}, not one of {pair}; give every request its own id (reuse an id only to retry that same request)"
    )]
    RequestReused {
        /// The request id.
        request_id: iris_core::RequestId,
        /// The pair the tell was for.
        pair: Pair,
        /// The session whose turn holds the id.
        session: SessionId,
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
    #[error("no session {session}; list sessions to find the right one")]
    NotFound {
        /// The session looked for.
        session: SessionRef,
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
    /// The store failed (its error names the file, the cause and what to do).
    #[error(transparent)]
    Store(#[from] iris_store::StoreError),
    /// A part of the runtime could not be started.
    #[error("could not start {what}: {reason}")]
    Start {
        /// The part: the process pool, the registry.
        what: &'static str,
        /// Why.
        reason: String,
    },
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
    /// A spending cap that covers the tell is reached.
    #[error("{0}")]
    BudgetExceeded(Box<BudgetExceeded>),
    /// A budget cap set at run time was refused: its key names no cap, or no configured team,
    /// or the cap sets no valid limit.
    #[error("budget cap {key}: {reason}")]
    InvalidBudgetCap {
        /// The key as given.
        key: String,
        /// What is wrong, and what to write instead.
        reason: String,
    },
    /// The runtime is shutting down or has stopped.
    #[error("the iris runtime is shutting down; retry against a running node")]
    ShuttingDown,
    /// The configured agent containment is not available here (the message says why and what
    /// to change).
    #[error("{0}")]
    Containment(String),
}

/// A reached cap: which, how much was spent, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExceeded {
    /// What the cap covers, said for a person ("team alpha as sender, per day").
    pub what: String,
    /// The setting that gives it, where to raise it.
    pub setting: CapKey,
    /// The cap.
    pub cap: Cap,
    /// What was spent.
    pub spent: Spend,
    /// When it resets (`None`: a session's cap, over its life).
    pub resets: Option<Timestamp>,
}

impl std::fmt::Display for BudgetExceeded {
    /// "the budget of team alpha as sender, per day, is spent: $10.02 and 12000 tokens of a cap
    /// of $10.00; it resets at …; raise … to go on".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the budget of {} is spent: ${:.4} and {} tokens, against a cap of {}; ",
            self.what, self.spent.usd, self.spent.tokens, self.cap
        )?;
        let raise = format!(
            "raise {} (or now, without a restart: `iris budget set {} --usd N`)",
            self.setting.config_key(),
            self.setting
        );
        match self.resets {
            Some(at) => write!(f, "it resets at {at}; {raise} to go on sooner"),
            None => write!(f, "{raise} to go on, or start a new session"),
        }
    }
}

/// How a session was looked for, as a [`RuntimeError::NotFound`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRef {
    /// By its id.
    Id(SessionId),
    /// By its pair.
    Pair(Pair),
    /// By the pair the caller asked about, expecting a session that is not (or no longer) there.
    ThisPair,
}

impl std::fmt::Display for SessionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionRef::Id(id) => write!(f, "with id {id}"),
            SessionRef::Pair(pair) => write!(f, "for {pair}"),
            SessionRef::ThisPair => f.write_str("for this pair"),
        }
    }
}

impl RuntimeError {
    /// [`RuntimeError::NotFound`] for the session with this id.
    pub fn no_session_with_id(id: SessionId) -> RuntimeError {
        RuntimeError::NotFound {
            session: SessionRef::Id(id),
        }
    }

    /// [`RuntimeError::NotFound`] for the pair's session.
    pub fn no_session_for(pair: Pair) -> RuntimeError {
        RuntimeError::NotFound {
            session: SessionRef::Pair(pair),
        }
    }
}

impl Coded for RuntimeError {
    fn code(&self) -> ErrorCode {
        match self {
            RuntimeError::UnknownTeam { .. } => ErrorCode::TeamNotFound,
            RuntimeError::InvalidTeam { .. }
            | RuntimeError::HostedElsewhere { .. }
            | RuntimeError::Containment(_) => ErrorCode::ConfigError,
            RuntimeError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            RuntimeError::RequestReused { .. } | RuntimeError::InvalidBudgetCap { .. } => {
                ErrorCode::ValidationError
            }
            RuntimeError::NotFound { .. } => ErrorCode::SessionNotFound,
            RuntimeError::Agent { code, .. } => *code,
            RuntimeError::Store(error) => error.code(),
            RuntimeError::Start { .. } => ErrorCode::ProcessError,
            RuntimeError::Timeout { .. } => ErrorCode::Timeout,
            RuntimeError::SessionFailed { .. } | RuntimeError::Busy { .. } => {
                ErrorCode::ProcessError
            }
            RuntimeError::ShuttingDown => ErrorCode::ProcessError,
            RuntimeError::QueueFull { .. } => ErrorCode::QueueFull,
            RuntimeError::BudgetExceeded(_) => ErrorCode::BudgetExceeded,
        }
    }
}
