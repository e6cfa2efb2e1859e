//! # iris-agent
//!
//! Drives an agent CLI (Claude Code by default) as a supervised child process:
//!
//! - [`command`]: builds the launch (argv, environment, working directory) from a team's
//!   configuration, for local teams and for remote teams over ssh, with every remote piece
//!   POSIX-quoted ([`quote`]).
//! - [`codec`]: frames the CLI's stdout into lines and decodes the stream-json events.
#![deny(missing_docs)]

pub mod codec;
pub mod command;
pub mod quote;
