//! `fake-claude`: a stand-in for the Claude Code CLI in headless stream-json mode.
//!
//! It speaks the CLI's stdin/stdout protocol as the real CLI 2.1.197 does (see
//! `claude-cli-protocol.md` and the recordings in `tests/fixtures/recorded-claude-2.1.197/`),
//! keeps transcripts where the CLI does, and answers each user message with an echo, or with a
//! scripted behaviour when the message is a `!directive` (see `directives.rs`) or a slash
//! command (`/compact`, `/clear`). It never calls a model; its token counts and costs are
//! deterministic (see `cost.rs`). It starts the MCP servers of `--mcp-config` (see `mcp.rs`).
//!
//! It is a library so that the `iris` binary can carry it as its built-in demo agent (`iris
//! fake-claude ARGS…`, used by the default configuration when no `fake-claude` executable is
//! found); `src/main.rs` is the stand-alone binary the tests and benchmarks run.
#![deny(missing_docs)]

mod args;
mod cost;
mod directives;
mod helper;
mod input;
mod mcp;
mod protocol;
mod signals;
mod state;
mod transcript;
mod turn;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use args::{Command, Options, SessionChoice};
use helper::Relaunch;
use protocol::{InitInfo, Out, log};
use state::Shared;
use transcript::{Locator, Transcript};
use turn::{Flow, Permissions, Runner, RunnerOptions};

/// After how long a running `!tool` is reported as a background task (`system/task_started`),
/// unless `FAKE_CLAUDE_TASK_NOTICE_MS` says otherwise. The real CLI's Bash tool reported a
/// 20 s command after about 3 s.
const TASK_NOTICE_AFTER: Duration = Duration::from_secs(3);

/// Runs fake-claude with `argv` (without the program name) and returns its exit code. It reads
/// stdin and writes stdout and stderr of the current process, and may install a SIGTERM
/// disposition (`!ignore-sigterm`), so call it only from a process that exists to be the agent.
///
/// `argv` should be the tail of the process's command line (as `iris fake-claude ARGS…` passes
/// it): `!tool` starts this program again with the same prefix to run its subprocess.
pub fn main_with_args(argv: impl Iterator<Item = String>) -> ExitCode {
    let argv: Vec<String> = argv.collect();
    match argv.first().map(String::as_str) {
        Some(helper::HELPER_FLAG) => return helper::run_helper(&argv[1..]),
        Some(mcp::SERVER_FLAG) => return mcp::serve(&argv[1..]),
        _ => {}
    }
    let relaunch = Relaunch::detect(&argv);
    match args::parse(argv) {
        Ok(Command::Help) => write_stdout(args::HELP),
        Ok(Command::Version) => write_stdout(&format!("{} (fake-claude)\n", args::VERSION)),
        Ok(Command::Run(opts)) => run(&opts, relaunch),
        Err(e) => {
            log(&e.0);
            ExitCode::from(1)
        }
    }
}

fn write_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

/// A start-up failure: the message for stderr and the exit code.
struct Fatal(String, u8);

fn run(opts: &Options, relaunch: Option<Relaunch>) -> ExitCode {
    match start(opts, relaunch) {
        Ok(code) => ExitCode::from(code),
        Err(Fatal(message, code)) => {
            log(&message);
            ExitCode::from(code)
        }
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn env_millis(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// The conversation to serve.
struct Conversation {
    id: String,
    transcript: Transcript,
    /// Bytes of conversation text it holds.
    context_bytes: usize,
    /// User turns it holds.
    turns_seen: usize,
}

impl Conversation {
    fn new(id: String, transcript: Transcript, earlier: Option<&std::path::Path>) -> Self {
        Conversation {
            id,
            transcript,
            context_bytes: earlier.map_or(0, transcript::context_bytes),
            turns_seen: earlier.map_or(0, transcript::turns_seen),
        }
    }
}

/// The conversation the command line asks for, or the real CLI's refusal.
fn conversation(choice: SessionChoice, locator: &Locator) -> Result<Conversation, Fatal> {
    // Like the real CLI: a `result` on stdout before anything else, the message on stderr, exit 1.
    let existing = |id: &str| -> Result<PathBuf, Fatal> {
        locator.existing(id).ok_or_else(|| {
            let message = format!("No conversation found with session ID: {id}");
            Out.event(&protocol::launch_failure(id, &message));
            Fatal(message, 1)
        })
    };
    // A transcript without content is no conversation: its id may be used again.
    let unused = |id: String| -> Result<String, Fatal> {
        if locator.existing(&id).is_some() {
            Err(Fatal(
                format!("Error: Session ID {id} is already in use."),
                1,
            ))
        } else {
            Ok(id)
        }
    };
    Ok(match choice {
        SessionChoice::New => {
            let id = protocol::new_uuid();
            let transcript = Transcript::new(locator.path(&id));
            Conversation::new(id, transcript, None)
        }
        SessionChoice::Fixed(id) => {
            let id = unused(id)?;
            let transcript = Transcript::new(locator.path(&id));
            Conversation::new(id, transcript, None)
        }
        SessionChoice::Resume(id) => {
            let path = existing(&id)?;
            Conversation::new(id, Transcript::new(path.clone()), Some(&path))
        }
        SessionChoice::Fork { from, id } => {
            let seed = existing(&from)?;
            let id = unused(id.unwrap_or_else(protocol::new_uuid))?;
            let transcript = Transcript::forked_from(locator.path(&id), seed.clone());
            Conversation::new(id, transcript, Some(&seed))
        }
    })
}

fn start(opts: &Options, relaunch: Option<Relaunch>) -> Result<u8, Fatal> {
    if env_flag("FAKE_CLAUDE_FAIL_START") {
        return Err(Fatal("Error: simulated start failure".to_owned(), 2));
    }
    let choice = opts.validate().map_err(|e| Fatal(e.0, 1))?;
    let mcp_configs = mcp::parse_configs(&opts.mcp_config)
        .map_err(|e| Fatal(format!("Error: Invalid MCP configuration:\n{e}"), 1))?;
    let config_dir = transcript::config_dir_from(
        std::env::var_os("CLAUDE_CONFIG_DIR"),
        std::env::var_os("HOME"),
    )
    .ok_or_else(|| {
        Fatal(
            "Error: cannot find the configuration directory: set HOME or CLAUDE_CONFIG_DIR"
                .to_owned(),
            1,
        )
    })?;
    let cwd = std::env::current_dir()
        .map_err(|e| Fatal(format!("Error: cannot read the current directory: {e}"), 1))?;
    let project: PathBuf = cwd.canonicalize().unwrap_or_else(|_| cwd.clone());
    let locator = Locator {
        config_dir,
        project,
    };
    let conversation = conversation(choice, &locator)?;

    if let Some(delay) = env_millis("FAKE_CLAUDE_START_DELAY_MS") {
        std::thread::sleep(delay);
    }

    let mut servers = mcp::connect(mcp_configs, mcp::timeout_from_env());
    let tools = protocol::TOOLS
        .iter()
        .map(|t| (*t).to_owned())
        .chain(servers.tools().iter().cloned())
        .filter(|t| !opts.disallowed_tools.iter().any(|d| d == t))
        .collect();
    let mut memory_dir = locator.project_dir().join("memory").display().to_string();
    memory_dir.push('/');
    let runner_opts = RunnerOptions {
        init: InitInfo {
            session_id: conversation.id,
            cwd: cwd.to_string_lossy().into_owned(),
            tools,
            mcp_servers: servers.statuses().to_vec(),
            permission_mode: opts
                .permission_mode
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            memory_dir,
        },
        replay_user_messages: opts.replay_user_messages,
        include_partial_messages: opts.include_partial_messages,
        max_budget_usd: opts.max_budget_usd.clone(),
        permissions: Permissions {
            allowed: opts.allowed_tools.clone(),
            disallowed: opts.disallowed_tools.clone(),
            prompt_tool: opts.permission_prompt_tool.clone(),
            skip: opts.dangerously_skip_permissions,
        },
        locator,
        relaunch,
        task_notice_after: env_millis("FAKE_CLAUDE_TASK_NOTICE_MS").unwrap_or(TASK_NOTICE_AFTER),
        turns_seen_suffix: env_flag("FAKE_CLAUDE_TURNS_SEEN"),
    };

    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    if let Err(e) = input::spawn_reader(Arc::clone(&shared), tx) {
        servers.shutdown();
        return Err(Fatal(
            format!("Error: cannot start the stdin reader: {e}"),
            1,
        ));
    }
    let mut runner = Runner::new(
        shared,
        runner_opts,
        conversation.transcript,
        conversation.context_bytes,
        conversation.turns_seen,
        servers,
    );
    // The reader drops its sender at stdin EOF; queued turns still run before we exit.
    for message in rx {
        if let Flow::Exit(code) = runner.run(&message) {
            runner.shutdown_servers();
            std::process::exit(code);
        }
    }
    runner.shutdown_servers();
    Ok(runner.exit_code())
}
