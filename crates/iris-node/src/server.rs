//! The node's HTTP server (axum): control API, MCP, metrics, health, all behind the token.
