//! The `iris` binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    // The built-in demo agent: `iris fake-claude ARGS…` (see `resolve`).
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|first| first == "fake-claude") {
        return fake_claude::main_with_args(args.map(|a| a.to_string_lossy().into_owned()));
    }
    ExitCode::SUCCESS
}
