//! The stream-json protocol: handshake, turns, control requests, interrupts, EOF.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Dirs, Line, assistant_texts, kinds};
use serde_json::{Value, json};

#[test]
fn initialize_handshake_answers_without_starting_a_turn() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_control(
        "req_1_abc",
        json!({ "subtype": "initialize", "hooks": null }),
    );
    let reply = fake.next_event();
    assert_eq!(reply["type"], "control_response");
    assert_eq!(reply["response"]["subtype"], "success");
    assert_eq!(reply["response"]["request_id"], "req_1_abc");
    assert!(reply["response"]["response"]["commands"].is_array());
    assert!(reply["response"]["response"]["models"].is_array());
    // No init (and no transcript) until the first user message.
    assert_eq!(fake.next_line_within(Duration::from_millis(300)), None);
    assert!(!dirs.config.path().join("projects").exists());
}

#[test]
fn an_echo_turn_is_init_assistant_result() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("hello");
    let init = fake.next_event();
    assert_eq!(init["type"], "system");
    assert_eq!(init["subtype"], "init");
    assert_eq!(init["model"], "fake-claude");
    assert_eq!(init["permissionMode"], "default");
    assert_eq!(init["mcp_servers"], json!([]));
    assert!(init["tools"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(init["uuid"].is_string());
    let session_id = init["session_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::try_parse(&session_id).is_ok());
    assert_eq!(
        std::path::Path::new(init["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        dirs.cwd.path().canonicalize().unwrap()
    );

    let assistant = fake.next_event();
    assert_eq!(assistant["type"], "assistant");
    assert_eq!(assistant["session_id"], session_id.as_str());
    assert_eq!(assistant["parent_tool_use_id"], Value::Null);
    assert!(
        assistant["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    let message = &assistant["message"];
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["model"], "fake-claude");
    assert_eq!(message["role"], "assistant");
    // Like the real CLI's: the stop reason is only in the result.
    assert_eq!(message["stop_reason"], Value::Null);
    assert_eq!(
        message["content"],
        json!([{ "type": "text", "text": "echo: hello" }])
    );

    let result = fake.next_event();
    assert_eq!(result["type"], "result");
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["num_turns"], 1);
    assert_eq!(result["result"], "echo: hello");
    assert_eq!(result["stop_reason"], "end_turn");
    assert_eq!(result["terminal_reason"], "completed");
    assert_eq!(result["session_id"], session_id.as_str());
    assert!(result["duration_ms"].is_u64());
    assert!(result["duration_api_ms"].is_u64());
    assert!(result["uuid"].is_string());
    // "hello" (5 bytes, 2 tokens) in, "echo: hello" (11 bytes, 3 tokens) out:
    // 2 × $5/Mtok + 3 × $25/Mtok.
    assert_eq!(result["total_cost_usd"], 0.000085);
    assert_eq!(result["usage"]["input_tokens"], 2);
    assert_eq!(result["usage"]["output_tokens"], 3);
    assert_eq!(result["usage"]["cache_read_input_tokens"], 0);
    let model = &result["modelUsage"]["fake-claude"];
    assert_eq!(model["inputTokens"], 2);
    assert_eq!(model["outputTokens"], 3);
    assert_eq!(model["costUSD"], 0.000085);

    // A second turn: init again, block-form content accepted, and the cost is the running
    // total of the process while the usage is the turn's own.
    fake.send_user_blocks("again!");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        ["system/init", "assistant", "result/success"]
    );
    assert_eq!(events[0]["session_id"], session_id.as_str());
    let result = &events[2];
    assert_eq!(result["result"], "echo: again!");
    assert_eq!(result["session_id"], session_id.as_str());
    // "again!" (6 bytes, 2 tokens) in, "echo: again!" (12 bytes, 3 tokens) out.
    assert_eq!(result["usage"]["input_tokens"], 2);
    assert_eq!(result["usage"]["output_tokens"], 3);
    assert_eq!(result["total_cost_usd"], 0.00017);
    assert_eq!(result["modelUsage"]["fake-claude"]["inputTokens"], 4);
    assert_eq!(result["modelUsage"]["fake-claude"]["costUSD"], 0.00017);
}

#[test]
fn lines_start_with_the_type() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("hi");
    for _ in 0..3 {
        let Some(Line::Full(line)) = fake.next_line() else {
            panic!("expected a line");
        };
        assert!(line.starts_with("{\"type\":"), "{line}");
    }
}

#[test]
fn queued_messages_run_in_order() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!sleep 200");
    fake.send_user("second");
    fake.send_user("third");
    let mut results = Vec::new();
    for _ in 0..3 {
        let turn = fake.turn();
        results.push(turn.last().unwrap()["result"].as_str().unwrap().to_owned());
    }
    assert_eq!(results, ["echo: !sleep 200", "echo: second", "echo: third"]);
}

#[test]
fn other_control_requests_get_an_error() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_control("r9", json!({ "subtype": "rewind_files" }));
    let reply = fake.next_event();
    assert_eq!(
        reply,
        json!({
            "type": "control_response",
            "response": {
                "subtype": "error",
                "request_id": "r9",
                "error": "unsupported control request: rewind_files",
            }
        })
    );
    fake.send_control(
        "r10",
        json!({ "subtype": "set_permission_mode", "mode": "plan" }),
    );
    assert_eq!(fake.next_event()["response"]["subtype"], "success");
}

#[test]
fn bad_stdin_lines_are_reported_and_skipped() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_raw("this is not json");
    fake.send_raw("{\"type\": \"user\", broken");
    fake.send_raw("");
    fake.send_raw("{\"type\":\"keep_alive\"}");
    fake.send_user("still here");
    let events = fake.turn();
    assert_eq!(events.last().unwrap()["result"], "echo: still here");
    assert!(fake.stderr_contains("invalid JSON"), "{}", fake.stderr());
}

#[test]
fn interrupt_ends_a_sleeping_turn_quickly() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!sleep 5000");
    assert_eq!(fake.next_event()["subtype"], "init");
    let start = Instant::now();
    fake.send_control("int_1", json!({ "subtype": "interrupt" }));
    let events = fake.until(|e| e["type"] == "result");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Nothing was streamed, so there is no partial assistant message.
    assert_eq!(
        kinds(&events),
        ["control_response", "user", "result/error_during_execution"]
    );
    assert_eq!(
        events[0],
        json!({"type": "control_response", "response": {"subtype": "success", "request_id": "int_1"}})
    );
    assert_eq!(
        events[1]["message"]["content"][0]["text"],
        "[Request interrupted by user]"
    );
    let result = events.last().unwrap();
    assert_eq!(result["subtype"], "error_during_execution");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["terminal_reason"], "aborted_streaming");
    assert_eq!(result["total_cost_usd"], 0.0);

    // The session carries on.
    fake.send_user("after");
    assert_eq!(fake.turn().last().unwrap()["result"], "echo: after");
}

#[test]
fn interrupt_ends_stalled_and_hung_turns() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!stall");
    let events = fake.until(|e| e["type"] == "assistant");
    assert_eq!(assistant_texts(&events), ["chunk 1"]);
    assert_eq!(fake.next_line_within(Duration::from_millis(300)), None);
    fake.send_control("i1", json!({ "subtype": "interrupt" }));
    let events = fake.until(|e| e["type"] == "result");
    assert_eq!(events.last().unwrap()["subtype"], "error_during_execution");

    fake.send_user("!hang");
    assert_eq!(fake.next_event()["subtype"], "init");
    assert_eq!(fake.next_line_within(Duration::from_millis(300)), None);
    // Control requests are still answered while the turn hangs.
    fake.send_control("init", json!({ "subtype": "initialize" }));
    assert_eq!(fake.next_event()["response"]["request_id"], "init");
    fake.send_control("i2", json!({ "subtype": "interrupt" }));
    let events = fake.until(|e| e["type"] == "result");
    assert!(assistant_texts(&events).is_empty());
    assert_eq!(events.last().unwrap()["is_error"], true);
}

#[test]
fn interrupt_when_idle_is_answered_and_harmless() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    assert_eq!(fake.next_event()["response"]["subtype"], "success");
    fake.send_user("ok");
    assert_eq!(fake.turn().last().unwrap()["subtype"], "success");
}

#[test]
fn stdin_eof_finishes_the_turn_then_exits_zero() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!sleep 300");
    fake.close_stdin();
    let events = fake.turn();
    assert_eq!(events.last().unwrap()["result"], "echo: !sleep 300");
    assert_eq!(fake.wait().code(), Some(0));
    assert_eq!(fake.next_line(), None);
}

#[test]
fn stdin_eof_when_idle_exits_zero() {
    let dirs = Dirs::new();
    let (status, stdout, _) = dirs.run_closed(&[]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout, "");
}

#[test]
fn exit_after_reply_exits_zero_with_stdin_open() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!exit-after-reply");
    let events = fake.turn();
    assert_eq!(events.last().unwrap()["result"], "echo: !exit-after-reply");
    assert_eq!(fake.wait().code(), Some(0));
}

#[test]
fn replay_and_partial_messages() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--replay-user-messages", "--include-partial-messages"]);
    fake.send(&json!({
        "type": "user",
        "uuid": "11111111-2222-4333-8444-555555555555",
        "message": { "role": "user", "content": "hi" },
    }));
    let events = fake.turn();
    let replay = events.iter().find(|e| e["type"] == "user").unwrap();
    assert_eq!(replay["uuid"], "11111111-2222-4333-8444-555555555555");
    assert_eq!(replay["message"]["content"], "hi");
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "stream_event" && e["event"]["type"] == "content_block_delta")
        .collect();
    let texts: Vec<&Value> = deltas
        .iter()
        .map(|d| &d["event"]["delta"]["text"])
        .collect();
    assert_eq!(texts, ["echo:", " hi"]);
}

#[test]
fn start_delay_postpones_reading_stdin() {
    let dirs = Dirs::new();
    let mut cmd = dirs.command(&[]);
    cmd.env("FAKE_CLAUDE_START_DELAY_MS", "400");
    let mut fake = common::Fake::spawn(cmd);
    let start = Instant::now();
    fake.send_control("r", json!({ "subtype": "initialize" }));
    assert_eq!(fake.next_event()["type"], "control_response");
    assert!(start.elapsed() >= Duration::from_millis(350));
}

/// `--max-budget-usd`, against the real CLI's recording (`max_budget`): the turn that reaches
/// the limit still answers, but its result is `error_max_budget_usd` with a zero `usage` (the
/// cost is in the running total); the next turn is refused at once, without an answer; stdin EOF
/// then exits 1.
#[test]
fn max_budget_usd_ends_the_turn_that_reaches_it_and_refuses_the_next_like_the_real_cli() {
    let recorded = common::read_jsonl(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/recorded-claude-2.1.197/max_budget.stdout.jsonl"),
    );
    let real_results: Vec<&Value> = recorded.iter().filter(|e| e["type"] == "result").collect();
    assert_eq!(real_results.len(), 2);

    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--max-budget-usd", "0.00001"]);
    fake.send_user("hello one");
    let first = fake.turn();
    fake.send_user("hello two");
    let second = fake.turn();
    for (turn, real, answered) in [
        (&first, real_results[0], true),
        (&second, real_results[1], false),
    ] {
        assert_eq!(assistant_texts(turn).is_empty(), !answered, "{turn:?}");
        let result = turn.last().unwrap();
        for field in ["subtype", "is_error", "num_turns", "stop_reason", "errors"] {
            assert_eq!(result[field], real[field], "{field} of {result}");
        }
        assert_eq!(result["usage"]["input_tokens"], 0);
        assert_eq!(result["usage"]["output_tokens"], 0);
        assert!(result.get("result").is_none() && real.get("result").is_none());
        assert!(result["total_cost_usd"].as_f64().unwrap() > 0.0);
    }
    // The running total does not move on a refused turn.
    assert_eq!(
        first.last().unwrap()["total_cost_usd"],
        second.last().unwrap()["total_cost_usd"]
    );
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(1));
}
