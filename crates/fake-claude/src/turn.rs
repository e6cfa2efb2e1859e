//! The turn runner: answers queued user messages one at a time, following their directives.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::directives::{self, Directive};
use crate::input::UserMessage;
use crate::protocol::{self, Ending, InitInfo, TurnStats, log};
use crate::signals;
use crate::state::Shared;
use crate::transcript::{self, Transcript};

/// How often waits check for an interrupt.
const POLL: Duration = Duration::from_millis(10);
/// How long `!permission` waits for the host's answer.
const PERMISSION_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit(i32),
}

/// The running turn was interrupted by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interrupted;

/// Options that shape the events of every turn.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub init: InitInfo,
    pub replay_user_messages: bool,
    pub include_partial_messages: bool,
}

/// Runs turns for one session.
#[derive(Debug)]
pub struct Runner {
    shared: Arc<Shared>,
    opts: RunnerOptions,
    transcript: Transcript,
    init_sent: bool,
    last_uuid: Option<String>,
    requests: u64,
    /// `!grandchild` processes, kept so they are not reaped while we live.
    children: Vec<Child>,
}

/// The state of one turn.
#[derive(Debug)]
struct Turn {
    in_bytes: usize,
    out_bytes: usize,
    message_id: String,
    /// Content blocks sent so far in this turn's message (for `stream_event` indices).
    blocks: usize,
    denials: Vec<Value>,
}

impl Runner {
    pub fn new(shared: Arc<Shared>, opts: RunnerOptions, transcript: Transcript) -> Self {
        Runner {
            shared,
            opts,
            transcript,
            init_sent: false,
            last_uuid: None,
            requests: 0,
            children: Vec::new(),
        }
    }

    fn session_id(&self) -> &str {
        &self.opts.init.session_id
    }

    /// Answers one user message, ending with exactly one `result` (unless the directive makes
    /// the process crash, hang or wedge).
    pub fn run(&mut self, message: &UserMessage) -> Flow {
        let started = Instant::now();
        if directives::parse(&message.text) == Ok(Some(Directive::Wedge)) {
            // Before any output, so a host that has seen this turn begin cannot get answers.
            self.shared.wedge();
        }
        if !self.init_sent {
            self.init_sent = true;
            self.shared.out.event(&protocol::init(&self.opts.init));
        }
        let uuid = message.uuid.clone().unwrap_or_else(protocol::new_uuid);
        let user = json!({
            "type": "user",
            "message": { "role": "user", "content": message.content },
            "uuid": uuid,
        });
        self.record(&user);
        if self.opts.replay_user_messages {
            self.shared.out.event(&protocol::user_replay(
                self.session_id(),
                &uuid,
                &message.content,
            ));
        }

        let mut turn = Turn {
            in_bytes: message.text.len(),
            out_bytes: 0,
            message_id: protocol::new_message_id(),
            blocks: 0,
            denials: Vec::new(),
        };
        let (ending, flow) = match self.body(&mut turn, message) {
            Ok(done) => done,
            Err(Interrupted) => (Ending::Interrupted, Flow::Continue),
        };
        if self.opts.include_partial_messages && turn.blocks > 0 && ending != Ending::Interrupted {
            self.end_partial_message(&turn);
        }
        let stats = TurnStats {
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            in_bytes: turn.in_bytes,
            out_bytes: turn.out_bytes,
            permission_denials: turn.denials,
        };
        let result = protocol::result(self.session_id(), &ending, &stats);
        self.record(&result);
        let out = self.shared.out;
        self.shared.finish_turn(|| out.event(&result));
        flow
    }

    fn body(
        &mut self,
        turn: &mut Turn,
        message: &UserMessage,
    ) -> Result<(Ending, Flow), Interrupted> {
        let echo = format!("echo: {}", message.text);
        let directive = match directives::parse(&message.text) {
            Ok(directive) => directive,
            Err(e) => {
                let text = format!("fake-claude: {e}");
                self.say(turn, &text, Some("end_turn"))?;
                return Ok((Ending::ApiError { text, status: 400 }, Flow::Continue));
            }
        };
        let mut flow = Flow::Continue;
        let text = match directive {
            None | Some(Directive::Garbage) | Some(Directive::Sleep(_)) => {
                match directive {
                    Some(Directive::Sleep(ms)) => self.wait(Duration::from_millis(ms))?,
                    Some(Directive::Garbage) => self.garbage(),
                    _ => {}
                }
                self.say(turn, &echo, Some("end_turn"))?;
                echo
            }
            Some(Directive::Stream { chunks, delay_ms }) => {
                let mut texts = Vec::new();
                for i in 1..=chunks {
                    if i > 1 {
                        self.wait(Duration::from_millis(delay_ms))?;
                    }
                    let chunk = format!("chunk {i}");
                    let stop = (i == chunks).then_some("end_turn");
                    self.say(turn, &chunk, stop)?;
                    texts.push(chunk);
                }
                texts.join("\n")
            }
            Some(Directive::Stall) => {
                self.say(turn, "chunk 1", None)?;
                return Err(self.wait_forever());
            }
            Some(Directive::Hang) => return Err(self.wait_forever()),
            Some(Directive::Wedge) => {
                self.shared.wedge();
                loop {
                    thread::sleep(Duration::from_secs(3600));
                }
            }
            Some(Directive::Crash(code)) => self.crash(turn, code),
            Some(Directive::Big(bytes)) => {
                let text = "x".repeat(bytes);
                self.say(turn, &text, Some("end_turn"))?;
                text
            }
            Some(Directive::Error) => {
                let text = "simulated API error".to_owned();
                self.say(turn, &text, Some("stop_sequence"))?;
                return Ok((Ending::ApiError { text, status: 500 }, flow));
            }
            Some(Directive::Grandchild) => {
                let spawned = Command::new("sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                match spawned {
                    Ok(child) => {
                        let text = format!("{echo} pid={}", child.id());
                        self.children.push(child);
                        self.say(turn, &text, Some("end_turn"))?;
                        text
                    }
                    Err(e) => {
                        let text = format!("fake-claude: cannot spawn `sleep 3600`: {e}");
                        self.say(turn, &text, Some("end_turn"))?;
                        return Ok((Ending::ApiError { text, status: 500 }, flow));
                    }
                }
            }
            Some(Directive::IgnoreSigterm) => {
                if let Err(e) = signals::ignore_sigterm() {
                    log(&format!("fake-claude: cannot ignore SIGTERM: {e}"));
                }
                self.say(turn, &echo, Some("end_turn"))?;
                echo
            }
            Some(Directive::ExitAfterReply) => {
                flow = Flow::Exit(0);
                self.say(turn, &echo, Some("end_turn"))?;
                echo
            }
            Some(Directive::Permission(tool)) => {
                let verdict = self.ask_permission(turn, &tool)?;
                let text = format!("permission {tool}: {verdict}");
                self.say(turn, &text, Some("end_turn"))?;
                text
            }
        };
        Ok((Ending::Success { text }, flow))
    }

    /// Sends one assistant event with one text block (preceded by its `stream_event`s with
    /// `--include-partial-messages`) and records it.
    fn say(
        &mut self,
        turn: &mut Turn,
        text: &str,
        stop_reason: Option<&str>,
    ) -> Result<(), Interrupted> {
        if self.shared.interrupted() {
            return Err(Interrupted);
        }
        if self.opts.include_partial_messages {
            self.stream_block(turn, text);
        }
        turn.blocks += 1;
        turn.out_bytes += text.len();
        let event = protocol::assistant(
            self.session_id(),
            &turn.message_id,
            protocol::text_block(text),
            stop_reason,
            turn.in_bytes,
            text.len(),
        );
        self.shared.out.event(&event);
        self.record(&event);
        Ok(())
    }

    fn stream_block(&self, turn: &Turn, text: &str) {
        let sid = self.session_id();
        let out = self.shared.out;
        if turn.blocks == 0 {
            out.event(&protocol::stream_event(
                sid,
                json!({
                    "type": "message_start",
                    "message": {
                        "id": turn.message_id, "type": "message", "role": "assistant",
                        "model": protocol::MODEL, "content": [], "stop_reason": null,
                        "stop_sequence": null,
                        "usage": { "input_tokens": protocol::tokens(turn.in_bytes), "output_tokens": 0 },
                    }
                }),
            ));
        }
        let index = turn.blocks;
        for event in [
            json!({ "type": "content_block_start", "index": index, "content_block": { "type": "text", "text": "" } }),
            json!({ "type": "content_block_delta", "index": index, "delta": { "type": "text_delta", "text": text } }),
            json!({ "type": "content_block_stop", "index": index }),
        ] {
            out.event(&protocol::stream_event(sid, event));
        }
    }

    fn end_partial_message(&self, turn: &Turn) {
        let sid = self.session_id();
        let out = self.shared.out;
        out.event(&protocol::stream_event(
            sid,
            json!({
                "type": "message_delta",
                "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                "usage": { "output_tokens": protocol::tokens(turn.out_bytes) },
            }),
        ));
        out.event(&protocol::stream_event(
            sid,
            json!({ "type": "message_stop" }),
        ));
    }

    /// Sleeps for `duration`, waking early if the turn is interrupted.
    fn wait(&self, duration: Duration) -> Result<(), Interrupted> {
        let deadline = Instant::now() + duration;
        loop {
            if self.shared.interrupted() {
                return Err(Interrupted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            thread::sleep(POLL.min(deadline - now));
        }
    }

    /// Waits until the turn is interrupted.
    fn wait_forever(&self) -> Interrupted {
        loop {
            if self.shared.interrupted() {
                return Interrupted;
            }
            thread::sleep(POLL);
        }
    }

    fn garbage(&self) {
        self.shared.out.raw(
            b"[SandboxDebug] hello\n[SandboxDebug] sandbox initialised\n\n{\"type\": \"assistant\", oops\n",
        );
    }

    fn crash(&self, turn: &Turn, code: i32) -> ! {
        log("fatal: simulated crash");
        let partial = format!(
            "{{\"type\":\"assistant\",\"message\":{{\"id\":\"{}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{}\",\"content\":[{{\"type\":\"text\",\"text\":\"partial ans",
            turn.message_id,
            protocol::MODEL
        );
        self.shared.out.raw(partial.as_bytes());
        std::process::exit(code);
    }

    /// Asks the host whether `tool` may run: `allow`, `deny`, `error` or `timeout`.
    fn ask_permission(&mut self, turn: &mut Turn, tool: &str) -> Result<&'static str, Interrupted> {
        self.requests += 1;
        let request_id = format!("perm_{}", self.requests);
        let tool_use_id = format!("toolu_{}", self.requests);
        let answers = self.shared.register_permission(&request_id);
        self.shared
            .out
            .event(&protocol::can_use_tool(&request_id, tool, &tool_use_id));
        let deadline = Instant::now() + PERMISSION_TIMEOUT;
        let response = loop {
            if self.shared.interrupted() {
                self.abandon(&request_id);
                return Err(Interrupted);
            }
            match answers.recv_timeout(POLL) {
                Ok(response) => break Some(response),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    self.abandon(&request_id);
                    break None;
                }
            }
        };
        let Some(response) = response else {
            return Ok("timeout");
        };
        let verdict = match response.get("subtype").and_then(Value::as_str) {
            Some("success") => {
                match response
                    .get("response")
                    .and_then(|r| r.get("behavior"))
                    .and_then(Value::as_str)
                {
                    Some("allow") => "allow",
                    Some("deny") => "deny",
                    _ => "error",
                }
            }
            _ => "error",
        };
        if verdict == "deny" {
            turn.denials.push(json!({
                "tool_name": tool,
                "tool_use_id": tool_use_id,
                "tool_input": {},
            }));
        }
        Ok(verdict)
    }

    fn abandon(&self, request_id: &str) {
        self.shared.unregister_permission(request_id);
        self.shared.out.event(&protocol::control_cancel(request_id));
    }

    /// Appends an event to the transcript with the fields the CLI's transcript lines carry.
    fn record(&mut self, event: &Value) {
        let mut record = event.clone();
        if let Some(map) = record.as_object_mut() {
            map.insert(
                "parentUuid".to_owned(),
                self.last_uuid.clone().map_or(Value::Null, Value::String),
            );
            map.insert("isSidechain".to_owned(), Value::Bool(false));
            map.insert("sessionId".to_owned(), json!(self.opts.init.session_id));
            map.insert("cwd".to_owned(), json!(self.opts.init.cwd));
            map.insert("version".to_owned(), json!(crate::args::VERSION));
            map.insert("timestamp".to_owned(), json!(transcript::timestamp_now()));
        }
        if let Some(uuid) = event.get("uuid").and_then(Value::as_str) {
            self.last_uuid = Some(uuid.to_owned());
        }
        if let Err(e) = self.transcript.append(&record) {
            log(&format!(
                "fake-claude: cannot write the transcript {}: {e}",
                self.transcript.path().display()
            ));
        }
    }
}
