//! The SessionActor: one per live pair, the only writer of its record, and the owner of the
//! pair's agent process.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use iris_agent::command::{self, LaunchOptions};
use iris_agent::conversation::{ConfiguredPolicy, Conversation, ConversationOptions};
use iris_agent::process::StopGrace;
use iris_core::config::AgentConfig;
use iris_core::transcript::TranscriptLocator;
use std::path::PathBuf;

use iris_core::{Coded, Pair, ProcessState, SessionId, SessionRecord, SessionStatus};
use iris_store::Change;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::RuntimeError;
use crate::shared::Shared;

/// Messages a SessionActor handles. Plain data apart from the reply ports.
#[derive(Debug)]
pub(crate) enum SessionMsg {
    /// Apply changes to the record durably; reply with the record as stored.
    Mutate {
        changes: Vec<Change>,
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    },
    /// Stop the agent gracefully, then stop the actor.
    Shutdown {
        grace: StopGrace,
        reply: RpcReplyPort<()>,
    },
    /// Stop the agent, delete the record (and the transcript, if asked), then stop the actor.
    Delete {
        delete_transcript: bool,
        reply: RpcReplyPort<Result<Deletion, RuntimeError>>,
    },
    /// Walk the original's compaction: `compacting`, `/compact` to a live agent, count reset,
    /// `active` (or `error` on failure).
    Compact {
        reply: RpcReplyPort<Result<SessionRecord, RuntimeError>>,
    },
    /// Passivate if nothing happened for `passivate_after` and no agent runs.
    PassivateCheck,
    /// Test hook: fail the actor as a panic would.
    #[cfg(feature = "testing")]
    Crash,
}

/// The result of deleting a session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deletion {
    /// The deleted record, or `None` if there was none.
    pub deleted: Option<SessionRecord>,
    /// What happened to the transcript.
    pub transcript: TranscriptRemoval,
}

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

/// How a SessionActor starts.
#[derive(Debug)]
pub(crate) struct SessionArgs {
    /// The stored record, published. The actor keeps no other copy and republishes here after
    /// every change; the registry hands the same cell to readers.
    pub snapshot: Arc<ArcSwap<SessionRecord>>,
    pub shared: Arc<Shared>,
    /// Spawn the agent and complete its handshake before the actor counts as started.
    pub start_agent: bool,
}

pub(crate) struct SessionState {
    pair: Pair,
    /// When the last message (other than a passivation check) arrived.
    last_activity: Instant,
    /// The one pending passivation timer; aborted when the actor stops.
    passivation: Option<JoinHandle<Result<(), MessagingErr<SessionMsg>>>>,
    /// The session's id; the rest of the record lives only in `snapshot` (one copy per session).
    id: SessionId,
    snapshot: Arc<ArcSwap<SessionRecord>>,
    shared: Arc<Shared>,
    conversation: Option<Conversation>,
}

pub(crate) struct SessionActor;

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let (pair, id) = {
            let record = args.snapshot.load();
            (record.pair(), record.session_id)
        };
        let mut state = SessionState {
            last_activity: Instant::now(),
            passivation: None,
            pair,
            id,
            snapshot: args.snapshot,
            shared: args.shared,
            conversation: None,
        };
        if args.start_agent {
            // Boxed as a RuntimeError so the registry can hand every waiter the typed error.
            Box::pin(state.start_agent()).await.map_err(Box::new)?;
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let after = state.shared.config.settings().passivate_after;
        if std::env::var("XP_NOTIMER").is_err() {
            state.arm_passivation(&myself, after);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(message, SessionMsg::PassivateCheck) {
            state.last_activity = Instant::now();
        }
        // Every async body below is boxed: ractor keeps the handler future inline in the actor's
        // task, so the largest one would otherwise be paid by every idle actor (P5).
        match message {
            SessionMsg::Mutate { changes, reply } => {
                let result = Box::pin(state.apply(changes)).await;
                let _ = reply.send(result);
            }
            SessionMsg::Shutdown { grace, reply } => {
                Box::pin(state.stop_agent(grace)).await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
            SessionMsg::Delete {
                delete_transcript,
                reply,
            } => {
                let result = Box::pin(state.delete(delete_transcript)).await;
                let _ = reply.send(result);
                myself.stop(Some("deleted".into()));
            }
            SessionMsg::Compact { reply } => {
                let result = Box::pin(state.compact()).await;
                let _ = reply.send(result);
            }
            SessionMsg::PassivateCheck => state.check_passivation(&myself),
            #[cfg(feature = "testing")]
            SessionMsg::Crash => {
                return Err(format!("injected failure of session {}", state.pair).into());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.passivation.take() {
            timer.abort();
        }
        // Normally stopped already; a still-running agent is stopped here, and its group is
        // killed on drop even if this never runs.
        Box::pin(state.stop_agent(StopGrace::default())).await;
        Ok(())
    }
}

impl SessionState {
    /// Arms the single passivation timer to fire `after` from now.
    fn arm_passivation(&mut self, myself: &ActorRef<SessionMsg>, after: Duration) {
        self.passivation = Some(myself.send_after(after, || SessionMsg::PassivateCheck));
    }

    /// Passivates when the session has been idle, with no agent, for `passivate_after`;
    /// otherwise re-arms the timer for the time that remains. One timer per actor at a time,
    /// re-armed only when it fires, so activity costs nothing but an `Instant`.
    fn check_passivation(&mut self, myself: &ActorRef<SessionMsg>) {
        let after = self.shared.config.settings().passivate_after;
        let idle = self.last_activity.elapsed();
        if self.conversation.is_none() && idle >= after {
            tracing::debug!(pair = %self.pair, "passivating an idle session");
            self.passivation = None;
            myself.stop(Some("passivated".into()));
        } else {
            self.arm_passivation(
                myself,
                after.saturating_sub(idle).max(Duration::from_millis(1)),
            );
        }
    }

    /// Stops the agent, deletes the record durably, then the transcript if asked.
    async fn delete(&mut self, delete_transcript: bool) -> Result<Deletion, RuntimeError> {
        self.stop_agent(StopGrace::default()).await;
        let deleted = self.shared.store.delete(self.id).await?;
        let transcript = if delete_transcript {
            remove_transcript(&self.shared, &self.pair, &self.snapshot.load()).await
        } else {
            TranscriptRemoval::NotRequested
        };
        tracing::info!(pair = %self.pair, session = %self.id, ?transcript, "session deleted");
        Ok(Deletion {
            deleted,
            transcript,
        })
    }

    /// The original's status walk, with `/compact` sent to a live agent as a turn.
    async fn compact(&mut self) -> Result<SessionRecord, RuntimeError> {
        self.apply(vec![Change::SetStatus(SessionStatus::Compacting)])
            .await?;
        let turn = match self.conversation.as_mut() {
            Some(conversation) => {
                let stall = self.shared.config.settings().response_timeout;
                conversation
                    .turn("/compact", None, stall)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|report| {
                        if report.failed() {
                            Err(report
                                .result
                                .result
                                .unwrap_or_else(|| report.result.subtype.clone()))
                        } else {
                            Ok(())
                        }
                    })
            }
            None => Ok(()),
        };
        match turn {
            Ok(()) => {
                self.apply(vec![
                    Change::ResetMessageCount,
                    Change::SetStatus(SessionStatus::Active),
                ])
                .await
            }
            Err(reason) => {
                self.apply(vec![Change::SetStatus(SessionStatus::Error)])
                    .await?;
                Err(RuntimeError::Agent {
                    pair: self.pair.clone(),
                    code: iris_core::ErrorCode::ProcessError,
                    reason: format!("compaction failed: {reason}"),
                })
            }
        }
    }

    /// Writes `changes` durably, then republishes the snapshot.
    async fn apply(&mut self, changes: Vec<Change>) -> Result<SessionRecord, RuntimeError> {
        let record = self.shared.store.update_all(self.id, changes).await?;
        self.publish(record.clone());
        Ok(record)
    }

    fn publish(&mut self, record: SessionRecord) {
        self.snapshot.store(Arc::new(record));
    }

    /// Spawns the agent (`--session-id` for a conversation without a transcript, `--resume`
    /// otherwise), completes the handshake, and records the process durably.
    async fn start_agent(&mut self) -> Result<(), RuntimeError> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let to = &self.pair.to;
        let (Some(team), Some(agent)) = (config.team(to), config.agent_for(to)) else {
            return Err(RuntimeError::UnknownTeam { team: to.clone() });
        };
        let agent_error = |code, reason: String| RuntimeError::Agent {
            pair: self.pair.clone(),
            code,
            reason,
        };
        let conversation = if team.is_remote() || !self.transcript_exists(&team.path, &agent).await
        {
            command::Conversation::New(self.id)
        } else {
            let id = self
                .snapshot
                .load()
                .agent_session_id
                .clone()
                .unwrap_or_else(|| self.id.to_string());
            command::Conversation::Resume(id)
        };
        let launch =
            command::build_launch(to, team, &agent, &conversation, &LaunchOptions::default())
                .map_err(|e| agent_error(e.code(), e.to_string()))?;
        let policy = Arc::new(ConfiguredPolicy::new(
            team.grant_permission,
            team.allowed_tools.clone(),
            team.disallowed_tools.clone(),
        ));
        let options = ConversationOptions {
            spawn_timeout: config.settings().spawn_timeout,
            ..ConversationOptions::default()
        };
        shared.count_spawn();
        let started = Conversation::start(launch.to_command(), policy, options)
            .await
            .map_err(|e| agent_error(e.code(), e.to_string()))?;
        let mark = started.process().mark();
        self.conversation = Some(started);
        let snapshot = command::team_config_snapshot(to, team, &agent);
        self.apply(vec![
            Change::SetProcessState(ProcessState::Idle),
            Change::SetAgentProcess(Some(mark)),
            Change::SetDebugInfo {
                launch_command: Some(launch.display()),
                team_config_snapshot: Some(snapshot),
            },
        ])
        .await?;
        tracing::info!(pair = %self.pair, session = %self.id, pid = mark.pid, "agent ready");
        Ok(())
    }

    /// Whether the agent already has a transcript of this conversation, looked up where the
    /// agent will look: its own `CLAUDE_CONFIG_DIR` if the team sets one, else ours. The lookup
    /// touches the filesystem, so it runs off the actor's thread.
    async fn transcript_exists(&self, project: &std::path::Path, agent: &AgentConfig) -> bool {
        let Some(locator) = transcript_locator(agent) else {
            return false;
        };
        let (project, id) = (project.to_path_buf(), self.id);
        tokio::task::spawn_blocking(move || {
            let canonical = project.canonicalize().unwrap_or(project);
            locator.transcript_exists(&canonical, &id)
        })
        .await
        .unwrap_or(false)
    }

    /// Stops the agent, if any, and records that it is gone.
    async fn stop_agent(&mut self, grace: StopGrace) {
        let Some(mut conversation) = self.conversation.take() else {
            return;
        };
        let outcome = conversation.stop(grace).await;
        tracing::info!(pair = %self.pair, stage = ?outcome.stage, "agent stopped");
        let cleared = self
            .apply(vec![
                Change::SetProcessState(ProcessState::Stopped),
                Change::SetAgentProcess(None),
            ])
            .await;
        if let Err(error) = cleared {
            tracing::warn!(pair = %self.pair, %error, "could not record that the agent stopped");
        }
    }
}

/// How long a Shutdown may take: the whole stop sequence plus a margin.
pub(crate) fn shutdown_timeout(grace: &StopGrace) -> Duration {
    grace.after_stdin_close + grace.after_sigterm + grace.after_sigkill + Duration::from_secs(5)
}

/// Deletes `pair`'s session: through its actor when one runs, else directly in the store (no
/// other writer can exist: the registry holds the pair's key while this runs).
pub(crate) async fn delete_session(
    shared: &Arc<Shared>,
    pair: &Pair,
    actor: Option<ActorRef<SessionMsg>>,
    delete_transcript: bool,
) -> Result<Deletion, RuntimeError> {
    if let Some(actor) = actor {
        let answer = actor
            .call(
                |reply| SessionMsg::Delete {
                    delete_transcript,
                    reply,
                },
                Some(shutdown_timeout(&StopGrace::default())),
            )
            .await;
        return match answer {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(ractor::rpc::CallResult::Timeout) => Err(RuntimeError::Timeout {
                what: format!("deleting session {pair}"),
            }),
            _ => Err(RuntimeError::ShuttingDown),
        };
    }
    let Some(record) = shared.store.get_by_pair(pair)? else {
        return Ok(Deletion {
            deleted: None,
            transcript: TranscriptRemoval::NotRequested,
        });
    };
    let deleted = shared.store.delete(record.session_id).await?;
    let transcript = if delete_transcript {
        remove_transcript(shared, pair, &record).await
    } else {
        TranscriptRemoval::NotRequested
    };
    Ok(Deletion {
        deleted,
        transcript,
    })
}

/// Removes the transcript of `record` where the agent keeps it.
async fn remove_transcript(
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
fn transcript_locator(agent: &AgentConfig) -> Option<TranscriptLocator> {
    match agent.env.get("CLAUDE_CONFIG_DIR") {
        Some(dir) => Some(TranscriptLocator::new(dir)),
        None => TranscriptLocator::from_env().ok(),
    }
}

/// Records durably that `pair`'s session failed too often.
pub(crate) async fn mark_error(shared: Arc<Shared>, pair: Pair) {
    let result = match shared.store.get_by_pair(&pair) {
        Ok(Some(record)) => shared
            .store
            .update_all(
                record.session_id,
                vec![
                    Change::SetStatus(SessionStatus::Error),
                    Change::SetProcessState(ProcessState::Stopped),
                ],
            )
            .await
            .map(|_| ()),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::error!(%pair, %error, "could not record the session's error status");
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
