//! The real Claude Code CLI 2.1.197, as recorded in `tests/fixtures/recorded-claude-2.1.197/`,
//! against iris's decoder and against fake-claude.
//!
//! 1. Every line the real CLI printed decodes with iris's codec; no event of a known `type`
//!    falls back to `Event::Unknown` because its fields did not fit.
//! 2. fake-claude, driven through each recorded scenario (same flags, the same stdin lines at
//!    the same points of the conversation, the mock model's behaviour translated into
//!    directives by [`MODEL_SCRIPT`]), prints the same sequence of event kinds, exits with the
//!    same code and prints the same stderr.
//!
//! A stdin line is sent once fake-claude has printed as many events as the real CLI had when
//! the recording sent it (from `timeline.jsonl`), so a difference in the sequence shows as a
//! difference in kinds, never as a hang. Every wait is for a condition, bounded by [`TIMEOUT`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use iris_agent::codec::{DecodeStats, Event, decode_line};
use serde_json::{Value, json};
use support::Team;

/// The recordings.
const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/recorded-claude-2.1.197"
);

/// Every recorded scenario (checked against the directory, so a new recording is not skipped).
const SCENARIOS: &[&str] = &[
    "new",
    "reuse",
    "resume",
    "resume_missing",
    "eof_mid_turn",
    "no_initialize",
    "deny",
    "slash",
    "long_tool_partial",
];

/// Recordings made apart from the scripted run that `summary.json` and `timeline.jsonl`
/// describe: they are checked against iris's decoder here, and against fake-claude by
/// fake-claude's own tests. `max_budget`: two turns under `--max-budget-usd 0.00001`.
const DECODE_ONLY: &[&str] = &["max_budget"];

/// The recordings' mock model answered by the user's text; fake-claude is told the same
/// behaviour by a directive. Texts not listed are sent as they are (fake-claude echoes them, as
/// the mock did, and runs slash commands, as the CLI did).
const MODEL_SCRIPT: &[(&str, &str)] = &[
    // Streamed slowly ("[0] [1] …") and interrupted mid-stream: one chunk at once, the next a
    // minute later.
    ("slow reply please", "!stream 2 60000"),
    // Streamed slowly to its end while stdin closes.
    ("slow and then eof", "!stream 5 100"),
    // A Bash tool call (asked about over stdio) that makes a marker file, then a text answer.
    ("usetool now", "!tool 50 iris-tool-marker"),
    ("usetool but deny", "!tool 50 iris-tool-marker"),
    // A long Bash tool call, reported as a background task (FAKE_CLAUDE_TASK_NOTICE_MS).
    ("sleeptool with partial messages", "!tool 600"),
];

/// The longest any single wait may take.
const TIMEOUT: Duration = Duration::from_secs(60);

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(DIR).join(name))
        .unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

fn summary() -> Value {
    serde_json::from_str(&read("summary.json")).unwrap()
}

/// An event's kind: `type`, or `type/subtype` for `system` and `result`, the request's subtype
/// for `control_request`, the API event's type for `stream_event`.
fn kind(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap_or("<no type>");
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

/// Kinds in order, where a run of deltas counts once: how many pieces a text streams in depends
/// on the text, not on the protocol.
#[derive(Debug, Default)]
struct Kinds(Vec<String>);

impl Kinds {
    fn push(&mut self, event: &Value) {
        let kind = kind(event);
        let run = kind == "stream_event/content_block_delta" && self.0.last() == Some(&kind);
        if !run {
            self.0.push(kind);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Decodes `lines` with iris's codec and returns the ones whose known type did not fit.
fn misfits(lines: &[String]) -> Vec<String> {
    let mut stats = DecodeStats::default();
    let mut bad = Vec::new();
    for line in lines {
        match decode_line(line.as_bytes(), &mut stats) {
            Ok(Some(_)) => {}
            Ok(None) => bad.push(format!("skipped as not JSON: {line}")),
            Err(e) => bad.push(format!("{e}")),
        }
        let value: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        if let (_, Some(error)) = Event::try_from_value(value) {
            bad.push(format!("{error}: {line}"));
        }
    }
    assert_eq!(stats.undecodable_known as usize, bad.len(), "{bad:#?}");
    bad
}

#[test]
fn every_scenario_is_covered() {
    let mut found: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".stdout.jsonl").map(str::to_owned)
        })
        .collect();
    found.sort();
    let mut known: Vec<&str> = SCENARIOS.iter().chain(DECODE_ONLY).copied().collect();
    known.sort_unstable();
    assert_eq!(found, known);
}

/// The real CLI's result at its spending limit decodes as a failed turn that names it.
#[test]
fn a_result_at_the_spending_limit_decodes_as_an_error_naming_it() {
    let text = read("max_budget.stdout.jsonl");
    let results: Vec<Event> = text
        .lines()
        .map(|l| Event::from_value(serde_json::from_str(l).unwrap()))
        .filter(|e| matches!(e, Event::Result(_)))
        .collect();
    assert_eq!(results.len(), 2);
    for event in results {
        let Event::Result(result) = event else {
            unreachable!()
        };
        assert!(result.is_failure());
        assert_eq!(result.subtype, "error_max_budget_usd");
        assert_eq!(result.errors, ["Reached maximum budget ($0.00001)"]);
        assert!(result.total_cost_usd.is_some_and(|usd| usd > 0.0));
    }
}

#[test]
fn every_recorded_line_decodes_with_iris_codec() {
    let mut kinds_seen = std::collections::BTreeSet::new();
    for scenario in SCENARIOS.iter().chain(DECODE_ONLY) {
        let text = read(&format!("{scenario}.stdout.jsonl"));
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let bad = misfits(&lines);
        assert!(bad.is_empty(), "{scenario}: {bad:#?}");
        for line in &lines {
            let value: Value = serde_json::from_str(line).unwrap();
            let event = Event::from_value(value.clone());
            // Known types decode to their typed variants.
            if [
                "system",
                "assistant",
                "user",
                "stream_event",
                "result",
                "control_request",
                "control_response",
            ]
            .contains(&value["type"].as_str().unwrap_or_default())
            {
                assert!(!matches!(event, Event::Unknown(_)), "{scenario}: {line}");
            }
            kinds_seen.insert(kind(&value));
        }
    }
    // The recordings hold every kind the protocol reference lists for 2.1.197.
    for expected in [
        "control_response",
        "control_request/can_use_tool",
        "system/init",
        "system/status",
        "system/compact_boundary",
        "system/task_started",
        "system/task_notification",
        "assistant",
        "user",
        "result/success",
        "result/error_during_execution",
        "stream_event/message_start",
    ] {
        assert!(kinds_seen.contains(expected), "{expected} not recorded");
    }
}

// ---------------------------------------------------------------------------------------------
// Replays

/// What to do with fake-claude's stdin once it has printed `after` events (in [`Kinds`]).
#[derive(Debug)]
struct Step {
    after: usize,
    action: Action,
}

#[derive(Debug)]
enum Action {
    Send(Value),
    CloseStdin,
}

/// One scenario of the recording.
#[derive(Debug)]
struct Recording {
    steps: Vec<Step>,
    kinds: Vec<String>,
    exit_code: i32,
    stderr: String,
}

fn recording(scenario: &str) -> Recording {
    let mut out = Kinds::default();
    let mut steps = Vec::new();
    let mut exit_code = None;
    for line in read("timeline.jsonl").lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        if entry["label"] != scenario {
            continue;
        }
        let line = &entry["line"];
        match entry["dir"].as_str() {
            Some("out") => out.push(line),
            Some("in") => steps.push(Step {
                after: out.len(),
                action: Action::Send(line.clone()),
            }),
            Some("note") if line["stdin"] == "closed" => steps.push(Step {
                after: out.len(),
                action: Action::CloseStdin,
            }),
            Some("note") if line["exit"].is_i64() => {
                exit_code = Some(line["exit"].as_i64().unwrap() as i32);
            }
            other => panic!("unexpected timeline entry {other:?}: {entry}"),
        }
    }
    let mut printed = Kinds::default();
    for event in parse_lines(&read(&format!("{scenario}.stdout.jsonl"))) {
        printed.push(&event);
    }
    assert_eq!(printed.0, out.0, "{scenario}: timeline and stdout disagree");
    let summary = summary();
    let facts = &summary[scenario];
    let stderr = facts["finish"]["stderr_tail"]
        .as_str()
        .or_else(|| facts["stderr_tail"].as_str())
        .unwrap_or_else(|| panic!("{scenario}: no stderr in summary.json"))
        .to_owned();
    Recording {
        steps,
        kinds: out.0,
        exit_code: exit_code.unwrap_or_else(|| panic!("{scenario}: no exit in the timeline")),
        stderr,
    }
}

/// The recorded CLI's arguments for `scenario`, for conversation `id`. summary.json holds the
/// argv of `new` (a new conversation); the others resumed that conversation, so theirs is the
/// same with `--resume=<id>` in place of `--session-id=<id>` (`reuse` repeated `--session-id`,
/// `resume_missing` named an id without a transcript), and `long_tool_partial` added
/// `--include-partial-messages` (its output has `stream_event`s).
fn argv(scenario: &str, id: &str) -> Vec<String> {
    let summary = summary();
    let recorded: Vec<String> = summary["argv_new"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(
        recorded.iter().any(|a| a.starts_with("--session-id=")),
        "{recorded:?}"
    );
    let conversation = match scenario {
        "new" | "reuse" => format!("--session-id={id}"),
        _ => format!("--resume={id}"),
    };
    let mut args: Vec<String> = recorded
        .into_iter()
        .map(|a| {
            if a.starts_with("--session-id=") {
                conversation.clone()
            } else {
                a
            }
        })
        .collect();
    if scenario == "long_tool_partial" {
        args.push("--include-partial-messages".to_owned());
    }
    args
}

/// fake-claude with `args`, in the team's project and config directories.
fn command(team: &Team, args: &[String]) -> Command {
    let mut c = Command::new(support::fake_claude());
    c.args(args)
        .current_dir(team.project.path())
        .env("CLAUDE_CONFIG_DIR", team.config.path())
        .env("FAKE_CLAUDE_TASK_NOTICE_MS", "100")
        .env_remove("CLAUDECODE")
        .env_remove("FAKE_CLAUDE_FAIL_START")
        .env_remove("FAKE_CLAUDE_START_DELAY_MS");
    c
}

/// A running fake-claude, read line by line with bounded waits.
struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_done: Receiver<()>,
    /// Every line printed so far.
    printed: Vec<String>,
    kinds: Kinds,
}

impl Agent {
    fn spawn(mut command: Command) -> Agent {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let (done, stderr_done) = mpsc::channel();
        thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
            let _ = done.send(());
        });
        Agent {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            stderr_done,
            printed: Vec::new(),
            kinds: Kinds::default(),
        }
    }

    /// The next event, or `None` at end of output.
    fn next(&mut self, expected: &[String]) -> Option<Value> {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => {
                let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("fake-claude printed a non-JSON line ({e}): {line}")
                });
                self.kinds.push(&event);
                self.printed.push(line);
                Some(event)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!(
                "fake-claude printed nothing for {TIMEOUT:?}\n  so far:   {:?}\n  expected: {expected:?}",
                self.kinds.0
            ),
        }
    }

    fn send(&mut self, line: &Value) {
        // fake-claude may already have exited (as the real CLI did in `reuse`): not an error.
        if let Some(stdin) = self.stdin.as_mut() {
            let mut bytes = serde_json::to_vec(line).unwrap();
            bytes.push(b'\n');
            let _ = stdin.write_all(&bytes).and_then(|()| stdin.flush());
        }
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "fake-claude did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_after_exit(&self) -> String {
        self.stderr_done
            .recv_timeout(TIMEOUT)
            .expect("stderr was not closed");
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stdin line of the recording, as fake-claude must get it: the user's text translated by
/// [`MODEL_SCRIPT`], a permission answer addressed to fake-claude's own request.
fn translate(line: &Value, last_request_id: Option<&Value>) -> Value {
    let mut line = line.clone();
    let script = |text: &str| {
        MODEL_SCRIPT
            .iter()
            .find(|(said, _)| *said == text)
            .map_or_else(|| text.to_owned(), |(_, directive)| (*directive).to_owned())
    };
    match line["type"].as_str() {
        Some("user") => {
            let content = &mut line["message"]["content"];
            match content {
                Value::String(text) => *text = script(text),
                Value::Array(blocks) => {
                    for block in blocks {
                        if let Some(text) = block["text"].as_str() {
                            block["text"] = json!(script(text));
                        }
                    }
                }
                _ => panic!("unexpected user content {content}"),
            }
        }
        Some("control_response") => {
            let id = last_request_id.expect("a permission answer before any request");
            line["response"]["request_id"] = id.clone();
        }
        _ => {}
    }
    line
}

/// A conversation with a transcript, as the recordings' later scenarios resumed.
fn seed(team: &Team, id: &str) {
    let mut agent = Agent::spawn(command(team, &argv("new", id)));
    agent.send(&json!({
        "type": "user",
        "message": { "role": "user", "content": "seed" },
        "parent_tool_use_id": null,
    }));
    while let Some(event) = agent.next(&[]) {
        if event["type"] == "result" {
            break;
        }
    }
    agent.stdin = None;
    assert_eq!(agent.wait().code(), Some(0));
}

/// What a replay produced.
struct Replay {
    team: Team,
    events: Vec<Value>,
}

/// Plays `scenario` against fake-claude and checks kinds, exit code and stderr.
fn replay(scenario: &str) -> Replay {
    let recording = recording(scenario);
    let summary = summary();
    let recorded_id = summary["session_id"].as_str().unwrap();
    let team = Team::new();
    let id = iris_core::SessionId::new_v4().to_string();
    match scenario {
        "new" | "resume_missing" => {}
        _ => seed(&team, &id),
    }
    let mut agent = Agent::spawn(command(&team, &argv(scenario, &id)));
    let mut events = Vec::new();
    // Reads one event; a kind that differs from the recording's fails at once.
    let read = |agent: &mut Agent, events: &mut Vec<Value>| -> bool {
        let Some(event) = agent.next(&recording.kinds) else {
            return false;
        };
        let seen = &agent.kinds.0;
        assert!(
            seen.len() <= recording.kinds.len() && seen[..] == recording.kinds[..seen.len()],
            "{scenario}: fake-claude's kinds differ from the real CLI's\n  fake: {seen:?}\n  real: {:?}",
            recording.kinds
        );
        events.push(event);
        true
    };
    for step in &recording.steps {
        while agent.kinds.len() < step.after && read(&mut agent, &mut events) {}
        match &step.action {
            Action::Send(line) => {
                let request = events.iter().rev().find(|e| e["type"] == "control_request");
                agent.send(&translate(line, request.map(|r| &r["request_id"])));
            }
            Action::CloseStdin => agent.stdin = None,
        }
    }
    while read(&mut agent, &mut events) {}
    assert_eq!(
        agent.kinds.0, recording.kinds,
        "{scenario}: fake-claude's kinds (left) differ from the real CLI's (right)"
    );
    let status = agent.wait();
    assert_eq!(
        status.code(),
        Some(recording.exit_code),
        "{scenario}: {status}"
    );
    let recorded_stderr = match scenario {
        "resume_missing" => recording.stderr.replace(
            summary["resume_missing"]["missing_id"].as_str().unwrap(),
            &id,
        ),
        _ => recording.stderr.replace(recorded_id, &id),
    };
    assert_eq!(
        agent.stderr_after_exit(),
        recorded_stderr,
        "{scenario}: stderr"
    );
    // fake-claude's own output decodes as cleanly as the real CLI's.
    let misfits = misfits(&agent.printed);
    assert!(misfits.is_empty(), "{scenario}: {misfits:#?}");
    drop(agent);
    Replay { team, events }
}

fn results(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["type"] == "result").collect()
}

fn project_file(team: &Team, name: &str) -> PathBuf {
    team.project.path().join(name)
}

#[test]
fn replay_new() {
    let replay = replay("new");
    let results = results(&replay.events);
    // The cost is the process's running total; the interrupted turn adds nothing.
    let costs: Vec<f64> = results
        .iter()
        .map(|r| r["total_cost_usd"].as_f64().unwrap())
        .collect();
    assert!(costs[0] > 0.0 && costs[1] > costs[0], "{costs:?}");
    assert_eq!(costs[2], costs[1], "{costs:?}");
    assert!(costs[3] > costs[2] && costs[4] > costs[3], "{costs:?}");
    assert_eq!(results[2]["usage"]["input_tokens"], 0);
    assert_eq!(results[2]["terminal_reason"], "aborted_streaming");
    assert_eq!(results[4]["num_turns"], 2);
    assert!(project_file(&replay.team, "iris-tool-marker").exists());
}

#[test]
fn replay_reuse() {
    let replay = replay("reuse");
    assert!(replay.events.is_empty());
}

#[test]
fn replay_resume() {
    replay("resume");
}

#[test]
fn replay_resume_missing() {
    let replay = replay("resume_missing");
    assert_eq!(replay.events[0]["subtype"], "error_during_execution");
}

#[test]
fn replay_eof_mid_turn() {
    let replay = replay("eof_mid_turn");
    assert_eq!(
        results(&replay.events)[0]["result"],
        "chunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5"
    );
}

#[test]
fn replay_no_initialize() {
    replay("no_initialize");
}

#[test]
fn replay_deny() {
    let replay = replay("deny");
    let result = results(&replay.events)[0];
    assert_eq!(result["permission_denials"][0]["tool_name"], "Bash");
    assert!(
        result["permission_denials"][0]["tool_input"]["command"]
            .as_str()
            .unwrap()
            .contains("iris-tool-marker")
    );
    assert!(!project_file(&replay.team, "iris-tool-marker").exists());
}

#[test]
fn replay_slash() {
    let replay = replay("slash");
    let results = results(&replay.events);
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    // /compact keeps the conversation; /clear starts a new one, which the rest carries on.
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[2], ids[1]);
    assert_eq!(ids[3], ids[2]);
    assert_eq!(results[0]["result"], "");
    assert_eq!(results[2]["result"], "");
    let boundary = replay
        .events
        .iter()
        .find(|e| e["subtype"] == "compact_boundary")
        .unwrap();
    assert_eq!(boundary["compact_metadata"]["trigger"], "manual");
    assert!(boundary["compact_metadata"]["pre_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn replay_long_tool_partial() {
    let replay = replay("long_tool_partial");
    let results = results(&replay.events);
    assert_eq!(results[0]["num_turns"], 2);
}
