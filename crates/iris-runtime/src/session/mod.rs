//! The SessionActor: one per live pair, the only writer of its record, and the owner of the
//! pair's agent process and turn queue.
//!
//! Turns run on a worker task, one at a time, in FIFO order, so the mailbox stays free for
//! tells, cancels and status while a turn is in flight. The worker borrows the agent and gives
//! it back with the result; an agent that died or was killed comes back as `None`, and the next
//! turn spawns a new one (`--resume`). A single timer serves both the idle timeout of a live
//! agent and the passivation of a session without one.

mod agent;
mod transcript;
mod turns;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use iris_agent::conversation::Interrupter;
use iris_agent::process::StopGrace;
use iris_core::{
    Pair, ProcessState, SessionId, SessionRecord, SessionStatus, Timestamp, TurnId, TurnStatus,
};
use iris_store::{Change, Mutation};
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(crate) use agent::{LaunchContext, Launched, LiveAgent};
pub use transcript::TranscriptRemoval;
pub(crate) use transcript::remove_transcript;
pub(crate) use turns::{Ticket, TurnProgress};
use turns::{Turn, WorkerDone};

use crate::error::RuntimeError;
use crate::pool::PoolMsg;
use crate::shared::Shared;
use crate::tell::{TellOutcome, TurnError};

/// Messages a SessionActor handles. Plain data apart from the reply ports.
#[derive(Debug)]
pub(crate) enum SessionMsg {
    /// Apply changes to the record durably; reply with the record as stored.
    Mutate {
        changes: Vec<Change>,
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    },
    /// Queue a turn.
    Tell {
        from: iris_core::TeamName,
        message: String,
        reply: RpcReplyPort<Result<Ticket, RuntimeError>>,
    },
    /// Start the agent if it is not running; clears status `error`.
    Wake {
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    },
    /// Stop the agent after the turn in flight (`force`: interrupt it). Queued turns are
    /// cancelled.
    Sleep {
        force: bool,
        reply: RpcReplyPort<Result<(), RuntimeError>>,
    },
    /// Interrupt the turn in flight; with `drop_queue`, cancel the queued turns too.
    Cancel {
        drop_queue: bool,
        reply: RpcReplyPort<Cancelled>,
    },
    /// What the session is doing.
    Inspect { reply: RpcReplyPort<PairStatus> },
    /// Stop the agent gracefully, then stop the actor.
    Shutdown {
        grace: StopGrace,
        reply: RpcReplyPort<()>,
    },
    /// Stop the agent, delete the record (and the transcript, if asked), then stop the actor.
    Delete {
        delete_transcript: bool,
        reply: RpcReplyPort<Result<Deletion, RuntimeError>>,
    },
    /// Walk the original's compaction: `compacting`, `/compact` to a live agent, count reset,
    /// `active` (or `error` on failure). Queued behind the turns before it.
    Compact {
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    },
    /// The pool needs this session's process slot (sent only while it looked idle).
    Evict { permit: u64 },
    /// Check the agent process (from the pool's periodic health check).
    HealthCheck,
    /// The worker started an agent for the job in flight.
    AgentUp {
        job: u64,
        launched: Box<Launched>,
        interrupter: Interrupter,
    },
    /// The worker finished the job in flight.
    TurnDone(Box<WorkerDone>),
    /// An agent being stopped in the background is gone.
    Retired,
    /// The session's timer: idle timeout of the agent, or passivation without one.
    Tick,
    /// A shutdown's grace for the turn in flight has passed.
    ShutdownDeadline,
    /// Test hook: fail the actor as a panic would.
    #[cfg(feature = "testing")]
    Crash,
}

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
}

/// How a SessionActor starts.
#[derive(Debug)]
pub(crate) struct SessionArgs {
    /// The stored record, published. The actor keeps no other copy and republishes here after
    /// every change; the registry hands the same cell to readers.
    pub snapshot: Arc<ArcSwap<SessionRecord>>,
    pub shared: Arc<Shared>,
    /// Spawn the agent and complete its handshake before the actor counts as started.
    pub start_agent: bool,
}

/// Work waiting for the agent, in arrival order.
#[derive(Debug)]
enum Job {
    Turn(Turn),
    Wake(RpcReplyPort<Result<SessionRecord, RuntimeError>>),
    Compact(RpcReplyPort<Result<SessionRecord, RuntimeError>>),
}

/// A worker task, aborted when dropped: if the actor dies, its worker (and the agent the
/// worker holds, whose group is killed on drop) goes with it.
#[derive(Debug)]
struct Worker(JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The job on the worker.
#[derive(Debug)]
struct Running {
    job: u64,
    kind: Job,
    worker: Worker,
    /// Reaches the agent once it is up.
    interrupter: Option<Interrupter>,
    pgid: Option<u32>,
    started: Instant,
    /// Set when the turn was cancelled: what to report instead of its own ending.
    cancelled: Option<TurnError>,
}

/// A pending `send_after`.
type Timer = JoinHandle<Result<(), MessagingErr<SessionMsg>>>;

pub(crate) struct SessionState {
    pair: Pair,
    id: SessionId,
    /// The rest of the record lives only here (one copy per session).
    snapshot: Arc<ArcSwap<SessionRecord>>,
    shared: Arc<Shared>,
    myself: ActorRef<SessionMsg>,
    /// When the last message (other than a timer or health check) arrived.
    last_activity: Instant,
    /// The one pending timer and when it fires; aborted when the actor stops.
    timer: Option<(Instant, Timer)>,
    /// The agent while it is idle (the worker holds it during a job).
    agent: Option<LiveAgent>,
    idle_since: Instant,
    running: Option<Box<Running>>,
    queue: VecDeque<Job>,
    /// Jobs started, to match a worker's report to its job.
    jobs: u64,
    /// The last turn sequence number used, read from the ledger on first use.
    last_seq: Option<u64>,
    /// Agent crashes within the crash window.
    crashes: VecDeque<Instant>,
    /// An agent being stopped in the background; no new one starts before it is gone.
    retiring: Option<JoinHandle<()>>,
    /// Sleep requests to answer once the agent is stopped.
    sleepers: Vec<RpcReplyPort<Result<(), RuntimeError>>>,
    /// Stop the agent once the turn in flight ends.
    sleep_after_turn: bool,
    /// A shutdown waiting for the turn in flight.
    stopping: Option<(StopGrace, RpcReplyPort<()>)>,
}

pub(crate) struct SessionActor;

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let (pair, id) = {
            let record = args.snapshot.load();
            (record.pair(), record.session_id)
        };
        let mut state = SessionState {
            pair,
            id,
            snapshot: args.snapshot,
            shared: args.shared,
            myself,
            last_activity: Instant::now(),
            timer: None,
            agent: None,
            idle_since: Instant::now(),
            running: None,
            queue: VecDeque::new(),
            jobs: 0,
            last_seq: None,
            crashes: VecDeque::new(),
            retiring: None,
            sleepers: Vec::new(),
            sleep_after_turn: false,
            stopping: None,
        };
        if args.start_agent {
            // Boxed as a RuntimeError so the registry can hand every waiter the typed error.
            Box::pin(state.start_agent_now())
                .await
                .map_err(|e| -> ActorProcessingErr { Box::new(e) })?;
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.rearm();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(message, SessionMsg::Tick | SessionMsg::HealthCheck) {
            state.last_activity = Instant::now();
        }
        // Every async body is boxed: ractor keeps the handler future inline in the actor's
        // task, so the largest one would otherwise be paid by every idle actor (P5).
        Box::pin(state.dispatch_message(message)).await?;
        if state.stopping.is_none() {
            Box::pin(state.run_next()).await;
        }
        state.rearm();
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        Box::pin(state.abandon_everything()).await;
        Ok(())
    }
}

impl SessionState {
    async fn dispatch_message(&mut self, message: SessionMsg) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::Mutate { changes, reply } => {
                let _ = reply.send(self.apply(changes).await);
            }
            SessionMsg::Tell {
                from,
                message,
                reply,
            } => {
                let _ = reply.send(self.tell(from, message).await);
            }
            SessionMsg::Wake { reply } => self.wake(reply).await,
            SessionMsg::Sleep { force, reply } => self.sleep(force, reply).await,
            SessionMsg::Cancel { drop_queue, reply } => {
                let _ = reply.send(self.cancel(drop_queue).await);
            }
            SessionMsg::Inspect { reply } => {
                let _ = reply.send(self.inspect());
            }
            SessionMsg::Shutdown { grace, reply } => self.shutdown(grace, reply).await,
            SessionMsg::Delete {
                delete_transcript,
                reply,
            } => {
                let result = self.delete(delete_transcript).await;
                let _ = reply.send(result);
                self.myself.stop(Some("deleted".into()));
            }
            SessionMsg::Compact { reply } => {
                self.apply_or_log(vec![Change::SetStatus(SessionStatus::Compacting)])
                    .await;
                self.queue.push_back(Job::Compact(reply));
            }
            SessionMsg::Evict { permit } => self.evict(permit),
            SessionMsg::HealthCheck => self.health_check().await,
            SessionMsg::AgentUp {
                job,
                launched,
                interrupter,
            } => self.agent_up(job, *launched, interrupter).await,
            SessionMsg::TurnDone(done) => self.job_done(*done).await,
            SessionMsg::Retired => self.retired(),
            SessionMsg::Tick => self.tick(),
            SessionMsg::ShutdownDeadline => self.shutdown_deadline().await,
            #[cfg(feature = "testing")]
            SessionMsg::Crash => {
                return Err(format!("injected failure of session {}", self.pair).into());
            }
        }
        Ok(())
    }

    // ----- tells and the queue -----

    async fn tell(
        &mut self,
        from: iris_core::TeamName,
        message: String,
    ) -> Result<Ticket, RuntimeError> {
        if self.stopping.is_some() {
            return Err(RuntimeError::ShuttingDown);
        }
        self.fail_fast()?;
        let depth = self.shared.config.settings().queue_depth.get();
        let queued = self
            .queue
            .iter()
            .filter(|j| matches!(j, Job::Turn(_)))
            .count();
        if queued >= depth {
            self.shared.metrics.queue_full.inc();
            return Err(RuntimeError::QueueFull {
                pair: self.pair.clone(),
                depth,
            });
        }
        let seq = self.next_seq()?;
        let (progress, ticket) = TurnProgress::new(TurnId::new());
        let turn = Turn {
            seq,
            from,
            message,
            queued_at: Timestamp::now(),
            queued_instant: Instant::now(),
            progress: progress.clone(),
        };
        let row = turn.queued_row(&self.snapshot.load(), self.text_limit());
        self.enqueue(Mutation::PutTurn {
            turn: row,
            retain: self.retain(),
        })
        .await;
        tracing::debug!(pair = %self.pair, session = %self.id, turn = %progress.turn_id, seq, "turn queued");
        self.shared.metrics.tells.inc();
        self.queue.push_back(Job::Turn(turn));
        Ok(ticket)
    }

    /// Fails when the session is in status `error`: it must be woken (or reset) first.
    fn fail_fast(&self) -> Result<(), RuntimeError> {
        if self.snapshot.load().status == SessionStatus::Error {
            return Err(RuntimeError::SessionFailed {
                pair: self.pair.clone(),
                reason: "the session is in status error".into(),
            });
        }
        Ok(())
    }

    fn next_seq(&mut self) -> Result<u64, RuntimeError> {
        let last = match self.last_seq {
            Some(last) => last,
            None => self.shared.store.last_turn_seq(self.id)?,
        };
        self.last_seq = Some(last + 1);
        Ok(last + 1)
    }

    /// Starts the next job when nothing runs and no agent is being stopped.
    async fn run_next(&mut self) {
        while self.running.is_none() && self.retiring.is_none() {
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            match job {
                Job::Turn(turn) => {
                    let message = turn.message.clone();
                    self.start_job(Job::Turn(turn), Some(message)).await;
                }
                Job::Wake(reply) if self.agent.is_some() => {
                    let _ = reply.send(Ok((**self.snapshot.load()).clone()));
                }
                Job::Wake(reply) => self.start_job(Job::Wake(reply), None).await,
                Job::Compact(reply) if self.agent.is_some() => {
                    self.start_job(Job::Compact(reply), Some("/compact".into()))
                        .await;
                }
                Job::Compact(reply) => {
                    let _ = reply.send(self.finish_compaction(Ok(())).await);
                }
            }
        }
    }

    /// Hands the job (and the agent, if one is idle) to a worker task.
    async fn start_job(&mut self, kind: Job, message: Option<String>) {
        self.jobs += 1;
        let job = self.jobs;
        let agent = self.agent.take();
        let interrupter = agent.as_ref().map(|a| a.conversation.interrupter());
        let pgid = agent.as_ref().map(|a| a.mark().pgid);
        let mut changes = vec![Change::SetProcessState(if agent.is_some() {
            ProcessState::Processing
        } else {
            ProcessState::Spawning
        })];
        let progress = match &kind {
            Job::Turn(turn) => {
                changes.push(Change::SetCurrentTurn(Some(turn.id())));
                let mut row = turn.queued_row(&self.snapshot.load(), self.text_limit());
                row.status = TurnStatus::Running;
                row.started_at = Some(Timestamp::now());
                self.enqueue(Mutation::PutTurn {
                    turn: row,
                    retain: self.retain(),
                })
                .await;
                self.shared
                    .metrics
                    .queue_wait
                    .observe(turn.queued_instant.elapsed());
                turn.progress.started();
                tracing::debug!(pair = %self.pair, session = %self.id, turn = %turn.id(), "turn running");
                Some(turn.progress.clone())
            }
            Job::Wake(_) | Job::Compact(_) => None,
        };
        self.note(changes).await;
        let launch = LaunchContext {
            shared: self.shared.clone(),
            session: self.myself.clone(),
            pair: self.pair.clone(),
            id: self.id,
        };
        let worker = Worker(tokio::spawn(turns::work(turns::WorkOrder {
            launch,
            record: (**self.snapshot.load()).clone(),
            agent,
            job,
            message,
            progress,
            stall: self.shared.config.settings().response_timeout,
            myself: self.myself.clone(),
        })));
        self.running = Some(Box::new(Running {
            job,
            kind,
            worker,
            interrupter,
            pgid,
            started: Instant::now(),
            cancelled: None,
        }));
    }

    async fn agent_up(&mut self, job: u64, launched: Launched, interrupter: Interrupter) {
        let Some(running) = self.running.as_mut().filter(|r| r.job == job) else {
            return;
        };
        running.interrupter = Some(interrupter.clone());
        running.pgid = Some(launched.mark.pgid);
        if running.cancelled.is_some() {
            interrupter.interrupt();
        }
        self.shared.metrics.spawns.inc();
        let state = match running.kind {
            Job::Wake(_) => ProcessState::Idle,
            _ => ProcessState::Processing,
        };
        self.note(launched_changes(&launched, state)).await;
    }

    /// The worker finished: book the result, answer the caller, keep or drop the agent.
    async fn job_done(&mut self, done: WorkerDone) {
        let Some(running) = self.running.take_if(|r| r.job == done.job) else {
            return;
        };
        let running = *running;
        let crashed = matches!(done.result, Err(TurnError::AgentExited { .. }));
        let agent_alive = done.agent.is_some();
        let mut done = done;
        self.agent = done.agent.take();
        self.idle_since = Instant::now();
        if crashed {
            self.shared.metrics.crashes.inc();
        }
        if matches!(done.result, Err(TurnError::Timeout { .. })) {
            self.shared.metrics.stalls.inc();
        }
        let process_state = if agent_alive {
            ProcessState::Idle
        } else {
            ProcessState::Stopped
        };
        if crashed {
            // Before the caller hears of the crash, so a crash that exhausts the budget is
            // visible (status `error`) by the time the turn's outcome is.
            self.count_crash().await;
        }
        match running.kind {
            Job::Turn(turn) => {
                self.book_turn(turn, running.cancelled, &done, process_state)
                    .await;
            }
            Job::Wake(reply) => {
                let mut changes = vec![Change::SetProcessState(process_state)];
                if !agent_alive {
                    changes.push(Change::SetAgentProcess(None));
                }
                let result = match &done.result {
                    Ok(_) => self.apply(changes).await,
                    Err(error) => {
                        self.apply_or_log(changes).await;
                        Err(self.start_error(error))
                    }
                };
                let _ = reply.send(result);
            }
            Job::Compact(reply) => {
                let outcome = match &done.result {
                    Ok(Some(report)) if report.failed() => Err(report
                        .result
                        .result
                        .clone()
                        .unwrap_or_else(|| report.result.subtype.clone())),
                    Ok(_) => Ok(()),
                    Err(error) => Err(error.to_string()),
                };
                self.note(vec![Change::SetProcessState(process_state)])
                    .await;
                let _ = reply.send(self.finish_compaction(outcome).await);
            }
        }
        if self.sleep_after_turn {
            self.sleep_after_turn = false;
            self.retire_agent("put to sleep");
        }
        if self.agent.is_none() && self.retiring.is_none() {
            // Otherwise `retired` answers them once the agent is gone.
            self.answer_sleepers();
        }
        if let Some((grace, reply)) = self.stopping.take() {
            self.finish_shutdown(grace, reply).await;
        }
    }

    /// Writes a finished turn's bookkeeping durably, then answers its callers.
    async fn book_turn(
        &mut self,
        turn: Turn,
        cancelled: Option<TurnError>,
        done: &WorkerDone,
        process_state: ProcessState,
    ) {
        let report = done.result.as_ref().ok().and_then(Option::as_ref);
        let outcome = match cancelled {
            Some(reason) => TellOutcome::Failed {
                turn_id: turn.id(),
                error: reason,
            },
            None => turns::outcome_of(turn.id(), &done.result),
        };
        let now = Timestamp::now();
        let mut changes = vec![
            Change::SetCurrentTurn(None),
            Change::SetProcessState(process_state),
            Change::TouchLastUsed(now),
        ];
        if process_state == ProcessState::Stopped {
            changes.push(Change::SetAgentProcess(None));
        }
        if let Some(at) = done.last_event_at {
            changes.push(Change::SetLastResponse(at));
        }
        if let Some(report) = report {
            changes.push(Change::AddUsage(report.usage_totals()));
            if let Some(id) = &report.session_id
                && self.snapshot.load().agent_session_id.as_deref() != Some(id.as_str())
                && (report.session_id_changed || *id != self.id.to_string())
            {
                changes.push(Change::SetAgentSessionId(Some(id.clone())));
            }
        }
        let metrics = &self.shared.metrics;
        match &outcome {
            TellOutcome::Completed(_) => {
                changes.push(Change::IncrementMessageCount(1));
                metrics.turns_completed.inc();
            }
            TellOutcome::Failed {
                error: TurnError::Cancelled,
                ..
            } => metrics.turns_cancelled.inc(),
            _ => {
                changes.push(Change::AddFailedTurns(1));
                metrics.turns_failed.inc();
            }
        }
        metrics.turn_time.observe(done.ran_for);
        let row = turns::finished_row(
            turn.queued_row(&self.snapshot.load(), self.text_limit()),
            &outcome,
            report,
            self.text_limit(),
        );
        let booked = self
            .shared
            .store
            .record_turn(self.id, changes, row, self.retain())
            .await;
        match booked {
            Ok(record) => self.publish(record),
            Err(error) => {
                tracing::error!(pair = %self.pair, session = %self.id, turn = %turn.id(), %error, "could not record the turn's bookkeeping");
            }
        }
        tracing::info!(pair = %self.pair, session = %self.id, turn = %turn.id(), outcome = outcome_name(&outcome), "turn finished");
        turn.progress.finish(outcome);
    }

    // ----- lifecycle -----

    /// Starts the agent now (eager creation), in `pre_start`.
    async fn start_agent_now(&mut self) -> Result<(), RuntimeError> {
        let launch = LaunchContext {
            shared: self.shared.clone(),
            session: self.myself.clone(),
            pair: self.pair.clone(),
            id: self.id,
        };
        let record = (**self.snapshot.load()).clone();
        let (agent, launched) = launch
            .start(&record)
            .await
            .map_err(|e| self.start_error(&e))?;
        agent.permit.set_busy(false);
        self.agent = Some(agent);
        self.shared.metrics.spawns.inc();
        self.apply(launched_changes(&launched, ProcessState::Idle))
            .await?;
        Ok(())
    }

    fn start_error(&self, error: &TurnError) -> RuntimeError {
        use iris_core::Coded;
        RuntimeError::Agent {
            pair: self.pair.clone(),
            code: error.code(),
            reason: error.to_string(),
        }
    }

    async fn wake(&mut self, reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>) {
        if self.stopping.is_some() {
            let _ = reply.send(Err(RuntimeError::ShuttingDown));
            return;
        }
        if self.snapshot.load().status == SessionStatus::Error {
            self.crashes.clear();
            self.apply_or_log(vec![Change::SetStatus(SessionStatus::Active)])
                .await;
            tracing::info!(pair = %self.pair, session = %self.id, "woken out of status error");
        }
        self.queue.push_back(Job::Wake(reply));
    }

    async fn sleep(&mut self, force: bool, reply: RpcReplyPort<Result<(), RuntimeError>>) {
        self.fail_queued(TurnError::Cancelled).await;
        self.sleepers.push(reply);
        if self.running.is_some() {
            self.sleep_after_turn = true;
            if force {
                self.cancel_running(TurnError::Cancelled).await;
            }
            return;
        }
        self.retire_agent("put to sleep");
        if self.retiring.is_none() {
            self.answer_sleepers();
        }
    }

    fn answer_sleepers(&mut self) {
        for reply in self.sleepers.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }

    async fn cancel(&mut self, drop_queue: bool) -> Cancelled {
        let dropped = if drop_queue {
            self.fail_queued(TurnError::Cancelled).await
        } else {
            0
        };
        let interrupted = self.running.is_some();
        if interrupted {
            self.cancel_running(TurnError::Cancelled).await;
        }
        Cancelled {
            interrupted,
            dropped,
        }
    }

    /// Interrupts the job in flight and reports `reason` for it. An agent that is still
    /// starting has nothing to interrupt: the worker is aborted, which kills it.
    async fn cancel_running(&mut self, reason: TurnError) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        running.cancelled.get_or_insert(reason.clone());
        match &running.interrupter {
            Some(interrupter) => interrupter.interrupt(),
            None => self.abort_running(reason).await,
        }
    }

    /// Aborts the worker (dropping the agent it holds kills the agent's group) and finishes
    /// its job as if the worker had reported `reason`.
    async fn abort_running(&mut self, reason: TurnError) {
        let Some(running) = self.running.as_ref() else {
            return;
        };
        running.worker.0.abort();
        let done = WorkerDone {
            job: running.job,
            agent: None,
            result: Err(reason),
            last_event_at: None,
            ran_for: running.started.elapsed(),
        };
        self.job_done(done).await;
    }

    /// Cancels every queued turn with `error`; returns how many there were.
    async fn fail_queued(&mut self, error: TurnError) -> usize {
        let mut failed = 0;
        for job in std::mem::take(&mut self.queue) {
            match job {
                Job::Turn(turn) => {
                    failed += 1;
                    let outcome = TellOutcome::Failed {
                        turn_id: turn.id(),
                        error: error.clone(),
                    };
                    let row = turns::finished_row(
                        turn.queued_row(&self.snapshot.load(), self.text_limit()),
                        &outcome,
                        None,
                        self.text_limit(),
                    );
                    self.enqueue(Mutation::PutTurn {
                        turn: row,
                        retain: self.retain(),
                    })
                    .await;
                    turn.progress.finish(outcome);
                }
                Job::Wake(reply) | Job::Compact(reply) => {
                    let _ = reply.send(Err(RuntimeError::Busy {
                        pair: self.pair.clone(),
                        what: format!("dropping its queue ({error})"),
                    }));
                }
            }
        }
        failed
    }

    fn inspect(&self) -> PairStatus {
        let current_turn = self.running.as_ref().and_then(|r| match &r.kind {
            Job::Turn(turn) => Some(turn.id()),
            _ => None,
        });
        PairStatus {
            session: Some((**self.snapshot.load()).clone()),
            awake: self.agent.is_some() || self.running.is_some(),
            busy: self.running.is_some(),
            queued: self.queue.len(),
            current_turn,
        }
    }

    /// Stops the idle agent in the background; the slot returns when it is gone.
    fn retire_agent(&mut self, why: &'static str) {
        let Some(agent) = self.agent.take() else {
            return;
        };
        tracing::info!(pair = %self.pair, session = %self.id, pid = agent.mark().pid, why, "stopping the agent");
        let myself = self.myself.clone();
        self.retiring = Some(tokio::spawn(async move {
            agent.stop(StopGrace::default()).await;
            let _ = myself.cast(SessionMsg::Retired);
        }));
    }

    fn retired(&mut self) {
        self.retiring = None;
        let id = self.id;
        let store = self.shared.store.clone();
        let changes = vec![
            Change::SetProcessState(ProcessState::Stopped),
            Change::SetAgentProcess(None),
        ];
        self.publish_changes(&changes);
        // Not awaited: transient state (a restart resets it anyway).
        tokio::spawn(async move {
            let _ = store.update_all(id, changes).await;
        });
        self.answer_sleepers();
    }

    fn evict(&mut self, permit: u64) {
        if self.retiring.is_some() {
            // Already stopping: the slot comes back when it is gone.
            return;
        }
        if self.running.is_none() && self.agent.is_some() {
            self.shared.metrics.evictions.inc();
            self.retire_agent("evicted to free a process slot");
        } else {
            let _ = self.shared.pool.cast(PoolMsg::Declined { id: permit });
        }
    }

    async fn health_check(&mut self) {
        let shared = self.shared.clone();
        let settings = shared.config.settings();
        if let Some(agent) = &self.agent {
            let pgid = agent.mark().pgid;
            if agent.conversation.has_exited() || !group_alive(pgid).await {
                tracing::warn!(pair = %self.pair, session = %self.id, pgid, "health check: the idle agent is gone");
                self.shared.metrics.health_failures.inc();
                self.retire_agent("its process is gone");
            }
        }
        let Some(running) = self.running.as_ref() else {
            return;
        };
        let age = running.started.elapsed();
        let stuck_start = running.interrupter.is_none()
            && age > 2 * settings.spawn_timeout + Duration::from_secs(5);
        let vanished = match running.pgid {
            Some(pgid) => age > settings.health_check_interval && !group_alive(pgid).await,
            None => false,
        };
        if stuck_start || vanished {
            self.shared.metrics.health_failures.inc();
            tracing::warn!(pair = %self.pair, session = %self.id, stuck_start, vanished, "health check: failing the job in flight");
            let reason = if stuck_start {
                TurnError::Spawn {
                    code: iris_core::ErrorCode::Timeout,
                    reason: format!("the agent did not become ready within {age:?}"),
                }
            } else {
                TurnError::AgentExited {
                    code: None,
                    signal: None,
                    stderr_tail: "the agent's process group vanished without an exit event".into(),
                }
            };
            self.abort_running(reason).await;
        }
    }

    /// Counts an agent crash; past the budget the session goes to status `error`.
    async fn count_crash(&mut self) {
        let shared = self.shared.clone();
        let settings = shared.config.settings();
        let now = Instant::now();
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|at| now.duration_since(*at) > settings.crash_window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() > settings.crash_limit.get() {
            tracing::error!(pair = %self.pair, session = %self.id, crashes = self.crashes.len(), window = ?settings.crash_window, "the agent keeps crashing; the session goes to status error until it is woken");
            self.apply_or_log(vec![Change::SetStatus(SessionStatus::Error)])
                .await;
            let reason = TurnError::Interrupted {
                reason: format!(
                    "the agent crashed {} times within {:?}; wake the session to try again",
                    self.crashes.len(),
                    settings.crash_window
                ),
            };
            self.fail_queued(reason).await;
        }
    }

    // ----- timers -----

    /// When the timer should next fire: the idle timeout of an idle agent, or passivation of a
    /// session with nothing alive.
    fn deadline(&self) -> Option<Instant> {
        if self.running.is_some() || self.retiring.is_some() || !self.queue.is_empty() {
            return None;
        }
        if self.agent.is_some() {
            let team = self.shared.config.team(&self.pair.to)?;
            return Some(
                self.idle_since + team.effective_idle_timeout(self.shared.config.settings()),
            );
        }
        Some(self.last_activity + self.shared.config.settings().passivate_after)
    }

    /// Keeps one timer armed no later than the current deadline. Later deadlines do not
    /// re-arm it: when it fires early, [`Self::tick`] re-arms for the time left.
    fn rearm(&mut self) {
        let Some(deadline) = self.deadline() else {
            return;
        };
        if let Some((armed, timer)) = &self.timer
            && *armed <= deadline
            && !timer.is_finished()
        {
            return;
        }
        if let Some((_, old)) = self.timer.take() {
            old.abort();
        }
        let after = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let timer = self.myself.send_after(after, || SessionMsg::Tick);
        self.timer = Some((deadline, timer));
    }

    fn tick(&mut self) {
        self.timer = None;
        let Some(deadline) = self.deadline() else {
            return;
        };
        if Instant::now() < deadline {
            return; // rearm() sets the timer for the time left
        }
        if self.agent.is_some() {
            self.shared.metrics.idle_stops.inc();
            self.retire_agent("idle timeout");
        } else {
            tracing::debug!(pair = %self.pair, "passivating an idle session");
            self.myself.stop(Some("passivated".into()));
        }
    }

    // ----- stopping -----

    async fn shutdown(&mut self, grace: StopGrace, reply: RpcReplyPort<()>) {
        self.fail_queued(TurnError::Interrupted {
            reason: "the node is shutting down".into(),
        })
        .await;
        if self.running.is_some() {
            // Let the turn in flight finish within the grace; job_done completes the shutdown.
            self.stopping = Some((grace, reply));
            // The timer ends by itself; if the actor stops first, its message goes nowhere.
            drop(
                self.myself
                    .send_after(grace.after_stdin_close, || SessionMsg::ShutdownDeadline),
            );
            return;
        }
        self.finish_shutdown(grace, reply).await;
    }

    async fn shutdown_deadline(&mut self) {
        if self.stopping.is_some() && self.running.is_some() {
            self.abort_running(TurnError::Interrupted {
                reason: "the node shut down before the turn finished".into(),
            })
            .await;
        }
    }

    async fn finish_shutdown(&mut self, grace: StopGrace, reply: RpcReplyPort<()>) {
        self.stop_agent(grace).await;
        let _ = reply.send(());
        self.myself.stop(Some("shutdown".into()));
    }

    /// Stops the agent, if any (waiting for it), and records that it is gone.
    async fn stop_agent(&mut self, grace: StopGrace) {
        if let Some(retiring) = self.retiring.take() {
            let _ = retiring.await;
        }
        let Some(agent) = self.agent.take() else {
            return;
        };
        agent.stop(grace).await;
        self.apply_or_log(vec![
            Change::SetProcessState(ProcessState::Stopped),
            Change::SetAgentProcess(None),
        ])
        .await;
    }

    /// Stops the agent, deletes the record durably, then the transcript if asked.
    async fn delete(&mut self, delete_transcript: bool) -> Result<Deletion, RuntimeError> {
        self.fail_queued(TurnError::Interrupted {
            reason: "the session was deleted".into(),
        })
        .await;
        self.abort_running(TurnError::Interrupted {
            reason: "the session was deleted".into(),
        })
        .await;
        self.stop_agent(StopGrace::default()).await;
        let deleted = self.shared.store.delete(self.id).await?;
        let transcript = if delete_transcript {
            remove_transcript(&self.shared, &self.pair, &self.snapshot.load()).await
        } else {
            TranscriptRemoval::NotRequested
        };
        tracing::info!(pair = %self.pair, session = %self.id, ?transcript, "session deleted");
        Ok(Deletion {
            deleted,
            transcript,
        })
    }

    /// The actor is stopping (normally, or after a failure): nothing it owns may outlive it.
    /// Callers of unfinished turns get `Interrupted`, and the agent's group is killed.
    async fn abandon_everything(&mut self) {
        if let Some((_, timer)) = self.timer.take() {
            timer.abort();
        }
        let reason = TurnError::Interrupted {
            reason: "the session stopped".into(),
        };
        self.fail_queued(reason.clone()).await;
        if self.running.is_some() {
            self.abort_running(reason).await;
        }
        self.stop_agent(StopGrace::default()).await;
        self.answer_sleepers();
    }

    // ----- compaction -----

    /// The end of the original's compaction walk.
    async fn finish_compaction(
        &mut self,
        outcome: Result<(), String>,
    ) -> Result<SessionRecord, RuntimeError> {
        match outcome {
            Ok(()) => {
                self.apply(vec![
                    Change::ResetMessageCount,
                    Change::SetStatus(SessionStatus::Active),
                ])
                .await
            }
            Err(reason) => {
                self.apply(vec![Change::SetStatus(SessionStatus::Error)])
                    .await?;
                Err(RuntimeError::Agent {
                    pair: self.pair.clone(),
                    code: iris_core::ErrorCode::ProcessError,
                    reason: format!("compaction failed: {reason}"),
                })
            }
        }
    }

    // ----- the record -----

    /// Writes `changes` durably, then republishes the snapshot.
    async fn apply(&mut self, changes: Vec<Change>) -> Result<SessionRecord, RuntimeError> {
        let record = self.shared.store.update_all(self.id, changes).await?;
        self.publish(record.clone());
        Ok(record)
    }

    async fn apply_or_log(&mut self, changes: Vec<Change>) {
        if let Err(error) = self.apply(changes).await {
            tracing::warn!(pair = %self.pair, session = %self.id, %error, "could not update the session record");
        }
    }

    /// Records transient state (process state, current turn): published at once, written in
    /// order behind earlier writes, not awaited.
    async fn note(&mut self, changes: Vec<Change>) {
        self.publish_changes(&changes);
        self.enqueue(Mutation::Update {
            session_id: self.id,
            changes,
        })
        .await;
    }

    fn publish_changes(&mut self, changes: &[Change]) {
        let mut record = (**self.snapshot.load()).clone();
        for change in changes {
            change.apply_to(&mut record);
        }
        self.publish(record);
    }

    fn publish(&mut self, record: SessionRecord) {
        self.snapshot.store(Arc::new(record));
    }

    /// Queues a write behind earlier ones without waiting for its commit.
    async fn enqueue(&self, mutation: Mutation) {
        if let Err(error) = self.shared.store.enqueue(mutation).await {
            tracing::warn!(pair = %self.pair, session = %self.id, %error, "could not queue a write");
        }
    }

    fn text_limit(&self) -> usize {
        self.shared.config.settings().turn_text_limit.get()
    }

    fn retain(&self) -> u64 {
        self.shared.config.settings().turn_retention.get() as u64
    }
}

/// What a session records about an agent it started.
fn launched_changes(launched: &Launched, state: ProcessState) -> Vec<Change> {
    vec![
        Change::SetProcessState(state),
        Change::SetAgentProcess(Some(launched.mark)),
        Change::SetDebugInfo {
            launch_command: Some(launched.launch_command.clone()),
            team_config_snapshot: Some(launched.team_config_snapshot.clone()),
        },
    ]
}

/// Whether any process of the group is alive, judged from /proc off the actor's thread.
async fn group_alive(pgid: u32) -> bool {
    tokio::task::spawn_blocking(move || !iris_agent::procfs::live_group_members(pgid).is_empty())
        .await
        .unwrap_or(true)
}

fn outcome_name(outcome: &TellOutcome) -> &'static str {
    match outcome {
        TellOutcome::Completed(_) => "completed",
        TellOutcome::Failed { .. } => "failed",
        TellOutcome::Accepted { .. } => "accepted",
        TellOutcome::CallerTimeout { .. } => "caller_timeout",
    }
}

/// How long a Shutdown may take: the whole stop sequence plus a margin.
pub(crate) fn shutdown_timeout(grace: &StopGrace) -> Duration {
    grace.after_stdin_close + grace.after_sigterm + grace.after_sigkill + Duration::from_secs(5)
}

/// Deletes `pair`'s session: through its actor when one runs, else directly in the store (no
/// other writer can exist: the registry holds the pair's key while this runs).
pub(crate) async fn delete_session(
    shared: &Arc<Shared>,
    pair: &Pair,
    actor: Option<ActorRef<SessionMsg>>,
    delete_transcript: bool,
) -> Result<Deletion, RuntimeError> {
    if let Some(actor) = actor {
        let answer = actor
            .call(
                |reply| SessionMsg::Delete {
                    delete_transcript,
                    reply,
                },
                Some(shutdown_timeout(&StopGrace::default())),
            )
            .await;
        return match answer {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(ractor::rpc::CallResult::Timeout) => Err(RuntimeError::Timeout {
                what: format!("deleting session {pair}"),
            }),
            _ => Err(RuntimeError::ShuttingDown),
        };
    }
    let Some(record) = shared.store.get_by_pair(pair)? else {
        return Ok(Deletion {
            deleted: None,
            transcript: TranscriptRemoval::NotRequested,
        });
    };
    let deleted = shared.store.delete(record.session_id).await?;
    let transcript = if delete_transcript {
        remove_transcript(shared, pair, &record).await
    } else {
        TranscriptRemoval::NotRequested
    };
    Ok(Deletion {
        deleted,
        transcript,
    })
}

/// Records durably that `pair`'s session failed too often.
pub(crate) async fn mark_error(shared: Arc<Shared>, pair: Pair) {
    let result = match shared.store.get_by_pair(&pair) {
        Ok(Some(record)) => shared
            .store
            .update_all(
                record.session_id,
                vec![
                    Change::SetStatus(SessionStatus::Error),
                    Change::SetProcessState(ProcessState::Stopped),
                ],
            )
            .await
            .map(|_| ()),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::error!(%pair, %error, "could not record the session's error status");
    }
}
