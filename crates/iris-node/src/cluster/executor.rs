//! The executor of a node of a cluster: a request about a pair runs on the pair's owner, a
//! cluster-wide view on every node, a request naming a session by id where that session is,
//! and the rest here.

use std::sync::Arc;
use std::time::Duration;

use iris_api::{ApiCode, ApiError, Execute, Executing, Reply, Request, RequestKind, Service};
use iris_core::config::cluster::NodeName;
use iris_runtime::Wait;
use ractor::rpc::CallResult;

use super::gateway::{Forwarded, ForwardedOutcome, GatewayMsg};
use super::peers::PeerState;
use super::{Shared, views};

/// Runs requests for pairs hosted elsewhere on their owner, the rest on this node.
#[derive(Debug)]
pub struct ClusterExecutor {
    pub(super) local: Service,
    pub(super) cluster: Arc<Shared>,
}

impl Execute for ClusterExecutor {
    fn execute(&self, request: Request) -> Executing<'_> {
        Box::pin(async move {
            match self.route(&request) {
                Route::Owner(owner) if *owner != self.cluster.me => {
                    let owner = owner.clone();
                    self.forward(&owner, request).await
                }
                Route::Owner(_) | Route::Here => self.local.execute(request).await,
                Route::Holder => self.find_holder(request).await,
                Route::Everywhere => {
                    let limit = match &request {
                        Request::SessionsList { limit, .. } => *limit,
                        _ => None,
                    };
                    let stats = matches!(request, Request::Stats);
                    let parts = self.gather(request).await;
                    if stats {
                        views::merge_stats(parts)
                    } else {
                        Ok(views::merge_sessions(parts, limit))
                    }
                }
            }
        })
    }
}

/// Where a request runs.
enum Route<'a> {
    /// On the node that owns its pair (or its placed receiving team).
    Owner(&'a NodeName),
    /// On every node, merged: a cluster-wide view.
    Everywhere,
    /// On the node that holds the session it names by id: here, else the first peer that has
    /// it.
    Holder,
    /// Here: it names no placed team.
    Here,
}

/// How long a node may take with its part of a cluster-wide view.
pub const VIEW_TIMEOUT: Duration = Duration::from_secs(5);

impl ClusterExecutor {
    /// Where `request` runs: on its pair's owner, on every node (a view), or here.
    fn route(&self, request: &Request) -> Route<'_> {
        match request {
            // Only the owner of a placed team holds the sessions to it.
            Request::SessionsList { to: Some(to), .. } if self.cluster.owners.contains_key(to) => {
                self.owner_of(request).map_or(Route::Here, Route::Owner)
            }
            Request::SessionsList { .. } | Request::Stats => Route::Everywhere,
            Request::SessionsShow {
                target: iris_api::SessionTarget::Id(_),
            }
            | Request::SessionsDelete { .. }
            | Request::SessionsCompact { .. } => Route::Holder,
            _ => self.owner_of(request).map_or(Route::Here, Route::Owner),
        }
    }

    /// Runs a request that names a session by id where the session is: here if this node
    /// holds it, else on the peer that does (asked one after the other; a session id is in one
    /// store only). Not found anywhere is this node's `SESSION_NOT_FOUND`, unless a peer could
    /// not be asked: then `NODE_UNAVAILABLE`, naming it.
    async fn find_holder(&self, request: Request) -> Result<Reply, ApiError> {
        let not_found = |answer: &Result<Reply, ApiError>| matches!(answer, Err(e) if e.code() == ApiCode::from(iris_core::ErrorCode::SessionNotFound));
        let here = self.local.execute(request.clone()).await;
        if !not_found(&here) {
            return here;
        }
        let mut unreachable = Vec::new();
        for peer in self.cluster.peers.peers.keys() {
            let there = self.forward(peer, request.clone()).await;
            match there {
                Err(e) if e.code() == ApiCode::NodeUnavailable => {
                    unreachable.push(peer.to_string())
                }
                there if not_found(&there) => {}
                there => return there,
            }
        }
        if unreachable.is_empty() {
            return here;
        }
        Err(ApiError::new(
            ApiCode::NodeUnavailable,
            format!(
                "no node that answered holds this session, and node(s) {} did not answer: it may be there; retry once `iris cluster status` shows them up",
                unreachable.join(", ")
            ),
        ))
    }

    /// Runs a view's request here and on every peer at once; each part is a reply, or why
    /// there is none (a peer not up, or silent for [`VIEW_TIMEOUT`]). This node's part first.
    async fn gather(&self, request: Request) -> Vec<views::Part> {
        let peers = self.cluster.peers.peers.keys().map(|peer| {
            let request = request.clone();
            async move {
                let part = tokio::time::timeout(VIEW_TIMEOUT, self.forward(peer, request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::new(
                            ApiCode::NodeUnavailable,
                            format!("node {peer} did not answer within {VIEW_TIMEOUT:?}"),
                        ))
                    });
                (peer.to_string(), part)
            }
        });
        let here = async {
            (
                self.cluster.me.to_string(),
                self.local.execute(request.clone()).await,
            )
        };
        let (here, peers) = tokio::join!(here, futures_util::future::join_all(peers));
        std::iter::once(here).chain(peers).collect()
    }

    /// The node that owns the pair a request is about, when it names one whose receiving team
    /// is placed on a node; for a list, the node of the receiving team it is filtered by.
    fn owner_of(&self, request: &Request) -> Option<&NodeName> {
        let to = match request {
            Request::SessionsList { to: Some(to), .. } => to,
            Request::Tell { to, .. }
            | Request::Wake { to, .. }
            | Request::Sleep { to, .. }
            | Request::Cancel { to, .. }
            | Request::Report { to, .. }
            | Request::Status { to, .. }
            | Request::SessionsReboot { to, .. }
            | Request::SessionsShow {
                target: iris_api::SessionTarget::Pair { to, .. },
            } => to,
            _ => return None,
        };
        self.cluster.owners.get(to)
    }

    /// Runs `request` on `owner`: at once `NODE_UNAVAILABLE` when the owner is not up, and the
    /// same as soon as it is lost while the request runs (its outcome is then unknown).
    async fn forward(&self, owner: &NodeName, request: Request) -> Result<Reply, ApiError> {
        let forwards = &self.cluster.forwards;
        let (counter, outcome) = match self.forward_once(owner, request).await {
            Ok(Ok(reply)) => (&forwards.answered, Ok(reply)),
            Ok(Err(error)) => (&forwards.failed, Err(error)),
            Err(Undelivered::NotUp(error)) => (&forwards.unavailable, Err(error)),
            Err(Undelivered::Lost(error)) => (&forwards.unknown, Err(error)),
        };
        counter.inc();
        outcome
    }

    /// The owner's outcome, or why there is none.
    async fn forward_once(
        &self,
        owner: &NodeName,
        request: Request,
    ) -> Result<ForwardedOutcome, Undelivered> {
        let peers = &self.cluster.peers;
        let gateway = peers
            .gateway(owner)
            .map_err(|state| Undelivered::NotUp(unavailable(owner, &state)))?;
        let forwarded = Forwarded::of(request);
        let request_id = forwarded.request_id;
        let lost = || Undelivered::Lost(lost(owner, &forwarded));
        let limit = forward_limit(forwarded.request.kind());
        let bytes = match serde_json::to_vec(&forwarded) {
            Ok(bytes) => bytes,
            Err(e) => {
                return Ok(Err(ApiError::new(
                    ApiCode::Internal,
                    format!("cannot encode the request: {e}"),
                )));
            }
        };
        let call = gateway.call(|reply| GatewayMsg::Forward(bytes, reply), limit);
        let answer = tokio::select! {
            answer = call => answer,
            () = peers.lost(owner) => {
                return Err(lost());
            }
        };
        match answer {
            Ok(CallResult::Success(bytes)) => Ok(serde_json::from_slice::<ForwardedOutcome>(&bytes)
                .unwrap_or_else(|e| {
                    Err(ApiError::new(
                        ApiCode::Internal,
                        format!("node {owner} answered request {request_id} with something this node cannot read ({e}); are both nodes the same iris version?"),
                    ))
                })),
            Ok(CallResult::Timeout) | Ok(CallResult::SenderError) | Err(_) => Err(lost()),
        }
    }
}

/// Why a forwarded request has no outcome from its owner.
enum Undelivered {
    /// The owner was not up: the request did not run.
    NotUp(ApiError),
    /// The owner was lost while it ran the request: the outcome is unknown.
    Lost(ApiError),
}

/// How long after its own limit a tell with a timeout may wait for its owner's answer (the
/// owner answers at the limit, with the partial text).
pub const FORWARD_GRACE: Duration = Duration::from_secs(2);

/// How long a forwarded request may take, by what it does: a tell with a timeout keeps its
/// caller's bound (plus [`FORWARD_GRACE`]) even when the owner is cut off before the heartbeats
/// say so; a tell that waits for its end has no limit (the turn's own limits bound it, and a
/// lost owner ends the wait).
fn forward_limit(kind: RequestKind) -> Option<Duration> {
    match kind {
        RequestKind::Read | RequestKind::Tell(Wait::Async) => Some(Duration::from_secs(30)),
        RequestKind::Control => Some(Duration::from_secs(300)),
        RequestKind::Tell(Wait::Timeout(limit)) => Some(limit + FORWARD_GRACE),
        RequestKind::Tell(Wait::Complete) => None,
    }
}

/// The owner cannot be reached.
fn unavailable(owner: &NodeName, state: &PeerState) -> ApiError {
    let why = match state {
        // A suspected peer's link is closed (then it is Down while being redialled): say both.
        PeerState::Down => {
            "is not connected (it went away, or it missed its heartbeats and its link was closed; it is being dialled again)"
        }
        PeerState::Suspected => "is not answering its heartbeats",
        PeerState::ConfigMismatch => "loaded another placement (see `iris cluster status`)",
        PeerState::Up => "is not reachable",
    };
    ApiError::new(
        ApiCode::NodeUnavailable,
        format!(
            "node {owner}, which hosts this pair's receiving team, {why}; the request did not run. Retry once it is back (`iris cluster status` shows the nodes)"
        ),
    )
}

/// The owner was lost while it ran the request: it may or may not have run.
fn lost(owner: &NodeName, forwarded: &Forwarded) -> ApiError {
    let request_id = forwarded.request_id;
    let settle = match &forwarded.request {
        Request::Tell { from, to, .. } => format!(
            "to settle it, retry the same tell with `--request-id {request_id}` once the node is back: it gets the first attempt's turn if that ran, and runs once if not (`iris report {from} {to}` shows each turn's request id)"
        ),
        _ => "check with `iris status` once the node is back before you retry".to_owned(),
    };
    ApiError::new(
        ApiCode::NodeUnavailable,
        format!(
            "node {owner} stopped answering while it ran request {request_id} ({}): the outcome is unknown (it may have run); {settle}",
            forwarded.request.name()
        ),
    )
}
