//! Starting a session's agent: a pool slot, the launch (`--session-id` or `--resume`), the
//! handshake, and what the session records about the process.

use std::sync::Arc;
use std::time::Duration;

use iris_agent::command::{self, LaunchOptions};
use iris_agent::conversation::{
    AgentError, ConfiguredPolicy, Conversation, ConversationOptions, LaunchRefusal,
};
use iris_agent::process::StopGrace;
use iris_core::config::{AgentConfig, TeamConfig};
use iris_core::{AgentProcessMark, Coded, Pair, ProcessState, SessionId, SessionRecord};
use iris_store::Change;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tokio::time::Instant;

use super::SessionMsg;
use super::transcript::{set_aside_transcript, transcript_locator};
use crate::pool::{Permit, PoolMsg};

use crate::budget::Spending;
use crate::shared::Shared;
use crate::tell::TurnError;

/// A running agent and the pool slot it occupies. Dropping it kills the agent's process group
/// (the conversation's process is killed on drop) and returns the slot.
#[derive(Debug)]
pub(crate) struct LiveAgent {
    pub conversation: Conversation,
    pub permit: Permit,
    /// The spending limit it was launched with (`--max-budget-usd`), and what its turns have
    /// cost since: the CLI stops at the limit, counting from its own start.
    pub spending: Spending,
}

impl LiveAgent {
    pub fn mark(&self) -> AgentProcessMark {
        self.conversation.process().mark()
    }

    /// Stops the agent (the full graceful sequence) and then returns its slot.
    pub async fn stop(mut self, grace: StopGrace) {
        let outcome = self.conversation.stop(grace).await;
        tracing::debug!(pid = self.mark().pid, stage = ?outcome.stage, "agent stopped");
    }
}

/// What the session records about an agent it started.
#[derive(Debug, Clone)]
pub(crate) struct Launched {
    pub mark: AgentProcessMark,
    pub launch_command: String,
    pub team_config_snapshot: String,
    /// The conversation could not be resumed and was started again without its history.
    pub history_lost: bool,
}

/// Why one launch failed.
#[derive(Debug)]
enum LaunchError {
    /// The launch could not be built from the configuration.
    Command(command::CommandError),
    /// The agent did not come up.
    Agent(AgentError),
}

impl LaunchError {
    fn launch_refusal(&self) -> Option<LaunchRefusal> {
        match self {
            LaunchError::Agent(error) => error.launch_refusal(),
            LaunchError::Command(_) => None,
        }
    }
}

/// The launch that answers the CLI's refusal of `refused`: a conversation "already in use"
/// exists, so it is resumed; one a resume found no trace of starts again under the session's
/// own id. Any other failure has no correction.
fn correction(
    refusal: Option<LaunchRefusal>,
    refused: &command::Conversation,
    session: SessionId,
) -> Option<command::Conversation> {
    match (refusal?, refused) {
        (LaunchRefusal::ConversationInUse, command::Conversation::New(id)) => {
            Some(command::Conversation::Resume(id.to_string()))
        }
        (LaunchRefusal::ConversationNotFound, command::Conversation::Resume(_)) => {
            Some(command::Conversation::New(session))
        }
        _ => None,
    }
}

fn spawn_error(error: &LaunchError) -> TurnError {
    let (code, reason) = match error {
        LaunchError::Command(e) => (e.code(), e.to_string()),
        LaunchError::Agent(e) => (e.code(), e.to_string()),
    };
    TurnError::Spawn { code, reason }
}

/// Everything needed to start the agent of one session.
#[derive(Debug, Clone)]
pub(crate) struct LaunchContext {
    pub shared: Arc<Shared>,
    pub session: ActorRef<SessionMsg>,
    pub pair: Pair,
    pub id: SessionId,
    /// `--max-budget-usd` for the agent, when budget caps cover the pair.
    pub spending_limit: Option<f64>,
}

impl LaunchContext {
    /// Waits for a pool slot (at most `spawn_timeout`), then spawns the agent and completes the
    /// handshake (at most `spawn_timeout` to resume a conversation, the team's
    /// `session_init_timeout` to start a new one).
    ///
    /// When the CLI refuses the conversation it was launched for, the launch is corrected once
    /// per kind of refusal, never in a loop: "already in use" means the conversation exists, so
    /// it is resumed; "No conversation found" on a resume means its transcript is missing or
    /// empty, so the conversation starts again under the same id, without its history (logged,
    /// and recorded on the next turn's row).
    pub async fn start(&self, record: &SessionRecord) -> Result<(LiveAgent, Launched), TurnError> {
        let settings = self.shared.config.settings();
        let permit = self.acquire_permit(settings.spawn_timeout).await?;
        let (Some(team), Some(agent)) = (
            self.shared.config.team(&self.pair.to),
            self.shared.config.agent_for(&self.pair.to),
        ) else {
            return Err(TurnError::Spawn {
                code: iris_core::ErrorCode::TeamNotFound,
                reason: format!(
                    "team {} is no longer configured; add it back to the configuration",
                    self.pair.to
                ),
            });
        };
        let resume_id = record
            .agent_session_id
            .clone()
            .unwrap_or_else(|| self.id.to_string());
        let mut conversation = if self
            .has_conversation(record, &team.path, &agent, team.is_remote())
            .await
        {
            command::Conversation::Resume(resume_id)
        } else {
            command::Conversation::New(self.id)
        };
        // A conversation that has answered before but has no transcript any more (deleted, or
        // a different config dir) starts again from nothing.
        let had_history = record.message_count > 0 || record.agent_session_id.is_some();
        let mut history_lost = had_history
            && !team.is_remote()
            && matches!(conversation, command::Conversation::New(_));
        if history_lost {
            tracing::warn!(pair = %self.pair, session = %self.id, "the conversation's transcript is gone; starting it again under the same id, without its history");
        }
        let mut tried = Vec::new();
        let (started, launch) = loop {
            let error = match self.launch(team, &agent, &conversation).await {
                Ok(started) => break started,
                Err(error) => error,
            };
            tried.push(conversation.clone());
            let Some(next) = correction(error.launch_refusal(), &conversation, self.id)
                .filter(|next| !tried.contains(next))
            else {
                return Err(spawn_error(&error));
            };
            tracing::info!(pair = %self.pair, session = %self.id, refused = ?conversation, retry = ?next, "the agent refused the conversation it was launched for; launching again");
            if matches!(next, command::Conversation::New(_)) {
                // The resume found nothing: the history is gone.
                tracing::warn!(pair = %self.pair, session = %self.id, "the agent found no conversation to resume (its transcript is missing or empty); starting it again under the same id, without its history");
                if !team.is_remote() {
                    self.clear_unusable_transcript(&team.path, &agent).await;
                }
                history_lost = true;
            }
            conversation = next;
        };
        let launched = Launched {
            mark: started.process().mark(),
            launch_command: launch.display(),
            team_config_snapshot: command::team_config_snapshot(&self.pair.to, team, &agent),
            history_lost,
        };
        tracing::info!(pair = %self.pair, session = %self.id, pid = launched.mark.pid, ?conversation, "agent ready");
        self.shared
            .agent_meters
            .insert(self.pair.clone(), started.process().cpu_meter());
        Ok((
            LiveAgent {
                conversation: started,
                permit,
                spending: Spending {
                    limit: self.spending_limit,
                    spent: 0.0,
                },
            },
            launched,
        ))
    }

    /// One launch of the agent for `conversation`, up to the end of its handshake.
    async fn launch(
        &self,
        team: &TeamConfig,
        agent: &AgentConfig,
        conversation: &command::Conversation,
    ) -> Result<(Conversation, command::Launch), LaunchError> {
        let settings = self.shared.config.settings();
        let launch = command::build_launch(
            &self.pair.to,
            team,
            agent,
            conversation,
            &LaunchOptions {
                max_budget_usd: self.spending_limit,
                ..LaunchOptions::default()
            },
        )
        .map_err(LaunchError::Command)?;
        let policy = Arc::new(ConfiguredPolicy::new(
            team.grant_permission,
            team.allowed_tools.clone(),
            team.disallowed_tools.clone(),
        ));
        // Starting a conversation is what `session_init_timeout` bounds; resuming one (the CLI
        // reads its transcript) is an ordinary spawn.
        let handshake_limit = match conversation {
            command::Conversation::New(_) => team.effective_session_init_timeout(settings),
            command::Conversation::Resume(_) => settings.spawn_timeout,
        };
        let options = ConversationOptions {
            spawn_timeout: handshake_limit,
            containment: self.shared.containment.clone(),
            ..ConversationOptions::default()
        };
        self.shared.metrics.spawns.inc();
        let began = Instant::now();
        let started = Conversation::start(launch.to_command(), policy, options)
            .await
            .inspect_err(|_| self.shared.metrics.spawn_failures.inc())
            .map_err(LaunchError::Agent)?;
        self.shared.metrics.spawn_time.observe(began.elapsed());
        Ok((started, launch))
    }

    /// Clears the way for a conversation to start again under the session's id (a failure is
    /// logged: the launch then tells whether the way is clear).
    async fn clear_unusable_transcript(&self, project: &std::path::Path, agent: &AgentConfig) {
        match set_aside_transcript(project, agent, self.id).await {
            Ok(Some(done)) => tracing::warn!(pair = %self.pair, session = %self.id, "{done}"),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(pair = %self.pair, session = %self.id, %error, "could not move the unusable transcript aside");
            }
        }
    }

    async fn acquire_permit(&self, limit: Duration) -> Result<Permit, TurnError> {
        let answer = self
            .shared
            .pool
            .call(
                |reply| PoolMsg::Acquire {
                    pair: self.pair.clone(),
                    session: self.session.get_derived(),
                    reply,
                },
                Some(limit),
            )
            .await;
        match answer {
            Ok(CallResult::Success(permit)) => Ok(permit),
            Ok(CallResult::Timeout) => {
                self.shared.metrics.pool_exhausted.inc();
                Err(TurnError::PoolExhausted {
                    max: self.shared.config.settings().max_processes.get(),
                })
            }
            _ => Err(TurnError::Interrupted {
                reason: "the process pool has stopped (the node is shutting down)".into(),
            }),
        }
    }

    /// Whether the agent already holds this conversation, so it must be resumed rather than
    /// started. Locally the transcript file decides, looked up where the agent will look (its
    /// own `CLAUDE_CONFIG_DIR` if the team sets one, else ours), off the actor's thread. A remote
    /// transcript cannot be looked up cheaply, so there the record decides: a conversation that
    /// has answered before exists.
    async fn has_conversation(
        &self,
        record: &SessionRecord,
        project: &std::path::Path,
        agent: &AgentConfig,
        remote: bool,
    ) -> bool {
        if remote {
            return record.message_count > 0 || record.agent_session_id.is_some();
        }
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
}

/// What a session records about an agent it started.
pub(super) fn launched_changes(launched: &Launched, state: ProcessState) -> Vec<Change> {
    vec![
        Change::SetProcessState(state),
        Change::SetAgentProcess(Some(launched.mark)),
        Change::SetDebugInfo {
            launch_command: Some(launched.launch_command.clone()),
            team_config_snapshot: Some(launched.team_config_snapshot.clone()),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use command::Conversation::{New, Resume};

    #[test]
    fn each_refusal_has_one_correction_and_nothing_else_has_any() {
        let id = SessionId::new_v4();
        let other = "11111111-1111-4111-8111-111111111111".to_owned();
        let in_use = Some(LaunchRefusal::ConversationInUse);
        let not_found = Some(LaunchRefusal::ConversationNotFound);
        assert_eq!(
            correction(in_use, &New(id), id),
            Some(Resume(id.to_string()))
        );
        // After a /clear the resumed id is another; the conversation restarts under the session's.
        assert_eq!(
            correction(not_found, &Resume(other.clone()), id),
            Some(New(id))
        );
        assert_eq!(correction(in_use, &Resume(other), id), None);
        assert_eq!(correction(not_found, &New(id), id), None);
        assert_eq!(correction(None, &New(id), id), None);
    }
}
