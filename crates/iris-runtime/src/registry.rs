//! The Registry actor: the only creator of sessions.
//!
//! Its mailbox serializes requests per pair. A request for a pair that is being created joins
//! the waiters of that creation, and every waiter gets the same answer (single-flight). The slow
//! work (the durable write, the agent's spawn and handshake) runs on a task, never in the
//! registry's handler, so creations of different pairs proceed in parallel. A pair's key is
//! freed only when its actor's termination is observed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use iris_core::{ErrorCode, Pair, ProcessState, SessionId, SessionRecord, Timestamp};
use iris_store::Change;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};

use crate::error::{RuntimeError, SessionRef};
use crate::events::EventKind;
use crate::session::{
    Deletion, SessionActor, SessionArgs, SessionHandle, TranscriptRemoval, delete_session,
    mark_error,
};
use crate::shared::Shared;

/// Pair → live session: written by the registry alone (as actors start and stop), read by the
/// `Runtime` without entering any mailbox.
pub(crate) type Live = dashmap::DashMap<Pair, SessionHandle>;

/// A request's reply port.
type Reply = RpcReplyPort<Result<SessionHandle, RuntimeError>>;

/// Messages the registry handles.
#[derive(Debug)]
pub(crate) enum RegistryMsg {
    /// Return the pair's session, bringing it up (from the store, or newly created) if needed.
    /// With `must_create`, an existing session is an `AlreadyExists` error.
    Obtain {
        pair: Pair,
        must_create: bool,
        /// For a request by session id: the session it must be. Such a request never creates;
        /// if the pair's session is another one, or is being deleted, it is `NotFound`.
        expect: Option<SessionId>,
        reply: Reply,
    },
    /// A creation task finished.
    Started {
        pair: Pair,
        outcome: Result<Started, RuntimeError>,
    },
    /// Delete the pair's session (its actor and agent stop first), only if it is session
    /// `expect` when that is given.
    Retire {
        pair: Pair,
        expect: Option<SessionId>,
        delete_transcript: bool,
        reply: RpcReplyPort<Result<Deletion, RuntimeError>>,
    },
    /// A retirement task finished its deletion.
    Retired { pair: Pair },
    /// Clear a session's failure state (status `error` after repeated failures), so requests
    /// bring it up again.
    Reset {
        pair: Pair,
        reply: RpcReplyPort<Result<(), RuntimeError>>,
    },
}

// Local only: under ractor's `cluster` feature (the node's cluster turns it on) every message
// type says whether it may cross a node. This one does not (it carries reply ports and live
// handles): a plain local message, never advertised to peers.
#[cfg(feature = "cluster")]
impl ractor::Message for RegistryMsg {}

/// What a creation task brings back.
#[derive(Debug)]
pub(crate) struct Started {
    handle: SessionHandle,
    /// Whether this flight created the record (rather than loading an existing one).
    created: bool,
}

/// One waiter of a creation in flight.
#[derive(Debug)]
struct Waiter {
    must_create: bool,
    expect: Option<SessionId>,
    reply: Reply,
}

/// Where a pair stands. A key leaves the map only when its actor's termination is observed (and,
/// for a deletion, when the deletion is done), so no pair ever has two actors.
enum Slot {
    /// A creation (or restart) is in flight; these callers wait for it. A `load_only` flight
    /// (started by a request by id) brings up a stored record but never creates one.
    Starting {
        waiters: Vec<Waiter>,
        load_only: bool,
    },
    /// The actor runs.
    Live(SessionHandle),
    /// The session is being deleted; these callers wait, then get a new session.
    Stopping {
        waiters: Vec<Waiter>,
        /// Whether the record is being deleted (rather than reset).
        deleting: bool,
        /// The actor that still has to terminate, if there was one.
        actor: Option<ActorId>,
        /// Whether the record is deleted.
        deleted: bool,
    },
    /// The actor failed too often; requests fail fast until the session is woken or reset.
    Failed(RuntimeError),
}

/// How many failures within [`FAILURE_WINDOW`] put a session in status `error`.
const MAX_FAILURES: usize = 3;
/// The window of the restart budget.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

pub(crate) struct RegistryState {
    /// This registry, for the tasks it spawns to report back to.
    myself: ActorRef<RegistryMsg>,
    shared: Arc<Shared>,
    live: Arc<Live>,
    slots: HashMap<Pair, Slot>,
    by_actor: HashMap<ActorId, Pair>,
    failures: HashMap<Pair, VecDeque<Instant>>,
}

pub(crate) struct Registry;

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = (Arc<Shared>, Arc<Live>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (shared, live): (Arc<Shared>, Arc<Live>),
    ) -> Result<RegistryState, ActorProcessingErr> {
        Ok(RegistryState {
            myself,
            shared,
            live,
            slots: HashMap::new(),
            by_actor: HashMap::new(),
            failures: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistryMsg::Obtain {
                pair,
                must_create,
                expect,
                reply,
            } => state.obtain(
                pair,
                Waiter {
                    must_create,
                    expect,
                    reply,
                },
            ),
            RegistryMsg::Started { pair, outcome } => state.started(pair, outcome),
            RegistryMsg::Retire {
                pair,
                expect,
                delete_transcript,
                reply,
            } => state.retire(pair, expect, delete_transcript, reply),
            RegistryMsg::Retired { pair } => state.retired(pair),
            RegistryMsg::Reset { pair, reply } => state.reset(pair, reply),
        }
        Ok(())
    }

    /// Ours, not ractor's default (which would stop the registry when any session stops): a
    /// session that ends frees its pair.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                state.terminated(&cell, reason.as_deref().unwrap_or("stopped"));
            }
            SupervisionEvent::ActorFailed(cell, error) => state.failed(&cell, &error),
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    fn obtain(&mut self, pair: Pair, waiter: Waiter) {
        if let Err(e) = self.shared.check_teams(&pair) {
            let _ = waiter.reply.send(Err(e));
            return;
        }
        if let Some(Slot::Live(handle)) = self.slots.get(&pair)
            && !matches!(
                handle.actor.get_status(),
                ActorStatus::Starting | ActorStatus::Running
            )
        {
            // The actor is stopping (passivation, say) and its termination is not handled yet:
            // forget it now, so its end frees nothing, and bring the session up again.
            self.by_actor.remove(&handle.actor.get_id());
            self.live.remove(&pair);
            self.slots.remove(&pair);
        }
        match self.slots.get_mut(&pair) {
            Some(Slot::Live(handle)) => {
                let answer = answer_for(&waiter, &pair, handle, false);
                let _ = waiter.reply.send(answer);
            }
            Some(Slot::Stopping { deleting: true, .. }) if waiter.expect.is_some() => {
                let _ = waiter.reply.send(Err(not_found(waiter.expect)));
            }
            Some(Slot::Starting { waiters, .. }) | Some(Slot::Stopping { waiters, .. }) => {
                waiters.push(waiter);
            }
            Some(Slot::Failed(error)) => {
                let _ = waiter.reply.send(Err(error.clone()));
            }
            None => {
                let load_only = waiter.expect.is_some();
                self.start_flight(pair, vec![waiter], load_only);
            }
        }
    }

    /// Starts bringing `pair` up (load, or create unless `load_only`, then start its actor).
    fn start_flight(&mut self, pair: Pair, waiters: Vec<Waiter>, load_only: bool) {
        self.slots
            .insert(pair.clone(), Slot::Starting { waiters, load_only });
        tokio::spawn(bring_up(
            self.shared.clone(),
            self.myself.clone(),
            pair,
            load_only,
        ));
    }

    fn started(&mut self, pair: Pair, outcome: Result<Started, RuntimeError>) {
        let (waiters, load_only) = match self.slots.remove(&pair) {
            Some(Slot::Starting { waiters, load_only }) => (waiters, load_only),
            other => {
                // Cannot happen: only a flight puts a pair in Starting. Never keep two actors.
                tracing::error!(%pair, "a creation finished for a pair that was not starting");
                if let Some(slot) = other {
                    self.slots.insert(pair, slot);
                }
                if let Ok(started) = outcome {
                    started.handle.actor.stop(Some("duplicate".into()));
                }
                return;
            }
        };
        match outcome {
            Ok(Started { handle, created }) => {
                // Published before anyone is answered: a caller that reads the pair right after
                // (`get_session`) must find the live snapshot, not the store, which may still
                // lack the actor's transient writes.
                self.by_actor.insert(handle.actor.get_id(), pair.clone());
                // A session that comes up again after a failure keeps its failure history.
                self.live.insert(pair.clone(), handle.clone());
                // The first caller that asked for a creation gets it, if this flight created
                // the record; every other creator learns that it exists.
                let mut creation_available = created;
                for waiter in waiters {
                    let creates = waiter.must_create && std::mem::take(&mut creation_available);
                    let answer = answer_for(&waiter, &pair, &handle, creates);
                    let _ = waiter.reply.send(answer);
                }
                self.slots.insert(pair, Slot::Live(handle.clone()));
                // It may be ending already (a passivation right after its start): then its end
                // came before this message, found no pair and was dropped. Seen now, it frees
                // the pair at once; were it kept, a deletion would wait for an end that never
                // comes. (If the end is still to come, it finds nothing and is ignored.)
                if !matches!(
                    handle.actor.get_status(),
                    ActorStatus::Starting | ActorStatus::Running
                ) {
                    self.terminated(&handle.actor.get_cell(), "ended before its start was seen");
                }
            }
            Err(RuntimeError::NotFound { .. }) if load_only => {
                // No stored record: requests by id fail; requests that may create get a new flight.
                let mut creators = Vec::new();
                for waiter in waiters {
                    if waiter.expect.is_some() {
                        let _ = waiter.reply.send(Err(not_found(waiter.expect)));
                    } else {
                        creators.push(waiter);
                    }
                }
                if !creators.is_empty() {
                    self.start_flight(pair, creators, false);
                }
            }
            Err(error) => {
                for waiter in waiters {
                    let _ = waiter.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// A session actor stopped (deleted, passivated or shut down): free its pair, unless a
    /// deletion still runs; callers that waited on a deletion get a new session.
    fn terminated(&mut self, cell: &ActorCell, why: &str) {
        let Some(pair) = self.by_actor.remove(&cell.get_id()) else {
            return;
        };
        tracing::debug!(%pair, why, "session actor ended");
        match self.slots.remove(&pair) {
            Some(Slot::Live(_)) => {
                self.live.remove(&pair);
            }
            Some(Slot::Stopping {
                waiters,
                deleting,
                deleted,
                ..
            }) => {
                if deleted {
                    self.after_stopping(pair, waiters);
                } else {
                    self.slots.insert(
                        pair,
                        Slot::Stopping {
                            waiters,
                            deleting,
                            actor: None,
                            deleted,
                        },
                    );
                }
            }
            Some(other) => {
                self.slots.insert(pair, other);
            }
            None => {}
        }
    }

    /// A session actor failed (panicked or returned an error): restart it from its stored
    /// record, unless it failed too often, in which case the session goes to status `error`.
    fn failed(&mut self, cell: &ActorCell, error: &ActorProcessingErr) {
        let Some(pair) = self.by_actor.remove(&cell.get_id()) else {
            return;
        };
        self.live.remove(&pair);
        let stopping = matches!(self.slots.get(&pair), Some(Slot::Stopping { .. }));
        if stopping {
            // A deletion is under way; treat the failure as the end of the actor.
            self.by_actor.insert(cell.get_id(), pair);
            self.terminated(cell, "failed while stopping");
            return;
        }
        self.slots.remove(&pair);
        let now = Instant::now();
        let recent = self.failures.entry(pair.clone()).or_default();
        recent.retain(|at| now.duration_since(*at) < FAILURE_WINDOW);
        recent.push_back(now);
        if recent.len() >= MAX_FAILURES {
            tracing::error!(%pair, %error, failures = recent.len(), "session actor keeps failing; marking the session as error");
            let failure = RuntimeError::SessionFailed {
                pair: pair.clone(),
                reason: error.to_string(),
            };
            self.slots.insert(pair.clone(), Slot::Failed(failure));
            tokio::spawn(mark_error(self.shared.clone(), pair));
        } else {
            tracing::warn!(%pair, %error, failures = recent.len(), "session actor failed; restarting it from its stored record");
            self.start_flight(pair, Vec::new(), false);
        }
    }

    /// Deletes `pair`'s session: its actor (if any) stops its agent and deletes the record; the
    /// key stays taken until both the deletion and the actor's end are seen.
    fn retire(
        &mut self,
        pair: Pair,
        expect: Option<SessionId>,
        delete_transcript: bool,
        reply: RpcReplyPort<Result<Deletion, RuntimeError>>,
    ) {
        // The pair's live session is another one than the caller looked up (deleted and
        // created again in between): that one is not the caller's to delete.
        if let (Some(expected), Some(Slot::Live(handle))) = (expect, self.slots.get(&pair))
            && handle.record().session_id != expected
        {
            let _ = reply.send(Ok(Deletion {
                deleted: None,
                transcript: TranscriptRemoval::NotRequested,
            }));
            return;
        }
        let actor = match self.slots.remove(&pair) {
            Some(Slot::Live(handle)) => {
                self.live.remove(&pair);
                Some(handle.actor)
            }
            Some(Slot::Stopping {
                waiters,
                deleting: true,
                actor,
                deleted,
            }) => {
                // Another deletion of this pair is under way: this one deletes nothing.
                self.slots.insert(
                    pair,
                    Slot::Stopping {
                        waiters,
                        deleting: true,
                        actor,
                        deleted,
                    },
                );
                let _ = reply.send(Ok(Deletion {
                    deleted: None,
                    transcript: TranscriptRemoval::NotRequested,
                }));
                return;
            }
            Some(busy @ (Slot::Starting { .. } | Slot::Stopping { .. })) => {
                self.slots.insert(pair.clone(), busy);
                let _ = reply.send(Err(RuntimeError::Busy {
                    pair,
                    what: "being created or deleted".into(),
                }));
                return;
            }
            Some(Slot::Failed(_)) | None => None,
        };
        self.failures.remove(&pair);
        self.slots.insert(
            pair.clone(),
            Slot::Stopping {
                waiters: Vec::new(),
                deleting: true,
                actor: actor.as_ref().map(|a| a.get_id()),
                deleted: false,
            },
        );
        let shared = self.shared.clone();
        let registry = self.myself.clone();
        tokio::spawn(async move {
            let outcome = delete_session(&shared, &pair, expect, actor, delete_transcript).await;
            let _ = reply.send(outcome);
            let _ = registry.cast(RegistryMsg::Retired { pair });
        });
    }

    /// A deletion finished: free the key if the actor is gone too.
    fn retired(&mut self, pair: Pair) {
        match self.slots.remove(&pair) {
            Some(Slot::Stopping {
                waiters,
                actor: None,
                ..
            }) => self.after_stopping(pair, waiters),
            Some(Slot::Stopping {
                waiters,
                deleting,
                actor,
                ..
            }) => {
                self.slots.insert(
                    pair,
                    Slot::Stopping {
                        waiters,
                        deleting,
                        actor,
                        deleted: true,
                    },
                );
            }
            Some(other) => {
                self.slots.insert(pair, other);
            }
            None => {}
        }
    }

    /// Forgets the pair's failures. A session in the `Failed` slot is freed and its status set
    /// back to `active` before the reply, so the next request brings it up.
    fn reset(&mut self, pair: Pair, reply: RpcReplyPort<Result<(), RuntimeError>>) {
        self.failures.remove(&pair);
        if !matches!(self.slots.get(&pair), Some(Slot::Failed(_))) {
            let _ = reply.send(Ok(()));
            return;
        }
        // Keep the key taken until the status is written, so no request sees a half-reset.
        self.slots.insert(
            pair.clone(),
            Slot::Stopping {
                waiters: Vec::new(),
                deleting: false,
                actor: None,
                deleted: false,
            },
        );
        let shared = self.shared.clone();
        let registry = self.myself.clone();
        tokio::spawn(async move {
            let result = set_active(&shared, &pair).await;
            let _ = reply.send(result);
            let _ = registry.cast(RegistryMsg::Retired { pair });
        });
    }

    /// The pair is free again: callers that arrived during the deletion get a fresh session.
    fn after_stopping(&mut self, pair: Pair, waiters: Vec<Waiter>) {
        if !waiters.is_empty() {
            self.start_flight(pair, waiters, false);
        }
    }
}

/// Sets the pair's stored status back to `active`.
async fn set_active(shared: &Shared, pair: &Pair) -> Result<(), RuntimeError> {
    if let Some(record) = shared.store.get_by_pair(pair)? {
        shared
            .store
            .update(
                record.session_id,
                Change::SetStatus(iris_core::SessionStatus::Active),
            )
            .await?;
    }
    Ok(())
}

fn needs_cleanup(record: &SessionRecord) -> bool {
    record.process_state != ProcessState::Stopped
        || record.current_turn.is_some()
        || record.agent_process.is_some()
}

/// What a waiter gets from a live session: `NotFound` if it asked for another session by id,
/// `AlreadyExists` if it wanted to create one and this was not its creation, else the handle.
fn answer_for(
    waiter: &Waiter,
    pair: &Pair,
    handle: &SessionHandle,
    created_for_it: bool,
) -> Result<SessionHandle, RuntimeError> {
    let session_id = handle.record().session_id;
    match waiter.expect {
        Some(expected) if expected != session_id => Err(not_found(Some(expected))),
        _ if waiter.must_create && !created_for_it => Err(already_exists(pair, session_id)),
        _ => Ok(handle.clone()),
    }
}

fn not_found(expected: Option<SessionId>) -> RuntimeError {
    match expected {
        Some(id) => RuntimeError::no_session_with_id(id),
        None => RuntimeError::NotFound {
            session: SessionRef::ThisPair,
        },
    }
}

fn already_exists(pair: &Pair, existing: SessionId) -> RuntimeError {
    RuntimeError::AlreadyExists {
        pair: pair.clone(),
        existing,
    }
}

/// Loads or creates the pair's record, starts its actor (linked to the registry), and reports
/// back. A record this flight created is deleted again if the actor fails to start, so a failed
/// eager creation leaves nothing behind.
async fn bring_up(
    shared: Arc<Shared>,
    registry: ActorRef<RegistryMsg>,
    pair: Pair,
    load_only: bool,
) {
    let outcome = load_or_create(&shared, &registry, &pair, load_only).await;
    let _ = registry.cast(RegistryMsg::Started { pair, outcome });
}

async fn load_or_create(
    shared: &Arc<Shared>,
    registry: &ActorRef<RegistryMsg>,
    pair: &Pair,
    load_only: bool,
) -> Result<Started, RuntimeError> {
    let (record, created) = match shared.store.get_by_pair(pair)? {
        // No actor holds this pair on this node, so no agent of it runs here: whatever the
        // record says about a process is stale (a failed actor's agent died with it).
        Some(record) if needs_cleanup(&record) => {
            let cleaned = shared
                .store
                .update_all(
                    record.session_id,
                    vec![
                        Change::SetProcessState(ProcessState::Stopped),
                        Change::SetCurrentTurn(None),
                        Change::SetAgentProcess(None),
                    ],
                )
                .await?;
            (cleaned, false)
        }
        Some(record) => (record, false),
        None if load_only => {
            return Err(RuntimeError::no_session_for(pair.clone()));
        }
        None => {
            let fresh = SessionRecord::new(pair.clone(), SessionId::new_v4(), Timestamp::now());
            (shared.store.create(fresh).await?, true)
        }
    };
    let eager =
        created && shared.config.settings().session_init == iris_core::config::SessionInit::Eager;
    let session_id = record.session_id;
    let snapshot = Arc::new(ArcSwap::from_pointee(record));
    let args = SessionArgs {
        snapshot: snapshot.clone(),
        shared: shared.clone(),
        start_agent: eager,
    };
    if created {
        // Before the actor starts, so its first events come after this one.
        let created = EventKind::SessionCreated { session_id };
        shared.events.publish(Some(pair), created);
    }
    match Actor::spawn_linked(None, SessionActor, args, registry.get_cell()).await {
        Ok((actor, _join)) => {
            // The actor republished the snapshot if starting its agent changed the record.
            Ok(Started {
                handle: SessionHandle { actor, snapshot },
                created,
            })
        }
        Err(spawn_error) => {
            if created {
                match shared.store.delete(session_id).await {
                    Ok(_) => shared
                        .events
                        .publish(Some(pair), EventKind::SessionDeleted { session_id }),
                    Err(error) => {
                        tracing::error!(%pair, %error, "could not delete the record of a failed creation");
                    }
                }
            }
            Err(unwrap_start_error(pair, spawn_error))
        }
    }
}

/// The typed error a SessionActor's start failed with, or a description of whatever else failed.
fn unwrap_start_error(pair: &Pair, error: SpawnErr) -> RuntimeError {
    match error {
        SpawnErr::StartupFailed(inner) => match inner.downcast::<RuntimeError>() {
            Ok(typed) => *typed,
            Err(other) => RuntimeError::Agent {
                pair: pair.clone(),
                code: ErrorCode::ProcessError,
                reason: other.to_string(),
            },
        },
        other => RuntimeError::Agent {
            pair: pair.clone(),
            code: ErrorCode::ProcessError,
            reason: other.to_string(),
        },
    }
}
