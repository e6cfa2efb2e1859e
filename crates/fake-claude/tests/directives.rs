//! Scripted behaviours: `!stream`, `!blocks`, `!error`, `!crash`, `!garbage`, `!big`,
//! `!permission`, `!tool`, …
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Dirs, Line, alive, assistant_texts, children, eventually, kinds, sigterm, stat};
use serde_json::{Value, json};

#[test]
fn stream_is_one_block_printed_once_complete() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!stream 3 50");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        ["system/init", "assistant", "result/success"]
    );
    assert_eq!(assistant_texts(&events), ["chunk 1\nchunk 2\nchunk 3"]);
    assert_eq!(events[1]["message"]["stop_reason"], Value::Null);
    let result = events.last().unwrap();
    assert_eq!(result["result"], "chunk 1\nchunk 2\nchunk 3");
}

#[test]
fn stream_with_partial_messages_sends_deltas_while_streaming() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--include-partial-messages"]);
    fake.send_user("!stream 3");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "system/init",
            "system/status",
            "stream_event/message_start",
            "stream_event/content_block_start",
            "stream_event/content_block_delta",
            "stream_event/content_block_delta",
            "stream_event/content_block_delta",
            "assistant",
            "stream_event/content_block_stop",
            "stream_event/message_delta",
            "stream_event/message_stop",
            "result/success",
        ]
    );
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "content_block_delta")
        .map(|e| &e["event"]["delta"]["text"])
        .collect();
    assert_eq!(deltas, ["chunk 1", "\nchunk 2", "\nchunk 3"]);
    let start = &events[2];
    assert!(start["ttft_ms"].is_u64());
    assert_eq!(
        start["event"]["message"]["id"], events[7]["message"]["id"],
        "the stream and the assistant event are one message"
    );
    assert_eq!(events[1]["status"], "requesting");
    assert_eq!(events[9]["event"]["delta"]["stop_reason"], "end_turn");
}

#[test]
fn an_interrupted_stream_prints_the_text_so_far() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--include-partial-messages"]);
    fake.send_user("hi");
    let first = fake.turn();
    let cost = first.last().unwrap()["total_cost_usd"].clone();
    fake.send_user("!stream 3 60000");
    fake.until(|e| e["event"]["type"] == "content_block_delta");
    fake.send_control("int_1", json!({ "subtype": "interrupt" }));
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "control_response",
            "assistant",
            "user",
            "result/error_during_execution"
        ]
    );
    assert_eq!(
        events[0],
        json!({"type": "control_response", "response": {"subtype": "success", "request_id": "int_1"}})
    );
    assert_eq!(assistant_texts(&events), ["chunk 1"]);
    assert_eq!(
        events[2]["message"]["content"],
        json!([{ "type": "text", "text": "[Request interrupted by user]" }])
    );
    let result = &events[3];
    assert_eq!(result["is_error"], true);
    assert_eq!(result["terminal_reason"], "aborted_streaming");
    assert!(result["errors"].as_array().is_some_and(|e| e.len() == 1));
    assert_eq!(result["usage"]["input_tokens"], 0);
    assert_eq!(result["usage"]["output_tokens"], 0);
    // The running total, unchanged by the interrupted turn.
    assert_eq!(result["total_cost_usd"], cost);
}

#[test]
fn an_interrupted_stream_without_partial_messages_is_silent_until_then() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!stream 3 60000");
    assert_eq!(fake.next_event()["subtype"], "init");
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "control_response",
            "assistant",
            "user",
            "result/error_during_execution"
        ]
    );
    assert_eq!(assistant_texts(&events), ["chunk 1"]);
}

#[test]
fn blocks_are_several_assistant_events_of_one_message() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!blocks first part|second|the end");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "system/init",
            "assistant",
            "assistant",
            "assistant",
            "result/success"
        ]
    );
    assert_eq!(
        assistant_texts(&events),
        ["first part", "second", "the end"]
    );
    let ids: Vec<&Value> = events[1..4].iter().map(|a| &a["message"]["id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // The turn's text is the last block's.
    assert_eq!(events[4]["result"], "the end");
    assert_eq!(events[4]["num_turns"], 1);
}

#[test]
fn blocks_with_a_delay_can_be_interrupted_between_blocks() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!blocks delay=60000 one|two");
    let events = fake.until(|e| e["type"] == "assistant");
    assert_eq!(assistant_texts(&events), ["one"]);
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    let events = fake.turn();
    // Nothing of the second block was streamed, so no partial text.
    assert_eq!(
        kinds(&events),
        ["control_response", "user", "result/error_during_execution"]
    );
}

#[test]
fn error_gives_an_error_result() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!error");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        ["system/init", "assistant", "result/success"]
    );
    let texts = assistant_texts(&events);
    assert_eq!(texts.len(), 1);
    assert!(texts[0].starts_with("API Error: 500 "), "{texts:?}");
    assert_eq!(events[1]["message"]["model"], "<synthetic>");
    assert_eq!(events[1]["error"], "server_error");
    let result = events.last().unwrap();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["result"], texts[0].as_str());
    assert_eq!(result["api_error_status"], 500);
    assert_eq!(result["usage"]["input_tokens"], 0);
    assert_eq!(result["total_cost_usd"], 0.0);

    fake.send_user("!error 429");
    let result = fake.turn().pop().unwrap();
    assert_eq!(result["api_error_status"], 429);
    assert!(
        result["result"]
            .as_str()
            .unwrap()
            .starts_with("API Error: Request rejected (429)")
    );
    // Like the real CLI: stdin EOF right after a failed API call exits 1.
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(1));
}

#[test]
fn a_success_after_an_error_exits_zero() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!error 529");
    assert_eq!(fake.turn().pop().unwrap()["api_error_status"], 529);
    fake.send_user("fine");
    assert_eq!(fake.turn().pop().unwrap()["is_error"], false);
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));
}

#[test]
fn crash_leaves_a_partial_line_and_exits_with_the_code() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!crash 3");
    assert_eq!(fake.next_event()["subtype"], "init");
    match fake.next_line() {
        Some(Line::Partial(tail)) => {
            assert!(tail.starts_with('{'));
            assert!(serde_json::from_str::<Value>(&tail).is_err());
        }
        other => panic!("expected a partial line, got {other:?}"),
    }
    assert_eq!(fake.next_line(), None);
    assert_eq!(fake.wait().code(), Some(3));
    assert!(fake.stderr_after_exit().contains("fatal: simulated crash"));
}

#[test]
fn crash_defaults_to_exit_code_one() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!crash");
    assert_eq!(fake.wait().code(), Some(1));
}

#[test]
fn garbage_comes_before_a_normal_reply() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!garbage");
    assert_eq!(fake.next_event()["subtype"], "init");
    let mut raw = Vec::new();
    loop {
        let Some(Line::Full(line)) = fake.next_line() else {
            panic!("stdout ended early");
        };
        if serde_json::from_str::<Value>(&line).is_ok() {
            let event: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(event["type"], "assistant");
            assert_eq!(assistant_texts(&[event]), ["echo: !garbage"]);
            break;
        }
        raw.push(line);
    }
    assert!(raw.iter().any(|l| l.starts_with("[SandboxDebug]")));
    assert!(raw.iter().any(String::is_empty));
    assert!(raw.iter().any(|l| l.starts_with('{')));
    assert_eq!(fake.next_event()["type"], "result");
}

#[test]
fn big_sends_exactly_that_many_bytes() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!big 100000");
    let events = fake.turn();
    let texts = assistant_texts(&events);
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0].len(), 100_000);
    assert!(texts[0].bytes().all(|b| b == b'x'));
    assert_eq!(
        events.last().unwrap()["result"].as_str().unwrap().len(),
        100_000
    );
}

/// Sends `!permission Bash`, checks the request, answers with `response` and returns the events
/// after the answer.
fn permission_round(response: Value) -> Vec<Value> {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--permission-prompt-tool", "stdio"]);
    fake.send_user("!permission Bash");
    let events = fake.until(|e| e["type"] == "control_request");
    assert_eq!(
        kinds(&events),
        ["system/init", "assistant", "control_request/can_use_tool"]
    );
    let tool_use = &events[1]["message"]["content"][0];
    assert_eq!(tool_use["type"], "tool_use");
    assert_eq!(tool_use["name"], "Bash");
    let request = events.last().unwrap();
    let request_id = request["request_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::try_parse(&request_id).is_ok(), "{request_id}");
    let body = &request["request"];
    assert_eq!(body["subtype"], "can_use_tool");
    assert_eq!(body["tool_name"], "Bash");
    assert_eq!(body["display_name"], "Bash");
    assert_eq!(body["input"], tool_use["input"]);
    assert!(body["input"]["command"].is_string());
    assert_eq!(body["description"], body["input"]["description"]);
    assert!(body["blocked_path"].is_string());
    assert_eq!(body["tool_use_id"], tool_use["id"]);
    assert_eq!(body["permission_suggestions"][0]["type"], "addRules");
    // Nothing more until the host answers.
    assert_eq!(fake.next_line_within(Duration::from_millis(200)), None);
    // An answer to some other request is ignored.
    fake.send(&json!({
        "type": "control_response",
        "response": { "subtype": "success", "request_id": "perm_999", "response": { "behavior": "allow" } }
    }));
    let mut response = response;
    response["request_id"] = json!(request_id);
    fake.send(&json!({ "type": "control_response", "response": response }));
    let events = fake.turn();
    assert_eq!(kinds(&events), ["user", "assistant", "result/success"]);
    let tool_result = &events[0]["message"]["content"][0];
    assert_eq!(tool_result["type"], "tool_result");
    assert_eq!(tool_result["tool_use_id"], tool_use["id"]);
    assert_eq!(events[2]["num_turns"], 2);
    events
}

#[test]
fn permission_allow() {
    let events = permission_round(
        json!({ "subtype": "success", "response": { "behavior": "allow", "updatedInput": {} } }),
    );
    assert_eq!(assistant_texts(&events), ["permission Bash: allow"]);
    assert_eq!(events[0]["message"]["content"][0]["is_error"], false);
    let result = events.last().unwrap();
    assert_eq!(result["result"], "permission Bash: allow");
    assert_eq!(result["permission_denials"], json!([]));
}

#[test]
fn permission_deny() {
    let events = permission_round(json!({
        "subtype": "success",
        "response": { "behavior": "deny", "message": "not today", "interrupt": false },
    }));
    assert_eq!(assistant_texts(&events), ["permission Bash: deny"]);
    let tool_result = &events[0]["message"]["content"][0];
    assert_eq!(tool_result["is_error"], true);
    assert_eq!(tool_result["content"], "not today");
    let denials = &events.last().unwrap()["permission_denials"];
    assert_eq!(denials[0]["tool_name"], "Bash");
    assert_eq!(denials[0]["tool_use_id"], tool_result["tool_use_id"]);
    assert!(denials[0]["tool_input"]["command"].is_string());
}

#[test]
fn permission_error() {
    let events = permission_round(json!({ "subtype": "error", "error": "no" }));
    assert_eq!(assistant_texts(&events), ["permission Bash: error"]);
}

#[test]
fn without_a_prompt_tool_a_permission_is_refused_without_asking() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!permission Bash");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "system/init",
            "assistant",
            "user",
            "assistant",
            "result/success"
        ]
    );
    assert_eq!(events.last().unwrap()["result"], "permission Bash: deny");
    // Pre-allowed tools run without asking.
    let mut fake = dirs.spawn(&["--permission-prompt-tool=stdio", "--allowedTools", "Bash"]);
    fake.send_user("!permission Bash");
    let events = fake.turn();
    assert!(
        !kinds(&events)
            .iter()
            .any(|k| k.starts_with("control_request"))
    );
    assert_eq!(events.last().unwrap()["result"], "permission Bash: allow");
}

#[test]
fn a_pending_permission_can_be_interrupted() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--permission-prompt-tool", "stdio"]);
    fake.send_user("!permission Write");
    let events = fake.until(|e| e["type"] == "control_request");
    let request_id = events.last().unwrap()["request_id"].clone();
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "control_response",
            "control_cancel_request",
            "user",
            "user",
            "result/error_during_execution"
        ]
    );
    assert_eq!(events[1]["request_id"], request_id);
    assert_eq!(events[2]["message"]["content"][0]["is_error"], true);
    assert_eq!(
        events[3]["message"]["content"][0]["text"],
        "[Request interrupted by user for tool use]"
    );
    assert_eq!(events[4]["terminal_reason"], "aborted_tools");
}

/// A `!tool` run's helper: a child of fake-claude, once it runs the helper mode (so after its
/// `setsid`).
fn tool_helper(fake_pid: u32) -> u32 {
    let found = std::cell::Cell::new(None);
    assert!(
        eventually(|| {
            found.set(children(fake_pid).into_iter().find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains("--fake-claude-tool-helper"))
            }));
            found.get().is_some()
        }),
        "no tool subprocess appeared"
    );
    found.get().unwrap()
}

#[test]
fn a_tool_runs_in_a_session_of_its_own_and_creates_its_marker() {
    let dirs = Dirs::new();
    let marker = dirs.cwd.path().join("tool-marker");
    let mut fake = dirs.spawn(&["--permission-prompt-tool=stdio"]);
    fake.send_user("!tool 60000 tool-marker");
    let events = fake.until(|e| e["type"] == "control_request");
    let request = &events.last().unwrap()["request"];
    assert_eq!(request["tool_name"], "Bash");
    assert_eq!(request["input"]["command"], "sleep 60 && touch tool-marker");
    assert_eq!(
        request["blocked_path"],
        dirs.cwd.path().join("tool-marker").display().to_string()
    );
    let request_id = events.last().unwrap()["request_id"].clone();
    fake.send(&json!({ "type": "control_response", "response": {
        "subtype": "success", "request_id": request_id, "response": { "behavior": "allow" } } }));
    let helper = tool_helper(fake.pid());
    let (_, helper_pgid, helper_sid) = stat(helper).unwrap();
    let (_, fake_pgid, fake_sid) = stat(fake.pid()).unwrap();
    assert_ne!(
        helper_pgid, fake_pgid,
        "the tool is in fake-claude's process group"
    );
    assert_ne!(helper_sid, fake_sid, "the tool is in fake-claude's session");
    assert_eq!(helper_sid, helper, "the tool leads a session of its own");
    // Nothing is printed while the tool runs.
    assert_eq!(fake.next_line_within(Duration::from_millis(300)), None);
    // An interrupt kills it.
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "control_response",
            "user",
            "user",
            "result/error_during_execution"
        ]
    );
    assert_eq!(events[3]["terminal_reason"], "aborted_tools");
    assert!(
        eventually(|| !alive(helper)),
        "the interrupted tool lives on"
    );
    assert!(!marker.exists());

    // A short one runs to its end.
    fake.send_user("!tool 100 tool-marker");
    let events = fake.until(|e| e["type"] == "control_request");
    let request_id = events.last().unwrap()["request_id"].clone();
    fake.send(&json!({ "type": "control_response", "response": {
        "subtype": "success", "request_id": request_id, "response": { "behavior": "allow" } } }));
    let events = fake.turn();
    assert_eq!(kinds(&events), ["user", "assistant", "result/success"]);
    assert!(marker.exists(), "the tool did not create its marker");
    assert_eq!(
        events[2]["result"],
        "after tool: (Bash completed with no output)"
    );
}

#[test]
fn a_tool_outlives_its_killed_agent() {
    let dirs = Dirs::new();
    let marker = dirs.cwd.path().join("late-marker");
    let mut fake = dirs.spawn(&["--dangerously-skip-permissions"]);
    fake.send_user("!tool 500 late-marker");
    fake.until(|e| e["type"] == "assistant");
    let helper = tool_helper(fake.pid());
    fake.child.kill().unwrap();
    fake.wait();
    assert!(
        eventually(|| marker.exists()),
        "the tool died with its agent"
    );
    assert!(eventually(|| !alive(helper)));
}

#[test]
fn a_long_tool_is_reported_as_a_background_task() {
    let dirs = Dirs::new();
    let mut cmd = dirs.command(&["--include-partial-messages", "--allowedTools=Bash"]);
    cmd.env("FAKE_CLAUDE_TASK_NOTICE_MS", "50");
    let mut fake = common::Fake::spawn(cmd);
    fake.send_user("!tool 400");
    let events = fake.turn();
    let kinds = kinds(&events);
    let at = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(at("system/task_started") < at("system/task_notification"));
    assert!(at("system/task_notification") < at("user"));
    assert_eq!(
        events[at("system/task_started")]["tool_use_id"],
        events[at("user")]["message"]["content"][0]["tool_use_id"]
    );
    assert_eq!(events.last().unwrap()["num_turns"], 2);
}

#[test]
fn a_denied_tool_does_not_run() {
    let dirs = Dirs::new();
    let marker = dirs.cwd.path().join("never");
    let mut fake = dirs.spawn(&["--permission-prompt-tool", "stdio"]);
    fake.send_user("!tool 0 never");
    let events = fake.until(|e| e["type"] == "control_request");
    let request_id = events.last().unwrap()["request_id"].clone();
    fake.send(&json!({ "type": "control_response", "response": {
        "subtype": "success", "request_id": request_id,
        "response": { "behavior": "deny", "message": "denied by the driver" } } }));
    let events = fake.turn();
    let result = events.last().unwrap();
    assert_eq!(result["result"], "after tool: ERROR denied by the driver");
    assert_eq!(
        result["permission_denials"][0]["tool_input"]["command"],
        "sleep 0 && touch never"
    );
    assert!(children(fake.pid()).is_empty());
    assert!(!marker.exists());
}

#[test]
fn bad_directive_arguments_give_an_error_result() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!sleep forever");
    let result = fake.turn().pop().unwrap();
    assert_eq!(result["is_error"], true);
    assert!(result["result"].as_str().unwrap().contains("!sleep"));
    // Unknown names are plain text.
    fake.send_user("!important");
    assert_eq!(fake.turn().pop().unwrap()["result"], "echo: !important");
}

#[test]
fn grandchild_reports_a_live_pid() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!grandchild");
    let result = fake.turn().pop().unwrap();
    let text = result["result"].as_str().unwrap().to_owned();
    let pid: u32 = text
        .strip_prefix("echo: !grandchild pid=")
        .unwrap_or_else(|| panic!("unexpected text {text}"))
        .parse()
        .unwrap();
    assert!(alive(pid));
    // A direct child of fake-claude (so in its process group), not of a shell.
    let (ppid, pgid, _) = stat(pid).unwrap();
    assert_eq!(ppid, fake.pid());
    assert_eq!(pgid, stat(fake.pid()).unwrap().1);
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\x003600\x00");
    sigterm(pid);
}

#[test]
fn ignore_sigterm_survives_sigterm() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("hi");
    fake.turn();
    fake.send_user("!ignore-sigterm");
    assert_eq!(
        fake.turn().pop().unwrap()["result"],
        "echo: !ignore-sigterm"
    );
    sigterm(fake.pid());
    assert!(fake.wait_within(Duration::from_millis(300)).is_none());
    fake.send_user("still alive");
    assert_eq!(fake.turn().pop().unwrap()["result"], "echo: still alive");
}

#[test]
fn sigterm_kills_by_default() {
    use std::os::unix::process::ExitStatusExt;
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("hi");
    fake.turn();
    sigterm(fake.pid());
    assert_eq!(fake.wait().signal(), Some(15));
}

#[test]
fn wedge_stops_answering_everything() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!wedge");
    assert_eq!(fake.next_event()["subtype"], "init");
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    assert_eq!(fake.next_line_within(Duration::from_millis(300)), None);
}
