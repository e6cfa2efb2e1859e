//! Turns: what a queued tell carries, how its progress reaches callers, and the worker task
//! that runs it against the agent while the actor's mailbox stays free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use iris_agent::codec::{DecodedEvent, Event};
use iris_agent::conversation::{AgentError, TurnLimits, TurnReport};
use iris_agent::process::StopGrace;
use iris_core::{
    SessionId, SessionRecord, TeamName, Timestamp, TurnFailure, TurnId, TurnRecord, TurnStatus,
    truncate_text,
};
use ractor::ActorRef;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::SessionMsg;
use super::agent::{LaunchContext, LiveAgent};
use crate::tell::{TellOutcome, TurnError, TurnEvent, TurnResult};
use iris_core::Coded;

/// Events a subscriber can fall behind by before it misses some.
const EVENT_BUFFER: usize = 256;

/// The session's side of one turn's progress: it alone holds the senders, so callers see the
/// channels close (and report `Interrupted`) if the session dies without finishing the turn.
#[derive(Debug)]
pub(crate) struct TurnProgress {
    pub turn_id: TurnId,
    outcome: watch::Sender<Option<TellOutcome>>,
    partial: Arc<Mutex<String>>,
    events: broadcast::Sender<TurnEvent>,
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
}

impl TurnProgress {
    /// A new turn's progress in session `session_id`, and the caller's side of it.
    pub fn new(session_id: SessionId, turn_id: TurnId) -> (Arc<TurnProgress>, Ticket) {
        let (events, first) = broadcast::channel(EVENT_BUFFER);
        let (outcome, outcome_rx) = watch::channel(None);
        let partial = Arc::new(Mutex::new(String::new()));
        let ticket = Ticket {
            session_id,
            turn_id,
            outcome: outcome_rx,
            partial: partial.clone(),
            events: first,
        };
        let progress = Arc::new(TurnProgress {
            turn_id,
            outcome,
            partial,
            events,
        });
        (progress, ticket)
    }

    pub fn started(&self) {
        let _ = self.events.send(TurnEvent::Started {
            turn_id: self.turn_id,
        });
    }

    /// A whole piece of text (a text block), after the text so far on a new line.
    #[cfg(test)]
    pub(crate) fn text(&self, text: String) {
        self.text_piece(&text, true);
    }

    /// More text: a new block (on a new line after the text so far) or the continuation of the
    /// current one. Subscribers get the piece as it came.
    pub(crate) fn text_piece(&self, text: &str, new_block: bool) {
        {
            let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
            if new_block && !partial.is_empty() {
                partial.push('\n');
            }
            partial.push_str(text);
        }
        let _ = self.events.send(TurnEvent::Text {
            turn_id: self.turn_id,
            text: text.to_owned(),
        });
    }

    /// The agent called a tool.
    pub(crate) fn tool_started(&self, tool_use_id: &str, tool: &str) {
        let _ = self.events.send(TurnEvent::ToolStarted {
            turn_id: self.turn_id,
            tool_use_id: tool_use_id.to_owned(),
            tool: tool.to_owned(),
        });
    }

    /// A tool call's result came back.
    pub(crate) fn tool_finished(&self, tool_use_id: &str, tool: String, ran_for: Duration) {
        let _ = self.events.send(TurnEvent::ToolFinished {
            turn_id: self.turn_id,
            tool_use_id: tool_use_id.to_owned(),
            tool,
            ran_for,
        });
    }

    /// Publishes the final outcome to every waiter and subscriber.
    pub fn finish(&self, outcome: TellOutcome) {
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
#[derive(Debug, Default)]
pub(crate) struct PartialText {
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
pub(crate) struct ToolCalls {
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

/// What a worker brings back to its session.
#[derive(Debug)]
pub(crate) struct WorkerDone {
    pub job: u64,
    /// The agent, if it is still alive and usable.
    pub agent: Option<LiveAgent>,
    /// The turn's report (`None` for a job that only needed the agent up).
    pub result: Result<Option<TurnReport>, TurnError>,
    /// When the agent last said anything (kept in memory, persisted once per turn).
    pub last_event_at: Option<Timestamp>,
    /// How long the turn ran, from the message sent (after any spawn) to its end.
    pub ran_for: Duration,
}

/// One job for a worker.
#[derive(Debug)]
pub(crate) struct WorkOrder {
    pub launch: LaunchContext,
    pub record: SessionRecord,
    pub agent: Option<LiveAgent>,
    pub job: u64,
    /// The message to send; `None` only brings the agent up.
    pub message: Option<String>,
    pub progress: Option<Arc<TurnProgress>>,
    /// The turn's limits (stall, tool and turn timeouts).
    pub limits: TurnLimits,
    pub myself: ActorRef<SessionMsg>,
}

/// Runs one job: starts the agent if there is none (telling the session as soon as it is up),
/// sends the message, streams events to the turn's subscribers, and reports back.
pub(crate) async fn work(order: WorkOrder) {
    let myself = order.myself.clone();
    let done = run(order).await;
    let _ = myself.cast(SessionMsg::TurnDone(Box::new(done)));
}

async fn run(order: WorkOrder) -> WorkerDone {
    let WorkOrder {
        launch,
        record,
        agent,
        job,
        message,
        progress,
        limits,
        myself,
    } = order;
    let done = |agent, result, last_event_at, ran_for| WorkerDone {
        job,
        agent,
        result,
        last_event_at,
        ran_for,
    };
    let mut agent = match agent.filter(|a| !a.conversation.has_exited()) {
        Some(agent) => agent,
        None => match launch.start(&record).await {
            Ok((agent, launched)) => {
                let _ = myself.cast(SessionMsg::AgentUp {
                    job,
                    launched: Box::new(launched),
                    interrupter: agent.conversation.interrupter(),
                    activity: agent.conversation.activity(),
                });
                agent
            }
            Err(error) => return done(None, Err(error), None, Duration::ZERO),
        },
    };
    let Some(message) = message else {
        agent.permit.set_busy(false);
        return done(Some(agent), Ok(None), None, Duration::ZERO);
    };
    agent.permit.set_busy(true);
    let began = Instant::now();
    let (sink, mut events) = mpsc::channel::<DecodedEvent>(EVENT_BUFFER);
    let last_event = Mutex::new(None);
    let turn = async {
        let sink = sink;
        agent.conversation.turn(&message, Some(&sink), limits).await
    };
    let forward = async {
        let mut partial = PartialText::default();
        let mut tools = ToolCalls::default();
        while let Some(decoded) = events.recv().await {
            *last_event.lock().unwrap_or_else(PoisonError::into_inner) = Some(Timestamp::now());
            if let Some(progress) = &progress {
                partial.feed(&decoded.event, progress);
                tools.feed(&decoded.event, progress);
            }
        }
    };
    let (result, ()) = tokio::join!(turn, forward);
    let ran_for = began.elapsed();
    let last_event_at = last_event
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let result = result.map(Some).map_err(agent_failure);
    if agent.conversation.has_exited() || result.is_err() {
        // Every turn error leaves the agent dead or killed (exit, stall, protocol breach, an
        // interrupt it ignored): sweep its group (grandchildren) and give the slot back.
        agent.stop(StopGrace::default()).await;
        return done(None, result, last_event_at, ran_for);
    }
    agent.permit.set_busy(false);
    done(Some(agent), result, last_event_at, ran_for)
}

/// The turn error an agent failure is reported as.
pub(crate) fn agent_failure(error: AgentError) -> TurnError {
    match error {
        AgentError::Stalled { after } => TurnError::Timeout { after },
        AgentError::ToolTimedOut {
            tool, ran, limit, ..
        } => TurnError::ToolTimeout { tool, ran, limit },
        AgentError::TurnTimedOut { limit } => TurnError::TurnTimeout { limit },
        AgentError::Exited { exit } | AgentError::ExitedBeforeReady { exit, .. } => {
            TurnError::AgentExited {
                code: exit.code,
                signal: exit.signal,
                stderr_tail: exit.stderr_tail,
            }
        }
        AgentError::InterruptTimedOut { .. } => TurnError::Cancelled,
        AgentError::NotRunning => TurnError::Interrupted {
            reason: "the agent had stopped".into(),
        },
        other @ (AgentError::Spawn(_)
        | AgentError::HandshakeTimeout { .. }
        | AgentError::HandshakeRejected { .. }) => TurnError::Spawn {
            code: other.code(),
            reason: other.to_string(),
        },
        other => TurnError::Agent {
            reason: other.to_string(),
        },
    }
}

/// The caller's outcome of a finished turn.
pub(crate) fn outcome_of(
    turn_id: TurnId,
    result: &Result<Option<TurnReport>, TurnError>,
) -> TellOutcome {
    match result {
        Ok(None) => TellOutcome::Failed {
            turn_id,
            error: TurnError::Agent {
                reason: "no message was sent to the agent".into(),
            },
        },
        Ok(Some(report)) if report.failed() => TellOutcome::Failed {
            turn_id,
            error: TurnError::ErrorResult {
                subtype: report.result.subtype.clone(),
                message: error_message(report),
                api_error_status: report.result.api_error_status,
            },
        },
        Ok(Some(report)) => {
            let usage = report.usage_totals();
            TellOutcome::Completed(TurnResult {
                turn_id,
                text: report.text.clone(),
                subtype: report.result.subtype.clone(),
                is_error: report.result.is_error,
                cost_usd: usage.cost_usd,
                usage,
                duration_ms: report.result.duration_ms,
                num_turns: report.result.num_turns,
            })
        }
        Err(error) => TellOutcome::Failed {
            turn_id,
            error: error.clone(),
        },
    }
}

/// What an error result says: its text, else its `errors`, else the assistant's text.
pub(crate) fn error_message(report: &TurnReport) -> String {
    let result = &report.result;
    match result.result.as_deref() {
        Some(text) if !text.trim().is_empty() => text.to_owned(),
        _ if !result.errors.is_empty() => result.errors.join("; "),
        _ => report.text.clone(),
    }
}

/// The final ledger row of a turn.
pub(crate) fn finished_row(
    mut row: TurnRecord,
    outcome: &TellOutcome,
    report: Option<&TurnReport>,
    limit: usize,
) -> TurnRecord {
    row.finished_at = Some(Timestamp::now());
    if let Some(report) = report {
        let (text, truncated) = truncate_text(&report.text, limit);
        row.text = Some(text);
        row.text_truncated = truncated;
        row.subtype = Some(report.result.subtype.clone());
        row.is_error = report.failed();
        row.usage = report.usage_totals();
        row.duration_ms = Some(report.result.duration_ms);
        row.num_turns = Some(report.result.num_turns);
    }
    match outcome {
        TellOutcome::Completed(_) => row.status = TurnStatus::Completed,
        TellOutcome::Failed { error, .. } => {
            row.status = match error {
                TurnError::Cancelled => TurnStatus::Cancelled,
                TurnError::Interrupted { .. } => TurnStatus::Interrupted,
                _ => TurnStatus::Failed,
            };
            row.error = Some(TurnFailure {
                code: error.code(),
                message: error.to_string(),
            });
        }
        TellOutcome::Accepted { .. } | TellOutcome::CallerTimeout { .. } => {}
    }
    row
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
