//! What this node knows of each peer: its state, its last heartbeat, its round-trip time, and
//! the gateway to reach it. One watcher task per peer keeps it current (see [`super`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use iris_core::config::cluster::NodeName;
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::gateway::GatewayMsg;

/// A peer's state, as `iris cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Not connected (never yet, or the link went away); being dialled.
    Down,
    /// Connected, agreeing on placement, and answering heartbeats.
    Up,
    /// Connected but silent: it missed the last heartbeats. Its pairs fail at once.
    Suspected,
    /// It loaded another placement: no traffic goes to it.
    ConfigMismatch,
}

/// One peer, as `iris cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// The node's name.
    pub name: String,
    /// Where it listens for nodes.
    pub address: SocketAddr,
    /// Its state.
    pub state: PeerState,
    /// When it last answered a heartbeat.
    pub last_heartbeat: Option<SystemTime>,
    /// The last heartbeat's round trip, in microseconds.
    pub rtt_us: Option<u64>,
    /// Why it is refused, when its placement differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

/// The live record of one peer.
#[derive(Debug)]
pub(super) struct Peer {
    pub address: SocketAddr,
    pub state: watch::Sender<PeerState>,
    pub detail: Mutex<Detail>,
}

/// What changes with every heartbeat.
#[derive(Debug, Default)]
pub(super) struct Detail {
    pub gateway: Option<ActorRef<GatewayMsg>>,
    pub last_heartbeat: Option<SystemTime>,
    pub rtt: Option<Duration>,
    pub mismatch: Option<String>,
}

/// Every peer of this node.
#[derive(Debug)]
pub struct Peers {
    pub(super) peers: BTreeMap<NodeName, Peer>,
}

impl Peers {
    pub(super) fn new(nodes: impl IntoIterator<Item = (NodeName, SocketAddr)>) -> Peers {
        Peers {
            peers: nodes
                .into_iter()
                .map(|(name, address)| {
                    let peer = Peer {
                        address,
                        state: watch::Sender::new(PeerState::Down),
                        detail: Mutex::new(Detail::default()),
                    };
                    (name, peer)
                })
                .collect(),
        }
    }

    /// Every peer as `iris cluster status` shows it.
    pub fn views(&self) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|(name, peer)| {
                let detail = peer
                    .detail
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                PeerView {
                    name: name.to_string(),
                    address: peer.address,
                    state: peer.state.borrow().clone(),
                    last_heartbeat: detail.last_heartbeat,
                    rtt_us: detail
                        .rtt
                        .map(|rtt| u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
                    mismatch: detail.mismatch.clone(),
                }
            })
            .collect()
    }

    /// The peer's gateway when the peer is up, else its state.
    pub(super) fn gateway(&self, name: &NodeName) -> Result<ActorRef<GatewayMsg>, PeerState> {
        let Some(peer) = self.peers.get(name) else {
            return Err(PeerState::Down);
        };
        let state = peer.state.borrow().clone();
        if state != PeerState::Up {
            return Err(state);
        }
        peer.detail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .gateway
            .clone()
            .ok_or(PeerState::Down)
    }

    /// Resolves once the peer is no longer up (or at once, when it is not).
    pub(super) async fn lost(&self, name: &NodeName) {
        let Some(peer) = self.peers.get(name) else {
            return;
        };
        let mut state = peer.state.subscribe();
        let _ = state.wait_for(|s| *s != PeerState::Up).await;
    }
}
