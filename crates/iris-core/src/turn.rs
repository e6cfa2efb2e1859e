//! The turn ledger: one durable row per "tell" turn.
//!
//! A [`TurnRecord`] is written when a message is queued for a session, rewritten when the agent
//! starts on it and again when it ends, so that what was asked, what came back and what it cost
//! can be read after the fact, and a restarted node can tell which turns it cut short.
//!
//! The store encodes [`TurnRecord`] with postcard, which writes fields in declaration order and
//! enum variants ([`TurnStatus`], [`ErrorCode`]) by position: add new fields only together with a
//! new encoding version in `iris-store`, and new variants only at the end.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::record::UsageTotals;
use crate::session_id::{RequestId, SessionId, TurnId};
use crate::status::{UnknownStateError, snake_enum};
use crate::team::TeamName;
use crate::time::Timestamp;

snake_enum! {
    /// Where a turn is in its life. `queued` and `running` are open; the others are final.
    TurnStatus, "turn status",
    "queued, running, completed, failed, cancelled, interrupted" {
        /// Accepted and waiting for the agent; the status of a new turn.
        #[default]
        Queued => "queued",
        /// The agent is working on it.
        Running => "running",
        /// The agent answered (its result may still report an error: see `is_error`).
        Completed => "completed",
        /// The turn failed: the agent crashed, stalled, timed out or could not start.
        Failed => "failed",
        /// The sender (or an operator) cancelled it.
        Cancelled => "cancelled",
        /// Cut short because the node stopped while it was queued or running.
        Interrupted => "interrupted",
    }
}

impl TurnStatus {
    /// Whether the turn has ended: `completed`, `failed`, `cancelled` or `interrupted`.
    pub const fn is_final(self) -> bool {
        !matches!(self, TurnStatus::Queued | TurnStatus::Running)
    }
}

/// Why a turn did not complete: a stable code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnFailure {
    /// The stable classification.
    pub code: ErrorCode,
    /// What happened, and what to do.
    pub message: String,
}

impl TurnFailure {
    /// The message of a turn interrupted because its node stopped.
    pub const NODE_STOPPED: &'static str = "the node stopped while this turn was queued or running";

    /// A failure with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TurnFailure {
            code,
            message: message.into(),
        }
    }

    /// The failure recorded on a turn that was open when its node stopped
    /// ([`ErrorCode::ProcessError`], [`TurnFailure::NODE_STOPPED`]).
    pub fn node_stopped() -> Self {
        TurnFailure::new(ErrorCode::ProcessError, Self::NODE_STOPPED)
    }
}

/// One turn of a session: the message sent, and what became of it.
///
/// Rows are keyed by `(session_id, seq)`; `seq` counts a session's turns from 1. Message and
/// result text are stored cut to the configured limit (`settings.turn_text_limit`), with a flag
/// saying whether anything was cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// The session the turn belongs to.
    pub session_id: SessionId,
    /// The turn's position in its session, from 1.
    pub seq: u64,
    /// The turn's own id (time-ordered), unique across the store.
    pub turn_id: TurnId,
    /// The team that sent the message.
    pub from: TeamName,
    /// The message, possibly cut (see `message_truncated`).
    pub message: String,
    /// Whether `message` was cut to the text limit.
    pub message_truncated: bool,
    /// Where the turn is in its life.
    pub status: TurnStatus,
    /// When the message was accepted.
    pub queued_at: Timestamp,
    /// When the agent started on it.
    pub started_at: Option<Timestamp>,
    /// When it ended (any final status).
    pub finished_at: Option<Timestamp>,
    /// The agent's result text, possibly cut (see `text_truncated`).
    pub text: Option<String>,
    /// Whether `text` was cut to the text limit.
    pub text_truncated: bool,
    /// The result's subtype as the agent reported it (such as `success`).
    pub subtype: Option<String>,
    /// Whether the agent reported its result as an error.
    pub is_error: bool,
    /// The turn's cost and tokens, as the agent reported them.
    pub usage: UsageTotals,
    /// How long the agent said the turn took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// How many model turns the agent said it used.
    pub num_turns: Option<u32>,
    /// Why the turn did not complete, if it did not.
    pub error: Option<TurnFailure>,
    /// Whether the conversation's history was lost before this turn: the agent could not
    /// resume it (its transcript was missing or empty), so it was started again under the same
    /// id without its earlier context.
    pub history_lost: bool,
    /// The id its caller gave the tell (a cluster node gives every tell it forwards one): a
    /// retry with the same id gets this turn's outcome instead of a second turn.
    pub request_id: Option<RequestId>,
    /// Whether, once this turn's cost was counted, a budget cap that covers it stood at 80 % or
    /// more of its limit (see `iris budget`).
    #[serde(default)]
    pub budget_warning: bool,
}

impl TurnRecord {
    /// A newly queued turn: status `queued` at `now`, `message` cut to `text_limit` bytes (on a
    /// character boundary), nothing else known yet.
    pub fn queued(
        session_id: SessionId,
        seq: u64,
        turn_id: TurnId,
        from: TeamName,
        message: &str,
        text_limit: usize,
        now: Timestamp,
    ) -> Self {
        let (message, message_truncated) = truncate_text(message, text_limit);
        TurnRecord {
            session_id,
            seq,
            turn_id,
            from,
            message,
            message_truncated,
            status: TurnStatus::Queued,
            queued_at: now,
            started_at: None,
            finished_at: None,
            text: None,
            text_truncated: false,
            subtype: None,
            is_error: false,
            usage: UsageTotals::default(),
            duration_ms: None,
            num_turns: None,
            error: None,
            history_lost: false,
            request_id: None,
            budget_warning: false,
        }
    }

    /// Sets the result text, cut to `text_limit` bytes (on a character boundary).
    pub fn set_text(&mut self, text: &str, text_limit: usize) {
        let (text, truncated) = truncate_text(text, text_limit);
        self.text = Some(text);
        self.text_truncated = truncated;
    }

    /// Whether the turn has ended (see [`TurnStatus::is_final`]).
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}

/// `text` cut to at most `max_bytes` bytes without splitting a character, and whether anything
/// was cut. The result is the longest such prefix of `text`.
pub fn truncate_text(text: &str, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text.to_owned(), false);
    }
    let mut end = max_bytes;
    // Index 0 is always a boundary, so this stops.
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text.get(..end).unwrap_or_default().to_owned(), true)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> TurnRecord {
        let mut turn = TurnRecord::queued(
            SessionId::new_v4(),
            3,
            TurnId::new(),
            TeamName::new("alpha").unwrap(),
            "héllo wörld",
            5,
            Timestamp::from_millis(1_000),
        );
        turn.status = TurnStatus::Failed;
        turn.started_at = Some(Timestamp::from_millis(1_500));
        turn.finished_at = Some(Timestamp::from_millis(2_000));
        turn.set_text("ok", 5);
        turn.subtype = Some("error_during_execution".into());
        turn.is_error = true;
        turn.usage.cost_usd = 0.5;
        turn.usage.output_tokens = 7;
        turn.duration_ms = Some(500);
        turn.num_turns = Some(2);
        turn.error = Some(TurnFailure::new(ErrorCode::Timeout, "too slow"));
        turn
    }

    #[test]
    fn statuses_round_trip_and_know_which_are_final() {
        assert_eq!(TurnStatus::ALL.len(), 6);
        for (i, s) in TurnStatus::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(s.to_string().parse::<TurnStatus>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        let open: Vec<_> = TurnStatus::ALL.iter().filter(|s| !s.is_final()).collect();
        assert_eq!(open, [&TurnStatus::Queued, &TurnStatus::Running]);
        assert_eq!(TurnStatus::default(), TurnStatus::Queued);
        let e = "done".parse::<TurnStatus>().unwrap_err();
        assert!(e.to_string().contains("turn status"), "{e}");
        assert!(e.to_string().contains("interrupted"), "{e}");
    }

    #[test]
    fn queued_cuts_the_message_on_a_character_boundary() {
        let turn = sample();
        assert_eq!(turn.message, "héll");
        assert!(turn.message_truncated);
        assert_eq!(turn.text.as_deref(), Some("ok"));
        assert!(!turn.text_truncated);
        let fresh = TurnRecord::queued(
            turn.session_id,
            1,
            TurnId::new(),
            turn.from.clone(),
            "short",
            100,
            Timestamp::EPOCH,
        );
        assert_eq!(fresh.message, "short");
        assert!(!fresh.message_truncated);
        assert_eq!(fresh.status, TurnStatus::Queued);
        assert!(!fresh.is_final());
        assert_eq!(fresh.started_at, None);
        assert_eq!(fresh.error, None);
    }

    #[test]
    fn a_turn_round_trips_through_json_and_postcard() {
        let turn = sample();
        let json = serde_json::to_string(&turn).unwrap();
        assert!(json.contains("\"status\":\"failed\""), "{json}");
        assert!(json.contains("\"code\":\"TIMEOUT\""), "{json}");
        assert_eq!(serde_json::from_str::<TurnRecord>(&json).unwrap(), turn);
        let bytes = postcard::to_allocvec(&turn).unwrap();
        assert_eq!(postcard::from_bytes::<TurnRecord>(&bytes).unwrap(), turn);
    }

    #[test]
    fn node_stopped_is_a_process_error() {
        let failure = TurnFailure::node_stopped();
        assert_eq!(failure.code, ErrorCode::ProcessError);
        assert_eq!(failure.message, TurnFailure::NODE_STOPPED);
    }

    #[test]
    fn truncate_text_edges() {
        assert_eq!(truncate_text("", 0), (String::new(), false));
        assert_eq!(truncate_text("abc", 0), (String::new(), true));
        assert_eq!(truncate_text("abc", 3), ("abc".to_owned(), false));
        assert_eq!(truncate_text("€", 2), (String::new(), true));
        assert_eq!(truncate_text("a€", 3), ("a".to_owned(), true));
        assert_eq!(truncate_text("a€", 4), ("a€".to_owned(), false));
    }

    proptest! {
        #[test]
        fn truncate_text_is_the_longest_prefix_that_fits(text in ".{0,40}", max in 0usize..64) {
            let (cut, truncated) = truncate_text(&text, max);
            prop_assert!(cut.len() <= max);
            prop_assert!(text.starts_with(&cut));
            prop_assert_eq!(truncated, cut.len() < text.len());
            prop_assert_eq!(truncated, text.len() > max);
            if truncated {
                // The next character would not have fitted.
                let next = text[cut.len()..].chars().next().map_or(0, char::len_utf8);
                prop_assert!(cut.len() + next > max);
            }
        }
    }
}
