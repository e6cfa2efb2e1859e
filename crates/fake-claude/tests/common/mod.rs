//! A harness that runs the built `fake-claude` with a private config directory and working
//! directory, and reads its stdout with timeouts so no test can hang.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// The longest any single read waits.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub const BIN: &str = env!("CARGO_BIN_EXE_fake-claude");

/// The flags every real client passes.
pub const STREAM_ARGS: &[&str] = &[
    "--output-format",
    "stream-json",
    "--verbose",
    "--input-format",
    "stream-json",
];

/// One piece of stdout: a whole line (without its newline) or, at EOF, an unterminated tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Full(String),
    Partial(String),
}

/// A private config directory and working directory, shared by successive runs.
pub struct Dirs {
    pub config: TempDir,
    pub cwd: TempDir,
}

impl Default for Dirs {
    fn default() -> Self {
        Self::new()
    }
}

impl Dirs {
    pub fn new() -> Self {
        Dirs {
            config: TempDir::new().unwrap(),
            cwd: TempDir::new().unwrap(),
        }
    }

    /// Where the transcript of `id` should be: `<config>/projects/<sanitized cwd>/<id>.jsonl`.
    pub fn transcript(&self, id: &str) -> PathBuf {
        let canonical = self.cwd.path().canonicalize().unwrap();
        let sanitized: String = canonical
            .to_str()
            .unwrap()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        assert!(sanitized.len() <= 200, "temp path unexpectedly long");
        self.config
            .path()
            .join("projects")
            .join(sanitized)
            .join(format!("{id}.jsonl"))
    }

    /// A command for fake-claude in these directories, with the standard flags and `extra`.
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(STREAM_ARGS)
            .args(extra)
            .current_dir(self.cwd.path())
            .env("CLAUDE_CONFIG_DIR", self.config.path())
            .env_remove("FAKE_CLAUDE_FAIL_START")
            .env_remove("FAKE_CLAUDE_START_DELAY_MS");
        cmd
    }

    pub fn spawn(&self, extra: &[&str]) -> Fake {
        Fake::spawn(self.command(extra))
    }

    /// Runs to completion with stdin closed, returning (status, stdout, stderr).
    pub fn run_closed(&self, extra: &[&str]) -> (ExitStatus, String, String) {
        let mut fake = Fake::spawn(self.command(extra));
        fake.close_stdin();
        let status = fake.wait();
        let stdout = fake.drain_stdout();
        (status, stdout, fake.stderr_after_exit())
    }
}

/// A running fake-claude.
pub struct Fake {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    stderr: Arc<Mutex<String>>,
}

impl Fake {
    pub fn spawn(mut cmd: Command) -> Fake {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = if buf.last() == Some(&b'\n') {
                            buf.pop();
                            Line::Full(String::from_utf8_lossy(&buf).into_owned())
                        } else {
                            Line::Partial(String::from_utf8_lossy(&buf).into_owned())
                        };
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Fake {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one raw line to stdin.
    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Writes one line to stdin, reporting a failure (the process may have exited).
    pub fn try_send(&mut self, value: &Value) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        let mut line = serde_json::to_vec(value).unwrap();
        line.push(b'\n');
        stdin.write_all(&line).and_then(|()| stdin.flush())
    }

    pub fn send(&mut self, value: &Value) {
        self.send_raw(&serde_json::to_string(value).unwrap());
    }

    /// Sends a user message with string content, as the SDK does.
    pub fn send_user(&mut self, text: &str) {
        self.send(&json!({
            "type": "user",
            "message": { "role": "user", "content": text },
            "parent_tool_use_id": null,
            "session_id": "",
        }));
    }

    /// Sends a user message with block content, as iris does.
    pub fn send_user_blocks(&mut self, text: &str) {
        self.send(&json!({
            "type": "user",
            "message": { "role": "user", "content": [{ "type": "text", "text": text }] },
            "parent_tool_use_id": null,
        }));
    }

    pub fn send_control(&mut self, request_id: &str, request: Value) {
        self.send(&json!({
            "type": "control_request",
            "request_id": request_id,
            "request": request,
        }));
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next piece of stdout, or `None` at EOF. Panics after [`TIMEOUT`].
    pub fn next_line(&self) -> Option<Line> {
        self.next_line_within(TIMEOUT)
            .unwrap_or_else(|| panic!("no stdout within {TIMEOUT:?}; stderr: {}", self.stderr()))
    }

    /// `Some(next)` if something (a line or EOF) arrived within `timeout`, `None` otherwise.
    pub fn next_line_within(&self, timeout: Duration) -> Option<Option<Line>> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(Some(line)),
            Err(RecvTimeoutError::Disconnected) => Some(None),
            Err(RecvTimeoutError::Timeout) => None,
        }
    }

    /// The next stdout line, parsed. Panics on EOF, a partial line, or non-JSON.
    pub fn next_event(&self) -> Value {
        match self.next_line() {
            Some(Line::Full(line)) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}")),
            other => panic!(
                "expected an event, got {other:?}; stderr: {}",
                self.stderr()
            ),
        }
    }

    /// Events up to and including the next `result`.
    pub fn turn(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event();
            let done = event["type"] == "result";
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Events up to and including the first one `pred` accepts.
    pub fn until(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event();
            let done = pred(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Waits for exit, killing the process and panicking after [`TIMEOUT`].
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(TIMEOUT).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("fake-claude did not exit within {TIMEOUT:?}")
        })
    }

    pub fn wait_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything left on stdout (after exit), joined with newlines.
    pub fn drain_stdout(&self) -> String {
        let mut out = Vec::new();
        while let Some(line) = self.next_line() {
            match line {
                Line::Full(l) | Line::Partial(l) => out.push(l),
            }
        }
        out.join("\n")
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stderr once the process has exited and its pipe is drained.
    pub fn stderr_after_exit(&self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        // The stdout reader finishing means the process is gone; give stderr's a moment too.
        while Instant::now() < deadline {
            let text = self.stderr();
            if Arc::strong_count(&self.stderr) == 1 {
                return text;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.stderr()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM (via the `kill` utility, to keep the tests free of unsafe code).
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Whether a process with this pid exists (`kill -0`).
pub fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The texts of the assistant events among `events`.
pub fn assistant_texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "assistant")
        .flat_map(|e| {
            e["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|block| block["text"].as_str().map(str::to_owned))
        .collect()
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An event's kind: `type`, `type/subtype` for `system` and `result`, the request's subtype for
/// `control_request`, and the inner event's type for `stream_event`.
pub fn kind(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap_or("?");
    let sub = match kind {
        "system" | "result" => event["subtype"].as_str(),
        "control_request" => event["request"]["subtype"].as_str(),
        "stream_event" => event["event"]["type"].as_str(),
        _ => None,
    };
    match sub {
        Some(sub) => format!("{kind}/{sub}"),
        None => kind.to_owned(),
    }
}

pub fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(kind).collect()
}

/// Polls `cond` until it holds, for at most [`TIMEOUT`].
pub fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// `(ppid, pgid, sid)` of a live (not zombie) process.
pub fn stat(pid: u32) -> Option<(u32, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    let field = |i: usize| fields.get(i).and_then(|f| f.parse().ok());
    Some((field(1)?, field(2)?, field(3)?))
}

/// The live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| stat(*p).is_some_and(|(ppid, _, _)| ppid == pid))
                .collect()
        })
        .unwrap_or_default()
}

impl Fake {
    /// Waits until stderr contains `needle`.
    pub fn stderr_contains(&self, needle: &str) -> bool {
        eventually(|| self.stderr().contains(needle))
    }
}
