//! The Registry actor: the only creator of sessions.
//!
//! Its mailbox serializes requests per pair. A request for a pair that is being created joins
//! the waiters of that creation, and every waiter gets the same answer (single-flight). The slow
//! work (the durable write, the agent's spawn and handshake) runs on a task, never in the
//! registry's handler, so creations of different pairs proceed in parallel. A pair's key is
//! freed only when its actor's termination is observed.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use iris_core::{ErrorCode, Pair, SessionId, SessionRecord, Timestamp};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};

use crate::error::RuntimeError;
use crate::session::{SessionActor, SessionArgs};
use crate::shared::{SessionHandle, Shared};

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
        reply: Reply,
    },
    /// A creation task finished.
    Started {
        pair: Pair,
        outcome: Result<Started, RuntimeError>,
    },
}

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
    reply: Reply,
}

enum Slot {
    Starting(Vec<Waiter>),
    Live(SessionHandle),
}

pub(crate) struct RegistryState {
    shared: Arc<Shared>,
    slots: HashMap<Pair, Slot>,
    by_actor: HashMap<ActorId, Pair>,
}

pub(crate) struct Registry;

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<RegistryState, ActorProcessingErr> {
        Ok(RegistryState {
            shared,
            slots: HashMap::new(),
            by_actor: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistryMsg::Obtain {
                pair,
                must_create,
                reply,
            } => state.obtain(&myself, pair, Waiter { must_create, reply }),
            RegistryMsg::Started { pair, outcome } => state.started(pair, outcome),
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
                state.release(&cell, reason.as_deref().unwrap_or("stopped"));
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(%error, "a session actor failed");
                state.release(&cell, "failed");
            }
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    fn obtain(&mut self, myself: &ActorRef<RegistryMsg>, pair: Pair, waiter: Waiter) {
        if let Err(e) = self.shared.check_teams(&pair) {
            let _ = waiter.reply.send(Err(e));
            return;
        }
        match self.slots.get_mut(&pair) {
            Some(Slot::Live(handle)) => {
                let answer = if waiter.must_create {
                    Err(already_exists(&pair, handle.record().session_id))
                } else {
                    Ok(handle.clone())
                };
                let _ = waiter.reply.send(answer);
            }
            Some(Slot::Starting(waiters)) => waiters.push(waiter),
            None => {
                self.slots
                    .insert(pair.clone(), Slot::Starting(vec![waiter]));
                tokio::spawn(bring_up(self.shared.clone(), myself.clone(), pair));
            }
        }
    }

    fn started(&mut self, pair: Pair, outcome: Result<Started, RuntimeError>) {
        let Some(Slot::Starting(waiters)) = self.slots.remove(&pair) else {
            tracing::error!(%pair, "a creation finished for a pair that was not starting");
            return;
        };
        match outcome {
            Ok(Started { handle, created }) => {
                let session_id = handle.record().session_id;
                // The first caller that asked for a creation gets it, if this flight created
                // the record; every other creator learns that it exists.
                let mut creation_available = created;
                for waiter in waiters {
                    let answer = if waiter.must_create && !std::mem::take(&mut creation_available) {
                        Err(already_exists(&pair, session_id))
                    } else {
                        Ok(handle.clone())
                    };
                    let _ = waiter.reply.send(answer);
                }
                self.by_actor.insert(handle.actor.get_id(), pair.clone());
                self.shared.live.insert(pair.clone(), handle.clone());
                self.slots.insert(pair, Slot::Live(handle));
            }
            Err(error) => {
                for waiter in waiters {
                    let _ = waiter.reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn release(&mut self, cell: &ActorCell, why: &str) {
        if let Some(pair) = self.by_actor.remove(&cell.get_id()) {
            tracing::debug!(%pair, why, "session actor ended; its pair is free");
            self.shared.live.remove(&pair);
            self.slots.remove(&pair);
        }
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
async fn bring_up(shared: Arc<Shared>, registry: ActorRef<RegistryMsg>, pair: Pair) {
    let outcome = load_or_create(&shared, &registry, &pair).await;
    let _ = registry.cast(RegistryMsg::Started { pair, outcome });
}

async fn load_or_create(
    shared: &Arc<Shared>,
    registry: &ActorRef<RegistryMsg>,
    pair: &Pair,
) -> Result<Started, RuntimeError> {
    let (record, created) = match shared.store.get_by_pair(pair)? {
        Some(record) => (record, false),
        None => {
            let fresh = SessionRecord::new(pair.clone(), SessionId::new_v4(), Timestamp::now());
            (shared.store.create(fresh).await?, true)
        }
    };
    let eager =
        created && shared.config.settings().session_init == iris_core::config::SessionInit::Eager;
    let snapshot = Arc::new(ArcSwap::from_pointee(record.clone()));
    let args = SessionArgs {
        record: record.clone(),
        snapshot: snapshot.clone(),
        shared: shared.clone(),
        start_agent: eager,
    };
    match Actor::spawn_linked(None, SessionActor, args, registry.get_cell()).await {
        Ok((actor, _join)) => {
            // The actor republished the snapshot if starting its agent changed the record.
            Ok(Started {
                handle: SessionHandle { actor, snapshot },
                created,
            })
        }
        Err(spawn_error) => {
            if created && let Err(error) = shared.store.delete(record.session_id).await {
                tracing::error!(%pair, %error, "could not delete the record of a failed creation");
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
