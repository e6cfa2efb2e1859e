//! Why a launch could not be built.

use std::fmt;
use std::path::PathBuf;

use iris_core::{Coded, ErrorCode, TeamName};

use super::tools::ToolRuleError;

/// Where a rejected value came from: the configuration file, or the caller of
/// [`build_launch`](super::build_launch). Decides the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The team's configuration (`[agent]`, `[teams.NAME]`): a [`ErrorCode::ConfigError`].
    Config,
    /// The [`LaunchOptions`](super::LaunchOptions) or the [`Conversation`](super::Conversation)
    /// given by the caller: a [`ErrorCode::ValidationError`].
    Caller,
}

impl Origin {
    fn code(self) -> ErrorCode {
        match self {
            Origin::Config => ErrorCode::ConfigError,
            Origin::Caller => ErrorCode::ValidationError,
        }
    }
}

/// A list of arguments that is copied into a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgList {
    /// The agent command's `args` (`[agent]` or `[teams.NAME.agent]`).
    AgentArgs,
    /// [`LaunchOptions::extra_args`](super::LaunchOptions::extra_args).
    ExtraArgs,
    /// `[teams.NAME.remote] extra_args`, the ssh arguments.
    RemoteExtraArgs,
}

impl ArgList {
    /// Whether the list comes from the configuration or from the caller.
    pub fn origin(self) -> Origin {
        match self {
            ArgList::AgentArgs | ArgList::RemoteExtraArgs => Origin::Config,
            ArgList::ExtraArgs => Origin::Caller,
        }
    }
}

impl fmt::Display for ArgList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArgList::AgentArgs => "the agent command's `args`",
            ArgList::ExtraArgs => "the extra launch arguments",
            ArgList::RemoteExtraArgs => "`remote.extra_args`",
        })
    }
}

/// Why [`build_launch`](super::build_launch) refused a team's launch. Every message names the
/// team and the offending value, and says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A tool rule in `allowed_tools` or `disallowed_tools` would not reach the agent as one rule.
    #[error(
        "team {team}: {list} entry {rule:?} is not a valid tool rule: {reason}; write one rule per entry, such as \"Read\", \"Bash(git:*)\" or \"mcp__server__tool\""
    )]
    InvalidToolRule {
        /// The team.
        team: TeamName,
        /// `allowed_tools` or `disallowed_tools`.
        list: &'static str,
        /// The rejected rule.
        rule: String,
        /// What is wrong with it.
        reason: ToolRuleError,
    },
    /// An argument sets one of the flags iris controls.
    #[error(
        "team {team}: {flag:?} in {list} is not allowed: iris sets --print, --output-format, --input-format, --session-id/--resume and --permission-prompt-tool itself, and never uses -c/--continue; remove it (if it is the value of another flag, attach it with `=`, as in --flag=value)"
    )]
    ReservedFlag {
        /// The team.
        team: TeamName,
        /// The offending argument, as written.
        flag: String,
        /// Where it was found.
        list: ArgList,
    },
    /// A bare `--` would end option parsing early.
    #[error(
        "team {team}: {list} contains a bare \"--\", which would make every argument iris adds after it a positional one; remove it"
    )]
    ArgumentTerminator {
        /// The team.
        team: TeamName,
        /// Where it was found.
        list: ArgList,
    },
    /// The conversation id to resume could pass for something else on the command line.
    #[error(
        "cannot resume conversation {id:?}: {reason}; resume with the session id the agent reported (a UUID)"
    )]
    InvalidResumeId {
        /// The rejected id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The agent executable cannot be run as written.
    #[error("team {team}: agent command {command:?} {reason}")]
    InvalidAgentCommand {
        /// The team.
        team: TeamName,
        /// The rejected command.
        command: String,
        /// What is wrong with it and what to write instead.
        reason: &'static str,
    },
    /// An environment variable name that `env` or the process environment cannot take.
    #[error(
        "team {team}: {name:?} in the agent's `env` is not a usable environment variable name: {reason}; use letters, digits and '_'"
    )]
    InvalidEnvName {
        /// The team.
        team: TeamName,
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value contains a NUL byte, which no process argument or environment value can carry.
    #[error(
        "team {team}: {what} contains a NUL character, which no process argument or environment variable can carry; remove it"
    )]
    NulByte {
        /// The team.
        team: TeamName,
        /// Which value, such as "`append_system_prompt`".
        what: String,
        /// Where the value came from.
        origin: Origin,
    },
    /// A value that must not be empty is.
    #[error("team {team}: {what} is empty; {fix}")]
    EmptyValue {
        /// The team.
        team: TeamName,
        /// Which value.
        what: &'static str,
        /// What to do.
        fix: &'static str,
        /// Where the value came from.
        origin: Origin,
    },
    /// The ssh destination could be read as something other than one host.
    #[error(
        "team {team}: remote destination {destination:?} {reason}; write one host such as \"user@host\" (put ssh flags in `remote.extra_args` or `remote.options`)"
    )]
    InvalidRemoteDestination {
        /// The team.
        team: TeamName,
        /// The rejected destination.
        destination: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An ssh `-o` option is not of the form `Name=value`.
    #[error(
        "team {team}: {option:?} in `remote.options` is not an ssh option; write each as \"Name=value\", such as \"ProxyJump=bastion\" (iris adds the -o)"
    )]
    InvalidRemoteOption {
        /// The team.
        team: TeamName,
        /// The rejected option.
        option: String,
    },
    /// The ssh port is 0.
    #[error("team {team}: remote port 0 is not a port; remove `remote.port` to use ssh's default")]
    InvalidRemotePort {
        /// The team.
        team: TeamName,
    },
    /// A remote command was asked for a team that is not remote.
    #[error("team {team} is not a remote team; run the command locally")]
    NotRemote {
        /// The team.
        team: TeamName,
    },
    /// A remote team's path cannot be sent to the remote shell.
    #[error("team {team}: the remote path {path:?} {reason}")]
    InvalidRemotePath {
        /// The team.
        team: TeamName,
        /// The rejected path.
        path: PathBuf,
        /// What is wrong with it and what to write instead.
        reason: &'static str,
    },
    /// A path that must be passed as text is not valid UTF-8.
    #[error(
        "team {team}: {what} {path:?} is not valid UTF-8, so it cannot be passed to ssh; rename it or move it to a UTF-8 path"
    )]
    NonUnicodePath {
        /// The team.
        team: TeamName,
        /// Which path, such as "`remote.identity`".
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
}

impl Coded for CommandError {
    fn code(&self) -> ErrorCode {
        match self {
            CommandError::InvalidResumeId { .. } | CommandError::NotRemote { .. } => {
                ErrorCode::ValidationError
            }
            CommandError::ReservedFlag { list, .. }
            | CommandError::ArgumentTerminator { list, .. } => list.origin().code(),
            CommandError::NulByte { origin, .. } | CommandError::EmptyValue { origin, .. } => {
                origin.code()
            }
            CommandError::InvalidToolRule { .. }
            | CommandError::InvalidAgentCommand { .. }
            | CommandError::InvalidEnvName { .. }
            | CommandError::InvalidRemoteDestination { .. }
            | CommandError::InvalidRemoteOption { .. }
            | CommandError::InvalidRemotePort { .. }
            | CommandError::InvalidRemotePath { .. }
            | CommandError::NonUnicodePath { .. } => ErrorCode::ConfigError,
        }
    }
}
