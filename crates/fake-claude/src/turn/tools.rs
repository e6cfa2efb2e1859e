//! Tool calls (`!permission`, `!tool`): the model's `tool_use`, the permission decision (asked
//! over stdio when needed), the tool's run, and the `user` message carrying its result, in the
//! real CLI's order: assistant(tool_use), control_request, user(tool_result), then the next API
//! call.

use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Interrupted, POLL, Runner, Turn};
use crate::helper;
use crate::protocol::{self, ToolRequest};

/// How long a permission request waits for the host's answer.
const PERMISSION_TIMEOUT: Duration = Duration::from_secs(60);

/// The file `!permission` says its tool would touch (nothing is ever written to it).
const PERMISSION_FILE: &str = "fake-claude-permission-check";

/// What the command line says about permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `--allowedTools` rules.
    pub allowed: Vec<String>,
    /// `--disallowedTools` rules.
    pub disallowed: Vec<String>,
    /// `--permission-prompt-tool`.
    pub prompt_tool: Option<String>,
    /// `--dangerously-skip-permissions`.
    pub skip: bool,
}

/// How a tool call is decided before anyone is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// Runs without asking.
    Allow,
    /// Refused without asking, with this message.
    Deny(String),
    /// The host is asked (a `can_use_tool` control request on stdout).
    Ask,
}

/// Whether `rule` (`Bash`, `Bash(git:*)`, `mcp__srv__tool`) covers `tool`.
fn rule_covers(rule: &str, tool: &str) -> bool {
    rule == tool
        || rule
            .strip_prefix(tool)
            .is_some_and(|rest| rest.starts_with('('))
}

const EDIT_TOOLS: &[&str] = &["Edit", "MultiEdit", "Write", "NotebookEdit"];

impl Permissions {
    /// The decision for a call of `tool` in permission mode `mode`: disallowed tools are
    /// refused; `--dangerously-skip-permissions`, `bypassPermissions`, an `--allowedTools`
    /// rule, or an edit tool under `acceptEdits` allow; otherwise the host is asked when there
    /// is a `--permission-prompt-tool` (every one is asked over stdio), and without one the
    /// call is refused, as the headless CLI does.
    pub(super) fn gate(&self, tool: &str, mode: &str) -> Gate {
        if self.disallowed.iter().any(|rule| rule_covers(rule, tool)) {
            return Gate::Deny(format!("Permission to use {tool} has been denied."));
        }
        if self.skip
            || mode == "bypassPermissions"
            || self.allowed.iter().any(|rule| rule_covers(rule, tool))
            || (mode == "acceptEdits" && EDIT_TOOLS.contains(&tool))
        {
            return Gate::Allow;
        }
        if self.prompt_tool.is_some() {
            Gate::Ask
        } else {
            Gate::Deny(format!(
                "Claude requested permissions to use {tool}, but you haven't granted it yet."
            ))
        }
    }
}

/// The host's (or the gate's) verdict on a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Allow,
    Deny(String),
    /// The host answered with an error.
    Error(String),
    /// No answer within [`PERMISSION_TIMEOUT`].
    Timeout,
}

impl Verdict {
    pub(super) fn word(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny(_) => "deny",
            Verdict::Error(_) => "error",
            Verdict::Timeout => "timeout",
        }
    }
}

/// A tool the model calls.
#[derive(Debug, Clone)]
pub(super) struct ToolCall {
    name: String,
    input: Value,
    description: String,
    blocked_path: Option<String>,
    rule: String,
}

impl ToolCall {
    /// `!permission <tool>`: an input shaped like the tool's, pointing at a file in `cwd`.
    pub(super) fn asking(tool: &str, cwd: &str) -> ToolCall {
        let path = Path::new(cwd).join(PERMISSION_FILE).display().to_string();
        let description = format!("fake-claude asks to use {tool}");
        let (input, blocked_path, rule) = match tool {
            "Bash" => (
                json!({ "command": format!("touch {PERMISSION_FILE}"), "description": description }),
                Some(path),
                format!("touch {PERMISSION_FILE} *"),
            ),
            "Write" => (
                json!({ "file_path": path, "content": "fake-claude\n" }),
                Some(path),
                tool.to_owned(),
            ),
            "Edit" | "MultiEdit" => (
                json!({ "file_path": path, "old_string": "a", "new_string": "b" }),
                Some(path),
                tool.to_owned(),
            ),
            "Read" => (json!({ "file_path": path }), Some(path), tool.to_owned()),
            _ => (json!({}), None, tool.to_owned()),
        };
        ToolCall {
            name: tool.to_owned(),
            input,
            description,
            blocked_path,
            rule,
        }
    }

    /// `!mcp <tool> [input]`: a call of an MCP server's tool (`mcp__<server>__<tool>`).
    pub(super) fn mcp(tool: &str, input: Value) -> ToolCall {
        ToolCall {
            name: tool.to_owned(),
            input,
            description: format!("call {tool}"),
            blocked_path: None,
            rule: tool.to_owned(),
        }
    }

    /// `!tool <ms> [marker]`: a Bash command that waits, then creates the marker.
    pub(super) fn bash_wait(ms: u64, marker: Option<&str>, cwd: &str) -> ToolCall {
        let sleep = format!("sleep {}", helper::seconds(ms));
        let (command, description) = match marker {
            Some(marker) => (format!("{sleep} && touch {marker}"), "make a marker file"),
            None => (sleep, "wait for a while"),
        };
        ToolCall {
            name: "Bash".to_owned(),
            input: json!({ "command": command, "description": description }),
            description: description.to_owned(),
            blocked_path: marker.map(|m| Path::new(cwd).join(m).display().to_string()),
            rule: "sleep *".to_owned(),
        }
    }
}

/// What a permitted tool call does.
#[derive(Debug)]
pub(super) enum Execution {
    /// Nothing runs (`!permission`).
    Nothing,
    /// A real subprocess runs for `ms`, then creates `marker` (`!tool`).
    Subprocess { ms: u64, marker: Option<PathBuf> },
    /// The tool of a connected MCP server is called (`!mcp`).
    Mcp,
}

/// How long an MCP tool call may take.
const MCP_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a tool call went.
#[derive(Debug, Clone)]
pub(super) struct ToolOutcome {
    pub(super) verdict: Verdict,
    /// The tool result's text.
    pub(super) content: String,
    pub(super) is_error: bool,
}

const NO_OUTPUT: &str = "(Bash completed with no output)";

impl Runner {
    /// The model calls `call`'s tool in its own API call; once permitted, it does what `run`
    /// says.
    pub(super) fn call_tool(
        &mut self,
        turn: &mut Turn,
        call: ToolCall,
        run: Execution,
    ) -> Result<ToolOutcome, Interrupted> {
        let is_mcp = matches!(run, Execution::Mcp);
        self.request(turn);
        let tool_use_id = protocol::new_tool_use_id();
        self.tool_use(turn, &tool_use_id, &call.name, &call.input);
        turn.tool = Some(tool_use_id.clone());
        let verdict = match self
            .opts
            .permissions
            .gate(&call.name, &self.permission_mode())
        {
            Gate::Allow => {
                self.end_message(turn, "tool_use");
                Verdict::Allow
            }
            Gate::Deny(message) => {
                self.end_message(turn, "tool_use");
                Verdict::Deny(message)
            }
            Gate::Ask => self.ask(turn, &call, &tool_use_id)?,
        };
        let (content, is_error) = match &verdict {
            Verdict::Allow => match run {
                Execution::Subprocess { ms, marker } => {
                    match self.run_tool(&tool_use_id, &call, ms, marker)? {
                        Ok(()) => (NO_OUTPUT.to_owned(), false),
                        Err(e) => (e, true),
                    }
                }
                Execution::Mcp => {
                    match self
                        .servers
                        .call_tool(&call.name, call.input.clone(), MCP_CALL_TIMEOUT)
                    {
                        Ok(text) => (text, false),
                        Err(e) => (e, true),
                    }
                }
                Execution::Nothing => (format!("({} completed with no output)", call.name), false),
            },
            Verdict::Deny(message) | Verdict::Error(message) => (message.clone(), true),
            Verdict::Timeout => ("The permission request timed out.".to_owned(), true),
        };
        if is_error && verdict != Verdict::Allow {
            turn.denials.push(json!({
                "tool_name": call.name,
                "tool_use_id": tool_use_id,
                "tool_input": call.input,
            }));
        }
        let tool_use_result = if is_error {
            json!(format!("Error: {content}"))
        } else if is_mcp {
            json!([{ "type": "text", "text": content }])
        } else {
            json!({
                "stdout": "", "stderr": "", "interrupted": false,
                "isImage": false, "noOutputExpected": false,
            })
        };
        let event = protocol::user_tool_result(
            self.session_id(),
            &tool_use_id,
            &content,
            is_error,
            tool_use_result,
        );
        self.emit_recorded(&event);
        turn.prompt_bytes += content.len();
        turn.tool = None;
        Ok(ToolOutcome {
            verdict,
            content,
            is_error,
        })
    }

    /// Asks the host over stdio and waits for its answer (or an interrupt, or the timeout).
    fn ask(
        &mut self,
        turn: &mut Turn,
        call: &ToolCall,
        tool_use_id: &str,
    ) -> Result<Verdict, Interrupted> {
        let request_id = protocol::new_uuid();
        let answers = self.shared.register_permission(&request_id);
        let request = ToolRequest {
            tool_name: call.name.clone(),
            input: call.input.clone(),
            description: call.description.clone(),
            blocked_path: call.blocked_path.clone(),
            rule: call.rule.clone(),
            cwd: self.opts.init.cwd.clone(),
            tool_use_id: tool_use_id.to_owned(),
        };
        self.emit(&protocol::can_use_tool(&request_id, &request));
        self.end_message(turn, "tool_use");
        let deadline = Instant::now() + PERMISSION_TIMEOUT;
        let response = loop {
            if self.shared.interrupted() {
                self.abandon(&request_id);
                return Err(Interrupted);
            }
            match answers.recv_timeout(POLL) {
                Ok(response) => break response,
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    self.abandon(&request_id);
                    return Ok(Verdict::Timeout);
                }
            }
        };
        Ok(verdict_of(&response))
    }

    fn abandon(&self, request_id: &str) {
        self.shared.unregister_permission(request_id);
        self.emit(&protocol::control_cancel(request_id));
    }

    /// Runs the `!tool` subprocess to its end, printing nothing but the background task's
    /// start (after `task_notice_after`) and end. An interrupt kills it. The inner error is the
    /// tool's failure, reported as its result.
    fn run_tool(
        &mut self,
        tool_use_id: &str,
        call: &ToolCall,
        ms: u64,
        marker: Option<PathBuf>,
    ) -> Result<Result<(), String>, Interrupted> {
        let spawned = helper::spawn_tool(self.opts.relaunch.as_ref(), ms, marker.as_deref());
        let mut spawned = match spawned {
            Ok(spawned) => spawned,
            Err(e) => return Ok(Err(format!("fake-claude: cannot start the tool: {e}"))),
        };
        let started = Instant::now();
        let mut task: Option<String> = None;
        let notice_after = self.opts.task_notice_after;
        // A tool that runs at least `notice_after` is always reported, however late this thread
        // gets to look at it.
        let notice = |runner: &Runner, task: &mut Option<String>| {
            if task.is_none() {
                let task_id = protocol::new_uuid().replace('-', "")[..9].to_owned();
                runner.emit(&protocol::task_started(
                    runner.session_id(),
                    &task_id,
                    tool_use_id,
                    &call.description,
                ));
                *task = Some(task_id);
            }
        };
        let status = loop {
            if self.shared.interrupted() {
                let _ = spawned.child.kill();
                let _ = spawned.child.wait();
                return Err(Interrupted);
            }
            if started.elapsed() >= notice_after {
                notice(self, &mut task);
            }
            match spawned.child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => {
                    let _ = spawned.child.kill();
                    let _ = spawned.child.wait();
                    break Err(e);
                }
            }
            thread::sleep(POLL);
        };
        if Duration::from_millis(ms) >= notice_after {
            notice(self, &mut task);
        }
        if let Some(task_id) = task {
            self.emit(&protocol::task_notification(
                self.session_id(),
                &task_id,
                tool_use_id,
                &call.description,
            ));
        }
        let outcome = match status {
            Ok(status) if status.success() => match &spawned.marker_after {
                Some(marker) => helper::touch(marker)
                    .map_err(|e| format!("touch: cannot create {}: {e}", marker.display())),
                None => Ok(()),
            },
            Ok(status) => Err(match status.code() {
                Some(code) => format!("Exit code {code}"),
                None => "The tool was killed by a signal".to_owned(),
            }),
            Err(e) => Err(format!("fake-claude: cannot wait for the tool: {e}")),
        };
        Ok(outcome)
    }
}

/// Reads the host's `control_response` body.
fn verdict_of(response: &Value) -> Verdict {
    match response.get("subtype").and_then(Value::as_str) {
        Some("success") => {
            let body = response.get("response");
            let behavior = body.and_then(|r| r.get("behavior")).and_then(Value::as_str);
            match behavior {
                Some("allow") => Verdict::Allow,
                Some("deny") => Verdict::Deny(
                    body.and_then(|r| r.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("Permission denied.")
                        .to_owned(),
                ),
                _ => Verdict::Error(format!("unexpected permission answer: {response}")),
            }
        }
        _ => Verdict::Error(
            response
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the permission request failed")
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permissions() -> Permissions {
        Permissions {
            allowed: vec!["Read".into(), "Bash(git:*)".into()],
            disallowed: vec!["WebFetch".into()],
            prompt_tool: Some("stdio".into()),
            skip: false,
        }
    }

    #[test]
    fn the_gate() {
        let p = permissions();
        assert_eq!(p.gate("Read", "default"), Gate::Allow);
        assert_eq!(p.gate("Bash", "default"), Gate::Allow);
        assert_eq!(p.gate("BashX", "default"), Gate::Ask);
        assert_eq!(p.gate("Write", "default"), Gate::Ask);
        assert_eq!(p.gate("Write", "acceptEdits"), Gate::Allow);
        assert_eq!(p.gate("Task", "bypassPermissions"), Gate::Allow);
        assert!(matches!(
            p.gate("WebFetch", "bypassPermissions"),
            Gate::Deny(_)
        ));
        let unasked = Permissions {
            prompt_tool: None,
            ..Permissions::default()
        };
        assert!(matches!(unasked.gate("Bash", "default"), Gate::Deny(_)));
        let skip = Permissions {
            skip: true,
            ..Permissions::default()
        };
        assert_eq!(skip.gate("Bash", "default"), Gate::Allow);
    }

    #[test]
    fn answers() {
        assert_eq!(
            verdict_of(
                &json!({"subtype":"success","request_id":"r","response":{"behavior":"allow","updatedInput":{}}})
            ),
            Verdict::Allow
        );
        assert_eq!(
            verdict_of(
                &json!({"subtype":"success","request_id":"r","response":{"behavior":"deny","message":"no"}})
            ),
            Verdict::Deny("no".into())
        );
        assert_eq!(
            verdict_of(&json!({"subtype":"error","request_id":"r","error":"boom"})),
            Verdict::Error("boom".into())
        );
        assert!(matches!(
            verdict_of(&json!({"subtype":"success","request_id":"r","response":{}})),
            Verdict::Error(_)
        ));
    }

    #[test]
    fn tool_inputs() {
        let call = ToolCall::bash_wait(1500, Some("m"), "/p");
        assert_eq!(
            call.input,
            json!({"command": "sleep 1.5 && touch m", "description": "make a marker file"})
        );
        assert_eq!(call.blocked_path.as_deref(), Some("/p/m"));
        let call = ToolCall::asking("Bash", "/p");
        assert_eq!(call.input["command"], "touch fake-claude-permission-check");
        assert!(call.input["description"].is_string());
        assert_eq!(ToolCall::asking("Task", "/p").input, json!({}));
    }
}
