//! The `iris` binary's library: the command line, the embedded default, the node server (control
//! API, MCP, metrics) and the client that talks to a running node.
//!
//! Every command is an [`iris_api::Request`]; [`iris_api::Service`] runs one against a
//! [`iris_runtime::Runtime`], in this process (the embedded default) or inside `iris node`,
//! which serves the same requests over HTTP ([`server`]) and MCP ([`mcp`]). The CLI picks its
//! [`backend::Backend`]: the node, if one holds the store, else an embedded runtime.
#![deny(missing_docs)]

pub mod backend;
pub mod cli;
pub mod client;
pub mod commands;
pub mod discovery;
pub mod endpoint;
pub mod http;
pub mod mcp;
pub mod node;
pub mod output;
pub mod prometheus;
pub mod resolve;
pub mod server;
