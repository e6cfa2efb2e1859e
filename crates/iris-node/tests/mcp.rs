//! A real MCP client (rmcp's) drives both transports: `iris mcp` on stdio, as an agent CLI
//! launches it, and the node's streamable HTTP endpoint, served in-process. Each lists the tools
//! and sends a message to a fake-claude team, which answers `echo: <message>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iris_api::Service;
use iris_core::config::Config;
use iris_node::backend::Backend;
use iris_runtime::Runtime;
use iris_store::Store;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};

/// Every tool: the original's, then ours.
const TOOLS: [&str; 14] = [
    "send_message",
    "quick_message",
    "ask_message",
    "team_wake",
    "team_sleep",
    "team_wake_all",
    "team_status",
    "session_report",
    "session_cancel",
    "session_delete",
    "session_reboot",
    "list_teams",
    "session_list",
    "session_stats",
];

/// No step of a test may hang: each gets this long.
const STEP: Duration = Duration::from_secs(60);

type Client = RunningService<RoleClient, ClientConfig>;

async fn step<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {STEP:?}"))
}

/// fake-claude, built next to the `iris` binary under test.
fn fake_claude() -> PathBuf {
    let iris = Path::new(env!("CARGO_BIN_EXE_iris"));
    let path = iris
        .parent()
        .expect("the iris binary has a directory")
        .join("fake-claude");
    assert!(
        path.is_file(),
        "fake-claude is missing at {}: build it first with `cargo build -p fake-claude`",
        path.display()
    );
    path
}

/// Scratch directories: teams alpha and beta, a Claude config dir, a home, and the config file.
struct World {
    root: tempfile::TempDir,
    claude_home: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let world = World {
            root: tempfile::tempdir().unwrap(),
            claude_home: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        };
        for team in ["alpha", "beta"] {
            std::fs::create_dir_all(world.root.path().join("teams").join(team)).unwrap();
        }
        std::fs::write(world.config_path(), world.config_text()).unwrap();
        world
    }

    fn config_path(&self) -> PathBuf {
        self.root.path().join("iris.toml")
    }

    fn config_text(&self) -> String {
        let quote = |path: &Path| format!("{:?}", path.display().to_string());
        let mut text = format!(
            "[database]\npath = \"data/iris.redb\"\n\n[agent]\ncommand = {}\nenv = {{ CLAUDE_CONFIG_DIR = {} }}\n",
            quote(&fake_claude()),
            quote(self.claude_home.path()),
        );
        for team in ["alpha", "beta"] {
            text.push_str(&format!(
                "\n[teams.{team}]\npath = \"teams/{team}\"\ndescription = \"the {team} team\"\ngrant_permission = \"yes\"\n"
            ));
        }
        text
    }

    /// `iris --config … mcp --from alpha`, with a home of its own.
    fn mcp_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_iris"));
        command
            .arg("--config")
            .arg(self.config_path())
            .args(["mcp", "--from", "alpha"])
            .env("HOME", self.home.path())
            .env("IRIS_HOME", self.home.path().join(".iris"))
            .env("CLAUDE_CONFIG_DIR", self.claude_home.path())
            .env_remove("IRIS_CONFIG");
        command
    }

    fn config(&self) -> Config {
        Config::from_toml_str(&self.config_text(), self.root.path(), "iris.toml", &|_| {
            None
        })
        .unwrap()
    }
}

/// The node's MCP router, served in-process on a loopback port over an embedded runtime.
struct HttpNode {
    runtime: Runtime,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    address: std::net::SocketAddr,
}

impl HttpNode {
    async fn start(world: &World) -> HttpNode {
        let store = Store::open(world.root.path().join("data/iris.redb")).unwrap();
        let runtime = step("runtime start", Runtime::start(world.config(), store))
            .await
            .unwrap();
        let backend = Arc::new(Backend::Embedded(Service::new(runtime.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = iris_node::mcp::http_router(backend);
        let server = tokio::spawn(axum::serve(listener, router).into_future());
        HttpNode {
            runtime,
            server,
            address,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    async fn client(&self) -> Client {
        let transport = StreamableHttpClientTransport::from_uri(self.url());
        step(
            "the HTTP handshake",
            ClientConfig::default().serve(transport),
        )
        .await
        .unwrap()
    }

    async fn stop(self) {
        self.server.abort();
        step(
            "runtime shutdown",
            self.runtime.shutdown(Duration::from_secs(5)),
        )
        .await;
    }
}

fn call(tool: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object");
    };
    CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments)
}

fn structured(result: &CallToolResult) -> &Value {
    result
        .structured_content
        .as_ref()
        .unwrap_or_else(|| panic!("no structured content in {result:?}"))
}

async fn assert_lists_every_tool(client: &Client) {
    let tools = step("tools/list", client.list_all_tools()).await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut expected = TOOLS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);

    let send = tools.iter().find(|t| t.name == "send_message").unwrap();
    let properties = send.input_schema["properties"].as_object().unwrap();
    for argument in ["toTeam", "message", "fromTeam", "timeout"] {
        assert!(
            properties.contains_key(argument),
            "send_message lacks {argument}"
        );
    }
}

/// A `send_message` round trip; `from` is `None` when the server's default sender applies.
async fn assert_round_trip(client: &Client, from: Option<&str>) {
    let mut arguments = json!({"toTeam": "beta", "message": "hello over mcp"});
    if let Some(from) = from {
        arguments["fromTeam"] = json!(from);
    }
    let result = step(
        "send_message",
        client.call_tool(call("send_message", arguments)),
    )
    .await
    .unwrap();
    assert_ne!(
        result.is_error,
        Some(true),
        "send_message failed: {result:?}"
    );
    let reply = structured(&result);
    assert_eq!(reply["status"], "completed", "{reply}");
    assert_eq!(reply["response"], "echo: hello over mcp", "{reply}");
    assert_eq!(reply["from"], "alpha");
    assert_eq!(reply["to"], "beta");
    let text = result.content.first().and_then(|c| c.as_text()).unwrap();
    assert!(text.text.contains("echo: hello over mcp"), "{}", text.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_lists_the_tools_and_answers_a_message() {
    let world = World::new();
    let transport = TokioChildProcess::new(world.mcp_command()).unwrap();
    let client = step(
        "the stdio handshake",
        ClientConfig::default().serve(transport),
    )
    .await
    .unwrap();

    assert_lists_every_tool(&client).await;
    // `--from alpha` makes alpha the sender when the call names none.
    assert_round_trip(&client, None).await;

    step("closing stdio", client.cancel()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_the_tools_and_answers_a_message() {
    let world = World::new();
    let node = HttpNode::start(&world).await;
    let client = node.client().await;

    assert_lists_every_tool(&client).await;

    // Over HTTP there is no default sender: a call without fromTeam is a tool error that says
    // how to fix it, not a protocol error.
    let missing = step(
        "send_message without fromTeam",
        client.call_tool(call(
            "send_message",
            json!({"toTeam": "beta", "message": "hi"}),
        )),
    )
    .await
    .unwrap();
    assert_eq!(missing.is_error, Some(true));
    assert_eq!(structured(&missing)["error"]["code"], "USAGE_ERROR");
    let message = structured(&missing)["error"]["message"].as_str().unwrap();
    assert!(message.contains("fromTeam is required"), "{message}");

    assert_round_trip(&client, Some("alpha")).await;

    step("closing HTTP", client.cancel()).await.unwrap();
    node.stop().await;
}

/// Calls `tool` and returns its structured content, failing on a tool error.
async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = step(tool, client.call_tool(call(tool, arguments)))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
    structured(&result).clone()
}

/// Calls `tool` and returns the code of the tool error it must give.
async fn error_code(client: &Client, tool: &str, arguments: Value) -> String {
    let result = step(tool, client.call_tool(call(tool, arguments)))
        .await
        .unwrap();
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {result:?}"
    );
    structured(&result)["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{tool}'s error has no code: {result:?}"))
        .to_owned()
}

/// Every tool, against a real runtime: arguments are mapped to the right requests and each
/// reply comes back as structured content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_works_over_http() {
    let world = World::new();
    let node = HttpNode::start(&world).await;
    let client = node.client().await;
    let pair = || json!({"team": "beta", "fromTeam": "alpha"});

    let teams = ok(&client, "list_teams", json!({})).await;
    let names: Vec<&str> = teams["teams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);

    let woken = ok(&client, "team_wake", pair()).await;
    assert_eq!(woken["from_team"], "alpha");
    assert_eq!(woken["to_team"], "beta");
    let first_session = woken["session_id"].clone();

    let status = ok(&client, "team_status", pair()).await;
    assert_eq!(status["to"], "beta");
    assert_eq!(status["session"]["session_id"], first_session);
    let everyone = ok(&client, "team_status", json!({"fromTeam": "alpha"})).await;
    assert_eq!(everyone["teams"].as_array().map(Vec::len), Some(2));

    let asked = ok(
        &client,
        "ask_message",
        json!({"toTeam": "beta", "fromTeam": "alpha", "message": "why?", "timeout": 30000}),
    )
    .await;
    assert_eq!(asked["response"], "echo: why?");

    let quick = ok(
        &client,
        "quick_message",
        json!({"toTeam": "beta", "fromTeam": "alpha", "message": "later"}),
    )
    .await;
    assert_eq!(quick["status"], "accepted");
    assert!(quick["turn_id"].as_str().is_some_and(|id| !id.is_empty()));

    let report = ok(&client, "session_report", pair()).await;
    let turns = report["turns"].as_array().unwrap();
    assert!(turns.len() >= 2, "{report}");
    assert!(
        turns.iter().any(|t| t["turn_id"] == quick["turn_id"]),
        "{report}"
    );

    let sessions = ok(&client, "session_list", json!({"fromTeam": "alpha"})).await;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(1));
    let stats = ok(&client, "session_stats", json!({})).await;
    assert!(stats["sessions"].is_object(), "{stats}");

    ok(&client, "session_cancel", pair()).await;
    let mut sleep = pair();
    sleep["force"] = json!(true);
    ok(&client, "team_sleep", sleep).await;
    let all = ok(&client, "team_wake_all", json!({"fromTeam": "alpha"})).await;
    assert!(all["woke_all"].is_array(), "{all}");

    let rebooted = ok(
        &client,
        "session_reboot",
        json!({"toTeam": "beta", "fromTeam": "alpha"}),
    )
    .await;
    assert_ne!(rebooted["session_id"], first_session);
    let deleted = ok(
        &client,
        "session_delete",
        json!({"toTeam": "beta", "fromTeam": "alpha"}),
    )
    .await;
    assert_eq!(deleted["deleted"]["session_id"], rebooted["session_id"]);
    // As in the original, deleting a pair that has no session is not an error.
    let again = ok(
        &client,
        "session_delete",
        json!({"toTeam": "beta", "fromTeam": "alpha"}),
    )
    .await;
    assert_eq!(again["deleted"], Value::Null);

    // Domain failures are tool errors carrying the API's code.
    let unknown = json!({"toTeam": "gamma", "fromTeam": "alpha", "message": "hi"});
    assert_eq!(
        error_code(&client, "send_message", unknown).await,
        "TEAM_NOT_FOUND"
    );
    let bad_timeout =
        json!({"toTeam": "beta", "fromTeam": "alpha", "message": "hi", "timeout": -5});
    assert_eq!(
        error_code(&client, "ask_message", bad_timeout).await,
        "VALIDATION_ERROR"
    );

    step("closing HTTP", client.cancel()).await.unwrap();
    node.stop().await;
}

/// `iris mcp` as a raw child: stdout carries nothing but JSON-RPC, and the server exits
/// cleanly when the client closes stdin, after a session or before any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_ends_cleanly_when_the_client_closes_stdin() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let world = World::new();
    let spawn = || {
        world
            .mcp_command()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    // Closed before the handshake.
    let mut child = spawn();
    drop(child.stdin.take());
    let status = step("exit on an empty stdin", child.wait()).await.unwrap();
    assert!(status.success(), "{status}");

    // Closed after a session.
    let mut child = spawn();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        // Well-formed JSON that is no request: a JSON-RPC "Invalid request" error.
        json!({"jsonrpc": "2.0", "id": 7, "metho": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    ]
    .map(|request| request.to_string());
    // A line that is not JSON at all is skipped, as every official MCP SDK does on stdio (there
    // is no id to answer, and an answer to garbage can start an error storm with a peer that
    // echoes it); the session goes on.
    let lines = [
        &requests[..2],
        &["this is {not json".to_owned()],
        &requests[2..],
    ]
    .concat();
    for line in lines {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
    stdin.flush().await.unwrap();
    let mut tools = None;
    let mut invalid = None;
    while tools.is_none() {
        let line = step("a line on stdout", stdout.next_line())
            .await
            .unwrap()
            .expect("stdout closed before the tools/list answer");
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        if message["id"] == 2 {
            tools = message["result"]["tools"].as_array().map(Vec::len);
        }
        if message["error"].is_object() {
            invalid = Some(message["error"]["code"].clone());
        }
    }
    assert_eq!(tools, Some(TOOLS.len()));
    assert_eq!(invalid, Some(json!(-32600)));
    drop(stdin);
    while let Some(line) = step("draining stdout", stdout.next_line()).await.unwrap() {
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
    }
    let status = step("exit after the session", child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}

/// The JSON-RPC message answering `id` in a streamable HTTP response body (JSON or SSE).
fn answer(body: &str, id: u64) -> Value {
    let candidates = std::iter::once(body.trim()).chain(
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim),
    );
    candidates
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("no answer to request {id} in: {body}"))
}

/// A client of the 2025-06-18 protocol (as Claude Code's SDK speaks it) that keeps no session:
/// each POST stands alone, and a tool call works without a session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_http_client_needs_no_session() {
    let world = World::new();
    let node = HttpNode::start(&world).await;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(node.url())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-06-18")
            .body(body.to_string())
            .send()
    };

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "legacy", "version": "0"}}});
    let response = step("initialize", post(initialize)).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body = step("initialize body", response.text()).await.unwrap();
    let init = answer(&body, 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "iris", "{body}");
    assert!(init["result"]["instructions"].is_string(), "{body}");

    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "send_message",
        "arguments": {"toTeam": "beta", "fromTeam": "alpha", "message": "no session"}}});
    let response = step("tools/call", post(call)).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body = step("tools/call body", response.text()).await.unwrap();
    let result = &answer(&body, 2)["result"];
    assert_eq!(
        result["structuredContent"]["response"], "echo: no session",
        "{body}"
    );

    node.stop().await;
}
