//! The stdin reader: NDJSON from the host. Control messages are answered here at once (so an
//! `interrupt` reaches a busy turn); user messages are queued for the turn runner.

use std::io::{self, BufRead};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::protocol::{self, log};
use crate::state::Shared;

/// A user message from stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMessage {
    /// The text: the string content, or the text blocks joined by newlines.
    pub text: String,
    /// `message.content` as sent.
    pub content: Value,
    /// The host's `uuid` for the message, if it gave one.
    pub uuid: Option<String>,
}

/// What one stdin line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Start (or queue) a turn.
    User(UserMessage),
    /// A host-initiated control request: `request_id` (any JSON) and the `request` body.
    ControlRequest { request_id: Value, request: Value },
    /// The host's answer to one of our control requests: the `response` body.
    ControlResponse { request_id: String, response: Value },
    /// Something to ignore, with why.
    Ignored(String),
}

/// Reads one stdin line.
pub fn classify(line: &str) -> Incoming {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(e) => return Incoming::Ignored(format!("invalid JSON on stdin ({e}): {line}")),
    };
    match value.get("type").and_then(Value::as_str) {
        Some("user") => match user_message(&value) {
            Some(message) => Incoming::User(message),
            None => Incoming::Ignored(format!("user message without text content ignored: {line}")),
        },
        Some("control_request") => Incoming::ControlRequest {
            request_id: value.get("request_id").cloned().unwrap_or(Value::Null),
            request: value.get("request").cloned().unwrap_or(Value::Null),
        },
        Some("control_response") => {
            let response = value.get("response").cloned().unwrap_or(Value::Null);
            match response.get("request_id").and_then(Value::as_str) {
                Some(id) => Incoming::ControlResponse {
                    request_id: id.to_owned(),
                    response,
                },
                None => Incoming::Ignored(format!("control_response without request_id: {line}")),
            }
        }
        Some(other) => Incoming::Ignored(format!("stdin message of type '{other}' ignored")),
        None => Incoming::Ignored(format!("stdin message without a type ignored: {line}")),
    }
}

fn user_message(value: &Value) -> Option<UserMessage> {
    let content = value.get("message")?.get("content")?;
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() {
                return None;
            }
            texts.join("\n")
        }
        _ => return None,
    };
    Some(UserMessage {
        text,
        content: content.clone(),
        uuid: value.get("uuid").and_then(Value::as_str).map(str::to_owned),
    })
}

/// Answers a host control request.
fn control(shared: &Shared, request_id: &Value, request: &Value) {
    let subtype = request.get("subtype").and_then(Value::as_str);
    let reply = match subtype {
        Some("initialize") => {
            protocol::control_success(request_id, protocol::initialize_response())
        }
        Some("interrupt") => {
            // The answer has no `response` field, and comes before the turn's end.
            let out = shared.out;
            shared.request_interrupt(|| out.event(&protocol::control_ack(request_id)));
            return;
        }
        Some("set_permission_mode") => {
            match request.get("mode").and_then(Value::as_str) {
                Some(mode) => shared.set_permission_mode(mode),
                None => log("fake-claude: set_permission_mode without a mode ignored"),
            }
            protocol::control_success(request_id, json!({}))
        }
        Some("set_model") => protocol::control_success(request_id, json!({})),
        Some(other) => {
            protocol::control_error(request_id, &format!("unsupported control request: {other}"))
        }
        None => protocol::control_error(request_id, "unsupported control request: <no subtype>"),
    };
    shared.out.event(&reply);
}

/// Starts the thread that reads stdin until EOF. Dropping `tx` at EOF tells the runner that no
/// more turns will come.
pub fn spawn_reader(
    shared: Arc<Shared>,
    tx: mpsc::Sender<UserMessage>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || read_loop(&shared, &tx))
}

fn read_loop(shared: &Shared, tx: &mpsc::Sender<UserMessage>) {
    let stdin = io::stdin();
    let mut reader = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log(&format!("fake-claude: cannot read stdin: {e}"));
                return;
            }
        }
        while shared.is_wedged() {
            thread::sleep(Duration::from_secs(3600));
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match classify(line) {
            Incoming::User(message) => {
                shared.submit();
                if tx.send(message).is_err() {
                    return;
                }
            }
            Incoming::ControlRequest {
                request_id,
                request,
            } => control(shared, &request_id, &request),
            Incoming::ControlResponse {
                request_id,
                response,
            } => {
                if !shared.answer(&request_id, response) {
                    log(&format!(
                        "fake-claude: control_response for unknown request '{request_id}' ignored"
                    ));
                }
            }
            Incoming::Ignored(why) => log(&format!("fake-claude: {why}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_messages_in_both_forms() {
        let Incoming::User(m) = classify(
            r#"{"type":"user","message":{"role":"user","content":"hi"},"parent_tool_use_id":null}"#,
        ) else {
            panic!("not a user message");
        };
        assert_eq!(m.text, "hi");
        assert_eq!(m.uuid, None);
        let Incoming::User(m) = classify(
            r#"{"type":"user","uuid":"u1","message":{"role":"user","content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}]}}"#,
        ) else {
            panic!("not a user message");
        };
        assert_eq!(m.text, "a\nb");
        assert_eq!(m.uuid.as_deref(), Some("u1"));
    }

    #[test]
    fn control_messages() {
        assert!(matches!(
            classify(
                r#"{"type":"control_request","request_id":"r1","request":{"subtype":"initialize"}}"#
            ),
            Incoming::ControlRequest { .. }
        ));
        assert_eq!(
            classify(
                r#"{"type":"control_response","response":{"subtype":"success","request_id":"perm_1","response":{"behavior":"allow"}}}"#
            ),
            Incoming::ControlResponse {
                request_id: "perm_1".into(),
                response: json!({"subtype":"success","request_id":"perm_1","response":{"behavior":"allow"}}),
            }
        );
    }

    #[test]
    fn junk_is_ignored() {
        assert!(matches!(classify("not json"), Incoming::Ignored(_)));
        assert!(matches!(
            classify("{\"type\":\"keep_alive\"}"),
            Incoming::Ignored(_)
        ));
        assert!(matches!(classify("[1,2]"), Incoming::Ignored(_)));
        assert!(matches!(
            classify(r#"{"type":"user","message":{"content":42}}"#),
            Incoming::Ignored(_)
        ));
    }
}
