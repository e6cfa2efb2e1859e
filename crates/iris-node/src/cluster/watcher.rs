//! One watcher task per peer keeps its record current: it dials the peer while it is down
//! (with backoff), checks its placement once per link, sends it a heartbeat every
//! [`HEARTBEAT`](super::HEARTBEAT), suspects it after [`SUSPECT_AFTER`](super::SUSPECT_AFTER)
//! missed ones, and closes the links that can no longer carry anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use iris_core::config::cluster::NodeName;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeServerMessage, NodeSessionMessage};

use super::gateway::{self, GatewayMsg};
use super::peers::{self, PeerState};
use super::tls::Tls;
use super::{DIAL_TIMEOUT, HEARTBEAT, HEARTBEAT_TIMEOUT, MAX_REDIAL, SUSPECT_AFTER, Shared};

/// Keeps one peer's record current: dials it while it is down (with backoff), checks its
/// placement once per link, and sends it a heartbeat every [`HEARTBEAT`].
pub(super) async fn watch_peer(
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
