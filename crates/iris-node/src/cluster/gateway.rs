//! The gateway: the one actor per node that other nodes talk to (through ractor_cluster), found
//! by its process group `iris.node.<name>`. It answers a peer's hello (do we agree on
//! placement?), its heartbeats, and runs the requests peers forward to this node, each on a task
//! of its own so a long tell never holds up the heartbeats.

use iris_api::{ApiCode, ApiError, Reply, Request, Service};
use iris_core::config::cluster::Placement;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// Minted by the caller's node, so a retry and a late duplicate can be told apart.
    pub request_id: Uuid,
    /// The request, as its wire form.
    pub request: Request,
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

/// The gateway's state: what it serves with, and the forwarded requests running.
#[derive(Debug)]
pub struct GatewayState {
    args: GatewayArgs,
    /// Each forwarded request runs here, so the mailbox stays free for heartbeats; aborted
    /// when the gateway stops (its callers then hear that the node went away).
    running: tokio::task::JoinSet<()>,
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
            GatewayMsg::Forward(bytes, reply) => {
                let service = state.args.service.clone();
                state.running.spawn(async move {
                    let outcome = run_forwarded(&service, &bytes).await;
                    let _ = reply.send(serde_json::to_vec(&outcome).unwrap_or_default());
                });
            }
        }
        Ok(())
    }
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
async fn run_forwarded(service: &Service, bytes: &[u8]) -> ForwardedOutcome {
    let forwarded: Forwarded = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ApiCode::Internal,
            format!("a peer forwarded a request this node cannot read ({e}); are both nodes the same iris version?"),
        )
    })?;
    tracing::debug!(request_id = %forwarded.request_id, command = forwarded.request.name(), "running a forwarded request");
    service.execute(forwarded.request).await
}
