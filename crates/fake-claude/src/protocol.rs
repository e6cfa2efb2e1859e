//! The stream-json wire format: the stdout writer and builders for every event fake-claude
//! emits. Shapes follow the real CLI 2.1.197 as recorded in
//! `tests/fixtures/recorded-claude-2.1.197/` (see `claude-cli-protocol.md`, last section).

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::cost::{Tokens, Totals};

/// The model name fake-claude reports.
pub const MODEL: &str = "fake-claude";
/// The model a synthetic message (an API error, `/clear`) names, as in the real CLI.
pub const SYNTHETIC_MODEL: &str = "<synthetic>";
/// The context window `modelUsage` reports.
pub const CONTEXT_WINDOW: u64 = 200_000;
/// The output limit `modelUsage` reports.
pub const MAX_OUTPUT_TOKENS: u64 = 64_000;

/// The built-in tools `system/init` lists (minus `--disallowedTools`): the real 2.1.197 list.
pub const TOOLS: &[&str] = &[
    "Task",
    "AskUserQuestion",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterPlanMode",
    "EnterWorktree",
    "ExitPlanMode",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
];

/// The slash commands fake-claude runs (`/compact`, `/clear`) and a few it lists.
pub const SLASH_COMMANDS: &[&str] = &["clear", "compact", "context", "usage"];

/// The user message the real CLI records when the host interrupts a turn.
pub const INTERRUPTED_TEXT: &str = "[Request interrupted by user]";
/// The same, when a tool was running or being asked about.
pub const INTERRUPTED_TOOL_TEXT: &str = "[Request interrupted by user for tool use]";
/// The tool result of a tool use the host interrupted.
pub const TOOL_REJECTED_TEXT: &str = "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed.";
/// The `errors` of an interrupted turn's result, as the real CLI prints them.
pub const INTERRUPTED_ERROR: &str =
    "[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null";

/// Writes to stderr, ignoring failures (stderr may be closed).
pub fn log(msg: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{msg}");
    let _ = err.flush();
}

/// Stdout (whose lock is process-wide), shared by the stdin thread (control responses) and the
/// turn runner (events). Every line is written whole under one lock and flushed at once,
/// because stdout is a pipe.
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

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
}

/// A fresh Anthropic-style message id (`msg_…`).
pub fn new_message_id() -> String {
    format!("msg_{}", random_suffix())
}

/// A fresh tool use id (`toolu_…`).
pub fn new_tool_use_id() -> String {
    format!("toolu_{}", random_suffix())
}

/// A fresh API request id (`req_…`), which text `assistant` events carry.
pub fn new_request_id() -> String {
    format!("req_{}", random_suffix())
}

/// An API call's `usage`, as the result carries it.
pub fn usage(tokens: Tokens) -> Value {
    json!({
        "input_tokens": tokens.input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": tokens.output,
        "server_tool_use": { "web_search_requests": 0, "web_fetch_requests": 0 },
        "service_tier": "standard",
        "cache_creation": { "ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0 },
        "inference_geo": "",
        "iterations": [],
        "speed": "standard",
    })
}

/// The short `usage` of a message as it starts streaming (what `assistant` events carry).
fn message_usage(input_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// `modelUsage`: the process's running totals under the model's name (empty before any).
fn model_usage(totals: Totals) -> Value {
    if totals == Totals::default() {
        return json!({});
    }
    json!({
        MODEL: {
            "inputTokens": totals.tokens.input,
            "outputTokens": totals.tokens.output,
            "cacheReadInputTokens": 0,
            "cacheCreationInputTokens": 0,
            "webSearchRequests": 0,
            "costUSD": totals.usd(),
            "contextWindow": CONTEXT_WINDOW,
            "maxOutputTokens": MAX_OUTPUT_TOKENS,
        }
    })
}

/// One MCP server in `system/init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpStatus {
    /// The configured name.
    pub name: String,
    /// `connected` or `failed`.
    pub status: String,
}

/// What `system/init` reports.
#[derive(Debug, Clone)]
pub struct InitInfo {
    pub session_id: String,
    pub cwd: String,
    pub tools: Vec<String>,
    pub mcp_servers: Vec<McpStatus>,
    pub permission_mode: String,
    /// `memory_paths.auto`: `<config>/projects/<sanitized cwd>/memory/`.
    pub memory_dir: String,
}

/// `{"type":"system","subtype":"init",…}`, which starts every turn.
pub fn init(info: &InitInfo, permission_mode: &str) -> Value {
    let servers: Vec<Value> = info
        .mcp_servers
        .iter()
        .map(|s| json!({ "name": s.name, "status": s.status }))
        .collect();
    json!({
        "type": "system",
        "subtype": "init",
        "cwd": info.cwd,
        "session_id": info.session_id,
        "tools": info.tools,
        "mcp_servers": servers,
        "model": MODEL,
        "permissionMode": permission_mode,
        "slash_commands": SLASH_COMMANDS,
        "apiKeySource": "none",
        "claude_code_version": crate::args::VERSION,
        "output_style": "default",
        "agents": [],
        "skills": [],
        "plugins": [],
        "analytics_disabled": true,
        "product_feedback_disabled": true,
        "uuid": new_uuid(),
        "memory_paths": { "auto": info.memory_dir },
        "fast_mode_state": "off",
    })
}

/// `{"type":"system","subtype":"status",…}`: `status` is `"requesting"` before an API call
/// (with `--include-partial-messages`), `"compacting"` or `null` around `/compact`.
pub fn status(session_id: &str, status: Value, extra: &[(&str, Value)]) -> Value {
    let mut event = json!({
        "type": "system",
        "subtype": "status",
        "status": status,
        "session_id": session_id,
        "uuid": new_uuid(),
    });
    insert(&mut event, extra);
    event
}

/// A background task started (the Bash tool reports commands that run for a while).
pub fn task_started(
    session_id: &str,
    task_id: &str,
    tool_use_id: &str,
    description: &str,
) -> Value {
    json!({
        "type": "system",
        "subtype": "task_started",
        "task_id": task_id,
        "tool_use_id": tool_use_id,
        "description": description,
        "task_type": "local_bash",
        "uuid": new_uuid(),
        "session_id": session_id,
    })
}

/// A background task ended.
pub fn task_notification(
    session_id: &str,
    task_id: &str,
    tool_use_id: &str,
    summary: &str,
) -> Value {
    json!({
        "type": "system",
        "subtype": "task_notification",
        "task_id": task_id,
        "tool_use_id": tool_use_id,
        "status": "completed",
        "output_file": "",
        "summary": summary,
        "uuid": new_uuid(),
        "session_id": session_id,
    })
}

/// `/compact`'s boundary.
pub fn compact_boundary(session_id: &str, pre_tokens: u64, post_tokens: u64, ms: u64) -> Value {
    json!({
        "type": "system",
        "subtype": "compact_boundary",
        "session_id": session_id,
        "uuid": new_uuid(),
        "compact_metadata": {
            "trigger": "manual",
            "pre_tokens": pre_tokens,
            "post_tokens": post_tokens,
            "cumulative_dropped_tokens": 0,
            "duration_ms": ms,
        },
    })
}

/// An `assistant` event carrying one content block of the API message `message_id`. Several
/// blocks of one message are several events with the same id; `stop_reason` is always `null`,
/// as in the real CLI. Text blocks carry the API `request_id`, tool uses do not.
pub fn assistant(
    session_id: &str,
    message_id: &str,
    request_id: Option<&str>,
    block: Value,
    input_tokens: u64,
) -> Value {
    let mut event = json!({
        "type": "assistant",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [block],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": message_usage(input_tokens),
            "context_management": null,
        },
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": new_uuid(),
    });
    if let Some(id) = request_id {
        insert(&mut event, &[("request_id", json!(id))]);
    }
    event
}

/// An `assistant` message the CLI makes up itself (an API error's text, `/clear`'s
/// "(no content)"), with model `<synthetic>`.
pub fn synthetic_assistant(session_id: &str, text: &str) -> Value {
    json!({
        "type": "assistant",
        "message": {
            "id": new_uuid(),
            "container": null,
            "model": SYNTHETIC_MODEL,
            "role": "assistant",
            "stop_details": null,
            "stop_reason": "stop_sequence",
            "stop_sequence": "",
            "type": "message",
            "usage": usage(Tokens::default()),
            "content": [text_block(text)],
            "context_management": null,
        },
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": new_uuid(),
    })
}

/// A failed API call's `result` text and the `error` kind of its synthetic assistant message,
/// as CLI 2.1.197 words them for each HTTP status.
pub fn api_error(status: u16, message: &str) -> (String, &'static str) {
    const SERVER_SIDE: &str = "This is a server-side issue, usually temporary — try again in a \
                               moment. If it persists, check https://status.claude.com.";
    match status {
        429 => (
            format!("API Error: Request rejected (429) · {message}"),
            "rate_limit",
        ),
        529 => (
            format!("API Error: 529 Overloaded. {SERVER_SIDE}"),
            "server_error",
        ),
        500..=599 => (
            format!("API Error: {status} {message}. {SERVER_SIDE}"),
            "server_error",
        ),
        _ => (format!("API Error: {status} {message}"), "unknown"),
    }
}

/// The synthetic assistant message of a failed API call, with its `error` kind.
pub fn api_error_assistant(session_id: &str, text: &str, error: &str) -> Value {
    let mut event = synthetic_assistant(session_id, text);
    insert(&mut event, &[("error", json!(error))]);
    event
}

/// One text content block.
pub fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

/// One tool use content block.
pub fn tool_use_block(id: &str, name: &str, input: &Value) -> Value {
    json!({ "type": "tool_use", "id": id, "name": name, "input": input })
}

/// A `stream_event` wrapping a raw Anthropic SSE event (with `--include-partial-messages`).
pub fn stream_event(session_id: &str, event: Value) -> Value {
    json!({
        "type": "stream_event",
        "event": event,
        "session_id": session_id,
        "parent_tool_use_id": null,
        "uuid": new_uuid(),
    })
}

/// The `message_start` stream event (which also carries `ttft_ms` at the top level).
pub fn message_start(session_id: &str, message_id: &str, input_tokens: u64, ttft_ms: u64) -> Value {
    let mut event = stream_event(
        session_id,
        json!({
            "type": "message_start",
            "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": MODEL,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": message_usage(input_tokens),
            }
        }),
    );
    insert(&mut event, &[("ttft_ms", json!(ttft_ms))]);
    event
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

/// A `user` message the CLI adds itself (the interrupt notice, `/compact`'s summary), with
/// `extra` flags such as `isSynthetic`.
pub fn user_text(session_id: &str, content: Value, extra: &[(&str, Value)]) -> Value {
    let mut event = json!({
        "type": "user",
        "message": { "role": "user", "content": content },
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": new_uuid(),
        "timestamp": crate::transcript::timestamp_now(),
    });
    insert(&mut event, extra);
    event
}

/// The `user` message carrying a tool's result, which comes before the next API call.
pub fn user_tool_result(
    session_id: &str,
    tool_use_id: &str,
    content: &str,
    is_error: bool,
    tool_use_result: Value,
) -> Value {
    json!({
        "type": "user",
        "message": {
            "role": "user",
            "content": [{
                "tool_use_id": tool_use_id,
                "type": "tool_result",
                "content": content,
                "is_error": is_error,
            }],
        },
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": new_uuid(),
        "timestamp": crate::transcript::timestamp_now(),
        "tool_use_result": tool_use_result,
    })
}

/// How a turn ended, for its `result` event.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// A normal answer; `text` is the last text block's.
    Success { text: String },
    /// A failed API call: `subtype:"success"`, `is_error:true`, `api_error_status`.
    ApiError { text: String, status: u16 },
    /// The host interrupted the turn: `subtype:"error_during_execution"`; `tools` when a tool
    /// was running or being asked about (`terminal_reason: aborted_tools`).
    Interrupted { tools: bool },
    /// A slash command (`/compact`, `/clear`): empty `result`, `num_turns: 0`.
    Command,
    /// The process reached its `--max-budget-usd` (`limit`, as given): `subtype:
    /// "error_max_budget_usd"`, `is_error`, no `result` text, and the turn's `usage` zero (the
    /// cost is in the running total); `answered` when the turn made its API call first (the
    /// turn that crossed the limit), not when it was refused at once (every later turn).
    OverBudget { limit: String, answered: bool },
}

/// The numbers of a finished turn.
#[derive(Debug, Clone, Default)]
pub struct TurnStats {
    pub duration_ms: u64,
    pub duration_api_ms: u64,
    pub ttft_ms: u64,
    /// API calls made (`num_turns`).
    pub api_calls: u32,
    /// The turn's own tokens (`usage`).
    pub usage: Tokens,
    pub permission_denials: Vec<Value>,
}

/// The `result` event that ends every turn. `totals` are the process's running totals, this
/// turn included.
pub fn result(session_id: &str, ending: &Ending, stats: &TurnStats, totals: Totals) -> Value {
    let mut event = json!({
        "type": "result",
        "subtype": "success",
        "is_error": false,
        "duration_ms": stats.duration_ms,
        "duration_api_ms": stats.duration_api_ms,
        "num_turns": stats.api_calls,
        "stop_reason": null,
        "session_id": session_id,
        "total_cost_usd": totals.usd(),
        "usage": usage(stats.usage),
        "modelUsage": model_usage(totals),
        "permission_denials": stats.permission_denials,
        "fast_mode_state": "off",
        "uuid": new_uuid(),
    });
    let timings = [
        ("ttft_ms", json!(stats.ttft_ms)),
        ("ttft_stream_ms", json!(stats.ttft_ms)),
        ("time_to_request_ms", json!(0)),
    ];
    match ending {
        Ending::Success { text } => {
            insert(&mut event, &timings);
            insert(
                &mut event,
                &[
                    ("api_error_status", Value::Null),
                    ("result", json!(text)),
                    ("stop_reason", json!("end_turn")),
                    ("terminal_reason", json!("completed")),
                ],
            );
        }
        Ending::ApiError { text, status } => insert(
            &mut event,
            &[
                ("is_error", json!(true)),
                ("api_error_status", json!(status)),
                ("result", json!(text)),
                ("terminal_reason", json!("completed")),
            ],
        ),
        Ending::Interrupted { tools } => insert(
            &mut event,
            &[
                ("subtype", json!("error_during_execution")),
                ("is_error", json!(true)),
                ("num_turns", json!(stats.api_calls + 1)),
                (
                    "terminal_reason",
                    json!(if *tools {
                        "aborted_tools"
                    } else {
                        "aborted_streaming"
                    }),
                ),
                ("errors", json!([INTERRUPTED_ERROR])),
            ],
        ),
        Ending::Command => insert(&mut event, &[("result", json!(""))]),
        Ending::OverBudget { limit, answered } => {
            // As 2.1.197 prints it: "Reached maximum budget ($0.00001)", the limit as a
            // JavaScript number reads.
            let limit = limit
                .parse::<f64>()
                .map_or(limit.clone(), |l| l.to_string());
            insert(
                &mut event,
                &[
                    ("subtype", json!("error_max_budget_usd")),
                    ("is_error", json!(true)),
                    ("num_turns", json!(1)),
                    (
                        "stop_reason",
                        if *answered {
                            json!("end_turn")
                        } else {
                            Value::Null
                        },
                    ),
                    ("usage", usage(Tokens::default())),
                    (
                        "errors",
                        json!([format!("Reached maximum budget (${limit})")]),
                    ),
                ],
            );
        }
    }
    event
}

/// The `result` the real CLI prints, before anything else, when it cannot start the
/// conversation (`--resume` of an unknown id), just before it exits 1.
pub fn launch_failure(session_id: &str, error: &str) -> Value {
    json!({
        "type": "result",
        "subtype": "error_during_execution",
        "duration_ms": 0,
        "duration_api_ms": 0,
        "is_error": true,
        "num_turns": 0,
        "stop_reason": null,
        "session_id": session_id,
        "total_cost_usd": 0,
        "usage": usage(Tokens::default()),
        "modelUsage": {},
        "permission_denials": [],
        "uuid": new_uuid(),
        "errors": [error],
    })
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

/// A successful `control_response` without a body, as the real CLI answers `interrupt`.
pub fn control_ack(request_id: &Value) -> Value {
    json!({
        "type": "control_response",
        "response": { "subtype": "success", "request_id": request_id }
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
            { "name": "clear", "description": "Start a new session with empty context; previous session stays on disk (resumable with /resume)", "argumentHint": "[name]", "aliases": ["reset", "new"] },
            { "name": "compact", "description": "Free up context by summarizing the conversation so far", "argumentHint": "<optional custom summarization instructions>" },
            { "name": "context", "description": "Show current context usage", "argumentHint": "" },
            { "name": "usage", "description": "Show session cost, plan usage, and what's contributing to your limits", "argumentHint": "", "aliases": ["cost", "stats"] },
        ],
        "agents": [],
        "output_style": "default",
        "available_output_styles": ["default"],
        "models": [
            { "value": "default", "resolvedModel": MODEL, "displayName": "Default (fake-claude)", "description": "The fake model: echoes its input · $5/$25 per Mtok" },
        ],
        "account": { "tokenSource": "none", "apiKeySource": "none", "apiProvider": "firstParty" },
        "pid": std::process::id(),
    })
}

/// What a `can_use_tool` request asks about.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    pub tool_name: String,
    pub input: Value,
    pub description: String,
    /// The path the tool would write, if it is one the CLI checks.
    pub blocked_path: Option<String>,
    /// The rule the CLI suggests adding for "always allow".
    pub rule: String,
    pub cwd: String,
    pub tool_use_id: String,
}

/// `{"type":"control_request","request_id":<uuid>,"request":{"subtype":"can_use_tool",…}}`.
pub fn can_use_tool(request_id: &str, tool: &ToolRequest) -> Value {
    let mut request = json!({
        "subtype": "can_use_tool",
        "tool_name": tool.tool_name,
        "display_name": tool.tool_name,
        "input": tool.input,
        "description": tool.description,
        "permission_suggestions": [
            {
                "type": "addRules",
                "rules": [{ "toolName": tool.tool_name, "ruleContent": tool.rule }],
                "behavior": "allow",
                "destination": "localSettings",
            },
            { "type": "addDirectories", "directories": [tool.cwd], "destination": "session" },
            { "type": "setMode", "mode": "acceptEdits", "destination": "session" },
        ],
        "tool_use_id": tool.tool_use_id,
    });
    if let Some(path) = &tool.blocked_path {
        insert(&mut request, &[("blocked_path", json!(path))]);
    }
    json!({ "type": "control_request", "request_id": request_id, "request": request })
}

/// `{"type":"control_cancel_request","request_id":…}`: abandons our pending request.
pub fn control_cancel(request_id: &str) -> Value {
    json!({ "type": "control_cancel_request", "request_id": request_id })
}

fn insert(event: &mut Value, fields: &[(&str, Value)]) {
    if let Some(map) = event.as_object_mut() {
        for (key, value) in fields {
            map.insert((*key).to_owned(), value.clone());
        }
    }
}

/// The keys of an object, for tests.
#[cfg(test)]
fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(serde_json::Map::keys)
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> TurnStats {
        TurnStats {
            duration_ms: 7,
            duration_api_ms: 5,
            ttft_ms: 1,
            api_calls: 1,
            usage: Tokens {
                input: 2,
                output: 3,
            },
            permission_denials: Vec::new(),
        }
    }

    fn totals() -> Totals {
        let mut totals = Totals::default();
        totals.add(Tokens {
            input: 101,
            output: 5,
        });
        totals
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
            totals(),
        );
        let mut expected = vec![
            "api_error_status",
            "duration_api_ms",
            "duration_ms",
            "fast_mode_state",
            "is_error",
            "modelUsage",
            "num_turns",
            "permission_denials",
            "result",
            "session_id",
            "stop_reason",
            "subtype",
            "terminal_reason",
            "time_to_request_ms",
            "total_cost_usd",
            "ttft_ms",
            "ttft_stream_ms",
            "type",
            "usage",
            "uuid",
        ];
        expected.sort_unstable();
        assert_eq!(keys(&r), expected);
        assert_eq!(r["subtype"], "success");
        assert_eq!(r["is_error"], false);
        assert_eq!(r["result"], "echo: hello");
        assert_eq!(r["stop_reason"], "end_turn");
        assert_eq!(r["terminal_reason"], "completed");
        assert_eq!(r["usage"]["input_tokens"], 2);
        assert_eq!(r["usage"]["output_tokens"], 3);
        assert_eq!(r["usage"]["service_tier"], "standard");
        // The running totals, not the turn's own numbers.
        assert_eq!(r["total_cost_usd"], 0.00063);
        let model = &r["modelUsage"][MODEL];
        assert_eq!(model["inputTokens"], 101);
        assert_eq!(model["costUSD"], 0.00063);
        assert_eq!(model["contextWindow"], CONTEXT_WINDOW);
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
            totals(),
        );
        assert_eq!(r["subtype"], "success");
        assert_eq!(r["is_error"], true);
        assert_eq!(r["api_error_status"], 500);

        let r = result(
            "s",
            &Ending::Interrupted { tools: false },
            &stats(),
            totals(),
        );
        assert_eq!(r["subtype"], "error_during_execution");
        assert_eq!(r["is_error"], true);
        assert_eq!(r["terminal_reason"], "aborted_streaming");
        assert_eq!(r["errors"], json!([INTERRUPTED_ERROR]));
        assert!(r.get("result").is_none());
        assert!(r.get("api_error_status").is_none());
        let r = result(
            "s",
            &Ending::Interrupted { tools: true },
            &stats(),
            totals(),
        );
        assert_eq!(r["terminal_reason"], "aborted_tools");

        let r = result("s", &Ending::Command, &stats(), Totals::default());
        assert_eq!(r["result"], "");
        assert_eq!(r["modelUsage"], json!({}));
        assert!(r.get("terminal_reason").is_none());
    }

    #[test]
    fn api_error_texts() {
        assert_eq!(api_error(400, "bad").0, "API Error: 400 bad");
        assert_eq!(api_error(400, "bad").1, "unknown");
        assert_eq!(
            api_error(429, "slow down"),
            (
                "API Error: Request rejected (429) · slow down".to_owned(),
                "rate_limit"
            )
        );
        assert!(
            api_error(529, "x")
                .0
                .starts_with("API Error: 529 Overloaded.")
        );
        assert!(
            api_error(500, "boom")
                .0
                .starts_with("API Error: 500 boom. This is a server-side")
        );
        let a = api_error_assistant("s", "API Error: 400 bad", "unknown");
        assert_eq!(a["error"], "unknown");
        assert_eq!(a["message"]["model"], SYNTHETIC_MODEL);
    }

    #[test]
    fn launch_failure_shape() {
        let r = launch_failure("id", "No conversation found with session ID: id");
        assert_eq!(r["subtype"], "error_during_execution");
        assert_eq!(r["is_error"], true);
        assert_eq!(r["total_cost_usd"], 0);
        assert_eq!(r["errors"][0], "No conversation found with session ID: id");
    }

    #[test]
    fn assistant_shape() {
        let a = assistant("s", "msg_1", Some("req_1"), text_block("hi"), 4);
        assert_eq!(a["message"]["content"][0]["text"], "hi");
        assert_eq!(a["message"]["model"], MODEL);
        assert_eq!(a["message"]["stop_reason"], Value::Null);
        assert_eq!(a["request_id"], "req_1");
        assert_eq!(a["parent_tool_use_id"], Value::Null);
        let t = assistant(
            "s",
            "msg_1",
            None,
            tool_use_block("t", "Bash", &json!({})),
            4,
        );
        assert!(t.get("request_id").is_none());
    }

    #[test]
    fn can_use_tool_shape() {
        let request = ToolRequest {
            tool_name: "Bash".into(),
            input: json!({ "command": "touch m", "description": "d" }),
            description: "d".into(),
            blocked_path: Some("/p/m".into()),
            rule: "touch m *".into(),
            cwd: "/p".into(),
            tool_use_id: "toolu_1".into(),
        };
        let r = can_use_tool("u", &request);
        let mut expected = vec![
            "blocked_path",
            "description",
            "display_name",
            "input",
            "permission_suggestions",
            "subtype",
            "tool_name",
            "tool_use_id",
        ];
        expected.sort_unstable();
        assert_eq!(keys(&r["request"]), expected);
        assert_eq!(r["request"]["input"]["command"], "touch m");
    }
}
