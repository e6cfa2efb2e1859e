//! The gateway: the one actor per node that other nodes talk to (through ractor_cluster), found
//! by its process group `iris.node.<name>`. It answers a peer's hello (do we agree on
//! placement?), its heartbeats, and runs the requests peers forward to this node, each on a task
//! of its own so a long tell never holds up the heartbeats.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use iris_api::{ApiCode, ApiError, Reply, Request, RequestKind, Service};
use iris_core::RequestId;
use iris_core::config::cluster::Placement;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The process-group scope of iris's cluster actors.
pub const SCOPE: &str = "iris";

/// The process group of node `name`'s gateway.
pub fn group_of(name: &str) -> String {
    format!("iris.node.{name}")
}

/// What peers send a node's gateway. The payloads are JSON bytes: the typed API's own wire
/// form, so a node forwards exactly what a client would have sent.
#[derive(Debug, RactorClusterMessage)]
pub enum GatewayMsg {
    /// A peer's placement (JSON); the answer is empty when both agree, else why not.
    #[rpc]
    Hello(String, RpcReplyPort<String>),
    /// A heartbeat: the same number comes back.
    #[rpc]
    Ping(u64, RpcReplyPort<u64>),
    /// A [`Forwarded`] request (JSON); the answer is a [`Forwarded`] outcome (JSON).
    #[rpc]
    Forward(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// A request one node forwards to the node that owns its pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    /// Minted by the caller's node (or the caller's own, for a tell that came with one), so a
    /// retry and a late duplicate can be told apart.
    pub request_id: RequestId,
    /// The request, as its wire form.
    pub request: Request,
}

impl Forwarded {
    /// `request` under its request id: a tell's own, or a new one. A tell carries the id
    /// itself, so its owner's ledger keeps it with the turn and a retry joins that turn.
    pub fn of(mut request: Request) -> Forwarded {
        let request_id = match &mut request {
            Request::Tell { request_id, .. } => *request_id.get_or_insert_with(RequestId::new),
            _ => RequestId::new(),
        };
        Forwarded {
            request_id,
            request,
        }
    }
}

/// The owner's answer to a [`Forwarded`] request.
pub type ForwardedOutcome = Result<Reply, ApiError>;

/// The gateway actor.
#[derive(Debug)]
pub struct Gateway;

/// What the gateway serves with.
#[derive(Debug)]
pub struct GatewayArgs {
    /// This node's name.
    pub name: String,
    /// The placement this node loaded.
    pub placement: Placement,
    /// Where forwarded requests run.
    pub service: Service,
}

/// The gateway's state: what it serves with, the forwarded requests running, and the answers
/// of recent control requests.
#[derive(Debug)]
pub struct GatewayState {
    args: GatewayArgs,
    /// Each forwarded request runs here, so the mailbox stays free for heartbeats; aborted
    /// when the gateway stops (its callers then hear that the node went away).
    running: tokio::task::JoinSet<()>,
    recent: Recent,
}

/// How many control requests' answers the gateway remembers.
pub const REMEMBERED: usize = 1024;

/// The answers of the last [`REMEMBERED`] forwarded control requests (wake, sleep, cancel, …),
/// by request id: a duplicate gets the first one's answer (waiting for it if it still runs)
/// instead of running again. Tells need no entry here: their turn keeps the request id in the
/// ledger, where a retry finds it, also after a restart. Reads are safe to run twice.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<RequestId>,
    answers: HashMap<RequestId, watch::Receiver<Option<Arc<Vec<u8>>>>>,
}

impl Recent {
    /// The answer (to come) of `request_id`, if it came before.
    fn get(&self, request_id: &RequestId) -> Option<watch::Receiver<Option<Arc<Vec<u8>>>>> {
        self.answers.get(request_id).cloned()
    }

    /// Remembers `request_id`; the answer will come through the returned sender.
    fn remember(&mut self, request_id: RequestId) -> watch::Sender<Option<Arc<Vec<u8>>>> {
        let (answer, receiver) = watch::channel(None);
        if self.order.len() >= REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.answers.remove(&oldest);
        }
        self.order.push_back(request_id);
        self.answers.insert(request_id, receiver);
        answer
    }
}

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GatewayMsg>,
        args: GatewayArgs,
    ) -> Result<GatewayState, ActorProcessingErr> {
        ractor::pg::join_scoped(
            SCOPE.to_owned(),
            group_of(&args.name),
            vec![myself.get_cell()],
        );
        Ok(GatewayState {
            args,
            running: tokio::task::JoinSet::new(),
            recent: Recent::default(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<GatewayMsg>,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        state.running.abort_all();
        while state.running.join_next().await.is_some() {}
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<GatewayMsg>,
        message: GatewayMsg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        // Reap the requests already answered, so the set holds only those running.
        while state.running.try_join_next().is_some() {}
        match message {
            GatewayMsg::Hello(theirs, reply) => {
                let _ =
                    reply.send(disagreement(&state.args.placement, &theirs).unwrap_or_default());
            }
            GatewayMsg::Ping(n, reply) => {
                let _ = reply.send(n);
            }
            GatewayMsg::Forward(bytes, reply) => state.forward(&bytes, reply),
        }
        Ok(())
    }
}

impl GatewayState {
    /// Runs a forwarded request on its own task and answers it there; a duplicate of a recent
    /// control request gets the first one's answer instead.
    fn forward(&mut self, bytes: &[u8], reply: RpcReplyPort<Vec<u8>>) {
        let forwarded: Forwarded = match serde_json::from_slice(bytes) {
            Ok(forwarded) => forwarded,
            Err(e) => {
                let refused: ForwardedOutcome = Err(ApiError::new(
                    ApiCode::Internal,
                    format!(
                        "a peer forwarded a request this node cannot read ({e}); are both nodes the same iris version?"
                    ),
                ));
                let _ = reply.send(encode(&refused));
                return;
            }
        };
        let request_id = forwarded.request_id;
        if forwarded.request.kind() != RequestKind::Control {
            let service = self.args.service.clone();
            self.running.spawn(async move {
                let _ = reply.send(encode(&run_forwarded(&service, forwarded).await));
            });
            return;
        }
        if let Some(mut first) = self.recent.get(&request_id) {
            tracing::info!(%request_id, command = forwarded.request.name(), "a duplicate of a forwarded request gets the first one's answer");
            self.running.spawn(async move {
                if let Ok(answer) = first.wait_for(Option::is_some).await
                    && let Some(bytes) = answer.as_ref()
                {
                    let _ = reply.send(bytes.to_vec());
                }
            });
            return;
        }
        let answer = self.recent.remember(request_id);
        let service = self.args.service.clone();
        self.running.spawn(async move {
            let bytes = encode(&run_forwarded(&service, forwarded).await);
            answer.send_replace(Some(Arc::new(bytes.clone())));
            let _ = reply.send(bytes);
        });
    }
}

/// An outcome as the bytes a peer reads.
fn encode(outcome: &ForwardedOutcome) -> Vec<u8> {
    serde_json::to_vec(outcome).unwrap_or_default()
}

/// Why `ours` and the peer's placement (JSON) disagree, said for a person; `None` when they
/// agree.
pub fn disagreement(ours: &Placement, theirs_json: &str) -> Option<String> {
    let theirs: Placement = match serde_json::from_str(theirs_json) {
        Ok(theirs) => theirs,
        Err(e) => return Some(format!("its placement could not be read ({e})")),
    };
    if ours.digest() == theirs.digest() {
        return None;
    }
    let first = ours
        .first_difference(&theirs)
        .unwrap_or_else(|| "none found".to_owned());
    Some(format!(
        "the placement digests differ (here {}, there {}); first difference: {first}. Every node must load the same [cluster] and teams' `node`",
        ours.digest(),
        theirs.digest()
    ))
}

/// Runs a forwarded request on this node's service.
async fn run_forwarded(service: &Service, forwarded: Forwarded) -> ForwardedOutcome {
    tracing::debug!(request_id = %forwarded.request_id, command = forwarded.request.name(), "running a forwarded request");
    service.execute(forwarded.request).await
}

#[cfg(test)]
mod tests {
    use iris_api::Request;
    use iris_core::TeamName;
    use iris_runtime::Wait;

    use super::*;

    fn team(name: &str) -> TeamName {
        TeamName::new(name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_tell_is_forwarded_under_its_own_request_id_and_carries_a_minted_one() {
        let tell = |request_id| Request::Tell {
            from: team("alpha"),
            to: team("beta"),
            message: "hi".into(),
            wait: Wait::Complete,
            request_id,
        };
        let given = RequestId::new();
        let forwarded = Forwarded::of(tell(Some(given)));
        assert_eq!(forwarded.request_id, given);
        let minted = Forwarded::of(tell(None));
        assert!(
            matches!(minted.request, Request::Tell { request_id: Some(id), .. } if id == minted.request_id)
        );
        let wake = Forwarded::of(Request::Wake {
            from: team("alpha"),
            to: team("beta"),
        });
        assert_ne!(wake.request_id, minted.request_id);
    }

    #[test]
    fn the_recent_answers_are_bounded_and_the_oldest_go_first() {
        let mut recent = Recent::default();
        let ids: Vec<RequestId> = (0..=REMEMBERED).map(|_| RequestId::new()).collect();
        let first = recent.remember(ids[0]);
        first.send_replace(Some(Arc::new(b"done".to_vec())));
        let seen = recent.get(&ids[0]).map(|answer| answer.borrow().clone());
        assert_eq!(seen, Some(Some(Arc::new(b"done".to_vec()))));
        for id in &ids[1..] {
            let _ = recent.remember(*id);
        }
        assert!(recent.get(&ids[0]).is_none());
        assert!(recent.get(&ids[1]).is_some());
        assert_eq!(recent.answers.len(), REMEMBERED);
    }
}
