//! One turn: what a queued tell carries (its ledger row, built once), and how its progress
//! (events, partial text, the outcome) reaches its callers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use iris_agent::codec::Event;
use iris_core::{Coded, Pair, SessionId, TeamName, Timestamp, TurnId, TurnRecord, TurnStatus};
use iris_store::PendingWrite;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;

use crate::events::{EventBus, EventKind};
use crate::tell::{TellOutcome, TurnEvent};

/// Events a subscriber can fall behind by before it misses some.
pub(super) const EVENT_BUFFER: usize = 256;

/// The session's side of one turn's progress: it alone holds the senders, so callers see the
/// channels close (and report `Interrupted`) if the session dies without finishing the turn.
#[derive(Debug)]
pub(crate) struct TurnProgress {
    pub turn_id: TurnId,
    outcome: watch::Sender<Option<TellOutcome>>,
    partial: Arc<Mutex<String>>,
    events: broadcast::Sender<TurnEvent>,
    /// The runtime's event stream, for the turns of a live session.
    stream: Option<EventSink>,
}

/// Where a turn's progress is published besides its callers: the runtime's event stream,
/// under the pair.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    pub bus: Arc<EventBus>,
    pub pair: Pair,
}

impl EventSink {
    fn publish(&self, kind: EventKind) {
        self.bus.publish(Some(&self.pair), kind);
    }
}

/// The caller's side of one turn's progress.
#[derive(Debug)]
pub(crate) struct Ticket {
    /// The session that queued the turn.
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub outcome: watch::Receiver<Option<TellOutcome>>,
    pub partial: Arc<Mutex<String>>,
    /// Subscribed before the turn could start, so nothing is missed.
    pub events: broadcast::Receiver<TurnEvent>,
    /// The commit of the turn's first ledger row, when it was asked for (a caller that will
    /// hold only the turn id must be able to look it up).
    pub first_row: Option<oneshot::Receiver<PendingWrite>>,
}

impl Ticket {
    /// The ticket of a turn found in the ledger, for a caller that joins it late: with its
    /// final outcome, or, for a turn left open by an earlier actor of the session, with none
    /// (its callers hear it was interrupted).
    pub fn of_ledger(turn: &TurnRecord) -> Ticket {
        let (progress, ticket) =
            TurnProgress::with_first_row(turn.session_id, turn.turn_id, None, None);
        if let Some(outcome) = TellOutcome::of_finished(turn) {
            progress.outcome.send_replace(Some(outcome));
        }
        ticket
    }
}

impl TurnProgress {
    /// A new turn's progress in session `session_id`, and the caller's side of it.
    #[cfg(test)]
    pub fn new(session_id: SessionId, turn_id: TurnId) -> (Arc<TurnProgress>, Ticket) {
        Self::with_first_row(session_id, turn_id, None, None)
    }

    /// [`TurnProgress::new`], with the receiving end of the first row's commit in the ticket,
    /// and published to `stream` as well.
    pub fn with_first_row(
        session_id: SessionId,
        turn_id: TurnId,
        first_row: Option<oneshot::Receiver<PendingWrite>>,
        stream: Option<EventSink>,
    ) -> (Arc<TurnProgress>, Ticket) {
        let (events, first) = broadcast::channel(EVENT_BUFFER);
        let (outcome, outcome_rx) = watch::channel(None);
        let partial = Arc::new(Mutex::new(String::new()));
        let ticket = Ticket {
            session_id,
            turn_id,
            outcome: outcome_rx,
            partial: partial.clone(),
            events: first,
            first_row,
        };
        let progress = Arc::new(TurnProgress {
            turn_id,
            outcome,
            partial,
            events,
            stream,
        });
        (progress, ticket)
    }

    /// Another caller's side of this turn (a retried request that joins it): the outcome
    /// (there at once if the turn has finished), the text so far, and the events from now on.
    pub fn ticket(&self, session_id: SessionId) -> Ticket {
        Ticket {
            session_id,
            turn_id: self.turn_id,
            outcome: self.outcome.subscribe(),
            partial: self.partial.clone(),
            events: self.events.subscribe(),
            first_row: None,
        }
    }

    /// Whether the outcome is published (the turn's final row is durable by then).
    pub fn is_finished(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    pub fn started(&self) {
        let _ = self.events.send(TurnEvent::Started {
            turn_id: self.turn_id,
        });
        self.stream(|turn_id| EventKind::TurnStarted { turn_id });
    }

    /// Publishes to the runtime's event stream, when the turn has one.
    fn stream(&self, kind: impl FnOnce(TurnId) -> EventKind) {
        if let Some(stream) = &self.stream {
            stream.publish(kind(self.turn_id));
        }
    }

    /// A whole piece of text (a text block), after the text so far on a new line.
    #[cfg(test)]
    pub(crate) fn text(&self, text: String) {
        self.text_piece(&text, true);
    }

    /// More text: a new block (on a new line after the text so far) or the continuation of the
    /// current one. Subscribers get the piece as it came.
    pub(crate) fn text_piece(&self, text: &str, new_block: bool) {
        let started_with_text = {
            let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
            let had_text = !partial.is_empty();
            if new_block && had_text {
                partial.push('\n');
            }
            partial.push_str(text);
            had_text
        };
        let _ = self.events.send(TurnEvent::Text {
            turn_id: self.turn_id,
            text: text.to_owned(),
        });
        // As the text so far reads: a new block after earlier text starts on a new line.
        let shown = if new_block && started_with_text {
            format!("\n{text}")
        } else {
            text.to_owned()
        };
        self.stream(|turn_id| EventKind::Text {
            turn_id,
            text: shown,
        });
    }

    /// The agent called a tool.
    pub(crate) fn tool_started(&self, tool_use_id: &str, tool: &str) {
        let _ = self.events.send(TurnEvent::ToolStarted {
            turn_id: self.turn_id,
            tool_use_id: tool_use_id.to_owned(),
            tool: tool.to_owned(),
        });
        self.stream(|turn_id| EventKind::ToolStarted {
            turn_id,
            tool: tool.to_owned(),
            tool_use_id: tool_use_id.to_owned(),
        });
    }

    /// A tool call's result came back.
    pub(crate) fn tool_finished(&self, tool_use_id: &str, tool: String, ran_for: Duration) {
        self.stream(|turn_id| EventKind::ToolFinished {
            turn_id,
            tool: tool.clone(),
            tool_use_id: tool_use_id.to_owned(),
            ran_for_ms: u64::try_from(ran_for.as_millis()).unwrap_or(u64::MAX),
        });
        let _ = self.events.send(TurnEvent::ToolFinished {
            turn_id: self.turn_id,
            tool_use_id: tool_use_id.to_owned(),
            tool,
            ran_for,
        });
    }

    /// Publishes the final outcome to every waiter and subscriber.
    pub fn finish(&self, outcome: TellOutcome) {
        let turn_id = self.turn_id;
        let ended = match &outcome {
            TellOutcome::Completed(result) => Some(EventKind::TurnCompleted {
                turn_id,
                cost_usd: result.cost_usd,
                usage: result.usage,
                duration_ms: Some(result.duration_ms),
            }),
            TellOutcome::Failed { error, .. } => Some(EventKind::TurnFailed {
                turn_id,
                status: error.turn_status(),
                code: error.code().to_string(),
                message: error.to_string(),
            }),
            // What a caller may hear before the end; a turn never finishes with it.
            TellOutcome::Accepted { .. } | TellOutcome::CallerTimeout { .. } => None,
        };
        if let Some(ended) = ended {
            self.stream(|_| ended);
        }
        let _ = self.events.send(TurnEvent::Finished {
            outcome: outcome.clone(),
        });
        self.outcome.send_replace(Some(outcome));
    }
}

/// Turns the agent's events into the partial text callers see while the turn runs.
///
/// With `--include-partial-messages` the CLI prints each text block's deltas as they stream,
/// then the whole block again as an `assistant` event; without it (or from an agent that
/// ignores it) only the `assistant` events come. Each text block is taken once: from its
/// deltas when it streamed, else from its `assistant` event. Blocks are joined with a newline.
///
/// iris-agent's `Conversation::turn` keeps the `assistant` texts of a turn too, but only as the
/// answer of a `result` event that carries no text. The two are kept apart on purpose: this one
/// is what a caller sees before the end (`CallerTimeout`, `partial`), fed only when a caller can
/// look (a turn with a progress sink), while the conversation's is the turn's final answer, which
/// must not depend on whether anyone subscribed.
#[derive(Debug, Default)]
pub(super) struct PartialText {
    /// Text blocks that streamed as deltas and whose `assistant` event is still to come.
    streamed_blocks: usize,
    /// The current streamed block has produced text already.
    in_block: bool,
}

impl PartialText {
    pub(crate) fn feed(&mut self, event: &Event, progress: &TurnProgress) {
        match event {
            Event::StreamEvent(stream) if stream.starts_text_block() => {
                self.streamed_blocks += 1;
                self.in_block = false;
            }
            Event::StreamEvent(stream) => {
                if let Some(delta) = stream.text_delta().filter(|d| !d.is_empty()) {
                    progress.text_piece(delta, !self.in_block);
                    self.in_block = true;
                }
            }
            Event::Assistant(assistant) => {
                for block in assistant.message.text_blocks() {
                    if self.streamed_blocks > 0 {
                        self.streamed_blocks -= 1;
                    } else if !block.is_empty() {
                        progress.text_piece(block, true);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Turns the agent's events into tool start and end events: a `tool_use` block of an
/// `assistant` event opens a call, a `tool_result` block of a later `user` event closes it.
#[derive(Debug, Default)]
pub(super) struct ToolCalls {
    /// Open calls: tool use id → (tool name, when it opened).
    open: HashMap<String, (String, Instant)>,
}

impl ToolCalls {
    pub(crate) fn feed(&mut self, event: &Event, progress: &TurnProgress) {
        match event {
            Event::Assistant(assistant) => {
                for (id, tool) in assistant.message.tool_uses() {
                    if !self.open.contains_key(id) {
                        self.open
                            .insert(id.to_owned(), (tool.to_owned(), Instant::now()));
                        progress.tool_started(id, tool);
                    }
                }
            }
            Event::User(user) => {
                for id in user.tool_result_ids() {
                    if let Some((tool, since)) = self.open.remove(id) {
                        progress.tool_finished(id, tool, since.elapsed());
                    }
                }
            }
            _ => {}
        }
    }
}

/// A turn waiting in (or taken from) a session's queue.
#[derive(Debug)]
pub(crate) struct Turn {
    /// What the agent is sent, whole.
    pub message: String,
    pub queued_instant: Instant,
    /// The turn's ledger row as far as it has come, built once when it is queued (the message
    /// cut to the text limit): `queued`, then `running` from `start`.
    pub row: TurnRecord,
    pub progress: Arc<TurnProgress>,
    /// Where the commit of the first row goes, when the caller asked for it: that row is then
    /// written with `Store::send` rather than queued unawaited.
    pub first_row: Option<oneshot::Sender<PendingWrite>>,
}

impl Turn {
    /// A turn of session `session_id`, queued now as number `seq`.
    pub fn queued(
        session_id: SessionId,
        seq: u64,
        from: TeamName,
        message: String,
        text_limit: usize,
        progress: Arc<TurnProgress>,
        first_row: Option<oneshot::Sender<PendingWrite>>,
    ) -> Turn {
        let row = TurnRecord::queued(
            session_id,
            seq,
            progress.turn_id,
            from,
            &message,
            text_limit,
            Timestamp::now(),
        );
        Turn {
            message,
            queued_instant: Instant::now(),
            row,
            progress,
            first_row,
        }
    }

    pub fn id(&self) -> TurnId {
        self.progress.turn_id
    }

    /// The agent is handed the turn now.
    pub fn start(&mut self) {
        self.row.status = TurnStatus::Running;
        self.row.started_at = Some(Timestamp::now());
    }
}

#[cfg(test)]
mod tests {
    use iris_agent::codec::Event;
    use serde_json::json;

    use super::*;

    fn partial_of(lines: &[serde_json::Value]) -> String {
        let (progress, ticket) = TurnProgress::new(SessionId::new_v4(), TurnId::new());
        let mut partial = PartialText::default();
        for line in lines {
            partial.feed(&Event::from_value(line.clone()), &progress);
        }
        ticket
            .partial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn assistant(texts: &[&str]) -> serde_json::Value {
        let content: Vec<_> = texts
            .iter()
            .map(|t| json!({"type": "text", "text": t}))
            .collect();
        json!({"type": "assistant", "message": {"id": "m", "model": "x", "content": content}})
    }

    fn stream(event: serde_json::Value) -> serde_json::Value {
        json!({"type": "stream_event", "event": event})
    }

    fn block_start() -> serde_json::Value {
        stream(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}))
    }

    fn delta(text: &str) -> serde_json::Value {
        stream(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": text}}))
    }

    #[test]
    fn a_tool_call_starts_at_its_tool_use_and_finishes_at_its_result() {
        let (progress, mut ticket) = TurnProgress::new(SessionId::new_v4(), TurnId::new());
        let mut tools = ToolCalls::default();
        let tool_use = json!({"type": "assistant", "message": {"id": "m", "model": "x",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                "input": {"command": "make"}}]}});
        let result = json!({"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}});
        for line in [tool_use, result.clone(), result] {
            tools.feed(&Event::from_value(line), &progress);
        }
        let turn_id = progress.turn_id;
        match ticket.events.try_recv() {
            Ok(TurnEvent::ToolStarted {
                turn_id: id,
                tool_use_id,
                tool,
            }) => {
                assert_eq!(
                    (id, tool_use_id.as_str(), tool.as_str()),
                    (turn_id, "toolu_1", "Bash")
                );
            }
            other => panic!("expected the tool's start, got {other:?}"),
        }
        match ticket.events.try_recv() {
            Ok(TurnEvent::ToolFinished {
                tool_use_id, tool, ..
            }) => assert_eq!((tool_use_id.as_str(), tool.as_str()), ("toolu_1", "Bash")),
            other => panic!("expected the tool's end, got {other:?}"),
        }
        assert!(
            ticket.events.try_recv().is_err(),
            "a repeated result is not a second end"
        );
    }

    #[test]
    fn without_deltas_each_assistant_block_is_a_line() {
        assert_eq!(
            partial_of(&[assistant(&["one"]), assistant(&["two", "three"])]),
            "one\ntwo\nthree"
        );
    }

    #[test]
    fn streamed_blocks_come_from_their_deltas_and_are_not_repeated() {
        // As the real CLI prints them with --include-partial-messages: each block's deltas,
        // then the whole block as an `assistant` event.
        let lines = [
            block_start(),
            delta("after"),
            delta(" tool"),
            assistant(&["after tool"]),
            block_start(),
            delta("second"),
            assistant(&["second"]),
        ];
        assert_eq!(partial_of(&lines), "after tool\nsecond");
    }
}
