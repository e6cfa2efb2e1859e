//! Command-line parsing, modelled on the real CLI's (commander.js) behaviour: `--flag value` and
//! `--flag=value` forms, variadic tool lists, and commander's error messages.

/// The version of the real CLI fake-claude models: `--version` prints it (as
/// `2.1.197 (fake-claude)`), and `init` reports it.
pub const VERSION: &str = "2.1.197";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `--help`: print usage and exit 0.
    Help,
    /// `--version`: print the version and exit 0.
    Version,
    /// Serve the stream-json protocol.
    Run(Box<Options>),
}

/// Which conversation to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChoice {
    /// Neither `--session-id` nor `--resume`: a fresh random id.
    New,
    /// `--session-id <uuid>`: a new conversation with this id.
    Fixed(String),
    /// `--resume <id>`: continue an existing conversation.
    Resume(String),
    /// `--resume <from> --fork-session [--session-id <id>]`: a new conversation (`id`, or a
    /// fresh one) that starts as a copy of `from`.
    Fork { from: String, id: Option<String> },
}

/// The options of a [`Command::Run`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub output_format: Option<String>,
    pub input_format: Option<String>,
    pub verbose: bool,
    pub print: bool,
    pub session_id: Option<String>,
    pub resume: Option<String>,
    pub resume_without_id: bool,
    pub fork_session: bool,
    pub permission_prompt_tool: Option<String>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub append_system_prompt: Option<String>,
    pub mcp_config: Vec<String>,
    pub permission_mode: Option<String>,
    pub model: Option<String>,
    /// `--max-budget-usd`: the process's spending limit, as given (checked to be a positive
    /// number).
    pub max_budget_usd: Option<String>,
    pub include_partial_messages: bool,
    pub replay_user_messages: bool,
    pub debug: bool,
    pub strict_mcp_config: bool,
    pub dangerously_skip_permissions: bool,
    pub positional: Vec<String>,
}

/// A `--max-budget-usd` value: a positive number of dollars.
fn budget(value: Option<String>) -> Result<String, ArgError> {
    let value = value.unwrap_or_default();
    match value.parse::<f64>() {
        Ok(usd) if usd.is_finite() && usd > 0.0 => Ok(value),
        _ => Err(ArgError(format!(
            "error: --max-budget-usd must be a positive number, got '{value}'"
        ))),
    }
}

/// A command-line error: the message goes to stderr verbatim and the process exits 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No value.
    Switch,
    /// Exactly one value (the next argument, whatever it looks like, or `=value`).
    Value,
    /// An optional value: `=value`, or the next argument unless it starts with `-`.
    Optional,
    /// One or more values: every following argument up to the next one starting with `-`.
    Variadic,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    long: &'static str,
    alias: Option<&'static str>,
    short: Option<char>,
    /// How commander names the value in messages, e.g. `<uuid>`.
    value_name: &'static str,
    kind: Kind,
}

const fn spec(
    long: &'static str,
    alias: Option<&'static str>,
    short: Option<char>,
    value_name: &'static str,
    kind: Kind,
) -> Spec {
    Spec {
        long,
        alias,
        short,
        value_name,
        kind,
    }
}

const SPECS: &[Spec] = &[
    spec("help", None, Some('h'), "", Kind::Switch),
    spec("version", None, Some('v'), "", Kind::Switch),
    spec("print", None, Some('p'), "", Kind::Switch),
    spec("verbose", None, None, "", Kind::Switch),
    spec("debug", None, Some('d'), "[filter]", Kind::Optional),
    spec("output-format", None, None, "<format>", Kind::Value),
    spec("input-format", None, None, "<format>", Kind::Value),
    spec("session-id", None, None, "<uuid>", Kind::Value),
    spec("resume", None, Some('r'), "[sessionId]", Kind::Optional),
    spec("fork-session", None, None, "", Kind::Switch),
    spec("permission-prompt-tool", None, None, "<tool>", Kind::Value),
    spec(
        "allowedTools",
        Some("allowed-tools"),
        None,
        "<tools...>",
        Kind::Variadic,
    ),
    spec(
        "disallowedTools",
        Some("disallowed-tools"),
        None,
        "<tools...>",
        Kind::Variadic,
    ),
    spec("append-system-prompt", None, None, "<prompt>", Kind::Value),
    spec("mcp-config", None, None, "<configs...>", Kind::Variadic),
    spec("strict-mcp-config", None, None, "", Kind::Switch),
    spec("permission-mode", None, None, "<mode>", Kind::Value),
    spec("model", None, None, "<model>", Kind::Value),
    spec("max-budget-usd", None, None, "<amount>", Kind::Value),
    spec("include-partial-messages", None, None, "", Kind::Switch),
    spec("replay-user-messages", None, None, "", Kind::Switch),
    spec("dangerously-skip-permissions", None, None, "", Kind::Switch),
];

const OUTPUT_FORMATS: &[&str] = &["text", "json", "stream-json"];
const INPUT_FORMATS: &[&str] = &["text", "stream-json"];
const PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
    "auto",
];

fn find_long(name: &str) -> Option<&'static Spec> {
    SPECS
        .iter()
        .find(|s| s.long == name || s.alias == Some(name))
}

fn find_short(c: char) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.short == Some(c))
}

fn flag_label(spec: &Spec) -> String {
    if spec.value_name.is_empty() {
        format!("--{}", spec.long)
    } else {
        format!("--{} {}", spec.long, spec.value_name)
    }
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut opts = Options::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            opts.positional.extend(args[i..].iter().cloned());
            break;
        }
        let (spec, inline) = if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (body, None),
            };
            match find_long(name) {
                Some(spec) => (spec, inline),
                None => return Err(unknown(arg)),
            }
        } else if let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) {
            let mut chars = body.chars();
            let spec = chars
                .next()
                .and_then(find_short)
                .ok_or_else(|| unknown(arg))?;
            let rest: String = chars.collect();
            let inline = if rest.is_empty() {
                None
            } else if spec.kind == Kind::Switch {
                return Err(unknown(arg));
            } else {
                Some(rest.strip_prefix('=').unwrap_or(&rest).to_owned())
            };
            (spec, inline)
        } else {
            opts.positional.push(arg.clone());
            continue;
        };

        let values: Vec<String> = match spec.kind {
            Kind::Switch => {
                if inline.is_some() {
                    return Err(ArgError(format!(
                        "error: option '{}' does not take an argument",
                        flag_label(spec)
                    )));
                }
                Vec::new()
            }
            Kind::Value => match inline {
                Some(v) => vec![v],
                None => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        vec![v.clone()]
                    }
                    None => return Err(missing(spec)),
                },
            },
            Kind::Optional => match inline {
                Some(v) => vec![v],
                None => match args.get(i) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        vec![v.clone()]
                    }
                    _ => Vec::new(),
                },
            },
            Kind::Variadic => {
                let mut values: Vec<String> = inline.into_iter().collect();
                while let Some(v) = args.get(i).filter(|v| !v.starts_with('-')) {
                    values.push(v.clone());
                    i += 1;
                }
                if values.is_empty() {
                    return Err(missing(spec));
                }
                values
            }
        };
        let first = values.first().cloned();
        match spec.long {
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            "print" => opts.print = true,
            "verbose" => opts.verbose = true,
            "debug" => opts.debug = true,
            "output-format" => {
                opts.output_format = Some(choice(spec, first, OUTPUT_FORMATS)?);
            }
            "input-format" => opts.input_format = Some(choice(spec, first, INPUT_FORMATS)?),
            "session-id" => opts.session_id = first,
            "resume" => match first {
                Some(id) => {
                    opts.resume = Some(id);
                    opts.resume_without_id = false;
                }
                None => opts.resume_without_id = true,
            },
            "fork-session" => opts.fork_session = true,
            "permission-prompt-tool" => opts.permission_prompt_tool = first,
            "allowedTools" => opts.allowed_tools.extend(split_tools(&values)),
            "disallowedTools" => opts.disallowed_tools.extend(split_tools(&values)),
            "append-system-prompt" => opts.append_system_prompt = first,
            "mcp-config" => opts.mcp_config.extend(values),
            "strict-mcp-config" => opts.strict_mcp_config = true,
            "permission-mode" => {
                opts.permission_mode = Some(choice(spec, first, PERMISSION_MODES)?);
            }
            "model" => opts.model = first,
            "max-budget-usd" => opts.max_budget_usd = Some(budget(first)?),
            "include-partial-messages" => opts.include_partial_messages = true,
            "replay-user-messages" => opts.replay_user_messages = true,
            "dangerously-skip-permissions" => opts.dangerously_skip_permissions = true,
            _ => return Err(unknown(arg)),
        }
    }
    Ok(Command::Run(Box::new(opts)))
}

impl Options {
    /// Checks the combination of options the way the real CLI does in headless stream-json
    /// mode, and says which conversation to serve.
    pub fn validate(&self) -> Result<SessionChoice, ArgError> {
        if self.output_format.as_deref() != Some("stream-json") {
            return Err(ArgError(
                "Error: fake-claude only supports --output-format stream-json".to_owned(),
            ));
        }
        if self.input_format.as_deref() != Some("stream-json") {
            return Err(ArgError(
                "Error: fake-claude only supports --input-format stream-json".to_owned(),
            ));
        }
        if !self.verbose {
            return Err(ArgError(
                "Error: When using --print, --output-format=stream-json requires --verbose"
                    .to_owned(),
            ));
        }
        if let Some(prompt) = self.positional.first() {
            return Err(ArgError(format!(
                "Error: fake-claude reads prompts from stdin (--input-format stream-json); \
                 unexpected argument '{prompt}'"
            )));
        }
        if self.resume_without_id && self.resume.is_none() {
            return Err(ArgError(
                "Error: --resume requires a session ID when not running interactively".to_owned(),
            ));
        }
        if let Some(id) = &self.session_id
            && uuid::Uuid::try_parse(id).is_err()
        {
            return Err(ArgError(
                "Error: Invalid session ID. Must be a valid UUID.".to_owned(),
            ));
        }
        match (&self.session_id, &self.resume) {
            (Some(id), Some(from)) if self.fork_session => Ok(SessionChoice::Fork {
                from: from.clone(),
                id: Some(id.clone()),
            }),
            (Some(_), Some(_)) => Err(ArgError(
                "Error: --session-id can only be used with --continue or --resume if \
                 --fork-session is also specified."
                    .to_owned(),
            )),
            (Some(id), None) => Ok(SessionChoice::Fixed(id.clone())),
            (None, Some(from)) if self.fork_session => Ok(SessionChoice::Fork {
                from: from.clone(),
                id: None,
            }),
            (None, Some(id)) => Ok(SessionChoice::Resume(id.clone())),
            (None, None) => Ok(SessionChoice::New),
        }
    }
}

fn unknown(arg: &str) -> ArgError {
    ArgError(format!("error: unknown option '{arg}'"))
}

fn missing(spec: &Spec) -> ArgError {
    ArgError(format!(
        "error: option '{}' argument missing",
        flag_label(spec)
    ))
}

fn choice(spec: &Spec, value: Option<String>, allowed: &[&str]) -> Result<String, ArgError> {
    let value = value.ok_or_else(|| missing(spec))?;
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(ArgError(format!(
            "error: option '{}' argument '{value}' is invalid. Allowed choices are {}.",
            flag_label(spec),
            allowed.join(", ")
        )))
    }
}

/// Splits tool rules on commas and spaces outside parentheses, like the CLI's tokenizer.
fn split_tools(values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        let mut depth = 0usize;
        let mut current = String::new();
        for c in value.chars() {
            match c {
                '(' => {
                    depth += 1;
                    current.push(c);
                }
                ')' => {
                    depth = depth.saturating_sub(1);
                    current.push(c);
                }
                ',' | ' ' if depth == 0 => {
                    if !current.is_empty() {
                        out.push(std::mem::take(&mut current));
                    }
                }
                _ => current.push(c),
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out
}

/// The `--help` text.
pub const HELP: &str = "\
Usage: fake-claude [options]

A stand-in for the Claude Code CLI 2.1.197 in headless stream-json mode. It calls no model: it
echoes each user message ('echo: <text>'), and messages starting with '!' are directives that
script its behaviour. Every turn prints system/init, the assistant message (one 'assistant'
event per content block, once the block is complete; with --include-partial-messages also
'stream_event' deltas while it streams), and one 'result'. An interrupt prints the text
streamed so far, a user message '[Request interrupted by user]' and an error_during_execution
result.

Directives:
  !sleep <ms>                   Silence for <ms> (time to first token), then echo
  !stream <n> [delay_ms]        One text block of n chunks ('chunk 1', '\\nchunk 2', ...),
                                delay_ms apart: silent until done unless partial messages
  !blocks [delay=<ms>] a|b|c    One message of several text blocks, one 'assistant' event each,
                                <ms> apart; result.result is the last block's text
  !stall                        One complete block ('chunk 1'), then silence until interrupted
  !hang                         Silence until interrupted
  !wedge                        Stop answering anything, control requests included
  !crash [code]                 Half a JSON line on stdout, then exit <code> (default 1)
  !garbage                      Non-JSON lines and a malformed '{' line, then echo
  !big <bytes>                  One answer of exactly <bytes> bytes
  !error [status]               A failed API call with HTTP <status> (default 500): a synthetic
                                assistant message, a result with is_error and
                                api_error_status; the prompt is left out of the conversation,
                                and stdin EOF right after exits 1
  !grandchild                   Spawn 'sleep 3600' (in our process group), echo with its pid
  !daemon <ms> [marker]         Start the !tool subprocess (setsid, outside our process group)
                                and do not wait for it, as 'setsid cmd &' in a Bash tool would;
                                echo with its pid
  !ignore-sigterm               Ignore SIGTERM from now on, then echo
  !exit-after-reply             Echo, then exit 0
  !permission <tool>            The model calls <tool> (nothing runs); answer
                                'permission <tool>: allow|deny|error|timeout'
  !tool <ms> [marker]           The model calls Bash; once permitted a real subprocess runs
                                <ms> in a session of its own (setsid, outside our process
                                group), silently, then creates <marker> (relative to the
                                working directory); answer 'after tool: <tool result>'.
                                A tool running longer than FAKE_CLAUDE_TASK_NOTICE_MS is
                                reported by system/task_started and system/task_notification
  !mcp <tool> [json]            The model calls an MCP tool (mcp__<server>__<tool>) of a
                                --mcp-config server; once permitted it is really called;
                                answer 'after mcp: <first 200 characters of its result>'

Tool permissions (!permission, !tool, !mcp): a --disallowedTools rule refuses; an --allowedTools rule,
--dangerously-skip-permissions, --permission-mode bypassPermissions (or acceptEdits for edit
tools) allow; otherwise a can_use_tool control_request is sent on stdout when a
--permission-prompt-tool is given (any value), and without one the call is refused.

Slash commands: /compact [instructions] (system/status, system/compact_boundary; same session
id) and /clear (also /reset, /new: a new session id and transcript). Others are plain text.

Cost: a text of n bytes is ceil(n/4) tokens; each API call costs input x $5/Mtok + output x
$25/Mtok. result.total_cost_usd and modelUsage are running totals of the process (zero at each
start); result.usage is the turn's own. Interrupted turns, API errors and /clear cost nothing.

Options:
  -p, --print                          Non-interactive mode (always the case here)
  --output-format <format>             Must be stream-json
  --input-format <format>              Must be stream-json
  --verbose                            Required with --output-format stream-json
  --session-id <uuid>                  Start a new conversation with this id (exit 1 if its
                                       transcript exists and is not empty)
  -r, --resume <sessionId>             Continue an existing conversation (exit 1 with a result
                                       on stdout if it has no transcript, or an empty one)
  --fork-session                       With --resume: continue as a new session id (a copy)
  --permission-prompt-tool <tool>      Ask for permissions over stdio (whatever the value)
  --allowedTools <tools...>            Tools that run without asking
  --disallowedTools <tools...>         Removed from system/init; refused
  --append-system-prompt <prompt>      Accepted and ignored
  --mcp-config <configs...>            Files or inline JSON {\"mcpServers\":{...}}: each stdio
                                       server is started and its tools listed
  --strict-mcp-config                  Accepted (no other MCP configuration is read anyway)
  --permission-mode <mode>             Reported in system/init; bypassPermissions and
                                       acceptEdits act on tool permissions
  --model <model>                      Accepted; the model is always fake-claude
  --max-budget-usd <amount>            Spending limit of the process: the turn that reaches it
                                       ends with result subtype error_max_budget_usd, and every
                                       later turn at once, without an API call
  --include-partial-messages           Emit stream_event deltas (and system/status)
  --replay-user-messages               Echo stdin user messages on stdout
  --dangerously-skip-permissions       Every tool runs without asking
  -d, --debug [filter]                 Accepted and ignored
  -v, --version                        Print the version
  -h, --help                           Print this help

Environment:
  CLAUDE_CONFIG_DIR                    Transcript root (default $HOME/.claude)
  MCP_TIMEOUT=<ms>                     How long MCP servers may take to connect (default 30000)
  FAKE_CLAUDE_START_DELAY_MS=<ms>      Wait before reading stdin
  FAKE_CLAUDE_FAIL_START=1             Fail at start with exit code 2
  FAKE_CLAUDE_TASK_NOTICE_MS=<ms>      When a running !tool becomes a background task (3000)
  FAKE_CLAUDE_TURNS_SEEN=1             Echoes (and !tool answers) end with ' (turns seen: N)', N
                                       being the user turns of the conversation, like the mock
                                       model the real CLI was recorded against

Internal modes (first argument):
  --fake-claude-tool-helper <ms> [marker]   The !tool subprocess: sleep, then create marker
  --fake-claude-mcp-server [tool...]        A minimal stdio MCP server listing these tools
";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(args.iter().copied()) {
            Ok(Command::Run(o)) => *o,
            other => panic!("unexpected {other:?}"),
        }
    }

    const BASE: &[&str] = &[
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format=stream-json",
    ];

    #[test]
    fn both_value_forms_are_accepted() {
        let o = run(&[
            "--session-id=0f8fad5b-d9cb-469f-a165-70867728950e",
            "--permission-prompt-tool",
            "stdio",
            "--model=opus",
        ]);
        assert_eq!(
            o.session_id.as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert_eq!(o.permission_prompt_tool.as_deref(), Some("stdio"));
        assert_eq!(o.model.as_deref(), Some("opus"));
        let o = run(&["--resume", "abc", "-p"]);
        assert_eq!(o.resume.as_deref(), Some("abc"));
        assert!(o.print);
        let o = run(&["--resume=-dash"]);
        assert_eq!(o.resume.as_deref(), Some("-dash"));
    }

    #[test]
    fn tool_lists_are_variadic_and_split() {
        let o = run(&[
            "--allowedTools",
            "Read,Grep",
            "Bash(git log:*)",
            "--verbose",
            "--disallowed-tools=AskUserQuestion",
        ]);
        assert_eq!(o.allowed_tools, ["Read", "Grep", "Bash(git log:*)"]);
        assert_eq!(o.disallowed_tools, ["AskUserQuestion"]);
        assert!(o.verbose);
    }

    #[test]
    fn debug_takes_an_optional_filter() {
        let o = run(&["--debug", "--print"]);
        assert!(o.debug && o.print);
        let o = run(&["--debug", "api"]);
        assert!(o.debug);
        assert!(o.positional.is_empty());
    }

    #[test]
    fn errors_look_like_commanders() {
        assert_eq!(
            parse(["--bogus"]),
            Err(ArgError("error: unknown option '--bogus'".into()))
        );
        assert_eq!(
            parse(["-x"]),
            Err(ArgError("error: unknown option '-x'".into()))
        );
        assert_eq!(
            parse(["--session-id"]),
            Err(ArgError(
                "error: option '--session-id <uuid>' argument missing".into()
            ))
        );
        assert!(parse(["--output-format", "xml"]).is_err());
        assert!(parse(["--permission-mode", "yolo"]).is_err());
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(["--version"]), Ok(Command::Version));
        assert_eq!(parse(["-v"]), Ok(Command::Version));
        assert_eq!(parse(["--verbose", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn validation() {
        let base = run(BASE);
        assert_eq!(base.validate(), Ok(SessionChoice::New));
        let mut o = base.clone();
        o.verbose = false;
        assert!(o.validate().is_err());
        let mut o = base.clone();
        o.input_format = Some("text".into());
        assert!(o.validate().is_err());
        let mut o = base.clone();
        o.session_id = Some("nope".into());
        assert_eq!(
            o.validate(),
            Err(ArgError(
                "Error: Invalid session ID. Must be a valid UUID.".into()
            ))
        );
        o.resume = Some("x".into());
        assert!(o.validate().is_err());
        o.session_id = Some("0f8fad5b-d9cb-469f-a165-70867728950e".into());
        assert!(o.validate().is_err());
        o.fork_session = true;
        assert_eq!(
            o.validate(),
            Ok(SessionChoice::Fork {
                from: "x".into(),
                id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into())
            })
        );
        let mut o = base;
        o.resume = Some("x".into());
        assert_eq!(o.validate(), Ok(SessionChoice::Resume("x".into())));
    }
}
