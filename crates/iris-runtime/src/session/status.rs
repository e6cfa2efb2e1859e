//! What a session reports about itself to callers: a deletion's result, a cancel's, a pair's
//! status and what its agent is doing. Plain data, public through the runtime.

use std::time::Duration;

use iris_agent::conversation::Activity;
use iris_agent::conversation::liveness::format_elapsed;
use iris_core::{SessionRecord, TurnId};
use serde::{Deserialize, Serialize};

use super::transcript::TranscriptRemoval;

/// The result of deleting a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deletion {
    /// The deleted record, or `None` if there was none.
    pub deleted: Option<SessionRecord>,
    /// What happened to the transcript.
    pub transcript: TranscriptRemoval,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cancelled {
    /// Whether a turn was in flight and was interrupted.
    pub interrupted: bool,
    /// Queued turns that were cancelled.
    pub dropped: usize,
}

/// What a pair's session is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStatus {
    /// The session's record, if the pair has a session.
    pub session: Option<SessionRecord>,
    /// Whether its agent process is alive (or starting).
    pub awake: bool,
    /// Whether a turn is in flight.
    pub busy: bool,
    /// Turns waiting behind it.
    pub queued: usize,
    /// The turn in flight.
    pub current_turn: Option<TurnId>,
    /// What the agent is doing, when it is awake. (Absent from JSON written before it existed;
    /// never skipped when written, so the non-self-describing encodings stay aligned.)
    #[serde(default)]
    pub activity: Option<AgentActivity>,
    /// Whether a budget cap over the pair stood at 80 % or more when its last turn was booked
    /// (see `iris budget`).
    #[serde(default)]
    pub budget_warning: bool,
}

/// What a pair's agent is doing, as status shows it. Reads as "starting", "idle", "streaming"
/// or "running tool Bash for 3m12s".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentActivity {
    /// The agent is being started for the job in flight.
    Starting,
    /// No turn is in flight.
    Idle,
    /// A turn is in flight and the model has the floor: it streams, or the agent waits for it.
    Streaming,
    /// A tool call is open (the oldest, when several are).
    RunningTool {
        /// The tool's name.
        tool: String,
        /// How long it has been running, in milliseconds.
        running_for_ms: u64,
    },
}

impl AgentActivity {
    /// The activity a conversation published, seen now.
    pub(crate) fn of(activity: &Activity) -> AgentActivity {
        match activity {
            Activity::Idle => AgentActivity::Idle,
            Activity::Streaming => AgentActivity::Streaming,
            Activity::RunningTool { name, since } => AgentActivity::RunningTool {
                tool: name.clone(),
                running_for_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
        }
    }
}

impl std::fmt::Display for AgentActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentActivity::Starting => f.write_str("starting"),
            AgentActivity::Idle => f.write_str("idle"),
            AgentActivity::Streaming => f.write_str("streaming"),
            AgentActivity::RunningTool {
                tool,
                running_for_ms,
            } => write!(
                f,
                "running tool {tool} for {}",
                format_elapsed(Duration::from_millis(*running_for_ms))
            ),
        }
    }
}
