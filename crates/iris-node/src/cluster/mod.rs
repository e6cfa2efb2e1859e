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

mod executor;
pub mod gateway;
pub mod peers;
pub mod tls;
mod views;
mod watcher;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use iris_api::{ApiCode, ApiError, Execute, Service};
use iris_core::TeamName;
use iris_core::config::Config;
use iris_core::config::cluster::NodeName;
use iris_core::metrics::Counter;
use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};

pub use self::executor::{ClusterExecutor, FORWARD_GRACE, VIEW_TIMEOUT};
use self::gateway::{Gateway, GatewayArgs, GatewayMsg};
pub use self::peers::{PeerState, PeerView, Peers};
use self::tls::Tls;
use self::watcher::watch_peer;

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
