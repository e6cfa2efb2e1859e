//! Serving the node's router over HTTP/1.1 with limits, so idle or slow clients cannot take
//! the node's file descriptors or its time.
//!
//! - **Header-read timeout** ([`ServeLimits::header_read_timeout`]): a connection must deliver a
//!   request's whole header within this time of starting to wait for one, or it is closed. This
//!   covers slowloris clients and connections that open and say nothing, including idle
//!   keep-alive connections between requests.
//! - **Body-read timeout** ([`ServeLimits::body_read_timeout`]): enforced where the body is
//!   read, in the server's middleware ([`super::server`]), which answers `408`.
//! - **Connection limit** ([`ServeLimits::max_connections`], derived from the descriptor limit):
//!   at most this many connections are served at once. When all slots are taken, the *idle*
//!   connection that has waited longest (no request in flight, no response streaming) is closed
//!   to make room, so idle clients can never starve a working one: a tell gets a slot as soon as
//!   it connects. A connection is closed only for one that is already accepted and waiting,
//!   never ahead of time, and among idle ones of the same age the older is closed first, so a
//!   newcomer whose request is still on its way is not mistaken for the longest idle. Only when
//!   every slot carries a request does a new connection wait (the one accepted, in this loop; the
//!   rest in the kernel's listen backlog) for one to end.
//! - **Descriptor exhaustion**: a failed `accept` (`EMFILE`) closes an idle connection and tries
//!   again at once, instead of sleeping.
//!
//! HTTP/1.1 only: the node's clients (the CLI, MCP clients, Prometheus) speak it, and an
//! HTTP/2-detecting server would wait for a first byte without the header timeout.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How long a connection may take to send a request's header (counted from when the server
/// starts waiting for it, so an idle connection is closed after this long too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// How long reading a request's body may take.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections served at once, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS: usize = 256;

/// The fewest connections served at once, however low the descriptor limit.
pub const MIN_CONNECTIONS: usize = 4;

/// The limits the server applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl ServeLimits {
    /// The limits for this process: the default timeouts, and a quarter of the soft descriptor
    /// limit for connections (the rest is for the database, the agents' pipes and the runtime),
    /// between [`MIN_CONNECTIONS`] and [`MAX_CONNECTIONS`].
    pub fn for_this_process() -> ServeLimits {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        let quarter = usize::try_from(soft / 4).unwrap_or(MAX_CONNECTIONS);
        ServeLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            max_connections: quarter.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS),
        }
    }
}

/// One open connection, as the slot keeper sees it.
#[derive(Debug)]
struct Connection {
    /// Requests in flight, counting a response whose body is still streaming.
    busy: AtomicUsize,
    /// When it last started or finished a request (or was accepted), in ms since the server
    /// started.
    last_active: AtomicU64,
    /// Set once it was asked to close.
    closing: AtomicBool,
    /// Wakes its task to close it gracefully (finishing what is in flight, if anything).
    close: Notify,
}

/// The open connections and the slots they hold.
#[derive(Debug)]
struct Connections {
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    started: Instant,
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            slots: Arc::new(Semaphore::new(max)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A free slot; while there is none, the longest-idle connection is closed to make one.
    async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return permit;
            }
            self.close_idle();
            // The closed connection frees its slot at once; a busy one may become idle
            // meanwhile, so look again shortly if none does.
            if let Ok(Ok(permit)) = tokio::time::timeout(
                Duration::from_millis(100),
                self.slots.clone().acquire_owned(),
            )
            .await
            {
                return permit;
            }
        }
    }

    /// Asks the idle connection that has waited longest to close (of equal ages, the one
    /// accepted first: ages are in whole milliseconds). Returns whether there was one.
    fn close_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let victim = open
            .iter()
            .filter(|(_, c)| {
                c.busy.load(Ordering::Acquire) == 0 && !c.closing.load(Ordering::Acquire)
            })
            .min_by_key(|(id, c)| (c.last_active.load(Ordering::Acquire), **id));
        match victim {
            Some((_, connection)) => {
                connection.closing.store(true, Ordering::Release);
                connection.close.notify_one();
                tracing::debug!("closing an idle connection to make room for a new one");
                true
            }
            None => false,
        }
    }

    fn register(&self) -> (u64, Arc<Connection>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            busy: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, connection.clone());
        (id, connection)
    }

    fn unregister(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Marks its connection busy while it lives: from a request's start until its response's body
/// is done (or dropped).
#[derive(Debug)]
struct Busy {
    connection: Arc<Connection>,
    connections: Arc<Connections>,
}

impl Busy {
    fn enter(connection: Arc<Connection>, connections: Arc<Connections>) -> Busy {
        connection.busy.fetch_add(1, Ordering::AcqRel);
        connection
            .last_active
            .store(connections.now_ms(), Ordering::Release);
        Busy {
            connection,
            connections,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.connection
            .last_active
            .store(self.connections.now_ms(), Ordering::Release);
        self.connection.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection marked busy until it is fully sent.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown` completes; then every connection
/// is asked to close gracefully (idle ones at once, busy ones after their response), and this
/// returns when all have closed. Dropping the future closes them all at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let connections = Arc::new(Connections::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // Accepted first, then given a slot: an idle connection is closed only for a newcomer
        // that is really there (a slot taken ahead of time would close one for nobody).
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                accept_failed(&error, &connections).await;
                continue;
            }
        };
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.slot() => permit,
        };
        let _ = stream.set_nodelay(true);
        let (id, connection) = connections.register();
        let service = {
            let (app, connection, connections) =
                (app.clone(), connection.clone(), connections.clone());
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let busy = Busy::enter(connection.clone(), connections.clone());
                let app = app.clone();
                async move {
                    let response = match app.oneshot(request.map(Body::new)).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    Ok::<_, Infallible>(response.map(|inner| Tracked { inner, _busy: busy }))
                }
            })
        };
        let serving = builder.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        let connections_for_task = connections.clone();
        tasks.spawn(async move {
            let _permit = permit;
            tokio::pin!(serving);
            let mut closing = false;
            let outcome = loop {
                tokio::select! {
                    outcome = serving.as_mut() => break outcome,
                    () = connection.close.notified(), if !closing => {
                        closing = true;
                        serving.as_mut().graceful_shutdown();
                    }
                    _ = stopping.changed(), if !closing => {
                        closing = true;
                        serving.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(%error, "an HTTP connection ended with an error");
            }
            connections_for_task.unregister(id);
        });
    }
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
}

/// After a failed `accept`: out of descriptors, an idle connection is closed to make room;
/// anything else (a connection reset before it was accepted) is just logged.
async fn accept_failed(error: &std::io::Error, connections: &Connections) {
    let exhausted = matches!(
        error.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    );
    if exhausted {
        tracing::warn!(%error, "accepting a connection failed: out of descriptors; closing an idle connection");
        if !connections.close_idle() {
            // Nothing to close: the descriptors are held elsewhere. Give them a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::task::yield_now().await;
    } else {
        tracing::debug!(%error, "accepting a connection failed");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn start(
        limits: ServeLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "hello" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    async fn get_once(addr: std::net::SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn idle_connections_never_starve_a_request() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_secs(3600),
            body_read_timeout: Duration::from_secs(3600),
            max_connections: 4,
        };
        let (addr, _stop) = start(limits).await;
        let mut idle = Vec::new();
        // Rounds, because the newcomer being mistaken for the longest idle (accepted in the same
        // millisecond as the idle ones) was a matter of luck.
        for round in 0..10 {
            // Far more idle connections than slots, none of which ever sends a byte.
            for _ in 0..20 {
                idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            }
            // A real request is answered, long before any timeout could have freed a slot.
            let answer = tokio::time::timeout(Duration::from_secs(30), get_once(addr))
                .await
                .expect("answered while idle connections hold every slot");
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "round {round}: {answer:?}"
            );
            assert!(answer.ends_with("hello"), "round {round}: {answer:?}");
        }
        drop(idle);
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_header_is_closed() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(200),
            body_read_timeout: Duration::from_secs(3600),
            max_connections: 64,
        };
        let (addr, _stop) = start(limits).await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        silent.write_all(b"GET / HTTP/1.1\r\nhost:").await.unwrap();
        // The server closes it (EOF, or an error response then EOF) instead of waiting forever.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), silent.read_to_end(&mut rest))
            .await
            .expect("the server closed the connection");
        assert!(read.is_ok() || read.is_err());
        assert!(!String::from_utf8_lossy(&rest).contains("hello"));
    }
}
