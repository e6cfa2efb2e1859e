//! The SessionActor: one per live pair, the only writer of its record, and the owner of the
//! pair's agent process and turn queue.
//!
//! Turns run on a worker task, one at a time, in FIFO order, so the mailbox stays free for
//! tells, cancels and status while a turn is in flight. The worker borrows the agent and gives
//! it back with the result; an agent that died or was killed comes back as `None`, and the next
//! turn spawns a new one (`--resume`). A single timer serves both the idle timeout of a live
//! agent and the passivation of a session without one.

mod agent;
mod control;
mod ledger;
mod phase;
mod requests;
mod status;
mod tell;
mod transcript;
mod turn;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use iris_agent::conversation::{Activity, Interrupter};
use iris_agent::process::StopGrace;
use iris_core::{Pair, SessionId, SessionRecord};
use iris_store::Change;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub(crate) use agent::Launched;
pub(crate) use ledger::{delete_session, mark_error};
pub use status::{AgentActivity, Cancelled, Deletion, PairStatus};
pub use transcript::TranscriptRemoval;
pub(crate) use turn::Ticket;
#[cfg(test)]
pub(crate) use turn::TurnProgress;

use phase::{Job, Phase};
use worker::WorkerDone;

use crate::error::RuntimeError;
use crate::pool::PoolNotice;
use crate::shared::Shared;

/// Messages a SessionActor handles, by family; each family's handlers live in their own file.
/// Local only: the worker's carry a live agent, and the agent's pool permit travels with it, so
/// none of them crosses a node.
#[derive(Debug)]
pub(crate) enum SessionMsg {
    // ----- tell (tell.rs): the turn queue -----
    /// Queue a turn. `record_first_row`: its caller will hold only the turn id, so the
    /// turn's first ledger row is committed promptly and the ticket can await that commit.
    Tell {
        from: iris_core::TeamName,
        message: String,
        record_first_row: bool,
        /// With an id this session already took, the caller joins that turn instead.
        request_id: Option<iris_core::RequestId>,
        reply: RpcReplyPort<Result<Ticket, RuntimeError>>,
    },
    /// Interrupt the turn in flight; with `drop_queue`, cancel the queued turns too.
    Cancel {
        drop_queue: bool,
        reply: RpcReplyPort<Cancelled>,
    },

    // ----- control (control.rs): the agent's lifecycle and the actor's -----
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
    /// What the session is doing.
    Inspect { reply: RpcReplyPort<PairStatus> },
    /// Walk the original's compaction: `compacting`, `/compact` to a live agent, count reset,
    /// `active` (or `error` on failure). Queued behind the turns before it.
    Compact {
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    },
    /// Stop the agent gracefully, then stop the actor.
    Shutdown {
        grace: StopGrace,
        reply: RpcReplyPort<()>,
    },
    /// A shutdown's grace for the turn in flight has passed.
    ShutdownDeadline,
    /// Stop the agent, delete the record (and the transcript, if asked), then stop the actor.
    Delete {
        delete_transcript: bool,
        reply: RpcReplyPort<Result<Deletion, RuntimeError>>,
    },
    /// The session's timer: idle timeout of the agent, or passivation without one.
    Tick,
    /// The pool needs this session's process slot (sent only while it looked idle).
    Evict { permit: u64 },
    /// Check the agent process (from the pool's periodic health check).
    HealthCheck,
    /// An agent being stopped in the background is gone.
    Retired,

    // ----- ledger (ledger.rs): the record -----
    /// Apply changes to the record durably; reply with the record as stored.
    Mutate {
        changes: Vec<Change>,
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    },
    /// A write the snapshot already shows failed (a turn's bookkeeping, on a full disk): reload
    /// the record from the store, so what the session shows is what is durable.
    Resync,

    // ----- worker (worker.rs): the job in flight -----
    /// The worker started an agent for the job in flight.
    AgentUp {
        job: u64,
        launched: Box<Launched>,
        interrupter: Interrupter,
        activity: tokio::sync::watch::Receiver<Activity>,
    },
    /// The worker finished the job in flight.
    TurnDone(Box<WorkerDone>),

    /// Test hook: fail the actor as a panic would.
    #[cfg(feature = "testing")]
    Crash,
}

// Local only: under ractor's `cluster` feature (the node's cluster turns it on) every message
// type says whether it may cross a node. This one does not (it carries reply ports and live
// handles): a plain local message, never advertised to peers.
#[cfg(feature = "cluster")]
impl ractor::Message for SessionMsg {}

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
    /// Where the session stands, with the data valid there: the idle agent, the job on the
    /// worker, the agent being stopped.
    phase: Phase,
    queue: VecDeque<Job>,
    /// Jobs started, to match a worker's report to its job.
    jobs: u64,
    /// The last turn sequence number used, read from the ledger on first use.
    last_seq: Option<u64>,
    /// Agent crashes within the crash window.
    crashes: VecDeque<Instant>,
    /// Sleep requests, answered once the session is asleep.
    sleepers: Vec<RpcReplyPort<Result<(), RuntimeError>>>,
    /// The agent now running could not resume the conversation and started it again without
    /// its history; the next turn booked records it.
    history_lost: bool,
    /// A budget cap over the pair stood at 80 % or more when its last turn was booked.
    budget_warning: bool,
    /// An automatic compaction failed: none is tried again by this actor until a compaction
    /// succeeds (one asked for still runs), so a conversation the agent will not compact does
    /// not cost a model call after every turn. A later actor of the session tries once more.
    auto_compaction_paused: bool,
    /// Finished turns whose bookkeeping is committing: each answers its callers once its write
    /// is durable, while the next turn already runs.
    bookings: JoinSet<()>,
    /// Woken whenever a queued turn leaves the queue: tells waiting for room try again.
    room: Arc<tokio::sync::Notify>,
    /// The open turns of tells that came with a request id, for their retries to join.
    open_requests: requests::OpenRequests,
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
            phase: Phase::Asleep,
            queue: VecDeque::new(),
            jobs: 0,
            last_seq: None,
            crashes: VecDeque::new(),
            sleepers: Vec::new(),
            history_lost: false,
            budget_warning: false,
            auto_compaction_paused: false,
            bookings: JoinSet::new(),
            room: Arc::new(tokio::sync::Notify::new()),
            open_requests: requests::OpenRequests::default(),
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
        Box::pin(state.run_next()).await;
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
                record_first_row,
                request_id,
                reply,
            } => {
                let ticket = self.tell(from, message, record_first_row, request_id).await;
                if ticket.is_ok() {
                    // Start it now if it can start: its first ledger row (`running`, not
                    // `queued`) is then written before the caller holds its id.
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
            SessionMsg::Compact { reply } => self.compact(reply).await,
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
}

/// How long a Shutdown may take: the whole stop sequence plus a margin.
pub(crate) fn shutdown_timeout(grace: &StopGrace) -> Duration {
    grace.after_stdin_close + grace.after_sigterm + grace.after_sigkill + Duration::from_secs(5)
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
