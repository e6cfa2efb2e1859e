//! Where commands run: in this process (the embedded default), or in the `iris node` that holds
//! the database (found through its endpoint file).
//!
//! [`Backend::connect`] decides, for a database file:
//!
//! 1. a live endpoint file next to the database ([`crate::http::endpoint::read_live`]) → the node
//!    ([`Backend::Remote`]);
//! 2. else open the database and start a runtime on it ([`Backend::Embedded`]); a stale or
//!    unreadable endpoint file is removed then (holding the database proves no node uses it);
//! 3. the database is locked but no live node advertises itself: a node may be starting (it
//!    writes its endpoint file once it listens) or another embedded command runs. Both end
//!    soon, so this retries 1 and 2 for up to [`LOCK_WAIT`], then fails with `STORE_LOCKED`
//!    (exit 4) saying what holds the database and what to do (or, if the endpoint file is
//!    unreadable, with `NODE_UNAVAILABLE` naming the file).
//!
//! An in-memory database is private to its process, so it is always embedded.

use std::path::Path;
use std::time::Duration;

use iris_core::config::{Config, DatabaseLocation};
use iris_runtime::Runtime;
use iris_store::{OpenError, Store};

use crate::http::client::Client;
use crate::http::endpoint;
use iris_api::{ApiError, Execute, Executing, Reply, Request, Service};

/// How long an embedded runtime gives its agents to stop when the command is done.
const EMBEDDED_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long [`Backend::connect`] waits for a locked database to become usable (its node to
/// advertise itself, or the embedded command holding it to finish).
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How often it looks again meanwhile.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// The runtime commands go to.
#[derive(Debug)]
pub enum Backend {
    /// A runtime in this process, on the store it opened.
    Embedded(Service),
    /// A running node.
    Remote(Client),
}

impl Backend {
    /// The node that holds `config`'s database if one runs, else an embedded runtime on it.
    pub async fn connect(config: &Config) -> Result<Backend, ApiError> {
        let db_path = match config.database() {
            DatabaseLocation::File(path) => path.clone(),
            DatabaseLocation::InMemory => {
                let store = Store::in_memory().map_err(|e| ApiError::coded(&e))?;
                return Backend::embedded(config, store).await;
            }
        };
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            // An unreadable endpoint file matters only if the database is locked: whoever can
            // open the database knows no node runs on it, and removes the file.
            let unusable = match endpoint::read_live(&db_path).await {
                Ok(Some(found)) => return Backend::remote(found, &db_path),
                Ok(None) => None,
                Err(error) => Some(error),
            };
            match open_store(&db_path).await {
                Ok(store) => {
                    // We hold the database now, so no node runs on it: an endpoint file left
                    // by a killed node is stale, and would only mislead.
                    if let Err(error) = endpoint::remove_any(&db_path).await {
                        tracing::warn!(%error, "could not remove a stale node endpoint file");
                    }
                    return Backend::embedded(config, store).await;
                }
                Err(OpenError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(OpenError::Locked { .. }) => {
                    return Err(unusable.unwrap_or_else(|| locked_without_node(&db_path)));
                }
                Err(other) => return Err(ApiError::coded(&other)),
            }
        }
    }

    /// A client of the node advertised next to `db_path`.
    fn remote(found: endpoint::Endpoint, db_path: &Path) -> Result<Backend, ApiError> {
        tracing::debug!(addr = %found.addr, pid = found.pid, "talking to the running iris node");
        let client = Client::new(found, Some(endpoint::path_for(db_path)))?;
        Ok(Backend::Remote(client))
    }

    async fn embedded(config: &Config, store: Store) -> Result<Backend, ApiError> {
        let runtime = Runtime::start(config.clone(), store).await?;
        Ok(Backend::Embedded(Service::new(runtime)))
    }

    /// Runs one request.
    pub async fn execute(&self, request: Request) -> Result<Reply, ApiError> {
        match self {
            Backend::Embedded(service) => service.execute(request).await,
            Backend::Remote(client) => client.execute(request).await,
        }
    }

    /// A command's reply as its user should read it. A command that runs its own runtime (no
    /// node runs) reports that runtime's counters, which count only what the command did: the
    /// reply says so. (A node serves through an embedded backend too, but never calls this.)
    pub fn for_this_command(&self, reply: Reply) -> Reply {
        match (self, reply) {
            (Backend::Embedded(_), Reply::Stats(mut stats)) => {
                stats.counters_of = iris_api::CountersOf::ThisCommand;
                Reply::Stats(stats)
            }
            (_, reply) => reply,
        }
    }

    /// Ends the session with the backend: an embedded runtime stops its agents gracefully.
    pub async fn close(self) {
        if let Backend::Embedded(service) = self {
            service.runtime().shutdown(EMBEDDED_SHUTDOWN_GRACE).await;
        }
    }
}

impl Execute for Backend {
    fn execute(&self, request: Request) -> Executing<'_> {
        Box::pin(Backend::execute(self, request))
    }
}

/// Opens the database file on a blocking thread (opening may repair a file after a crash).
pub async fn open_store(path: &Path) -> Result<Store, OpenError> {
    let owned = path.to_path_buf();
    match tokio::task::spawn_blocking(move || Store::open(owned)).await {
        Ok(result) => result,
        Err(join) => Err(OpenError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("the task opening the store failed: {join}")),
        }),
    }
}

/// The database is locked and no live node advertises itself.
fn locked_without_node(db_path: &Path) -> ApiError {
    ApiError::new(
        iris_core::ErrorCode::StoreLocked,
        format!(
            "the iris database {} is in use by another process, and no running `iris node` advertises itself in {} (waited {}). Another iris command may be running on it without a node (commands that run without a node take turns on the database): wait for it to finish, or start `iris node` so that commands can share the database. If no iris process runs, check what holds the file (`fuser {}`)",
            db_path.display(),
            endpoint::path_for(db_path).display(),
            humantime::format_duration(LOCK_WAIT),
            db_path.display(),
        ),
    )
}
