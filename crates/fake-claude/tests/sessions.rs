//! Command line, session ids, resume and transcripts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{BIN, Dirs, kinds, read_jsonl};

const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

#[test]
fn the_transcript_is_created_on_the_first_message_at_the_sanitized_path() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--session-id", ID]);
    let path = dirs.transcript(ID);
    fake.send_control("r", serde_json::json!({ "subtype": "initialize" }));
    fake.next_event();
    assert!(
        !path.exists(),
        "transcript created before the first message"
    );

    fake.send_user("first");
    let events = fake.turn();
    assert_eq!(events[0]["session_id"], ID);
    assert!(path.is_file(), "no transcript at {}", path.display());
    fake.send_user("!stream 2");
    fake.turn();
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));

    let lines = read_jsonl(&path);
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["user", "assistant", "result", "user", "assistant", "result"]
    );
    assert_eq!(lines[0]["message"]["content"], "first");
    assert_eq!(lines[1]["message"]["content"][0]["text"], "echo: first");
    assert_eq!(lines[2]["result"], "echo: first");
    assert_eq!(lines[3]["message"]["content"], "!stream 2");
    assert!(lines.iter().all(|l| l["sessionId"] == ID));
    // Each line links to the one before it.
    for pair in lines.windows(2) {
        assert_eq!(pair[1]["parentUuid"], pair[0]["uuid"]);
    }
}

#[test]
fn a_session_id_in_use_is_refused() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[&format!("--session-id={ID}")]);
    fake.send_user("hello");
    fake.turn();
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));

    let (status, stdout, stderr) = dirs.run_closed(&["--session-id", ID]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.trim_end(),
        format!("Error: Session ID {ID} is already in use.")
    );
}

#[test]
fn an_empty_transcript_does_not_hold_its_session_id() {
    let dirs = Dirs::new();
    let path = dirs.transcript(ID);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "").unwrap();
    let mut fake = dirs.spawn(&["--session-id", ID]);
    fake.send_user("again");
    assert_eq!(fake.turn().pop().unwrap()["session_id"], ID);
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));
    assert_eq!(read_jsonl(&path).len(), 3);
}

#[test]
fn turns_seen_counts_the_conversations_user_turns() {
    let dirs = Dirs::new();
    let spawn = |args: &[&str]| {
        let mut cmd = dirs.command(args);
        cmd.env("FAKE_CLAUDE_TURNS_SEEN", "1");
        common::Fake::spawn(cmd)
    };
    let mut fake = spawn(&["--session-id", ID]);
    let say = |fake: &mut common::Fake, text: &str| {
        fake.send_user(text);
        fake.turn().pop().unwrap()["result"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(say(&mut fake, "hi"), "echo: hi (turns seen: 1)");
    // A failed prompt is left out of the conversation.
    assert!(say(&mut fake, "!error").starts_with("API Error"));
    assert_eq!(say(&mut fake, "second"), "echo: second (turns seen: 2)");
    fake.close_stdin();
    fake.wait();
    // A resumed conversation still counts its earlier turns.
    let mut fake = spawn(&[&format!("--resume={ID}")]);
    assert_eq!(say(&mut fake, "third"), "echo: third (turns seen: 3)");
    // The summary of a compaction counts as one.
    say(&mut fake, "/compact");
    assert_eq!(
        say(&mut fake, "after compact"),
        "echo: after compact (turns seen: 2)"
    );
    say(&mut fake, "/clear");
    assert_eq!(
        say(&mut fake, "after clear"),
        "echo: after clear (turns seen: 1)"
    );
    fake.close_stdin();
    fake.wait();
    // Without the variable, echoes are plain.
    let mut fake = dirs.spawn(&[]);
    assert_eq!(say(&mut fake, "plain"), "echo: plain");
}

#[test]
fn an_invalid_session_id_is_refused() {
    let dirs = Dirs::new();
    let (status, _, stderr) = dirs.run_closed(&["--session-id", "not-a-uuid"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("Invalid session ID"), "{stderr}");
}

/// Checks the real CLI's answer to a `--resume` it cannot serve: one failed `result` on
/// stdout, the reason on stderr, exit 1.
fn refused_resume(dirs: &Dirs, args: &[&str], id: &str) {
    let (status, stdout, stderr) = dirs.run_closed(args);
    assert_eq!(status.code(), Some(1));
    let message = format!("No conversation found with session ID: {id}");
    assert_eq!(stderr.trim_end(), message);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let result: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["subtype"], "error_during_execution");
    assert_eq!(result["is_error"], true);
    assert_eq!(result["session_id"], id);
    assert_eq!(result["errors"], serde_json::json!([message]));
    assert_eq!(result["total_cost_usd"], 0);
}

#[test]
fn resuming_a_missing_session_fails() {
    let dirs = Dirs::new();
    refused_resume(&dirs, &["--resume", ID], ID);
    refused_resume(&dirs, &["--resume=../../etc/passwd"], "../../etc/passwd");
    // An empty transcript is no conversation either.
    let path = dirs.transcript(ID);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "").unwrap();
    refused_resume(&dirs, &[&format!("--resume={ID}")], ID);
    // The failure comes before the handshake is answered.
    let mut fake = dirs.spawn(&["--resume", ID]);
    // It may have exited already: a failed write is fine.
    let _ = fake.try_send(&serde_json::json!({
        "type": "control_request",
        "request_id": "init_1",
        "request": { "subtype": "initialize" },
    }));
    assert_eq!(fake.next_event()["type"], "result");
    assert_eq!(fake.next_line(), None);
    assert_eq!(fake.wait().code(), Some(1));
}

#[test]
fn a_new_process_counts_its_cost_from_zero() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--session-id", ID]);
    fake.send_user("hello");
    let first = fake.turn().pop().unwrap();
    fake.send_user("hello");
    let second = fake.turn().pop().unwrap();
    assert_eq!(first["total_cost_usd"], 0.000085);
    assert_eq!(second["total_cost_usd"], 0.00017);
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));

    let mut fake = dirs.spawn(&[&format!("--resume={ID}")]);
    fake.send_user("hello");
    assert_eq!(fake.turn().pop().unwrap()["total_cost_usd"], 0.000085);
}

#[test]
fn compact_keeps_the_session_and_reports_a_boundary() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--session-id", ID]);
    fake.send_user("some conversation to compact");
    let before = fake.turn().pop().unwrap();
    fake.send_user_blocks("/compact");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        [
            "system/status",
            "system/status",
            "system/init",
            "system/compact_boundary",
            "user",
            "user",
            "result/success"
        ]
    );
    assert_eq!(events[0]["status"], "compacting");
    assert_eq!(events[1]["compact_result"], "success");
    let metadata = &events[3]["compact_metadata"];
    assert_eq!(metadata["trigger"], "manual");
    // "some conversation to compact" (28 bytes) and its echo (34 bytes): 16 tokens.
    assert_eq!(metadata["pre_tokens"], 16);
    assert_eq!(events[4]["isSynthetic"], true);
    let result = events.last().unwrap();
    assert_eq!(result["result"], "");
    assert_eq!(result["num_turns"], 0);
    assert_eq!(result["session_id"], ID);
    assert!(
        result["total_cost_usd"].as_f64().unwrap() > before["total_cost_usd"].as_f64().unwrap()
    );
    fake.send_user("after compact");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        ["system/init", "assistant", "result/success"]
    );
    assert_eq!(events[2]["session_id"], ID);
}

#[test]
fn clear_starts_a_new_conversation() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--session-id", ID]);
    fake.send_user("one");
    let before = fake.turn().pop().unwrap();
    fake.send_user("/clear");
    let events = fake.turn();
    assert_eq!(
        kinds(&events),
        ["system/init", "assistant", "result/success"]
    );
    let new_id = events[0]["session_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, ID);
    assert!(uuid::Uuid::try_parse(&new_id).is_ok());
    assert_eq!(events[1]["message"]["model"], "<synthetic>");
    let result = &events[2];
    assert_eq!(result["result"], "");
    assert_eq!(result["session_id"], new_id.as_str());
    assert_eq!(result["total_cost_usd"], before["total_cost_usd"]);
    fake.send_user("after clear");
    let events = fake.turn();
    assert_eq!(events[0]["session_id"], new_id.as_str());
    assert_eq!(events[2]["session_id"], new_id.as_str());
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));

    // The old transcript stays as it was; the new one holds what came after.
    assert_eq!(read_jsonl(&dirs.transcript(ID)).len(), 3);
    let lines = read_jsonl(&dirs.transcript(&new_id));
    assert!(lines.iter().all(|l| l["sessionId"] == new_id.as_str()));
    assert!(
        lines
            .iter()
            .any(|l| l["message"]["content"] == "after clear")
    );
    let mut fake = dirs.spawn(&[&format!("--resume={new_id}")]);
    fake.send_user("later");
    assert_eq!(fake.turn().pop().unwrap()["session_id"], new_id.as_str());
}

#[test]
fn resuming_an_existing_session_appends_to_it() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--session-id", ID]);
    fake.send_user("one");
    fake.turn();
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));
    let before = read_jsonl(&dirs.transcript(ID)).len();
    assert_eq!(before, 3);

    for resume in [
        vec!["--resume".to_owned(), ID.to_owned()],
        vec![format!("--resume={ID}")],
    ] {
        let args: Vec<&str> = resume.iter().map(String::as_str).collect();
        let mut fake = dirs.spawn(&args);
        fake.send_user("two");
        let events = fake.turn();
        assert_eq!(events[0]["subtype"], "init");
        assert_eq!(events[0]["session_id"], ID);
        assert_eq!(events.last().unwrap()["session_id"], ID);
        fake.close_stdin();
        assert_eq!(fake.wait().code(), Some(0));
    }
    let lines = read_jsonl(&dirs.transcript(ID));
    assert_eq!(lines.len(), before + 6);
    assert_eq!(lines[3]["message"]["content"], "two");
}

#[test]
fn without_an_id_a_fresh_one_is_used() {
    let dirs = Dirs::new();
    let mut first = dirs.spawn(&[]);
    first.send_user("a");
    let a = first.turn()[0]["session_id"].as_str().unwrap().to_owned();
    let mut second = dirs.spawn(&[]);
    second.send_user("b");
    let b = second.turn()[0]["session_id"].as_str().unwrap().to_owned();
    assert_ne!(a, b);
    assert!(uuid::Uuid::try_parse(&a).is_ok_and(|u| u.get_version_num() == 4));
    assert!(dirs.transcript(&a).is_file());
    assert!(dirs.transcript(&b).is_file());
}

#[test]
fn the_usual_flags_are_accepted() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&[
        "-p",
        "--print",
        "--debug",
        "--session-id",
        ID,
        "--permission-prompt-tool",
        "stdio",
        "--permission-prompt-tool=mcp__iris__approve",
        "--allowedTools",
        "Read,Grep",
        "--disallowedTools=Bash",
        "--append-system-prompt",
        "You are team a",
        "--mcp-config",
        "{\"mcpServers\":{}}",
        "--permission-mode",
        "acceptEdits",
        "--model=sonnet",
        "--include-partial-messages",
        "--replay-user-messages",
    ]);
    fake.send_user("x");
    let events = fake.turn();
    assert_eq!(events[0]["permissionMode"], "acceptEdits");
    let tools = events[0]["tools"].as_array().unwrap();
    assert!(!tools.iter().any(|t| t == "Bash"));
    assert!(tools.iter().any(|t| t == "Read"));
}

#[test]
fn unknown_flags_fail_like_the_cli() {
    let dirs = Dirs::new();
    let (status, stdout, stderr) = dirs.run_closed(&["--bogus"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stdout, "");
    assert_eq!(stderr.trim_end(), "error: unknown option '--bogus'");
}

#[test]
fn stream_json_formats_and_verbose_are_required() {
    for args in [
        vec![
            "--output-format",
            "json",
            "--input-format",
            "stream-json",
            "--verbose",
        ],
        vec!["--output-format", "stream-json", "--verbose"],
        vec![
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
        ],
    ] {
        let output = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn version_and_help() {
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "2.1.197 (fake-claude)\n"
    );
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(help.contains("--session-id"));
    for directive in [
        "!sleep",
        "!stream",
        "!blocks",
        "!stall",
        "!hang",
        "!wedge",
        "!crash",
        "!garbage",
        "!big",
        "!error",
        "!grandchild",
        "!ignore-sigterm",
        "!exit-after-reply",
        "!permission",
        "!tool",
    ] {
        assert!(
            help.contains(directive),
            "--help does not mention {directive}"
        );
    }
}

#[test]
fn a_simulated_start_failure_exits_two() {
    let dirs = Dirs::new();
    let mut cmd = dirs.command(&[]);
    cmd.env("FAKE_CLAUDE_FAIL_START", "1");
    let output = cmd.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "Error: simulated start failure"
    );
}

#[test]
fn home_dot_claude_is_the_default_config_dir() {
    let dirs = Dirs::new();
    let mut cmd = dirs.command(&["--session-id", ID]);
    cmd.env_remove("CLAUDE_CONFIG_DIR")
        .env("HOME", dirs.config.path());
    let mut fake = common::Fake::spawn(cmd);
    fake.send_user("hi");
    fake.turn();
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));
    let relative = dirs
        .transcript(ID)
        .strip_prefix(dirs.config.path())
        .unwrap()
        .to_owned();
    assert!(dirs.config.path().join(".claude").join(relative).is_file());
}

#[test]
fn fork_session_continues_under_a_new_id() {
    let dirs = Dirs::new();
    let mut fake = dirs.spawn(&["--session-id", ID]);
    fake.send_user("one");
    fake.turn();
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));

    let mut fake = dirs.spawn(&[&format!("--resume={ID}"), "--fork-session"]);
    fake.send_user("two");
    let events = fake.turn();
    let forked = events[0]["session_id"].as_str().unwrap().to_owned();
    assert_ne!(forked, ID);
    assert_eq!(events.last().unwrap()["session_id"], forked.as_str());
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));

    // The original is untouched; the fork holds its lines and the new turn.
    assert_eq!(read_jsonl(&dirs.transcript(ID)).len(), 3);
    let lines = read_jsonl(&dirs.transcript(&forked));
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["message"]["content"], "one");
    assert_eq!(lines[3]["message"]["content"], "two");

    // Without --fork-session, --session-id and --resume conflict.
    let (status, _, stderr) = dirs.run_closed(&["--resume", ID, "--session-id", ID]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("--fork-session"), "{stderr}");
}
