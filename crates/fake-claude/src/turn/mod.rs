//! The turn runner: answers queued user messages one at a time, following their directives.
//!
//! Every turn prints, like the real CLI 2.1.197: `system/init`, then the model's API calls (each
//! an `assistant` event per content block, with `stream_event`s while streaming when
//! `--include-partial-messages` is on), tool calls and their `user` tool results, and exactly one
//! `result`. An interrupt ends the turn with the text streamed so far, a `user` message
//! "[Request interrupted by user]" and an `error_during_execution` result.

mod message;
mod slash;
mod tools;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cost::{Tokens, Totals};
use crate::directives::{self, Directive};
use crate::helper::Relaunch;
use crate::input::UserMessage;
use crate::mcp;
use crate::protocol::{self, Ending, InitInfo, TurnStats, log};
use crate::signals;
use crate::state::Shared;
use crate::transcript::{self, Locator, Transcript};

pub use tools::Permissions;

/// How often waits check for an interrupt.
const POLL: Duration = Duration::from_millis(10);

/// What to do after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit(i32),
}

/// How many characters of an MCP tool's result the `!mcp` answer quotes.
const MCP_QUOTE_CHARS: usize = 200;

/// The running turn was interrupted by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interrupted;

/// Options that shape the events of every turn.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub init: InitInfo,
    pub replay_user_messages: bool,
    pub include_partial_messages: bool,
    /// `--max-budget-usd`, as given.
    pub max_budget_usd: Option<String>,
    pub permissions: Permissions,
    pub locator: Locator,
    /// How to start the `!tool` helper (see `helper.rs`).
    pub relaunch: Option<Relaunch>,
    /// After how long a running tool is reported as a background task.
    pub task_notice_after: Duration,
    /// `FAKE_CLAUDE_TURNS_SEEN`: echoes end with ` (turns seen: N)`, like the recordings' mock
    /// model's.
    pub turns_seen_suffix: bool,
}

/// Runs turns for one process.
#[derive(Debug)]
pub struct Runner {
    shared: Arc<Shared>,
    opts: RunnerOptions,
    transcript: Transcript,
    last_uuid: Option<String>,
    /// The process's running totals.
    totals: Totals,
    /// Bytes of conversation in context (for `/compact`'s `pre_tokens`).
    context_bytes: usize,
    /// The user turns of the conversation so far, this one included while it runs.
    turns_seen: usize,
    /// Whether the last turn ended with a failed API call (stdin EOF then exits 1).
    last_failed: bool,
    /// `!grandchild` processes, kept so they are not reaped while we live.
    children: Vec<Child>,
    /// The connected MCP servers (`--mcp-config`), whose tools `!mcp` calls.
    servers: mcp::Servers,
}

/// The state of one turn.
#[derive(Debug)]
struct Turn {
    started: Instant,
    /// What the next API call reads: the user's text, then the tool results too.
    prompt_bytes: usize,
    /// Text and tool input the model produced.
    out_bytes: usize,
    api_calls: u32,
    api_time: Duration,
    ttft: Option<Duration>,
    usage: Tokens,
    denials: Vec<Value>,
    /// The last complete text block (the result's text).
    last_text: Option<String>,
    /// The API message being streamed.
    msg: Option<message::Msg>,
    /// The tool use being asked about or running (an interrupt then aborts a tool).
    tool: Option<String>,
}

impl Turn {
    fn new(prompt_bytes: usize) -> Self {
        Turn {
            started: Instant::now(),
            prompt_bytes,
            out_bytes: 0,
            api_calls: 0,
            api_time: Duration::ZERO,
            ttft: None,
            usage: Tokens::default(),
            denials: Vec::new(),
            last_text: None,
            msg: None,
            tool: None,
        }
    }

    fn stats(&self, usage: Tokens) -> TurnStats {
        TurnStats {
            duration_ms: millis(self.started.elapsed()),
            duration_api_ms: millis(self.api_time),
            ttft_ms: self.ttft.map_or(0, millis),
            api_calls: self.api_calls,
            usage,
            permission_denials: self.denials.clone(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Runner {
    /// A runner continuing a conversation that holds `context_bytes` of text in `turns_seen`
    /// user turns.
    pub fn new(
        shared: Arc<Shared>,
        opts: RunnerOptions,
        transcript: Transcript,
        context_bytes: usize,
        turns_seen: usize,
        servers: mcp::Servers,
    ) -> Self {
        Runner {
            shared,
            opts,
            transcript,
            last_uuid: None,
            totals: Totals::default(),
            context_bytes,
            turns_seen,
            last_failed: false,
            children: Vec::new(),
            servers,
        }
    }

    /// Ends the MCP servers (before fake-claude exits).
    pub fn shutdown_servers(&mut self) {
        self.servers.shutdown();
    }

    /// The exit code for stdin EOF: 1 if the last turn's API call failed, as the real CLI does.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.last_failed)
    }

    /// `text` as an answer of the mock model (with `FAKE_CLAUDE_TURNS_SEEN`).
    fn answer(&self, text: String) -> String {
        if self.opts.turns_seen_suffix {
            format!("{text} (turns seen: {})", self.turns_seen)
        } else {
            text
        }
    }

    fn session_id(&self) -> &str {
        &self.opts.init.session_id
    }

    fn partial(&self) -> bool {
        self.opts.include_partial_messages
    }

    fn permission_mode(&self) -> String {
        self.shared
            .permission_mode()
            .unwrap_or_else(|| self.opts.init.permission_mode.clone())
    }

    fn emit(&self, event: &Value) {
        self.shared.out.event(event);
    }

    /// Prints an event and appends it to the transcript.
    fn emit_recorded(&mut self, event: &Value) {
        self.emit(event);
        self.record(event);
    }

    fn emit_init(&self) {
        self.emit(&protocol::init(&self.opts.init, &self.permission_mode()));
    }

    /// Answers one user message, ending with exactly one `result` (unless the directive makes
    /// the process crash, hang or wedge).
    pub fn run(&mut self, message: &UserMessage) -> Flow {
        let directive = directives::parse(&message.text);
        if directive == Ok(Some(Directive::Wedge)) {
            // Before any output, so a host that has seen this turn begin cannot get answers.
            self.shared.wedge();
        }
        if let Some(command) = slash::Command::parse(&message.text) {
            self.slash(command, message);
            return Flow::Continue;
        }
        self.emit_init();
        self.record_input(message);
        if let Some(limit) = self.budget_reached() {
            // Refused before any API call, as the real CLI does once the limit is reached.
            let turn = Turn::new(message.text.len());
            self.last_failed = true;
            let ending = Ending::OverBudget {
                limit,
                answered: false,
            };
            self.finish(&turn.stats(Tokens::default()), &ending);
            return Flow::Continue;
        }
        self.turns_seen += 1;
        let mut turn = Turn::new(message.text.len());
        let (ending, flow) = match self.body(&mut turn, directive, message) {
            Ok(done) => done,
            Err(Interrupted) => {
                let tools = turn.tool.is_some();
                self.interrupted(&mut turn);
                (Ending::Interrupted { tools }, Flow::Continue)
            }
        };
        let usage = match ending {
            Ending::Success { .. } => turn.usage,
            _ => Tokens::default(),
        };
        self.totals.add(usage);
        if usage != Tokens::default() {
            self.context_bytes += turn.prompt_bytes + turn.out_bytes;
        }
        // The turn that reaches the limit still answers (its assistant events are out), but its
        // result reports the limit, with the turn's cost only in the running total.
        let (ending, usage) = match (ending, self.budget_reached()) {
            (Ending::Success { .. }, Some(limit)) => (
                Ending::OverBudget {
                    limit,
                    answered: true,
                },
                Tokens::default(),
            ),
            (ending, _) => (ending, usage),
        };
        self.last_failed = matches!(ending, Ending::ApiError { .. } | Ending::OverBudget { .. });
        self.finish(&turn.stats(usage), &ending);
        flow
    }

    /// The `--max-budget-usd` limit, as given, once the process has spent that much.
    fn budget_reached(&self) -> Option<String> {
        let limit = self.opts.max_budget_usd.as_ref()?;
        let usd = limit.parse::<f64>().ok()?;
        (self.totals.usd() >= usd).then(|| limit.clone())
    }

    /// Records the user's message, and echoes it with `--replay-user-messages`.
    fn record_input(&mut self, message: &UserMessage) {
        let uuid = message.uuid.clone().unwrap_or_else(protocol::new_uuid);
        let user = json!({
            "type": "user",
            "message": { "role": "user", "content": message.content },
            "uuid": uuid,
        });
        self.record(&user);
        if self.opts.replay_user_messages {
            self.emit(&protocol::user_replay(
                self.session_id(),
                &uuid,
                &message.content,
            ));
        }
    }

    /// Prints (and records) the turn's `result`.
    fn finish(&mut self, stats: &TurnStats, ending: &Ending) {
        let result = protocol::result(self.session_id(), ending, stats, self.totals);
        self.record(&result);
        let out = self.shared.out;
        self.shared.finish_turn(|| out.event(&result));
    }

    fn body(
        &mut self,
        turn: &mut Turn,
        directive: Result<Option<Directive>, String>,
        message: &UserMessage,
    ) -> Result<(Ending, Flow), Interrupted> {
        let echo = self.answer(format!("echo: {}", message.text));
        let directive = match directive {
            Ok(directive) => directive,
            Err(e) => {
                return Ok((
                    self.api_error(turn, 400, &format!("fake-claude: {e}")),
                    Flow::Continue,
                ));
            }
        };
        let mut flow = Flow::Continue;
        let ending = match directive {
            None => self.reply(turn, &[echo], 0)?,
            Some(Directive::Sleep(ms)) => {
                self.request(turn);
                self.wait(Duration::from_millis(ms))?;
                self.reply(turn, &[echo], 0)?
            }
            Some(Directive::Garbage) => {
                self.garbage();
                self.reply(turn, &[echo], 0)?
            }
            Some(Directive::Stream { chunks, delay_ms }) => self.stream(turn, chunks, delay_ms)?,
            Some(Directive::Blocks { delay_ms, texts }) => self.reply(turn, &texts, delay_ms)?,
            Some(Directive::Stall) => {
                self.request(turn);
                self.say(turn, "chunk 1");
                return Err(self.wait_forever());
            }
            Some(Directive::Hang) => {
                self.request(turn);
                return Err(self.wait_forever());
            }
            Some(Directive::Wedge) => {
                self.shared.wedge();
                loop {
                    thread::sleep(Duration::from_secs(3600));
                }
            }
            Some(Directive::Crash(code)) => self.crash(code),
            Some(Directive::Big(bytes)) => self.reply(turn, &["x".repeat(bytes)], 0)?,
            Some(Directive::Error(status)) => self.api_error(
                turn,
                status,
                &format!("fake-claude: simulated API error (scripted !error {status})"),
            ),
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
                        self.reply(turn, &[text], 0)?
                    }
                    Err(e) => self.api_error(
                        turn,
                        500,
                        &format!("fake-claude: cannot spawn `sleep 3600`: {e}"),
                    ),
                }
            }
            Some(Directive::Daemon { ms, marker }) => {
                let marker = marker.map(|m| std::path::Path::new(&self.opts.init.cwd).join(m));
                match crate::helper::spawn_tool(self.opts.relaunch.as_ref(), ms, marker.as_deref())
                {
                    // Not waited for: it is on its own, as a `setsid cmd &` would be.
                    Ok(spawned) => {
                        self.reply(turn, &[format!("{echo} pid={}", spawned.child.id())], 0)?
                    }
                    Err(e) => self.api_error(
                        turn,
                        500,
                        &format!("fake-claude: cannot start the daemon: {e}"),
                    ),
                }
            }
            Some(Directive::IgnoreSigterm) => {
                if let Err(e) = signals::ignore_sigterm() {
                    log(&format!("fake-claude: cannot ignore SIGTERM: {e}"));
                }
                self.reply(turn, &[echo], 0)?
            }
            Some(Directive::ExitAfterReply) => {
                flow = Flow::Exit(0);
                self.reply(turn, &[echo], 0)?
            }
            Some(Directive::Permission(tool)) => {
                let outcome = self.call_tool(
                    turn,
                    tools::ToolCall::asking(&tool, &self.opts.init.cwd),
                    tools::Execution::Nothing,
                )?;
                self.reply(
                    turn,
                    &[format!("permission {tool}: {}", outcome.verdict.word())],
                    0,
                )?
            }
            Some(Directive::Mcp { tool, input }) => {
                let outcome = self.call_tool(
                    turn,
                    tools::ToolCall::mcp(&tool, input),
                    tools::Execution::Mcp,
                )?;
                // As the recordings' mock model answers an MCP tool's result.
                let quoted: String = outcome.content.chars().take(MCP_QUOTE_CHARS).collect();
                self.reply(turn, &[format!("after mcp: {quoted}")], 0)?
            }
            Some(Directive::Tool { ms, marker }) => {
                let call = tools::ToolCall::bash_wait(ms, marker.as_deref(), &self.opts.init.cwd);
                let marker = marker.map(|m| std::path::Path::new(&self.opts.init.cwd).join(m));
                let outcome =
                    self.call_tool(turn, call, tools::Execution::Subprocess { ms, marker })?;
                let text = self.answer(if outcome.is_error {
                    format!("after tool: ERROR {}", outcome.content)
                } else {
                    format!("after tool: {}", outcome.content)
                });
                self.reply(turn, &[text], 0)?
            }
        };
        Ok((ending, flow))
    }

    /// One API call answering with `texts` as text blocks, `delay_ms` apart.
    fn reply(
        &mut self,
        turn: &mut Turn,
        texts: &[String],
        delay_ms: u64,
    ) -> Result<Ending, Interrupted> {
        if turn.msg.is_none() {
            self.request(turn);
        }
        for (i, text) in texts.iter().enumerate() {
            if i > 0 {
                self.wait(Duration::from_millis(delay_ms))?;
            }
            self.say(turn, text);
        }
        self.end_message(turn, "end_turn");
        Ok(Ending::Success {
            text: turn.last_text.clone().unwrap_or_default(),
        })
    }

    /// `!stream`: one text block made of `chunks` deltas, `delay_ms` apart.
    fn stream(
        &mut self,
        turn: &mut Turn,
        chunks: u64,
        delay_ms: u64,
    ) -> Result<Ending, Interrupted> {
        self.request(turn);
        self.open_text(turn);
        for i in 1..=chunks {
            if i > 1 {
                // The first chunk is streamed before any wait, so an interrupt always finds
                // some text.
                self.wait(Duration::from_millis(delay_ms))?;
                self.delta(turn, &format!("\nchunk {i}"));
            } else {
                self.delta(turn, "chunk 1");
            }
        }
        self.close_text(turn);
        self.end_message(turn, "end_turn");
        Ok(Ending::Success {
            text: turn.last_text.clone().unwrap_or_default(),
        })
    }

    /// A failed API call: the CLI prints its error as a synthetic assistant message, and leaves
    /// the prompt out of the conversation (its transcript line says so: `isApiErrorMessage`).
    fn api_error(&mut self, turn: &mut Turn, status: u16, message: &str) -> Ending {
        if turn.msg.is_none() {
            self.request(turn);
        }
        turn.msg = None;
        let (text, error) = protocol::api_error(status, message);
        let event = protocol::api_error_assistant(self.session_id(), &text, error);
        self.emit(&event);
        let mut record = event;
        if let Some(map) = record.as_object_mut() {
            map.insert("isApiErrorMessage".to_owned(), Value::Bool(true));
        }
        self.record(&record);
        self.turns_seen = self.turns_seen.saturating_sub(1);
        Ending::ApiError { text, status }
    }

    /// The end of an interrupted turn, before its result: the text streamed so far, the
    /// aborted tool's result, and the interrupt notice.
    fn interrupted(&mut self, turn: &mut Turn) {
        self.abort_message(turn);
        let notice = match turn.tool.clone() {
            Some(tool_use_id) => {
                let event = protocol::user_tool_result(
                    self.session_id(),
                    &tool_use_id,
                    protocol::TOOL_REJECTED_TEXT,
                    true,
                    json!(format!("Error: {}", protocol::TOOL_REJECTED_TEXT)),
                );
                self.emit_recorded(&event);
                protocol::INTERRUPTED_TOOL_TEXT
            }
            None => protocol::INTERRUPTED_TEXT,
        };
        let event = protocol::user_text(
            self.session_id(),
            json!([protocol::text_block(notice)]),
            &[],
        );
        self.emit_recorded(&event);
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

    fn crash(&self, code: i32) -> ! {
        log("fatal: simulated crash");
        let partial = format!(
            "{{\"type\":\"assistant\",\"message\":{{\"id\":\"{}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{}\",\"content\":[{{\"type\":\"text\",\"text\":\"partial ans",
            protocol::new_message_id(),
            protocol::MODEL
        );
        self.shared.out.raw(partial.as_bytes());
        std::process::exit(code);
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
