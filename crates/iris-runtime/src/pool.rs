//! The ProcessPool actor: at most `max_processes` live agent processes per node.
//!
//! A session asks for a [`Permit`] before it spawns an agent and holds it for as long as the
//! process lives: dropping the permit (after the process is stopped and reaped) gives the slot
//! back. When every slot is taken, the pool asks the least recently used *idle* holder to stop
//! its agent; a busy holder is never asked. With every holder busy, requests wait in FIFO order,
//! bounded by the requester's `spawn_timeout`. A holder that becomes idle while requests wait
//! is asked to stop at once, so waiting requests get the next free slot.
//!
//! The pool also drives the periodic health check: every `health_check_interval` it asks each
//! holder to check its process.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use iris_core::Pair;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// What the pool tells a holder (or a requester): the pool's own notice type, so the pool knows
/// nothing of the session's messages. A session hands the pool a [`Holder`] that converts each
/// notice into one of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolNotice {
    /// The pool needs this holder's slot (sent only while the holder looked idle); `permit` names
    /// the permit, so a holder that has meanwhile moved on to another ignores it.
    Evict { permit: u64 },
    /// Time to check the agent process (the periodic health check).
    HealthCheck,
}

/// Whom the pool notifies: the requester of a permit, as its own actor.
pub(crate) type Holder = DerivedActorRef<PoolNotice>;

/// Messages the pool handles.
#[derive(Debug)]
pub(crate) enum PoolMsg {
    /// Grant a permit when a slot is free (the reply waits until then).
    Acquire {
        pair: Pair,
        session: Holder,
        reply: RpcReplyPort<Permit>,
    },
    /// A permit was dropped: its process is gone.
    Release { id: u64 },
    /// The holder's process started or finished a turn.
    SetBusy { id: u64, busy: bool },
    /// A holder that was asked to stop its agent declined (it had become busy).
    Declined { id: u64 },
    /// Time to ask every holder to check its process.
    HealthCheck,
    /// Test and metrics view of the pool.
    Inspect { reply: RpcReplyPort<PoolView> },
}

// Local only: under ractor's `cluster` feature (the node's cluster turns it on) every message
// type says whether it may cross a node. This one does not (it carries reply ports and live
// handles): a plain local message, never advertised to peers.
#[cfg(feature = "cluster")]
impl ractor::Message for PoolMsg {}

/// The pool as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolView {
    /// `max_processes`.
    pub max: usize,
    /// Permits held (live processes).
    pub held: usize,
    /// Holders running a turn.
    pub busy: usize,
    /// Requests waiting for a slot.
    pub waiting: usize,
}

/// A slot for one live agent process. Dropping it returns the slot to the pool.
#[derive(Debug)]
pub(crate) struct Permit {
    id: u64,
    pool: ActorRef<PoolMsg>,
}

impl Permit {
    /// Tells the pool whether the process is running a turn (busy holders are never evicted).
    pub fn set_busy(&self, busy: bool) {
        let _ = self.pool.cast(PoolMsg::SetBusy { id: self.id, busy });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let _ = self.pool.cast(PoolMsg::Release { id: self.id });
    }
}

struct Held {
    pair: Pair,
    session: Holder,
    busy: bool,
    /// When it last became idle (or was granted): the LRU key.
    idle_since: Instant,
    /// Asked to stop its agent; not asked again until it declines.
    evicting: bool,
    /// Declined an eviction (it had become busy); not asked again before it is idle again.
    declined: bool,
}

struct Waiting {
    pair: Pair,
    session: Holder,
    reply: RpcReplyPort<Permit>,
}

pub(crate) struct PoolState {
    myself: ActorRef<PoolMsg>,
    max: usize,
    next_id: u64,
    holders: HashMap<u64, Held>,
    waiting: VecDeque<Waiting>,
    metrics: Arc<Metrics>,
    health: Option<JoinHandle<()>>,
}

/// How the pool starts.
pub(crate) struct PoolArgs {
    pub max: usize,
    pub health_check_interval: Duration,
    pub metrics: Arc<Metrics>,
}

pub(crate) struct ProcessPool;

impl Actor for ProcessPool {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PoolMsg>,
        args: PoolArgs,
    ) -> Result<PoolState, ActorProcessingErr> {
        let health = (!args.health_check_interval.is_zero())
            .then(|| myself.send_interval(args.health_check_interval, || PoolMsg::HealthCheck));
        Ok(PoolState {
            myself,
            max: args.max,
            next_id: 0,
            holders: HashMap::new(),
            waiting: VecDeque::new(),
            metrics: args.metrics,
            health,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<PoolMsg>,
        message: PoolMsg,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PoolMsg::Acquire {
                pair,
                session,
                reply,
            } => state.acquire(Waiting {
                pair,
                session,
                reply,
            }),
            PoolMsg::Release { id } => {
                state.holders.remove(&id);
                state.grant_waiting();
            }
            PoolMsg::SetBusy { id, busy } => state.set_busy(id, busy),
            PoolMsg::Declined { id } => {
                if let Some(holder) = state.holders.get_mut(&id) {
                    holder.evicting = false;
                    holder.declined = true;
                }
                state.make_room();
            }
            PoolMsg::HealthCheck => {
                for holder in state.holders.values() {
                    let _ = holder.session.send_message(PoolNotice::HealthCheck);
                }
            }
            PoolMsg::Inspect { reply } => {
                let _ = reply.send(state.view());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PoolMsg>,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(health) = state.health.take() {
            health.abort();
        }
        Ok(())
    }
}

impl PoolState {
    fn acquire(&mut self, request: Waiting) {
        self.waiting.retain(|w| !w.reply.is_closed());
        self.waiting.push_back(request);
        self.grant_waiting();
        // FIFO: if anything still waits, the newest request (this one) does.
        if !self.waiting.is_empty() {
            self.metrics.pool_waits.inc();
        }
    }

    /// Grants free slots to waiting requests, oldest first, skipping requesters that gave up.
    fn grant_waiting(&mut self) {
        while self.holders.len() < self.max {
            let Some(request) = self.waiting.pop_front() else {
                return;
            };
            self.grant(request);
        }
        self.make_room();
    }

    fn grant(&mut self, request: Waiting) {
        if request.reply.is_closed() {
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let permit = Permit {
            id,
            pool: self.myself.clone(),
        };
        self.holders.insert(
            id,
            Held {
                pair: request.pair,
                session: request.session,
                busy: true,
                idle_since: Instant::now(),
                evicting: false,
                declined: false,
            },
        );
        // A requester that timed out in the meantime drops the permit with the reply, which
        // releases the slot again.
        let _ = request.reply.send(permit);
    }

    fn set_busy(&mut self, id: u64, busy: bool) {
        if let Some(holder) = self.holders.get_mut(&id) {
            holder.busy = busy;
            if !busy {
                holder.idle_since = Instant::now();
                holder.declined = false;
            }
        }
        if !busy {
            self.make_room();
        }
    }

    /// While requests wait for more slots than are being freed, asks the least recently used
    /// idle holders to stop their agents.
    fn make_room(&mut self) {
        self.waiting.retain(|w| !w.reply.is_closed());
        let freeing = self.holders.values().filter(|h| h.evicting).count();
        let mut needed = self.waiting.len().saturating_sub(freeing);
        while needed > 0 {
            let Some((id, victim)) = self
                .holders
                .iter_mut()
                .filter(|(_, h)| !h.busy && !h.evicting && !h.declined)
                .min_by_key(|(_, h)| h.idle_since)
            else {
                return;
            };
            victim.evicting = true;
            tracing::info!(pair = %victim.pair, "evicting the least recently used idle agent to free a process slot");
            let _ = victim
                .session
                .send_message(PoolNotice::Evict { permit: *id });
            needed -= 1;
        }
    }

    fn view(&self) -> PoolView {
        PoolView {
            max: self.max,
            held: self.holders.len(),
            busy: self.holders.values().filter(|h| h.busy).count(),
            waiting: self.waiting.iter().filter(|w| !w.reply.is_closed()).count(),
        }
    }
}
