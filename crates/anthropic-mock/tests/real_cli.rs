//! The mock against the real, pinned Claude Code CLI (skipped when it is not installed, unless
//! `IRIS_REQUIRE_REAL_CLAUDE=1`): echo turns and resume, a Bash tool call with its permission request, an MCP tool
//! call, API errors, the slow stream with an interrupt, and several text blocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anthropic_mock::{MockApi, Outcome, Script, pinned_version, real_claude_or_skip};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Generous: the CLI is a 250 MB binary and the machine may be busy. Waits end as soon as the condition holds.
const WAIT: Duration = Duration::from_secs(90);

/// A CLI process in stream-json mode, with its scratch directories.
struct Claude {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    session_id: String,
    stderr_path: PathBuf,
    /// Every line read so far, for failure messages.
    seen: Vec<Value>,
}

struct Dirs {
    cwd: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        Dirs {
            cwd: tempfile::tempdir().unwrap(),
            config: tempfile::tempdir().unwrap(),
        }
    }
}

impl Claude {
    async fn spawn(
        bin: &Path,
        mock: &MockApi,
        dirs: &Dirs,
        session: &str,
        resume: bool,
        extra_env: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Self {
        let stderr_path = dirs
            .config
            .path()
            .join(format!("stderr-{}.txt", uuid::Uuid::new_v4()));
        let mut cmd = Command::new(bin);
        cmd.args([
            "--print",
            "--output-format",
            "stream-json",
            "--verbose",
            "--input-format",
            "stream-json",
        ])
        .arg(if resume {
            format!("--resume={session}")
        } else {
            format!("--session-id={session}")
        })
        .args([
            "--permission-prompt-tool=stdio",
            "--include-partial-messages",
        ])
        .args(extra_args)
        .current_dir(dirs.cwd.path())
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", dirs.config.path())
        .envs(mock.claude_env(dirs.config.path()))
        .envs(extra_env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut claude = Claude {
            child,
            stdin,
            stdout,
            session_id: session.to_owned(),
            stderr_path,
            seen: Vec::new(),
        };
        claude.send(json!({"type": "control_request", "request_id": "init_1", "request": {"subtype": "initialize"}})).await;
        let init = claude
            .until("the initialize response", |l| {
                l["type"] == "control_response"
            })
            .await;
        assert_eq!(init.last().unwrap()["response"]["request_id"], "init_1");
        claude
    }

    async fn send(&mut self, value: Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{value}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    async fn user(&mut self, text: &str) {
        let msg = json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": text}]},
                         "parent_tool_use_id": null, "session_id": self.session_id});
        self.send(msg).await;
    }

    fn diagnostics(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let tail: Vec<String> = self
            .seen
            .iter()
            .rev()
            .take(15)
            .rev()
            .map(|l| {
                let s = l.to_string();
                s.chars().take(400).collect()
            })
            .collect();
        format!("last stdout lines:\n{}\nstderr:\n{stderr}", tail.join("\n"))
    }

    /// Reads lines until one satisfies `done`; returns them all (the matching one last). Answers `can_use_tool`
    /// requests with `allow` on the way.
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut lines = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stdout.next_line()).await;
            let line = match next {
                Err(_) => panic!(
                    "timed out after {WAIT:?} waiting for {what}\n{}",
                    self.diagnostics()
                ),
                Ok(Err(e)) => panic!(
                    "reading the CLI's stdout failed while waiting for {what}: {e}\n{}",
                    self.diagnostics()
                ),
                Ok(Ok(None)) => panic!(
                    "the CLI closed stdout while waiting for {what}\n{}",
                    self.diagnostics()
                ),
                Ok(Ok(Some(line))) => line,
            };
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            self.seen.push(value.clone());
            lines.push(value.clone());
            if value["type"] == "control_request" && value["request"]["subtype"] == "can_use_tool" {
                let response = json!({"type": "control_response", "response": {"subtype": "success",
                    "request_id": value["request_id"],
                    "response": {"behavior": "allow", "updatedInput": value["request"]["input"]}}});
                self.send(response).await;
            }
            if done(&value) {
                return lines;
            }
        }
    }

    /// Sends a user message and reads until its `result`.
    async fn turn(&mut self, text: &str) -> Turn {
        self.user(text).await;
        let lines = self
            .until(&format!("the result of {text:?}"), |l| {
                l["type"] == "result"
            })
            .await;
        Turn { lines }
    }

    /// Closes stdin and waits for the exit code.
    async fn close(mut self) -> i32 {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the CLI did not exit after stdin closed")
            .unwrap();
        status.code().unwrap_or(-1)
    }
}

struct Turn {
    lines: Vec<Value>,
}

impl Turn {
    fn result(&self) -> &Value {
        self.lines.last().unwrap()
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["type"] == kind)
    }

    fn text_deltas(&self) -> Vec<String> {
        self.of_type("stream_event")
            .filter(|l| l["event"]["delta"]["type"] == "text_delta")
            .map(|l| l["event"]["delta"]["text"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn new_session() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_turns_blocks_cost_and_resume() {
    let Some(bin) = real_claude_or_skip() else {
        return;
    };
    let mock = MockApi::start().await.unwrap();
    let dirs = Dirs::new();
    let session = new_session();
    let mut claude = Claude::spawn(&bin, &mock, &dirs, &session, false, &[], &[]).await;

    let first = claude.turn("hi").await;
    let init = first
        .of_type("system")
        .find(|l| l["subtype"] == "init")
        .expect("system/init before the turn");
    assert_eq!(
        init["claude_code_version"],
        pinned_version(),
        "the CLI is not the pinned version"
    );
    assert_eq!(init["session_id"], session.as_str());
    let result = first.result();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "echo: hi (turns seen: 1)");
    assert_eq!(first.text_deltas(), ["echo: hi (turns seen: 1)"]);
    // 100 input tokens at $5/M plus 5 output tokens at $25/M.
    assert_eq!(result["usage"]["input_tokens"], 100);
    assert_eq!(result["usage"]["output_tokens"], 5);
    assert!(
        approx(result["total_cost_usd"].as_f64().unwrap(), 0.000_625),
        "{result}"
    );

    let second = claude.turn("second").await;
    assert_eq!(second.result()["result"], "echo: second (turns seen: 2)");
    // The cost is a running total per process: 0.000625 + (200 × 5 + 5 × 25) / 1e6.
    assert!(
        approx(
            second.result()["total_cost_usd"].as_f64().unwrap(),
            0.000_625 + 0.001_125
        ),
        "{}",
        second.result()
    );

    // Several text blocks: one assistant event per block with the same message id; result is the last block.
    let blocks = claude.turn("blocks one|two|three").await;
    let assistants: Vec<&Value> = blocks.of_type("assistant").collect();
    let texts: Vec<&str> = assistants
        .iter()
        .map(|a| a["message"]["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(
        assistants
            .iter()
            .all(|a| a["message"]["id"] == assistants[0]["message"]["id"])
    );
    assert_eq!(blocks.result()["result"], "three");
    assert_eq!(claude.close().await, 0);

    let recorded = mock.message_requests();
    assert_eq!(recorded.len(), 3);
    assert!(
        recorded
            .iter()
            .all(|r| r.model.as_deref() == Some("claude-opus-4-8") && r.stream),
        "{recorded:?}"
    );
    assert!(
        recorded
            .iter()
            .all(|r| r.query.as_deref() == Some("beta=true"))
    );
    assert!(
        recorded
            .iter()
            .all(|r| r.session_header.as_deref() == Some(session.as_str()))
    );
    assert!(recorded[0].tools.iter().any(|t| t == "Bash"));
    assert_eq!(mock.counters().not_found, 0);

    // A new process resuming the conversation sends the earlier turns: the context survived.
    let mut resumed = Claude::spawn(&bin, &mock, &dirs, &session, true, &[], &[]).await;
    let again = resumed.turn("third").await;
    assert_eq!(again.result()["result"], "echo: third (turns seen: 4)");
    assert_eq!(resumed.close().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_tool_call_is_permitted_and_continued() {
    let Some(bin) = real_claude_or_skip() else {
        return;
    };
    let mock = MockApi::start().await.unwrap();
    let dirs = Dirs::new();
    let mut claude = Claude::spawn(&bin, &mock, &dirs, &new_session(), false, &[], &[]).await;

    let turn = claude
        .turn("usetool touch tool-ran.txt && echo tool-ok")
        .await;
    let ask = turn
        .of_type("control_request")
        .next()
        .expect("a can_use_tool request (touch is not read-only)");
    assert_eq!(ask["request"]["subtype"], "can_use_tool");
    assert_eq!(ask["request"]["tool_name"], "Bash");
    assert_eq!(
        ask["request"]["input"]["command"],
        "touch tool-ran.txt && echo tool-ok"
    );
    let tool_result = turn
        .of_type("user")
        .find(|l| l["message"]["content"][0]["type"] == "tool_result")
        .expect("the CLI echoes the tool_result as a user message");
    assert_eq!(tool_result["message"]["content"][0]["content"], "tool-ok");
    assert_eq!(
        turn.result()["result"],
        "after tool: tool-ok (turns seen: 1)"
    );
    assert_eq!(turn.result()["num_turns"], 2);
    assert!(
        dirs.cwd.path().join("tool-ran.txt").exists(),
        "the Bash tool ran in the CLI's cwd"
    );
    assert_eq!(claude.close().await, 0);

    let scripts: Vec<Option<Script>> = mock
        .message_requests()
        .into_iter()
        .map(|r| r.script)
        .collect();
    assert_eq!(
        scripts,
        [
            Some(Script::UseTool {
                command: "touch tool-ran.txt && echo tool-ok".into()
            }),
            Some(Script::AfterTool)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tool_call_reaches_the_server_and_continues() {
    let Some(bin) = real_claude_or_skip() else {
        return;
    };
    let mock = MockApi::start().await.unwrap();
    let dirs = Dirs::new();
    let config = json!({"mcpServers": {"iris": {"type": "stdio", "command": env!("CARGO_BIN_EXE_anthropic-mock"), "args": ["--mcp-stdio"]}}});
    let config_path = dirs.config.path().join("mcp.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let config_arg = config_path.to_str().unwrap();
    let mut claude = Claude::spawn(
        &bin,
        &mock,
        &dirs,
        &new_session(),
        false,
        &[],
        &["--mcp-config", config_arg],
    )
    .await;

    let turn = claude.turn("usemcp").await;
    let init = turn
        .of_type("system")
        .find(|l| l["subtype"] == "init")
        .unwrap();
    assert_eq!(
        init["mcp_servers"],
        json!([{"name": "iris", "status": "connected"}])
    );
    let ask = turn
        .of_type("control_request")
        .next()
        .expect("MCP tools need permission");
    assert_eq!(ask["request"]["tool_name"], "mcp__iris__list_teams");
    assert_eq!(turn.result()["result"], "after mcp: teams: alpha, beta");

    let turn = claude
        .turn("usemcp mcp__iris__echo {\"text\": \"hello mcp\"}")
        .await;
    assert_eq!(turn.result()["result"], "after mcp: hello mcp");
    assert_eq!(claude.close().await, 0);
    let recorded = mock.message_requests();
    assert!(
        recorded[0]
            .tools
            .iter()
            .any(|t| t == "mcp__iris__list_teams"),
        "{:?}",
        recorded[0].tools
    );
    assert_eq!(recorded[1].script, Some(Script::AfterMcp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_end_the_turn_with_an_error_result() {
    let Some(bin) = real_claude_or_skip() else {
        return;
    };
    let mock = MockApi::start().await.unwrap();
    let dirs = Dirs::new();
    let started = std::time::Instant::now();
    let mut claude = Claude::spawn(
        &bin,
        &mock,
        &dirs,
        &new_session(),
        false,
        &[("CLAUDE_CODE_MAX_RETRIES", "0")],
        &[],
    )
    .await;

    let expected = [
        (
            400,
            "unknown",
            "API Error: 400 mock: invalid request (scripted api-error 400)",
        ),
        (
            429,
            "rate_limit",
            "API Error: Request rejected (429) · mock: rate limited (scripted api-error 429)",
        ),
        (
            529,
            "server_error",
            "API Error: 529 Overloaded. This is a server-side issue",
        ),
    ];
    for (status, error, text) in expected {
        let turn = claude.turn(&format!("api-error {status}")).await;
        let result = turn.result();
        assert_eq!(result["subtype"], "success", "{result}");
        assert_eq!(result["is_error"], true, "{result}");
        assert_eq!(result["api_error_status"], status, "{result}");
        assert!(
            result["result"].as_str().unwrap().starts_with(text),
            "{result}"
        );
        assert_eq!(result["total_cost_usd"], 0.0);
        let assistant = turn
            .of_type("assistant")
            .next()
            .expect("a synthetic assistant message");
        assert_eq!(assistant["message"]["model"], "<synthetic>");
        assert_eq!(assistant["error"], error, "{assistant}");
        assert_eq!(
            turn.of_type("system")
                .filter(|l| l["subtype"] == "api_retry")
                .count(),
            0
        );
    }
    // The process survives; the failed prompts are not part of the conversation.
    let ok = claude.turn("hi").await;
    assert_eq!(ok.result()["result"], "echo: hi (turns seen: 1)");
    claude.user("api-error 400").await;
    claude
        .until("the last error result", |l| l["type"] == "result")
        .await;
    // After an error result as the last turn, closing stdin exits 1.
    assert_eq!(claude.close().await, 1);
    assert_eq!(
        mock.counters().api_errors,
        4,
        "no retries with CLAUDE_CODE_MAX_RETRIES=0"
    );
    assert!(started.elapsed() < WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_up_to_max_retries() {
    let Some(bin) = real_claude_or_skip() else {
        return;
    };
    let mock = MockApi::start().await.unwrap();
    let dirs = Dirs::new();
    let mut claude = Claude::spawn(
        &bin,
        &mock,
        &dirs,
        &new_session(),
        false,
        &[("CLAUDE_CODE_MAX_RETRIES", "1")],
        &[],
    )
    .await;
    let turn = claude.turn("api-error 429").await;
    let retries: Vec<&Value> = turn
        .of_type("system")
        .filter(|l| l["subtype"] == "api_retry")
        .collect();
    assert_eq!(retries.len(), 1, "{:?}", turn.lines);
    assert_eq!(retries[0]["error_status"], 429);
    assert_eq!(retries[0]["max_retries"], 1);
    // The mock's `retry-after: 1` sets the first delay.
    assert_eq!(retries[0]["retry_delay_ms"], 1000);
    assert_eq!(turn.result()["api_error_status"], 429);
    assert_eq!(mock.counters().api_errors, 2);
    drop(claude);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_yields_deltas_and_an_interrupt_stops_it() {
    let Some(bin) = real_claude_or_skip() else {
        return;
    };
    let mock = MockApi::start().await.unwrap();
    let dirs = Dirs::new();
    let mut claude = Claude::spawn(&bin, &mock, &dirs, &new_session(), false, &[], &[]).await;

    // A full slow stream: every delta arrives as a stream_event, in order.
    let turn = claude.turn("slow 5 20").await;
    assert_eq!(
        turn.text_deltas(),
        [
            "slow-1/5",
            " slow-2/5",
            " slow-3/5",
            " slow-4/5",
            " slow-5/5"
        ]
    );
    assert_eq!(
        turn.result()["result"],
        "slow-1/5 slow-2/5 slow-3/5 slow-4/5 slow-5/5"
    );

    // A long one, interrupted after its third delta.
    claude.user("slow 50 200").await;
    let mut deltas = 0;
    claude
        .until("three text deltas", |l| {
            deltas += usize::from(
                l["type"] == "stream_event" && l["event"]["delta"]["type"] == "text_delta",
            );
            deltas == 3
        })
        .await;
    claude.send(json!({"type": "control_request", "request_id": "int_1", "request": {"subtype": "interrupt"}})).await;
    let rest = claude
        .until("the interrupted result", |l| l["type"] == "result")
        .await;
    let result = rest.last().unwrap();
    assert_eq!(result["subtype"], "error_during_execution", "{result}");
    assert_eq!(result["is_error"], true);
    let recorded = mock
        .wait_for("the mock to see the client go away", WAIT, |r| {
            r.iter()
                .any(|r| matches!(r.outcome, Outcome::ClientGone { .. }))
        })
        .await
        .unwrap();
    let gone = recorded
        .iter()
        .find(|r| matches!(r.outcome, Outcome::ClientGone { .. }))
        .unwrap();
    assert_eq!(
        gone.script,
        Some(Script::Slow {
            chunks: 50,
            delay_ms: 200
        })
    );

    // The interrupted prompt stays in the conversation; the CLI's interruption marker is not a turn.
    let after = claude.turn("hi").await;
    assert_eq!(after.result()["result"], "echo: hi (turns seen: 3)");
    assert_eq!(claude.close().await, 0);
}
