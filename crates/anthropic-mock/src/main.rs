//! `anthropic-mock`: runs the loopback Anthropic Messages API mock for manual runs and prints its URL; with
//! `--mcp-stdio`, a minimal MCP server on stdin/stdout instead (for the real-CLI tests of the `usemcp` script).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anthropic_mock::{MockApi, MockOptions};

const USAGE: &str = "usage: anthropic-mock [--port N] [--slow-chunks N] [--slow-delay-ms MS] [--dump DIR]
       anthropic-mock --mcp-stdio

Serves a mock of the Anthropic Messages API on 127.0.0.1 (port 0 = a free one) until interrupted, printing its URL
on stdout and one line per request on stderr. Point the Claude Code CLI at it with
  ANTHROPIC_BASE_URL=<url> ANTHROPIC_API_KEY=dummy CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 CLAUDE_CONFIG_DIR=<scratch dir>
Scripts (keywords in the user's text): api-error <status>, usetool [command], usemcp [tool] [json], blocks a|b|c,
slow [chunks] [delay_ms]; anything else echoes. --dump writes every request to DIR/<index>.json.

--mcp-stdio serves a minimal MCP server (JSON-RPC lines on stdin/stdout) with the tools list_teams (no input;
answers \"teams: alpha, beta\") and echo ({\"text\": …}; answers the text). Configured under the name iris,
the CLI calls them mcp__iris__list_teams and mcp__iris__echo.";

fn parse(args: &[String]) -> Result<MockOptions, String> {
    let mut options = MockOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))
        };
        let bad = |v: &str| format!("{flag}: '{v}' is not a valid number\n\n{USAGE}");
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                options.port = v.parse().map_err(|_| bad(v))?;
            }
            "--slow-chunks" => {
                let v = value()?;
                options.slow_chunks = v.parse().map_err(|_| bad(v))?;
            }
            "--slow-delay-ms" => {
                let v = value()?;
                options.slow_delay = Duration::from_millis(v.parse().map_err(|_| bad(v))?);
            }
            "--dump" => options.dump_dir = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument '{other}'\n\n{USAGE}")),
        }
    }
    Ok(options)
}

#[allow(clippy::print_stdout)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--mcp-stdio") {
        return mcp::serve_stdio();
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return if args.iter().any(|a| a == "-h" || a == "--help") {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
    let mock = match MockApi::start_with(options).await {
        Ok(mock) => mock,
        Err(err) => {
            eprintln!("anthropic-mock: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", mock.base_url());
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("anthropic-mock: cannot wait for Ctrl-C ({err}); stopping");
    }
    mock.shutdown().await;
    ExitCode::SUCCESS
}

/// A minimal MCP server over stdio: newline-delimited JSON-RPC 2.0, tools only.
mod mcp {
    use std::io::{BufRead, Write};
    use std::process::ExitCode;

    use serde_json::{Value, json};

    /// The text `list_teams` answers.
    pub const TEAMS: &str = "teams: alpha, beta";

    /// Serves requests from stdin until it closes.
    pub fn serve_stdio() -> ExitCode {
        let stdin = std::io::stdin();
        let mut stdout = std::io::stdout().lock();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let reply = match serde_json::from_str::<Value>(&line) {
                Ok(message) => handle(&message),
                Err(err) => Some(json!({"jsonrpc": "2.0", "id": null,
                    "error": {"code": -32700, "message": format!("parse error: {err}")}})),
            };
            if let Some(reply) = reply
                && writeln!(stdout, "{reply}")
                    .and_then(|()| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
        ExitCode::SUCCESS
    }

    /// The reply to one message; `None` for notifications.
    pub fn handle(message: &Value) -> Option<Value> {
        let id = message.get("id")?.clone();
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let result = match method {
            "initialize" => json!({
                "protocolVersion": params.get("protocolVersion").cloned().unwrap_or(json!("2025-06-18")),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "anthropic-mock-mcp", "version": env!("CARGO_PKG_VERSION")},
            }),
            "ping" => json!({}),
            "tools/list" => json!({"tools": [
                {"name": "list_teams", "description": "Lists the teams (fixed answer from anthropic-mock).",
                 "inputSchema": {"type": "object", "properties": {}}},
                {"name": "echo", "description": "Answers its text argument.",
                 "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
            ]}),
            "tools/call" => {
                let text = match params.get("name").and_then(Value::as_str) {
                    Some("list_teams") => TEAMS.to_owned(),
                    Some("echo") => params
                        .pointer("/arguments/text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    other => {
                        return Some(json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32602, "message": format!("unknown tool {other:?}")}}));
                    }
                };
                json!({"content": [{"type": "text", "text": text}], "isError": false})
            }
            other => {
                return Some(json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": format!("method not found: {other}")}}));
            }
        };
        Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used, clippy::expect_used)]
        use super::*;

        #[test]
        fn answers_tools() {
            assert_eq!(
                handle(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
                None
            );
            let init = handle(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-03-26"}}))
            .unwrap();
            assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
            let list = handle(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).unwrap();
            assert_eq!(list["result"]["tools"][0]["name"], "list_teams");
            let call = handle(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hey"}}}))
            .unwrap();
            assert_eq!(call["result"]["content"][0]["text"], "hey");
            let bad = handle(&json!({"jsonrpc": "2.0", "id": 3, "method": "nope"})).unwrap();
            assert_eq!(bad["error"]["code"], -32601);
        }
    }
}
