//! `iris node`: the runtime, the HTTP server and the endpoint file, until SIGINT or SIGTERM.

use std::net::SocketAddr;

use iris_core::config::Config;

use crate::api::ApiError;

/// Runs a node on `config` listening on `listen` until SIGINT or SIGTERM, then shuts down
/// gracefully. `json` selects machine-readable start-up output on stdout.
pub async fn run(config: Config, listen: SocketAddr, json: bool) -> Result<(), ApiError> {
    let _ = (config, listen, json);
    Ok(())
}
