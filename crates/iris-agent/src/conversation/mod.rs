//! A conversation with one agent process: handshake, turns, interrupt, stop.
//!
//! [`Conversation::start`] spawns the agent, starts the tasks that own its pipes, and completes
//! the `initialize` handshake (no model call, no cost). [`Conversation::turn`] sends one user
//! message and streams every event until the turn's `result`. Every wait is bounded, and an
//! agent that exits is reported at once with its exit status and stderr tail, never by waiting
//! out a timeout. A turn is judged by its progress, not its silence ([`liveness`]): a silent
//! tool or a busy CPU keeps it alive, a frozen agent does not. What the agent is doing is
//! published as an [`Activity`] ([`Conversation::activity`]).

mod cost;
mod error;
mod io;
pub mod liveness;
mod permission;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iris_core::UsageTotals;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use error::{AgentError, LaunchRefusal};
pub use liveness::{Activity, TurnLimits};
pub use permission::{
    ConfiguredPolicy, Decision, DecisionFuture, PermissionPolicy, PermissionRequest,
};

use crate::codec::{
    DEFAULT_MAX_LINE, DecodedEvent, Event, HostRequest, RequestIds, ResultEvent, SystemEvent,
    control_request, user_message,
};
use crate::containment::Containment;
use crate::process::{AgentProcess, DEFAULT_STDERR_TAIL, ExitInfo, StopGrace, StopOutcome};
use cost::RunningCost;
use io::ReaderMsg;
use liveness::{Liveness, Verdict};

/// After the agent exits mid-turn, how long to keep reading what it printed before the exit.
const EXIT_DRAIN: Duration = Duration::from_millis(200);

/// Limits of a conversation, and how its agent is contained.
#[derive(Debug, Clone)]
pub struct ConversationOptions {
    /// How long the spawn plus the `initialize` handshake may take.
    pub spawn_timeout: Duration,
    /// After an interrupt, how long the agent has to end the turn before it is killed.
    pub interrupt_grace: Duration,
    /// The longest stdout line accepted.
    pub max_line: usize,
    /// How much stderr to keep for error reports.
    pub stderr_tail: usize,
    /// What holds the agent and everything it starts (default: its process group only).
    pub containment: Containment,
}

impl Default for ConversationOptions {
    fn default() -> Self {
        ConversationOptions {
            spawn_timeout: Duration::from_secs(20),
            interrupt_grace: Duration::from_secs(10),
            max_line: DEFAULT_MAX_LINE,
            stderr_tail: DEFAULT_STDERR_TAIL,
            containment: Containment::default(),
        }
    }
}

/// How a turn ended, with everything its `result` event reported.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnReport {
    /// The turn's text: the `result` event's `result` when it has one (the CLI puts the final
    /// answer there), else every text block of every assistant message, joined with newlines.
    /// The whole messages stay available as events.
    pub text: String,
    /// The `result` event.
    pub result: ResultEvent,
    /// What this turn cost, in US dollars: the agent's running total minus the previous
    /// result's of the same process (0 when the agent misreported; a warning is logged).
    pub cost_usd: f64,
    /// Whether the agent confirmed a compaction during the turn (`system/compact_boundary`).
    pub compacted: bool,
    /// The conversation id after this turn, if the agent reported one.
    pub session_id: Option<String>,
    /// Whether the agent reported a different conversation id than before (persist it).
    pub session_id_changed: bool,
}

impl TurnReport {
    /// Whether the turn failed: an error result or an error subtype.
    pub fn failed(&self) -> bool {
        self.result.is_failure()
    }

    /// The turn's cost and tokens, in the form session records accumulate.
    pub fn usage_totals(&self) -> UsageTotals {
        let usage = self.result.usage.unwrap_or_default();
        UsageTotals {
            cost_usd: self.cost_usd,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            cache_read_input_tokens: usage.cache_read_input_tokens,
        }
    }
}

/// Interrupts one turn: the turn in flight when it was made, or else the next turn to start.
/// Cheap to clone; usable while that turn runs.
///
/// An interrupt that comes before its turn has sent its message is kept, and sent right after
/// the message: a turn is never started unaware that it was already cancelled. Later turns are
/// not affected.
#[derive(Debug, Clone)]
pub struct Interrupter {
    writer: mpsc::WeakUnboundedSender<String>,
    ids: Arc<RequestIds>,
    requested: watch::Sender<Option<PendingInterrupt>>,
    /// The number of turns whose message has been sent, shared with the conversation.
    sent: Arc<AtomicU64>,
    /// The turn this interrupter is for (1 = the conversation's first).
    turn: u64,
}

/// An interrupt requested for turn number `turn`, at `at`.
#[derive(Debug, Clone, Copy)]
struct PendingInterrupt {
    turn: u64,
    at: Instant,
}

impl Interrupter {
    /// Sends an `interrupt` control request (once its turn has sent its message). The turn
    /// then has the grace period to end with a `result`; otherwise the agent is killed.
    pub fn interrupt(&self) {
        let Some(writer) = self.writer.upgrade() else {
            return;
        };
        let turn = self.turn;
        self.requested.send_if_modified(|pending| {
            let first = pending.is_none_or(|p| p.turn != turn);
            if first {
                *pending = Some(PendingInterrupt {
                    turn,
                    at: Instant::now(),
                });
            }
            first
        });
        // The turn sends any interrupt pending when its message is out; checked after
        // recording, so one of the two always sends it (both may: a second is harmless).
        if self.sent.load(Ordering::SeqCst) >= turn {
            let id = self.ids.next_id();
            let _ = writer.send(control_request(&id, &HostRequest::Interrupt));
        }
    }
}

/// A live agent process holding one conversation.
#[derive(Debug)]
pub struct Conversation {
    process: AgentProcess,
    writer: Option<mpsc::UnboundedSender<String>>,
    events: mpsc::Receiver<ReaderMsg>,
    ids: Arc<RequestIds>,
    interrupts: watch::Sender<Option<PendingInterrupt>>,
    /// Turns whose message has been sent.
    sent_turns: Arc<AtomicU64>,
    session_id: Option<String>,
    /// The process's running total cost, from which each turn's own cost is measured.
    running_cost: RunningCost,
    /// User messages sent whose `result` has not been read: a turn whose future was dropped
    /// leaves one behind, and its result must not be taken for the next turn's.
    unfinished_turns: usize,
    options: ConversationOptions,
    /// What the agent is doing, for anyone watching ([`Conversation::activity`]).
    activity: watch::Sender<Activity>,
    tasks: Vec<JoinHandle<()>>,
}

/// Sets the activity back to idle when a turn ends, however it ends (its future dropped too).
struct IdleOnDrop(watch::Sender<Activity>);

impl Drop for IdleOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(Activity::Idle);
    }
}

impl Conversation {
    /// Spawns `command` and completes the handshake within `options.spawn_timeout`.
    pub async fn start(
        command: Command,
        policy: Arc<dyn PermissionPolicy>,
        options: ConversationOptions,
    ) -> Result<Conversation, AgentError> {
        let mut process = AgentProcess::spawn(command, options.stderr_tail, &options.containment)?;
        let (Some(stdin), Some(stdout)) = (process.take_stdin(), process.take_stdout()) else {
            return Err(AgentError::NotRunning);
        };
        let (writer, lines) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(1024);
        let tasks = vec![
            tokio::spawn(io::write_loop(stdin, lines)),
            tokio::spawn(io::read_loop(
                stdout,
                options.max_line,
                events_tx,
                writer.downgrade(),
                policy,
            )),
        ];
        let mut conversation = Conversation {
            process,
            writer: Some(writer),
            events,
            ids: Arc::new(RequestIds::new()),
            interrupts: watch::channel(None).0,
            sent_turns: Arc::new(AtomicU64::new(0)),
            session_id: None,
            running_cost: RunningCost::default(),
            unfinished_turns: 0,
            options,
            activity: watch::channel(Activity::Idle).0,
            tasks,
        };
        conversation.handshake().await?;
        Ok(conversation)
    }

    async fn handshake(&mut self) -> Result<(), AgentError> {
        let id = self.ids.next_id();
        self.send(control_request(&id, &HostRequest::Initialize))?;
        let deadline = Instant::now() + self.options.spawn_timeout;
        let mut exit = self.process.exit_watch();
        // A CLI that refuses the conversation prints a failed `result` and exits.
        let mut reported = Vec::new();
        loop {
            tokio::select! {
                msg = self.events.recv() => match msg {
                    Some(ReaderMsg::Event(decoded)) => {
                        self.note_session_id(&decoded.event);
                        if let Event::Result(result) = &decoded.event {
                            reported.extend(result.errors.iter().cloned());
                        }
                        if let Event::ControlResponse(response) = &decoded.event
                            && response.request_id == id
                        {
                            return if response.is_success() {
                                Ok(())
                            } else {
                                Err(AgentError::HandshakeRejected {
                                    message: response.error.clone().unwrap_or_default(),
                                })
                            };
                        }
                    }
                    Some(ReaderMsg::Failed(error)) => return Err(self.fault(error.into())),
                    None => return Err(self.exited_before_ready(reported).await),
                },
                _ = has_exited(&mut exit) => {
                    // What it printed before exiting may still be in the pipe.
                    self.drain_results(&mut reported).await;
                    return Err(self.exited_before_ready(reported).await);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.process.kill();
                    return Err(AgentError::HandshakeTimeout { after: self.options.spawn_timeout });
                }
            }
        }
    }

    /// Sends `text` as one user message and waits for the turn's `result`, forwarding every
    /// event to `sink` (if given) as it arrives; a full sink misses events rather than stall the
    /// turn, so size it for the events it should see.
    ///
    /// `limits` (a [`TurnLimits`], or a `Duration` for the stall limit alone) bound the turn:
    /// when it makes no progress (no event, no open tool call within `tool_timeout`, no CPU use
    /// by the agent's processes) for `stall`, the agent is killed and the turn fails with
    /// [`AgentError::Stalled`] (or [`AgentError::ToolTimedOut`] when a tool call outlived its
    /// timeout); past `turn_timeout` it fails with [`AgentError::TurnTimedOut`]. No limit fails
    /// the turn before what the agent had already printed is read.
    pub async fn turn(
        &mut self,
        text: &str,
        sink: Option<&mpsc::Sender<DecodedEvent>>,
        limits: impl Into<TurnLimits>,
    ) -> Result<TurnReport, AgentError> {
        let limits = limits.into();
        if self.process.exit_info().is_some() {
            return Err(AgentError::NotRunning);
        }
        let turn = self.sent_turns.load(Ordering::SeqCst) + 1;
        self.interrupts
            .send_if_modified(|pending| pending.take_if(|p| p.turn != turn).is_some());
        self.send(user_message(text))?;
        self.sent_turns.store(turn, Ordering::SeqCst);
        if self.interrupts.borrow().is_some() {
            // Interrupted before its message went out: the agent must hear it after.
            let id = self.ids.next_id();
            self.send(control_request(&id, &HostRequest::Interrupt))?;
        }
        let mut abandoned = self.unfinished_turns;
        self.unfinished_turns += 1;
        let mut texts: Vec<String> = Vec::new();
        let mut compacted = false;
        let mut exit = self.process.exit_watch();
        let mut interrupted = self.interrupts.subscribe();
        let mut liveness = Liveness::new(limits, Instant::now(), self.process.cpu_time());
        let _idle = IdleOnDrop(self.activity.clone());
        self.activity.send_replace(liveness.activity());
        let previous_id = self.session_id.clone();
        // Once the agent has exited, what it printed last may still be in the pipe: keep
        // reading until EOF, for a moment at most (a grandchild may hold stdout open).
        let mut exit_drain: Option<Instant> = None;
        loop {
            let interrupt_deadline = interrupted
                .borrow()
                .map(|p| p.at + self.options.interrupt_grace);
            let wake = liveness.wake_at();
            tokio::select! {
                // What has arrived is always read before any timer is looked at.
                biased;
                msg = self.events.recv() => match msg {
                    Some(ReaderMsg::Event(decoded)) => {
                        if liveness.event(&decoded.event, Instant::now()) {
                            self.activity.send_replace(liveness.activity());
                        }
                        self.note_session_id(&decoded.event);
                        match &decoded.event {
                            Event::Assistant(assistant) => {
                                let t = assistant.text();
                                if !t.is_empty() {
                                    texts.push(t);
                                }
                            }
                            Event::System(system) if system.subtype() == "compact_boundary" => {
                                compacted = true;
                            }
                            Event::Result(result) if abandoned > 0 => {
                                // The end of an earlier, abandoned turn: only its cost is kept,
                                // as the baseline the next turn is measured from.
                                abandoned -= 1;
                                self.unfinished_turns -= 1;
                                texts.clear();
                                compacted = false;
                                let cost = self.cost_of(result);
                                tracing::info!(pid = self.process.pid(), cost_usd = cost, "an abandoned turn ended");
                                continue;
                            }
                            Event::Result(result) => {
                                self.unfinished_turns -= 1;
                                let report = TurnReport {
                                    text: result.result.clone().unwrap_or_else(|| texts.join("\n")),
                                    cost_usd: self.cost_of(result),
                                    compacted,
                                    result: result.clone(),
                                    session_id: self.session_id.clone(),
                                    session_id_changed: previous_id.is_some()
                                        && previous_id != self.session_id,
                                };
                                forward(sink, *decoded);
                                return Ok(report);
                            }
                            _ => {}
                        }
                        forward(sink, *decoded);
                    }
                    Some(ReaderMsg::Failed(error)) => return Err(self.fault(error.into())),
                    None => return Err(self.exited().await),
                },
                _ = has_exited(&mut exit), if exit_drain.is_none() => {
                    exit_drain = Some(Instant::now() + EXIT_DRAIN);
                }
                _ = sleep_until_opt(exit_drain) => return Err(self.exited().await),
                _ = tokio::time::sleep_until(wake), if exit_drain.is_none() => {
                    let failure = match liveness.check(Instant::now(), self.process.cpu_time()) {
                        Verdict::Alive | Verdict::Confirming => continue,
                        Verdict::Stalled => AgentError::Stalled { after: limits.stall },
                        Verdict::ToolTimedOut { tool, ran } => AgentError::ToolTimedOut {
                            tool,
                            ran,
                            limit: limits.tool_timeout,
                            stall: limits.stall,
                        },
                        Verdict::TurnTimedOut => AgentError::TurnTimedOut {
                            limit: limits.turn_timeout.unwrap_or_default(),
                        },
                    };
                    tracing::warn!(pid = self.process.pid(), %failure, "killing the agent");
                    self.process.kill();
                    return Err(failure);
                }
                _ = sleep_until_opt(interrupt_deadline) => {
                    self.process.kill();
                    return Err(AgentError::InterruptTimedOut { grace: self.options.interrupt_grace });
                }
                _ = interrupted.changed() => {}
            }
        }
    }

    /// A handle that interrupts the next turn (see [`Interrupter`]).
    pub fn interrupter(&self) -> Interrupter {
        Interrupter {
            writer: match &self.writer {
                Some(writer) => writer.downgrade(),
                // Stopped: an interrupter with nothing to reach.
                None => mpsc::unbounded_channel().0.downgrade(),
            },
            ids: self.ids.clone(),
            requested: self.interrupts.clone(),
            sent: self.sent_turns.clone(),
            // No turn runs while `&self` is borrowed here: this is the next one.
            turn: self.sent_turns.load(Ordering::SeqCst) + 1,
        }
    }

    /// What the agent is doing, published as it changes: idle between turns, streaming, or
    /// running a tool (since when). Read it without waiting on the turn.
    pub fn activity(&self) -> watch::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// The conversation id the agent last reported.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The agent process.
    pub fn process(&self) -> &AgentProcess {
        &self.process
    }

    /// Whether the agent has exited.
    pub fn has_exited(&self) -> bool {
        self.process.exit_info().is_some()
    }

    /// Stops the agent gracefully (close stdin, SIGTERM the group, SIGKILL the group). Safe to
    /// call more than once, and after the agent exited on its own.
    pub async fn stop(&mut self, grace: StopGrace) -> StopOutcome {
        // Dropping the last sender makes the writer task close stdin.
        self.writer.take();
        self.process.stop(grace).await
    }

    fn send(&self, line: String) -> Result<(), AgentError> {
        match &self.writer {
            Some(writer) if writer.send(line).is_ok() => Ok(()),
            _ => Err(AgentError::NotRunning),
        }
    }

    fn note_session_id(&mut self, event: &Event) {
        let reported = match event {
            Event::System(SystemEvent::Init(init)) => Some(init.session_id.as_str()),
            Event::Result(result) => Some(result.session_id.as_str()),
            _ => None,
        };
        if let Some(id) = reported.filter(|id| !id.is_empty())
            && self.session_id.as_deref() != Some(id)
        {
            if let Some(old) = &self.session_id {
                tracing::info!(old, new = id, "agent reported a new conversation id");
            }
            self.session_id = Some(id.to_owned());
        }
    }

    /// The cost of the turn that ended with `result`, measured from the process's running
    /// total. A misreported total costs the turn nothing and is logged.
    fn cost_of(&mut self, result: &ResultEvent) -> f64 {
        match self.running_cost.turn_cost(result.total_cost_usd) {
            Ok(cost) => cost,
            Err(anomaly) => {
                tracing::warn!(
                    pid = self.process.pid(),
                    session = self.session_id.as_deref().unwrap_or(""),
                    reported = ?result.total_cost_usd,
                    "{}; the turn is recorded as costing nothing",
                    anomaly.describe()
                );
                0.0
            }
        }
    }

    /// The agent broke the protocol: kill it and report why.
    fn fault(&self, error: AgentError) -> AgentError {
        self.process.kill();
        error
    }

    async fn exit_info(&self) -> ExitInfo {
        // The exit is being observed; give the watcher a moment to publish it.
        self.process
            .wait_exit(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| ExitInfo {
                code: None,
                signal: None,
                stderr_tail: self.process.stderr_tail().text(),
            })
    }

    async fn exited_before_ready(&self, reported: Vec<String>) -> AgentError {
        AgentError::ExitedBeforeReady {
            exit: self.exit_info().await,
            reported,
        }
    }

    /// Reads what an exited agent left in its stdout (briefly: a grandchild may hold the pipe
    /// open), keeping the errors of any `result`.
    async fn drain_results(&mut self, reported: &mut Vec<String>) {
        let deadline = Instant::now() + EXIT_DRAIN;
        while let Ok(Some(ReaderMsg::Event(decoded))) =
            tokio::time::timeout_at(deadline, self.events.recv()).await
        {
            if let Event::Result(result) = &decoded.event {
                reported.extend(result.errors.iter().cloned());
            }
        }
    }

    async fn exited(&self) -> AgentError {
        AgentError::Exited {
            exit: self.exit_info().await,
        }
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // The AgentProcess field kills the group as it drops.
    }
}

/// Hands `event` to the caller's sink without waiting: a sink that is full (a caller that stopped
/// reading) loses the event rather than stalling the turn, whose outcome does not depend on it.
fn forward(sink: Option<&mpsc::Sender<DecodedEvent>>, event: DecodedEvent) {
    if let Some(sink) = sink
        && let Err(mpsc::error::TrySendError::Full(_)) = sink.try_send(event)
    {
        tracing::debug!("a turn subscriber is full; an event was not delivered to it");
    }
}

/// Resolves once the agent has exited. (It returns nothing, so no watch guard is held across
/// the await in a `select!` branch, which keeps the conversation's futures `Send`.)
async fn has_exited(exit: &mut watch::Receiver<Option<ExitInfo>>) {
    let _ = exit.wait_for(Option::is_some).await;
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A static check: the conversation's futures are `Send`, so actors and spawned tasks can hold
/// them across awaits. It fails to compile, not at run time.
#[cfg(test)]
#[allow(dead_code)]
fn conversation_futures_are_send(
    conversation: &mut Conversation,
    command: Command,
    policy: Arc<dyn PermissionPolicy>,
) {
    fn send<T: Send>(_: T) {}
    send(Conversation::start(
        command,
        policy,
        ConversationOptions::default(),
    ));
    send(conversation.turn("hello", None, Duration::ZERO));
    send(conversation.stop(StopGrace::default()));
}
