//! The client side of a running node's control API.

use crate::api::{ApiError, Reply, Request};
use crate::endpoint::Endpoint;

/// Talks to one node, with its token.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
}

impl Client {
    /// A client for the node at `endpoint`.
    pub fn new(endpoint: Endpoint) -> Client {
        Client { endpoint }
    }

    /// Sends one request and returns the node's reply.
    pub async fn execute(&self, request: Request) -> Result<Reply, ApiError> {
        let _ = (request, &self.endpoint);
        Err(ApiError::new(
            crate::error::NODE_UNAVAILABLE,
            "not implemented yet",
        ))
    }
}
