//! # iris
//!
//! A supervisor runtime for long-lived coding-agent sessions: one persistent conversation per
//! ordered pair of teams, with a durable record that survives restarts.
//!
//! This crate re-exports the library crates for embedders:
//!
//! - [`core`] (`iris-core`): team names, session ids, records, validation, transcript paths and
//!   configuration.
//! - [`store`] (`iris-store`): durable redb persistence with a group-commit writer.
//! - [`agent`] (`iris-agent`): agent child processes, the stream-json codec and conversations.
//! - [`runtime`] (`iris-runtime`): the registry, session and process-pool actors behind the
//!   `Runtime` handle: tells, lifecycle operations, the turn ledger, metrics.
//! - [`api`] (`iris-api`): the typed operation set every front end speaks (`Request`, `Reply`,
//!   `ApiError`) and the `Service` that runs it against a `Runtime`; an embedder that wants the
//!   CLI's and the control API's exact answers uses it.
//!
//! The `iris` binary (CLI, node server, MCP) is the `iris-node` crate; see `README.md` and
//! `ARCHITECTURE.md`.
#![deny(missing_docs)]

pub use iris_agent as agent;
pub use iris_api as api;
pub use iris_core as core;
pub use iris_runtime as runtime;
pub use iris_store as store;

pub use iris_core::{
    Coded, ErrorCode, Pair, ProcessState, SessionFilter, SessionId, SessionRecord, SessionStats,
    SessionStatus, TeamName, Timestamp,
};
pub use iris_store::{Store, StoreError};

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
