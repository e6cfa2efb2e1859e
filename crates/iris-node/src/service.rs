//! Runs [`Request`]s against a [`Runtime`]: the one place a command's meaning lives, shared by
//! the embedded CLI, the node's control API and the MCP tools.

use iris_runtime::Runtime;

use crate::api::{ApiError, Reply, Request};

/// Executes requests against a runtime. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    runtime: Runtime,
}

impl Service {
    /// A service over `runtime`.
    pub fn new(runtime: Runtime) -> Service {
        Service { runtime }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Runs one request.
    pub async fn execute(&self, request: Request) -> Result<Reply, ApiError> {
        let _ = request;
        Err(ApiError::new(
            crate::error::INTERNAL_ERROR,
            "not implemented yet",
        ))
    }
}
