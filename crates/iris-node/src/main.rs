//! The `iris` binary.
//!
//! `main` does what must happen before any thread exists (the demo-agent multicall, the
//! guardian fork), parses the command line, sets up logging on stderr and a tokio runtime, and
//! dispatches. Every command that talks to the runtime goes through a [`Backend`](iris_node::backend::Backend): the node that
//! holds the database if one runs, else an embedded runtime that lives for this one command.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use iris_api::ApiError;
use iris_api::error::{INTERNAL_ERROR, USAGE_ERROR};
use iris_node::cli::args::{Cli, Command, GlobalArgs, LogFormat};
use iris_node::cli::commands::{fail, run};
use iris_node::cli::output::Output;

fn main() -> ExitCode {
    // The built-in demo agent: `iris fake-claude ARGS…` (see `resolve`). It must not fork a
    // guardian or parse iris's command line.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|first| first == "fake-claude") {
        return fake_claude::main_with_args(args.map(|a| a.to_string_lossy().into_owned()));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    if needs_runtime(&cli.command) {
        // The guardian is forked from this process: do it now, while it is small and has one
        // thread, before tokio starts any.
        iris_agent::guardian::start();
    }
    let output = Output::new(cli.global.json);
    if let Err(error) = init_tracing(&cli.global) {
        return fail(&output, &error);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let error = ApiError::new(INTERNAL_ERROR, format!("cannot start tokio: {e}"));
            return fail(&output, &error);
        }
    };
    let result = runtime.block_on(run(cli, output));
    // Whatever is left (a blocked stdin reader of `iris mcp`, a lingering timer) must not hold
    // the exit: the backend has been closed by now.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(error) => fail(&output, &error),
    }
}

/// Commands that may start agents (and so want the guardian).
fn needs_runtime(command: &Command) -> bool {
    !matches!(
        command,
        Command::Version | Command::Config(_) | Command::Cluster(_) | Command::Dashboard { .. }
    )
}

/// A command line clap rejected: its own message and exit code (2), plus the JSON error under
/// `--json`. Help and version requests print as usual and succeed.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = u8::try_from(error.exit_code()).unwrap_or(2);
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    if !informational && json_requested() {
        let text = error.to_string();
        // clap's closing pointer to --help means nothing to a script.
        let text = text
            .split("\n\nFor more information")
            .next()
            .unwrap_or(&text);
        let message = text.trim().trim_start_matches("error: ");
        Output::new(true).error(&ApiError::new(USAGE_ERROR, message));
        return ExitCode::from(code);
    }
    let _ = error.print();
    ExitCode::from(code)
}

/// Whether `--json` is among the options (best effort, for errors clap found before parsing
/// finished).
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

/// Logs go to stderr: `--log-level`, else `RUST_LOG`, else warnings only.
fn init_tracing(global: &GlobalArgs) -> Result<(), ApiError> {
    use tracing_subscriber::EnvFilter;
    let filter = match &global.log_level {
        Some(level) => EnvFilter::try_new(level).map_err(|e| {
            ApiError::new(
                USAGE_ERROR,
                format!(
                    "invalid --log-level {level:?}: {e}; use error, warn, info, debug, trace, or a filter such as iris_runtime=debug"
                ),
            )
        })?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Only fails if a subscriber is already set, which nothing here does.
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
