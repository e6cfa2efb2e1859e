//! Where commands run: in this process (the embedded default), or in the `iris node` that holds
//! the database (found through its endpoint file).

use std::time::Duration;

use iris_core::config::{Config, DatabaseLocation};
use iris_runtime::Runtime;
use iris_store::Store;

use crate::api::{ApiError, Reply, Request};
use crate::client::Client;
use crate::service::Service;

/// How long an embedded runtime gives its agents to stop when the command is done.
const EMBEDDED_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
        // TODO(node): look for a live endpoint file next to the database first.
        let store = match config.database() {
            DatabaseLocation::File(path) => Store::open(path),
            DatabaseLocation::InMemory => Store::in_memory(),
        }
        .map_err(|e| {
            use iris_core::Coded;
            ApiError::new(e.code().as_str(), e.to_string())
        })?;
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

    /// Ends the session with the backend: an embedded runtime stops its agents gracefully.
    pub async fn close(self) {
        if let Backend::Embedded(service) = self {
            service.runtime().shutdown(EMBEDDED_SHUTDOWN_GRACE).await;
        }
    }
}
