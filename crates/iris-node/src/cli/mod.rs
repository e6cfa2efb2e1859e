//! The command line: its arguments (clap), running one command line against a backend, what it
//! prints (human text or `--json`), finding the configuration, and resolving each team's agent
//! command.

pub mod args;
pub mod commands;
pub mod discovery;
pub mod output;
pub mod resolve;
