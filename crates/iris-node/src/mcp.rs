//! MCP tools (rmcp) over stdio (`iris mcp`) and streamable HTTP (`/mcp` on the node).

use std::sync::Arc;

use crate::api::ApiError;
use crate::backend::Backend;

/// The node's MCP endpoint, to be merged into its router (it serves `/mcp`).
pub fn http_router(backend: Arc<Backend>) -> axum::Router {
    let _ = backend;
    axum::Router::new()
}

/// Serves MCP on stdin/stdout until the client closes it. `from` is the default `fromTeam`.
pub async fn serve_stdio(backend: Arc<Backend>, from: Option<String>) -> Result<(), ApiError> {
    let _ = (backend, from);
    Ok(())
}
