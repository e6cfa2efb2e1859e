//! The stream-json codec: the CLI's stdout framed into lines and decoded into typed events, and
//! the stdin messages the host sends.
//!
//! - [`LineFramer`]: reassembles lines from chunks of any size, with a bounded line length
//!   ([`DEFAULT_MAX_LINE`]); an over-long line is a fatal [`FrameError::LineTooLong`].
//! - [`decode_line`] and [`Decoder`]: blank lines and lines not starting with `{` are skipped
//!   and counted ([`DecodeStats`]); a `{` line that is not JSON is a
//!   [`CodecError::Malformed`]; a JSON object becomes an [`Event`] by its `type`. Unknown types,
//!   and known types of an unexpected shape, pass through as [`Event::Unknown`]: CLI versions
//!   differ, and an event the host does not understand is never fatal.
//! - [`user_message`], [`control_request`], [`control_response_success`],
//!   [`control_response_error`] and [`permission_response`]: the stdin lines, built with
//!   `serde_json` so any user text is carried exactly; [`RequestIds`] names host requests.
//!
//! The wire shapes are those of `shared/reference/claude-cli-protocol.md` §1.3 (stdout) and §1.4
//! (stdin).

mod decoder;
mod encode;
mod event;
mod framer;

pub use decoder::{CodecError, DecodeStats, Decoder, LINE_PREFIX_CHARS, READ_CHUNK, decode_line};
pub use encode::{
    HostRequest, PermissionDecision, RequestIds, control_request, control_response_error,
    control_response_success, permission_response, user_message,
};
pub use event::{
    AssistantEvent, AssistantMessage, ContentBlock, ControlRequest, ControlRequestBody,
    ControlResponse, ControlResponseSubtype, ConversationReset, DecodedEvent, Event, InitEvent,
    McpServerStatus, OtherSystemEvent, ResultEvent, StreamEvent, SystemEvent, Usage, UserEvent,
};
pub use framer::{DEFAULT_MAX_LINE, FrameError, LineFramer, TruncatedTail};
