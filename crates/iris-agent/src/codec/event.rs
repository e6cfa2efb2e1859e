//! The typed stdout events of the CLI's stream-json output.
//!
//! Decoding is tolerant by design, because CLI versions differ: unknown fields are ignored,
//! unknown `type`s become [`Event::Unknown`], and an event of a known `type` whose fields do not
//! fit the typed shape also becomes [`Event::Unknown`] (see [`Event::from_value`]). Every type
//! here also implements `Serialize`, producing the wire shape it was decoded from (minus the
//! ignored fields), so a decoded event can be encoded and decoded again to an equal value.

use std::sync::Arc;

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A decoded stdout line: the typed event and the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    /// The typed event.
    pub event: Event,
    /// The JSON line as the CLI printed it (without the newline), for reports and logs.
    pub raw: Arc<str>,
}

/// One stdout event, chosen by its `type` field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// `type: "system"`: session metadata (`init`), resets, retries, background tasks.
    System(SystemEvent),
    /// `type: "assistant"`: a whole (or partial, keyed by `message.id`) model message.
    Assistant(AssistantEvent),
    /// `type: "user"`: tool results, or user input echoed back.
    User(UserEvent),
    /// `type: "stream_event"`: a raw API streaming event (`--include-partial-messages`).
    StreamEvent(StreamEvent),
    /// `type: "result"`: the end of a turn; exactly one per turn.
    Result(ResultEvent),
    /// `type: "control_request"`: the CLI asks the host something (a permission, a hook).
    ControlRequest(ControlRequest),
    /// `type: "control_response"`: the CLI answers a request the host sent.
    ControlResponse(ControlResponse),
    /// `type: "control_cancel_request"`: the CLI abandons a request it sent.
    ControlCancelRequest {
        /// The request being abandoned.
        request_id: String,
    },
    /// Any other `type`, a missing `type`, or a known `type` whose fields did not fit the typed
    /// shape. The whole object, passed through untouched.
    #[serde(untagged)]
    Unknown(Value),
}

impl Event {
    /// Decodes a JSON value. Never fails: what does not fit a typed shape is
    /// [`Event::Unknown`]. Use [`Event::try_from_value`] to learn whether that happened.
    pub fn from_value(value: Value) -> Event {
        Self::try_from_value(value).0
    }

    /// Decodes a JSON value, also returning why a value with a known `type` did not fit its
    /// typed shape (in which case the event is [`Event::Unknown`]).
    pub fn try_from_value(value: Value) -> (Event, Option<serde_json::Error>) {
        let kind = value.get("type").and_then(Value::as_str);
        let decoded = match kind {
            Some("system") => SystemEvent::from_json(&value).map(Event::System),
            Some("assistant") => typed(&value).map(Event::Assistant),
            Some("user") => typed(&value).map(Event::User),
            Some("stream_event") => typed(&value).map(Event::StreamEvent),
            Some("result") => typed(&value).map(Event::Result),
            Some("control_request") => typed(&value).map(Event::ControlRequest),
            Some("control_response") => typed(&value).map(Event::ControlResponse),
            Some("control_cancel_request") => {
                typed::<CancelWire>(&value).map(|wire| Event::ControlCancelRequest {
                    request_id: wire.request_id,
                })
            }
            _ => return (Event::Unknown(value), None),
        };
        match decoded {
            Ok(event) => (event, None),
            Err(error) => (Event::Unknown(value), Some(error)),
        }
    }

    /// The `type` this event had on the wire (for `Unknown`, its `type` field if it has one).
    pub fn kind(&self) -> Option<&str> {
        Some(match self {
            Event::System(_) => "system",
            Event::Assistant(_) => "assistant",
            Event::User(_) => "user",
            Event::StreamEvent(_) => "stream_event",
            Event::Result(_) => "result",
            Event::ControlRequest(_) => "control_request",
            Event::ControlResponse(_) => "control_response",
            Event::ControlCancelRequest { .. } => "control_cancel_request",
            Event::Unknown(value) => return value.get("type").and_then(Value::as_str),
        })
    }

    /// The session id the event reports, if it has one.
    ///
    /// For [`Event::Unknown`] this is its `session_id` field when that is a string, so a
    /// session id is not lost when an event's shape changes in a new CLI version.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Event::System(system) => system.session_id(),
            Event::Assistant(event) => event.session_id.as_deref(),
            Event::User(event) => event.session_id.as_deref(),
            Event::StreamEvent(event) => event.session_id.as_deref(),
            Event::Result(event) => Some(&event.session_id),
            Event::ControlRequest(_)
            | Event::ControlResponse(_)
            | Event::ControlCancelRequest { .. } => None,
            Event::Unknown(value) => value.get("session_id").and_then(Value::as_str),
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    /// Deserializes any JSON object; see [`Event::from_value`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Event::from_value)
    }
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

#[derive(Deserialize)]
struct CancelWire {
    request_id: String,
}

/// A `system` event, by `subtype`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub enum SystemEvent {
    /// `subtype: "init"`: the session's id, working directory, tools and model.
    Init(InitEvent),
    /// `subtype: "conversation_reset"`: after `/clear` the conversation continues under a new id.
    ConversationReset(ConversationReset),
    /// Any other subtype: `compact_boundary`, `api_retry`, `task_*`, `hook_*`, … with all its
    /// fields.
    #[serde(untagged)]
    Other(OtherSystemEvent),
}

impl<'de> Deserialize<'de> for SystemEvent {
    /// A known subtype must fit its typed shape (an `init` without a `session_id` is an error,
    /// not [`SystemEvent::Other`]); any other string subtype is [`SystemEvent::Other`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        SystemEvent::from_json(&value).map_err(de::Error::custom)
    }
}

impl SystemEvent {
    fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        match value.get("subtype").and_then(Value::as_str) {
            Some("init") => InitEvent::deserialize(value).map(SystemEvent::Init),
            Some("conversation_reset") => {
                ConversationReset::deserialize(value).map(SystemEvent::ConversationReset)
            }
            Some(_) => OtherSystemEvent::deserialize(value).map(SystemEvent::Other),
            None => Err(de::Error::missing_field("subtype")),
        }
    }

    /// The event's `subtype`.
    pub fn subtype(&self) -> &str {
        match self {
            SystemEvent::Init(_) => "init",
            SystemEvent::ConversationReset(_) => "conversation_reset",
            SystemEvent::Other(other) => &other.subtype,
        }
    }

    /// The event's `session_id`, if it has one.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            SystemEvent::Init(init) => Some(&init.session_id),
            SystemEvent::ConversationReset(reset) => reset.session_id.as_deref(),
            SystemEvent::Other(other) => other.session_id.as_deref(),
        }
    }
}

/// `system`/`init`: what the CLI reports when a query starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitEvent {
    /// The conversation's id: persist any change.
    pub session_id: String,
    /// The event's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The working directory, absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The tools the model may call, MCP tools included (`mcp__server__tool`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// The MCP servers and their connection status.
    #[serde(default)]
    pub mcp_servers: Vec<McpServerStatus>,
    /// The model in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The permission mode (`default`, `acceptEdits`, `plan`, `bypassPermissions`, …).
    #[serde(
        default,
        rename = "permissionMode",
        skip_serializing_if = "Option::is_none"
    )]
    pub permission_mode: Option<String>,
    /// Where the API key came from.
    #[serde(
        default,
        rename = "apiKeySource",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key_source: Option<String>,
    /// The CLI's version, on newer builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_code_version: Option<String>,
}

/// One MCP server in an `init` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerStatus {
    /// The server's configured name.
    pub name: String,
    /// `connected`, `failed`, `pending`, …
    pub status: String,
}

/// `system`/`conversation_reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationReset {
    /// The id the conversation had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The id the conversation continues under: persist it.
    pub new_conversation_id: String,
}

/// A `system` event of a subtype without its own type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherSystemEvent {
    /// The subtype, e.g. `compact_boundary` or `api_retry`.
    pub subtype: String,
    /// The event's `session_id`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Every other field of the event (not `type`, `subtype` or `session_id`).
    #[serde(flatten, deserialize_with = "fields_except_type")]
    pub fields: Map<String, Value>,
}

/// Collects the remaining fields, minus the `type` tag that the enclosing [`Event`] owns.
fn fields_except_type<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    let mut fields = Map::deserialize(deserializer)?;
    fields.remove("type");
    Ok(fields)
}

/// An `assistant` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantEvent {
    /// The session the message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The event's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Non-null for a subagent's traffic: the tool use that started the subagent.
    #[serde(default)]
    pub parent_tool_use_id: Option<String>,
    /// The model's message.
    pub message: AssistantMessage,
}

impl AssistantEvent {
    /// The text of all the message's text blocks, concatenated in order.
    pub fn text(&self) -> String {
        self.message.text()
    }
}

/// The API message inside an `assistant` event. The CLI may split one API message across
/// several events with the same [`id`](Self::id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// The API message id (`msg_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The model that wrote it.
    pub model: String,
    /// Always `assistant`.
    #[serde(default = "assistant_role")]
    pub role: String,
    /// `end_turn`, `tool_use`, … or `null` while streaming.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Token usage of the API call, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The content blocks.
    pub content: Vec<ContentBlock>,
}

fn assistant_role() -> String {
    "assistant".to_owned()
}

impl AssistantMessage {
    /// The text of each text block, in order.
    pub fn text_blocks(&self) -> impl Iterator<Item = &str> {
        self.content.iter().filter_map(|block| match block {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
    }

    /// The text of all text blocks, concatenated in order.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tool calls the message opens, as `(tool use id, tool name)`, in order. Each stays
    /// open until a later `user` event carries its result ([`UserEvent::tool_result_ids`]).
    pub fn tool_uses(&self) -> impl Iterator<Item = (&str, &str)> {
        self.content.iter().filter_map(|block| match block {
            ContentBlock::ToolUse { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
    }
}

/// A content block of an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text for the reader.
    Text {
        /// The text.
        text: String,
    },
    /// The model's reasoning.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// The signature that lets the API verify the block.
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A tool call.
    ToolUse {
        /// The tool use id (`toolu_…`), which its result refers to.
        id: String,
        /// The tool's name.
        name: String,
        /// The tool's input.
        input: Value,
    },
    /// Any other block (`redacted_thinking`, `server_tool_use`, …), or a known block whose
    /// fields did not fit.
    #[serde(untagged)]
    Other(Value),
}

impl<'de> Deserialize<'de> for ContentBlock {
    /// Never fails on a JSON value: what does not fit is [`ContentBlock::Other`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(ContentBlock::from_value)
    }
}

impl ContentBlock {
    /// Decodes a block, moving its strings out rather than copying them.
    pub fn from_value(value: Value) -> ContentBlock {
        let Value::Object(mut fields) = value else {
            return ContentBlock::Other(value);
        };
        let take_string = |fields: &mut Map<String, Value>, key: &str| match fields.remove(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                fields.insert(key.to_owned(), other);
                Err(())
            }
            None => Err(()),
        };
        let kind = fields
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let decoded = match kind.as_deref() {
            Some("text") => {
                take_string(&mut fields, "text").map(|text| ContentBlock::Text { text })
            }
            Some("thinking") => match fields.get("signature") {
                None | Some(Value::Null | Value::String(_)) => take_string(&mut fields, "thinking")
                    .map(|thinking| {
                        let signature = match fields.remove("signature") {
                            Some(Value::String(s)) => Some(s),
                            _ => None,
                        };
                        ContentBlock::Thinking {
                            thinking,
                            signature,
                        }
                    }),
                Some(_) => Err(()),
            },
            Some("tool_use") => {
                let fits = matches!(fields.get("id"), Some(Value::String(_)))
                    && matches!(fields.get("name"), Some(Value::String(_)))
                    && fields.contains_key("input");
                if fits {
                    match (
                        fields.remove("id"),
                        fields.remove("name"),
                        fields.remove("input"),
                    ) {
                        (Some(Value::String(id)), Some(Value::String(name)), Some(input)) => {
                            Ok(ContentBlock::ToolUse { id, name, input })
                        }
                        _ => Err(()),
                    }
                } else {
                    Err(())
                }
            }
            _ => Err(()),
        };
        decoded.unwrap_or(ContentBlock::Other(Value::Object(fields)))
    }
}

/// A `user` event: tool results, or replayed input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEvent {
    /// The session the message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The event's uuid (the delivery ack with `--replay-user-messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Non-null for a subagent's traffic.
    #[serde(default)]
    pub parent_tool_use_id: Option<String>,
    /// The message, as sent (`role`, `content`).
    pub message: Value,
}

impl UserEvent {
    /// The tool use ids whose results this message carries (its `tool_result` content blocks):
    /// the tool calls it closes.
    pub fn tool_result_ids(&self) -> impl Iterator<Item = &str> {
        self.message
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
            .filter_map(|block| block.get("tool_use_id").and_then(Value::as_str))
    }
}

/// A `stream_event`: one raw API streaming event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// The session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The event's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Non-null for a subagent's traffic.
    #[serde(default)]
    pub parent_tool_use_id: Option<String>,
    /// The API event, e.g. `content_block_delta` with a `text_delta`.
    pub event: Value,
}

impl StreamEvent {
    /// The text of a `content_block_delta` carrying a `text_delta`: the next piece of the
    /// model's text as it streams.
    pub fn text_delta(&self) -> Option<&str> {
        if self.event.get("type").and_then(Value::as_str) != Some("content_block_delta") {
            return None;
        }
        let delta = self.event.get("delta")?;
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => delta.get("text").and_then(Value::as_str),
            _ => None,
        }
    }

    /// Whether this starts a new text content block (`content_block_start` of type `text`).
    pub fn starts_text_block(&self) -> bool {
        self.event.get("type").and_then(Value::as_str) == Some("content_block_start")
            && self
                .event
                .get("content_block")
                .and_then(|block| block.get("type"))
                .and_then(Value::as_str)
                == Some("text")
    }
}

/// A `result` event: how a turn ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEvent {
    /// `success`, `error_max_turns`, `error_during_execution`, `error_max_budget_usd`, …
    pub subtype: String,
    /// Whether the turn failed; a failed API call has `subtype: "success"` and this set.
    #[serde(default)]
    pub is_error: bool,
    /// The final text of the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The conversation's id: persist any change.
    pub session_id: String,
    /// The event's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// What the agent *process* has cost so far, in US dollars: a running total over every
    /// turn it ran (the turn's own cost is the difference from the previous result). `None`
    /// when missing or not a number.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_cost_usd: Option<f64>,
    /// The turn's own token usage. `None` when missing or malformed.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage: Option<Usage>,
    /// Wall time of the turn, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
    /// Time spent in API calls, in milliseconds.
    #[serde(default)]
    pub duration_api_ms: u64,
    /// Agentic turns taken.
    #[serde(default)]
    pub num_turns: u32,
    /// The HTTP status of a failed API call (CLI ≥ 2.1.110).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_error_status: Option<u16>,
    /// The last stop reason (`end_turn`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Why the turn ended: `completed`, `max_turns`, `aborted_streaming`, `aborted_tools`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_reason: Option<String>,
    /// The error messages of a failed turn (e.g. "No conversation found with session ID: …").
    /// Entries that are not strings are dropped.
    #[serde(
        default,
        deserialize_with = "strings_only",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub errors: Vec<String>,
}

/// A field that decodes to `None` when it does not fit its type, so one odd field never turns a
/// whole `result` into [`Event::Unknown`] (and the turn into a stall).
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).ok())
}

/// A list of strings; anything else in it (or a non-list) is dropped.
fn strings_only<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

impl ResultEvent {
    /// Whether the turn failed: `is_error` is set, or the subtype is not `success`.
    pub fn is_failure(&self) -> bool {
        self.is_error || self.subtype != "success"
    }
}

/// Token usage. Missing or `null` counts are 0; other fields of the API's usage are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cache_read_input_tokens: u64,
}

fn null_as_zero<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(0))
}

/// A `control_request` from the CLI: it waits for a `control_response` with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// The id to answer with.
    pub request_id: String,
    /// What is asked.
    pub request: ControlRequestBody,
}

/// The body of a [`ControlRequest`], by `subtype`.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlRequestBody {
    /// `can_use_tool`: may the model run this tool with this input? Answer with a
    /// [`PermissionDecision`](super::PermissionDecision).
    CanUseTool {
        /// The tool's name.
        tool_name: String,
        /// The tool's input.
        input: Value,
        /// Rule updates the CLI suggests for "always allow".
        permission_suggestions: Option<Value>,
        /// The tool use being asked about.
        tool_use_id: Option<String>,
    },
    /// Any other subtype (`hook_callback`, `mcp_message`, …), or a `can_use_tool` whose fields
    /// did not fit. Answer it (with an error if unsupported) so the CLI does not wait.
    Other {
        /// The subtype (empty if the body had none).
        subtype: String,
        /// The whole body, `subtype` included.
        raw: Value,
    },
}

impl ControlRequestBody {
    /// The body's `subtype`.
    pub fn subtype(&self) -> &str {
        match self {
            ControlRequestBody::CanUseTool { .. } => "can_use_tool",
            ControlRequestBody::Other { subtype, .. } => subtype,
        }
    }
}

#[derive(Deserialize)]
struct CanUseToolWire {
    tool_name: String,
    input: Value,
    #[serde(default)]
    permission_suggestions: Option<Value>,
    #[serde(default)]
    tool_use_id: Option<String>,
}

#[derive(Serialize)]
#[serde(tag = "subtype", rename = "can_use_tool")]
struct CanUseToolRef<'a> {
    tool_name: &'a str,
    input: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    permission_suggestions: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_use_id: Option<&'a str>,
}

impl Serialize for ControlRequestBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ControlRequestBody::CanUseTool {
                tool_name,
                input,
                permission_suggestions,
                tool_use_id,
            } => CanUseToolRef {
                tool_name,
                input,
                permission_suggestions: permission_suggestions.as_ref(),
                tool_use_id: tool_use_id.as_deref(),
            }
            .serialize(serializer),
            ControlRequestBody::Other { raw, .. } => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ControlRequestBody {
    /// Accepts any JSON object; a body that fits no typed shape is [`ControlRequestBody::Other`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        if !raw.is_object() {
            return Err(de::Error::invalid_type(
                de::Unexpected::Other("a non-object control request body"),
                &"a JSON object",
            ));
        }
        let subtype = raw
            .get("subtype")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if subtype == "can_use_tool"
            && let Ok(wire) = CanUseToolWire::deserialize(&raw)
        {
            return Ok(ControlRequestBody::CanUseTool {
                tool_name: wire.tool_name,
                input: wire.input,
                permission_suggestions: wire.permission_suggestions,
                tool_use_id: wire.tool_use_id,
            });
        }
        Ok(ControlRequestBody::Other { subtype, raw })
    }
}

/// Whether a control request succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlResponseSubtype {
    /// The request was carried out; see [`ControlResponse::response`].
    Success,
    /// The request failed; see [`ControlResponse::error`].
    Error,
}

/// A `control_response` from the CLI, answering a request the host sent. On the wire its fields
/// are nested in a `response` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ControlResponseWire", into = "ControlResponseWire")]
pub struct ControlResponse {
    /// `success` or `error`.
    pub subtype: ControlResponseSubtype,
    /// The id of the request answered.
    pub request_id: String,
    /// The result of a successful request.
    pub response: Option<Value>,
    /// Why the request failed.
    pub error: Option<String>,
}

impl ControlResponse {
    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        self.subtype == ControlResponseSubtype::Success
    }
}

#[derive(Serialize, Deserialize)]
struct ControlResponseWire {
    response: ControlResponseInner,
}

#[derive(Serialize, Deserialize)]
struct ControlResponseInner {
    subtype: ControlResponseSubtype,
    request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<ControlResponseWire> for ControlResponse {
    fn from(wire: ControlResponseWire) -> Self {
        let inner = wire.response;
        ControlResponse {
            subtype: inner.subtype,
            request_id: inner.request_id,
            response: inner.response,
            error: inner.error,
        }
    }
}

impl From<ControlResponse> for ControlResponseWire {
    fn from(response: ControlResponse) -> Self {
        ControlResponseWire {
            response: ControlResponseInner {
                subtype: response.subtype,
                request_id: response.request_id,
                response: response.response,
                error: response.error,
            },
        }
    }
}
