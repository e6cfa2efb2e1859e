//! The process pool, with fake-claude as the agent and `max_processes = 2`: a third agent evicts
//! the least recently used *idle* agent and never a busy one; with every agent busy it waits for a
//! free slot, at most `spawn_timeout`, and then fails `PoolExhausted`; an idle agent is stopped
//! after its team's idle timeout, a busy one is not; the health check notices an idle agent that
//! died.
//!
//! Sessions are created lazily, so most agents here are started by a tell's turn; the
//! `eager_creation_*` tests cover the agent started with the session. The last test uses a
//! single slot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use iris::core::{Coded, ErrorCode, ProcessState, TeamName, TurnStatus};
use iris::runtime::{Runtime, TellOptions, TellOutcome, TurnError, TurnHandle, TurnResult};
use iris::store::Store;
use support::{World, fake_claude};

const POOL: &str = "max_processes = 2\nsession_init = \"lazy\"";
const TEAMS: &[&str] = &["x", "a", "b", "c"];

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

async fn start(world: &World, settings: &str) -> Runtime {
    let config = world.config(TEAMS, fake_claude(), settings);
    Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap()
}

/// A tell from `x` to `to` that waits for the turn's end.
async fn tell(runtime: &Runtime, to: &str, message: &str) -> TellOutcome {
    runtime
        .tell(&team("x"), &team(to), message, TellOptions::complete())
        .await
        .unwrap()
}

#[track_caller]
fn completed(outcome: &TellOutcome) -> &TurnResult {
    match outcome {
        TellOutcome::Completed(result) => result,
        other => panic!("expected a completed turn, got {other:?}"),
    }
}

/// Polls `check` every 10 ms until it holds, for at most `limit`.
async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status(runtime: &Runtime, to: &str) -> iris::runtime::PairStatus {
    runtime.status(&team("x"), &team(to)).await.unwrap()
}

fn pgid(runtime: &Runtime, to: &str) -> u32 {
    runtime
        .get_session(&team("x"), &team(to))
        .unwrap()
        .unwrap()
        .agent_process
        .expect("the pair has a live agent")
        .pgid
}

fn counter(runtime: &Runtime, name: &str) -> u64 {
    runtime.metrics().counter(name).unwrap()
}

async fn group_empties(pgid: u32) {
    until(
        &format!("process group {pgid} empties"),
        Duration::from_secs(5),
        async || iris::agent::procfs::live_group_members(pgid).is_empty(),
    )
    .await;
}

/// The pair's record says its agent is gone (written once the stop finished).
async fn stopped_on_record(runtime: &Runtime, to: &str) {
    until(
        &format!("x->{to}'s record shows no agent"),
        Duration::from_secs(5),
        async || {
            let record = runtime.get_session(&team("x"), &team(to)).unwrap().unwrap();
            record.process_state == ProcessState::Stopped && record.agent_process.is_none()
        },
    )
    .await;
}

/// Starts `directive` as a turn on x->a and x->b and waits until both hold a busy slot.
async fn busy_a_and_b(runtime: &Runtime, directive: &str) -> [TurnHandle; 2] {
    let a = runtime
        .submit(&team("x"), &team("a"), directive)
        .await
        .unwrap();
    let b = runtime
        .submit(&team("x"), &team("b"), directive)
        .await
        .unwrap();
    until(
        "both turns are running",
        Duration::from_secs(5),
        async || {
            let pool = runtime.pool().await.unwrap();
            (pool.held, pool.busy) == (2, 2)
                && status(runtime, "a").await.busy
                && status(runtime, "b").await.busy
        },
    )
    .await;
    [a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_agent_evicts_the_idle_one_never_the_busy_one() {
    let world = World::new();
    let runtime = start(&world, POOL).await;
    completed(&tell(&runtime, "a", "hello a").await);
    completed(&tell(&runtime, "b", "hello b").await);
    let b_group = pgid(&runtime, "b");
    assert_eq!(runtime.pool().await.unwrap().held, 2);

    // A runs a long turn; B stays idle.
    let long = runtime
        .submit(&team("x"), &team("a"), "!sleep 3000")
        .await
        .unwrap();
    until("A's turn is running", Duration::from_secs(5), async || {
        runtime.pool().await.unwrap().busy == 1 && status(&runtime, "a").await.busy
    })
    .await;

    let c = tell(&runtime, "c", "hello c").await;
    assert!(completed(&c).text.contains("hello c"), "{c:?}");
    let b = status(&runtime, "b").await;
    assert!(!b.awake, "the idle agent was evicted: {b:?}");
    group_empties(b_group).await;
    stopped_on_record(&runtime, "b").await;
    let a = status(&runtime, "a").await;
    assert!(a.awake && a.busy, "the busy agent was left alone: {a:?}");
    assert_eq!(a.current_turn, Some(long.turn_id()));
    assert_eq!(counter(&runtime, "evictions"), 1);

    let outcome = long.outcome().await;
    assert!(
        completed(&outcome).text.contains("!sleep 3000"),
        "{outcome:?}"
    );
    let pool = runtime.pool().await.unwrap();
    assert_eq!((pool.held, pool.busy, pool.waiting), (2, 0, 0), "{pool:?}");
    assert_eq!(runtime.agent_spawns(), 3);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_agent_idle_the_least_recently_used_is_evicted() {
    let world = World::new();
    let runtime = start(&world, POOL).await;
    completed(&tell(&runtime, "a", "first").await);
    completed(&tell(&runtime, "b", "second").await);
    let a_group = pgid(&runtime, "a");

    completed(&tell(&runtime, "c", "third").await);
    assert!(
        !status(&runtime, "a").await.awake,
        "A was used least recently"
    );
    assert!(status(&runtime, "b").await.awake);
    assert!(status(&runtime, "c").await.awake);
    group_empties(a_group).await;
    assert_eq!(counter(&runtime, "evictions"), 1);

    // A again: now B is the least recently used.
    let b_group = pgid(&runtime, "b");
    completed(&tell(&runtime, "a", "fourth").await);
    assert!(status(&runtime, "a").await.awake);
    assert!(
        !status(&runtime, "b").await.awake,
        "B was used least recently"
    );
    assert!(status(&runtime, "c").await.awake);
    group_empties(b_group).await;
    assert_eq!(counter(&runtime, "evictions"), 2);
    assert_eq!(runtime.pool().await.unwrap().held, 2);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_agent_busy_a_third_waits_for_a_free_slot() {
    let world = World::new();
    let runtime = start(&world, &format!("{POOL}\nspawn_timeout = \"10s\"")).await;
    let [a, b] = busy_a_and_b(&runtime, "!sleep 1500").await;

    let c = tell(&runtime, "c", "hello c").await;
    assert!(completed(&c).text.contains("hello c"), "{c:?}");
    assert!(counter(&runtime, "pool_waits") >= 1);
    assert_eq!(counter(&runtime, "pool_exhausted"), 0);
    for turn in [a, b] {
        let outcome = turn.outcome().await;
        completed(&outcome);
    }
    let pool = runtime.pool().await.unwrap();
    assert!(pool.held <= 2 && pool.waiting == 0, "{pool:?}");
    assert_eq!(runtime.agent_spawns(), 3);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_agent_busy_past_spawn_timeout_a_third_fails_pool_exhausted() {
    let world = World::new();
    let runtime = start(&world, &format!("{POOL}\nspawn_timeout = \"500ms\"")).await;
    let [a, b] = busy_a_and_b(&runtime, "!sleep 3000").await;

    let c = tell(&runtime, "c", "hello c").await;
    let TellOutcome::Failed { turn_id, error } = &c else {
        panic!("expected PoolExhausted, got {c:?}");
    };
    assert_eq!(*error, TurnError::PoolExhausted { max: 2 }, "{c:?}");
    assert_eq!(error.code(), ErrorCode::PoolLimitExceeded);
    assert!(counter(&runtime, "pool_exhausted") >= 1);
    let row = runtime.turn(turn_id).unwrap().unwrap();
    assert_eq!(row.status, TurnStatus::Failed);
    assert_eq!(
        row.error.map(|e| e.code),
        Some(ErrorCode::PoolLimitExceeded)
    );
    assert!(!status(&runtime, "c").await.awake);

    // The busy turns were not disturbed.
    for turn in [a, b] {
        let outcome = turn.outcome().await;
        completed(&outcome);
    }
    assert_eq!(runtime.pool().await.unwrap().waiting, 0);
    // Once an agent is idle, C gets its slot.
    completed(&tell(&runtime, "c", "again").await);
    assert_eq!(runtime.pool().await.unwrap().held, 2);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_is_stopped_after_its_idle_timeout_and_a_busy_one_is_not() {
    let world = World::new();
    let idle = "idle_timeout = \"300ms\"";
    let config =
        world.config_with_teams(&[("x", ""), ("a", idle), ("b", idle)], fake_claude(), POOL);
    let runtime = Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap();
    completed(&tell(&runtime, "b", "hello b").await);
    let b_group = pgid(&runtime, "b");
    // A's agent starts idle (its idle timer armed), then runs a turn longer than the timeout.
    completed(&tell(&runtime, "a", "hello a").await);
    let a_agent = runtime
        .get_session(&team("x"), &team("a"))
        .unwrap()
        .unwrap()
        .agent_process
        .unwrap();
    let long = runtime
        .submit(&team("x"), &team("a"), "!sleep 1500")
        .await
        .unwrap();

    until(
        "B's idle agent is stopped",
        Duration::from_secs(5),
        async || !status(&runtime, "b").await.awake,
    )
    .await;
    group_empties(b_group).await;
    stopped_on_record(&runtime, "b").await;
    assert!(counter(&runtime, "idle_stops") >= 1);

    let outcome = long.outcome().await;
    completed(&outcome);
    let after = runtime
        .get_session(&team("x"), &team("a"))
        .unwrap()
        .unwrap()
        .agent_process;
    assert_eq!(
        after,
        Some(a_agent),
        "the busy agent ran its whole turn in the same process"
    );
    assert_eq!(runtime.agent_spawns(), 2);

    // Idle again, A's agent is stopped in turn.
    until(
        "A's idle agent is stopped",
        Duration::from_secs(5),
        async || !status(&runtime, "a").await.awake,
    )
    .await;
    group_empties(a_agent.pgid).await;
    assert!(counter(&runtime, "idle_stops") >= 2);
    until("both slots are free", Duration::from_secs(5), async || {
        runtime.pool().await.unwrap().held == 0
    })
    .await;
    runtime.shutdown(Duration::from_secs(2)).await;
}

/// With eager creation the agent starts when the session is created: the same pool rules apply
/// to that start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_creation_evicts_the_least_recently_used_idle_agent() {
    let world = World::new();
    let runtime = start(&world, "max_processes = 2\nsession_init = \"eager\"").await;
    let x = team("x");
    runtime.get_or_create_session(&x, &team("a")).await.unwrap();
    runtime.get_or_create_session(&x, &team("b")).await.unwrap();
    let a_group = pgid(&runtime, "a");
    let c = runtime.get_or_create_session(&x, &team("c")).await.unwrap();
    assert!(c.agent_process.is_some(), "{c:?}");
    assert!(
        !status(&runtime, "a").await.awake,
        "A was used least recently"
    );
    assert!(status(&runtime, "b").await.awake);
    group_empties(a_group).await;
    assert_eq!(counter(&runtime, "evictions"), 1);
    runtime.shutdown(Duration::from_secs(2)).await;
}

/// With eager creation and every slot busy past `spawn_timeout`, creating the third session
/// fails before any turn exists (a typed `POOL_LIMIT_EXCEEDED` error) and leaves no record.
///
/// Fails today: `SessionActor::pre_start` returns its `RuntimeError` as
/// `.map_err(Box::new)?`, which boxes it twice (`Box<RuntimeError>` is itself an `Error`), so
/// the registry's `unwrap_start_error` cannot downcast it and reports every eager start failure
/// as `PROCESS_ERROR` with the message repeated ("could not start the agent of x->c: could not
/// start the agent of x->c: …").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_creation_with_every_agent_busy_fails_pool_limit_exceeded() {
    let world = World::new();
    let runtime = start(
        &world,
        "max_processes = 2\nsession_init = \"eager\"\nspawn_timeout = \"500ms\"",
    )
    .await;
    let x = team("x");
    let a = runtime.submit(&x, &team("a"), "!sleep 3000").await.unwrap();
    let b = runtime.submit(&x, &team("b"), "!sleep 3000").await.unwrap();
    until(
        "both turns are running",
        Duration::from_secs(5),
        async || {
            let pool = runtime.pool().await.unwrap();
            (pool.held, pool.busy) == (2, 2)
                && status(&runtime, "a").await.busy
                && status(&runtime, "b").await.busy
        },
    )
    .await;
    let err = runtime
        .tell(&x, &team("c"), "hello c", TellOptions::complete())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PoolLimitExceeded, "{err}");
    assert!(runtime.get_session(&x, &team("c")).unwrap().is_none());
    assert!(counter(&runtime, "pool_exhausted") >= 1);
    for turn in [a, b] {
        let outcome = turn.outcome().await;
        completed(&outcome);
    }
    runtime.shutdown(Duration::from_secs(2)).await;
}

/// A pool slot whose agent is already being stopped (here by `sleep`; an idle timeout is the
/// same) frees itself: a request that waits for it must not make the pool ask that holder to
/// stop again and again. The agent ignores SIGTERM and so does its grandchild (the disposition
/// is inherited), so its stop takes about a second (the group sweep's SIGTERM patience).
///
/// Fails today: the session answers the pool's `Evict` with `Declined` when its agent is already
/// retiring (`agent` is `None`), the pool at once asks the same idle holder again, and the two
/// actors spin until the slot is released (tens of thousands of `evictions` in that second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_already_being_freed_is_not_evicted_over_and_over() {
    let world = World::new();
    let runtime = start(&world, "max_processes = 1\nsession_init = \"lazy\"").await;
    completed(&tell(&runtime, "a", "!ignore-sigterm").await);
    completed(&tell(&runtime, "a", "!grandchild").await);
    let a_group = pgid(&runtime, "a");

    let sleeper = runtime.clone();
    let sleep = tokio::spawn(async move { sleeper.sleep(&team("x"), &team("a"), false).await });
    until(
        "A's agent is being stopped",
        Duration::from_secs(5),
        async || !status(&runtime, "a").await.awake,
    )
    .await;
    let c = tell(&runtime, "c", "hello c").await;
    assert!(completed(&c).text.contains("hello c"), "{c:?}");
    sleep.await.unwrap().unwrap();
    group_empties(a_group).await;
    assert!(counter(&runtime, "pool_waits") >= 1);
    let evictions = counter(&runtime, "evictions");
    assert!(
        evictions <= 1,
        "the pool asked the stopping holder to stop {evictions} times"
    );
    runtime.shutdown(Duration::from_secs(2)).await;
}

/// An idle agent that dies is not told to anyone: no turn is reading its output. The periodic
/// health check notices (its process group is gone), frees the slot and records the process
/// stopped; the next tell starts a new agent on the same conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_notices_an_idle_agent_that_died() {
    let world = World::new();
    let runtime = start(&world, "health_check_interval = \"100ms\"").await;
    let (x, a) = (team("x"), team("a"));
    completed(&tell(&runtime, "a", "before").await);
    let record = runtime.get_session(&x, &a).unwrap().unwrap();
    let pgid = record.agent_process.unwrap().pgid;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    until(
        "the dead agent to be noticed",
        Duration::from_secs(5),
        async || !runtime.is_awake(&x, &a).await.unwrap(),
    )
    .await;
    assert!(runtime.metrics().counter("health_failures").unwrap() >= 1);
    // The record is republished a message after the session stops counting itself awake.
    until(
        "the record to say stopped",
        Duration::from_secs(5),
        async || {
            let record = runtime.get_session(&x, &a).unwrap().unwrap();
            record.process_state == ProcessState::Stopped && record.agent_process.is_none()
        },
    )
    .await;
    // The pool hears of the freed slot from the session, a message after the session's own
    // state turned: wait for it rather than race it.
    until("its slot to be freed", Duration::from_secs(5), async || {
        runtime.pool().await.unwrap().held == 0
    })
    .await;
    let after = tell(&runtime, "a", "after").await;
    assert_eq!(completed(&after).text, "echo: after");
    runtime.shutdown(Duration::from_secs(5)).await;
}
