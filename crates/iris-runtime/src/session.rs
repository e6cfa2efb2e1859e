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
use iris_core::{Coded, Pair, ProcessState, SessionRecord};
use iris_store::Change;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

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
}

/// How a SessionActor starts.
#[derive(Debug)]
pub(crate) struct SessionArgs {
    pub record: SessionRecord,
    /// Where the actor publishes its record; the registry hands the same cell to readers.
    pub snapshot: Arc<ArcSwap<SessionRecord>>,
    pub shared: Arc<Shared>,
    /// Spawn the agent and complete its handshake before the actor counts as started.
    pub start_agent: bool,
}

pub(crate) struct SessionState {
    pair: Pair,
    record: SessionRecord,
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
        let mut state = SessionState {
            pair: args.record.pair(),
            snapshot: args.snapshot,
            record: args.record,
            shared: args.shared,
            conversation: None,
        };
        if args.start_agent {
            // Boxed as a RuntimeError so the registry can hand every waiter the typed error.
            state.start_agent().await.map_err(Box::new)?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::Mutate { changes, reply } => {
                let result = state.apply(changes).await;
                let _ = reply.send(result);
            }
            SessionMsg::Shutdown { grace, reply } => {
                state.stop_agent(grace).await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        // Normally stopped already; a still-running agent is stopped here, and its group is
        // killed on drop even if this never runs.
        state.stop_agent(StopGrace::default()).await;
        Ok(())
    }
}

impl SessionState {
    /// Writes `changes` durably, then republishes the snapshot.
    async fn apply(&mut self, changes: Vec<Change>) -> Result<SessionRecord, RuntimeError> {
        let record = self
            .shared
            .store
            .update_all(self.record.session_id, changes)
            .await?;
        self.publish(record.clone());
        Ok(record)
    }

    fn publish(&mut self, record: SessionRecord) {
        self.snapshot.store(Arc::new(record.clone()));
        self.record = record;
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
        let conversation = if team.is_remote() || !self.transcript_exists(&team.path, &agent) {
            command::Conversation::New(self.record.session_id)
        } else {
            let id = self
                .record
                .agent_session_id
                .clone()
                .unwrap_or_else(|| self.record.session_id.to_string());
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
        tracing::info!(pair = %self.pair, session = %self.record.session_id, pid = mark.pid, "agent ready");
        Ok(())
    }

    /// Whether the agent already has a transcript of this conversation, looked up where the
    /// agent will look: its own `CLAUDE_CONFIG_DIR` if the team sets one, else ours.
    fn transcript_exists(&self, project: &std::path::Path, agent: &AgentConfig) -> bool {
        let locator = match agent.env.get("CLAUDE_CONFIG_DIR") {
            Some(dir) => TranscriptLocator::new(dir),
            None => match TranscriptLocator::from_env() {
                Ok(locator) => locator,
                Err(_) => return false,
            },
        };
        let canonical = project
            .canonicalize()
            .unwrap_or_else(|_| project.to_path_buf());
        locator.transcript_exists(&canonical, &self.record.session_id)
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
