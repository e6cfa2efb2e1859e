//! The stand-alone `fake-claude` executable (see the library for what it does).

fn main() -> std::process::ExitCode {
    let argv = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    fake_claude::main_with_args(argv)
}
