//! `iris node`: the runtime, the HTTP server and the endpoint file, until SIGINT or SIGTERM.
//!
//! **Start-up**, in this order, so that a failure leaves nothing behind:
//!
//! 1. take SIGINT and SIGTERM, so a signal from now on means a graceful stop;
//! 2. open the database — this takes its lock, so a second node on the same database fails here
//!    with `STORE_LOCKED` (exit 4), naming the node that holds it when its endpoint file says;
//! 3. bind the listening socket (a bad `--listen` fails before any agent starts); without a
//!    port (`--listen 127.0.0.1:0`, the default) the port of the previous node on this database
//!    is tried first, from its identity file (`<database>.identity`: token and port, mode 0600,
//!    kept across restarts), so that a dashboard left open reconnects to the restarted node;
//! 4. start the runtime (start-up checks, reaping a previous run's agents);
//! 5. write the endpoint file (address, pid, the token; mode 0600) next to the database, and
//!    the identity file (the token is the previous node's, or a fresh one),
//!    after checking that its directory is one clients will trust
//!    ([`endpoint::check_directory`]); while the node serves, the file is looked at every
//!    [`ENDPOINT_CHECK_INTERVAL`] and written again if it was deleted or changed;
//! 6. print one line — or, under `--json`, one JSON object — with the address and the endpoint
//!    file on stdout, then serve.
//!
//! **Shutdown** on the first SIGINT or SIGTERM:
//!
//! 1. remove the endpoint file, so new commands stop coming here (they wait for the database and
//!    then run embedded, instead of reaching a node that is going away);
//! 2. stop accepting connections;
//! 3. `Runtime::shutdown` with [`SHUTDOWN_GRACE`]: no new tells, queued turns are interrupted,
//!    turns in flight get the grace to finish, every agent is stopped gracefully (ARCHITECTURE
//!    guarantee 8: no process of an agent's group is left); requests in flight get their answers;
//! 4. give open HTTP exchanges [`DRAIN_TIMEOUT`] to deliver those answers, then close the rest
//!    (long-lived MCP streams).
//!
//! A second signal during shutdown exits at once: the agents' groups are then killed on drop
//! and by the guardian, as when the node is killed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iris_core::config::Config;
use iris_runtime::Runtime;
use iris_store::{OpenError, Store};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::backend::open_store;
use crate::http::endpoint::{self, Endpoint};
use crate::http::server::{self, NodeInfo, ServerState};
use iris_api::ApiError;
use iris_api::error::{INTERNAL_ERROR, USAGE_ERROR};
use iris_api::{Execute, Service};

use crate::cluster::Cluster;

/// How long each step of stopping gets: turns in flight to finish, then each agent after its
/// stdin closes and after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long open HTTP exchanges get to deliver their answers once the runtime has stopped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a serving node checks that its endpoint file is still there (and still its own),
/// and writes it again if not: a file deleted by a clean-up script would otherwise leave every
/// command waiting for a database the node holds.
pub const ENDPOINT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What the node prints on stdout once it serves (the `--json` form; the text form says the
/// same in one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Started {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its base URL.
    pub url: String,
    /// Its process id.
    pub pid: u32,
    /// Its database file (`None`: in memory).
    pub database: Option<PathBuf>,
    /// Its endpoint file, where clients find the address and token (`None` for an in-memory
    /// database: no other process can use it).
    pub endpoint_file: Option<PathBuf>,
    /// How its agents are contained: `cgroup`, `subreaper` or `process-group`.
    #[serde(default)]
    pub containment: String,
}

/// Runs a node on `config` listening on `listen` until SIGINT or SIGTERM, then shuts down
/// gracefully. `json` selects machine-readable start-up output on stdout.
pub async fn run(config: Config, listen: SocketAddr, json: bool) -> Result<(), ApiError> {
    let mut signals = Signals::new()?;
    let db_path = config.database().path().map(Path::to_path_buf);
    let store = match &db_path {
        Some(path) => match open_store(path).await {
            Ok(store) => store,
            Err(error) => return Err(open_failure(&error, path).await),
        },
        None => Store::in_memory().map_err(|e| ApiError::coded(&e))?,
    };
    let identity = match &db_path {
        Some(path) => endpoint::read_identity(path).await,
        None => None,
    };
    let listener = bind(listen, identity.as_ref()).await?;
    let bound = listener.local_addr().map_err(|e| {
        ApiError::new(
            INTERNAL_ERROR,
            format!("the listening socket has no address: {e}"),
        )
    })?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            addr = %bound,
            "the node listens beyond loopback: requests still need the token, but travel in plain HTTP"
        );
    }
    let runtime = Runtime::start(config, store.clone()).await?;
    let service = Service::new(runtime.clone());
    let cluster = match runtime.config().cluster() {
        Some(_) => match Cluster::start(runtime.config(), service.clone()).await {
            Ok(cluster) => Some(cluster),
            Err(error) => {
                runtime.shutdown(SHUTDOWN_GRACE).await;
                return Err(error);
            }
        },
        None => None,
    };
    let executor = match &cluster {
        Some(cluster) => cluster.executor(service),
        None => Arc::new(service),
    };
    let front = Front {
        executor,
        store,
        cluster: cluster.as_ref().map(Cluster::status_source),
    };
    let result = serve(
        &runtime,
        front,
        Listening {
            listener,
            bound,
            token: identity.map(|i| i.token),
        },
        db_path,
        json,
        &mut signals,
    )
    .await;
    if result.is_err() {
        // A failure before serving (writing the endpoint file, printing): the runtime is up and
        // may have agents; stop them before reporting it.
        runtime.shutdown(SHUTDOWN_GRACE).await;
    }
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    result
}

/// What the HTTP server answers with: where requests run (the runtime, or the cluster's
/// forwarding), the store it reads, and the cluster's status when there is one.
struct Front {
    executor: Arc<dyn Execute>,
    store: Store,
    cluster: Option<crate::cluster::StatusSource>,
}

/// Binds the listening socket: on the previous node's port first when `listen` names none and
/// that port is free, so clients that hold the node's URL find it again.
async fn bind(
    listen: SocketAddr,
    previous: Option<&endpoint::Identity>,
) -> Result<TcpListener, ApiError> {
    if let Some(previous) = previous.filter(|_| listen.port() == 0) {
        let again = SocketAddr::new(listen.ip(), previous.port);
        match TcpListener::bind(again).await {
            Ok(listener) => return Ok(listener),
            Err(error) => {
                tracing::info!(addr = %again, %error, "the previous node's port is taken; listening on a new one");
            }
        }
    }
    TcpListener::bind(listen)
        .await
        .map_err(|e| bind_failure(listen, &e))
}

/// The bound socket, and the token of the previous node on this database, when it kept one.
struct Listening {
    listener: TcpListener,
    bound: SocketAddr,
    token: Option<String>,
}

/// Serves until a signal, then shuts down. `Err` only for failures before serving began (the
/// caller then stops the runtime).
async fn serve(
    runtime: &Runtime,
    front: Front,
    listening: Listening,
    db_path: Option<PathBuf>,
    json: bool,
    signals: &mut Signals,
) -> Result<(), ApiError> {
    let Listening {
        listener,
        bound,
        token,
    } = listening;
    let pid = std::process::id();
    let limits = crate::http::ServeLimits::for_this_process();
    // Reads this process's start time from /proc: a (tiny) blocking read.
    let addr = advertised(bound);
    let mut endpoint = tokio::task::spawn_blocking(move || Endpoint::for_this_process(addr))
        .await
        .map_err(|e| {
            ApiError::new(INTERNAL_ERROR, format!("could not make the endpoint: {e}"))
        })??;
    if let Some(token) = token {
        endpoint.token = token;
    }
    let endpoint_file = match &db_path {
        Some(path) => {
            endpoint::check_directory(path)?;
            let identity = endpoint::Identity {
                token: endpoint.token.clone(),
                port: bound.port(),
            };
            endpoint::write_identity(path, &identity).await?;
            Some(endpoint::write(path, &endpoint).await?)
        }
        None => {
            tracing::warn!(
                "the database is in memory: no endpoint file, so other iris commands cannot use this node"
            );
            None
        }
    };
    let info = Arc::new(NodeInfo {
        pid,
        addr: endpoint.addr,
        database: db_path.clone(),
        endpoint_file: endpoint_file.clone(),
        started: Instant::now(),
    });
    let Front {
        executor,
        store,
        cluster,
    } = front;
    let state = ServerState {
        executor,
        runtime: runtime.clone(),
        store,
        token: Arc::from(endpoint.token.as_str()),
        info,
        limits,
        cluster,
    };
    let started = Started {
        addr: endpoint.addr,
        url: endpoint.url(),
        pid,
        database: db_path.clone(),
        endpoint_file: endpoint_file.clone(),
        containment: runtime.containment().as_str().to_owned(),
    };
    if let Err(error) = announce(&started, json).await {
        if let Some(path) = &db_path {
            let _ = endpoint::remove(path, &endpoint).await;
        }
        return Err(error);
    }
    tracing::info!(
        addr = %endpoint.addr,
        pid,
        max_connections = limits.max_connections,
        database = ?db_path,
        endpoint_file = ?endpoint_file,
        containment = %started.containment,
        "iris node serving"
    );

    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = server::router(state);
    // Owned here: awaited (or aborted) below before `run` returns.
    let mut server = tokio::spawn(async move {
        crate::http::serve(listener, app, limits, async {
            let _ = stopped.await;
        })
        .await;
        Ok::<(), std::io::Error>(())
    });

    // Owned here: aborted below before the file is removed.
    let keeper = db_path
        .clone()
        .map(|path| tokio::spawn(keep_endpoint_file(path, endpoint.clone())));

    let signal = tokio::select! {
        name = signals.next() => name,
        ended = &mut server => {
            // axum's server does not end by itself; if it does, stop as after a signal.
            tracing::error!(outcome = ?ended, "the HTTP server stopped unexpectedly; shutting down");
            "server stop"
        }
    };
    tracing::info!(
        signal,
        "stopping: no new requests; finishing turns in flight"
    );
    if let Some(keeper) = keeper {
        keeper.abort();
        let _ = keeper.await;
    }
    if let Some(path) = &db_path
        && let Err(error) = endpoint::remove(path, &endpoint).await
    {
        tracing::warn!(%error, "could not remove the endpoint file");
    }
    let _ = stop_accepting.send(());
    tokio::select! {
        () = runtime.shutdown(SHUTDOWN_GRACE) => {}
        name = signals.next() => {
            tracing::warn!(signal = name, "second signal: exiting now (agents are killed with the node)");
            server.abort();
            return Ok(());
        }
    }
    match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "the HTTP server failed while stopping"),
        Ok(Err(error)) => tracing::warn!(%error, "the HTTP server task failed"),
        Err(_) => {
            tracing::info!(
                timeout = ?DRAIN_TIMEOUT,
                "closing connections still open after the drain (MCP streams)"
            );
            server.abort();
        }
    }
    tracing::info!("iris node stopped");
    Ok(())
}

/// Writes the endpoint file again whenever it is missing or holds something else than
/// `endpoint` (the node holds the database's lock, so no other node can have written it).
async fn keep_endpoint_file(db_path: PathBuf, endpoint: Endpoint) {
    let mut ticks = tokio::time::interval(ENDPOINT_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ours = matches!(
            endpoint::read(&db_path).await,
            Ok(Some(found)) if endpoint::constant_time_eq(found.token.as_bytes(), endpoint.token.as_bytes())
                && found.addr == endpoint.addr
                && found.pid == endpoint.pid
        );
        if ours {
            continue;
        }
        match endpoint::write(&db_path, &endpoint).await {
            Ok(path) => {
                tracing::warn!(file = %path.display(), "the endpoint file was missing or changed; wrote it again");
            }
            Err(error) => tracing::warn!(%error, "could not write the endpoint file again"),
        }
    }
}

/// The address clients should dial: a wildcard bind (`0.0.0.0`, `::`) is reached through
/// loopback of the same family.
fn advertised(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bound.port())
        }
        _ => bound,
    }
}

/// Prints the start-up line (or JSON object) on stdout, flushed: a script reads it to find the
/// node.
async fn announce(started: &Started, json: bool) -> Result<(), ApiError> {
    let line = if json {
        serde_json::to_string(started).map_err(|e| {
            ApiError::new(
                INTERNAL_ERROR,
                format!("could not encode the start-up line: {e}"),
            )
        })?
    } else {
        let endpoint = started.endpoint_file.as_ref().map_or_else(
            || "no endpoint file (in-memory database)".to_owned(),
            |p| format!("endpoint file {}", p.display()),
        );
        format!(
            "iris node listening on {} (pid {}); {endpoint}; agents contained by {}. Stop it with Ctrl-C or SIGTERM.",
            started.url, started.pid, started.containment
        )
    };
    let mut stdout = tokio::io::stdout();
    let written = async {
        stdout.write_all(line.as_bytes()).await?;
        stdout.write_all(b"\n").await?;
        stdout.flush().await
    }
    .await;
    written.map_err(|e| ApiError::new(INTERNAL_ERROR, format!("could not write to stdout: {e}")))
}

/// Why the node could not open its database; a lock names the node that holds it, if any.
async fn open_failure(error: &OpenError, db_path: &Path) -> ApiError {
    if !matches!(error, OpenError::Locked { .. }) {
        return ApiError::coded(error);
    }
    // An unreadable endpoint file only loses the holder's name from the message.
    let holder = endpoint::read_live(db_path).await.ok().flatten();
    let message = match holder {
        Some(node) => format!(
            "the iris database {} is held by a running iris node (pid {}, listening on {}; endpoint file {}). Only one node may run on a database: use that node (other iris commands already talk to it), stop it first (`kill -TERM {}`), or configure another database for this one",
            db_path.display(),
            node.pid,
            node.addr,
            endpoint::path_for(db_path).display(),
            node.pid,
        ),
        None => format!(
            "the iris database {} is in use by another process, but no running iris node advertises itself in {}: another iris command may be running on it without a node, or a node is still starting. Wait for it, or stop it, then start the node again",
            db_path.display(),
            endpoint::path_for(db_path).display(),
        ),
    };
    ApiError::new(iris_core::ErrorCode::StoreLocked, message)
}

fn bind_failure(listen: SocketAddr, error: &std::io::Error) -> ApiError {
    use std::io::ErrorKind;
    let code = match error.kind() {
        ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable | ErrorKind::PermissionDenied => {
            USAGE_ERROR
        }
        _ => INTERNAL_ERROR,
    };
    ApiError::new(
        code,
        format!(
            "could not listen on {listen}: {error}; choose another address with --listen (127.0.0.1:0 picks a free port)"
        ),
    )
}

/// SIGINT and SIGTERM, taken from their default action (terminating the process at once).
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> Result<Signals, ApiError> {
        let take = |kind: SignalKind, name: &str| {
            signal(kind)
                .map_err(|e| ApiError::new(INTERNAL_ERROR, format!("could not handle {name}: {e}")))
        };
        Ok(Signals {
            interrupt: take(SignalKind::interrupt(), "SIGINT")?,
            terminate: take(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_wildcard_bind_is_advertised_on_loopback() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(advertised(a("0.0.0.0:7419")), a("127.0.0.1:7419"));
        assert_eq!(advertised(a("[::]:7419")), a("[::1]:7419"));
        assert_eq!(advertised(a("127.0.0.1:7419")), a("127.0.0.1:7419"));
        assert_eq!(advertised(a("192.0.2.7:7419")), a("192.0.2.7:7419"));
    }

    #[tokio::test]
    async fn a_lock_without_a_node_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("iris.redb");
        let error = open_failure(&OpenError::Locked { path: db.clone() }, &db).await;
        assert_eq!(error.code().as_str(), "STORE_LOCKED");
        assert_eq!(error.exit_code(), 4);
        assert!(
            error.to_string().contains("no running iris node"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_lock_held_by_a_node_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("iris.redb");
        let node = Endpoint::for_this_process("127.0.0.1:7419".parse().unwrap()).unwrap();
        std::fs::write(endpoint::path_for(&db), serde_json::to_vec(&node).unwrap()).unwrap();
        let error = open_failure(&OpenError::Locked { path: db.clone() }, &db).await;
        let text = error.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:7419"), "{text}");
        assert!(!text.contains(&node.token), "never the token: {text}");
    }

    #[test]
    fn a_taken_port_is_a_usage_error() {
        let error = bind_failure(
            "127.0.0.1:80".parse().unwrap(),
            &std::io::Error::from(std::io::ErrorKind::AddrInUse),
        );
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--listen"), "{error}");
    }
}
