//! # iris-runtime
//!
//! The session runtime: a Registry actor that is the only creator of sessions (single-flight per
//! pair), one SessionActor per live pair that is the only writer of its record and owns the
//! pair's agent process, and the [`Runtime`] handle that embedders, the node and tests drive.
//! Reads of live sessions go through a published map and per-session snapshots, never through a
//! mailbox.
#![deny(missing_docs)]

pub mod budget;
mod clock;
pub mod error;
pub mod events;
pub mod metrics;
mod pool;
mod registry;
mod runtime;
mod session;
mod shared;
pub mod startup;
pub mod tell;

pub use clock::Clock;
pub use error::{BudgetExceeded, RuntimeError, SessionRef};
pub use pool::PoolView;
pub use runtime::{Runtime, RuntimeStats, Told, TurnHandle};
pub use session::{AgentActivity, Cancelled, Deletion, PairStatus, TranscriptRemoval};
pub use tell::{TellOptions, TellOutcome, TurnError, TurnEvent, TurnResult, Wait};
