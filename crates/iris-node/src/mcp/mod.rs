//! MCP tools (rmcp) over stdio (`iris mcp`) and streamable HTTP (`/mcp` on the node).
//!
//! The tools keep the original iris-mcp's names and camelCase arguments (`send_message`,
//! `quick_message`, `ask_message` with `toTeam`, `message`, `fromTeam`, `timeout`; `team_wake`,
//! `team_sleep`, `team_wake_all`, `team_status`, `session_report`, `session_cancel`,
//! `session_delete`, `session_reboot`, `list_teams`), so prompts written for it keep working,
//! and add `session_list` and `session_stats`. Each call becomes one [`iris_api::Request`]
//! run through an [`iris_api::Execute`] (the service in a node, or whatever backend `iris mcp` connected to), so MCP means exactly what the CLI and the control API mean.
//!
//! A result is the reply's data as structured JSON content, repeated as text for clients that
//! only show text. A domain failure (unknown team, full queue, failed turn, …) is a tool error
//! (`isError`) whose content is `{"error":{"code":"…","message":"…"}}`, so the calling agent
//! reads what went wrong; only a call that does not fit a tool's schema is a protocol error.

mod result;
mod tools;

use std::sync::Arc;

use iris_core::{Coded, TeamName};
use rmcp::ServiceExt;
use rmcp::service::{QuitReason, ServerInitializeError};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use iris_api::error::INTERNAL_ERROR;
use iris_api::{ApiError, Execute};

use self::tools::IrisTools;

/// Where the node serves MCP.
pub const MCP_PATH: &str = "/mcp";

/// The node's MCP endpoint, to be merged into its router (it serves `/mcp`).
///
/// Stateless streamable HTTP: every POST is answered on its own (as an SSE stream with
/// keep-alives, so a long `send_message` keeps its connection alive), and no session outlives
/// its request. So nothing is held open between calls, a node's graceful shutdown never waits
/// on an idle client's standalone stream, and a client needs no session handshake to survive a
/// node restart. Calls carry no default `fromTeam`: HTTP callers name it.
///
/// The `Host` check rmcp applies by default (loopback names only, against DNS rebinding) is
/// off, because the node may listen on any address and every request must carry the node's
/// token, which a rebinding page cannot read: the server module's auth layer around this
/// router is what guards it.
pub fn http_router(executor: Arc<dyn Execute>) -> axum::Router {
    let tools = IrisTools::new(executor, None);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    axum::Router::new().nest_service(MCP_PATH, service)
}

/// Serves MCP on stdin/stdout until the client closes it. `from` is the default `fromTeam`.
///
/// Nothing but MCP messages is written to stdout (logs go to stderr). A client that closes
/// stdin, even before the handshake, ends the server normally.
pub async fn serve_stdio(executor: Arc<dyn Execute>, from: Option<String>) -> Result<(), ApiError> {
    let from = from.map(validate_default_from).transpose()?;
    let tools = IrisTools::new(executor, from);
    // Non-blocking pipes when the client launched us with pipes (the usual case), so a read
    // waiting on stdin never holds up the runtime's shutdown; plain stdio otherwise.
    let running = match tools.serve(rmcp::transport::stdio_pipes()).await {
        Ok(running) => running,
        Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(error) => {
            return Err(ApiError::new(
                INTERNAL_ERROR,
                format!("the MCP client on stdio failed the handshake: {error}"),
            ));
        }
    };
    match running.waiting().await {
        Ok(QuitReason::JoinError(error)) | Err(error) => Err(ApiError::new(
            INTERNAL_ERROR,
            format!("the MCP server on stdio stopped unexpectedly: {error}"),
        )),
        Ok(_) => Ok(()),
    }
}

/// Checks `iris mcp --from TEAM` once at start, so a typo fails at launch rather than in every
/// call.
fn validate_default_from(team: String) -> Result<String, ApiError> {
    TeamName::new(team.as_str())
        .map_err(|e| ApiError::new(e.code(), format!("`iris mcp --from {team}`: {e}")))?;
    Ok(team)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_default_team_is_refused_at_start() {
        let error = validate_default_from("../etc".to_owned()).err();
        assert_eq!(
            error.as_ref().map(|e| e.code().as_str()),
            Some("VALIDATION_ERROR")
        );
        assert_eq!(
            validate_default_from("alpha".to_owned()).ok().as_deref(),
            Some("alpha")
        );
    }
}
