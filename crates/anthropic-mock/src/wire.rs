//! The Anthropic Messages API's wire format: a whole message as JSON, or a stream of server-sent events.

use std::time::Duration;

use serde_json::{Value, json};

use crate::script::{Block, Reply};

/// One server-sent event, written after `delay`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub delay: Duration,
    pub event: &'static str,
    pub data: Value,
}

impl Frame {
    fn now(event: &'static str, data: Value) -> Self {
        Frame {
            delay: Duration::ZERO,
            event,
            data,
        }
    }

    /// `event: <name>\ndata: <json>\n\n`.
    pub fn encode(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.event, self.data)
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

fn block_json(block: &Block) -> Value {
    match block {
        Block::Text { chunks } => json!({"type": "text", "text": chunks.concat()}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
    }
}

/// The reply as one JSON message (a request without `stream: true`).
pub(crate) fn message(reply: &Reply, id: &str, model: &str) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.blocks.iter().map(block_json).collect::<Vec<_>>(),
        "stop_reason": reply.stop_reason,
        "stop_sequence": null,
        "usage": usage(reply.input_tokens, reply.output_tokens),
    })
}

/// Splits a string in two at a character boundary near its middle.
fn halves(s: &str) -> (&str, &str) {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    s.split_at(mid)
}

/// The reply as the events of a streamed message: `message_start`, `ping`, per block `content_block_start`,
/// `content_block_delta`s (`text_delta`, or `input_json_delta` for `tool_use`) and `content_block_stop`, then
/// `message_delta` (stop reason, output tokens) and `message_stop`.
pub(crate) fn events(reply: &Reply, id: &str, model: &str) -> Vec<Frame> {
    let mut out = vec![
        Frame::now(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage(reply.input_tokens, 1),
            }}),
        ),
        Frame::now("ping", json!({"type": "ping"})),
    ];
    for (index, block) in reply.blocks.iter().enumerate() {
        match block {
            Block::Text { chunks } => {
                out.push(Frame::now(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                ));
                for (i, chunk) in chunks.iter().enumerate() {
                    out.push(Frame {
                        delay: if i == 0 { Duration::ZERO } else { reply.chunk_delay },
                        event: "content_block_delta",
                        data: json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": chunk}}),
                    });
                }
            }
            Block::ToolUse { id, name, input } => {
                out.push(Frame::now(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                ));
                let input = input.to_string();
                let (a, b) = halves(&input);
                for part in ["", a, b] {
                    out.push(Frame::now(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": part}}),
                    ));
                }
            }
        }
        out.push(Frame::now(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(Frame::now(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": reply.stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": reply.output_tokens}}),
    ));
    out.push(Frame::now("message_stop", json!({"type": "message_stop"})));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::script::{Conversation, Script, reply};

    #[test]
    fn tool_use_streams_its_input_as_json_deltas() {
        let conv = Conversation {
            last_user_text: Some("usetool touch é".into()),
            turns_seen: 1,
            ..Default::default()
        };
        let r = reply(
            &Script::UseTool {
                command: "touch é".into(),
            },
            &conv,
            || "toolu_1".into(),
        )
        .unwrap();
        let evs = events(&r, "msg_1", "m");
        let names: Vec<_> = evs.iter().map(|f| f.event).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let json: String = evs
            .iter()
            .filter_map(|f| f.data["delta"]["partial_json"].as_str().map(str::to_owned))
            .collect();
        let input: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(input["command"], "touch é");
        assert_eq!(evs[7].data["delta"]["stop_reason"], "tool_use");
        assert!(evs[0].encode().starts_with("event: message_start\ndata: {"));
        assert!(evs[0].encode().ends_with("}\n\n"));
    }

    #[test]
    fn slow_text_waits_between_deltas() {
        let conv = Conversation {
            last_user_text: Some("slow 3 7".into()),
            turns_seen: 1,
            ..Default::default()
        };
        let r = reply(
            &Script::Slow {
                chunks: 3,
                delay_ms: 7,
            },
            &conv,
            String::new,
        )
        .unwrap();
        let delays: Vec<_> = events(&r, "msg_1", "m")
            .iter()
            .filter(|f| f.event == "content_block_delta")
            .map(|f| f.delay.as_millis())
            .collect();
        assert_eq!(delays, [0, 7, 7]);
        let msg = message(&r, "msg_1", "m");
        assert_eq!(msg["content"][0]["text"], "slow-1/3 slow-2/3 slow-3/3");
        assert_eq!(msg["usage"]["output_tokens"], 3);
    }
}
