//! One API call's message as the CLI prints it: an `assistant` event per content block when the
//! block is complete, and with `--include-partial-messages` the raw stream (`system/status`
//! "requesting", `message_start`, `content_block_start`, deltas, `content_block_stop`,
//! `message_delta`, `message_stop`) as it is made. The order is the recorded one: a block's
//! `assistant` event comes before its `content_block_stop`, and a tool use's permission request
//! before it too.

use std::time::Instant;

use serde_json::{Value, json};

use super::{Runner, Turn};
use crate::cost::{Tokens, tokens};
use crate::protocol;

/// The API message being streamed.
#[derive(Debug)]
pub(super) struct Msg {
    id: String,
    request_id: String,
    input_tokens: u64,
    out_bytes: usize,
    requested: Instant,
    /// Whether `message_start` was printed.
    started: bool,
    /// The index of the next content block.
    blocks: usize,
    /// The text so far of the open text block.
    open: Option<String>,
    /// A block whose `content_block_stop` is still to come (a tool use's).
    unclosed: Option<usize>,
}

impl Msg {
    fn new(input_tokens: u64) -> Self {
        Msg {
            id: protocol::new_message_id(),
            request_id: protocol::new_request_id(),
            input_tokens,
            out_bytes: 0,
            requested: Instant::now(),
            started: false,
            blocks: 0,
            open: None,
            unclosed: None,
        }
    }
}

/// `text` as the API streams it: word by word, each piece but the first starting with its space.
pub(super) fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

impl Runner {
    fn stream_raw(&self, event: Value) {
        if self.partial() {
            self.emit(&protocol::stream_event(self.session_id(), event));
        }
    }

    /// Starts an API call (reading everything the turn has so far).
    pub(super) fn request(&mut self, turn: &mut Turn) {
        turn.api_calls += 1;
        turn.msg = Some(Msg::new(tokens(turn.prompt_bytes)));
        if self.partial() {
            self.emit(&protocol::status(
                self.session_id(),
                json!("requesting"),
                &[],
            ));
        }
    }

    /// The message being streamed, and `message_start` printed for it.
    fn started<'t>(&mut self, turn: &'t mut Turn) -> &'t mut Msg {
        if turn.msg.is_none() {
            self.request(turn);
        }
        let msg = turn.msg.get_or_insert_with(|| Msg::new(0));
        if !msg.started {
            msg.started = true;
            let elapsed = msg.requested.elapsed();
            turn.ttft.get_or_insert(elapsed);
            if self.partial() {
                let ms = super::millis(elapsed);
                self.emit(&protocol::message_start(
                    self.session_id(),
                    &msg.id,
                    msg.input_tokens,
                    ms,
                ));
            }
        }
        msg
    }

    /// Opens a text block.
    pub(super) fn open_text(&mut self, turn: &mut Turn) {
        let msg = self.started(turn);
        msg.open = Some(String::new());
        let index = msg.blocks;
        self.stream_raw(json!({
            "type": "content_block_start",
            "index": index,
            "content_block": { "type": "text", "text": "" },
        }));
    }

    /// Streams a piece of the open text block.
    pub(super) fn delta(&mut self, turn: &mut Turn, piece: &str) {
        let msg = self.started(turn);
        let index = msg.blocks;
        msg.open.get_or_insert_with(String::new).push_str(piece);
        self.stream_raw(json!({
            "type": "content_block_delta",
            "index": index,
            "delta": { "type": "text_delta", "text": piece },
        }));
    }

    /// Completes the open text block: its `assistant` event, then `content_block_stop`.
    pub(super) fn close_text(&mut self, turn: &mut Turn) {
        let msg = self.started(turn);
        let text = msg.open.take().unwrap_or_default();
        let index = msg.blocks;
        msg.blocks += 1;
        msg.out_bytes += text.len();
        self.emit_text_block(msg, &text);
        self.stream_raw(json!({ "type": "content_block_stop", "index": index }));
        turn.last_text = Some(text);
    }

    /// One whole text block, streamed word by word.
    pub(super) fn say(&mut self, turn: &mut Turn, text: &str) {
        self.open_text(turn);
        for piece in word_pieces(text) {
            self.delta(turn, piece);
        }
        self.close_text(turn);
    }

    /// A tool use block: streamed, then its `assistant` event; its `content_block_stop` comes
    /// with [`Runner::end_message`], after any permission request.
    pub(super) fn tool_use(&mut self, turn: &mut Turn, id: &str, name: &str, input: &Value) {
        let msg = self.started(turn);
        let index = msg.blocks;
        msg.blocks += 1;
        msg.unclosed = Some(index);
        let json_input = input.to_string();
        msg.out_bytes += json_input.len();
        let event = protocol::assistant(
            self.session_id(),
            &msg.id,
            None,
            protocol::tool_use_block(id, name, input),
            msg.input_tokens,
        );
        self.stream_raw(json!({
            "type": "content_block_start",
            "index": index,
            "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} },
        }));
        self.stream_raw(json!({
            "type": "content_block_delta",
            "index": index,
            "delta": { "type": "input_json_delta", "partial_json": json_input },
        }));
        self.emit_recorded(&event);
    }

    /// Ends the API call: its usage counts for the turn.
    pub(super) fn end_message(&mut self, turn: &mut Turn, stop_reason: &str) {
        let Some(msg) = turn.msg.take() else {
            return;
        };
        let usage = Tokens {
            input: msg.input_tokens,
            output: tokens(msg.out_bytes),
        };
        if let Some(index) = msg.unclosed {
            self.stream_raw(json!({ "type": "content_block_stop", "index": index }));
        }
        if msg.started {
            self.stream_raw(json!({
                "type": "message_delta",
                "delta": { "stop_reason": stop_reason, "stop_sequence": null },
                "usage": { "output_tokens": usage.output },
            }));
            self.stream_raw(json!({ "type": "message_stop" }));
        }
        turn.usage.add(usage);
        turn.out_bytes += msg.out_bytes;
        turn.api_time += msg.requested.elapsed();
    }

    /// An interrupted API call: the text streamed so far comes as an `assistant` event.
    pub(super) fn abort_message(&mut self, turn: &mut Turn) {
        let Some(msg) = turn.msg.take() else {
            return;
        };
        turn.api_time += msg.requested.elapsed();
        if let Some(text) = msg.open.as_deref().filter(|t| !t.is_empty()) {
            self.emit_text_block(&msg, text);
        }
    }

    /// One complete text block of `msg`, as its `assistant` event.
    fn emit_text_block(&mut self, msg: &Msg, text: &str) {
        let event = protocol::assistant(
            self.session_id(),
            &msg.id,
            Some(&msg.request_id),
            protocol::text_block(text),
            msg.input_tokens,
        );
        self.emit_recorded(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_leading_space() {
        assert_eq!(
            word_pieces("after tool: (Bash completed"),
            ["after", " tool:", " (Bash", " completed"]
        );
        assert_eq!(word_pieces("one"), ["one"]);
        assert_eq!(word_pieces(""), Vec::<&str>::new());
        assert_eq!(word_pieces("  x"), [" ", " x"]);
        assert_eq!(word_pieces("a\nb c"), ["a\nb", " c"]);
        assert_eq!(word_pieces("é è").concat(), "é è");
    }
}
