//! Where a session's transcript is, and removing it (locally, or over ssh for a remote team).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use iris_agent::command;
use iris_core::config::AgentConfig;
use iris_core::transcript::TranscriptLocator;
use iris_core::{Pair, SessionId, SessionRecord};

use crate::shared::Shared;

/// What happened to a deleted session's transcripts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TranscriptRemoval {
    /// Removal was not asked for.
    NotRequested,
    /// These files were removed: one per conversation id the session used (a `/clear` moves
    /// the conversation to a new id and a new file).
    Removed(Vec<PathBuf>),
    /// There was no transcript to remove.
    NotFound,
    /// Removal failed; the file may still exist (others may have been removed).
    Failed {
        /// The file, when known.
        path: Option<PathBuf>,
        /// Why.
        reason: String,
    },
}

/// Removes every transcript the session's conversation ids have used, where the agent keeps
/// them.
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
    let ids = conversation_ids(shared, record).await;
    let mut removed = Vec::new();
    for id in &ids {
        let outcome = if team.is_remote() {
            match remote_removal(&pair.to, team, &agent, id) {
                Ok((launch, shown)) => run_remote_removal(launch.to_command(), shown).await,
                Err(e) => TranscriptRemoval::Failed {
                    path: None,
                    reason: e.to_string(),
                },
            }
        } else {
            remove_local(&team.path, &agent, id).await
        };
        match outcome {
            TranscriptRemoval::Removed(paths) => removed.extend(paths),
            TranscriptRemoval::NotFound | TranscriptRemoval::NotRequested => {}
            failed @ TranscriptRemoval::Failed { .. } => return failed,
        }
    }
    if removed.is_empty() {
        TranscriptRemoval::NotFound
    } else {
        TranscriptRemoval::Removed(removed)
    }
}

/// The session's own id and every id its agent reported (from the store, and the record's
/// current one), as ids a transcript file can be named by. Ids that are not UUIDs cannot name
/// a transcript the CLI wrote and are skipped.
async fn conversation_ids(shared: &Shared, record: &SessionRecord) -> Vec<SessionId> {
    let store = shared.store.clone();
    let session = record.session_id;
    let stored = tokio::task::spawn_blocking(move || store.conversation_ids(session))
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    let mut ids = match stored {
        Ok(ids) => ids,
        Err(error) => {
            tracing::warn!(session = %session, %error, "could not read the conversation ids of a session; removing only its current transcripts");
            vec![session.to_string()]
        }
    };
    ids.extend(record.agent_session_id.clone());
    let mut parsed: Vec<SessionId> = Vec::with_capacity(ids.len());
    for id in ids {
        match SessionId::parse(&id) {
            Ok(id) if !parsed.contains(&id) => parsed.push(id),
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(session = %session, conversation = %id, "a conversation id is not a UUID, so no transcript is named by it; skipped");
            }
        }
    }
    parsed
}

/// Removes a local team's transcript of conversation `id`.
async fn remove_local(project: &Path, agent: &AgentConfig, id: &SessionId) -> TranscriptRemoval {
    let Some(locator) = transcript_locator(agent) else {
        return TranscriptRemoval::Failed {
            path: None,
            reason:
                "neither CLAUDE_CONFIG_DIR nor HOME is set, so the transcript cannot be located"
                    .into(),
        };
    };
    let project = match tokio::fs::canonicalize(project).await {
        Ok(path) => path,
        Err(_) => project.to_path_buf(),
    };
    let id = *id;
    let found = tokio::task::spawn_blocking(move || locator.find_transcript(&project, &id))
        .await
        .ok()
        .flatten();
    let Some(path) = found else {
        return TranscriptRemoval::NotFound;
    };
    match tokio::fs::remove_file(&path).await {
        Ok(()) => TranscriptRemoval::Removed(vec![path]),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TranscriptRemoval::NotFound,
        Err(e) => TranscriptRemoval::Failed {
            path: Some(path),
            reason: e.to_string(),
        },
    }
}

/// Moves an unusable transcript of conversation `id` (one the CLI refused to resume: empty or
/// unreadable) out of the CLI's way, so the conversation can start again under the same id. An
/// empty file holds nothing and is removed; anything else is kept beside it as
/// `<id>.jsonl.unreadable-<millis>` for a person to inspect. Returns what was done, for the log.
pub(crate) async fn set_aside_transcript(
    project: &Path,
    agent: &AgentConfig,
    id: SessionId,
) -> Result<Option<String>, std::io::Error> {
    let Some(locator) = transcript_locator(agent) else {
        return Ok(None);
    };
    let project = tokio::fs::canonicalize(project)
        .await
        .unwrap_or_else(|_| project.to_path_buf());
    let found = tokio::task::spawn_blocking(move || locator.find_transcript(&project, &id))
        .await
        .ok()
        .flatten();
    let Some(path) = found else {
        return Ok(None);
    };
    if tokio::fs::metadata(&path).await?.len() == 0 {
        tokio::fs::remove_file(&path).await?;
        return Ok(Some(format!(
            "removed the empty transcript {}",
            path.display()
        )));
    }
    let mut aside = path.clone().into_os_string();
    aside.push(format!(
        ".unreadable-{}",
        iris_core::Timestamp::now().as_millis()
    ));
    tokio::fs::rename(&path, &aside).await?;
    Ok(Some(format!(
        "moved the unreadable transcript {} to {}",
        path.display(),
        Path::new(&aside).display()
    )))
}

/// Where the agent keeps transcripts, judged from the environment it runs with (its team's
/// `env` over ours): `CLAUDE_CONFIG_DIR`, else `$HOME/.claude`, as the CLI does.
pub(crate) fn transcript_locator(agent: &AgentConfig) -> Option<TranscriptLocator> {
    let effective = |name: &str| {
        agent
            .env
            .get(name)
            .map(OsString::from)
            .or_else(|| std::env::var_os(name))
    };
    TranscriptLocator::from_vars(
        effective("CLAUDE_CONFIG_DIR").as_deref(),
        effective("HOME").as_deref(),
    )
    .ok()
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
            TranscriptRemoval::Removed(vec![PathBuf::from(shown)])
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
