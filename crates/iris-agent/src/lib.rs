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
//! - [`containment`]: holds everything an agent starts, `setsid` tools included: a cgroup v2
//!   per agent where one is writable, else a child subreaper and a sweep of its process tree.
//! - [`guardian`]: one forked helper per process that SIGKILLs every agent process group still
//!   owned when the process dies by any means (SIGKILL included), grandchildren and all.
//! - [`procfs`]: process facts from `/proc`, to tell a live agent from a zombie or a reused pid.
//! - [`reap`]: kills agent process groups a crashed run left behind, never a reused pid.
//! - [`codec`]: frames the CLI's stdout into lines and decodes the stream-json events.
//! - [`conversation`]: the `initialize` handshake, turns, interrupts, permission answers and the
//!   graceful stop, over one agent process.
//!
//! ```no_run
//! # async fn demo(config: iris_core::config::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use iris_agent::command::{build_launch, Conversation as Start, LaunchOptions};
//! use iris_agent::conversation::{ConfiguredPolicy, Conversation, ConversationOptions};
//! use iris_agent::process::StopGrace;
//! use iris_core::{SessionId, TeamName};
//!
//! let beta = TeamName::new("beta")?;
//! let team = config.team(&beta).ok_or("no team beta")?;
//! let agent = config.agent_for(&beta).ok_or("no team beta")?;
//! let launch = build_launch(&beta, team, &agent, &Start::New(SessionId::new_v4()), &LaunchOptions::default())?;
//! let policy = Arc::new(ConfiguredPolicy::new(team.grant_permission, vec![], vec![]));
//! let mut conversation =
//!     Conversation::start(launch.to_command(), policy, ConversationOptions::default()).await?;
//! let report = conversation.turn("hello", None, Duration::from_secs(120)).await?;
//! println!("{} (cost ${:?})", report.text, report.result.total_cost_usd);
//! conversation.stop(StopGrace::default()).await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod codec;
pub mod command;
pub mod containment;
pub mod conversation;
pub mod guardian;
pub mod process;
pub mod procfs;
pub mod quote;
pub mod reap;
