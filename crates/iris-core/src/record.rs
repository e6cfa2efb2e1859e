//! The durable session record and its companions.

use serde::{Deserialize, Serialize};

use crate::pair::Pair;
use crate::session_id::{SessionId, TurnId};
use crate::status::{ProcessState, SessionStatus};
use crate::team::TeamName;
use crate::time::Timestamp;

/// The durable state of one conversation between an ordered pair of teams.
///
/// It carries every field of the original's `team_sessions` row (with `current_cache_session_id`
/// replaced by [`current_turn`](Self::current_turn)), plus what the runtime needs to survive
/// restarts: the agent's own session id, the live process group, and cost and turn totals.
///
/// The store encodes this struct with postcard, which writes fields in declaration order: add new
/// fields only together with a new encoding version in `iris-store`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Row number, assigned by the store in creation order (the original's autoincrement key).
    pub id: u64,
    /// The team that sends.
    pub from_team: TeamName,
    /// The team whose agent answers.
    pub to_team: TeamName,
    /// The conversation id, also the transcript file name. Unique across the store.
    pub session_id: SessionId,
    /// When the record was created.
    pub created_at: Timestamp,
    /// When the session was last used (created, or touched by `record_usage` or a turn).
    pub last_used_at: Timestamp,
    /// Completed turns since creation or the last compaction.
    pub message_count: u64,
    /// The lifecycle status.
    pub status: SessionStatus,
    /// What the agent process is doing. Reset to `stopped` at every start-up.
    pub process_state: ProcessState,
    /// The turn in flight, if any. Cleared at start-up.
    pub current_turn: Option<TurnId>,
    /// When the agent last produced output for this session.
    pub last_response_at: Option<Timestamp>,
    /// The command line of the last spawn, shell-quoted for humans to copy (debugging only).
    pub launch_command: Option<String>,
    /// The team configuration in force at the last spawn, as pretty JSON (debugging only).
    pub team_config_snapshot: Option<String>,
    /// The conversation id the agent last reported, when it differs from `session_id` (the CLI
    /// can fork to a new id, e.g. after `/clear`). Later spawns resume this id.
    pub agent_session_id: Option<String>,
    /// The live agent process, so that a restarted node can reap what a crashed one left.
    pub agent_process: Option<AgentProcessMark>,
    /// Cost and token totals over every completed turn.
    pub usage: UsageTotals,
    /// Turns that ended in failure (agent error, crash, timeout).
    pub failed_turns: u64,
    /// Turns cut short by a restart, a cancel or a shutdown.
    pub interrupted_turns: u64,
}

impl SessionRecord {
    /// A fresh record for `pair`: status `active`, process `stopped`, no messages, created and
    /// last used `now`. The store assigns [`id`](Self::id) when it persists the record.
    pub fn new(pair: Pair, session_id: SessionId, now: Timestamp) -> Self {
        SessionRecord {
            id: 0,
            from_team: pair.from,
            to_team: pair.to,
            session_id,
            created_at: now,
            last_used_at: now,
            message_count: 0,
            status: SessionStatus::Active,
            process_state: ProcessState::Stopped,
            current_turn: None,
            last_response_at: None,
            launch_command: None,
            team_config_snapshot: None,
            agent_session_id: None,
            agent_process: None,
            usage: UsageTotals::default(),
            failed_turns: 0,
            interrupted_turns: 0,
        }
    }

    /// The pair this record belongs to.
    pub fn pair(&self) -> Pair {
        Pair::new(self.from_team.clone(), self.to_team.clone())
    }
}

/// Identifies a live agent process precisely enough to kill its group after a crash without
/// killing an unrelated process that later reused the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentProcessMark {
    /// The agent's pid.
    pub pid: u32,
    /// Its process group id (the agent leads its own group, so usually equal to `pid`).
    pub pgid: u32,
    /// The process start time in clock ticks since boot (`/proc/<pid>/stat` field 22), when known.
    pub start_ticks: Option<u64>,
}

/// Cost and token totals, summed over turns.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Total cost in US dollars, as reported by the agent.
    pub cost_usd: f64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
}

impl UsageTotals {
    /// Adds `other` to these totals, saturating the token counts.
    pub fn accumulate(&mut self, other: &UsageTotals) {
        self.cost_usd += other.cost_usd;
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_creation_input_tokens = self
            .cache_creation_input_tokens
            .saturating_add(other.cache_creation_input_tokens);
        self.cache_read_input_tokens = self
            .cache_read_input_tokens
            .saturating_add(other.cache_read_input_tokens);
    }
}
