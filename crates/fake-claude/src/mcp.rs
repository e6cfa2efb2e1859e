//! MCP servers from `--mcp-config` (a file path or inline JSON, as many as given):
//! `{"mcpServers":{"<name>":{"command":…,"args":[…],"env":{…}}}}`.
//!
//! Each stdio server is really started, as a child of fake-claude (in its process group, like
//! the real CLI's), and spoken to over its stdin/stdout with newline-delimited JSON-RPC:
//! `initialize`, `notifications/initialized`, then `tools/list` (following `nextCursor`). All
//! servers connect in parallel, bounded by `MCP_TIMEOUT` (milliseconds, as in the real CLI;
//! default 30 s). A server that answers is `connected` and its tools are listed in `system/init`
//! as `mcp__<server>__<tool>`; one that cannot be started, exits, answers with an error or not in
//! time is `failed` (and killed). Servers of another transport (`http`, `sse`) are `failed`.
//! Connected servers keep running until fake-claude ends its session ([`Servers::shutdown`]);
//! `!mcp` calls their tools (`tools/call`, [`Servers::call_tool`]), as the model's tool use makes
//! the real CLI do.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::protocol::{McpStatus, log};

/// The connection timeout when `MCP_TIMEOUT` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most `tools/list` pages read from one server.
const MAX_PAGES: u64 = 100;
/// The MCP protocol version fake-claude asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// One configured server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Its name (the key in `mcpServers`).
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
}

/// How a server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking JSON-RPC on its stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// Any other `type` (`http`, `sse`, …), which fake-claude does not speak.
    Other(String),
}

/// Reads every `--mcp-config` value (inline JSON when it starts with `{`, else a file path).
/// Later servers replace earlier ones of the same name.
pub fn parse_configs(values: &[String]) -> Result<Vec<ServerConfig>, String> {
    let mut servers: Vec<ServerConfig> = Vec::new();
    for value in values {
        let text = if value.trim_start().starts_with('{') {
            value.clone()
        } else {
            std::fs::read_to_string(value)
                .map_err(|e| format!("MCP config file not found or unreadable: {value}: {e}"))?
        };
        for server in parse_config(&text).map_err(|e| format!("{value}: {e}"))? {
            servers.retain(|s| s.name != server.name);
            servers.push(server);
        }
    }
    Ok(servers)
}

/// Reads one configuration document.
pub fn parse_config(text: &str) -> Result<Vec<ServerConfig>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let servers = doc
        .get("mcpServers")
        .and_then(Value::as_object)
        .ok_or("mcpServers: expected an object")?;
    servers
        .iter()
        .map(|(name, spec)| {
            let field = |key: &str| spec.get(key);
            let kind = field("type").and_then(Value::as_str).unwrap_or("stdio");
            let transport = if kind == "stdio" {
                let command = field("command")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("mcpServers.{name}.command: expected a string"))?
                    .to_owned();
                let args = match field("args") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(args)) => args
                        .iter()
                        .map(|a| a.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("mcpServers.{name}.args: expected strings"))?,
                    Some(_) => return Err(format!("mcpServers.{name}.args: expected an array")),
                };
                let env = match field("env") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Object(env)) => env
                        .iter()
                        .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("mcpServers.{name}.env: expected strings"))?,
                    Some(_) => return Err(format!("mcpServers.{name}.env: expected an object")),
                };
                Transport::Stdio { command, args, env }
            } else {
                Transport::Other(kind.to_owned())
            };
            Ok(ServerConfig {
                name: name.clone(),
                transport,
            })
        })
        .collect()
}

/// The timeout for connecting: `MCP_TIMEOUT` milliseconds, else [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Duration {
    std::env::var("MCP_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

/// The names the CLI gives tools: characters outside `[A-Za-z0-9_-]` become `_`.
pub fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A connected server process.
#[derive(Debug)]
struct Running {
    /// The server's name as tools name it (normalized).
    name: String,
    child: Child,
    /// Kept open: closing it tells the server to exit.
    stdin: Option<ChildStdin>,
    /// What the server prints, one JSON message at a time.
    rx: Receiver<Value>,
    /// The next JSON-RPC request id.
    next_id: u64,
}

/// The servers of a session.
#[derive(Debug, Default)]
pub struct Servers {
    statuses: Vec<McpStatus>,
    tools: Vec<String>,
    running: Vec<Running>,
}

impl Servers {
    /// Each server's status, in configuration order.
    pub fn statuses(&self) -> &[McpStatus] {
        &self.statuses
    }

    /// The connected servers' tools, as `mcp__<server>__<tool>`.
    pub fn tools(&self) -> &[String] {
        &self.tools
    }

    /// Calls tool `mcp__<server>__<tool>` with `arguments`, within `timeout`: the text of its
    /// result's text content, or why it failed.
    pub fn call_tool(
        &mut self,
        full_name: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<String, String> {
        let (server_name, tool) = full_name
            .strip_prefix("mcp__")
            .and_then(|rest| rest.split_once("__"))
            .ok_or_else(|| {
                format!("{full_name} is not an MCP tool name (mcp__<server>__<tool>)")
            })?;
        let server = self
            .running
            .iter_mut()
            .find(|r| r.name == server_name)
            .ok_or_else(|| format!("no connected MCP server is named {server_name}"))?;
        let mut rpc = Rpc {
            server,
            deadline: Instant::now() + timeout,
        };
        let result = rpc.call(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )?;
        let text = result
            .get("content")
            .and_then(Value::as_array)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Err(text);
        }
        Ok(text)
    }

    /// Ends every server: stdin closed, then SIGKILL, then reaped.
    pub fn shutdown(&mut self) {
        for mut server in self.running.drain(..) {
            drop(server.stdin.take());
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }
}

/// Connects every server in parallel, each within `timeout`.
pub fn connect(configs: Vec<ServerConfig>, timeout: Duration) -> Servers {
    let deadline = Instant::now() + timeout;
    let handles: Vec<_> = configs
        .into_iter()
        .map(|config| {
            let name = config.name.clone();
            let handle = thread::Builder::new()
                .name(format!("mcp {name}"))
                .spawn(move || connect_one(&config, deadline));
            (name, handle)
        })
        .collect();
    let mut servers = Servers::default();
    for (name, handle) in handles {
        let outcome = match handle {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err("the connecting thread panicked".to_owned())),
            Err(e) => Err(format!("cannot start a thread: {e}")),
        };
        let status = match outcome {
            Ok((running, tools)) => {
                let server = normalize(&name);
                servers.tools.extend(
                    tools
                        .iter()
                        .map(|tool| format!("mcp__{server}__{}", normalize(tool))),
                );
                servers.running.push(running);
                "connected"
            }
            Err(e) => {
                log(&format!("fake-claude: MCP server \"{name}\" failed: {e}"));
                "failed"
            }
        };
        servers.statuses.push(McpStatus {
            name,
            status: status.to_owned(),
        });
    }
    servers
}

fn connect_one(config: &ServerConfig, deadline: Instant) -> Result<(Running, Vec<String>), String> {
    let Transport::Stdio { command, args, env } = &config.transport else {
        let Transport::Other(kind) = &config.transport else {
            return Err("unsupported transport".to_owned());
        };
        return Err(format!(
            "transport '{kind}' is not supported by fake-claude"
        ));
    };
    let mut child = Command::new(command)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `{command}`: {e}"))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no pipes to the server".to_owned());
    };
    let (tx, rx) = mpsc::channel();
    // Reads until EOF, also after the handshake, so the server never blocks on a full pipe.
    let reader = thread::Builder::new()
        .name("mcp stdout".to_owned())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(message) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(message);
                }
            }
        });
    let mut running = Running {
        name: normalize(&config.name),
        child,
        stdin: Some(stdin),
        rx,
        next_id: 0,
    };
    let outcome = match reader {
        Ok(_) => handshake(&mut running, deadline),
        Err(e) => Err(format!("cannot start a thread: {e}")),
    };
    match outcome {
        Ok(tools) => Ok((running, tools)),
        Err(e) => {
            drop(running.stdin.take());
            let _ = running.child.kill();
            let _ = running.child.wait();
            Err(e)
        }
    }
}

fn handshake(server: &mut Running, deadline: Instant) -> Result<Vec<String>, String> {
    let mut rpc = Rpc { server, deadline };
    rpc.call(
        "initialize",
        json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": { "roots": {} },
            "clientInfo": { "name": "claude-code", "version": crate::args::VERSION },
        }),
    )?;
    rpc.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(cursor) => json!({ "cursor": cursor }),
            None => json!({}),
        };
        let page = rpc.call("tools/list", params)?;
        let listed = page
            .get("tools")
            .and_then(Value::as_array)
            .ok_or("tools/list: no tools array")?;
        tools.extend(
            listed
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_owned),
        );
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(tools)
}

/// JSON-RPC over a server's pipes.
struct Rpc<'a> {
    server: &'a mut Running,
    deadline: Instant,
}

impl Rpc<'_> {
    fn send(&mut self, message: &Value) -> Result<(), String> {
        let stdin = self.server.stdin.as_mut().ok_or("stdin closed")?;
        let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        line.push(b'\n');
        stdin
            .write_all(&line)
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot write to the server: {e}"))
    }

    /// Sends a request and waits for its answer's `result`.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.server.next_id;
        self.server.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))?;
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let message = match self.server.rx.recv_timeout(left) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no answer to {method} in time (MCP_TIMEOUT)"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "the server closed its output before answering {method}"
                    ));
                }
            };
            if let Some(request) = message.get("method").and_then(Value::as_str) {
                // A request or notification from the server: answer requests so it goes on.
                if let Some(their_id) = message.get("id") {
                    let reply = if request == "ping" {
                        json!({ "jsonrpc": "2.0", "id": their_id, "result": {} })
                    } else {
                        json!({ "jsonrpc": "2.0", "id": their_id,
                                "error": { "code": -32601, "message": "Method not found" } })
                    };
                    self.send(&reply)?;
                }
                continue;
            }
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(format!("{method} failed: {error}"));
            }
            return message
                .get("result")
                .cloned()
                .ok_or_else(|| format!("{method}: an answer without a result"));
        }
    }
}

/// The first argument that makes fake-claude a minimal stdio MCP server instead (for tests of
/// `--mcp-config` that need a server): `--fake-claude-mcp-server [tool…]`.
pub const SERVER_FLAG: &str = "--fake-claude-mcp-server";

/// Serves MCP on stdin/stdout until EOF: `initialize`, `tools/list` (the given tool names),
/// `tools/call` (answering `<tool> <arguments>`), `ping`; other requests get "Method not found",
/// notifications are ignored.
pub fn serve(tools: &[String]) -> std::process::ExitCode {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(request) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (
            request.get("id"),
            request.get("method").and_then(Value::as_str),
        ) else {
            continue;
        };
        let result = match method {
            "initialize" => Some(json!({
                "protocolVersion": request
                    .pointer("/params/protocolVersion")
                    .cloned()
                    .unwrap_or_else(|| json!(PROTOCOL_VERSION)),
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "fake-claude-mcp", "version": crate::args::VERSION },
            })),
            "tools/list" => Some(json!({
                "tools": tools.iter().map(|name| json!({
                    "name": name,
                    "description": format!("fake-claude's tool {name}"),
                    "inputSchema": { "type": "object", "properties": {} },
                })).collect::<Vec<_>>(),
            })),
            "ping" => Some(json!({})),
            // Answers with the tool's name and its arguments, so a test can see both arrive.
            "tools/call" => request
                .pointer("/params/name")
                .and_then(Value::as_str)
                .filter(|name| tools.iter().any(|t| t == name))
                .map(|name| {
                    let arguments = request.pointer("/params/arguments").cloned();
                    let text = format!("{name} {}", arguments.unwrap_or_else(|| json!({})));
                    json!({ "content": [{ "type": "text", "text": text }], "isError": false })
                }),
            _ => None,
        };
        let reply = match result {
            Some(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            None => json!({ "jsonrpc": "2.0", "id": id,
                            "error": { "code": -32601, "message": "Method not found" } }),
        };
        let mut bytes = reply.to_string().into_bytes();
        bytes.push(b'\n');
        if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_inline_and_from_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("mcp.json");
        std::fs::write(
            &file,
            r#"{"mcpServers":{"a":{"command":"/bin/a"},"b":{"type":"http","url":"http://x"}}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let servers = parse_configs(&[
            file.display().to_string(),
            r#"{"mcpServers":{"a":{"command":"srv","args":["--x"],"env":{"K":"v"}}}}"#.to_owned(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            servers,
            [
                ServerConfig {
                    name: "b".into(),
                    transport: Transport::Other("http".into()),
                },
                ServerConfig {
                    name: "a".into(),
                    transport: Transport::Stdio {
                        command: "srv".into(),
                        args: vec!["--x".into()],
                        env: vec![("K".into(), "v".into())],
                    },
                },
            ]
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(parse_configs(&["/nonexistent/mcp.json".to_owned()]).is_err());
        assert!(parse_config("{").is_err());
        assert!(parse_config("{}").is_err());
        assert!(parse_config(r#"{"mcpServers":{"a":{}}}"#).is_err());
        assert!(parse_config(r#"{"mcpServers":{"a":{"command":"x","args":"y"}}}"#).is_err());
        assert!(parse_config(r#"{"mcpServers":{"a":{"command":"x","env":{"K":1}}}}"#).is_err());
        assert_eq!(parse_config(r#"{"mcpServers":{}}"#), Ok(vec![]));
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("my server.v2"), "my_server_v2");
        assert_eq!(normalize("ok-name_1"), "ok-name_1");
    }

    #[test]
    fn a_server_that_cannot_start_fails() {
        let servers = connect(
            vec![
                ServerConfig {
                    name: "missing".into(),
                    transport: Transport::Stdio {
                        command: "/nonexistent/server".into(),
                        args: vec![],
                        env: vec![],
                    },
                },
                ServerConfig {
                    name: "quits".into(),
                    transport: Transport::Stdio {
                        command: "true".into(),
                        args: vec![],
                        env: vec![],
                    },
                },
            ],
            Duration::from_secs(10),
        );
        let statuses: Vec<&str> = servers
            .statuses()
            .iter()
            .map(|s| s.status.as_str())
            .collect();
        assert_eq!(statuses, ["failed", "failed"]);
        assert!(servers.tools().is_empty());
    }
}
