//! # iris-agent
//!
//! Drives an agent CLI (Claude Code by default) as a supervised child process:
//!
//! - [`command`]: builds the launch (argv, environment, working directory) from a team's
//!   configuration, for local teams and for remote teams over ssh, with every remote piece
//!   POSIX-quoted ([`quote`]).
//! - [`process`]: spawns the agent as the leader of its own process group (killed with the
//!   group on drop, and on parent death), keeps its stderr tail, watches its exit and stops it
//!   gracefully: close stdin, SIGTERM the group, SIGKILL the group.
//! - [`procfs`]: process facts from `/proc`, to tell a live agent from a zombie or a reused pid.
//! - [`reap`]: kills agent process groups a crashed run left behind, never a reused pid.
//! - [`codec`]: frames the CLI's stdout into lines and decodes the stream-json events.
//! - [`conversation`]: the `initialize` handshake, turns, interrupts, permission answers and the
//!   graceful stop, over one agent process.
#![deny(missing_docs)]

pub mod codec;
pub mod command;
pub mod conversation;
pub mod process;
pub mod procfs;
pub mod quote;
pub mod reap;
