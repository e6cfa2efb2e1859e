//! Reading a Messages request's conversation and choosing the scripted reply.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The tool `usemcp` calls when no tool name follows the keyword.
pub const DEFAULT_MCP_TOOL: &str = "mcp__iris__list_teams";
/// The command `usetool` runs when no command follows the keyword.
pub const DEFAULT_TOOL_COMMAND: &str = "echo mock-tool-ran";
/// How many characters of an MCP tool's result `after mcp:` quotes.
pub const MCP_RESULT_QUOTE_CHARS: usize = 200;
/// `input_tokens` reported per user turn seen in the request (at least one turn is counted).
pub const INPUT_TOKENS_PER_TURN: u64 = 100;
/// `output_tokens` reported per `tool_use` block (on top of one per word of text).
pub const OUTPUT_TOKENS_PER_TOOL_USE: u64 = 10;

/// The scripted behaviour the mock chose for a `POST /v1/messages` request (see the crate's front page for the
/// keywords).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Script {
    /// `echo: <text> (turns seen: N)`.
    Echo,
    /// Keyword `slow [chunks] [delay_ms]`: text deltas `slow-1/N`, ` slow-2/N`, … with a delay between them.
    Slow {
        /// How many text deltas.
        chunks: u32,
        /// The delay between two deltas, in milliseconds.
        delay_ms: u64,
    },
    /// Keyword `usetool [command]`: a `Bash` `tool_use` block running `command`.
    UseTool {
        /// The shell command.
        command: String,
    },
    /// The request carried the result of a (non-MCP) tool: `after tool: <result> (turns seen: N)`.
    AfterTool,
    /// Keyword `usemcp [tool] [json input]`: a `tool_use` block of that tool.
    UseMcp {
        /// The tool's full name, e.g. `mcp__iris__list_teams`.
        tool: String,
    },
    /// The request carried the result of an `mcp__…` tool: `after mcp: <first 200 characters of the result>`.
    AfterMcp,
    /// Keyword `api-error <status>`: that HTTP status with Anthropic's error body.
    ApiError {
        /// The HTTP status.
        status: u16,
    },
    /// Keyword `blocks a|b|c`: one message with a text block per `|`-separated part.
    Blocks {
        /// The blocks' texts.
        texts: Vec<String>,
    },
}

/// The result of a tool the conversation's last user turn carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolResultSeen {
    /// The name of the `tool_use` the result answers, when the request still holds it.
    pub tool_name: Option<String>,
    /// The result's text (text blocks joined with newlines).
    pub text: String,
}

/// What the mock reads from a request's `messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Conversation {
    /// The last real user text (system reminders removed), when the last user turn is a text.
    pub last_user_text: Option<String>,
    /// The tool result, when the last user turn is a tool result.
    pub tool_result: Option<ToolResultSeen>,
    /// User messages with real text (not tool results only, not the CLI's injected reminders).
    pub turns_seen: usize,
}

const REMINDER_OPEN: &str = "<system-reminder>";
const REMINDER_CLOSE: &str = "</system-reminder>";
/// Texts the CLI itself puts in user messages, which are not turns.
const INJECTED_PREFIXES: &[&str] = &["[Request interrupted by user"];

/// A text without its `<system-reminder>…</system-reminder>` spans, trimmed; `None` when nothing real is left.
fn real_text(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(REMINDER_OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + REMINDER_OPEN.len()..];
        rest = match after.find(REMINDER_CLOSE) {
            Some(end) => &after[end + REMINDER_CLOSE.len()..],
            None => "",
        };
    }
    out.push_str(rest);
    let trimmed = out.trim();
    if trimmed.is_empty() || INJECTED_PREFIXES.iter().any(|p| trimmed.starts_with(p)) {
        None
    } else {
        Some(trimmed.to_owned())
    }
}

fn blocks(message: &Value) -> Vec<&Value> {
    match message.get("content") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    }
}

/// The last real text of a user message: its content string, or its last text block that is not a reminder.
fn message_text(message: &Value) -> Option<String> {
    blocks(message)
        .into_iter()
        .filter_map(|b| match b {
            Value::String(s) => real_text(s),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                o.get("text").and_then(Value::as_str).and_then(real_text)
            }
            _ => None,
        })
        .next_back()
}

/// The text of a `tool_result` block's content (a string, or text blocks joined with newlines).
fn tool_result_text(block: &Value) -> String {
    match block.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// Reads a request's `messages`.
pub(crate) fn analyse(messages: &[Value]) -> Conversation {
    let turns_seen = messages
        .iter()
        .filter(|m| role(m) == Some("user") && message_text(m).is_some())
        .count();
    let mut conv = Conversation {
        turns_seen,
        ..Conversation::default()
    };
    for message in messages.iter().rev().filter(|m| role(m) == Some("user")) {
        if let Some(text) = message_text(message) {
            conv.last_user_text = Some(text);
            return conv;
        }
        let result = blocks(message)
            .into_iter()
            .rfind(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
        if let Some(result) = result {
            let id = result.get("tool_use_id").and_then(Value::as_str);
            conv.tool_result = Some(ToolResultSeen {
                tool_name: id.and_then(|id| tool_name(messages, id)),
                text: tool_result_text(result),
            });
            return conv;
        }
        // A user message holding only reminders: look further back.
    }
    conv
}

/// The name of the `tool_use` block with this id in the assistant messages.
fn tool_name(messages: &[Value], id: &str) -> Option<String> {
    messages
        .iter()
        .filter(|m| role(m) == Some("assistant"))
        .flat_map(blocks)
        .find(|b| {
            b.get("type").and_then(Value::as_str) == Some("tool_use")
                && b.get("id").and_then(Value::as_str) == Some(id)
        })
        .and_then(|b| b.get("name").and_then(Value::as_str))
        .map(str::to_owned)
}

/// The whitespace-separated tokens of a text with their byte offsets.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

/// Defaults for the `slow` script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlowDefaults {
    pub chunks: u32,
    pub delay: Duration,
}

/// Chooses the script for a conversation. Keywords are whole whitespace-separated tokens of the last user text,
/// tried in this order: `api-error`, `usetool`, `usemcp`, `blocks`, `slow`; anything else echoes.
pub(crate) fn choose(conv: &Conversation, slow: SlowDefaults) -> Script {
    if let Some(result) = &conv.tool_result {
        return match &result.tool_name {
            Some(name) if name.starts_with("mcp__") => Script::AfterMcp,
            _ => Script::AfterTool,
        };
    }
    let text = conv.last_user_text.as_deref().unwrap_or("");
    let toks = tokens(text);
    let find = |keyword: &str| {
        toks.iter()
            .position(|(_, t)| *t == keyword)
            .map(|i| (&toks[i + 1..], text[toks[i].0 + keyword.len()..].trim()))
    };
    if let Some((args, _)) = find("api-error") {
        let status = args
            .first()
            .and_then(|(_, t)| t.parse::<u16>().ok())
            .filter(|s| (400..=599).contains(s));
        return Script::ApiError {
            status: status.unwrap_or(500),
        };
    }
    if let Some((_, rest)) = find("usetool") {
        let command = if rest.is_empty() {
            DEFAULT_TOOL_COMMAND
        } else {
            rest
        };
        return Script::UseTool {
            command: command.to_owned(),
        };
    }
    if let Some((args, _)) = find("usemcp") {
        let tool = args.first().map_or(DEFAULT_MCP_TOOL, |(_, t)| t);
        return Script::UseMcp {
            tool: tool.to_owned(),
        };
    }
    if let Some((_, rest)) = find("blocks") {
        let mut texts: Vec<String> = rest
            .split('|')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if texts.is_empty() {
            texts = vec!["a".into(), "b".into(), "c".into()];
        }
        return Script::Blocks { texts };
    }
    if let Some((args, _)) = find("slow") {
        let num = |i: usize| args.get(i).and_then(|(_, t)| t.parse::<u64>().ok());
        let chunks = num(0)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(slow.chunks.max(1));
        let delay_ms =
            num(1).unwrap_or_else(|| u64::try_from(slow.delay.as_millis()).unwrap_or(u64::MAX));
        return Script::Slow { chunks, delay_ms };
    }
    Script::Echo
}

/// The `usemcp` tool's input: the JSON object after the tool name, or `{}`.
pub(crate) fn mcp_input(text: &str) -> Value {
    let toks = tokens(text);
    let Some(i) = toks.iter().position(|(_, t)| *t == "usemcp") else {
        return json!({});
    };
    let Some((offset, name)) = toks.get(i + 1) else {
        return json!({});
    };
    let rest = text[offset + name.len()..].trim();
    match serde_json::from_str::<Value>(rest) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => Value::Object(Map::new()),
    }
}

/// One content block of a scripted reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// A text block, streamed as one `text_delta` per chunk.
    Text { chunks: Vec<String> },
    /// A `tool_use` block.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

impl Block {
    fn text(text: String) -> Self {
        Block::Text { chunks: vec![text] }
    }
}

/// A scripted assistant message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    /// The delay before every text delta but the first (the `slow` script).
    pub chunk_delay: Duration,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Reply {
    fn new(
        blocks: Vec<Block>,
        stop_reason: &'static str,
        chunk_delay: Duration,
        turns_seen: usize,
    ) -> Self {
        let words: usize = blocks
            .iter()
            .map(|b| match b {
                Block::Text { chunks } => chunks.concat().split_whitespace().count(),
                Block::ToolUse { .. } => 0,
            })
            .sum();
        let tool_uses = blocks
            .iter()
            .filter(|b| matches!(b, Block::ToolUse { .. }))
            .count();
        let turns = u64::try_from(turns_seen.max(1)).unwrap_or(u64::MAX);
        Reply {
            blocks,
            stop_reason,
            chunk_delay,
            input_tokens: INPUT_TOKENS_PER_TURN.saturating_mul(turns),
            output_tokens: u64::try_from(words).unwrap_or(u64::MAX)
                + OUTPUT_TOKENS_PER_TOOL_USE * u64::try_from(tool_uses).unwrap_or(u64::MAX),
        }
    }

    /// The texts of the text blocks, joined with newlines.
    pub fn text(&self) -> String {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text { chunks } => Some(chunks.concat()),
                Block::ToolUse { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An Anthropic API error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    /// The error for a status, with the `error.type` the real API uses for it.
    pub fn scripted(status: u16) -> Self {
        let (kind, message) = match status {
            400 => (
                "invalid_request_error",
                "mock: invalid request (scripted api-error 400)",
            ),
            401 => (
                "authentication_error",
                "mock: invalid x-api-key (scripted api-error 401)",
            ),
            402 => (
                "billing_error",
                "mock: billing error (scripted api-error 402)",
            ),
            403 => (
                "permission_error",
                "mock: permission denied (scripted api-error 403)",
            ),
            404 => (
                "not_found_error",
                "mock: not found (scripted api-error 404)",
            ),
            413 => (
                "request_too_large",
                "mock: request too large (scripted api-error 413)",
            ),
            429 => (
                "rate_limit_error",
                "mock: rate limited (scripted api-error 429)",
            ),
            529 => ("overloaded_error", "Overloaded"),
            _ => (
                "api_error",
                "mock: internal server error (scripted api-error)",
            ),
        };
        ApiError {
            status,
            kind,
            message: message.to_owned(),
        }
    }

    /// The body: `{"type":"error","error":{"type":…,"message":…}}`.
    pub fn body(&self) -> Value {
        json!({"type": "error", "error": {"type": self.kind, "message": self.message}})
    }
}

/// The reply a script makes.
pub(crate) fn reply(
    script: &Script,
    conv: &Conversation,
    tool_id: impl FnOnce() -> String,
) -> Result<Reply, ApiError> {
    let n = conv.turns_seen;
    let user_text = conv.last_user_text.as_deref().unwrap_or("");
    let result_text = conv.tool_result.as_ref().map_or("", |r| r.text.trim());
    let text = |t: String| {
        Ok(Reply::new(
            vec![Block::text(t)],
            "end_turn",
            Duration::ZERO,
            n,
        ))
    };
    match script {
        Script::Echo => text(format!("echo: {user_text} (turns seen: {n})")),
        Script::AfterTool => text(format!("after tool: {result_text} (turns seen: {n})")),
        Script::AfterMcp => {
            let quoted: String = result_text.chars().take(MCP_RESULT_QUOTE_CHARS).collect();
            text(format!("after mcp: {quoted}"))
        }
        Script::Slow { chunks, delay_ms } => {
            let chunks = (1..=*chunks)
                .map(|i| {
                    if i == 1 {
                        format!("slow-{i}/{chunks}")
                    } else {
                        format!(" slow-{i}/{chunks}")
                    }
                })
                .collect();
            Ok(Reply::new(
                vec![Block::Text { chunks }],
                "end_turn",
                Duration::from_millis(*delay_ms),
                n,
            ))
        }
        Script::Blocks { texts } => Ok(Reply::new(
            texts.iter().cloned().map(Block::text).collect(),
            "end_turn",
            Duration::ZERO,
            n,
        )),
        Script::UseTool { command } => {
            let input = json!({"command": command, "description": format!("mock: run {command}")});
            Ok(Reply::new(
                vec![Block::ToolUse {
                    id: tool_id(),
                    name: "Bash".into(),
                    input,
                }],
                "tool_use",
                Duration::ZERO,
                n,
            ))
        }
        Script::UseMcp { tool } => {
            let input = mcp_input(user_text);
            Ok(Reply::new(
                vec![Block::ToolUse {
                    id: tool_id(),
                    name: tool.clone(),
                    input,
                }],
                "tool_use",
                Duration::ZERO,
                n,
            ))
        }
        Script::ApiError { status } => Err(ApiError::scripted(*status)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SLOW: SlowDefaults = SlowDefaults {
        chunks: 20,
        delay: Duration::from_millis(100),
    };

    fn user(blocks: Value) -> Value {
        json!({"role": "user", "content": blocks})
    }

    fn reminder(s: &str) -> Value {
        json!({"type": "text", "text": format!("<system-reminder>\n{s}\n</system-reminder>\n\n")})
    }

    fn text(s: &str) -> Value {
        json!({"type": "text", "text": s})
    }

    /// The shape the real CLI 2.1.197 sends for a second turn.
    fn second_turn() -> Vec<Value> {
        vec![
            user(json!([
                reminder("As you answer... usetool nope"),
                text("hi there")
            ])),
            json!({"role": "system", "content": "Available agent types... slow"}),
            json!({"role": "assistant", "content": [text("echo: hi there (turns seen: 1)")]}),
            user(json!([text("second")])),
        ]
    }

    #[test]
    fn reminders_and_system_messages_are_not_turns() {
        let conv = analyse(&second_turn());
        assert_eq!(conv.turns_seen, 2);
        assert_eq!(conv.last_user_text.as_deref(), Some("second"));
        assert_eq!(choose(&conv, SLOW), Script::Echo);
        let r = reply(&Script::Echo, &conv, String::new).unwrap();
        assert_eq!(r.text(), "echo: second (turns seen: 2)");
        assert_eq!((r.input_tokens, r.output_tokens), (200, 5));
    }

    #[test]
    fn the_last_user_message_wins_even_when_a_system_message_follows() {
        let msgs = vec![
            user(json!([
                reminder("context"),
                text("please usetool ls -la /tmp")
            ])),
            json!({"role": "system", "content": "Available agent types"}),
        ];
        let conv = analyse(&msgs);
        assert_eq!(conv.turns_seen, 1);
        assert_eq!(
            choose(&conv, SLOW),
            Script::UseTool {
                command: "ls -la /tmp".into()
            }
        );
    }

    #[test]
    fn reminders_inside_a_block_and_string_content_are_handled() {
        let msgs =
            vec![json!({"role": "user", "content": "<system-reminder>x</system-reminder> hello"})];
        assert_eq!(analyse(&msgs).last_user_text.as_deref(), Some("hello"));
        let msgs = vec![
            user(json!([text("one")])),
            user(json!([reminder("only a reminder")])),
        ];
        let conv = analyse(&msgs);
        assert_eq!(
            (conv.turns_seen, conv.last_user_text.as_deref()),
            (1, Some("one"))
        );
        let msgs = vec![
            user(json!([text("one")])),
            user(json!([text("[Request interrupted by user]")])),
            user(json!([text("two")])),
        ];
        assert_eq!(analyse(&msgs).turns_seen, 2);
    }

    #[test]
    fn tool_results_continue_the_tool_script() {
        let mut msgs = second_turn();
        msgs.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]}));
        msgs.push(user(json!([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "out\n", "is_error": false}, reminder("r")])));
        let conv = analyse(&msgs);
        assert_eq!(conv.turns_seen, 2);
        assert_eq!(conv.last_user_text, None);
        assert_eq!(choose(&conv, SLOW), Script::AfterTool);
        assert_eq!(
            reply(&Script::AfterTool, &conv, String::new)
                .unwrap()
                .text(),
            "after tool: out (turns seen: 2)"
        );

        msgs.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "mcp__iris__list_teams", "input": {}}]}));
        let long = "x".repeat(300);
        msgs.push(user(json!([{"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": long}]}])));
        let conv = analyse(&msgs);
        assert_eq!(choose(&conv, SLOW), Script::AfterMcp);
        assert_eq!(
            reply(&Script::AfterMcp, &conv, String::new).unwrap().text(),
            format!("after mcp: {}", "x".repeat(200))
        );
    }

    #[test]
    fn keywords() {
        let conv = |t: &str| Conversation {
            last_user_text: Some(t.into()),
            turns_seen: 1,
            ..Conversation::default()
        };
        assert_eq!(
            choose(&conv("api-error 429"), SLOW),
            Script::ApiError { status: 429 }
        );
        assert_eq!(
            choose(&conv("now api-error 529 please"), SLOW),
            Script::ApiError { status: 529 }
        );
        assert_eq!(
            choose(&conv("api-error"), SLOW),
            Script::ApiError { status: 500 }
        );
        assert_eq!(
            choose(&conv("usetool"), SLOW),
            Script::UseTool {
                command: DEFAULT_TOOL_COMMAND.into()
            }
        );
        assert_eq!(
            choose(&conv("usemcp"), SLOW),
            Script::UseMcp {
                tool: DEFAULT_MCP_TOOL.into()
            }
        );
        assert_eq!(
            choose(&conv("usemcp mcp__x__y {\"a\":1}"), SLOW),
            Script::UseMcp {
                tool: "mcp__x__y".into()
            }
        );
        assert_eq!(mcp_input("usemcp mcp__x__y {\"a\": 1}"), json!({"a": 1}));
        assert_eq!(mcp_input("usemcp mcp__x__y"), json!({}));
        assert_eq!(
            choose(&conv("blocks a | b|c"), SLOW),
            Script::Blocks {
                texts: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        assert_eq!(
            choose(&conv("be slow"), SLOW),
            Script::Slow {
                chunks: 20,
                delay_ms: 100
            }
        );
        assert_eq!(
            choose(&conv("slow 5 10"), SLOW),
            Script::Slow {
                chunks: 5,
                delay_ms: 10
            }
        );
        assert_eq!(choose(&conv("slowly"), SLOW), Script::Echo);
        assert_eq!(choose(&Conversation::default(), SLOW), Script::Echo);
    }

    #[test]
    fn usage_is_deterministic() {
        let conv = Conversation {
            last_user_text: Some("slow 3 0".into()),
            turns_seen: 3,
            ..Conversation::default()
        };
        let r = reply(&choose(&conv, SLOW), &conv, String::new).unwrap();
        assert_eq!(r.text(), "slow-1/3 slow-2/3 slow-3/3");
        assert_eq!((r.input_tokens, r.output_tokens), (300, 3));
        let conv = Conversation {
            last_user_text: Some("usetool touch x".into()),
            turns_seen: 0,
            ..Conversation::default()
        };
        let r = reply(&choose(&conv, SLOW), &conv, || "toolu_x".into()).unwrap();
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.stop_reason),
            (100, 10, "tool_use")
        );
    }

    #[test]
    fn api_errors_have_the_real_types() {
        assert_eq!(ApiError::scripted(400).kind, "invalid_request_error");
        assert_eq!(ApiError::scripted(429).kind, "rate_limit_error");
        assert_eq!(ApiError::scripted(529).kind, "overloaded_error");
        assert_eq!(ApiError::scripted(500).kind, "api_error");
        assert_eq!(
            ApiError::scripted(529).body()["error"]["message"],
            "Overloaded"
        );
    }
}
