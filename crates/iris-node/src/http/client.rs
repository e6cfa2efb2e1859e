//! The client side of a running node's control API: `POST /api/v1/command` with the token from
//! the endpoint file, over plain HTTP (the node listens on loopback by default).
//!
//! **Timeouts.** No request waits forever on a node that does not answer. Connecting is bounded
//! ([`CONNECT_TIMEOUT`]): on loopback a live node accepts at once, so a connect that takes
//! longer means the node is wedged. Every request then has two deadlines:
//!
//! - **Silence** ([`DEFAULT_IDLE_TIMEOUT`], or `$IRIS_CLIENT_IDLE_TIMEOUT`): the client asks the
//!   node for heartbeats ([`crate::http::HEARTBEAT_HEADER`]) every fifth of it, and fails
//!   with `NODE_UNAVAILABLE` ("did not answer") when nothing at all arrives for that long. A node
//!   that is frozen (`SIGSTOP`), deadlocked or starved still accepts connections in the kernel,
//!   so only this notices it; a node that works sends a newline per heartbeat while a command
//!   runs, however long.
//! - **Overall**, per kind of request ([`deadline_for`]):
//!   - reads (list, show, report, status, teams, stats) and `tell --async`: [`READ_TIMEOUT`];
//!   - `tell --timeout D`: D plus [`REPLY_MARGIN`] (the node answers at D with the partial text);
//!   - lifecycle commands (wake, wake-all, sleep, cancel, delete, compact, reboot), which start
//!     or stop agents: [`CONTROL_TIMEOUT`], longer than any of them takes with sane settings;
//!   - a `tell` that waits for the whole reply: **none but silence**. A turn may legitimately
//!     run for hours while the agent keeps working, so no fixed deadline fits it: the node bounds
//!     a turn without progress itself (`response_timeout`, `tool_timeout`, and `turn_timeout`
//!     if set) and fails it, and its heartbeats prove it is alive meanwhile. So a long healthy
//!     turn is never cut, and a frozen node is detected within the silence deadline. A node that
//!     dies closes the connection, which ends the wait at once.
//!
//! Interrupting the command (Ctrl-C) stops waiting; the turn goes on in the node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;

use crate::http::endpoint::Endpoint;
use crate::http::{CLUSTER_PATH, COMMAND_PATH, HEARTBEAT_HEADER};
use iris_api::error::{INTERNAL_ERROR, NODE_UNAVAILABLE, UNAUTHORIZED};
use iris_api::{ApiError, Reply, Request, RequestKind};
use iris_runtime::Wait;

/// How long connecting to the node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The deadline of a read or of `tell --async`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The deadline of a lifecycle command (agents start and stop).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// What `tell --timeout D` adds to D for the node's answer to arrive.
pub const REPLY_MARGIN: Duration = Duration::from_secs(30);
/// TCP keepalive on the connection, so a vanished peer is noticed during a long tell.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long a request may go without a byte from the node before the node counts as not
/// answering (it sends a heartbeat every fifth of this while a command runs).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The environment variable that sets the silence deadline (a duration such as `10s`).
pub const IDLE_TIMEOUT_VAR: &str = "IRIS_CLIENT_IDLE_TIMEOUT";
/// How long a pooled connection is kept between requests: less than the node's header-read
/// timeout, so the client never reuses a connection the node is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Talks to one node, with its token.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    /// The endpoint file it came from, for error messages.
    source: Option<PathBuf>,
    http: reqwest::Client,
    /// The silence deadline (see the module documentation).
    idle_timeout: Duration,
}

/// The silence deadline: `$IRIS_CLIENT_IDLE_TIMEOUT` if it holds a duration of at least 500 ms,
/// else [`DEFAULT_IDLE_TIMEOUT`].
pub fn idle_timeout_from_env() -> Duration {
    std::env::var(IDLE_TIMEOUT_VAR)
        .ok()
        .and_then(|text| humantime::parse_duration(text.trim()).ok())
        .filter(|d| *d >= Duration::from_millis(500))
        .unwrap_or(DEFAULT_IDLE_TIMEOUT)
}

impl Client {
    /// A client for the node at `endpoint`, read from the endpoint file `source` (named in error
    /// messages; `None` if the endpoint came from elsewhere).
    pub fn new(endpoint: Endpoint, source: Option<PathBuf>) -> Result<Client, ApiError> {
        Client::with_idle_timeout(endpoint, source, idle_timeout_from_env())
    }

    /// [`Client::new`] with an explicit silence deadline.
    pub fn with_idle_timeout(
        endpoint: Endpoint,
        source: Option<PathBuf>,
        idle_timeout: Duration,
    ) -> Result<Client, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Each read, waiting for the answer's head or for the next bytes of its body.
            .read_timeout(idle_timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_keepalive(KEEPALIVE)
            // The node is reached directly: a proxy configured for the web must not see the
            // token or relay loopback traffic.
            .no_proxy()
            .build()
            .map_err(|e| {
                ApiError::new(
                    INTERNAL_ERROR,
                    format!("could not set up an HTTP client for the iris node: {e}"),
                )
            })?;
        Ok(Client {
            endpoint,
            source,
            http,
            idle_timeout,
        })
    }

    /// The node this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request and returns the node's reply.
    pub async fn execute(&self, request: Request) -> Result<Reply, ApiError> {
        let deadline = deadline_for(&request);
        let heartbeat = (self.idle_timeout / 5).max(Duration::from_millis(100));
        let mut call = self
            .http
            .post(format!("{}{COMMAND_PATH}", self.endpoint.url()))
            .bearer_auth(&self.endpoint.token)
            .header(HEARTBEAT_HEADER, heartbeat.as_millis().to_string())
            .json(&request);
        if let Some(deadline) = deadline {
            call = call.timeout(deadline);
        }
        let started = std::time::Instant::now();
        let response = call
            .send()
            .await
            .map_err(|e| self.network_error(&e, deadline, started))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.network_error(&e, deadline, started))?;
        self.decode(status, &body)
    }

    /// `GET /api/v1/cluster`: the cluster as the node sees it.
    pub async fn cluster_status(&self) -> Result<crate::cluster::ClusterStatus, ApiError> {
        let started = std::time::Instant::now();
        let response = self
            .http
            .get(format!("{}{CLUSTER_PATH}", self.endpoint.url()))
            .bearer_auth(&self.endpoint.token)
            .timeout(READ_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.network_error(&e, Some(READ_TIMEOUT), started))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.network_error(&e, Some(READ_TIMEOUT), started))?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        if !status.is_success() {
            return Err(
                serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| {
                    ApiError::new(
                        INTERNAL_ERROR,
                        format!("the iris node at {} answered {status}", self.endpoint.addr),
                    )
                }),
            );
        }
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                INTERNAL_ERROR,
                format!(
                    "the iris node at {} sent a cluster status this iris cannot read ({e}); are the node and this command the same version?",
                    self.endpoint.addr
                ),
            )
        })
    }

    /// Turns the node's answer into a reply or the error it reported. A heartbeat answer is
    /// `200` with newlines before the reply or before an `{"error":…}` object.
    fn decode(&self, status: StatusCode, body: &[u8]) -> Result<Reply, ApiError> {
        if status == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        if status.is_success() {
            let reply = serde_json::from_slice::<Reply>(body);
            if reply.is_err()
                && let Ok(error) = serde_json::from_slice::<ApiError>(body)
            {
                return Err(error);
            }
            return reply.map_err(|e| {
                ApiError::new(
                    INTERNAL_ERROR,
                    format!(
                        "the iris node at {} sent a reply this iris cannot read ({e}); are the node and this command the same version (`iris version`)?",
                        self.endpoint.addr
                    ),
                )
            });
        }
        match serde_json::from_slice::<ApiError>(body) {
            Ok(error) => Err(error),
            Err(_) => Err(ApiError::new(
                INTERNAL_ERROR,
                format!(
                    "the iris node at {} answered {status}: {}",
                    self.endpoint.addr,
                    String::from_utf8_lossy(&body[..body.len().min(500)]).trim()
                ),
            )),
        }
    }

    fn file(&self) -> String {
        self.source.as_deref().map_or_else(
            || "the node's endpoint file".to_owned(),
            |p: &Path| p.display().to_string(),
        )
    }

    fn unauthorized(&self) -> ApiError {
        ApiError::new(
            UNAUTHORIZED,
            format!(
                "the iris node at {} (pid {}) refused the access token from {}: the token in the endpoint file does not match the node's. Restart the node to rewrite the file, or check that nothing else edits it",
                self.endpoint.addr,
                self.endpoint.pid,
                self.file()
            ),
        )
    }

    fn network_error(
        &self,
        error: &reqwest::Error,
        deadline: Option<Duration>,
        started: std::time::Instant,
    ) -> ApiError {
        let (addr, pid, file) = (self.endpoint.addr, self.endpoint.pid, self.file());
        let url = self.endpoint.url();
        let message = if error.is_timeout() {
            match deadline {
                _ if error.is_connect() => format!(
                    "could not connect to the iris node at {url} (pid {pid}) within {}: it may be stuck; check its log, or restart it",
                    humantime::format_duration(CONNECT_TIMEOUT)
                ),
                Some(d) if started.elapsed() >= d => format!(
                    "the iris node at {url} (pid {pid}) did not answer within {}: it may be overloaded or stuck; check its log, or restart it",
                    humantime::format_duration(d)
                ),
                _ => format!(
                    "the iris node at {url} (pid {pid}) did not answer: nothing came from it for {} (a working node sends a heartbeat every few seconds). It may be stopped (SIGSTOP: `kill -CONT {pid}`), overloaded or stuck; check its log, or restart it. A turn already sent goes on if the node recovers: check with `iris report`",
                    humantime::format_duration(self.idle_timeout)
                ),
            }
        } else if error.is_connect() {
            format!(
                "could not connect to the iris node at {addr} (pid {pid}) named in {file}: {}. Is the node running? If it is not, remove the stale endpoint file {file} and retry",
                root_cause(error)
            )
        } else {
            format!(
                "lost the connection to the iris node at {addr} (pid {pid}): {}. If the node stopped, the command may or may not have run: check with `iris sessions show` or `iris report`",
                root_cause(error)
            )
        };
        ApiError::new(NODE_UNAVAILABLE, message)
    }
}

/// How long a request may take from sending it until its reply is read, or `None` for no
/// overall deadline (see the module documentation).
pub fn deadline_for(request: &Request) -> Option<Duration> {
    match request.kind() {
        RequestKind::Tell(Wait::Async) | RequestKind::Read => Some(READ_TIMEOUT),
        RequestKind::Tell(Wait::Timeout(limit)) => Some(limit.saturating_add(REPLY_MARGIN)),
        RequestKind::Tell(Wait::Complete) => None,
        RequestKind::Control => Some(CONTROL_TIMEOUT),
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"), which is what tells a
/// person what happened; reqwest's own message is a generic "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use iris_core::TeamName;

    use super::*;

    fn endpoint(addr: &str) -> Endpoint {
        Endpoint {
            addr: addr.parse().unwrap(),
            pid: 4242,
            token: "t".repeat(64),
            start_ticks: None,
        }
    }

    fn team(name: &str) -> TeamName {
        TeamName::new(name).unwrap()
    }

    fn tell(wait: Wait) -> Request {
        Request::Tell {
            from: team("a"),
            to: team("b"),
            message: "hi".into(),
            wait,
            request_id: None,
        }
    }

    #[test]
    fn every_request_has_its_deadline() {
        assert_eq!(deadline_for(&tell(Wait::Complete)), None);
        assert_eq!(deadline_for(&tell(Wait::Async)), Some(READ_TIMEOUT));
        assert_eq!(
            deadline_for(&tell(Wait::Timeout(Duration::from_secs(10)))),
            Some(Duration::from_secs(10) + REPLY_MARGIN)
        );
        assert_eq!(deadline_for(&Request::Stats), Some(READ_TIMEOUT));
        assert_eq!(
            deadline_for(&Request::WakeAll { from: team("a") }),
            Some(CONTROL_TIMEOUT)
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_node_unavailable_and_says_what_to_do() {
        // Bind then drop: the port is (almost certainly) closed now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client::new(
            endpoint(&addr.to_string()),
            Some(PathBuf::from("/data/iris.redb.node")),
        )
        .unwrap();
        let error = client.execute(Request::Stats).await.unwrap_err();
        assert_eq!(error.code(), NODE_UNAVAILABLE);
        let text = error.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("Is the node running?"), "{text}");
        assert!(text.contains("/data/iris.redb.node"), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert_eq!(error.exit_code(), 6);
    }

    #[tokio::test]
    async fn a_node_that_accepts_but_never_answers_is_node_unavailable() {
        // What a SIGSTOPped node looks like from outside: the kernel completes the connection
        // (the listen backlog), and then nothing ever comes.
        let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = frozen.local_addr().unwrap();
        let client = Client::with_idle_timeout(
            endpoint(&addr.to_string()),
            None,
            Duration::from_millis(500),
        )
        .unwrap();
        // A full-wait tell has no overall deadline: silence is what ends it.
        let tell = tell(Wait::Complete);
        assert_eq!(deadline_for(&tell), None);
        let error = tokio::time::timeout(Duration::from_secs(60), client.execute(tell))
            .await
            .expect("the client gave up on its own")
            .unwrap_err();
        assert_eq!(error.code(), NODE_UNAVAILABLE);
        let text = error.to_string();
        assert!(text.contains("did not answer"), "{text}");
        assert!(text.contains(&format!("http://{addr}")), "{text}");
        assert_eq!(error.exit_code(), 6);
        drop(frozen);
    }

    #[test]
    fn heartbeat_answers_are_decoded() {
        let client = Client::new(endpoint("127.0.0.1:1"), None).unwrap();
        let reply = serde_json::to_vec(&Reply::Teams(Vec::new())).unwrap();
        let mut body = b"\n\n\n".to_vec();
        body.extend_from_slice(&reply);
        assert_eq!(
            client.decode(StatusCode::OK, &body).unwrap(),
            Reply::Teams(Vec::new())
        );
        let mut body = b"\n".to_vec();
        body.extend(
            serde_json::to_vec(&ApiError::new(iris_core::ErrorCode::Timeout, "stalled")).unwrap(),
        );
        assert_eq!(
            client.decode(StatusCode::OK, &body).unwrap_err(),
            ApiError::new(iris_core::ErrorCode::Timeout, "stalled")
        );
    }

    #[test]
    fn answers_are_decoded_by_status() {
        let client = Client::new(endpoint("127.0.0.1:1"), None).unwrap();
        let error = client.decode(StatusCode::UNAUTHORIZED, b"").unwrap_err();
        assert_eq!(error.code(), UNAUTHORIZED);
        assert!(error.to_string().contains("does not match"), "{error}");

        let body =
            serde_json::to_vec(&ApiError::new(iris_core::ErrorCode::QueueFull, "full")).unwrap();
        let error = client
            .decode(StatusCode::TOO_MANY_REQUESTS, &body)
            .unwrap_err();
        assert_eq!(
            error,
            ApiError::new(iris_core::ErrorCode::QueueFull, "full")
        );

        let error = client
            .decode(StatusCode::BAD_GATEWAY, b"<html>proxy</html>")
            .unwrap_err();
        assert_eq!(error.code(), INTERNAL_ERROR);
        assert!(error.to_string().contains("502"), "{error}");

        let error = client.decode(StatusCode::OK, b"{}").unwrap_err();
        assert!(error.to_string().contains("same version"), "{error}");
    }
}
