//! The SessionActor: one per live pair, the only writer of its record, and the owner of the
//! pair's agent process and turn queue.
//!
//! Turns run on a worker task, one at a time, in FIFO order, so the mailbox stays free for
//! tells, cancels and status while a turn is in flight. The worker borrows the agent and gives
//! it back with the result; an agent that died or was killed comes back as `None`, and the next
//! turn spawns a new one (`--resume`). A single timer serves both the idle timeout of a live
//! agent and the passivation of a session without one.

mod agent;
mod lifecycle;
mod queue;
mod transcript;
mod turns;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use iris_agent::conversation::liveness::format_elapsed;
use iris_agent::conversation::{Activity, Interrupter, TurnLimits};
use iris_agent::process::StopGrace;
use iris_core::{Pair, ProcessState, SessionId, SessionRecord, SessionStatus, Timestamp, TurnId};
use iris_store::{Change, Mutation};
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub(crate) use agent::{LaunchContext, Launched, LiveAgent};
pub use transcript::TranscriptRemoval;
pub(crate) use transcript::remove_transcript;
pub(crate) use turns::{Ticket, TurnProgress};
use turns::{Turn, WorkerDone};

use crate::error::RuntimeError;
use crate::pool::{PoolMsg, PoolNotice};
use crate::shared::Shared;
use crate::tell::{TellOutcome, TurnError};

/// How soon a session tries again to reload its record when the store could not be read.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// Messages a SessionActor handles: from callers (through the `Runtime`), from the pool, and from
/// its own worker and timers. Local only: some carry live handles (the worker's agent, a pool
/// permit), so none of them crosses a node.
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
        activity: tokio::sync::watch::Receiver<Activity>,
    },
    /// The worker finished the job in flight.
    TurnDone(Box<WorkerDone>),
    /// An agent being stopped in the background is gone.
    Retired,
    /// The session's timer: idle timeout of the agent, or passivation without one.
    Tick,
    /// A shutdown's grace for the turn in flight has passed.
    ShutdownDeadline,
    /// A write the snapshot already shows failed (a turn's bookkeeping, on a full disk): reload
    /// the record from the store, so what the session shows is what is durable.
    Resync,
    /// Test hook: fail the actor as a panic would.
    #[cfg(feature = "testing")]
    Crash,
}

impl From<PoolNotice> for SessionMsg {
    fn from(notice: PoolNotice) -> SessionMsg {
        match notice {
            PoolNotice::Evict { permit } => SessionMsg::Evict { permit },
            PoolNotice::HealthCheck => SessionMsg::HealthCheck,
        }
    }
}

/// The way back, which the pool's [`Holder`](crate::pool::Holder) needs to return a notice it
/// could not deliver: exactly the messages `From<PoolNotice>` makes.
impl TryFrom<SessionMsg> for PoolNotice {
    type Error = SessionMsg;

    fn try_from(message: SessionMsg) -> Result<PoolNotice, SessionMsg> {
        match message {
            SessionMsg::Evict { permit } => Ok(PoolNotice::Evict { permit }),
            SessionMsg::HealthCheck => Ok(PoolNotice::HealthCheck),
            other => Err(other),
        }
    }
}

/// A live session: its actor, and the snapshot of its record that the actor republishes after
/// every change. Reading the snapshot enters no mailbox.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub actor: ActorRef<SessionMsg>,
    pub snapshot: Arc<ArcSwap<SessionRecord>>,
}

impl SessionHandle {
    pub fn record(&self) -> Arc<SessionRecord> {
        self.snapshot.load_full()
    }
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
    /// What the agent is doing, when it is awake. (Absent from JSON written before it existed;
    /// never skipped when written, so the non-self-describing encodings stay aligned.)
    #[serde(default)]
    pub activity: Option<AgentActivity>,
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
    Turn(Box<Turn>),
    Wake(RpcReplyPort<Result<SessionRecord, RuntimeError>>),
    /// A compaction, asked for (with its caller) or due by the compaction policy (without),
    /// and the status to return to if it fails.
    Compact(
        Option<RpcReplyPort<Result<SessionRecord, RuntimeError>>>,
        SessionStatus,
    ),
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
    /// What the agent does, once it is up.
    activity: Option<tokio::sync::watch::Receiver<Activity>>,
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
    /// The agent now running could not resume the conversation and started it again without
    /// its history; the next turn booked records it.
    history_lost: bool,
    /// A shutdown waiting for the turn in flight.
    stopping: Option<(StopGrace, RpcReplyPort<()>)>,
    /// An automatic compaction failed: none is tried again by this actor until a compaction
    /// succeeds (one asked for still runs), so a conversation the agent will not compact does
    /// not cost a model call after every turn. A later actor of the session tries once more.
    auto_compaction_paused: bool,
    /// Finished turns whose bookkeeping is committing: each answers its callers once its write
    /// is durable, while the next turn already runs.
    bookings: JoinSet<()>,
    /// Woken whenever a queued turn leaves the queue: tells waiting for room try again.
    room: Arc<tokio::sync::Notify>,
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
            history_lost: false,
            stopping: None,
            auto_compaction_paused: false,
            bookings: JoinSet::new(),
            room: Arc::new(tokio::sync::Notify::new()),
        };
        state.room = state.shared.room(&state.pair);
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
        let queued = state.queued_turns();
        // Every async body is boxed: ractor keeps the handler future inline in the actor's
        // task, so the largest one would otherwise be paid by every idle actor (P5).
        Box::pin(state.dispatch_message(message)).await?;
        if state.stopping.is_none() {
            Box::pin(state.run_next()).await;
        }
        if state.queued_turns() < queued {
            state.room.notify_waiters();
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
        // Tells waiting for room try again, and meet the session's next actor.
        state.room.notify_waiters();
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
                let ticket = self.tell(from, message).await;
                if ticket.is_ok() && self.stopping.is_none() {
                    // Start it now if it can start: its first ledger row is then queued for the
                    // store before the caller holds its id (a flush after this reply covers it).
                    Box::pin(self.run_next()).await;
                }
                let _ = reply.send(ticket);
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
                if let Err(error) = self.fail_fast() {
                    let _ = reply.send(Err(error));
                    return Ok(());
                }
                let previous = self.snapshot.load().status;
                self.apply_or_log(vec![Change::SetStatus(SessionStatus::Compacting)])
                    .await;
                self.queue.push_back(Job::Compact(Some(reply), previous));
            }
            SessionMsg::Evict { permit } => self.evict(permit),
            SessionMsg::HealthCheck => self.health_check().await,
            SessionMsg::AgentUp {
                job,
                launched,
                interrupter,
                activity,
            } => self.agent_up(job, *launched, interrupter, activity).await,
            SessionMsg::TurnDone(done) => self.job_done(*done).await,
            SessionMsg::Retired => self.retired().await,
            SessionMsg::Tick => self.tick(),
            SessionMsg::ShutdownDeadline => self.shutdown_deadline().await,
            SessionMsg::Resync => self.resync().await,
            #[cfg(feature = "testing")]
            SessionMsg::Crash => {
                return Err(format!("injected failure of session {}", self.pair).into());
            }
        }
        Ok(())
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

    /// Replaces the snapshot's durable fields with the store's, after a write it had published
    /// ahead of its commit failed. The transient fields (process state, current turn, agent
    /// process) are this actor's own knowledge and stay. Turns still committing are waited for
    /// first: their changes are published too, and are durable only once they land. If the
    /// store cannot be read now (it is being reopened after a fault), this is tried again.
    async fn resync(&mut self) {
        self.settle_bookings().await;
        let _ = self.shared.store.flush().await;
        match self.shared.store.get_by_session_id(&self.id) {
            Ok(Some(mut stored)) => {
                let live = self.snapshot.load_full();
                stored.process_state = live.process_state;
                stored.current_turn = live.current_turn;
                stored.agent_process = live.agent_process;
                tracing::info!(pair = %self.pair, session = %self.id, message_count = stored.message_count, "the session record was reloaded from the store after a failed write");
                self.publish(stored);
            }
            // Deleted meanwhile: the deletion stops this actor.
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(pair = %self.pair, session = %self.id, %error, "cannot reload the session record yet; trying again");
                self.myself.send_after(RESYNC_RETRY, || SessionMsg::Resync);
            }
        }
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

/// How long a Shutdown may take: the whole stop sequence plus a margin.
pub(crate) fn shutdown_timeout(grace: &StopGrace) -> Duration {
    grace.after_stdin_close + grace.after_sigterm + grace.after_sigkill + Duration::from_secs(5)
}

/// Deletes `pair`'s session (only if it is session `expect`, when given): through its actor
/// when one runs, else directly in the store (no other writer can exist: the registry holds the
/// pair's key while this runs).
///
/// An actor that stopped before it took the deletion (it passivated a moment before) owns
/// nothing any more: once it is gone, the record is deleted from the store directly, so
/// passivation never surfaces as an error.
pub(crate) async fn delete_session(
    shared: &Arc<Shared>,
    pair: &Pair,
    expect: Option<SessionId>,
    actor: Option<ActorRef<SessionMsg>>,
    delete_transcript: bool,
) -> Result<Deletion, RuntimeError> {
    let limit = shutdown_timeout(&StopGrace::default());
    if let Some(actor) = actor {
        let answer = actor
            .call(
                |reply| SessionMsg::Delete {
                    delete_transcript,
                    reply,
                },
                Some(limit),
            )
            .await;
        match answer {
            Ok(ractor::rpc::CallResult::Success(Err(RuntimeError::ShuttingDown)))
                if shared.check_open().is_ok() => {}
            Ok(ractor::rpc::CallResult::Success(result)) => return result,
            Ok(ractor::rpc::CallResult::Timeout) => {
                return Err(RuntimeError::Timeout {
                    what: format!("deleting session {pair}"),
                });
            }
            _ if shared.check_open().is_err() => return Err(RuntimeError::ShuttingDown),
            // Passivated before it saw the deletion.
            _ => {}
        }
        // Its last writes are done once it has stopped.
        if actor.wait(Some(limit)).await.is_err() {
            return Err(RuntimeError::Timeout {
                what: format!("deleting session {pair} (waiting for its actor to stop)"),
            });
        }
    }
    let Some(record) = shared
        .store
        .get_by_pair(pair)?
        .filter(|r| expect.is_none_or(|id| r.session_id == id))
    else {
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

#[cfg(test)]
mod notice_tests {
    use super::*;

    /// The pool's `DerivedActorRef` panics if a notice it could not deliver does not convert
    /// back: every notice must survive the round trip.
    #[test]
    fn every_pool_notice_converts_to_a_session_message_and_back() {
        for notice in [PoolNotice::Evict { permit: 7 }, PoolNotice::HealthCheck] {
            let message = SessionMsg::from(notice);
            assert_eq!(PoolNotice::try_from(message).ok(), Some(notice));
        }
        assert!(PoolNotice::try_from(SessionMsg::Tick).is_err());
    }
}
