//! The node's HTTP face: its server (control API, metrics, health, and MCP mounted beside
//! them), the accept loop that bounds connections, the client a command uses to reach a running
//! node, the endpoint file by which it finds one, and the Prometheus text of `/metrics`.
//!
//! This module also holds the wire constants the server and the client agree on (routes, the
//! body limit, the heartbeat header).

use std::time::Duration;

pub mod client;
pub mod dashboard;
pub mod endpoint;
pub mod events;
pub mod metrics;
pub mod serve;
pub mod server;

pub use serve::{ServeLimits, serve};

/// The control API's route.
pub const COMMAND_PATH: &str = "/api/v1/command";
/// The metrics route.
pub const METRICS_PATH: &str = "/metrics";
/// The health route.
pub const HEALTH_PATH: &str = "/healthz";
/// The event stream's route (server-sent events).
pub const EVENTS_PATH: &str = "/api/v1/events";
/// The cluster-status route (`iris cluster status`).
pub const CLUSTER_PATH: &str = "/api/v1/cluster";

/// The largest request body the node reads: a command is a few hundred bytes, but a tell's
/// message may be a long prompt.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The request header by which a client asks for heartbeats, in milliseconds (see [`server`]).
pub const HEARTBEAT_HEADER: &str = "x-iris-heartbeat";

/// The shortest and longest heartbeat interval the node agrees to.
pub const HEARTBEAT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));
