//! Slash commands sent as user messages, which the real CLI runs itself:
//!
//! - `/compact [instructions]`: `system/status` "compacting", `system/status` with
//!   `compact_result`, `system/init`, `system/compact_boundary` (`compact_metadata` with
//!   `trigger: "manual"` and `pre_tokens`), the synthetic summary and the command's output as
//!   `user` messages, and a `result` with an empty `result`. The summary costs one API call
//!   (the context in, the summary out). The session id is unchanged.
//! - `/clear` (also `/reset`, `/new`): a new conversation id, which the following `system/init`
//!   and `result` carry (2.1.197 prints no `conversation_reset`), a synthetic "(no content)"
//!   assistant message, and a `result` with an empty `result`. The transcript continues under
//!   the new id; the old one stays on disk.
//!
//! Other `/…` messages are plain text.

use std::time::Instant;

use serde_json::{Value, json};

use super::{Runner, Turn};
use crate::cost::{Tokens, tokens};
use crate::input::UserMessage;
use crate::protocol::{self, Ending};
use crate::transcript::Transcript;

/// A slash command fake-claude runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    Compact,
    Clear,
}

impl Command {
    pub(super) fn parse(text: &str) -> Option<Command> {
        let name = text.trim().strip_prefix('/')?.split_whitespace().next()?;
        match name {
            "compact" => Some(Command::Compact),
            "clear" | "reset" | "new" => Some(Command::Clear),
            _ => None,
        }
    }
}

impl Runner {
    pub(super) fn slash(&mut self, command: Command, message: &UserMessage) {
        let turn = Turn::new(message.text.len());
        match command {
            Command::Compact => self.compact(turn, message),
            Command::Clear => self.clear(turn, message),
        }
    }

    fn compact(&mut self, mut turn: Turn, message: &UserMessage) {
        let sid = self.session_id().to_owned();
        self.emit(&protocol::status(&sid, json!("compacting"), &[]));
        let started = Instant::now();
        let pre_tokens = tokens(self.context_bytes);
        let summary = format!(
            "This session is being continued from a previous conversation that ran out of \
             context. The summary below covers the earlier portion of the conversation.\n\n\
             fake-claude summary: {pre_tokens} tokens of conversation were compacted.\n\n\
             Continue the conversation from where it left off without asking the user any \
             further questions."
        );
        let usage = Tokens {
            input: pre_tokens,
            output: tokens(summary.len()),
        };
        turn.api_calls = 0;
        turn.api_time = started.elapsed();
        self.emit(&protocol::status(
            &sid,
            Value::Null,
            &[("compact_result", json!("success"))],
        ));
        self.emit_init();
        self.record_input(message);
        let boundary = protocol::compact_boundary(
            &sid,
            pre_tokens,
            usage.output,
            super::millis(started.elapsed()),
        );
        self.emit_recorded(&boundary);
        let summary_event = protocol::user_text(
            &sid,
            json!(summary),
            &[("isReplay", json!(false)), ("isSynthetic", json!(true))],
        );
        self.emit_recorded(&summary_event);
        let output = protocol::user_text(
            &sid,
            json!("<local-command-stdout>Compacted </local-command-stdout>"),
            &[("isReplay", json!(true))],
        );
        self.emit_recorded(&output);
        self.context_bytes = summary.len();
        self.turns_seen = 1;
        self.last_failed = false;
        self.totals.add(usage);
        self.finish(&turn.stats(usage), &Ending::Command);
    }

    fn clear(&mut self, turn: Turn, message: &UserMessage) {
        let id = protocol::new_uuid();
        self.opts.init.session_id = id.clone();
        self.transcript = Transcript::new(self.opts.locator.path(&id));
        self.last_uuid = None;
        self.context_bytes = 0;
        self.turns_seen = 0;
        self.last_failed = false;
        self.emit_init();
        // The command itself is not part of the new conversation.
        if self.opts.replay_user_messages {
            let uuid = message.uuid.clone().unwrap_or_else(protocol::new_uuid);
            self.emit(&protocol::user_replay(&id, &uuid, &message.content));
        }
        let event = protocol::synthetic_assistant(&id, "(no content)");
        self.emit_recorded(&event);
        self.finish(&turn.stats(Tokens::default()), &Ending::Command);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(Command::parse("/compact"), Some(Command::Compact));
        assert_eq!(
            Command::parse("  /compact keep the tests "),
            Some(Command::Compact)
        );
        assert_eq!(Command::parse("/clear"), Some(Command::Clear));
        assert_eq!(Command::parse("/reset"), Some(Command::Clear));
        assert_eq!(Command::parse("/cost"), None);
        assert_eq!(Command::parse("compact"), None);
        assert_eq!(Command::parse("/"), None);
    }
}
