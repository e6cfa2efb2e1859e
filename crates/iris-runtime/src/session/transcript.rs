//! Where a session's transcript is, and removing it (locally, or over ssh for a remote team).

use std::path::PathBuf;
use std::time::Duration;

use iris_agent::command;
use iris_core::config::AgentConfig;
use iris_core::transcript::TranscriptLocator;
use iris_core::{Pair, SessionRecord};

use crate::shared::Shared;

/// What happened to a deleted session's transcript.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TranscriptRemoval {
    /// Removal was not asked for.
    NotRequested,
    /// The file was removed.
    Removed(PathBuf),
    /// There was no transcript to remove.
    NotFound,
    /// Removal failed; the file may still exist.
    Failed {
        /// The file, when known.
        path: Option<PathBuf>,
        /// Why.
        reason: String,
    },
}

/// Removes the transcript of `record` where the agent keeps it.
pub(crate) async fn remove_transcript(
    shared: &Shared,
    pair: &Pair,
    record: &SessionRecord,
) -> TranscriptRemoval {
    let config = &shared.config;
    let (Some(team), Some(agent)) = (config.team(&pair.to), config.agent_for(&pair.to)) else {
        return TranscriptRemoval::Failed {
            path: None,
            reason: format!("team {} is no longer configured", pair.to),
        };
    };
    if team.is_remote() {
        return match remote_removal(&pair.to, team, &agent, &record.session_id) {
            Ok((launch, shown)) => run_remote_removal(launch.to_command(), shown).await,
            Err(e) => TranscriptRemoval::Failed {
                path: None,
                reason: e.to_string(),
            },
        };
    }
    let Some(locator) = transcript_locator(&agent) else {
        return TranscriptRemoval::Failed {
            path: None,
            reason:
                "neither CLAUDE_CONFIG_DIR nor HOME is set, so the transcript cannot be located"
                    .into(),
        };
    };
    let project = match tokio::fs::canonicalize(&team.path).await {
        Ok(path) => path,
        Err(_) => team.path.clone(),
    };
    let id = record.session_id;
    let found = tokio::task::spawn_blocking(move || locator.find_transcript(&project, &id))
        .await
        .ok()
        .flatten();
    let Some(path) = found else {
        return TranscriptRemoval::NotFound;
    };
    match tokio::fs::remove_file(&path).await {
        Ok(()) => TranscriptRemoval::Removed(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TranscriptRemoval::NotFound,
        Err(e) => TranscriptRemoval::Failed {
            path: Some(path),
            reason: e.to_string(),
        },
    }
}

/// Where the agent keeps transcripts: its own `CLAUDE_CONFIG_DIR` if the team sets one, else
/// ours.
pub(crate) fn transcript_locator(agent: &AgentConfig) -> Option<TranscriptLocator> {
    match agent.env.get("CLAUDE_CONFIG_DIR") {
        Some(dir) => Some(TranscriptLocator::new(dir)),
        None => TranscriptLocator::from_env().ok(),
    }
}

/// Exit status the remote removal script uses for "no such transcript".
const REMOTE_NOT_FOUND: i32 = 3;

/// The ssh command that removes a remote team's transcript, and the path as shown to humans.
///
/// The transcript lives under the remote user's `$CLAUDE_CONFIG_DIR` (the team's agent env may
/// set it) or `~/.claude`, so a remote `sh -c` script resolves it. The only pieces interpolated
/// into the script are the sanitized directory name (`[A-Za-z0-9-]` only) and the session id (a
/// UUID), so nothing in it can be read as shell syntax.
pub(crate) fn remote_removal(
    team_name: &iris_core::TeamName,
    team: &iris_core::config::TeamConfig,
    agent: &AgentConfig,
    id: &iris_core::SessionId,
) -> Result<(iris_agent::command::Launch, String), iris_agent::command::CommandError> {
    let sanitized = iris_core::transcript::sanitize_project_path(&team.path.to_string_lossy());
    let relative = format!("projects/{sanitized}/{id}.jsonl");
    let script = format!(
        "f=\"${{CLAUDE_CONFIG_DIR:-$HOME/.claude}}/{relative}\"; \
         if [ -e \"$f\" ]; then rm -f -- \"$f\"; else exit {REMOTE_NOT_FOUND}; fi"
    );
    let env: std::collections::BTreeMap<String, String> = agent
        .env
        .get("CLAUDE_CONFIG_DIR")
        .map(|dir| ("CLAUDE_CONFIG_DIR".to_owned(), dir.clone()))
        .into_iter()
        .collect();
    let launch =
        command::build_remote_command(team_name, team, "sh", &["-c".to_owned(), script], &env)?;
    let destination = team.remote.as_ref().map_or("", |r| r.destination.as_str());
    let root = env
        .get("CLAUDE_CONFIG_DIR")
        .map_or("~/.claude", String::as_str);
    Ok((launch, format!("{destination}:{root}/{relative}")))
}

/// Runs a remote removal with a time limit and reads its outcome from the exit status.
async fn run_remote_removal(
    mut command: tokio::process::Command,
    shown: String,
) -> TranscriptRemoval {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let path = Some(PathBuf::from(&shown));
    match tokio::time::timeout(REMOTE_REMOVAL_TIMEOUT, command.output()).await {
        Ok(Ok(output)) if output.status.success() => {
            TranscriptRemoval::Removed(PathBuf::from(shown))
        }
        Ok(Ok(output)) if output.status.code() == Some(REMOTE_NOT_FOUND) => {
            TranscriptRemoval::NotFound
        }
        Ok(Ok(output)) => TranscriptRemoval::Failed {
            path,
            reason: format!(
                "ssh {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        },
        Ok(Err(e)) => TranscriptRemoval::Failed {
            path,
            reason: format!("could not run ssh: {e}"),
        },
        Err(_) => TranscriptRemoval::Failed {
            path,
            reason: format!("ssh did not finish within {REMOTE_REMOVAL_TIMEOUT:?}"),
        },
    }
}

/// How long removing a remote transcript may take.
const REMOTE_REMOVAL_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests;
