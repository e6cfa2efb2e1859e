//! Building the agent's launch: program, argv, environment and working directory.
//!
//! [`build_launch`] turns a team's configuration and the conversation to open into a [`Launch`].
//! Nothing here goes through a shell locally: [`Launch::to_command`] passes the argv as is. For a
//! remote team the program is `ssh`, and the agent's command line becomes one string for the
//! remote shell in which every piece is POSIX-quoted ([`crate::quote`]).
//!
//! The agent's argv, in order:
//!
//! 1. the agent command's own `args`;
//! 2. `--print --output-format stream-json --verbose --input-format stream-json`, and
//!    `--include-partial-messages` (so text streams to callers as it is written);
//! 3. `--session-id=<uuid>` for a new conversation or `--resume=<id>` for an existing one (always
//!    the `=` form, so the value can never pass for a flag);
//! 4. `--permission-prompt-tool=stdio` unless the team's `grant_permission` is `no` (iris answers
//!    the agent's `can_use_tool` control requests on stdio);
//! 5. `--allowedTools=<a>,<b>` and `--disallowedTools=<a>,<b>` for non-empty lists, each rule
//!    checked by [`validate_tool_rule`];
//! 6. `--append-system-prompt=<text>` when set, `--mcp-config=<x>` for the team's `mcp_config`
//!    and again for [`LaunchOptions::mcp_config`];
//! 7. `--max-budget-usd=<amount>` for [`LaunchOptions::max_budget_usd`] (the CLI ends a turn
//!    with `error_max_budget_usd` once the process has spent that much);
//! 8. [`LaunchOptions::extra_args`].
//!
//! Neither the agent's `args` nor the extra arguments may set the flags iris controls
//! ([`RESERVED_FLAGS`]).
//!
//! The agent inherits iris's environment without `CLAUDECODE` (so it does not think it is nested
//! in another Claude Code), plus the agent command's `env`, plus `CLAUDE_CODE_ENTRYPOINT=iris`.

mod error;
mod remote;
mod tools;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use iris_core::config::{AgentConfig, GrantPermission, TeamConfig};
use iris_core::{SessionId, TeamName};

use crate::quote::quote_for_display;

use iris_core::redact::redact_arg;
pub use iris_core::redact::redact_env_value;

pub use error::{ArgList, CommandError, Origin};
pub use tools::{ToolRuleError, validate_tool_rule};

/// The flags that make the CLI a headless stream-json peer; every launch carries them.
pub const STREAM_JSON_ARGS: [&str; 6] = [
    "--print",
    "--output-format",
    "stream-json",
    "--verbose",
    "--input-format",
    "stream-json",
];

/// Makes the CLI print `stream_event` lines (raw API deltas) while the model streams; without
/// it the CLI is silent until a whole message is done, so callers would see no partial text.
pub const PARTIAL_MESSAGES_ARG: &str = "--include-partial-messages";

/// The variable Claude Code sets in the processes it runs; removed so the agent does not think it
/// is nested inside another Claude Code.
pub const NESTED_ENV_VAR: &str = "CLAUDECODE";

/// The variable that tells the agent who launched it.
pub const ENTRYPOINT_ENV_VAR: &str = "CLAUDE_CODE_ENTRYPOINT";

/// The value of [`ENTRYPOINT_ENV_VAR`] iris sets.
pub const ENTRYPOINT: &str = "iris";

/// The flags iris sets (or deliberately never sets) itself. An argument equal to one of these, or
/// a long one followed by `=value`, or a short-option cluster containing `p`, `c` or `r`, is
/// refused in the agent's `args` and in [`LaunchOptions::extra_args`].
pub const RESERVED_FLAGS: [&str; 10] = [
    "--print",
    "-p",
    "--output-format",
    "--input-format",
    "--session-id",
    "--resume",
    "-r",
    "--continue",
    "-c",
    "--permission-prompt-tool",
];

/// The ssh options iris always passes, before the team's own.
const SSH_BASE_ARGS: [&str; 7] = [
    "-T",
    "-o",
    "BatchMode=yes",
    "-o",
    "ServerAliveInterval=30",
    "-o",
    "ServerAliveCountMax=3",
];

/// Which conversation the agent opens. The caller decides from whether the transcript exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// A new conversation with this id (`--session-id=<uuid>`); the transcript must not exist.
    New(SessionId),
    /// An existing conversation (`--resume=<id>`). A string, because the agent may report a
    /// forked id; checked by [`validate_resume_id`] when the launch is built.
    Resume(String),
}

/// Checks a conversation id before it is passed as `--resume=<id>`: it must be non-empty, and
/// have no whitespace, control character or path separator, and not begin with `-`.
pub fn validate_resume_id(id: &str) -> Result<(), CommandError> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.starts_with('-') {
        Some("it begins with '-', so it could pass for a flag")
    } else if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace or a control character")
    } else if id.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CommandError::InvalidResumeId {
            id: id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// What the caller adds to a launch beyond the team's configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchOptions {
    /// Passed as `--mcp-config=<value>`: a file path or inline JSON.
    pub mcp_config: Option<String>,
    /// Passed as `--max-budget-usd=<amount>`: what the process may spend in all (the remaining
    /// budget of the tightest cap that covers the pair). Nothing left (or a value that is not a
    /// number) passes the smallest amount, never none.
    pub max_budget_usd: Option<f64>,
    /// Appended after every argument iris adds. Must not set [`RESERVED_FLAGS`].
    pub extra_args: Vec<String>,
}

/// A fully built launch of one agent process: what to execute, with which arguments, where, and
/// with which environment changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    program: String,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    env_remove: Vec<String>,
    env_set: BTreeMap<String, String>,
    remote: bool,
    /// `args` as shown and stored: secrets redacted (for a remote launch, the remote command
    /// was built from redacted environment values and arguments).
    shown_args: Vec<String>,
}

impl Launch {
    /// The executable: the agent command for a local team, `ssh` for a remote one.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments, without the program.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The working directory: the team's path for a local team, `None` for a remote one (the
    /// remote command changes directory itself).
    pub fn cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// Variables removed from the inherited environment (applied before [`Launch::env_set`]).
    pub fn env_remove(&self) -> &[String] {
        &self.env_remove
    }

    /// Variables set on top of the inherited environment. Empty for a remote team, whose
    /// variables are set by the remote command.
    pub fn env_set(&self) -> &BTreeMap<String, String> {
        &self.env_set
    }

    /// Whether this launch runs the agent on another machine over ssh.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// For a remote launch, the command line the remote shell runs (the last ssh argument):
    /// `cd '<path>' && exec env -u CLAUDECODE '<K=V>'… '<program>' '<arg>'…`.
    pub fn remote_command(&self) -> Option<&str> {
        if self.remote {
            self.args.last().map(String::as_str)
        } else {
            None
        }
    }

    /// The process to spawn: argv only, no shell. Sets the working directory and the environment
    /// changes; stdio, process group and the rest are left to the caller.
    pub fn to_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command.args(&self.args);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        for name in &self.env_remove {
            command.env_remove(name);
        }
        command.envs(&self.env_set);
        command
    }

    /// The launch as one line a person can read, and paste into a POSIX shell once the hidden
    /// values are filled in: `cd <dir> && env -u CLAUDECODE K=<redacted> … <program> <arg>…`,
    /// each word quoted only if needed. Recorded as the session's `launch_command`.
    ///
    /// It never includes the values of the agent's `env` (only their names) nor the secrets an
    /// argument seems to carry (URL passwords, tokens: see [`iris_core::redact`]): it is stored
    /// in the session database and shown by `iris sessions show`.
    pub fn display(&self) -> String {
        let mut words = Vec::new();
        if let Some(cwd) = &self.cwd {
            words.push("cd".to_owned());
            words.push(quote_for_display(&cwd.to_string_lossy()));
            words.push("&&".to_owned());
        }
        if !self.env_remove.is_empty() || !self.env_set.is_empty() {
            words.push("env".to_owned());
            for name in &self.env_remove {
                words.push("-u".to_owned());
                words.push(quote_for_display(name));
            }
            for (name, value) in &self.env_set {
                words.push(quote_for_display(&format!(
                    "{name}={}",
                    redact_env_value(name, value)
                )));
            }
        }
        words.push(quote_for_display(&self.program));
        words.extend(self.shown_args.iter().map(|a| quote_for_display(a)));
        words.join(" ")
    }
}

/// Builds the launch of `team`'s agent for `conversation`.
///
/// `agent` is the effective agent command for the team (`[agent]` with the team's override, as
/// [`Config::agent_for`](iris_core::config::Config::agent_for) gives it).
pub fn build_launch(
    team_name: &TeamName,
    team: &TeamConfig,
    agent: &AgentConfig,
    conversation: &Conversation,
    options: &LaunchOptions,
) -> Result<Launch, CommandError> {
    validate_program(team_name, &agent.command, team.is_remote())?;
    let args = agent_argv(team_name, team, agent, conversation, options)?;
    let env = agent_env(team_name, agent)?;
    match &team.remote {
        None => Ok(Launch {
            program: agent.command.clone(),
            shown_args: shown(&args),
            args,
            cwd: Some(team.path.clone()),
            env_remove: vec![NESTED_ENV_VAR.to_owned()],
            env_set: env,
            remote: false,
        }),
        Some(_) => build_remote_command(team_name, team, &agent.command, &args, &env),
    }
}

/// A command run on a remote team's host, in the team's directory, over the team's ssh
/// settings: `ssh … -- <destination> "cd '<path>' && exec env -u CLAUDECODE '<K=V>'… '<program>'
/// '<arg>'…"`, every piece quoted. The agent's launch uses it; so does maintenance such as
/// removing a transcript.
pub fn build_remote_command(
    team_name: &TeamName,
    team: &TeamConfig,
    program: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Result<Launch, CommandError> {
    let Some(remote) = &team.remote else {
        return Err(CommandError::NotRemote {
            team: team_name.clone(),
        });
    };
    validate_program(team_name, program, true)?;
    let ssh_args = remote::ssh_argv(team_name, team, remote, program, args, env)?;
    // The same command built from what may be shown: no environment value, no secret in an
    // argument (the remote command carries both inside one quoted string).
    let shown_env: BTreeMap<String, String> = env
        .iter()
        .map(|(name, value)| (name.clone(), redact_env_value(name, value).to_owned()))
        .collect();
    let shown_ssh_args =
        remote::ssh_argv(team_name, team, remote, program, &shown(args), &shown_env)?;
    Ok(Launch {
        program: "ssh".to_owned(),
        shown_args: shown(&shown_ssh_args),
        args: ssh_args,
        cwd: None,
        env_remove: vec![NESTED_ENV_VAR.to_owned()],
        env_set: BTreeMap::new(),
        remote: true,
    })
}

/// Arguments as they may be shown: each with its secrets redacted ([`redact_arg`]).
fn shown(args: &[String]) -> Vec<String> {
    args.iter().map(|a| redact_arg(a).into_owned()).collect()
}

/// The effective configuration a team's agent is launched with, as pretty JSON: the team's
/// settings with `name` added and `agent` replaced by the effective agent command. Recorded as
/// the session's `team_config_snapshot`.
///
/// Secrets are redacted ([`iris_core::redact::redact_json`]): the agent's `env` keeps its names
/// but not its values, an inline MCP configuration loses its servers' `env` and `headers`
/// values, and URL passwords and tokens anywhere are hidden.
pub fn team_config_snapshot(
    team_name: &TeamName,
    team: &TeamConfig,
    agent: &AgentConfig,
) -> String {
    let mut snapshot = match serde_json::to_value(team) {
        Ok(serde_json::Value::Object(map)) => map,
        // Only a path that is not UTF-8 makes serialization fail; keep what can be kept.
        Ok(_) | Err(_) => {
            let mut map = serde_json::Map::new();
            map.insert(
                "path".to_owned(),
                serde_json::Value::String(team.path.to_string_lossy().into_owned()),
            );
            map
        }
    };
    snapshot.insert(
        "name".to_owned(),
        serde_json::Value::String(team_name.as_str().to_owned()),
    );
    let agent = serde_json::to_value(agent).unwrap_or(serde_json::Value::Null);
    snapshot.insert("agent".to_owned(), agent);
    let mut snapshot = serde_json::Value::Object(snapshot);
    iris_core::redact::redact_json(&mut snapshot);
    serde_json::to_string_pretty(&snapshot).unwrap_or_default()
}

/// The agent's argv (without the program), validated.
fn agent_argv(
    team_name: &TeamName,
    team: &TeamConfig,
    agent: &AgentConfig,
    conversation: &Conversation,
    options: &LaunchOptions,
) -> Result<Vec<String>, CommandError> {
    check_arg_list(team_name, &agent.args, ArgList::AgentArgs)?;
    check_arg_list(team_name, &options.extra_args, ArgList::ExtraArgs)?;

    let mut args = agent.args.clone();
    args.extend(STREAM_JSON_ARGS.map(str::to_owned));
    if !args.iter().any(|a| a == PARTIAL_MESSAGES_ARG) {
        args.push(PARTIAL_MESSAGES_ARG.to_owned());
    }
    args.push(match conversation {
        Conversation::New(id) => format!("--session-id={id}"),
        Conversation::Resume(id) => {
            validate_resume_id(id)?;
            format!("--resume={id}")
        }
    });
    match team.grant_permission {
        GrantPermission::Yes | GrantPermission::Ask | GrantPermission::Forward => {
            args.push("--permission-prompt-tool=stdio".to_owned());
        }
        GrantPermission::No => {}
    }
    for (flag, list, rules) in [
        ("--allowedTools", "allowed_tools", &team.allowed_tools),
        (
            "--disallowedTools",
            "disallowed_tools",
            &team.disallowed_tools,
        ),
    ] {
        if rules.is_empty() {
            continue;
        }
        for rule in rules {
            validate_tool_rule(rule).map_err(|reason| CommandError::InvalidToolRule {
                team: team_name.clone(),
                list,
                rule: rule.clone(),
                reason,
            })?;
        }
        args.push(format!("{flag}={}", rules.join(",")));
    }
    if let Some(prompt) = &team.append_system_prompt {
        no_nul(team_name, prompt, "`append_system_prompt`", Origin::Config)?;
        args.push(format!("--append-system-prompt={prompt}"));
    }
    if let Some(mcp_config) = &team.mcp_config {
        let value = mcp_config.as_arg();
        no_nul(team_name, &value, "`mcp_config`", Origin::Config)?;
        args.push(format!("--mcp-config={value}"));
    }
    if let Some(mcp_config) = &options.mcp_config {
        if mcp_config.is_empty() {
            return Err(CommandError::EmptyValue {
                team: team_name.clone(),
                what: "the MCP configuration",
                fix: "give a file path or inline JSON, or none",
                origin: Origin::Caller,
            });
        }
        no_nul(
            team_name,
            mcp_config,
            "the MCP configuration",
            Origin::Caller,
        )?;
        args.push(format!("--mcp-config={mcp_config}"));
    }
    if let Some(usd) = options.max_budget_usd {
        args.push(format!("--max-budget-usd={}", budget_arg(usd)));
    }
    args.extend(options.extra_args.iter().cloned());
    Ok(args)
}

/// A dollar amount as the CLI reads it: to the micro-dollar, rounded down so the process is never
/// given more than was left, and never below one micro-dollar (zero would read as "no limit").
fn budget_arg(usd: f64) -> String {
    let micros = if usd.is_nan() {
        1.0
    } else {
        (usd * 1e6).floor().clamp(1.0, 1e15)
    };
    format!("{:.6}", micros / 1e6)
}

/// Refuses reserved flags, a bare `--` and NUL bytes in a list of arguments.
fn check_arg_list(
    team_name: &TeamName,
    args: &[String],
    list: ArgList,
) -> Result<(), CommandError> {
    for arg in args {
        if arg.contains('\0') {
            return Err(CommandError::NulByte {
                team: team_name.clone(),
                what: format!("the argument {arg:?} in {list}"),
                origin: list.origin(),
            });
        }
        if arg == "--" {
            return Err(CommandError::ArgumentTerminator {
                team: team_name.clone(),
                list,
            });
        }
        if is_reserved_flag(arg) {
            return Err(CommandError::ReservedFlag {
                team: team_name.clone(),
                flag: arg.clone(),
                list,
            });
        }
    }
    Ok(())
}

/// Whether `arg` sets one of [`RESERVED_FLAGS`]: a long flag exactly or with `=value`, or a
/// short-option cluster (`-p`, `-pv`, `-rID`, `-r=ID`) that contains `p`, `c` or `r`, since the
/// agent's parser reads clusters and attached values.
fn is_reserved_flag(arg: &str) -> bool {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split_once('=').map_or(long, |(name, _)| name);
        return RESERVED_FLAGS
            .iter()
            .filter_map(|flag| flag.strip_prefix("--"))
            .any(|flag| flag == name);
    }
    match arg.strip_prefix('-') {
        Some(cluster) => cluster.contains(['p', 'c', 'r']),
        None => false,
    }
}

/// Checks the agent executable.
fn validate_program(team_name: &TeamName, program: &str, remote: bool) -> Result<(), CommandError> {
    let invalid = |reason| CommandError::InvalidAgentCommand {
        team: team_name.clone(),
        command: program.to_owned(),
        reason,
    };
    if program.is_empty() {
        return Err(invalid(
            "is empty; set `command` to the agent executable, such as \"claude\"",
        ));
    }
    if program.contains('\0') {
        return Err(invalid("contains a NUL character; remove it"));
    }
    if program.starts_with('-') {
        return Err(invalid(
            "begins with '-'; write the executable's name or path, such as \"claude\" or \"/usr/local/bin/claude\"",
        ));
    }
    if program.contains('=') {
        return Err(invalid(
            "contains '=', so `env` would take it for a variable; rename or link the executable",
        ));
    }
    if !remote && program.starts_with('~') {
        return Err(invalid(
            "begins with '~', which iris does not expand for a local team; write an absolute path or use \"${HOME}/…\"",
        ));
    }
    Ok(())
}

/// The agent's environment additions: its `env`, then `CLAUDE_CODE_ENTRYPOINT=iris`, which wins.
fn agent_env(
    team_name: &TeamName,
    agent: &AgentConfig,
) -> Result<BTreeMap<String, String>, CommandError> {
    for (name, value) in &agent.env {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.contains('=') {
            Some("it contains '='")
        } else if name.contains('\0') {
            Some("it contains a NUL character")
        } else if name.starts_with('-') {
            Some("it begins with '-', so `env` would take it for an option")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(CommandError::InvalidEnvName {
                team: team_name.clone(),
                name: name.clone(),
                reason,
            });
        }
        no_nul(
            team_name,
            value,
            &format!("the value of {name:?} in the agent's `env`"),
            Origin::Config,
        )?;
    }
    let mut env = agent.env.clone();
    env.insert(ENTRYPOINT_ENV_VAR.to_owned(), ENTRYPOINT.to_owned());
    Ok(env)
}

fn no_nul(
    team_name: &TeamName,
    value: &str,
    what: &str,
    origin: Origin,
) -> Result<(), CommandError> {
    if value.contains('\0') {
        return Err(CommandError::NulByte {
            team: team_name.clone(),
            what: what.to_owned(),
            origin,
        });
    }
    Ok(())
}
