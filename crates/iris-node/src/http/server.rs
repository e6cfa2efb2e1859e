//! The node's HTTP server (axum): control API, MCP, metrics, health, all behind the token.
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/command` | body: an [`iris_api::Request`] as JSON; answer: `200` and the [`iris_api::Reply`] as JSON, or an error status and `{"error":{"code","message"}}` |
//! | `GET /metrics` | Prometheus text ([`crate::http::metrics`]) |
//! | `GET /healthz` | `200` and a JSON [`Health`] whose `status` is `"ok"`; `503` and `"unhealthy"` while the store cannot commit (a full disk, an I/O error: its `store` names the fault) |
//! | `/mcp` | MCP over streamable HTTP ([`crate::mcp::http_router`]) |
//!
//! **Every** route, including unknown ones, needs `Authorization: Bearer <token>` with the token
//! from the node's endpoint file ([`crate::http::endpoint`]); anything else is `401` with an
//! `UNAUTHORIZED` error (which names no file: an unauthenticated caller learns nothing). The
//! comparison takes the same time however much of the token is right. Request bodies are
//! bounded in size ([`MAX_BODY`], `413`) and in time (the body-read timeout, `408`); headers and
//! connections are bounded by [`crate::http`]. A wrong method gets `405` and an unknown route
//! `404`, both with a JSON error; a body that is not JSON gets `400` (`USAGE_ERROR`) on the
//! control API and a JSON-RPC parse error (`-32700`) on `/mcp`. A command with a field the API
//! does not know (a misspelt `timout`) is refused (`400`), never silently ignored.
//!
//! **Heartbeats.** A client may ask for `x-iris-heartbeat: <milliseconds>` ([`HEARTBEAT_HEADER`]).
//! A command that has not answered within that time then gets `200` at once, and its body
//! streams a newline every interval until the reply (or the `{"error":…}` object) follows; JSON
//! readers skip the leading whitespace. This lets a client wait hours for a long turn and still
//! tell a node that works from one that is frozen (`SIGSTOP`) or gone: silence for a few
//! intervals means the node is not answering ([`crate::http::client`]). A command that answers
//! within the interval gets its ordinary status and body.
//!
//! An error's HTTP status follows its class ([`status_for`]); its `code` is the same stable code
//! the CLI prints, so a client rebuilds the exact [`ApiError`] from the body.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use iris_core::ErrorCode;
use iris_runtime::Runtime;
use iris_store::Store;
use serde::{Deserialize, Serialize};

use crate::http::endpoint::constant_time_eq;
use crate::http::{
    CLUSTER_PATH, COMMAND_PATH, EVENTS_PATH, HEALTH_PATH, HEARTBEAT_HEADER, HEARTBEAT_RANGE,
    MAX_BODY, METRICS_PATH, ServeLimits,
};
use iris_api::error::{ApiCode, INTERNAL_ERROR, UNAUTHORIZED, USAGE_ERROR};
use iris_api::{ApiError, Execute, Reply, Request};

/// What the node serves from, shared by every request.
#[derive(Clone)]
pub struct ServerState {
    /// Where commands run (the service over the node's runtime).
    pub executor: Arc<dyn Execute>,
    /// The node's runtime, for metrics and health.
    pub runtime: Runtime,
    /// The node's store, for metrics.
    pub store: Store,
    /// The bearer token every request must carry.
    pub token: Arc<str>,
    /// Facts about this node, for `/healthz` and error messages.
    pub info: Arc<NodeInfo>,
    /// The limits the server applies (the body-read timeout is applied here).
    pub limits: ServeLimits,
    /// The cluster this node is part of, if any (for `GET /api/v1/cluster`).
    pub cluster: Option<crate::cluster::StatusSource>,
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

/// What `GET /healthz` answers: `200` with `status` `"ok"`, or `503` with `"unhealthy"` while
/// the store cannot commit (its `store` says why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Whether the node can take work.
    pub status: HealthStatus,
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
    /// Whether the store can commit.
    #[serde(default)]
    pub store: StoreHealth,
}

/// The node's health, as `/healthz` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// `"ok"`.
    Ok,
    /// `"unhealthy"`: the store cannot commit (a full disk, an I/O error).
    Unhealthy,
}

/// The store's part of [`Health`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// Whether the store can commit now.
    pub healthy: bool,
    /// While it cannot: `disk_full` or `io_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<iris_store::FaultKind>,
    /// While it cannot: what writes fail with (the cause and what to do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// While it cannot: since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<iris_core::Timestamp>,
    /// Write transactions that failed for a storage fault since the node started.
    pub failed_commits: u64,
}

/// The node's router: control API, metrics, health and MCP, behind the token.
pub fn router(state: ServerState) -> Router {
    let api = Router::new()
        .route(COMMAND_PATH, post(command))
        .route(METRICS_PATH, get(metrics))
        .route(HEALTH_PATH, get(health))
        .route(CLUSTER_PATH, get(cluster_status))
        .route(EVENTS_PATH, get(crate::http::events::events))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone());
    let body_read_timeout = state.limits.body_read_timeout;
    let behind_token = api
        .merge(crate::mcp::http_router(state.executor.clone()))
        .fallback(not_found)
        // Layers run outside in: the token is checked before the body is read, so an
        // unauthenticated caller learns nothing but 401.
        .layer(middleware::from_fn_with_state(
            body_read_timeout,
            limit_body,
        ))
        .layer(middleware::from_fn_with_state(state, require_token));
    // The dashboard's page and assets hold no secret; the page sends the token itself.
    crate::http::dashboard::router().merge(behind_token)
}

/// The HTTP status of an error with `code`, by class.
pub fn status_for(code: ApiCode) -> StatusCode {
    match code {
        ApiCode::Usage | ApiCode::Core(ErrorCode::ConfigError | ErrorCode::ValidationError) => {
            StatusCode::BAD_REQUEST
        }
        ApiCode::TurnNotFound
        | ApiCode::Core(ErrorCode::TeamNotFound | ErrorCode::SessionNotFound) => {
            StatusCode::NOT_FOUND
        }
        ApiCode::Core(ErrorCode::AlreadyExists | ErrorCode::StoreLocked) => StatusCode::CONFLICT,
        ApiCode::Core(ErrorCode::QueueFull | ErrorCode::PoolLimitExceeded) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        ApiCode::Core(ErrorCode::BudgetExceeded) => StatusCode::PAYMENT_REQUIRED,
        ApiCode::Core(ErrorCode::ProcessError) => StatusCode::BAD_GATEWAY,
        ApiCode::Core(ErrorCode::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        ApiCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ApiCode::NodeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
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
    headers: axum::http::HeaderMap,
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
    let request = match Request::from_json(&body) {
        Ok(request) => request,
        Err(error) => return error_response(&error),
    };
    if let Some(every) = heartbeat_interval(&headers) {
        return with_heartbeats(state, request, every).await;
    }
    let started = Instant::now();
    let name = request.name();
    let outcome = state.executor.execute(request).await;
    let took_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(reply) => {
            tracing::debug!(command = name, took_ms, "command done");
            json_response(StatusCode::OK, &reply)
        }
        Err(error) => {
            tracing::debug!(command = name, took_ms, code = error.code().as_str(), %error, "command failed");
            error_response(&error)
        }
    }
}

/// The heartbeat interval a request asks for, clamped to [`HEARTBEAT_RANGE`].
fn heartbeat_interval(headers: &axum::http::HeaderMap) -> Option<Duration> {
    let millis: u64 = headers
        .get(HEARTBEAT_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_millis(millis).clamp(HEARTBEAT_RANGE.0, HEARTBEAT_RANGE.1))
}

/// Runs `request`; if it has not answered within `every`, answers `200` at once and streams a
/// newline every `every` until the reply (or the error object) follows.
async fn with_heartbeats(state: ServerState, request: Request, every: Duration) -> Response {
    let name = request.name();
    let executor = state.executor.clone();
    let mut running = AbortOnDrop(tokio::spawn(async move { executor.execute(request).await }));
    match tokio::time::timeout(every, &mut running.0).await {
        Ok(joined) => {
            let outcome = joined_outcome(joined);
            match &outcome {
                Ok(reply) => json_response(StatusCode::OK, reply),
                Err(error) => error_response(error),
            }
        }
        Err(_) => {
            tracing::debug!(
                command = name,
                every_ms = every.as_millis() as u64,
                "command still running: streaming heartbeats"
            );
            let start = tokio::time::Instant::now() + every;
            let body = Heartbeats {
                running,
                ticks: tokio::time::interval_at(start, every),
                done: false,
            };
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                axum::body::Body::new(body),
            )
                .into_response()
        }
    }
}

/// A command's outcome from its task.
fn joined_outcome(
    joined: Result<Result<Reply, ApiError>, tokio::task::JoinError>,
) -> Result<Reply, ApiError> {
    joined.unwrap_or_else(|e| {
        Err(ApiError::new(
            INTERNAL_ERROR,
            format!("the command's task failed: {e}"),
        ))
    })
}

/// Aborts the task when dropped: a client that hangs up stops waiting for the command (a tell's
/// turn goes on in the runtime all the same).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The body of a heartbeat response: `\n` every tick, then the outcome as JSON.
struct Heartbeats {
    running: AbortOnDrop<Result<Reply, ApiError>>,
    ticks: tokio::time::Interval,
    done: bool,
}

impl http_body::Body for Heartbeats {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(joined) = std::pin::Pin::new(&mut self.running.0).poll(cx) {
            self.done = true;
            let encoded = match joined_outcome(joined) {
                Ok(reply) => serde_json::to_vec(&reply),
                Err(error) => serde_json::to_vec(&error),
            };
            let bytes = encoded.unwrap_or_else(|e| {
                serde_json::to_vec(&ApiError::new(
                    INTERNAL_ERROR,
                    format!("could not encode the answer: {e}"),
                ))
                .unwrap_or_default()
            });
            return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(bytes)))));
        }
        match self.ticks.poll_tick(cx) {
            Poll::Ready(_) => {
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"\n")))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let sample =
        crate::http::metrics::gather(&state.runtime, &state.store, state.cluster.as_ref()).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::http::metrics::CONTENT_TYPE),
        )],
        crate::http::metrics::render(&sample),
    )
        .into_response()
}

async fn cluster_status(State(state): State<ServerState>) -> Response {
    match &state.cluster {
        Some(cluster) => json_response(StatusCode::OK, &cluster.status()),
        None => error_response(&ApiError::new(
            iris_core::ErrorCode::ConfigError,
            "this iris node is not part of a cluster: its configuration has no [cluster], or it was started without `--node NAME`",
        )),
    }
}

async fn health(State(state): State<ServerState>) -> Response {
    let stats = state.runtime.stats();
    let store = state.store.health();
    let status = if store.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let health = Health {
        status: if store.is_healthy() {
            HealthStatus::Ok
        } else {
            HealthStatus::Unhealthy
        },
        pid: state.info.pid,
        addr: state.info.addr,
        database: state.info.database.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: state.info.started.elapsed().as_secs(),
        live_sessions: stats.live_actors,
        live_processes: stats.live_processes,
        store: StoreHealth {
            healthy: store.is_healthy(),
            fault: store.fault.as_ref().map(|f| f.kind),
            error: state.store.unavailable().map(|e| e.to_string()),
            since: store.since,
            failed_commits: store.failed_commits,
        },
    };
    json_response(status, &health)
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let allowed = if uri.path() == COMMAND_PATH {
        "POST"
    } else {
        "GET"
    };
    let error = ApiError::new(
        USAGE_ERROR,
        format!(
            "{} takes {allowed}, not {method}: send POST {COMMAND_PATH} with a JSON command, GET {METRICS_PATH} or GET {HEALTH_PATH}",
            uri.path()
        ),
    );
    let mut response = json_response(StatusCode::METHOD_NOT_ALLOWED, &error);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
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
            let why = if presented.is_some() {
                "the access token is wrong"
            } else {
                "the request carries no access token"
            };
            // The file's path is not said: an unauthenticated caller learns nothing about
            // where the node keeps its database.
            let error = ApiError::new(
                UNAUTHORIZED,
                format!(
                    "{why}: every request to an iris node needs `Authorization: Bearer <token>` with the token from the node's endpoint file (readable only by the user who runs the node)"
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

/// Rejects a body that announces more than [`MAX_BODY`] bytes before reading any of it, then
/// reads the body whole, within `timeout` (else `408`) and [`MAX_BODY`] (else `413`), so no
/// handler waits on a slow client. A `POST /mcp` whose body is not JSON gets a JSON-RPC parse
/// error (`-32700`), as JSON-RPC prescribes.
async fn limit_body(State(timeout): State<Duration>, request: HttpRequest, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        let error = ApiError::new(
            USAGE_ERROR,
            format!("the request body is larger than the node accepts ({MAX_BODY} bytes)"),
        );
        json_response(StatusCode::PAYLOAD_TOO_LARGE, &error)
    };
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            let over = std::error::Error::source(&error)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            if over {
                return too_large();
            }
            let error = ApiError::new(
                USAGE_ERROR,
                format!("could not read the request body: {error}"),
            );
            return json_response(StatusCode::BAD_REQUEST, &error);
        }
        Err(_) => {
            let error = ApiError::new(
                USAGE_ERROR,
                format!(
                    "the request body did not arrive within {}; send the whole body at once",
                    humantime::format_duration(timeout)
                ),
            );
            return json_response(StatusCode::REQUEST_TIMEOUT, &error);
        }
    };
    if parts.method == axum::http::Method::POST
        && parts.uri.path().starts_with(crate::mcp::MCP_PATH)
        && let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
    {
        return json_rpc_parse_error(&error);
    }
    next.run(HttpRequest::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// A JSON-RPC 2.0 parse error (`-32700`) for a body that is not JSON.
fn json_rpc_parse_error(error: &serde_json::Error) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32700,
            "message": format!(
                "Parse error: the body is not JSON ({}); send one JSON-RPC 2.0 message",
                iris_core::redact::clip(&error.to_string())
            ),
        }
    });
    json_response(StatusCode::BAD_REQUEST, &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn statuses_follow_the_error_classes() {
        let code = |name: &str| ApiCode::from_name(name).unwrap();
        assert_eq!(status_for(code("USAGE_ERROR")), StatusCode::BAD_REQUEST);
        assert_eq!(status_for(code("CONFIG_ERROR")), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_for(code("VALIDATION_ERROR")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status_for(code("TEAM_NOT_FOUND")), StatusCode::NOT_FOUND);
        assert_eq!(status_for(code("SESSION_NOT_FOUND")), StatusCode::NOT_FOUND);
        assert_eq!(status_for(code("TURN_NOT_FOUND")), StatusCode::NOT_FOUND);
        assert_eq!(status_for(code("ALREADY_EXISTS")), StatusCode::CONFLICT);
        assert_eq!(
            status_for(code("QUEUE_FULL")),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_for(code("POOL_LIMIT_EXCEEDED")),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_for(code("BUDGET_EXCEEDED")),
            StatusCode::PAYMENT_REQUIRED
        );
        assert_eq!(status_for(code("PROCESS_ERROR")), StatusCode::BAD_GATEWAY);
        assert_eq!(status_for(code("TIMEOUT")), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(status_for(code("UNAUTHORIZED")), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_for(code("STORE_ERROR")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_for(code("INTERNAL_ERROR")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Every code of the same exit class gets a status of the same class.
        for code in iris_core::ErrorCode::ALL {
            let status = status_for(code.into());
            match ApiCode::from(code).exit_code() {
                2 => assert!(status.is_client_error(), "{code:?}"),
                3 => assert_eq!(status, StatusCode::NOT_FOUND, "{code:?}"),
                4 => assert!(status.is_client_error(), "{code:?}"),
                5 => assert!(status.is_server_error(), "{code:?}"),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = Router::new()
            .route("/echo", post(|body: Bytes| async move { body }))
            .layer(middleware::from_fn_with_state(
                Duration::from_millis(200),
                limit_body,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ServeLimits {
            header_read_timeout: Duration::from_secs(3600),
            body_read_timeout: Duration::from_millis(200),
            max_connections: 8,
        };
        let server = tokio::spawn(crate::http::serve(
            listener,
            app,
            limits,
            std::future::pending(),
        ));
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), slow.read(&mut answer))
            .await
            .expect("the node answered instead of waiting for the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within"), "{answer}");
        // A body that does arrive goes through.
        let mut quick = tokio::net::TcpStream::connect(addr).await.unwrap();
        quick
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        let mut answer = String::new();
        quick.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
        server.abort();
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
