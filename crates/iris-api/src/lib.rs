//! The iris application layer: the one operation set every front end speaks.
//!
//! - [`Request`]: an operation with every field validated into its domain type
//!   ([`TeamName`](iris_core::TeamName), [`SessionId`](iris_core::SessionId),
//!   [`Wait`](iris_runtime::Wait), …). Built from its wire form [`RawRequest`] once, at the edge.
//! - [`Reply`]: the answer, with enums where there are outcomes ([`TellStatus`],
//!   [`TranscriptOutcome`]).
//! - [`ApiError`]: a stable [`ApiCode`] and a message that says what to do; each code has its
//!   process exit code.
//! - [`Service`]: runs a `Request` against an [`iris_runtime::Runtime`]. [`Execute`] is what
//!   front ends hold, so a node's client and the service are interchangeable behind it.
//!
//! The CLI (clap), the node's HTTP control API, MCP and, later, a node forwarding to the node
//! that owns a pair, all build a `Request` and render a `Reply`. The JSON of both is the
//! control API's contract.
#![deny(missing_docs)]

pub mod error;
pub mod reply;
pub mod request;
pub mod service;
pub mod wire;

pub use error::{ApiCode, ApiError, ApiErrorBody};
pub use reply::{
    CancelReply, ClusterSession, ClusterSessionsReply, CountersOf, DeleteReply, PairReply, Reply,
    StatsReply, StatusReply, TeamRow, TellReply, TellStatus, TranscriptOutcome, UnavailableNode,
    WakeAllEntry,
};
pub use request::{Request, RequestKind, SessionTarget};
pub use service::{DEFAULT_REPORT_LIMIT, Execute, Executing, Service};
pub use wire::{RawRequest, RawSessionTarget};
