//! Scripted behaviours: `!stream`, `!error`, `!crash`, `!garbage`, `!big`, `!permission`, …
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Dirs, Line, alive, assistant_texts, sigterm};
use serde_json::{Value, json};

#[test]
fn stream_sends_one_assistant_event_per_chunk() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!stream 3");
    let events = fake.turn();
    assert_eq!(events[0]["subtype"], "init");
    assert_eq!(assistant_texts(&events), ["chunk 1", "chunk 2", "chunk 3"]);
    let assistants: Vec<&Value> = events.iter().filter(|e| e["type"] == "assistant").collect();
    assert_eq!(assistants.len(), 3);
    // One API message arriving as several events: same message id.
    assert!(
        assistants
            .iter()
            .all(|a| a["message"]["id"] == assistants[0]["message"]["id"])
    );
    let result = events.last().unwrap();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["result"], "chunk 1\nchunk 2\nchunk 3");
}

#[test]
fn stream_with_a_delay_can_be_interrupted() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!stream 100 100");
    let events = fake.until(|e| e["type"] == "assistant");
    assert_eq!(assistant_texts(&events), ["chunk 1"]);
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    let events = fake.until(|e| e["type"] == "result");
    assert!(assistant_texts(&events).len() < 5);
    assert_eq!(events.last().unwrap()["subtype"], "error_during_execution");
}

#[test]
fn error_gives_an_error_result() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!error");
    let events = fake.turn();
    assert_eq!(assistant_texts(&events), ["simulated API error"]);
    let result = events.last().unwrap();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["result"], "simulated API error");
    assert_eq!(result["api_error_status"], 500);
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

fn permission_round(answer: Option<Value>, expected: &str) {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--permission-prompt-tool", "stdio"]);
    fake.send_user("!permission Bash");
    let events = fake.until(|e| e["type"] == "control_request");
    let request = events.last().unwrap();
    let request_id = request["request_id"].as_str().unwrap().to_owned();
    assert!(request_id.starts_with("perm_"));
    assert_eq!(request["request"]["subtype"], "can_use_tool");
    assert_eq!(request["request"]["tool_name"], "Bash");
    assert_eq!(request["request"]["input"], json!({}));
    assert_eq!(request["request"]["permission_suggestions"], json!([]));
    assert!(
        request["request"]["tool_use_id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_")
    );
    // Nothing more until the host answers.
    assert_eq!(fake.next_line_within(Duration::from_millis(200)), None);
    // An answer to some other request is ignored.
    fake.send(&json!({
        "type": "control_response",
        "response": { "subtype": "success", "request_id": "perm_999", "response": { "behavior": "allow" } }
    }));
    let response = match answer {
        Some(body) => json!({ "subtype": "success", "request_id": request_id, "response": body }),
        None => json!({ "subtype": "error", "request_id": request_id, "error": "no" }),
    };
    fake.send(&json!({ "type": "control_response", "response": response }));
    let events = fake.turn();
    assert_eq!(assistant_texts(&events), [expected]);
    assert_eq!(events.last().unwrap()["result"], expected);
}

#[test]
fn permission_allow() {
    permission_round(
        Some(json!({ "behavior": "allow", "updatedInput": {} })),
        "permission Bash: allow",
    );
}

#[test]
fn permission_deny() {
    permission_round(
        Some(json!({ "behavior": "deny", "message": "not today", "interrupt": false })),
        "permission Bash: deny",
    );
}

#[test]
fn permission_error() {
    permission_round(None, "permission Bash: error");
}

#[test]
fn a_pending_permission_can_be_interrupted() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[]);
    fake.send_user("!permission Write");
    let events = fake.until(|e| e["type"] == "control_request");
    let request_id = events.last().unwrap()["request_id"].clone();
    fake.send_control("i", json!({ "subtype": "interrupt" }));
    let events = fake.until(|e| e["type"] == "result");
    let cancel = events
        .iter()
        .find(|e| e["type"] == "control_cancel_request")
        .expect("no control_cancel_request");
    assert_eq!(cancel["request_id"], request_id);
    assert_eq!(events.last().unwrap()["subtype"], "error_during_execution");
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let ppid: u32 = after_name.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(ppid, fake.pid());
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
