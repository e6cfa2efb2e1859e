//! The ssh launch of a remote team.
//!
//! ssh joins the words after the destination with spaces and hands the result to the remote
//! user's login shell, so the agent's command line is sent as one string in which every piece is
//! quoted with [`quote`]:
//!
//! ```text
//! ssh -T -o BatchMode=yes -o ServerAliveInterval=30 -o ServerAliveCountMax=3 \
//!     [-p PORT] [-i IDENTITY] [-o OPTION]… [EXTRA]… -- DESTINATION \
//!     "cd '<path>' && exec env -u CLAUDECODE '<K=V>'… '<program>' '<arg>'…"
//! ```
//!
//! The `--` ends ssh's option parsing, so nothing after it (the destination, the remote command)
//! is read as an ssh option; the destination is also refused if it begins with `-`. A program
//! written `~/…` keeps its `~/` unquoted so the remote shell expands it to the remote home; the
//! rest of it is quoted. The remote login shell must be POSIX (sh, bash, dash, zsh, ksh).

use std::collections::BTreeMap;

use iris_core::TeamName;
use iris_core::config::{RemoteConfig, TeamConfig};

use super::error::{ArgList, CommandError, Origin};
use super::{NESTED_ENV_VAR, SSH_BASE_ARGS};
use crate::quote::quote;

/// The ssh argv (without `ssh`) that runs `program args` with `env` in the team's remote path.
pub(super) fn ssh_argv(
    team_name: &TeamName,
    team: &TeamConfig,
    remote: &RemoteConfig,
    program: &str,
    agent_args: &[String],
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, CommandError> {
    validate_destination(team_name, &remote.destination)?;
    let path = match team.path.to_str() {
        Some(path) => path,
        None => {
            return Err(CommandError::NonUnicodePath {
                team: team_name.clone(),
                what: "the remote path",
                path: team.path.clone(),
            });
        }
    };
    if !path.starts_with('/') {
        return Err(CommandError::InvalidRemotePath {
            team: team_name.clone(),
            path: team.path.clone(),
            reason: "is not absolute; a remote team's path is on the remote host, so write it absolute, such as \"/home/me/project\"",
        });
    }
    if path.contains('\0') {
        return Err(CommandError::NulByte {
            team: team_name.clone(),
            what: "the remote path".to_owned(),
            origin: Origin::Config,
        });
    }

    let mut args: Vec<String> = SSH_BASE_ARGS.iter().map(|&a| a.to_owned()).collect();
    if let Some(port) = remote.port {
        if port == 0 {
            return Err(CommandError::InvalidRemotePort {
                team: team_name.clone(),
            });
        }
        args.push("-p".to_owned());
        args.push(port.to_string());
    }
    if let Some(identity) = &remote.identity {
        let text = identity
            .to_str()
            .ok_or_else(|| CommandError::NonUnicodePath {
                team: team_name.clone(),
                what: "`remote.identity`",
                path: identity.clone(),
            })?;
        if text.contains('\0') {
            return Err(CommandError::NulByte {
                team: team_name.clone(),
                what: "`remote.identity`".to_owned(),
                origin: Origin::Config,
            });
        }
        args.push("-i".to_owned());
        args.push(text.to_owned());
    }
    for option in &remote.options {
        let trimmed = option.trim();
        if trimmed.is_empty() || trimmed.starts_with('-') || option.contains(char::is_control) {
            return Err(CommandError::InvalidRemoteOption {
                team: team_name.clone(),
                option: option.clone(),
            });
        }
        args.push("-o".to_owned());
        args.push(option.clone());
    }
    for arg in &remote.extra_args {
        if arg.contains('\0') {
            return Err(CommandError::NulByte {
                team: team_name.clone(),
                what: format!("the argument {arg:?} in {}", ArgList::RemoteExtraArgs),
                origin: Origin::Config,
            });
        }
        if arg == "--" {
            return Err(CommandError::ArgumentTerminator {
                team: team_name.clone(),
                list: ArgList::RemoteExtraArgs,
            });
        }
        args.push(arg.clone());
    }
    args.push("--".to_owned());
    args.push(remote.destination.clone());
    args.push(remote_shell_command(path, program, agent_args, env));
    Ok(args)
}

/// Refuses a destination ssh could read as an option or as more than one word.
fn validate_destination(team_name: &TeamName, destination: &str) -> Result<(), CommandError> {
    let reason = if destination.is_empty() {
        Some("is empty")
    } else if destination.starts_with('-') {
        Some("begins with '-', so ssh could take it for an option")
    } else if destination.contains(|c: char| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CommandError::InvalidRemoteDestination {
            team: team_name.clone(),
            destination: destination.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `cd '<cwd>' && exec env -u CLAUDECODE '<K=V>'… '<program>' '<arg>'…`: every piece that comes
/// from the configuration or the caller is single-quoted.
pub(super) fn remote_shell_command(
    cwd: &str,
    program: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> String {
    let mut words = vec![
        "cd".to_owned(),
        quote(cwd),
        "&&".to_owned(),
        "exec".to_owned(),
        "env".to_owned(),
        "-u".to_owned(),
        NESTED_ENV_VAR.to_owned(),
    ];
    words.extend(env.iter().map(|(k, v)| quote(&format!("{k}={v}"))));
    words.push(quote_program(program));
    words.extend(args.iter().map(|a| quote(a)));
    words.join(" ")
}

/// Quotes the program, except that a leading `~/` stays bare so the remote shell expands it.
fn quote_program(program: &str) -> String {
    match program.strip_prefix("~/") {
        Some(rest) => format!("~/{}", quote(rest)),
        None => quote(program),
    }
}
