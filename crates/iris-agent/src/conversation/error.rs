//! What can go wrong while talking to an agent.

use std::time::Duration;

use iris_core::{Coded, ErrorCode};

use crate::codec::CodecError;
use crate::conversation::liveness::format_elapsed;
use crate::process::{ExitInfo, SpawnError};

/// Why a conversation could not start, or a turn could not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The agent exited before it answered the `initialize` handshake.
    #[error("the agent exited before it was ready: it {exit}{}", reported_errors(.reported))]
    ExitedBeforeReady {
        /// How it ended.
        exit: ExitInfo,
        /// The errors it reported on stdout first (a `result` event's `errors`), if any.
        reported: Vec<String>,
    },
    /// The agent did not answer the handshake in time.
    #[error(
        "the agent did not answer the initialize handshake within {after:?}; check that the command is a Claude Code CLI that supports --input-format stream-json, or raise spawn_timeout"
    )]
    HandshakeTimeout {
        /// The limit that passed.
        after: Duration,
    },
    /// The agent refused the handshake.
    #[error("the agent refused the initialize handshake: {message}")]
    HandshakeRejected {
        /// Its error message.
        message: String,
    },
    /// The agent exited while a turn was in flight.
    #[error("the agent exited during the turn: it {exit}")]
    Exited {
        /// How it ended.
        exit: ExitInfo,
    },
    /// The turn made no progress for too long (no output, no open tool call, no CPU use by the
    /// agent's processes); the agent was killed.
    #[error(
        "the agent made no progress for {after:?} (no output, no tool call running, no CPU use) and was killed; raise response_timeout if its turns legitimately go quiet that long"
    )]
    Stalled {
        /// The time without progress that was tolerated.
        after: Duration,
    },
    /// A tool call stayed open past its timeout, and the agent then made no other progress (no
    /// output, no CPU use) for the stall limit; the agent was killed.
    #[error(
        "the agent's {tool} tool call ran for {} (over tool_timeout, {}) and the agent then made no progress (no output, no CPU use) for {}; it was killed; raise tool_timeout for the team if its tools legitimately run that long",
        format_elapsed(*.ran),
        format_elapsed(*.limit),
        format_elapsed(*.stall)
    )]
    ToolTimedOut {
        /// The tool's name.
        tool: String,
        /// How long the call had been open.
        ran: Duration,
        /// The tool timeout.
        limit: Duration,
        /// The stall limit that passed after it.
        stall: Duration,
    },
    /// The turn ran longer than its cap, whatever its progress; the agent was killed.
    #[error(
        "the turn ran longer than turn_timeout ({}) and the agent was killed; raise turn_timeout for the team (or set it to \"off\") if turns legitimately take longer",
        format_elapsed(*.limit)
    )]
    TurnTimedOut {
        /// The cap.
        limit: Duration,
    },
    /// The turn was interrupted and the agent did not finish it within the grace period, so it
    /// was killed.
    #[error("the turn was interrupted and the agent did not stop within {grace:?}; it was killed")]
    InterruptTimedOut {
        /// The grace period.
        grace: Duration,
    },
    /// The agent's output broke the protocol (an over-long or malformed line); it was killed.
    #[error("the agent broke the stream-json protocol and was killed: {0}")]
    Protocol(#[from] CodecError),
    /// The conversation has ended (the agent exited or was stopped).
    #[error("the agent is no longer running; start a new conversation")]
    NotRunning,
}

fn reported_errors(reported: &[String]) -> String {
    if reported.is_empty() {
        String::new()
    } else {
        format!("; it reported: {}", reported.join("; "))
    }
}

/// How the CLI refused to open the conversation it was launched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchRefusal {
    /// `--session-id=<id>`: "Session ID … is already in use": the conversation exists, so it
    /// must be resumed.
    ConversationInUse,
    /// `--resume=<id>`: "No conversation found with session ID: …": the transcript is missing
    /// or empty, so the history is gone.
    ConversationNotFound,
}

impl AgentError {
    /// Whether the agent exited at launch because of the conversation it was asked to open
    /// (the texts of Claude Code 2.1.197, on stderr or in an early `result`).
    pub fn launch_refusal(&self) -> Option<LaunchRefusal> {
        let AgentError::ExitedBeforeReady { exit, reported } = self else {
            return None;
        };
        let said = |needle: &str| {
            exit.stderr_tail.contains(needle) || reported.iter().any(|r| r.contains(needle))
        };
        if said("No conversation found with session ID") {
            Some(LaunchRefusal::ConversationNotFound)
        } else if said("is already in use") {
            Some(LaunchRefusal::ConversationInUse)
        } else {
            None
        }
    }
}

impl Coded for AgentError {
    fn code(&self) -> ErrorCode {
        match self {
            AgentError::HandshakeTimeout { .. }
            | AgentError::Stalled { .. }
            | AgentError::ToolTimedOut { .. }
            | AgentError::TurnTimedOut { .. }
            | AgentError::InterruptTimedOut { .. } => ErrorCode::Timeout,
            _ => ErrorCode::ProcessError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(stderr_tail: &str, reported: &[&str]) -> AgentError {
        AgentError::ExitedBeforeReady {
            exit: ExitInfo {
                code: Some(1),
                signal: None,
                stderr_tail: stderr_tail.to_owned(),
            },
            reported: reported.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn the_cli_s_refusals_are_read_from_stderr_or_an_early_result() {
        // The texts of Claude Code 2.1.197 (recorded: `reuse`, `resume_missing`).
        let id = "2008cf90-55a2-41c7-b466-a1d1e87c6318";
        assert_eq!(
            exited(&format!("Error: Session ID {id} is already in use.\n"), &[]).launch_refusal(),
            Some(LaunchRefusal::ConversationInUse)
        );
        let missing = format!("No conversation found with session ID: {id}");
        assert_eq!(
            exited("", &[&missing]).launch_refusal(),
            Some(LaunchRefusal::ConversationNotFound)
        );
        assert_eq!(
            exited(&missing, &[]).launch_refusal(),
            Some(LaunchRefusal::ConversationNotFound)
        );
        assert_eq!(exited("Error: bad flag", &[]).launch_refusal(), None);
        assert_eq!(AgentError::NotRunning.launch_refusal(), None);
    }

    #[test]
    fn an_early_result_s_errors_are_in_the_message() {
        let shown = exited("", &["No conversation found with session ID: x"]).to_string();
        assert!(
            shown.ends_with(
                "it exited with code 1; it reported: No conversation found with session ID: x"
            ),
            "{shown}"
        );
    }
}
