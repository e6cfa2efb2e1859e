//! The stream-json wire format: the stdout writer and builders for every event fake-claude
//! emits. Shapes follow `claude-cli-protocol.md` §1.3.

use std::io::{self, Write};

use serde_json::{Value, json};

/// The model name fake-claude reports.
pub const MODEL: &str = "fake-claude";

/// The tools `system/init` lists (minus `--disallowedTools`).
pub const TOOLS: &[&str] = &[
    "Task",
    "Bash",
    "Glob",
    "Grep",
    "LS",
    "Read",
    "Edit",
    "MultiEdit",
    "Write",
    "NotebookEdit",
    "WebFetch",
    "WebSearch",
    "TodoWrite",
];

/// Writes to stderr, ignoring failures (stderr may be closed).
pub fn log(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{msg}");
    let _ = err.flush();
}

/// Stdout (whose lock is process-wide), shared by the stdin thread (control responses) and the turn runner (events). Every
/// line is written whole under one lock and flushed at once, because stdout is a pipe.
#[derive(Debug, Clone, Copy, Default)]
pub struct Out;

impl Out {
    /// Writes one event as a JSON line.
    pub fn event(&self, event: &Value) {
        match to_line(event) {
            Ok(bytes) => self.raw(&bytes),
            Err(e) => log(&format!("fake-claude: cannot serialize an event: {e}")),
        }
    }

    /// Writes bytes as they are (for scripted faults: partial lines, garbage).
    ///
    /// A failed write means the reader is gone; like the real CLI, fake-claude then exits.
    pub fn raw(&self, bytes: &[u8]) {
        let mut lock = io::stdout().lock();
        if let Err(e) = lock.write_all(bytes).and_then(|()| lock.flush()) {
            log(&format!("fake-claude: cannot write to stdout: {e}"));
            std::process::exit(1);
        }
    }
}

/// One JSON line with `"type"` first, as the CLI writes it (serde_json's map sorts keys, and
/// human readers of logs look for the type first).
pub fn to_line(event: &Value) -> serde_json::Result<Vec<u8>> {
    let mut bytes = match (event.as_object(), event.get("type")) {
        (Some(map), Some(kind)) => {
            let mut bytes = b"{\"type\":".to_vec();
            serde_json::to_writer(&mut bytes, kind)?;
            for (key, value) in map.iter().filter(|(key, _)| *key != "type") {
                bytes.push(b',');
                serde_json::to_writer(&mut bytes, key)?;
                bytes.push(b':');
                serde_json::to_writer(&mut bytes, value)?;
            }
            bytes.push(b'}');
            bytes
        }
        _ => serde_json::to_vec(event)?,
    };
    bytes.push(b'\n');
    Ok(bytes)
}

/// A fresh random (v4) UUID.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh Anthropic-style message id.
pub fn new_message_id() -> String {
    format!("msg_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// Token counts: one token per four bytes, rounded up.
pub fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// The deterministic cost of a turn: one micro-dollar per byte in and out.
pub fn cost_usd(in_bytes: usize, out_bytes: usize) -> f64 {
    (in_bytes + out_bytes) as f64 * 0.000_001
}

fn usage(in_bytes: usize, out_bytes: usize) -> Value {
    json!({
        "input_tokens": tokens(in_bytes),
        "output_tokens": tokens(out_bytes),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// What `system/init` reports.
#[derive(Debug, Clone)]
pub struct InitInfo {
    pub session_id: String,
    pub cwd: String,
    pub tools: Vec<String>,
    pub permission_mode: String,
}

/// `{"type":"system","subtype":"init",…}`.
pub fn init(info: &InitInfo) -> Value {
    json!({
        "type": "system",
        "subtype": "init",
        "cwd": info.cwd,
        "session_id": info.session_id,
        "tools": info.tools,
        "mcp_servers": [],
        "model": MODEL,
        "permissionMode": info.permission_mode,
        "slash_commands": ["compact", "context", "cost"],
        "apiKeySource": "none",
        "claude_code_version": crate::args::VERSION,
        "output_style": "default",
        "agents": [],
        "skills": [],
        "plugins": [],
        "uuid": new_uuid(),
    })
}

/// An `assistant` event carrying `content` blocks.
pub fn assistant(
    session_id: &str,
    message_id: &str,
    content: Value,
    stop_reason: Option<&str>,
    in_bytes: usize,
    out_bytes: usize,
) -> Value {
    json!({
        "type": "assistant",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": usage(in_bytes, out_bytes),
        },
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": new_uuid(),
    })
}

/// One text content block.
pub fn text_block(text: &str) -> Value {
    json!([{ "type": "text", "text": text }])
}

/// A `stream_event` wrapping a raw Anthropic SSE event (with `--include-partial-messages`).
pub fn stream_event(session_id: &str, event: Value) -> Value {
    json!({
        "type": "stream_event",
        "event": event,
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": new_uuid(),
    })
}

/// The user message echoed back with `--replay-user-messages`.
pub fn user_replay(session_id: &str, uuid: &str, content: &Value) -> Value {
    json!({
        "type": "user",
        "message": { "role": "user", "content": content },
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": uuid,
        "isReplay": true,
    })
}

/// How a turn ended, for its `result` event.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// A normal answer.
    Success { text: String },
    /// A failed API call: `subtype:"success"`, `is_error:true`, `api_error_status`.
    ApiError { text: String, status: u16 },
    /// The turn was interrupted: `subtype:"error_during_execution"`.
    Interrupted,
}

/// The numbers of a finished turn.
#[derive(Debug, Clone)]
pub struct TurnStats {
    pub duration_ms: u64,
    pub in_bytes: usize,
    pub out_bytes: usize,
    pub permission_denials: Vec<Value>,
}

/// The `result` event that ends every turn.
pub fn result(session_id: &str, ending: &Ending, stats: &TurnStats) -> Value {
    let cost = cost_usd(stats.in_bytes, stats.out_bytes);
    let mut event = json!({
        "type": "result",
        "subtype": "success",
        "is_error": false,
        "duration_ms": stats.duration_ms,
        "duration_api_ms": stats.duration_ms,
        "num_turns": 1,
        "session_id": session_id,
        "total_cost_usd": cost,
        "usage": usage(stats.in_bytes, stats.out_bytes),
        "modelUsage": {
            MODEL: {
                "inputTokens": tokens(stats.in_bytes),
                "outputTokens": tokens(stats.out_bytes),
                "cacheReadInputTokens": 0,
                "cacheCreationInputTokens": 0,
                "webSearchRequests": 0,
                "costUSD": cost,
            }
        },
        "permission_denials": stats.permission_denials,
        "uuid": new_uuid(),
    });
    let fields: Vec<(&str, Value)> = match ending {
        Ending::Success { text } => vec![
            ("result", json!(text)),
            ("stop_reason", json!("end_turn")),
            ("terminal_reason", json!("completed")),
            ("api_error_status", Value::Null),
        ],
        Ending::ApiError { text, status } => vec![
            ("is_error", json!(true)),
            ("result", json!(text)),
            ("stop_reason", Value::Null),
            ("terminal_reason", json!("completed")),
            ("api_error_status", json!(status)),
        ],
        Ending::Interrupted => vec![
            ("subtype", json!("error_during_execution")),
            ("is_error", json!(true)),
            ("stop_reason", Value::Null),
            ("terminal_reason", json!("aborted_streaming")),
            ("errors", json!(["Request was aborted."])),
            ("api_error_status", Value::Null),
        ],
    };
    if let Some(map) = event.as_object_mut() {
        for (key, value) in fields {
            map.insert(key.to_owned(), value);
        }
    }
    event
}

/// A successful `control_response` to the host's request `request_id`.
pub fn control_success(request_id: &Value, response: Value) -> Value {
    json!({
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request_id,
            "response": response,
        }
    })
}

/// A failed `control_response`.
pub fn control_error(request_id: &Value, error: &str) -> Value {
    json!({
        "type": "control_response",
        "response": {
            "subtype": "error",
            "request_id": request_id,
            "error": error,
        }
    })
}

/// The body of the `initialize` response.
pub fn initialize_response() -> Value {
    json!({
        "commands": [
            { "name": "compact", "description": "Clear conversation history but keep a summary in context", "argumentHint": "<optional custom summarization instructions>" },
            { "name": "context", "description": "Visualize current context usage", "argumentHint": "" },
            { "name": "cost", "description": "Show the total cost and duration of the current session", "argumentHint": "" },
        ],
        "output_style": "default",
        "available_output_styles": ["default"],
        "models": [
            { "value": "default", "displayName": "Default (fake-claude)", "description": "The fake model: echoes its input" },
            { "value": MODEL, "displayName": "fake-claude", "description": "The fake model: echoes its input" },
        ],
        "account": {},
        "pid": std::process::id(),
    })
}

/// `{"type":"control_request","request_id":…,"request":{"subtype":"can_use_tool",…}}`.
pub fn can_use_tool(request_id: &str, tool: &str, tool_use_id: &str) -> Value {
    json!({
        "type": "control_request",
        "request_id": request_id,
        "request": {
            "subtype": "can_use_tool",
            "tool_name": tool,
            "input": {},
            "permission_suggestions": [],
            "tool_use_id": tool_use_id,
        }
    })
}

/// `{"type":"control_cancel_request","request_id":…}`: abandons our pending request.
pub fn control_cancel(request_id: &str) -> Value {
    json!({ "type": "control_cancel_request", "request_id": request_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> TurnStats {
        TurnStats {
            duration_ms: 7,
            in_bytes: 5,
            out_bytes: 11,
            permission_denials: Vec::new(),
        }
    }

    #[test]
    fn lines_put_the_type_first() {
        let v = json!({"a": 1, "type": "x", "z": {"type": "inner", "b": [1]}});
        let line = to_line(&v).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&line),
            "{\"type\":\"x\",\"a\":1,\"z\":{\"b\":[1],\"type\":\"inner\"}}\n"
        );
        let back: Value = serde_json::from_slice(&line).unwrap_or_default();
        assert_eq!(back, v);
        assert_eq!(to_line(&json!([1])).unwrap_or_default(), b"[1]\n");
        assert_eq!(to_line(&json!({})).unwrap_or_default(), b"{}\n");
    }

    #[test]
    fn success_result_shape() {
        let r = result(
            "s",
            &Ending::Success {
                text: "echo: hello".into(),
            },
            &stats(),
        );
        assert_eq!(r["type"], "result");
        assert_eq!(r["subtype"], "success");
        assert_eq!(r["is_error"], false);
        assert_eq!(r["result"], "echo: hello");
        assert_eq!(r["usage"]["input_tokens"], 2);
        assert_eq!(r["usage"]["output_tokens"], 3);
        assert!((r["total_cost_usd"].as_f64().unwrap_or(0.0) - 0.000016).abs() < 1e-12);
    }

    #[test]
    fn error_results() {
        let r = result(
            "s",
            &Ending::ApiError {
                text: "x".into(),
                status: 500,
            },
            &stats(),
        );
        assert_eq!(r["subtype"], "success");
        assert_eq!(r["is_error"], true);
        assert_eq!(r["api_error_status"], 500);
        let r = result("s", &Ending::Interrupted, &stats());
        assert_eq!(r["subtype"], "error_during_execution");
        assert_eq!(r["is_error"], true);
        assert!(r.get("result").is_none());
    }

    #[test]
    fn assistant_shape() {
        let a = assistant("s", "msg_1", text_block("hi"), Some("end_turn"), 1, 2);
        assert_eq!(a["message"]["content"][0]["text"], "hi");
        assert_eq!(a["message"]["model"], MODEL);
        assert_eq!(a["parent_tool_use_id"], Value::Null);
    }
}
