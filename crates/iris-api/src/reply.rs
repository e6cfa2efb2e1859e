//! The replies to [`Request`](crate::Request)s: plain, serde-serializable data whose fields are
//! the domain's types, so the embedded runtime and a remote node answer alike and no front end
//! parses a status back out of a string.
//!
//! On the wire (`POST /api/v1/command`) a reply is the [`Reply`] tagged by `kind`
//! (`{"kind":"tell","data":{…}}`). An error is `{"error":{"code":"…","message":"…"}}`
//! ([`ApiError`]).

use iris_core::{SessionId, SessionRecord, TeamName, TurnId, TurnRecord, UsageTotals};
use iris_runtime::AgentActivity;
use serde::{Deserialize, Serialize};

pub use crate::error::{ApiCode, ApiError, ApiErrorBody};

/// The answer to a [`Request`](crate::Request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// `Tell`.
    Tell(TellReply),
    /// `SessionsList`.
    Sessions(Vec<SessionRecord>),
    /// `SessionsList` across a cluster (made at a node of one, not for one placed team).
    ClusterSessions(ClusterSessionsReply),
    /// `SessionsShow`, `SessionsCompact`, `SessionsReboot`, `Wake`.
    Session(SessionRecord),
    /// `SessionsDelete`.
    Deleted(DeleteReply),
    /// `Report`.
    Turns(Vec<TurnRecord>),
    /// `Sleep`.
    Slept(PairReply),
    /// `Cancel`.
    Cancelled(CancelReply),
    /// `WakeAll`.
    WokeAll(Vec<WakeAllEntry>),
    /// `Status`.
    Status(StatusReply),
    /// `Teams`.
    Teams(Vec<TeamRow>),
    /// `Stats`.
    Stats(StatsReply),
    /// `Budget`.
    Budget(iris_runtime::budget::BudgetReport),
}

/// What `iris tell --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TellReply {
    /// The sending team.
    pub from: TeamName,
    /// The receiving team.
    pub to: TeamName,
    /// The session's id.
    pub session_id: Option<SessionId>,
    /// The turn's id.
    pub turn_id: TurnId,
    /// How the tell ended for its caller.
    pub status: TellStatus,
    /// The reply text (partial for `caller_timeout`, empty for `accepted`).
    pub response: String,
    /// The turn's cost, when it completed.
    pub cost_usd: Option<f64>,
    /// Token usage, when it completed.
    pub usage: Option<UsageTotals>,
    /// The agent's own duration, when it completed.
    pub duration_ms: Option<u64>,
    /// Why the turn failed, when `status` is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiErrorBody>,
}

/// How a tell ended for its caller (on the wire: `completed`, `accepted`, `caller_timeout`,
/// `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TellStatus {
    /// The turn completed; the reply carries its text, cost and usage.
    Completed,
    /// The turn was queued and the caller did not wait (`--async`).
    Accepted,
    /// The caller stopped waiting; the turn goes on, and the reply carries its text so far.
    CallerTimeout,
    /// The turn failed; the reply carries the error.
    Failed,
}

/// What a deletion did to the session's transcript. On the wire a word (`not_requested`,
/// `removed`, `not_found`), or `failed: <what>` naming the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriptOutcome {
    /// Deleting the transcript was not asked for.
    NotRequested,
    /// It was removed.
    Removed,
    /// There was none.
    NotFound,
    /// Removing it failed: the file (when known) and the reason.
    Failed(String),
}

const FAILED_PREFIX: &str = "failed: ";

impl TranscriptOutcome {
    /// The wire text.
    pub fn text(&self) -> std::borrow::Cow<'static, str> {
        match self {
            TranscriptOutcome::NotRequested => "not_requested".into(),
            TranscriptOutcome::Removed => "removed".into(),
            TranscriptOutcome::NotFound => "not_found".into(),
            TranscriptOutcome::Failed(what) => format!("{FAILED_PREFIX}{what}").into(),
        }
    }
}

impl Serialize for TranscriptOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for TranscriptOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TranscriptOutcome, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "not_requested" => TranscriptOutcome::NotRequested,
            "removed" => TranscriptOutcome::Removed,
            "not_found" => TranscriptOutcome::NotFound,
            other => match other.strip_prefix(FAILED_PREFIX) {
                Some(what) => TranscriptOutcome::Failed(what.to_owned()),
                None => {
                    return Err(serde::de::Error::custom(format!(
                        "unknown transcript outcome {other:?}"
                    )));
                }
            },
        })
    }
}

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteReply {
    /// The deleted record (`None` if there was none).
    pub deleted: Option<SessionRecord>,
    /// What happened to the transcript.
    pub transcript: TranscriptOutcome,
}

/// A pair an operation acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairReply {
    /// The sending team.
    pub from: TeamName,
    /// The receiving team.
    pub to: TeamName,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelReply {
    /// The sending team.
    pub from: TeamName,
    /// The receiving team.
    pub to: TeamName,
    /// Whether a turn in flight was interrupted.
    pub interrupted: bool,
    /// Queued turns failed as cancelled.
    pub dropped: usize,
}

/// One team's result in `wake-all`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WakeAllEntry {
    /// The receiving team.
    pub to: TeamName,
    /// The session, when it woke.
    pub session: Option<SessionRecord>,
    /// Why it did not.
    pub error: Option<ApiErrorBody>,
}

/// A pair's live status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The sending team.
    pub from: TeamName,
    /// The receiving team.
    pub to: TeamName,
    /// The session's record, if the pair has one.
    pub session: Option<SessionRecord>,
    /// Whether its agent process is alive (or starting).
    pub awake: bool,
    /// Whether a turn is in flight.
    pub busy: bool,
    /// Turns waiting behind it.
    pub queued: usize,
    /// The turn in flight.
    pub current_turn: Option<TurnId>,
    /// What the agent is doing, when it is awake. On the wire its text: "starting", "idle",
    /// "streaming" or "running tool Bash for 3m12s".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "activity_text"
    )]
    pub activity: Option<AgentActivity>,
    /// Whether a budget cap over the pair stood at 80 % or more when its last turn was booked
    /// (`iris budget` shows them all). Absent when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub budget_warning: bool,
}

/// One configured team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRow {
    /// The team's name.
    pub name: TeamName,
    /// Its description.
    pub description: String,
    /// Its project directory (or `host:path` for a remote team).
    pub path: String,
    /// The state of the pair from the `from` team, when one was given: its session and status.
    pub pair: Option<StatusReply>,
}

/// Node-wide totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    /// The store's session totals (by status and process state).
    pub sessions: iris_core::SessionStats,
    /// Session actors live in the runtime.
    pub live_actors: u64,
    /// Agent processes alive.
    pub live_processes: u64,
    /// The runtime's counters (turns by outcome, spawns, crashes, …).
    pub counters: std::collections::BTreeMap<String, u64>,
    /// How agents are contained: `cgroup`, `subreaper` or `process-group` (absent from older
    /// nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<iris_agent::containment::ContainmentMode>,
    /// CPU seconds used by each live agent and everything it started, as `from->to` (empty
    /// where the containment does not measure it).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub agent_cpu_seconds: std::collections::BTreeMap<String, f64>,
    /// Whose `counters` these are: `node` (a running node's, since it started) or
    /// `this_command` (no node runs: the runtime this command started, so they count only what
    /// this command did).
    #[serde(default)]
    pub counters_of: CountersOf,
    /// In a cluster: the nodes whose figures are summed here, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// In a cluster: the nodes that did not answer, whose figures are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_nodes: Option<Vec<UnavailableNode>>,
}

/// What `iris sessions list --json` prints at a node of a cluster: the sessions of every node
/// that answered, newest use first, and the nodes that did not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSessionsReply {
    /// The sessions, newest use first (at most the limit asked for).
    pub sessions: Vec<ClusterSession>,
    /// The nodes whose sessions are listed, this one included.
    pub nodes: Vec<String>,
    /// The nodes that did not answer: their sessions are missing.
    pub unavailable_nodes: Vec<UnavailableNode>,
}

/// A session record, and the node that holds it (the node of its receiving team).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSession {
    /// The node.
    pub node: String,
    /// The record, its fields beside `node`.
    #[serde(flatten)]
    pub record: SessionRecord,
}

/// A node of the cluster whose part of a cluster-wide view is missing, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnavailableNode {
    /// The node.
    pub node: String,
    /// Why it did not answer.
    pub reason: String,
}

/// Whose runtime counters a [`StatsReply`] carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountersOf {
    /// A running node's, since it started.
    #[default]
    Node,
    /// The embedded runtime of this one command.
    ThisCommand,
}

/// `Option<AgentActivity>` as its text ("running tool Bash for 3m12s"), which is what people and
/// scripts have always read; read back to the millisecond for times under a second, to the
/// second above.
mod activity_text {
    use std::time::Duration;

    use iris_runtime::AgentActivity;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<AgentActivity>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(activity) => s.serialize_some(&activity.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AgentActivity>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        parse(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown agent activity {text:?}")))
    }

    fn parse(text: &str) -> Option<AgentActivity> {
        Some(match text {
            "starting" => AgentActivity::Starting,
            "idle" => AgentActivity::Idle,
            "streaming" => AgentActivity::Streaming,
            _ => {
                let (tool, elapsed) = text.strip_prefix("running tool ")?.rsplit_once(" for ")?;
                let running_for: Duration = humantime::parse_duration(elapsed).ok()?;
                AgentActivity::RunningTool {
                    tool: tool.to_owned(),
                    running_for_ms: u64::try_from(running_for.as_millis()).unwrap_or(u64::MAX),
                }
            }
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_activity_reads_back_from_its_text() {
            for activity in [
                AgentActivity::Starting,
                AgentActivity::Idle,
                AgentActivity::Streaming,
                AgentActivity::RunningTool {
                    tool: "mcp__iris__send message".into(),
                    running_for_ms: 192_000,
                },
                AgentActivity::RunningTool {
                    tool: "Bash".into(),
                    running_for_ms: 250,
                },
            ] {
                assert_eq!(parse(&activity.to_string()), Some(activity));
            }
            assert_eq!(parse("dancing"), None);
        }
    }
}
