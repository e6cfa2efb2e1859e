//! Tells: what a caller asks of a session's agent, and the typed outcomes it gets back.
//!
//! A tell queues one turn on the pair's session. How long the caller waits is its own choice
//! ([`Wait`]) and independent of the turn: a caller that stops waiting leaves the turn running,
//! and its result is kept in the turn ledger (see [`Runtime::turn`](crate::Runtime::turn)).

use std::time::Duration;

use iris_agent::conversation::liveness::format_elapsed;
use iris_core::{
    Coded, ErrorCode, RequestId, TurnFailure, TurnId, TurnRecord, TurnStatus, UsageTotals,
};
use serde::{Deserialize, Serialize};

/// How long a caller waits for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// Until the turn ends (bounded by the turn's own timeouts, so never forever).
    #[default]
    Complete,
    /// At most this long; then [`TellOutcome::CallerTimeout`] with what streamed so far. The
    /// turn keeps running.
    Timeout(#[serde(with = "humantime_serde")] Duration),
    /// Not at all: [`TellOutcome::Accepted`] as soon as the turn is queued.
    Async,
}

/// Options of one tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TellOptions {
    /// How long the caller waits.
    pub wait: Wait,
    /// Makes the tell run at most once: a tell with the id of one this pair already took joins
    /// that turn (waiting for it as `wait` says) instead of queueing another. The turn ledger
    /// keeps the id, so this holds across restarts for as long as the ledger keeps the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

impl TellOptions {
    /// Wait until the turn ends.
    pub fn complete() -> Self {
        TellOptions {
            wait: Wait::Complete,
            request_id: None,
        }
    }

    /// Wait at most `limit`.
    pub fn timeout(limit: Duration) -> Self {
        TellOptions {
            wait: Wait::Timeout(limit),
            request_id: None,
        }
    }

    /// Return as soon as the turn is queued.
    pub fn no_wait() -> Self {
        TellOptions {
            wait: Wait::Async,
            request_id: None,
        }
    }

    /// The same options, with the tell made at most once under `request_id`.
    pub fn with_request_id(self, request_id: RequestId) -> Self {
        TellOptions {
            request_id: Some(request_id),
            ..self
        }
    }
}

/// What a tell's caller gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TellOutcome {
    /// The turn completed; its bookkeeping was durable before this was returned.
    Completed(TurnResult),
    /// The turn is queued (wait mode `async`).
    Accepted {
        /// The turn.
        turn_id: TurnId,
    },
    /// The caller's wait ended first; the turn goes on and its result will be kept.
    CallerTimeout {
        /// The turn.
        turn_id: TurnId,
        /// The assistant text streamed so far.
        partial: String,
    },
    /// The turn failed.
    Failed {
        /// The turn.
        turn_id: TurnId,
        /// Why.
        error: TurnError,
    },
}

impl TellOutcome {
    /// The turn this outcome is about.
    pub fn turn_id(&self) -> TurnId {
        match self {
            TellOutcome::Completed(result) => result.turn_id,
            TellOutcome::Accepted { turn_id }
            | TellOutcome::CallerTimeout { turn_id, .. }
            | TellOutcome::Failed { turn_id, .. } => *turn_id,
        }
    }

    /// The outcome a finished turn of the ledger had, for a caller that joins it late (a
    /// retried request); `None` while it is open. Its text is the ledger's, so cut to the
    /// configured `turn_text_limit`.
    pub fn of_finished(turn: &TurnRecord) -> Option<TellOutcome> {
        let turn_id = turn.turn_id;
        let failure = || {
            turn.error.clone().unwrap_or_else(|| {
                TurnFailure::new(ErrorCode::ProcessError, "the turn did not complete")
            })
        };
        Some(match turn.status {
            TurnStatus::Queued | TurnStatus::Running => return None,
            TurnStatus::Completed => TellOutcome::Completed(TurnResult {
                turn_id,
                text: turn.text.clone().unwrap_or_default(),
                subtype: turn.subtype.clone().unwrap_or_default(),
                is_error: turn.is_error,
                cost_usd: turn.usage.cost_usd,
                usage: turn.usage,
                duration_ms: turn.duration_ms.unwrap_or_default(),
                num_turns: turn.num_turns.unwrap_or_default(),
            }),
            TurnStatus::Cancelled => TellOutcome::Failed {
                turn_id,
                error: TurnError::Cancelled,
            },
            TurnStatus::Interrupted => TellOutcome::Failed {
                turn_id,
                error: TurnError::Interrupted {
                    reason: failure().message,
                },
            },
            TurnStatus::Failed => {
                let TurnFailure { code, message } = failure();
                TellOutcome::Failed {
                    turn_id,
                    error: TurnError::Recorded { code, message },
                }
            }
        })
    }
}

/// A completed turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnResult {
    /// The turn.
    pub turn_id: TurnId,
    /// The assistant's text.
    pub text: String,
    /// The `result` event's subtype (`success`).
    pub subtype: String,
    /// The `result` event's `is_error` (always false here: an error result is
    /// [`TurnError::ErrorResult`]).
    pub is_error: bool,
    /// What the turn cost.
    pub cost_usd: f64,
    /// Its tokens (and cost).
    pub usage: UsageTotals,
    /// How long the agent says it took.
    pub duration_ms: u64,
    /// Model round trips the agent made.
    pub num_turns: u32,
}

/// Why a turn failed. Every variant says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TurnError {
    /// The turn made no progress (no output, no tool call running, no CPU use) for
    /// `response_timeout`; the agent was killed.
    #[error(
        "the agent made no progress for {} (no output, no tool call running, no CPU use) and was killed; raise response_timeout if its turns legitimately go quiet that long",
        format_elapsed(*.after)
    )]
    Timeout {
        /// The time without progress tolerated.
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
    /// The agent process exited during the turn. The next tell resumes the conversation.
    #[error(
        "the agent exited during the turn: it {}; the next tell resumes the conversation{}",
        exit_sentence(*.code, *.signal),
        stderr_sentence(.stderr_tail)
    )]
    AgentExited {
        /// Its exit code.
        code: Option<i32>,
        /// The signal that ended it.
        signal: Option<i32>,
        /// The end of what it wrote to stderr.
        stderr_tail: String,
    },
    /// The agent answered with an error result.
    #[error("{}", error_result_sentence(.subtype, *.api_error_status, .message))]
    ErrorResult {
        /// The `result` subtype.
        subtype: String,
        /// Its message.
        message: String,
        /// The HTTP status of the model API call that failed, when the agent reported one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_error_status: Option<u16>,
    },
    /// The agent could not be started.
    #[error("could not start the agent: {reason}")]
    Spawn {
        /// The error code of the failure.
        code: ErrorCode,
        /// What happened and what to do.
        reason: String,
    },
    /// Every agent process slot stayed busy for `spawn_timeout`.
    #[error(
        "all {max} agent processes stayed busy for the whole spawn_timeout; retry later, or raise max_processes"
    )]
    PoolExhausted {
        /// `max_processes`.
        max: usize,
    },
    /// The turn was cancelled (by `cancel` or a forced `sleep`).
    #[error("the turn was cancelled")]
    Cancelled,
    /// The turn could not finish because its session or the node stopped.
    #[error("the turn was interrupted: {reason}")]
    Interrupted {
        /// What stopped it.
        reason: String,
    },
    /// The agent broke the protocol or failed otherwise.
    #[error("the agent failed: {reason}")]
    Agent {
        /// What happened.
        reason: String,
    },
    /// A tool call stayed open past the team's `tool_timeout`, and the agent then made no other
    /// progress for `response_timeout`; the agent was killed.
    #[error(
        "the agent's {tool} tool call ran for {} (over tool_timeout, {}) with no other sign of progress (no output, no CPU use) after it; the agent was killed; raise the team's tool_timeout if its tools legitimately run that long",
        format_elapsed(*.ran),
        format_elapsed(*.limit)
    )]
    ToolTimeout {
        /// The tool's name.
        tool: String,
        /// How long the call had been open.
        #[serde(with = "humantime_serde")]
        ran: Duration,
        /// `tool_timeout`.
        #[serde(with = "humantime_serde")]
        limit: Duration,
    },
    /// The turn ran longer than the team's `turn_timeout`, whatever its progress; the agent was
    /// killed.
    #[error(
        "the turn ran longer than turn_timeout ({}) and the agent was killed; raise the team's turn_timeout (or set it to \"off\") if its turns legitimately take longer",
        format_elapsed(*.limit)
    )]
    TurnTimeout {
        /// `turn_timeout`.
        #[serde(with = "humantime_serde")]
        limit: Duration,
    },
    /// The agent finished the turn, but its bookkeeping could not be stored (a full disk, an
    /// I/O error), so the turn is not acknowledged: it is not in the ledger, and a restart
    /// would not know it.
    #[error("the agent finished the turn, but it could not be recorded: {message}")]
    Store {
        /// The store's error code (`STORE_ERROR`, …).
        code: ErrorCode,
        /// The store's message: the cause and what to do.
        message: String,
    },
    /// A budget cap that covers the turn was reached: before it could start (it was queued
    /// behind the turn that reached it), or during it, when the agent stopped at the spending
    /// limit iris gave it (`--max-budget-usd`).
    #[error("{message}")]
    BudgetExceeded {
        /// The cap, the spend and when it resets; or the agent's own words.
        message: String,
    },
    /// The turn failed earlier, as the ledger recorded it: a retried request (the same request
    /// id) gets the first attempt's failure instead of running again.
    #[error("the turn failed: {message}")]
    Recorded {
        /// The recorded failure's code.
        code: ErrorCode,
        /// The recorded message: the cause and what to do.
        message: String,
    },
}

impl TurnError {
    /// The final status of a turn that ended with this error: `cancelled`, `interrupted`, or
    /// `failed`.
    pub fn turn_status(&self) -> iris_core::TurnStatus {
        match self {
            TurnError::Cancelled => iris_core::TurnStatus::Cancelled,
            TurnError::Interrupted { .. } => iris_core::TurnStatus::Interrupted,
            _ => iris_core::TurnStatus::Failed,
        }
    }
}

/// "exited with code 1", "was killed by signal 9 (SIGKILL)".
fn exit_sentence(code: Option<i32>, signal: Option<i32>) -> String {
    iris_agent::process::ExitInfo {
        code,
        signal,
        stderr_tail: String::new(),
    }
    .to_string()
}

fn stderr_sentence(stderr_tail: &str) -> String {
    match stderr_tail.trim() {
        "" => String::new(),
        tail => format!(". Its last words on stderr: {tail}"),
    }
}

/// How an error `result` reads: a failed API call arrives as `subtype: "success"` with
/// `is_error` set (and, on newer CLIs, its HTTP status); the error subtypes name what stopped
/// the turn.
fn error_result_sentence(subtype: &str, status: Option<u16>, message: &str) -> String {
    let what = match subtype {
        "success" => match status {
            Some(status) => format!("the agent reported an API error (HTTP {status})"),
            None => "the agent reported an API error".to_owned(),
        },
        "error_max_turns" => "the agent stopped at its limit of model turns".to_owned(),
        "error_max_budget_usd" => "the agent stopped at its spending limit".to_owned(),
        "error_during_execution" => "the agent's turn failed during execution".to_owned(),
        other => format!("the agent ended the turn with an error ({other})"),
    };
    match message.trim() {
        "" => what,
        message => format!("{what}: {message}"),
    }
}

impl Coded for TurnError {
    fn code(&self) -> ErrorCode {
        match self {
            TurnError::Timeout { .. }
            | TurnError::ToolTimeout { .. }
            | TurnError::TurnTimeout { .. } => ErrorCode::Timeout,
            TurnError::PoolExhausted { .. } => ErrorCode::PoolLimitExceeded,
            TurnError::BudgetExceeded { .. } => ErrorCode::BudgetExceeded,
            TurnError::Spawn { code, .. }
            | TurnError::Store { code, .. }
            | TurnError::Recorded { code, .. } => *code,
            _ => ErrorCode::ProcessError,
        }
    }
}

/// One event of a turn, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TurnEvent {
    /// The turn left the queue and is running.
    Started {
        /// The turn.
        turn_id: TurnId,
    },
    /// Assistant text arrived.
    Text {
        /// The turn.
        turn_id: TurnId,
        /// The new text.
        text: String,
    },
    /// The agent called a tool (a `tool_use` block); it runs until its result comes back.
    ToolStarted {
        /// The turn.
        turn_id: TurnId,
        /// The tool use id (`toolu_…`).
        tool_use_id: String,
        /// The tool's name (`Bash`, `mcp__server__tool`, …).
        tool: String,
    },
    /// A tool call's result came back to the agent.
    ToolFinished {
        /// The turn.
        turn_id: TurnId,
        /// The tool use id.
        tool_use_id: String,
        /// The tool's name.
        tool: String,
        /// How long the call was open.
        #[serde(with = "humantime_serde")]
        ran_for: Duration,
    },
    /// The turn ended.
    Finished {
        /// The final outcome (`Completed` or `Failed`).
        outcome: TellOutcome,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_sentences() {
        let killed = TurnError::AgentExited {
            code: None,
            signal: Some(9),
            stderr_tail: String::new(),
        };
        assert_eq!(
            killed.to_string(),
            "the agent exited during the turn: it was killed by signal 9 (SIGKILL); the next tell resumes the conversation"
        );
        let exited = TurnError::AgentExited {
            code: Some(2),
            signal: None,
            stderr_tail: "boom\n".into(),
        };
        assert!(
            exited
                .to_string()
                .ends_with("it exited with code 2; the next tell resumes the conversation. Its last words on stderr: boom"),
            "{exited}"
        );
        let api = TurnError::ErrorResult {
            subtype: "success".into(),
            message: "API Error: 529 Overloaded".into(),
            api_error_status: Some(529),
        };
        assert_eq!(
            api.to_string(),
            "the agent reported an API error (HTTP 529): API Error: 529 Overloaded"
        );
        let turns = TurnError::ErrorResult {
            subtype: "error_max_turns".into(),
            message: String::new(),
            api_error_status: None,
        };
        assert_eq!(
            turns.to_string(),
            "the agent stopped at its limit of model turns"
        );
    }

    #[test]
    fn each_limit_says_which_it_is_and_how_to_raise_it() {
        let stall = TurnError::Timeout {
            after: Duration::from_secs(120),
        };
        assert!(stall.to_string().contains("2m"), "{stall}");
        assert!(stall.to_string().contains("response_timeout"), "{stall}");
        let tool = TurnError::ToolTimeout {
            tool: "Bash".into(),
            ran: Duration::from_millis(1_812_400),
            limit: Duration::from_secs(1800),
        };
        let shown = tool.to_string();
        assert!(
            shown.contains("Bash tool call ran for 30m12s (over tool_timeout, 30m)"),
            "{shown}"
        );
        assert!(shown.contains("raise the team's tool_timeout"), "{shown}");
        let turn = TurnError::TurnTimeout {
            limit: Duration::from_secs(3600),
        };
        assert!(
            turn.to_string().contains("longer than turn_timeout (1h)"),
            "{turn}"
        );
        for error in [stall, tool, turn] {
            assert_eq!(error.code(), ErrorCode::Timeout);
            // Through JSON and back, as the control API carries it.
            let json = serde_json::to_string(&error).unwrap_or_default();
            let back: TurnError = serde_json::from_str(&json).unwrap_or(TurnError::Cancelled);
            assert_eq!(back, error, "{json}");
        }
    }
}
