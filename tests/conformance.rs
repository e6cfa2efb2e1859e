//! The conformance suite: one list of scenarios, run through the `Runtime` against the real
//! Claude Code CLI (the version pinned in `claude-cli.version`, offline against the loopback
//! mock of the Anthropic API in `crates/anthropic-mock`) and against fake-claude, with the same
//! assertions. Without the real CLI installed, each scenario runs against fake-claude only and
//! says in one line how to install it; CI sets `IRIS_REQUIRE_REAL_CLAUDE=1`, which makes a
//! missing CLI a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Each suite uses its own share of the agents' scripts.
#[allow(dead_code)]
#[path = "conformance/agents.rs"]
mod agents;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agents::Agent;
use iris::core::config::Config;
use iris::core::transcript::TranscriptLocator;
use iris::core::{Coded, SessionId, SessionRecord, TeamName, TurnRecord, TurnStatus};
use iris::runtime::{Runtime, TellOptions, TellOutcome, TurnError, TurnResult};
use iris::store::Store;

/// One scenario's scratch world for one agent: a project per team, the agent's config dir, a
/// database.
struct World {
    root: tempfile::TempDir,
    agent: Agent,
}

const FROM: &str = "alpha";
const TO: &str = "beta";

impl World {
    fn new(agent: Agent) -> World {
        World {
            root: tempfile::tempdir().unwrap(),
            agent,
        }
    }

    fn claude_dir(&self) -> PathBuf {
        self.root.path().join("claude")
    }

    fn project(&self, team: &str) -> PathBuf {
        self.root.path().join("teams").join(team)
    }

    /// The configuration: teams `alpha` and `beta` (`beta_extra` is TOML added to beta's
    /// table), the agent's environment, default settings.
    fn config(&self, beta_extra: &str, home_only: bool) -> Config {
        self.config_with_settings("", beta_extra, home_only)
    }

    /// [`World::config`] with `settings` (TOML lines) in `[settings]`.
    fn config_with_settings(&self, settings: &str, beta_extra: &str, home_only: bool) -> Config {
        std::fs::create_dir_all(self.claude_dir()).unwrap();
        let env = self.agent.env_toml(&self.claude_dir(), home_only);
        let mut toml = format!(
            "[settings]\n{settings}\n[agent]\ncommand = {:?}\nenv = {env}\n",
            self.agent.command.display().to_string()
        );
        for team in [FROM, TO] {
            std::fs::create_dir_all(self.project(team)).unwrap();
            let extra = if team == TO { beta_extra } else { "" };
            let grant = if extra.contains("grant_permission") {
                ""
            } else {
                "grant_permission = \"yes\"\n"
            };
            toml.push_str(&format!(
                "[teams.{team}]\npath = \"teams/{team}\"\n{grant}{extra}\n"
            ));
        }
        Config::from_toml_str(&toml, self.root.path(), "conformance.toml", &|_| None).unwrap()
    }

    /// A runtime on the world's database. After a restart the previous runtime's last tasks
    /// may still hold the file for a moment; the open waits for them (bounded).
    async fn runtime(&self, config: Config) -> Runtime {
        let path = self.root.path().join("data/iris.redb");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let store = loop {
            match Store::open(&path) {
                Ok(store) => break store,
                Err(iris::store::OpenError::Locked { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("opening {}: {e}", path.display()),
            }
        };
        Runtime::start(config, store).await.unwrap()
    }

    /// Where the agent keeps the transcript of conversation `id` of team beta.
    fn transcript(&self, config_dir: &Path, id: &str) -> PathBuf {
        let project = self.project(TO).canonicalize().unwrap();
        TranscriptLocator::new(config_dir).transcript_path(&project, &SessionId::parse(id).unwrap())
    }
}

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

async fn tell(runtime: &Runtime, message: &str) -> TellOutcome {
    runtime
        .tell(&team(FROM), &team(TO), message, TellOptions::complete())
        .await
        .unwrap()
}

fn completed(agent: &Agent, outcome: TellOutcome) -> TurnResult {
    match outcome {
        TellOutcome::Completed(result) => result,
        other => panic!("{}: expected a completed turn, got {other:?}", agent.name()),
    }
}

fn failed(agent: &Agent, outcome: TellOutcome) -> TurnError {
    match outcome {
        TellOutcome::Failed { error, .. } => error,
        other => panic!("{}: expected a failed turn, got {other:?}", agent.name()),
    }
}

fn session(runtime: &Runtime) -> SessionRecord {
    (*runtime
        .get_session(&team(FROM), &team(TO))
        .unwrap()
        .unwrap())
    .clone()
}

/// The pair's turns, oldest first.
fn turns(runtime: &Runtime) -> Vec<TurnRecord> {
    let mut turns = runtime.report(&team(FROM), &team(TO), 100).unwrap();
    turns.reverse();
    turns
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `scenario` against every agent at once (for scenarios that mostly wait).
macro_rules! for_each_agent_concurrently {
    ($scenario:ident) => {
        let mut runs = Vec::new();
        for agent in Agent::all(support::fake_claude()).await {
            eprintln!(
                "conformance: {} against {}",
                stringify!($scenario),
                agent.name()
            );
            runs.push(tokio::spawn($scenario(World::new(agent))));
        }
        for run in runs {
            if let Err(error) = run.await {
                std::panic::resume_unwind(error.into_panic());
            }
        }
    };
}

/// Runs `scenario` against every agent, one after the other.
macro_rules! for_each_agent {
    ($scenario:ident) => {
        for agent in Agent::all(support::fake_claude()).await {
            let name = agent.name();
            eprintln!("conformance: {} against {name}", stringify!($scenario));
            $scenario(World::new(agent)).await;
        }
    };
}

// ----- the scenarios -----

/// A new conversation, a second tell, a restart of the node, and a resume with the context
/// intact; each turn costs its own share, and the session's total is their sum.
async fn conversation_survives_a_restart_and_costs_add_up(world: World) {
    let agent = &world.agent;
    let config = world.config("", false);
    let runtime = world.runtime(config.clone()).await;
    let first = completed(agent, tell(&runtime, "hi").await);
    assert_eq!(first.text, agent.echo("hi", 1), "{}", agent.name());
    let second = completed(agent, tell(&runtime, "second").await);
    assert_eq!(second.text, agent.echo("second", 2), "{}", agent.name());
    runtime.shutdown(Duration::from_secs(10)).await;
    drop(runtime);

    let runtime = world.runtime(config).await;
    let third = completed(agent, tell(&runtime, "third").await);
    assert_eq!(
        third.text,
        agent.echo("third", 3),
        "{}: the resumed agent has the earlier turns",
        agent.name()
    );
    for (turn, text, n) in [
        (&first, "hi", 1),
        (&second, "second", 2),
        (&third, "third", 3),
    ] {
        assert!(
            close(turn.cost_usd, agent.echo_cost(text, n)),
            "{}: turn {n} cost {} (expected {})",
            agent.name(),
            turn.cost_usd,
            agent.echo_cost(text, n)
        );
    }
    let rows = turns(&runtime);
    assert_eq!(rows.len(), 3);
    let sum: f64 = rows.iter().map(|t| t.usage.cost_usd).sum();
    assert!(close(session(&runtime).usage.cost_usd, sum));
    for row in &rows {
        assert_eq!(row.status, TurnStatus::Completed);
        assert!(
            row.started_at.is_some(),
            "report shows when each turn started"
        );
        assert!(!row.history_lost);
    }
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// Partial text streams to a caller whose wait ends first; a cancel interrupts the turn, and
/// the conversation goes on.
async fn partial_text_then_cancel(world: World) {
    let agent = &world.agent;
    let runtime = world.runtime(world.config("", false)).await;
    let handle = runtime
        .submit(&team(FROM), &team(TO), agent.slow())
        .await
        .unwrap();
    eventually("partial text", || !handle.partial().is_empty()).await;
    match handle.outcome_within(Duration::ZERO).await {
        TellOutcome::CallerTimeout { partial, .. } => {
            assert!(!partial.is_empty(), "{}", agent.name())
        }
        other => panic!("{}: expected a caller timeout, got {other:?}", agent.name()),
    }
    let cancelled = runtime.cancel(&team(FROM), &team(TO), false).await.unwrap();
    assert!(cancelled.interrupted, "{}", agent.name());
    assert_eq!(
        failed(agent, handle.outcome().await),
        TurnError::Cancelled,
        "{}",
        agent.name()
    );
    let after = completed(agent, tell(&runtime, "after").await);
    assert!(
        after.text.starts_with("echo: after"),
        "{}: {}",
        agent.name(),
        after.text
    );
    let rows = turns(&runtime);
    assert_eq!(rows[0].status, TurnStatus::Cancelled);
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// A tool call runs when permission is granted, and not when it is denied (by configuration,
/// or because nobody can be asked).
async fn tool_calls_follow_permissions(world: World) {
    let agent = &world.agent;
    for grant in ["yes", "no", "ask"] {
        let config = world.config(&format!("grant_permission = {grant:?}"), false);
        let runtime = world.runtime(config).await;
        let marker = format!("marker-{grant}");
        let outcome = tell(&runtime, &agent.tool(&marker)).await;
        let ran = world.project(TO).join(&marker);
        match grant {
            "yes" => {
                completed(agent, outcome);
                eventually("the tool's marker", || ran.exists()).await;
            }
            _ => {
                // Denied: the turn still ends (the model is told), and nothing ran.
                assert!(
                    matches!(
                        outcome,
                        TellOutcome::Completed(_) | TellOutcome::Failed { .. }
                    ),
                    "{outcome:?}"
                );
                assert!(!ran.exists(), "{}: {grant} ran the tool", agent.name());
            }
        }
        runtime.shutdown(Duration::from_secs(10)).await;
    }
}

/// Past `[settings.compaction]`, the session compacts by itself after a turn: the agent
/// confirms with `compact_boundary`, the count starts again, the model call is counted.
async fn compaction_by_policy(world: World) {
    let agent = &world.agent;
    let config = world.config_with_settings("[settings.compaction]\nmax_messages = 2", "", false);
    let runtime = world.runtime(config).await;
    for message in ["one", "two"] {
        completed(agent, tell(&runtime, message).await);
    }
    let before = session(&runtime);
    assert_eq!(
        before.message_count,
        2,
        "{}: at the limit, not past it",
        agent.name()
    );
    completed(agent, tell(&runtime, "three").await);
    eventually("the compaction by policy", || {
        let record = session(&runtime);
        record.message_count == 0 && record.status == iris::core::SessionStatus::Active
    })
    .await;
    assert!(
        session(&runtime).usage.cost_usd > before.usage.cost_usd,
        "{}: the compaction's model call is counted",
        agent.name()
    );
    completed(agent, tell(&runtime, "four").await);
    assert_eq!(session(&runtime).message_count, 1, "{}", agent.name());
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// `/compact` is confirmed by the agent before the count is reset; `/clear` moves the
/// conversation to a new id that survives a restart; a reboot removes every transcript.
async fn compact_clear_restart_reboot(world: World) {
    let agent = &world.agent;
    let config = world.config("", false);
    let runtime = world.runtime(config.clone()).await;
    completed(agent, tell(&runtime, "one").await);
    completed(agent, tell(&runtime, "two").await);
    let record = session(&runtime);
    assert_eq!(record.message_count, 2);
    let compacted = runtime.compact_session(&record.session_id).await.unwrap();
    assert_eq!(compacted.message_count, 0, "{}", agent.name());
    assert!(
        compacted.usage.cost_usd > record.usage.cost_usd,
        "{}: the compaction's model call is counted",
        agent.name()
    );

    completed(agent, tell(&runtime, "/clear").await);
    let cleared = session(&runtime);
    let new_id = cleared
        .agent_session_id
        .clone()
        .unwrap_or_else(|| panic!("{}: /clear gave no new conversation id", agent.name()));
    assert_ne!(new_id, record.session_id.to_string());
    runtime.shutdown(Duration::from_secs(10)).await;
    drop(runtime);

    let runtime = world.runtime(config).await;
    let after = completed(agent, tell(&runtime, "after clear").await);
    // The new conversation resumes under its id without the turns before the /clear (the
    // real CLI records the /clear command itself as the new conversation's first user turn).
    assert!(
        [agent.echo("after clear", 1), agent.echo("after clear", 2)].contains(&after.text),
        "{}: {}",
        agent.name(),
        after.text
    );
    let old = world.transcript(&world.claude_dir(), &record.session_id.to_string());
    let new = world.transcript(&world.claude_dir(), &new_id);
    assert!(old.exists() && new.exists(), "{}", agent.name());
    runtime.reboot(&team(FROM), &team(TO)).await.unwrap();
    assert!(
        !old.exists() && !new.exists(),
        "{}: reboot removes every transcript",
        agent.name()
    );
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// API errors fail the turn with a sentence that says so; the next turn works.
async fn api_errors_fail_the_turn_and_the_session_goes_on(world: World) {
    let agent = &world.agent;
    let runtime = world.runtime(world.config("", false)).await;
    for status in [400, 429, 529] {
        let error = failed(agent, tell(&runtime, &agent.api_error(status)).await);
        assert!(
            matches!(error, TurnError::ErrorResult { .. }),
            "{}: {error:?}",
            agent.name()
        );
        assert!(
            error.to_string().contains("API error"),
            "{}: {error}",
            agent.name()
        );
    }
    let after = completed(agent, tell(&runtime, "fine").await);
    assert!(after.text.starts_with("echo: fine"), "{}", agent.name());
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// A turn's text is the result's (the last text block); several blocks all stream.
async fn several_text_blocks(world: World) {
    let agent = &world.agent;
    let runtime = world.runtime(world.config("", false)).await;
    let result = completed(
        agent,
        tell(&runtime, &agent.blocks(&["a1", "b2", "c3"])).await,
    );
    assert_eq!(result.text, "c3", "{}", agent.name());
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// A missing, then an empty transcript: the conversation starts again under the same id, and
/// the turn's row says the history was lost.
async fn missing_and_empty_transcripts_restart_the_conversation(world: World) {
    let agent = &world.agent;
    let runtime = world.runtime(world.config("", false)).await;
    completed(agent, tell(&runtime, "one").await);
    let id = session(&runtime).session_id.to_string();
    let transcript = world.transcript(&world.claude_dir(), &id);
    for (what, damage) in [
        (
            "missing",
            (|p: &Path| std::fs::remove_file(p).unwrap()) as fn(&Path),
        ),
        ("empty", |p: &Path| std::fs::write(p, "").unwrap()),
    ] {
        runtime.sleep(&team(FROM), &team(TO), false).await.unwrap();
        assert!(transcript.exists(), "{}: {what}", agent.name());
        damage(&transcript);
        let again = completed(agent, tell(&runtime, what).await);
        assert_eq!(again.text, agent.echo(what, 1), "{}: {what}", agent.name());
        let last = turns(&runtime).pop().unwrap();
        assert!(last.history_lost, "{}: {what}", agent.name());
    }
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// An agent whose environment sets `HOME` but not `CLAUDE_CONFIG_DIR` keeps its transcripts
/// under that home; iris finds them and resumes.
async fn home_only_environment(world: World) {
    let agent = &world.agent;
    let runtime = world.runtime(world.config("", true)).await;
    completed(agent, tell(&runtime, "one").await);
    runtime.sleep(&team(FROM), &team(TO), false).await.unwrap();
    let two = completed(agent, tell(&runtime, "two").await);
    assert_eq!(two.text, agent.echo("two", 2), "{}", agent.name());
    let id = session(&runtime).session_id.to_string();
    assert!(
        world
            .transcript(&world.claude_dir().join(".claude"), &id)
            .exists()
    );
    assert!(turns(&runtime).iter().all(|t| !t.history_lost));
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// An MCP server given to the agent by the team's `mcp_config` is started by the agent, and
/// the model's call of its tool reaches it and comes back.
async fn an_mcp_server_from_the_config(world: World) {
    let agent = &world.agent;
    let server = format!(
        "[teams.{TO}.mcp_config.mcpServers.probe]\ncommand = {:?}\nargs = [\"--mcp-stdio\"]\n",
        support::anthropic_mock().display().to_string()
    );
    let runtime = world.runtime(world.config(&server, false)).await;
    let reply = completed(
        agent,
        tell(
            &runtime,
            &agent.mcp("mcp__probe__echo", r#"{"text": "over mcp"}"#),
        )
        .await,
    );
    assert_eq!(reply.text, "after mcp: over mcp", "{}", agent.name());
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// Liveness, not silence: with `response_timeout = "4s"`, a 20 s tool that prints nothing for
/// most of its run (status shows it running) and an 8 s stream both complete, side by side.
async fn a_long_tool_and_a_long_stream_survive_a_short_response_timeout(world: World) {
    let agent = &world.agent;
    let config = world.config_with_settings("response_timeout = \"4s\"", "", false);
    let runtime = world.runtime(config).await;
    let marker = world.project(TO).join("long-tool-done");
    let tool = runtime
        .submit(&team(FROM), &team(TO), agent.long_tool(20, &marker))
        .await
        .unwrap();
    let stream = match agent.dialect {
        agents::Dialect::Real => "slow 80 100",
        agents::Dialect::Fake => "!stream 80 100",
    };
    let streaming = runtime
        .submit(&team(TO), &team(FROM), stream)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = runtime.status(&team(FROM), &team(TO)).await.unwrap();
        let shown = status.activity.map(|a| a.to_string()).unwrap_or_default();
        if shown.starts_with("running tool Bash for ") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: status never showed the running tool (last: {shown:?})",
            agent.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = completed(agent, tool.outcome().await);
    assert!(
        done.text.starts_with("after tool"),
        "{}: {}",
        agent.name(),
        done.text
    );
    assert!(marker.exists(), "{}: the tool ran to its end", agent.name());
    let streamed = completed(agent, streaming.outcome().await);
    assert!(!streamed.text.is_empty(), "{}", agent.name());
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// A frozen agent (SIGSTOP: no output, no CPU) is killed as stalled once `response_timeout`
/// passes (within one check interval), and the session goes on with a new agent; a model call
/// that hangs is a stall too.
async fn a_sigstopped_agent_is_killed_at_the_response_timeout(world: World) {
    let agent = &world.agent;
    let limit = Duration::from_secs(4);
    let config = world.config_with_settings("response_timeout = \"4s\"", "", false);
    let runtime = world.runtime(config).await;
    completed(agent, tell(&runtime, "warm up").await);
    let pid = session(&runtime)
        .agent_process
        .expect("the agent is recorded")
        .pid;
    let handle = runtime
        .submit(&team(FROM), &team(TO), agent.slow())
        .await
        .unwrap();
    eventually("partial text", || !handle.partial().is_empty()).await;
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let frozen_at = std::time::Instant::now();
    let error = failed(agent, handle.outcome().await);
    let waited = frozen_at.elapsed();
    assert_eq!(
        error,
        TurnError::Timeout { after: limit },
        "{}: {error}",
        agent.name()
    );
    // Never before the limit; at it, give or take one check interval (4 s here) and slack.
    assert!(waited >= limit, "{}: killed after {waited:?}", agent.name());
    assert!(
        waited < 2 * limit + Duration::from_secs(5),
        "{}: killed only after {waited:?}",
        agent.name()
    );
    eventually("the frozen agent to be gone", || {
        !iris::agent::procfs::stat(pid).is_some_and(|s| s.is_alive())
    })
    .await;
    let after = completed(agent, tell(&runtime, "after").await);
    assert!(
        after.text.starts_with("echo: after"),
        "{}: {}",
        agent.name(),
        after.text
    );

    // A model call that hangs mid-stream: the agent waits, printing nothing and using no CPU
    // to speak of, which is a stall too.
    let hang = match agent.dialect {
        agents::Dialect::Real => "slow 2 600000",
        agents::Dialect::Fake => "!stream 2 600000",
    };
    let error = failed(agent, tell(&runtime, hang).await);
    assert_eq!(
        error,
        TurnError::Timeout { after: limit },
        "{}: {error}",
        agent.name()
    );
    runtime.shutdown(Duration::from_secs(10)).await;
}

/// Budgets bound the turn in flight: the agent is launched with what is left under the caps as
/// `--max-budget-usd`, the CLI stops the turn that reaches it (`error_max_budget_usd` from
/// 2.1.197), the turn fails with `BUDGET_EXCEEDED` and its cost still counts, and the next tell
/// is refused at the door.
async fn a_budget_cap_bounds_the_turn_in_flight(world: World) {
    let agent = &world.agent;
    let runtime = world.runtime(world.config("", false)).await;
    let first = completed(agent, tell(&runtime, "hello").await);
    runtime.shutdown(Duration::from_secs(10)).await;

    // beta has spent one turn today; its cap allows half a turn more. (A table after beta's
    // own: TOML starts `[budgets]` there.)
    let budgets = format!(
        "\n[budgets]\nday = \"{}\"\n[budgets.teams.beta]\nas_receiver = {{ usd = {} }}\n",
        support::offset_putting_now_at_noon(),
        first.cost_usd * 1.5
    );
    let runtime = world.runtime(world.config(&budgets, false)).await;
    let error = failed(agent, tell(&runtime, "hello again").await);
    assert_eq!(
        error.code(),
        iris::core::ErrorCode::BudgetExceeded,
        "{}: {error}",
        agent.name()
    );
    assert!(
        error.to_string().contains("spending limit"),
        "{}: {error}",
        agent.name()
    );
    let record = session(&runtime);
    assert!(
        record
            .launch_command
            .as_deref()
            .is_some_and(|c| c.contains("--max-budget-usd=")),
        "{}: {:?}",
        agent.name(),
        record.launch_command
    );
    // The stopped turn's model call was paid for: it counts.
    assert!(
        record.usage.cost_usd > first.cost_usd,
        "{}: {:?}",
        agent.name(),
        record.usage
    );
    let last = turns(&runtime).pop().unwrap();
    assert_eq!(
        last.error.map(|e| e.code),
        Some(iris::core::ErrorCode::BudgetExceeded)
    );
    let refused = runtime
        .tell(&team(FROM), &team(TO), "and again", TellOptions::complete())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        iris::core::ErrorCode::BudgetExceeded,
        "{}: {refused}",
        agent.name()
    );
    runtime.shutdown(Duration::from_secs(10)).await;
}

// ----- one test per scenario, each against both agents -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_restart_resume_and_cost() {
    for_each_agent!(conversation_survives_a_restart_and_costs_add_up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_partial_text_and_cancel() {
    for_each_agent!(partial_text_then_cancel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_tool_calls_and_permissions() {
    for_each_agent!(tool_calls_follow_permissions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_compact_clear_and_reboot() {
    for_each_agent!(compact_clear_restart_reboot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_compaction_by_policy() {
    for_each_agent!(compaction_by_policy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_api_errors() {
    for_each_agent!(api_errors_fail_the_turn_and_the_session_goes_on);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_several_text_blocks() {
    for_each_agent!(several_text_blocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_missing_and_empty_transcripts() {
    for_each_agent!(missing_and_empty_transcripts_restart_the_conversation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_home_only_environment() {
    for_each_agent!(home_only_environment);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_mcp_server_from_the_config() {
    for_each_agent!(an_mcp_server_from_the_config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_a_long_tool_and_stream_survive_a_short_response_timeout() {
    for_each_agent_concurrently!(a_long_tool_and_a_long_stream_survive_a_short_response_timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_a_sigstopped_agent_is_killed_at_the_response_timeout() {
    for_each_agent_concurrently!(a_sigstopped_agent_is_killed_at_the_response_timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_a_budget_cap_bounds_the_turn_in_flight() {
    for_each_agent!(a_budget_cap_bounds_the_turn_in_flight);
}
