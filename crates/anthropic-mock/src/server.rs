//! The loopback HTTP server: routing, recording, and the streamed replies.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::script::{self, Conversation, Script, SlowDefaults};
use crate::wire::{self, Frame};

/// The API key [`MockApi::claude_env`] gives the CLI (the mock accepts any).
pub const DUMMY_API_KEY: &str = "sk-ant-api03-iris-mock-key-not-a-secret";

/// Variables that would send an inherited environment's CLI elsewhere (another provider, a proxy, OAuth, another
/// model): remove them from a child's environment, or start the child with an empty environment plus `PATH` and
/// `HOME`, before adding [`MockApi::claude_env`].
pub const CLAUDE_ENV_TO_REMOVE: &[&str] = &[
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_UNIX_SOCKET",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_USE_GATEWAY",
    "CLAUDE_CODE_USE_ANTHROPIC_AWS",
    "CLAUDE_CODE_USE_MANTLE",
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The largest request body the mock reads (the CLI's first request is ~90 KB; long conversations grow).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Settings of a [`MockApi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockOptions {
    /// The loopback port to bind; 0 (the default) picks a free one.
    pub port: u16,
    /// How many text deltas the `slow` script streams when the keyword gives no count (default 20).
    pub slow_chunks: u32,
    /// The delay between two `slow` deltas when the keyword gives none (default 100 ms).
    pub slow_delay: Duration,
    /// When set, every request is also written there as `<index>.json` (method, path, headers, body) for
    /// inspection. [`MockApi::start`] takes it from `ANTHROPIC_MOCK_DUMP_DIR`.
    pub dump_dir: Option<PathBuf>,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            port: 0,
            slow_chunks: 20,
            slow_delay: Duration::from_millis(100),
            dump_dir: None,
        }
    }
}

/// Failures of the mock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// The listening socket could not be bound.
    #[error(
        "cannot bind the mock Anthropic API to {addr}: {source}; pick another port (0 chooses a free one)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// [`MockApi::wait_for`] timed out.
    #[error(
        "timed out after {timeout:?} waiting for {what}; the mock recorded {count} request(s): {summary}; check that the client points at the mock and sends what the test expects"
    )]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// Requests recorded so far.
        count: usize,
        /// One short description per request.
        summary: String,
    },
}

/// How a recorded request's reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// A whole (non-streamed) reply was returned: a JSON message, an error, `HEAD /`, or a 404.
    Replied,
    /// The stream is still being written.
    Streaming,
    /// Every event of the stream was handed to the connection.
    Completed,
    /// The client went away before the stream ended; the mock stopped writing.
    ClientGone {
        /// Events handed to the connection before it closed.
        events_sent: usize,
        /// Events the stream had.
        events_total: usize,
    },
}

/// One request the mock received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    /// Its position among all requests, from 0.
    pub index: usize,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any (the CLI sends `beta=true`).
    pub query: Option<String>,
    /// The HTTP status the mock answered.
    pub status: u16,
    /// The request's `model`.
    pub model: Option<String>,
    /// The request's `stream` flag (false when absent).
    pub stream: bool,
    /// The request's `max_tokens`.
    pub max_tokens: Option<u64>,
    /// The names of the request's `tools`.
    pub tools: Vec<String>,
    /// The `X-Claude-Code-Session-Id` header (the CLI's session id).
    pub session_header: Option<String>,
    /// The last real user text (system reminders removed), when the last user turn is a text.
    pub last_user_text: Option<String>,
    /// The text of the tool result, when the last user turn is a tool result.
    pub tool_result: Option<String>,
    /// User turns with real text in the request (not tool results, not the CLI's reminders).
    pub turns_seen: usize,
    /// The script chosen (`None` for `HEAD /`, 404s and unreadable bodies).
    pub script: Option<Script>,
    /// The reply's text blocks, joined with newlines.
    pub reply_text: Option<String>,
    /// How the reply ended.
    pub outcome: Outcome,
}

impl RecordedRequest {
    /// Whether this is a Messages request (`POST /v1/messages`).
    pub fn is_messages(&self) -> bool {
        self.method == "POST" && self.path == "/v1/messages"
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "#{} {} {} -> {}",
            self.index, self.method, self.path, self.status
        );
        if let Some(script) = &self.script {
            s.push_str(&format!(" {script:?}"));
        }
        s
    }
}

/// Counts over the recorded requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// All requests.
    pub requests: usize,
    /// `HEAD /` probes.
    pub head: usize,
    /// `POST /v1/messages` requests.
    pub messages: usize,
    /// Requests answered 404 (unknown routes).
    pub not_found: usize,
    /// Messages requests answered with a scripted API error.
    pub api_errors: usize,
    /// Streamed replies begun.
    pub streams_started: usize,
    /// Streamed replies fully written.
    pub streams_completed: usize,
    /// Streamed replies abandoned because the client went away.
    pub streams_abandoned: usize,
}

struct Shared {
    options: MockOptions,
    records: Mutex<Vec<RecordedRequest>>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn records(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Appends a record (its index is assigned here) and returns the index.
    fn record(&self, mut rec: RecordedRequest) -> usize {
        let index = {
            let mut records = self.records();
            rec.index = records.len();
            tracing::info!(target: "anthropic_mock", "{}", rec.summary());
            records.push(rec);
            records.len() - 1
        };
        self.notify();
        index
    }

    fn set_outcome(&self, index: usize, outcome: Outcome) {
        if let Some(rec) = self.records().get_mut(index) {
            rec.outcome = outcome;
        }
        if let Outcome::ClientGone {
            events_sent,
            events_total,
        } = outcome
        {
            tracing::info!(target: "anthropic_mock", "#{index}: client went away after {events_sent}/{events_total} events");
        }
        self.notify();
    }

    fn dump(&self, index: usize, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
        let Some(dir) = &self.options.dump_dir else {
            return;
        };
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let body = serde_json::from_slice::<Value>(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        let doc = json!({"method": method.as_str(), "uri": uri.to_string(), "headers": headers, "body": body});
        let path = dir.join(format!("{index:04}.json"));
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default())
        });
        if let Err(err) = written {
            tracing::warn!(target: "anthropic_mock", "cannot write {}: {err}", path.display());
        }
    }
}

/// A mock of the Anthropic Messages API on `127.0.0.1`, with replies scripted by keywords in the last user text
/// (see the crate's front page). Every request is recorded. Dropping it stops the server and every connection.
pub struct MockApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockApi")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockApi {
    /// Starts a mock on a free loopback port with the default options (and `ANTHROPIC_MOCK_DUMP_DIR`, if set, as
    /// the dump directory). Needs a Tokio runtime.
    pub async fn start() -> Result<Self, MockError> {
        let dump_dir = std::env::var_os("ANTHROPIC_MOCK_DUMP_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self::start_with(MockOptions {
            dump_dir,
            ..MockOptions::default()
        })
        .await
    }

    /// Starts a mock with these options, on `127.0.0.1` only. Needs a Tokio runtime.
    pub async fn start_with(options: MockOptions) -> Result<Self, MockError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MockError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            options,
            records: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        });
        let router = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(accept_loop(listener, router));
        Ok(MockApi {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: what `ANTHROPIC_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment that points the Claude Code CLI at this mock and keeps it off the network:
    /// `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY` (a dummy), `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`,
    /// `DISABLE_TELEMETRY=1`, `DISABLE_AUTOUPDATER=1`, `DISABLE_ERROR_REPORTING=1`, and
    /// `CLAUDE_CONFIG_DIR=<config_dir>` (a scratch directory; it may be empty: the CLI needs no file there in
    /// `--print` mode). Add these to an environment cleared of [`CLAUDE_ENV_TO_REMOVE`].
    pub fn claude_env(&self, config_dir: impl AsRef<Path>) -> Vec<(&'static str, OsString)> {
        vec![
            ("ANTHROPIC_BASE_URL", self.base_url().into()),
            ("ANTHROPIC_API_KEY", DUMMY_API_KEY.into()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
            ("DISABLE_TELEMETRY", "1".into()),
            ("DISABLE_AUTOUPDATER", "1".into()),
            ("DISABLE_ERROR_REPORTING", "1".into()),
            (
                "CLAUDE_CONFIG_DIR",
                config_dir.as_ref().as_os_str().to_owned(),
            ),
        ]
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.records().clone()
    }

    /// The `POST /v1/messages` requests so far.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .records()
            .iter()
            .filter(|r| r.is_messages())
            .cloned()
            .collect()
    }

    /// Counts over the requests so far.
    pub fn counters(&self) -> Counters {
        let records = self.shared.records();
        let mut c = Counters {
            requests: records.len(),
            ..Counters::default()
        };
        for r in records.iter() {
            c.head += usize::from(r.method == "HEAD" && r.path == "/");
            c.messages += usize::from(r.is_messages());
            c.not_found += usize::from(r.status == 404 && !r.is_messages());
            c.api_errors += usize::from(matches!(r.script, Some(Script::ApiError { .. })));
            match r.outcome {
                Outcome::Replied => {}
                Outcome::Streaming => c.streams_started += 1,
                Outcome::Completed => {
                    c.streams_started += 1;
                    c.streams_completed += 1;
                }
                Outcome::ClientGone { .. } => {
                    c.streams_started += 1;
                    c.streams_abandoned += 1;
                }
            }
        }
        c
    }

    /// Waits until `done` holds for the requests recorded so far (checked now and after every new request or
    /// stream outcome), and returns them; fails after `timeout` with a description of `what` and the requests.
    pub async fn wait_for<F>(
        &self,
        what: &str,
        timeout: Duration,
        mut done: F,
    ) -> Result<Vec<RecordedRequest>, MockError>
    where
        F: FnMut(&[RecordedRequest]) -> bool,
    {
        let mut changes = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            let snapshot = self.requests();
            if done(&snapshot) {
                return Ok(snapshot);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `shared`, which `self` holds: it cannot close; treat it as a timeout anyway.
                Ok(Err(_)) | Err(_) => {
                    let summary = snapshot
                        .iter()
                        .map(RecordedRequest::summary)
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(MockError::Timeout {
                        what: what.to_owned(),
                        timeout,
                        count: snapshot.len(),
                        summary,
                    });
                }
            }
        }
    }

    /// Stops the server and waits for its task to end (dropping the mock stops it too, without waiting).
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task was aborted: its only outcome is a cancellation.
            let _ = task.await;
        }
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Accepts connections until aborted; each connection is served in a task of a `JoinSet` the loop owns, so
/// aborting the loop drops the set and aborts every connection with it.
async fn accept_loop(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                tracing::warn!(target: "anthropic_mock", "accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(target: "anthropic_mock", "connection ended: {err}");
            }
        });
    }
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn request_id() -> HeaderValue {
    HeaderValue::from_str(&format!("req_mock_{}", uuid::Uuid::new_v4().simple()))
        .unwrap_or(HeaderValue::from_static("req_mock"))
}

fn blank(method: &Method, uri: &Uri, status: u16) -> RecordedRequest {
    RecordedRequest {
        index: 0,
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        status,
        model: None,
        stream: false,
        max_tokens: None,
        tools: Vec::new(),
        session_header: None,
        last_user_text: None,
        tool_result: None,
        turns_seen: 0,
        script: None,
        reply_text: None,
        outcome: Outcome::Replied,
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::HEAD && uri.path() == "/" {
        let index = shared.record(blank(&method, &uri, 200));
        shared.dump(index, &method, &uri, &headers, &body);
        return StatusCode::OK.into_response();
    }
    if method == Method::POST && uri.path() == "/v1/messages" {
        return messages(&shared, &method, &uri, &headers, &body);
    }
    let index = shared.record(blank(&method, &uri, 404));
    shared.dump(index, &method, &uri, &headers, &body);
    error_response(
        StatusCode::NOT_FOUND,
        "not_found_error",
        &format!("mock: no route for {method} {}", uri.path()),
    )
}

fn messages(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut rec = blank(method, uri, 200);
    rec.session_header = headers
        .get("x-claude-code-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            rec.status = 400;
            let index = shared.record(rec);
            shared.dump(index, method, uri, headers, body);
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "mock: the request body is not a JSON object",
            );
        }
    };
    rec.model = request
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned);
    rec.stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    rec.max_tokens = request.get("max_tokens").and_then(Value::as_u64);
    rec.tools = request
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let no_messages = Vec::new();
    let conv: Conversation = script::analyse(
        request
            .get("messages")
            .and_then(Value::as_array)
            .unwrap_or(&no_messages),
    );
    let slow = SlowDefaults {
        chunks: shared.options.slow_chunks,
        delay: shared.options.slow_delay,
    };
    let chosen = script::choose(&conv, slow);
    rec.last_user_text.clone_from(&conv.last_user_text);
    rec.tool_result = conv.tool_result.as_ref().map(|r| r.text.clone());
    rec.turns_seen = conv.turns_seen;
    rec.script = Some(chosen.clone());
    let model = rec
        .model
        .clone()
        .unwrap_or_else(|| "claude-mock".to_owned());
    let message_id = format!("msg_mock_{}", uuid::Uuid::new_v4().simple());

    let reply = match script::reply(&chosen, &conv, || {
        format!("toolu_mock_{}", uuid::Uuid::new_v4().simple())
    }) {
        Ok(reply) => reply,
        Err(err) => {
            rec.status = err.status;
            let index = shared.record(rec);
            shared.dump(index, method, uri, headers, body);
            let status =
                StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                err.body().to_string(),
            )
                .into_response();
            response.headers_mut().insert("request-id", request_id());
            if err.status == 429 {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return response;
        }
    };
    rec.reply_text = Some(reply.text());

    if !rec.stream {
        let index = shared.record(rec);
        shared.dump(index, method, uri, headers, body);
        let mut response = axum::Json(wire::message(&reply, &message_id, &model)).into_response();
        response.headers_mut().insert("request-id", request_id());
        return response;
    }

    rec.outcome = Outcome::Streaming;
    let index = shared.record(rec);
    shared.dump(index, method, uri, headers, body);
    let frames: VecDeque<Frame> = wire::events(&reply, &message_id, &model).into();
    let guard = StreamGuard {
        shared: Arc::clone(shared),
        index,
        sent: 0,
        total: frames.len(),
    };
    let stream =
        futures_util::stream::unfold((frames, guard), |(mut frames, mut guard)| async move {
            let frame = frames.pop_front()?;
            if !frame.delay.is_zero() {
                tokio::time::sleep(frame.delay).await;
            }
            guard.sent += 1;
            Some((
                Ok::<_, Infallible>(Bytes::from(frame.encode())),
                (frames, guard),
            ))
        });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("request-id", request_id());
    response
}

/// Records how a stream ended when the body is dropped: after its last event, or earlier because the connection
/// went away (hyper drops the body when a write fails).
struct StreamGuard {
    shared: Arc<Shared>,
    index: usize,
    sent: usize,
    total: usize,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let outcome = if self.sent >= self.total {
            Outcome::Completed
        } else {
            Outcome::ClientGone {
                events_sent: self.sent,
                events_total: self.total,
            }
        };
        self.shared.set_outcome(self.index, outcome);
    }
}
