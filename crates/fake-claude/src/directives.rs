//! Directives: user messages starting with `!` that script fake-claude's behaviour.

/// The largest `!big` answer, so a typo cannot exhaust memory.
pub const MAX_BIG: usize = 256 * 1024 * 1024;
/// The most `!stream` chunks.
pub const MAX_STREAM: u64 = 1_000_000;

/// A scripted behaviour for one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `!sleep <ms>`: wait, then echo.
    Sleep(u64),
    /// `!stream <n> [delay_ms]`: n assistant chunks, `delay_ms` apart.
    Stream { chunks: u64, delay_ms: u64 },
    /// `!stall`: one chunk, then silence until interrupted.
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
    /// `!error`: a failed API call.
    Error,
    /// `!grandchild`: spawn a long-sleeping child, then echo with its pid.
    Grandchild,
    /// `!ignore-sigterm`: ignore SIGTERM from now on, then echo.
    IgnoreSigterm,
    /// `!exit-after-reply`: echo, then exit 0.
    ExitAfterReply,
    /// `!permission <tool>`: ask the host over stdio, then report its answer.
    Permission(String),
}

/// Reads a directive from a message's text.
///
/// `Ok(None)`: not a directive (no leading `!`, or an unknown name), so the message is echoed.
/// `Err`: a known directive with bad arguments.
pub fn parse(text: &str) -> Result<Option<Directive>, String> {
    let Some(body) = text.trim().strip_prefix('!') else {
        return Ok(None);
    };
    let mut words = body.split_whitespace();
    let Some(name) = words.next() else {
        return Ok(None);
    };
    let args: Vec<&str> = words.collect();
    let directive = match name {
        "sleep" => Directive::Sleep(number(name, args.first(), None)?),
        "stream" => Directive::Stream {
            chunks: bounded(name, number(name, args.first(), None)?, MAX_STREAM)?,
            delay_ms: number(name, args.get(1), Some(0))?,
        },
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
        "error" => Directive::Error,
        "grandchild" => Directive::Grandchild,
        "ignore-sigterm" => Directive::IgnoreSigterm,
        "exit-after-reply" => Directive::ExitAfterReply,
        "permission" => match args.first() {
            Some(tool) => Directive::Permission((*tool).to_owned()),
            None => return Err("!permission: missing tool name".to_owned()),
        },
        _ => return Ok(None),
    };
    Ok(Some(directive))
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
        assert_eq!(
            parse("!permission Bash"),
            Ok(Some(Directive::Permission("Bash".into())))
        );
        assert_eq!(
            parse("!exit-after-reply"),
            Ok(Some(Directive::ExitAfterReply))
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse("!sleep").is_err());
        assert!(parse("!sleep soon").is_err());
        assert!(parse("!crash 256").is_err());
        assert!(parse("!big 999999999999").is_err());
        assert!(parse("!permission").is_err());
    }
}
