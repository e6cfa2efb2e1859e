//! The stdin messages the host sends to the CLI, one JSON object per line.
//!
//! Every message is built from typed structs and serialized with `serde_json`, so user text is
//! escaped correctly whatever it contains. Each function returns the line with its `\n`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;

/// A request the host sends to the CLI in a `control_request`; the CLI answers each with a
/// `control_response` carrying the same request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostRequest {
    /// The handshake: sent first, before any user message; costs no model call.
    Initialize,
    /// Interrupt the running turn. The turn still ends with a `result`.
    Interrupt,
    /// Change the permission mode of the live process.
    SetPermissionMode {
        /// `default`, `acceptEdits`, `plan`, `bypassPermissions`, …
        mode: String,
    },
}

/// The host's answer to a `can_use_tool` control request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "behavior", rename_all = "snake_case")]
pub enum PermissionDecision {
    /// Let the tool run, with this input (usually the input the CLI sent).
    Allow {
        /// The input the tool runs with.
        #[serde(rename = "updatedInput")]
        updated_input: Value,
    },
    /// Refuse the tool.
    Deny {
        /// Why, shown to the model.
        message: String,
        /// Whether to interrupt the turn as well.
        interrupt: bool,
    },
}

impl PermissionDecision {
    /// The decision as the `response` value of a success `control_response`:
    /// `{"behavior":"allow","updatedInput":…}` or `{"behavior":"deny","message":…,"interrupt":…}`.
    pub fn to_value(&self) -> Value {
        match self {
            PermissionDecision::Allow { updated_input } => {
                let mut map = serde_json::Map::new();
                map.insert("behavior".to_owned(), Value::from("allow"));
                map.insert("updatedInput".to_owned(), updated_input.clone());
                Value::Object(map)
            }
            PermissionDecision::Deny { message, interrupt } => {
                let mut map = serde_json::Map::new();
                map.insert("behavior".to_owned(), Value::from("deny"));
                map.insert("message".to_owned(), Value::from(message.as_str()));
                map.insert("interrupt".to_owned(), Value::Bool(*interrupt));
                Value::Object(map)
            }
        }
    }
}

#[derive(Serialize)]
struct UserLine<'a> {
    r#type: &'static str,
    message: UserLineMessage<'a>,
    parent_tool_use_id: Option<&'a str>,
}

#[derive(Serialize)]
struct UserLineMessage<'a> {
    role: &'static str,
    content: [TextBlock<'a>; 1],
}

#[derive(Serialize)]
struct TextBlock<'a> {
    r#type: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct ControlRequestLine<'a> {
    r#type: &'static str,
    request_id: &'a str,
    request: &'a HostRequest,
}

#[derive(Serialize)]
struct ControlResponseLine<'a, T: Serialize> {
    r#type: &'static str,
    response: ControlResponseBody<'a, T>,
}

#[derive(Serialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
enum ControlResponseBody<'a, T: Serialize> {
    Success {
        request_id: &'a str,
        response: &'a T,
    },
    Error {
        request_id: &'a str,
        error: &'a str,
    },
}

fn to_line<T: Serialize>(message: &T) -> String {
    let mut line = match serde_json::to_string(message) {
        Ok(json) => json,
        // Every message here is made of strings, booleans and `Value`s (whose map keys are
        // strings), and serializing those cannot fail.
        Err(error) => unreachable!("a stdin message failed to serialize: {error}"),
    };
    line.push('\n');
    line
}

/// A user turn: `{"type":"user","message":{"role":"user","content":[{"type":"text","text":…}]},"parent_tool_use_id":null}`.
pub fn user_message(text: &str) -> String {
    to_line(&UserLine {
        r#type: "user",
        message: UserLineMessage {
            role: "user",
            content: [TextBlock {
                r#type: "text",
                text,
            }],
        },
        parent_tool_use_id: None,
    })
}

/// A host-initiated control request:
/// `{"type":"control_request","request_id":…,"request":{"subtype":"initialize"}}` and so on.
pub fn control_request(request_id: &str, body: &HostRequest) -> String {
    to_line(&ControlRequestLine {
        r#type: "control_request",
        request_id,
        request: body,
    })
}

/// A successful answer to a CLI control request:
/// `{"type":"control_response","response":{"subtype":"success","request_id":…,"response":…}}`.
pub fn control_response_success(request_id: &str, response: Value) -> String {
    to_line(&ControlResponseLine {
        r#type: "control_response",
        response: ControlResponseBody::Success {
            request_id,
            response: &response,
        },
    })
}

/// A failed answer to a CLI control request (e.g. an unsupported subtype):
/// `{"type":"control_response","response":{"subtype":"error","request_id":…,"error":…}}`.
pub fn control_response_error(request_id: &str, message: &str) -> String {
    to_line(&ControlResponseLine::<()> {
        r#type: "control_response",
        response: ControlResponseBody::Error {
            request_id,
            error: message,
        },
    })
}

/// The answer to a `can_use_tool` request: a success response whose body is the decision.
pub fn permission_response(request_id: &str, decision: &PermissionDecision) -> String {
    to_line(&ControlResponseLine {
        r#type: "control_response",
        response: ControlResponseBody::Success {
            request_id,
            response: decision,
        },
    })
}

/// Generates ids for host-initiated control requests: `req_<n>_<hex>`, with `n` counting from 1
/// and 8 hex digits that differ between generators, so ids from different processes or restarts
/// do not collide. Shareable across tasks (`&self`).
#[derive(Debug)]
pub struct RequestIds {
    next: AtomicU64,
    salt: RandomState,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    /// A generator starting at 1, with a fresh random salt.
    pub fn new() -> Self {
        RequestIds {
            next: AtomicU64::new(1),
            salt: RandomState::new(),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let hex = self.salt.hash_one(n) as u32;
        format!("req_{n}_{hex:08x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> Value {
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn user_message_shape() {
        let line = user_message("hi \"there\"\nnext line");
        assert_eq!(
            line,
            "{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi \\\"there\\\"\\nnext line\"}]},\"parent_tool_use_id\":null}\n"
        );
    }

    #[test]
    fn control_request_shapes() {
        assert_eq!(
            parse(&control_request("req_1_ab", &HostRequest::Initialize)),
            json!({"type":"control_request","request_id":"req_1_ab","request":{"subtype":"initialize"}})
        );
        assert_eq!(
            parse(&control_request("r", &HostRequest::Interrupt)),
            json!({"type":"control_request","request_id":"r","request":{"subtype":"interrupt"}})
        );
        assert_eq!(
            parse(&control_request(
                "r",
                &HostRequest::SetPermissionMode {
                    mode: "acceptEdits".into()
                }
            )),
            json!({"type":"control_request","request_id":"r","request":{"subtype":"set_permission_mode","mode":"acceptEdits"}})
        );
    }

    #[test]
    fn control_response_shapes() {
        assert_eq!(
            parse(&control_response_success("7", json!({"ok": true}))),
            json!({"type":"control_response","response":{"subtype":"success","request_id":"7","response":{"ok":true}}})
        );
        assert_eq!(
            parse(&control_response_error("7", "unsupported: hook_callback")),
            json!({"type":"control_response","response":{"subtype":"error","request_id":"7","error":"unsupported: hook_callback"}})
        );
    }

    #[test]
    fn permission_decision_shapes() {
        let allow = PermissionDecision::Allow {
            updated_input: json!({"command": "ls"}),
        };
        let deny = PermissionDecision::Deny {
            message: "not in this team".into(),
            interrupt: true,
        };
        assert_eq!(
            allow.to_value(),
            json!({"behavior":"allow","updatedInput":{"command":"ls"}})
        );
        assert_eq!(
            deny.to_value(),
            json!({"behavior":"deny","message":"not in this team","interrupt":true})
        );
        assert_eq!(serde_json::to_value(&allow).unwrap(), allow.to_value());
        assert_eq!(serde_json::to_value(&deny).unwrap(), deny.to_value());
        assert_eq!(
            parse(&permission_response("q", &deny)),
            parse(&control_response_success("q", deny.to_value()))
        );
    }

    #[test]
    fn request_ids_count_up_with_hex_suffix() {
        let ids = RequestIds::new();
        let a = ids.next_id();
        let b = ids.next_id();
        assert!(a.starts_with("req_1_"), "{a}");
        assert!(b.starts_with("req_2_"), "{b}");
        for id in [&a, &b] {
            let hex = id.rsplit('_').next().unwrap();
            assert_eq!(hex.len(), 8);
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
        }
        assert_ne!(a, b);
    }
}
