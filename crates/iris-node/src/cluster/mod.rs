//! The cluster: iris nodes on several machines, each pair owned by the node that hosts its
//! receiving team (`teams.NAME.node`), over ractor_cluster.
//!
//! - **Transport and membership** are ractor_cluster's: a `NodeServer` listens on this node's
//!   `[cluster.nodes.NAME] address` with the shared cookie; each node dials every other (the
//!   session election keeps one link per pair of nodes).
//! - **Discovery**: each node's [`gateway::Gateway`] joins the process group
//!   `iris.node.<name>`; a peer's gateway is found there once the link is up.
//! - **Placement check**: before any traffic, a node sends its placement to the peer's gateway
//!   (`Hello`); a peer that loaded another placement is refused ([`PeerState::ConfigMismatch`]),
//!   so a misconfiguration stops traffic instead of making a second owner.
//! - **Failure detection is ours**: ractor_cluster has none (a stopped peer looks alive). A
//!   watcher per peer sends a heartbeat every [`HEARTBEAT`]; [`SUSPECT_AFTER`] missed ones make
//!   the peer suspected, and its pairs fail at once with `NODE_UNAVAILABLE`. A peer that is not
//!   connected is dialled again with backoff, so a node that comes back rejoins by itself.
//! - **Forwarding**: [`ClusterExecutor`] runs a request for a pair whose receiving team another
//!   node hosts on that node (its `Request`, as JSON, with a request id), and everything else
//!   here.

pub mod gateway;
pub mod peers;
pub mod tls;
mod views;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use iris_api::{ApiCode, ApiError, Execute, Executing, Reply, Request, RequestKind, Service};
use iris_core::TeamName;
use iris_core::config::Config;
use iris_core::config::cluster::NodeName;
use iris_core::metrics::Counter;
use iris_runtime::Wait;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeServer, NodeServerMessage, NodeSessionMessage};

use self::gateway::{Forwarded, ForwardedOutcome, Gateway, GatewayArgs, GatewayMsg};
pub use self::peers::{PeerState, PeerView, Peers};
use self::tls::Tls;

/// How often each peer gets a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a heartbeat (or a hello) may take before it counts as missed.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// Missed heartbeats in a row that make a peer suspected.
pub const SUSPECT_AFTER: u32 = 3;

/// How long one dial of a peer may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest wait between two dials of a peer that is down.
pub const MAX_REDIAL: Duration = Duration::from_secs(2);

/// This node's part of the cluster: its node server, its gateway, and a watcher per peer.
/// Stopped with [`Cluster::stop`] (which waits); dropping it stops them without waiting.
#[derive(Debug)]
pub struct Cluster {
    shared: Arc<Shared>,
    server: ActorRef<NodeServerMessage>,
    gateway: ActorRef<GatewayMsg>,
    /// A watcher per peer, and with TLS the acceptor of nodes' connections.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the executor and the watchers share.
#[derive(Debug)]
struct Shared {
    me: NodeName,
    /// Which node hosts each placed team.
    owners: BTreeMap<TeamName, NodeName>,
    placement: iris_core::config::cluster::Placement,
    peers: Peers,
    forwards: Forwards,
    /// `[cluster.tls]`, loaded: peers are dialled over TLS.
    tls: Option<Tls>,
}

/// Forwarded requests by outcome, since the node started.
#[derive(Debug, Default)]
struct Forwards {
    /// The owner answered with a reply.
    answered: Counter,
    /// The owner answered with an error (the request ran there, or was refused there).
    failed: Counter,
    /// The owner was not up: the request did not run.
    unavailable: Counter,
    /// The owner was lost while it ran the request: the outcome is unknown.
    unknown: Counter,
}

/// The cluster's figures for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSample {
    /// Every peer.
    pub peers: Vec<PeerView>,
    /// Forwarded requests by outcome (`answered`, `failed`, `unavailable`, `unknown`).
    pub forwards: [(&'static str, u64); 4],
}

/// What `iris cluster status` shows: this node and every peer, as this node sees them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: String,
    /// Its placement digest (equal on every node that agrees).
    pub digest: String,
    /// Whether its links to other nodes are TLS (`[cluster.tls]`).
    #[serde(default)]
    pub tls: bool,
    /// Every node of the configuration, this one included.
    pub nodes: Vec<NodeStatus>,
}

/// One node in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Whether it is the node that answered.
    pub this_node: bool,
    /// Where it listens for nodes.
    pub address: std::net::SocketAddr,
    /// Its state as the answering node sees it (`up` for itself).
    pub state: PeerState,
    /// When it last answered a heartbeat.
    pub last_heartbeat: Option<SystemTime>,
    /// The last heartbeat's round trip, in microseconds.
    pub rtt_us: Option<u64>,
    /// The teams it hosts.
    pub teams: Vec<String>,
    /// Why it is refused, when its placement differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

/// Reads [`ClusterStatus`] for the node's HTTP API, without owning the cluster.
#[derive(Debug, Clone)]
pub struct StatusSource(Arc<Shared>);

impl StatusSource {
    /// The peers and the forwarding counters, for `/metrics`.
    pub fn sample(&self) -> ClusterSample {
        let forwards = &self.0.forwards;
        ClusterSample {
            peers: self.0.peers.views(),
            forwards: [
                ("answered", forwards.answered.get()),
                ("failed", forwards.failed.get()),
                ("unavailable", forwards.unavailable.get()),
                ("unknown", forwards.unknown.get()),
            ],
        }
    }

    /// The cluster as this node sees it now.
    pub fn status(&self) -> ClusterStatus {
        let shared = &self.0;
        let teams_of = |node: &NodeName| -> Vec<String> {
            shared
                .owners
                .iter()
                .filter(|(_, owner)| *owner == node)
                .map(|(team, _)| team.to_string())
                .collect()
        };
        let views: BTreeMap<String, PeerView> = shared
            .peers
            .views()
            .into_iter()
            .map(|view| (view.name.clone(), view))
            .collect();
        let nodes = shared
            .placement
            .nodes
            .iter()
            .map(|(name, address)| match views.get(name.as_str()) {
                Some(view) => NodeStatus {
                    name: name.to_string(),
                    this_node: false,
                    address: *address,
                    state: view.state.clone(),
                    last_heartbeat: view.last_heartbeat,
                    rtt_us: view.rtt_us,
                    teams: teams_of(name),
                    mismatch: view.mismatch.clone(),
                },
                None => NodeStatus {
                    name: name.to_string(),
                    this_node: true,
                    address: *address,
                    state: PeerState::Up,
                    last_heartbeat: None,
                    rtt_us: None,
                    teams: teams_of(name),
                    mismatch: None,
                },
            })
            .collect();
        ClusterStatus {
            node: shared.me.to_string(),
            digest: shared.placement.digest(),
            tls: shared.tls.is_some(),
            nodes,
        }
    }
}

impl Cluster {
    /// Joins the cluster of `config` as the node it serves as ([`Config::serving_as`]): listens
    /// for peers, starts the gateway that runs their requests on `service`, and dials every
    /// peer.
    pub async fn start(config: &Config, service: Service) -> Result<Cluster, ApiError> {
        let (Some(cluster), Some(placement), Some(me)) =
            (config.cluster(), config.placement(), config.this_node())
        else {
            return Err(ApiError::new(
                ApiCode::Internal,
                "the cluster was started without a [cluster] and a node name (a bug in iris)",
            ));
        };
        let Some((_, own)) = cluster.node(me.as_str()) else {
            return Err(ApiError::new(
                iris_core::ErrorCode::ConfigError,
                format!("node {me} is not in [cluster.nodes]"),
            ));
        };
        let address = own.address;
        let tls = cluster.tls.as_ref().map(Tls::load).transpose()?;
        if !address.ip().is_loopback() && tls.is_none() {
            tracing::warn!(%address, "the cluster listens beyond loopback without [cluster.tls]: nodes authenticate with the cookie, but their traffic is not encrypted; configure [cluster.tls], or keep it on a private network (or WireGuard)");
        }
        // Checked here, so an address in use is an error that says so (ractor_cluster's
        // listener would retry a failed bind in the background).
        let listener = std::net::TcpListener::bind(address).map_err(|e| {
            ApiError::new(
                iris_core::ErrorCode::ConfigError,
                format!(
                    "cannot listen for cluster nodes on {address} ([cluster.nodes.{me}] address): {e}; is another node using it?"
                ),
            )
        })?;
        // Without TLS, ractor_cluster's listener takes the address: free it.
        let listener = match &tls {
            Some(_) => Some(listener),
            None => {
                drop(listener);
                None
            }
        };
        // Peers are dialled by the watchers, each node by every other: ractor_cluster's
        // transitive dialling would only duplicate them.
        let isolated = Some(ractor_cluster::node::NodeConnectionMode::Isolated);
        let server = match &tls {
            // iris accepts TLS connections itself (see `tls`); the node server's own listener
            // moves to a loopback port, TLS too.
            Some(tls) => NodeServer::new(
                0,
                cluster.cookie.clone(),
                me.to_string(),
                address.ip().to_string(),
                Some(tls.incoming()),
                isolated,
            )
            .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into()),
            None => NodeServer::new(
                address.port(),
                cluster.cookie.clone(),
                me.to_string(),
                address.ip().to_string(),
                None,
                isolated,
            )
            .with_listen_addr(address.ip()),
        };
        let (server, _) = Actor::spawn(None, server, ()).await.map_err(|e| {
            ApiError::new(
                ApiCode::Internal,
                format!("could not start the cluster's node server: {e}"),
            )
        })?;
        let mut tasks = Vec::new();
        if let (Some(tls), Some(listener)) = (&tls, listener) {
            let listener = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
                .map_err(|e| {
                    server.stop(None);
                    ApiError::new(
                        ApiCode::Internal,
                        format!("cannot listen for cluster nodes on {address}: {e}"),
                    )
                })?;
            tasks.push(tokio::spawn(tls.clone().accept(listener, server.clone())));
        }
        let placement_json = serde_json::to_string(&placement).map_err(|e| {
            ApiError::new(
                ApiCode::Internal,
                format!("cannot encode the placement: {e}"),
            )
        })?;
        let (gateway, _) = Actor::spawn(
            None,
            Gateway,
            GatewayArgs {
                name: me.to_string(),
                placement: placement.clone(),
                service,
            },
        )
        .await
        .map_err(|e| {
            for task in &tasks {
                task.abort();
            }
            server.stop(None);
            ApiError::new(
                ApiCode::Internal,
                format!("could not start the cluster's gateway: {e}"),
            )
        })?;
        let shared = Arc::new(Shared {
            me: me.clone(),
            owners: placement.teams.clone(),
            placement: placement.clone(),
            forwards: Forwards::default(),
            tls,
            peers: Peers::new(
                placement
                    .nodes
                    .iter()
                    .filter(|(name, _)| *name != me)
                    .map(|(name, address)| (name.clone(), *address)),
            ),
        });
        tasks.extend(shared.peers.peers.keys().map(|name| {
            tokio::spawn(watch_peer(
                shared.clone(),
                name.clone(),
                server.clone(),
                placement_json.clone(),
            ))
        }));
        tracing::info!(node = %me, %address, peers = shared.peers.peers.len(), digest = %placement.digest(), "joined the cluster");
        Ok(Cluster {
            shared,
            server,
            gateway,
            tasks,
        })
    }

    /// What `iris cluster status` reads, for the node's HTTP API.
    pub fn status_source(&self) -> StatusSource {
        StatusSource(self.shared.clone())
    }

    /// The executor that forwards to owners and runs the rest on `local`.
    pub fn executor(&self, local: Service) -> Arc<dyn Execute> {
        Arc::new(ClusterExecutor {
            local,
            cluster: self.shared.clone(),
        })
    }

    /// Leaves the cluster: the watchers (and the acceptor) stop, then the gateway and the node
    /// server (peers see the links close).
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let _ = self
            .gateway
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        let _ = self
            .server
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }
}

impl Drop for Cluster {
    /// A cluster dropped without [`Cluster::stop`] (a failed start-up) still ends what it owns.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.gateway.stop(None);
        self.server.stop(None);
    }
}

/// Keeps one peer's record current: dials it while it is down (with backoff), checks its
/// placement once per link, and sends it a heartbeat every [`HEARTBEAT`].
async fn watch_peer(
    shared: Arc<Shared>,
    name: NodeName,
    server: ActorRef<NodeServerMessage>,
    placement_json: String,
) {
    let Some(peer) = shared.peers.peers.get(&name) else {
        return;
    };
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut misses, mut beat) = (0u32, 0u64);
    let mut verified: Option<ractor::ActorId> = None;
    let (mut redial, mut next_dial) = (HEARTBEAT, Instant::now());
    loop {
        ticks.tick().await;
        let Some(gateway) = remote_gateway(&name) else {
            verified = None;
            misses = 0;
            peer.state.send_if_modified(|s| replace(s, PeerState::Down));
            if Instant::now() >= next_dial {
                close_stale_dials(&server, &name, peer.address).await;
                // Bounded: a peer behind a partition drops the SYN, and the kernel would wait
                // minutes before it gives up.
                let dial = dial(shared.tls.as_ref(), &server, &name, peer.address);
                match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(peer = %name, address = %peer.address, %error, "cannot reach the peer yet");
                    }
                    Err(_) => {
                        tracing::debug!(peer = %name, address = %peer.address, "no answer to the dial yet");
                    }
                }
                next_dial = Instant::now() + redial;
                redial = (redial * 2).min(MAX_REDIAL);
            }
            continue;
        };
        redial = HEARTBEAT;
        if verified != Some(gateway.get_id()) {
            let hello = gateway
                .call(
                    |reply| GatewayMsg::Hello(placement_json.clone(), reply),
                    Some(HEARTBEAT_TIMEOUT * 2),
                )
                .await;
            match hello {
                Ok(CallResult::Success(why)) if why.is_empty() => {
                    verified = Some(gateway.get_id());
                    lock(peer).mismatch = None;
                }
                Ok(CallResult::Success(why)) => {
                    if peer
                        .state
                        .send_if_modified(|s| replace(s, PeerState::ConfigMismatch))
                    {
                        tracing::error!(peer = %name, reason = %why, "refusing the peer: it loaded another placement");
                    }
                    lock(peer).mismatch = Some(why);
                    continue;
                }
                _ => {
                    misses += 1;
                    continue;
                }
            }
        }
        beat += 1;
        let sent = Instant::now();
        let answer = gateway
            .call(
                |reply| GatewayMsg::Ping(beat, reply),
                Some(HEARTBEAT_TIMEOUT),
            )
            .await;
        if matches!(answer, Ok(CallResult::Success(n)) if n == beat) {
            misses = 0;
            {
                let mut detail = lock(peer);
                detail.gateway = Some(gateway);
                detail.rtt = Some(sent.elapsed());
                detail.last_heartbeat = Some(SystemTime::now());
            }
            if peer.state.send_if_modified(|s| replace(s, PeerState::Up)) {
                tracing::info!(peer = %name, "peer up");
            }
        } else {
            misses += 1;
            if misses >= SUSPECT_AFTER
                && peer
                    .state
                    .send_if_modified(|s| replace(s, PeerState::Suspected))
            {
                tracing::warn!(peer = %name, misses, "peer suspected: it missed its heartbeats; its pairs fail until it answers again");
                drop_link(&server, &name).await;
            }
        }
    }
}

/// Opens a link to peer `name` at `address`: over TLS when it is configured.
async fn dial(
    tls: Option<&Tls>,
    server: &ActorRef<NodeServerMessage>,
    name: &NodeName,
    address: SocketAddr,
) -> Result<(), String> {
    match tls {
        Some(tls) => tls.dial(server, name, address).await,
        None => ractor_cluster::client_connect(server, address)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// Closes the link to a suspected peer, so that it is dialled afresh. Its socket may be stuck
/// behind a partition: what was written to it would wait for TCP's retransmissions (minutes)
/// and then be delivered, heartbeats included, long after the callers were told the outcome is
/// unknown. A new connection works as soon as the peer answers again.
async fn drop_link(server: &ActorRef<NodeServerMessage>, name: &NodeName) {
    // ractor_cluster names a node `name@host`.
    let prefix = format!("{name}@");
    for session in node_sessions(server, name).await {
        let theirs = session.peer_name.as_ref().map(|peer| peer.name.as_str());
        if theirs.is_some_and(|theirs| theirs.starts_with(&prefix)) {
            close(&session, &format!("peer {name} is suspected"));
        }
    }
}

/// Closes this node's dials of `address` that never got ready. A stopped peer's kernel still
/// accepts the connection, whose handshake then waits forever: without this, every redial
/// would leave one more such session behind.
async fn close_stale_dials(
    server: &ActorRef<NodeServerMessage>,
    name: &NodeName,
    address: SocketAddr,
) {
    let address = address.to_string();
    for session in node_sessions(server, name).await {
        if session.is_server || session.peer_addr != address {
            continue;
        }
        let ready = session
            .actor
            .call(NodeSessionMessage::GetReadyState, Some(HEARTBEAT_TIMEOUT))
            .await;
        if !matches!(ready, Ok(CallResult::Success(true))) {
            close(
                &session,
                &format!("the dial of peer {name} never got ready"),
            );
        }
    }
}

/// The node server's sessions (links), incoming and outgoing; none when it does not answer.
async fn node_sessions(
    server: &ActorRef<NodeServerMessage>,
    name: &NodeName,
) -> Vec<NodeServerSessionInformation> {
    match server
        .call(NodeServerMessage::GetSessions, Some(HEARTBEAT_TIMEOUT))
        .await
    {
        Ok(CallResult::Success(sessions)) => sessions.into_values().collect(),
        _ => {
            tracing::warn!(peer = %name, "the node server did not list its sessions; a link to the peer may stay until TCP gives up");
            Vec::new()
        }
    }
}

/// Stops a node session, and first its children (the TCP session, the peer's remote actors):
/// a node session does not stop them when it stops.
fn close(session: &NodeServerSessionInformation, reason: &str) {
    session.actor.stop_children(Some(reason.to_owned()));
    session.actor.stop(Some(reason.to_owned()));
    tracing::info!(address = %session.peer_addr, reason, "closed a link to a peer");
}

/// Sets `state` to `new`; whether it changed.
fn replace(state: &mut PeerState, new: PeerState) -> bool {
    if *state == new {
        return false;
    }
    *state = new;
    true
}

fn lock(peer: &peers::Peer) -> std::sync::MutexGuard<'_, peers::Detail> {
    peer.detail
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The gateway of peer `name`, when a link to it is up.
fn remote_gateway(name: &NodeName) -> Option<ActorRef<GatewayMsg>> {
    ractor::pg::get_scoped_members(
        &gateway::SCOPE.to_owned(),
        &gateway::group_of(name.as_str()),
    )
    .into_iter()
    .find(|cell| !cell.get_id().is_local())
    .map(ActorRef::from)
}

/// Runs requests for pairs hosted elsewhere on their owner, the rest on this node.
#[derive(Debug)]
pub struct ClusterExecutor {
    local: Service,
    cluster: Arc<Shared>,
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
        PeerState::Down => "is not connected",
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
