//! Directives: user messages starting with `!` that script fake-claude's behaviour.

/// The largest `!big` answer, so a typo cannot exhaust memory.
pub const MAX_BIG: usize = 256 * 1024 * 1024;
/// The most `!stream` chunks.
pub const MAX_STREAM: u64 = 1_000_000;

/// A scripted behaviour for one turn. Every turn starts with `system/init`; "streams" means:
/// without `--include-partial-messages` nothing is printed until a content block is complete
/// (then one `assistant` event per block), with it `stream_event` deltas come as they are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `!sleep <ms>`: silence for `ms` (the model's time to first token), then echo.
    Sleep(u64),
    /// `!stream <n> [delay_ms]`: one text block streamed as n chunks (`chunk 1`, `\nchunk 2`,
    /// …), `delay_ms` apart. Without `--include-partial-messages` it is silent until the whole
    /// block is done; an interrupt prints the text streamed so far.
    Stream { chunks: u64, delay_ms: u64 },
    /// `!blocks [delay=<ms>] <text>|<text>|…`: one API message with several text blocks, each
    /// printed as its own `assistant` event (same message id) when complete, `ms` apart;
    /// `result.result` is the last block's text.
    Blocks { delay_ms: u64, texts: Vec<String> },
    /// `!stall`: one complete text block (`chunk 1`, so one `assistant` event), then silence
    /// until interrupted.
    Stall,
    /// `!hang`: no output until interrupted.
    Hang,
    /// `!wedge`: stop answering anything, control requests included; only a signal ends it.
    Wedge,
    /// `!crash [code]`: half a line on stdout, then exit.
    Crash(i32),
    /// `!garbage`: non-JSON lines and a malformed `{` line, then an echo.
    Garbage,
    /// `!big <bytes>`: one answer of exactly that many bytes.
    Big(usize),
    /// `!error [status]`: a failed API call with that HTTP status (default 500), as the real CLI
    /// reports it: a synthetic assistant message and an error result. The prompt is left out of
    /// the conversation, and if it was the last turn, stdin EOF exits 1.
    Error(u16),
    /// `!grandchild`: spawn a long-sleeping child, then echo with its pid.
    Grandchild,
    /// `!daemon <ms> [marker]`: start the `!tool` subprocess in a session of its own and do not
    /// wait for it (like `setsid cmd &` in a Bash tool: it outlives the turn, outside
    /// fake-claude's process group), then echo with its pid.
    Daemon { ms: u64, marker: Option<String> },
    /// `!ignore-sigterm`: ignore SIGTERM from now on, then echo.
    IgnoreSigterm,
    /// `!exit-after-reply`: echo, then exit 0.
    ExitAfterReply,
    /// `!permission <tool>`: the model calls `tool` (nothing runs); permission is decided as
    /// for any tool call (asked over stdio when needed); the answer is
    /// `permission <tool>: allow|deny|error|timeout`.
    Permission(String),
    /// `!tool <ms> [marker]`: the model calls Bash; once permitted, a real subprocess runs for
    /// `ms` in a session of its own (outside fake-claude's process group) while nothing is
    /// printed, and creates `marker` (relative to the working directory) when it ends.
    Tool { ms: u64, marker: Option<String> },
    /// `!mcp <tool> [json input]`: the model calls an MCP server's tool
    /// (`mcp__<server>__<tool>`, of a `--mcp-config` server); once permitted it is really called,
    /// and the answer is `after mcp: <first 200 characters of its result>`.
    Mcp {
        tool: String,
        input: serde_json::Value,
    },
}

/// The longest `!tool` run (a day), so a typo cannot leave a helper forever.
pub const MAX_TOOL_MS: u64 = 86_400_000;

/// Reads a directive from a message's text.
///
/// `Ok(None)`: not a directive (no leading `!`, or an unknown name), so the message is echoed.
/// `Err`: a known directive with bad arguments.
pub fn parse(text: &str) -> Result<Option<Directive>, String> {
    let Some(body) = text.trim().strip_prefix('!') else {
        return Ok(None);
    };
    let body = body.trim_start();
    let (name, rest) = match body.find(char::is_whitespace) {
        Some(end) => (&body[..end], body[end..].trim()),
        None => (body, ""),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let args: Vec<&str> = rest.split_whitespace().collect();
    let directive = match name {
        "sleep" => Directive::Sleep(number(name, args.first(), None)?),
        "stream" => Directive::Stream {
            chunks: bounded(name, number(name, args.first(), None)?, MAX_STREAM)?,
            delay_ms: number(name, args.get(1), Some(0))?,
        },
        "blocks" => blocks(rest)?,
        "stall" => Directive::Stall,
        "hang" => Directive::Hang,
        "wedge" => Directive::Wedge,
        "crash" => {
            let code = number(name, args.first(), Some(1))?;
            let code = i32::try_from(code)
                .ok()
                .filter(|c| *c <= 255)
                .ok_or_else(|| format!("!crash: exit code {code} is out of range 0..=255"))?;
            Directive::Crash(code)
        }
        "garbage" => Directive::Garbage,
        "big" => {
            let bytes = bounded(name, number(name, args.first(), None)?, MAX_BIG as u64)?;
            Directive::Big(usize::try_from(bytes).map_err(|e| format!("!big: {e}"))?)
        }
        "error" => {
            let status = number(name, args.first(), Some(500))?;
            let status = u16::try_from(status)
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| format!("!error: HTTP status {status} is out of range 100..=599"))?;
            Directive::Error(status)
        }
        "grandchild" => Directive::Grandchild,
        "ignore-sigterm" => Directive::IgnoreSigterm,
        "exit-after-reply" => Directive::ExitAfterReply,
        "permission" => match args.first() {
            Some(tool) => Directive::Permission((*tool).to_owned()),
            None => return Err("!permission: missing tool name".to_owned()),
        },
        "tool" | "daemon" => {
            let ms = bounded(name, number(name, args.first(), None)?, MAX_TOOL_MS)?;
            let marker = rest
                .split_once(char::is_whitespace)
                .map(|(_, marker)| marker.trim().to_owned())
                .filter(|marker| !marker.is_empty());
            if name == "tool" {
                Directive::Tool { ms, marker }
            } else {
                Directive::Daemon { ms, marker }
            }
        }
        "mcp" => mcp(rest)?,
        _ => return Ok(None),
    };
    Ok(Some(directive))
}

/// `<tool> [json object]`
fn mcp(rest: &str) -> Result<Directive, String> {
    let rest = rest.trim();
    let (tool, input) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !tool.starts_with("mcp__") {
        return Err(format!(
            "!mcp: '{tool}' is not an MCP tool name; write mcp__<server>__<tool>"
        ));
    }
    let input = match input.trim() {
        "" => serde_json::json!({}),
        text => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) if value.is_object() => value,
            _ => return Err(format!("!mcp: the input {text:?} is not a JSON object")),
        },
    };
    Ok(Directive::Mcp {
        tool: tool.to_owned(),
        input,
    })
}

/// `[delay=<ms>] <text>|<text>|…`
fn blocks(rest: &str) -> Result<Directive, String> {
    let (delay_ms, texts) = match rest.strip_prefix("delay=") {
        Some(after) => {
            let (ms, texts) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            let ms = ms
                .parse()
                .map_err(|_| format!("!blocks: delay '{ms}' is not a non-negative integer"))?;
            (ms, texts.trim())
        }
        None => (0, rest),
    };
    if texts.is_empty() {
        return Err("!blocks: missing texts (write them as a|b|c)".to_owned());
    }
    let texts: Vec<String> = texts.split('|').map(|t| t.trim().to_owned()).collect();
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(format!("!blocks: block {} is empty", i + 1));
    }
    Ok(Directive::Blocks { delay_ms, texts })
}

fn number(name: &str, arg: Option<&&str>, default: Option<u64>) -> Result<u64, String> {
    match (arg, default) {
        (Some(arg), _) => arg
            .parse()
            .map_err(|_| format!("!{name}: '{arg}' is not a non-negative integer")),
        (None, Some(default)) => Ok(default),
        (None, None) => Err(format!("!{name}: missing argument")),
    }
}

fn bounded(name: &str, value: u64, max: u64) -> Result<u64, String> {
    if value > max {
        Err(format!("!{name}: {value} is over the limit of {max}"))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_takes_a_tool_name_and_a_json_object() {
        assert_eq!(
            parse(r#"!mcp mcp__iris__echo {"text": "hi"}"#),
            Ok(Some(Directive::Mcp {
                tool: "mcp__iris__echo".into(),
                input: serde_json::json!({"text": "hi"}),
            }))
        );
        assert_eq!(
            parse("!mcp mcp__iris__list_teams"),
            Ok(Some(Directive::Mcp {
                tool: "mcp__iris__list_teams".into(),
                input: serde_json::json!({}),
            }))
        );
        assert!(
            parse("!mcp Bash")
                .unwrap_err()
                .contains("mcp__<server>__<tool>")
        );
        assert!(
            parse("!mcp mcp__a__b [1]")
                .unwrap_err()
                .contains("JSON object")
        );
    }

    #[test]
    fn plain_text_is_not_a_directive() {
        assert_eq!(parse("hello"), Ok(None));
        assert_eq!(parse("!important news"), Ok(None));
        assert_eq!(parse("!"), Ok(None));
    }

    #[test]
    fn directives_and_arguments() {
        assert_eq!(parse("!sleep 5000"), Ok(Some(Directive::Sleep(5000))));
        assert_eq!(
            parse("  !stream 3"),
            Ok(Some(Directive::Stream {
                chunks: 3,
                delay_ms: 0
            }))
        );
        assert_eq!(
            parse("!stream 3 50"),
            Ok(Some(Directive::Stream {
                chunks: 3,
                delay_ms: 50
            }))
        );
        assert_eq!(parse("!crash"), Ok(Some(Directive::Crash(1))));
        assert_eq!(parse("!crash 3"), Ok(Some(Directive::Crash(3))));
        assert_eq!(parse("!big 10"), Ok(Some(Directive::Big(10))));
        assert_eq!(parse("!error"), Ok(Some(Directive::Error(500))));
        assert_eq!(parse("!error 529"), Ok(Some(Directive::Error(529))));
        assert_eq!(
            parse("!permission Bash"),
            Ok(Some(Directive::Permission("Bash".into())))
        );
        assert_eq!(
            parse("!exit-after-reply"),
            Ok(Some(Directive::ExitAfterReply))
        );
        assert_eq!(
            parse("!tool 250"),
            Ok(Some(Directive::Tool {
                ms: 250,
                marker: None
            }))
        );
        assert_eq!(
            parse("!tool 0 dir/my marker"),
            Ok(Some(Directive::Tool {
                ms: 0,
                marker: Some("dir/my marker".into())
            }))
        );
    }

    #[test]
    fn blocks_are_split_on_bars() {
        assert_eq!(
            parse("!blocks first part| second |third"),
            Ok(Some(Directive::Blocks {
                delay_ms: 0,
                texts: vec!["first part".into(), "second".into(), "third".into()]
            }))
        );
        assert_eq!(
            parse("!blocks delay=300 a|b"),
            Ok(Some(Directive::Blocks {
                delay_ms: 300,
                texts: vec!["a".into(), "b".into()]
            }))
        );
        assert_eq!(
            parse("!blocks one"),
            Ok(Some(Directive::Blocks {
                delay_ms: 0,
                texts: vec!["one".into()]
            }))
        );
        assert!(parse("!blocks").is_err());
        assert!(parse("!blocks delay=300").is_err());
        assert!(parse("!blocks delay=x a").is_err());
        assert!(parse("!blocks a||b").is_err());
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse("!sleep").is_err());
        assert!(parse("!sleep soon").is_err());
        assert!(parse("!crash 256").is_err());
        assert!(parse("!big 999999999999").is_err());
        assert!(parse("!permission").is_err());
        assert!(parse("!error 99").is_err());
        assert!(parse("!error 600").is_err());
        assert_eq!(
            parse("!daemon 500 m"),
            Ok(Some(Directive::Daemon {
                ms: 500,
                marker: Some("m".into())
            }))
        );
        assert!(parse("!tool").is_err());
        assert!(parse("!tool soon").is_err());
        assert!(parse("!tool 99999999999").is_err());
    }
}
