//! The endpoint file a node writes next to its database: address, pid and access token, mode
//! 0600, so only a user who can read it can drive the node.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// How to reach a running node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    /// The bearer token every request must carry.
    pub token: String,
}
