//! # iris-core
//!
//! The domain of iris, free of I/O frameworks: what a team, a session and a conversation are, how
//! their names and paths are validated, where the agent keeps its transcripts, and how the
//! configuration file is read.
//!
//! - [`TeamName`], [`SessionId`], [`TurnId`] and [`Pair`]: validated identities.
//! - [`SessionRecord`], [`SessionStatus`], [`ProcessState`]: the durable record of a conversation.
//! - [`TurnRecord`], [`TurnStatus`], [`TurnFailure`]: the durable ledger of a session's turns.
//! - [`SessionFilter`], [`SessionStats`], [`CompactionPolicy`]: queries over records.
//! - [`project_path`] and [`transcript`]: filesystem rules for team directories and transcripts.
//! - [`config`]: the TOML configuration, with `${VAR:-default}` interpolation.
//! - [`ErrorCode`] and [`Coded`]: the stable error codes every crate reports.
//! - [`metrics`]: the counter and histogram every crate's metrics are made of.
#![deny(missing_docs)]

pub mod compaction;
pub mod config;
pub mod error;
pub mod metrics;
pub mod pair;
pub mod project_path;
pub mod query;
pub mod record;
pub mod redact;
pub mod session_id;
pub mod status;
pub mod team;
pub mod time;
pub mod transcript;
pub mod turn;

pub use compaction::CompactionPolicy;
pub use error::{Coded, ErrorCode};
pub use pair::Pair;
pub use query::{SessionFilter, SessionStats};
pub use record::{AgentProcessMark, SessionRecord, UsageTotals};
pub use session_id::{RequestId, RequestIdError, SessionId, SessionIdError, TurnId};
pub use status::{ProcessState, SessionStatus, UnknownStateError};
pub use team::{TeamName, TeamNameError};
pub use time::Timestamp;
pub use turn::{TurnFailure, TurnRecord, TurnStatus, truncate_text};
