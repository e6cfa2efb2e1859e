//! `--mcp-config`: servers are started, listed in `system/init` with their tools, and ended
//! with fake-claude.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{BIN, Dirs, alive, children, eventually, stat};
use serde_json::{Value, json};

fn server(tools: &[&str]) -> Value {
    let mut args = vec!["--fake-claude-mcp-server"];
    args.extend_from_slice(tools);
    json!({ "command": BIN, "args": args, "env": { "SOME_VAR": "x" } })
}

fn names(init: &Value) -> Vec<(String, String)> {
    init["mcp_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn servers_are_started_and_their_tools_listed() {
    let dirs = Dirs::new();
    let inline = json!({ "mcpServers": {
        "files": server(&["read", "write"]),
        "broken": { "command": "/nonexistent/mcp-server" },
    }})
    .to_string();
    let file = dirs.cwd.path().join("mcp.json");
    std::fs::write(
        &file,
        json!({ "mcpServers": { "other server": server(&["ping.it"]) } }).to_string(),
    )
    .unwrap();
    let mut fake = dirs.spawn(&[
        &format!("--mcp-config={inline}"),
        "--mcp-config",
        file.to_str().unwrap(),
        "--disallowedTools=mcp__files__write",
    ]);
    fake.send_user("hi");
    let init = fake.next_event();
    assert_eq!(init["subtype"], "init");
    let mut servers = names(&init);
    servers.sort();
    assert_eq!(
        servers,
        [
            ("broken".to_owned(), "failed".to_owned()),
            ("files".to_owned(), "connected".to_owned()),
            ("other server".to_owned(), "connected".to_owned()),
        ]
    );
    let tools: Vec<&str> = init["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tools.contains(&"mcp__files__read"), "{tools:?}");
    assert!(tools.contains(&"mcp__other_server__ping_it"), "{tools:?}");
    assert!(!tools.contains(&"mcp__files__write"), "{tools:?}");
    assert!(tools.contains(&"Bash"));
    fake.turn();

    // The servers are fake-claude's children, in its process group, until it ends.
    let servers = children(fake.pid());
    assert_eq!(servers.len(), 2, "{servers:?}");
    let group = stat(fake.pid()).unwrap().1;
    for pid in &servers {
        assert_eq!(stat(*pid).unwrap().1, group);
    }
    fake.close_stdin();
    assert_eq!(fake.wait().code(), Some(0));
    for pid in servers {
        assert!(
            eventually(|| !alive(pid)),
            "server {pid} outlived fake-claude"
        );
    }
}

#[test]
fn an_invalid_config_fails_at_start() {
    let dirs = Dirs::new();
    let (status, stdout, stderr) = dirs.run_closed(&["--mcp-config", "/nonexistent/mcp.json"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("Error: Invalid MCP configuration"),
        "{stderr}"
    );
    let (status, _, _) = dirs.run_closed(&["--mcp-config={\"mcpServers\": 3}"]);
    assert_eq!(status.code(), Some(1));
}

#[test]
fn a_server_that_does_not_answer_in_time_fails() {
    let dirs = Dirs::new();
    let config = json!({ "mcpServers": { "mute": { "command": "sleep", "args": ["600"] } } });
    let mut cmd = dirs.command(&[&format!("--mcp-config={config}")]);
    cmd.env("MCP_TIMEOUT", "200");
    let mut fake = common::Fake::spawn(cmd);
    fake.send_user("hi");
    let init = fake.next_event();
    assert_eq!(names(&init), [("mute".to_owned(), "failed".to_owned())]);
    assert!(
        children(fake.pid()).is_empty(),
        "the failed server was not killed"
    );
}

#[test]
fn mcp_calls_a_servers_tool_and_answers_with_its_result() {
    let dirs = Dirs::new();
    let config = json!({ "mcpServers": { "files": server(&["read"]) } }).to_string();
    let mut fake = dirs.spawn(&[
        &format!("--mcp-config={config}"),
        "--allowedTools=mcp__files__read,mcp__nowhere__read",
    ]);
    fake.send_user(r#"!mcp mcp__files__read {"path": "a.txt"}"#);
    let events = fake.turn();
    let tool_use = events
        .iter()
        .find(|e| e["type"] == "assistant" && e["message"]["content"][0]["type"] == "tool_use")
        .expect("a tool_use");
    assert_eq!(
        tool_use["message"]["content"][0]["name"],
        "mcp__files__read"
    );
    let result = events.last().unwrap();
    assert_eq!(
        result["result"], r#"after mcp: read {"path":"a.txt"}"#,
        "{events:#?}"
    );
    // Not a tool of a connected server: the call fails, and the turn still ends.
    fake.send_user("!mcp mcp__nowhere__read");
    let result = fake.turn().pop().unwrap();
    assert!(
        result["result"]
            .as_str()
            .unwrap()
            .starts_with("after mcp: no connected MCP server is named nowhere"),
        "{result}"
    );
}
