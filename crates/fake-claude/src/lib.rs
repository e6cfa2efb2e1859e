//! `fake-claude`: a stand-in for the Claude Code CLI in headless stream-json mode.
//!
//! It speaks the CLI's stdin/stdout protocol (see `claude-cli-protocol.md`), keeps transcripts
//! where the CLI does, and answers each user message with an echo, or with a scripted behaviour
//! when the message is a `!directive` (see `directives.rs`). It never calls a model.
//!
//! It is a library so that the `iris` binary can carry it as its built-in demo agent (`iris
//! fake-claude ARGS…`, used by the default configuration when no `fake-claude` executable is
//! found); `src/main.rs` is the stand-alone binary the tests and benchmarks run.
#![deny(missing_docs)]

mod args;
mod directives;
mod input;
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
use protocol::{InitInfo, log};
use state::Shared;
use transcript::Transcript;
use turn::{Flow, Runner, RunnerOptions};

/// Runs fake-claude with `argv` (without the program name) and returns its exit code. It reads
/// stdin and writes stdout and stderr of the current process, and may install a SIGTERM
/// disposition (`!ignore-sigterm`), so call it only from a process that exists to be the agent.
pub fn main_with_args(argv: impl Iterator<Item = String>) -> ExitCode {
    match args::parse(argv) {
        Ok(Command::Help) => write_stdout(args::HELP),
        Ok(Command::Version) => write_stdout(&format!("{} (fake-claude)\n", args::VERSION)),
        Ok(Command::Run(opts)) => run(&opts),
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

fn run(opts: &Options) -> ExitCode {
    match start(opts) {
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

fn start(opts: &Options) -> Result<u8, Fatal> {
    if env_flag("FAKE_CLAUDE_FAIL_START") {
        return Err(Fatal("Error: simulated start failure".to_owned(), 2));
    }
    let choice = opts.validate().map_err(|e| Fatal(e.0, 1))?;
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

    let path_of = |id: &str| transcript::transcript_path(&config_dir, &project, id);
    let existing = |id: &str| -> Result<PathBuf, Fatal> {
        let path = path_of(id);
        if transcript::is_safe_id(id) && path.is_file() {
            Ok(path)
        } else {
            Err(Fatal(
                format!("No conversation found with session ID: {id}"),
                1,
            ))
        }
    };
    let unused = |id: String| -> Result<String, Fatal> {
        if path_of(&id).exists() {
            Err(Fatal(
                format!("Error: Session ID {id} is already in use."),
                1,
            ))
        } else {
            Ok(id)
        }
    };
    let (session_id, transcript) = match choice {
        SessionChoice::New => {
            let id = protocol::new_uuid();
            (id.clone(), Transcript::new(path_of(&id)))
        }
        SessionChoice::Fixed(id) => {
            let id = unused(id)?;
            (id.clone(), Transcript::new(path_of(&id)))
        }
        SessionChoice::Resume(id) => {
            let path = existing(&id)?;
            (id, Transcript::new(path))
        }
        SessionChoice::Fork { from, id } => {
            let seed = existing(&from)?;
            let id = unused(id.unwrap_or_else(protocol::new_uuid))?;
            (id.clone(), Transcript::forked_from(path_of(&id), seed))
        }
    };

    if let Some(ms) = std::env::var("FAKE_CLAUDE_START_DELAY_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }

    let tools = protocol::TOOLS
        .iter()
        .filter(|t| !opts.disallowed_tools.iter().any(|d| d == *t))
        .map(|t| (*t).to_owned())
        .collect();
    let runner_opts = RunnerOptions {
        init: InitInfo {
            session_id,
            cwd: cwd.to_string_lossy().into_owned(),
            tools,
            permission_mode: opts
                .permission_mode
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        },
        replay_user_messages: opts.replay_user_messages,
        include_partial_messages: opts.include_partial_messages,
    };

    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    input::spawn_reader(Arc::clone(&shared), tx)
        .map_err(|e| Fatal(format!("Error: cannot start the stdin reader: {e}"), 1))?;
    let mut runner = Runner::new(shared, runner_opts, transcript);
    // The reader drops its sender at stdin EOF; queued turns still run before we exit.
    for message in rx {
        if let Flow::Exit(code) = runner.run(&message) {
            std::process::exit(code);
        }
    }
    Ok(0)
}
