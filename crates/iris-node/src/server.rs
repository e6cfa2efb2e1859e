//! The node's HTTP server (axum): control API, MCP, metrics, health, all behind the token.
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/command` | body: an [`api::Request`](crate::api::Request) as JSON; answer: `200` and the [`Reply`](crate::api::Reply) as JSON, or an error status and `{"error":{"code","message"}}` |
//! | `GET /metrics` | Prometheus text ([`crate::prometheus`]) |
//! | `GET /healthz` | `200` and a JSON [`Health`] whose `status` is `"ok"` |
//! | `/mcp` | MCP over streamable HTTP ([`crate::mcp::http_router`]) |
//!
//! **Every** route, including unknown ones, needs `Authorization: Bearer <token>` with the token
//! from the node's endpoint file ([`crate::endpoint`]); anything else is `401` with an
//! `UNAUTHORIZED` error. The comparison takes the same time however much of the token is right.
//! Request bodies are bounded ([`MAX_BODY`]; MCP enforces its own limit of the same size while
//! streaming).
//!
//! An error's HTTP status follows its class ([`status_for`]); its `code` is the same stable code
//! the CLI prints, so a client rebuilds the exact [`ApiError`] from the body.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use iris_runtime::Runtime;
use iris_store::Store;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, Request};
use crate::backend::Backend;
use crate::endpoint::constant_time_eq;
use crate::error::{TURN_NOT_FOUND, UNAUTHORIZED, USAGE_ERROR};

/// The control API's route.
pub const COMMAND_PATH: &str = "/api/v1/command";
/// The metrics route.
pub const METRICS_PATH: &str = "/metrics";
/// The health route.
pub const HEALTH_PATH: &str = "/healthz";

/// The largest request body the node reads: a command is a few hundred bytes, but a tell's
/// message may be a long prompt.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// What the node serves from, shared by every request.
#[derive(Clone)]
pub struct ServerState {
    /// Where commands run (an embedded backend on the node's runtime).
    pub backend: Arc<Backend>,
    /// The node's runtime, for metrics and health.
    pub runtime: Runtime,
    /// The node's store, for metrics.
    pub store: Store,
    /// The bearer token every request must carry.
    pub token: Arc<str>,
    /// Facts about this node, for `/healthz` and error messages.
    pub info: Arc<NodeInfo>,
}

// By hand, so the token never reaches a log line.
impl fmt::Debug for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerState")
            .field("info", &self.info)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Facts about a running node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database file (`None`: in memory).
    pub database: Option<PathBuf>,
    /// Its endpoint file (`None`: an in-memory database has none).
    pub endpoint_file: Option<PathBuf>,
    /// When it started serving.
    pub started: Instant,
}

/// What `GET /healthz` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"`: a node that answers is healthy enough to take commands.
    pub status: String,
    /// The node's process id.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database file, if any.
    pub database: Option<PathBuf>,
    /// The iris version it runs.
    pub version: String,
    /// Seconds since it started serving.
    pub uptime_secs: u64,
    /// Session actors live in its runtime.
    pub live_sessions: u64,
    /// Sessions whose agent process is not stopped (from the store's counters).
    pub live_processes: u64,
}

/// The node's router: control API, metrics, health and MCP, behind the token.
pub fn router(state: ServerState) -> Router {
    let api = Router::new()
        .route(COMMAND_PATH, post(command))
        .route(METRICS_PATH, get(metrics))
        .route(HEALTH_PATH, get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone());
    api.merge(crate::mcp::http_router(state.backend.clone()))
        .fallback(not_found)
        // Layers run outside in: the token is checked before the body's size, so an
        // unauthenticated caller learns nothing but 401.
        .layer(middleware::from_fn(limit_body))
        .layer(middleware::from_fn_with_state(state, require_token))
}

/// The HTTP status of an error with `code`, by class.
pub fn status_for(code: &str) -> StatusCode {
    match code {
        USAGE_ERROR | "CONFIG_ERROR" | "VALIDATION_ERROR" => StatusCode::BAD_REQUEST,
        "TEAM_NOT_FOUND" | "SESSION_NOT_FOUND" | TURN_NOT_FOUND => StatusCode::NOT_FOUND,
        "ALREADY_EXISTS" | "STORE_LOCKED" => StatusCode::CONFLICT,
        "QUEUE_FULL" | "POOL_LIMIT_EXCEEDED" => StatusCode::TOO_MANY_REQUESTS,
        "PROCESS_ERROR" => StatusCode::BAD_GATEWAY,
        "TIMEOUT" => StatusCode::GATEWAY_TIMEOUT,
        UNAUTHORIZED => StatusCode::UNAUTHORIZED,
        crate::error::NODE_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error as a response: its class's status and `{"error":{…}}`.
pub fn error_response(error: &ApiError) -> Response {
    json_response(status_for(error.code()), error)
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the answer: {e}"),
        )
            .into_response(),
    }
}

async fn command(
    State(state): State<ServerState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let error = ApiError::new(
                USAGE_ERROR,
                format!("could not read the request body: {}", rejection.body_text()),
            );
            return json_response(rejection.status(), &error);
        }
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error_response(&ApiError::new(
                USAGE_ERROR,
                format!(
                    "the body is not an iris command: {e}; send JSON such as {{\"command\":\"stats\"}} or {{\"command\":\"tell\",\"from\":\"alpha\",\"to\":\"beta\",\"message\":\"hi\"}}"
                ),
            ));
        }
    };
    let started = Instant::now();
    let name = command_name(&request);
    let outcome = state.backend.execute(request).await;
    let took_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(reply) => {
            tracing::debug!(command = name, took_ms, "command done");
            json_response(StatusCode::OK, &reply)
        }
        Err(error) => {
            tracing::debug!(command = name, took_ms, code = error.code(), %error, "command failed");
            error_response(&error)
        }
    }
}

/// The request's `command` tag, for logs (never its content: messages may be private).
fn command_name(request: &Request) -> &'static str {
    match request {
        Request::Tell { .. } => "tell",
        Request::SessionsList { .. } => "sessions_list",
        Request::SessionsShow { .. } => "sessions_show",
        Request::SessionsDelete { .. } => "sessions_delete",
        Request::SessionsCompact { .. } => "sessions_compact",
        Request::SessionsReboot { .. } => "sessions_reboot",
        Request::Report { .. } => "report",
        Request::Wake { .. } => "wake",
        Request::Sleep { .. } => "sleep",
        Request::Cancel { .. } => "cancel",
        Request::WakeAll { .. } => "wake_all",
        Request::Status { .. } => "status",
        Request::Teams { .. } => "teams",
        Request::Stats => "stats",
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let sample = crate::prometheus::gather(&state.runtime, &state.store).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::prometheus::CONTENT_TYPE),
        )],
        crate::prometheus::render(&sample),
    )
        .into_response()
}

async fn health(State(state): State<ServerState>) -> Response {
    let stats = state.runtime.stats();
    let health = Health {
        status: "ok".into(),
        pid: state.info.pid,
        addr: state.info.addr,
        database: state.info.database.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: state.info.started.elapsed().as_secs(),
        live_sessions: stats.live_actors,
        live_processes: stats.live_processes,
    };
    json_response(StatusCode::OK, &health)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let error = ApiError::new(
        USAGE_ERROR,
        format!(
            "this iris node serves no {}: try POST {COMMAND_PATH}, GET {METRICS_PATH}, GET {HEALTH_PATH} or /mcp",
            uri.path()
        ),
    );
    json_response(StatusCode::NOT_FOUND, &error)
}

/// Rejects a request without the node's bearer token.
async fn require_token(
    State(state): State<ServerState>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let wherein = state.info.endpoint_file.as_ref().map_or_else(
                || "the node's endpoint file".to_owned(),
                |p| format!("the node's endpoint file {}", p.display()),
            );
            let why = if presented.is_some() {
                "the access token is wrong"
            } else {
                "the request carries no access token"
            };
            let error = ApiError::new(
                UNAUTHORIZED,
                format!(
                    "{why}: every request to an iris node needs `Authorization: Bearer <token>` with the token in {wherein} (readable only by the user who runs the node)"
                ),
            );
            let mut response = error_response(&error);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Rejects a body that announces more than [`MAX_BODY`] bytes before reading any of it. (Bodies
/// without a length are bounded while they are read: by [`DefaultBodyLimit`] for the control
/// API, and by rmcp's own limit for MCP.)
async fn limit_body(request: HttpRequest, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        let error = ApiError::new(
            USAGE_ERROR,
            format!("the request body is larger than the node accepts ({MAX_BODY} bytes)"),
        );
        return json_response(StatusCode::PAYLOAD_TOO_LARGE, &error);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_error_classes() {
        assert_eq!(status_for("USAGE_ERROR"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for("CONFIG_ERROR"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for("VALIDATION_ERROR"), StatusCode::BAD_REQUEST);
        assert_eq!(status_for("TEAM_NOT_FOUND"), StatusCode::NOT_FOUND);
        assert_eq!(status_for("SESSION_NOT_FOUND"), StatusCode::NOT_FOUND);
        assert_eq!(status_for("TURN_NOT_FOUND"), StatusCode::NOT_FOUND);
        assert_eq!(status_for("ALREADY_EXISTS"), StatusCode::CONFLICT);
        assert_eq!(status_for("QUEUE_FULL"), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            status_for("POOL_LIMIT_EXCEEDED"),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status_for("PROCESS_ERROR"), StatusCode::BAD_GATEWAY);
        assert_eq!(status_for("TIMEOUT"), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(status_for("UNAUTHORIZED"), StatusCode::UNAUTHORIZED);
        assert_eq!(status_for("STORE_ERROR"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            status_for("INTERNAL_ERROR"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Every code of the same exit class gets a status of the same class.
        for code in iris_core::ErrorCode::ALL {
            let status = status_for(code.as_str());
            match crate::error::exit_code(code.as_str()) {
                2 => assert!(status.is_client_error(), "{code:?}"),
                3 => assert_eq!(status, StatusCode::NOT_FOUND, "{code:?}"),
                4 => assert!(status.is_client_error(), "{code:?}"),
                5 => assert!(status.is_server_error(), "{code:?}"),
                _ => {}
            }
        }
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
