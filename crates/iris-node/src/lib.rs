//! The `iris` binary's library: the front ends over the application layer ([`iris_api`]).
//!
//! - [`cli`]: the command line (clap → [`iris_api::Request`] → a [`backend::Backend`] → what it
//!   prints).
//! - [`http`]: the node's HTTP server, its accept loop, the client of a running node, the
//!   endpoint file and the `/metrics` text.
//! - [`mcp`]: the MCP tools, over stdio or mounted in the node's HTTP server.
//! - [`backend`]: where a command runs: the running node if one holds the database, else a
//!   runtime embedded in the command.
//! - [`cluster`]: nodes on several machines, each pair run by the node that hosts its receiving
//!   team.
//! - [`node`]: `iris node`, the long-running process that serves all of it.
#![deny(missing_docs)]

pub mod backend;
pub mod cli;
pub mod cluster;
pub mod http;
pub mod mcp;
pub mod node;
