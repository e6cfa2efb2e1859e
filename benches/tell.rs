//! Benchmarks of tells through `iris-runtime` against DESIGN.md ("Numbers we hold ourselves to"),
//! each beside its anchor in the same run.
//!
//! Run with `cargo bench --bench tell` (about a minute on 2 cores, after the build). The agent
//! is fake-claude (release build), which answers every message with an echo. One runtime serves
//! P4 and P7: 10 teams `f0`…`f9` tell 10 teams `g0`…`g9`, so 100 warm sessions, each with its
//! agent spawned (`wake`) and one tell behind it before anything is timed. Settings:
//! `session_init = "eager"` (the default), `passivate_after = "24h"` and `idle_timeout = "24h"`
//! (nothing is passivated or stopped during the run), `max_processes = 256` (no eviction),
//! `queue_depth = 1024`. The store is a redb file in a temporary directory with
//! `Durability::Immediate`. The tokio runtime has 2 worker threads; the agents share the same 2
//! cores.
//!
//! | group | what | anchor | DESIGN |
//! |---|---|---|---|
//! | `p4_round_trip` | `Runtime::tell(f0, g0, msg, TellOptions::complete())` on a warm session, one after the other | `Conversation::turn(msg, None, stall)` on a fake-claude this bench spawned itself (`Conversation::start` of the launch `build_launch` makes for `g0`, so the same argv and environment), no runtime | P4: overhead (runtime p50 − direct p50) ≤ 300 µs |
//! | `p4_throughput` | tells across the 100 warm sessions from 200 tasks taking pairs round-robin from one counter | 100 direct conversations, one task each, turning back to back | P4: ≥ 10k tells/s across 100 warm sessions |
//! | `p7_create_spawn_handshake` | `get_or_create_session` of a new pair (`g*`→`f*`, deleted with its transcript after each timing, untimed, so the next round finds it new), `session_init = "eager"` | `Conversation::start` of fake-claude directly: spawn + `initialize` handshake without the runtime | P7: p50 ≤ 5 ms |
//! | `bookkeeping` | the store writes of one tell as the session actor makes them, from 100 sessions at once: `enqueue(RecordTurn{process state, current turn, running row})` (the turn starts at once: nothing runs ahead of it, so no `queued` row), then `record_turn(changes, completed row, retain)` awaited (its end); default group-commit store | the same on `Store::open_with(path, StoreOptions { max_batch: 1, .. })`: one commit per write | ≤ 30 µs amortized per tell, ≥ 30k tells/s (the original did ~13 SQLite statements per tell) |
//!
//! **What a tell's latency includes.** `tell` returns only after the turn's bookkeeping is
//! durable: the session actor queues its completion write (`Store::send`, one redb commit with
//! `Durability::Immediate`, an fsync) and a task it owns publishes the outcome once that write
//! is acknowledged. The turn's `running` row
//! and process-state note (one write; a turn that must wait behind another also gets a `queued`
//! row) are queued without waiting and linger in the store's writer (`StoreOptions::linger`, 2 ms)
//! until that awaited commit takes them along. So P4's runtime figure includes one fsync and the
//! anchor none. The verdict is on the overhead as it is, fsync included; to show where the
//! difference goes, the summary also prints the store commits per tell, the runtime's own
//! metrics (queue wait, and turn time from message sent to result as the worker sees it), and
//! one `record_turn` awaited alone on a store of its own on the same file system, timed in the
//! same loop (one fsync'd commit: the durable floor), with the overhead minus it. Under load the
//! fsyncs of many sessions share one commit (group commit), which is what P4's throughput and
//! `bookkeeping` measure.
//!
//! **P7** includes one durable commit: the record's creation. The launched agent's process mark
//! and debug fields are written without waiting (they are transient: start-up resets them, and
//! the guardian covers a mark lost in a crash). The direct anchor writes nothing. Deletion
//! (stopping the agent, deleting the record and the transcript) and the anchor's stop happen
//! outside the timings.
//!
//! **`bookkeeping`** is every store write the session actor makes for one tell that completes on
//! a warm agent with nothing queued ahead: the turn's start (`Mutation::RecordTurn` with
//! `SetProcessState(Processing)`, `SetCurrentTurn` and the `running` row, not awaited) and its
//! end (`record_turn`, awaited), whose changes are those of a completed turn on a live agent
//! (current turn cleared, process state `idle`, last use, last response, usage, message count).
//! Each session's task awaits its `record_turn` before its next tell, as a caller awaiting its
//! reply does (the actor itself starts the next turn without waiting). Each
//! variant has its own store, kept across its runs: the group-commit store passes the default
//! retention (200 rows per session) during its runs, so pruning is included; the anchor's few
//! tells never reach it. The anchor (`max_batch: 1`) commits every write alone.
//!
//! Environment:
//! - `IRIS_BENCH_QUICK=1`: a smoke run with small counts (3 × 3 sessions, 20 creations, 10
//!   sessions of bookkeeping) and short measurement times. Its figures are not the DESIGN
//!   figures. `cargo test --benches` (test mode) uses the quick counts too.
//!
//! After criterion's report, a plain summary prints each figure with its anchor and the ratio:
//! P4 and P7 latencies from fixed runs timed call by call with `Instant`, the runtime and the
//! anchor interleaved call by call (so drift hits both alike); the P4 and bookkeeping rates from
//! the timed runs of the criterion groups above.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

/// The budget day the bookkeeping benchmark counts spend in, as the session actor does.
const BENCH_DAY: u32 = 20_000;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{Tally, fake_claude_binary, rate, tallied, tallied_runs, verdict};
use std::cell::{Cell, OnceCell};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use iris::agent::command::{self, LaunchOptions};
use iris::agent::conversation::{ConfiguredPolicy, Conversation, ConversationOptions};
use iris::agent::process::StopGrace;
use iris::core::config::{Config, Settings};
use iris::core::{TurnId, TurnRecord, TurnStatus, UsageTotals};
use iris::runtime::metrics::MetricsSnapshot;
use iris::runtime::{Runtime, TellOptions, TellOutcome};
use iris::store::{Change, Mutation, StoreOptions};
use iris::{Pair, ProcessState, SessionId, SessionRecord, Store, TeamName, Timestamp};
use support::World;
use tempfile::TempDir;
use tokio::runtime::Runtime as Tokio;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// The message of every tell and turn (not a fake-claude `!directive`: it is echoed).
const MESSAGE: &str =
    "Please summarize the open review comments on the tell path and reply briefly.";
/// Concurrent telling tasks per warm session in `p4_throughput`.
const TASKS_PER_SESSION: usize = 2;
/// The settings of the benchmark's runtime (appended to `[settings]`).
const SETTINGS: &str = "passivate_after = \"24h\"\nidle_timeout = \"24h\"\n\
                        max_processes = 256\nqueue_depth = 1024\nsession_init = \"eager\"";

/// The counts of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// P4 and P7: `teams` senders × `teams` receivers warm sessions (and as many new pairs the
    /// other way round for P7).
    teams: usize,
    /// P4: tells (and direct turns) of the summary's call-by-call latency run.
    p4_calls: usize,
    /// P4 throughput: tells (and direct turns) per timed run.
    p4_tells_per_run: usize,
    /// P7: creations (and direct starts) of the summary's call-by-call run.
    p7_calls: usize,
    /// Bookkeeping: sessions writing at once.
    book_sessions: usize,
    /// Bookkeeping: tells per session per timed run, group commit and anchor.
    book_tells: usize,
    book_anchor_tells: usize,
    warm_up: Duration,
    measurement: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            teams: 10,
            p4_calls: 2_000,
            p4_tells_per_run: 4_000,
            p7_calls: 200,
            book_sessions: 100,
            book_tells: 30,
            book_anchor_tells: 1,
            warm_up: Duration::from_millis(500),
            measurement: Duration::from_secs(3),
        }
    }

    fn quick() -> Sizes {
        Sizes {
            teams: 3,
            p4_calls: 100,
            p4_tells_per_run: 200,
            p7_calls: 20,
            book_sessions: 10,
            book_tells: 10,
            book_anchor_tells: 2,
            warm_up: Duration::from_millis(100),
            measurement: Duration::from_millis(500),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // As criterion decides: without `--bench` (e.g. `cargo test --benches`) it only tests.
    let test_mode = has("--test") || !has("--bench");
    let list_mode = has("--list");
    let quick = std::env::var("IRIS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes = if quick || test_mode {
        Sizes::quick()
    } else {
        Sizes::full()
    };

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(sizes.warm_up)
        .measurement_time(sizes.measurement)
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scene = OnceCell::new();

    bench_p4(&mut c, &rt, &scene, sizes);
    bench_p7(&mut c, &rt, &scene, sizes);
    bench_bookkeeping(&mut c, &rt, sizes);
    c.final_summary();
    if !list_mode {
        summary(&rt, &scene, sizes, quick || test_mode);
    }
    if let Some(scene) = scene.into_inner() {
        rt.block_on(scene.shut_down());
    }
}

// ----- the scene: a runtime with warm sessions, and direct conversations beside it -----

/// One agent process's launch as the runtime builds it for `to`, started directly.
async fn start_direct(config: &Config, to: &TeamName) -> Conversation {
    let team = config.team(to).unwrap();
    let agent = config.agent_for(to).unwrap();
    let launch = command::build_launch(
        to,
        team,
        &agent,
        &command::Conversation::New(SessionId::new_v4()),
        &LaunchOptions::default(),
    )
    .unwrap();
    let policy = Arc::new(ConfiguredPolicy::new(
        team.grant_permission,
        team.allowed_tools.clone(),
        team.disallowed_tools.clone(),
    ));
    let options = ConversationOptions {
        spawn_timeout: config.settings().spawn_timeout,
        ..ConversationOptions::default()
    };
    Conversation::start(launch.to_command(), policy, options)
        .await
        .unwrap()
}

fn quick_stop() -> StopGrace {
    StopGrace {
        after_stdin_close: Duration::from_secs(2),
        after_sigterm: Duration::from_millis(500),
        after_sigkill: Duration::from_secs(2),
    }
}

/// The runtime of P4 and P7 and the direct conversations of their anchors.
struct Scene {
    _world: World,
    config: Config,
    store: Store,
    runtime: Runtime,
    /// `f*`→`g*`: warm sessions (agent up, one tell done).
    warm: Arc<Vec<(TeamName, TeamName)>>,
    /// `g*`→`f*`: pairs without a session, taken in turn by P7 (and deleted again).
    fresh: Vec<(TeamName, TeamName)>,
    next_fresh: Cell<usize>,
    /// One direct fake-claude per warm pair, launched as the runtime launches its `to` team.
    direct: Vec<Arc<Mutex<Conversation>>>,
    stall: Duration,
}

impl Scene {
    fn new(rt: &Tokio, teams: usize) -> Scene {
        let world = World::new();
        let from: Vec<String> = (0..teams).map(|i| format!("f{i}")).collect();
        let to: Vec<String> = (0..teams).map(|i| format!("g{i}")).collect();
        let names: Vec<&str> = from.iter().chain(&to).map(String::as_str).collect();
        let config = world.config(&names, &fake_claude_binary(), SETTINGS);
        let store = Store::open(world.db_path()).unwrap();
        let runtime = rt
            .block_on(Runtime::start(config.clone(), store.clone()))
            .unwrap();
        let team = |n: &String| TeamName::new(n.as_str()).unwrap();
        let cross = |a: &[String], b: &[String]| -> Vec<(TeamName, TeamName)> {
            a.iter()
                .flat_map(|x| b.iter().map(|y| (team(x), team(y))))
                .collect()
        };
        let warm = Arc::new(cross(&from, &to));
        let fresh = cross(&to, &from);
        let stall = config.settings().response_timeout;
        let direct = rt.block_on(async {
            // Wake every warm pair (spawn + handshake), then one tell each, concurrently.
            let mut set = JoinSet::new();
            for (from, to) in warm.iter() {
                let (runtime, from, to) = (runtime.clone(), from.clone(), to.clone());
                set.spawn(async move {
                    runtime.wake(&from, &to).await.unwrap();
                    tell_once(&runtime, &from, &to).await;
                });
            }
            while let Some(done) = set.join_next().await {
                done.unwrap();
            }
            let mut direct = Vec::with_capacity(warm.len());
            for (_, to) in warm.iter() {
                let mut conversation = start_direct(&config, to).await;
                direct_turn(&mut conversation, stall).await;
                direct.push(Arc::new(Mutex::new(conversation)));
            }
            direct
        });
        assert_eq!(runtime.live_sessions(), warm.len());
        assert_eq!(runtime.agent_spawns(), warm.len() as u64);
        Scene {
            _world: world,
            config,
            store,
            runtime,
            warm,
            fresh,
            next_fresh: Cell::new(0),
            direct,
            stall,
        }
    }

    /// The next P7 pair (a round robin over the `g*`→`f*` pairs, each deleted after its use).
    fn fresh_pair(&self) -> &(TeamName, TeamName) {
        let i = self.next_fresh.get();
        self.next_fresh.set(i + 1);
        &self.fresh[i % self.fresh.len()]
    }

    async fn shut_down(self) {
        self.runtime.shutdown(Duration::from_secs(2)).await;
        for conversation in &self.direct {
            conversation.lock().await.stop(quick_stop()).await;
        }
    }
}

async fn tell_once(runtime: &Runtime, from: &TeamName, to: &TeamName) {
    match runtime
        .tell(from, to, MESSAGE, TellOptions::complete())
        .await
        .unwrap()
    {
        TellOutcome::Completed(result) => {
            debug_assert!(result.text.ends_with(MESSAGE));
            black_box(result);
        }
        other => panic!("the tell {from}->{to} did not complete: {other:?}"),
    }
}

async fn direct_turn(conversation: &mut Conversation, stall: Duration) {
    let report = conversation.turn(MESSAGE, None, stall).await.unwrap();
    assert!(!report.failed(), "the direct turn failed: {report:?}");
    black_box(report);
}

// ----- P4 -----

/// `calls` tells to the first warm pair, one after the other, from a task on a worker thread.
fn runtime_tells_in_sequence(rt: &Tokio, scene: &Scene, calls: u64) -> Duration {
    let (runtime, warm) = (scene.runtime.clone(), scene.warm.clone());
    rt.block_on(rt.spawn(async move {
        let (from, to) = &warm[0];
        let start = Instant::now();
        for _ in 0..calls {
            tell_once(&runtime, from, to).await;
        }
        start.elapsed()
    }))
    .unwrap()
}

/// `calls` turns on the first direct conversation, one after the other, from a task on a worker
/// thread.
fn direct_turns_in_sequence(rt: &Tokio, scene: &Scene, calls: u64) -> Duration {
    let (conversation, stall) = (scene.direct[0].clone(), scene.stall);
    rt.block_on(rt.spawn(async move {
        let mut conversation = conversation.lock().await;
        let start = Instant::now();
        for _ in 0..calls {
            direct_turn(&mut conversation, stall).await;
        }
        start.elapsed()
    }))
    .unwrap()
}

/// `tells` tells across every warm pair from `TASKS_PER_SESSION` tasks per pair, each taking the
/// next pair from one counter; the wall time from the first spawn to the last outcome.
fn runtime_throughput(rt: &Tokio, scene: &Scene, tells: usize) -> Duration {
    rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..scene.warm.len() * TASKS_PER_SESSION {
            let (runtime, warm, next) = (scene.runtime.clone(), scene.warm.clone(), next.clone());
            set.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tells {
                        break;
                    }
                    let (from, to) = &warm[i % warm.len()];
                    tell_once(&runtime, from, to).await;
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        start.elapsed()
    })
}

/// `turns` turns across every direct conversation, one task per conversation turning back to
/// back; the wall time from the first spawn to the last result.
fn direct_throughput(rt: &Tokio, scene: &Scene, turns: usize) -> Duration {
    rt.block_on(async {
        let n = scene.direct.len();
        let start = Instant::now();
        let mut set = JoinSet::new();
        for (k, conversation) in scene.direct.iter().enumerate() {
            let share = turns / n + usize::from(k < turns % n);
            let (conversation, stall) = (conversation.clone(), scene.stall);
            set.spawn(async move {
                let mut conversation = conversation.lock().await;
                for _ in 0..share {
                    direct_turn(&mut conversation, stall).await;
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        start.elapsed()
    })
}

fn bench_p4<'s>(c: &mut Criterion, rt: &Tokio, scene: &'s OnceCell<Scene>, sizes: Sizes) {
    let fixture = || -> &'s Scene { scene.get_or_init(|| Scene::new(rt, sizes.teams)) };

    let mut group = c.benchmark_group("p4_round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("runtime_tell", |b| {
        let scene = fixture();
        b.iter_custom(|iters| runtime_tells_in_sequence(rt, scene, iters));
    });
    group.bench_function("direct_turn", |b| {
        let scene = fixture();
        b.iter_custom(|iters| direct_turns_in_sequence(rt, scene, iters));
    });
    group.finish();

    let mut group = common::heavy_group(c, "p4_throughput");
    let per_run = sizes.p4_tells_per_run;
    group.throughput(Throughput::Elements(per_run as u64));
    group.bench_function(BenchmarkId::new("runtime_tells", per_run), |b| {
        let scene = fixture();
        b.iter_custom(|iters| {
            tallied_runs("p4_throughput/runtime_tells", per_run as u64, iters, || {
                let batches = scene.store.writer_stats().batches;
                let elapsed = runtime_throughput(rt, scene, per_run);
                (elapsed, Some(scene.store.writer_stats().batches - batches))
            })
        });
    });
    group.bench_function(BenchmarkId::new("direct_turns", per_run), |b| {
        let scene = fixture();
        b.iter_custom(|iters| {
            tallied_runs("p4_throughput/direct_turns", per_run as u64, iters, || {
                (direct_throughput(rt, scene, per_run), None)
            })
        });
    });
    group.finish();
}

// ----- P7 -----

/// Creates the next fresh pair's session (timed: agent spawned and handshake done before it
/// returns), then deletes it with its transcript (untimed).
async fn create_fresh(scene: &Scene, pair: &(TeamName, TeamName)) -> Duration {
    let (from, to) = pair;
    let spawns = scene.runtime.agent_spawns();
    let start = Instant::now();
    let record = scene.runtime.get_or_create_session(from, to).await.unwrap();
    let took = start.elapsed();
    assert_eq!(
        scene.runtime.agent_spawns(),
        spawns + 1,
        "eager creation spawns the agent before it answers"
    );
    let deleted = scene
        .runtime
        .delete_session(&record.session_id, true)
        .await
        .unwrap();
    assert!(deleted.deleted.is_some());
    took
}

/// Starts a direct fake-claude for `to` (timed), then stops it (untimed).
async fn start_fresh_direct(scene: &Scene, to: &TeamName) -> Duration {
    let start = Instant::now();
    let mut conversation = start_direct(&scene.config, to).await;
    let took = start.elapsed();
    conversation.stop(quick_stop()).await;
    took
}

fn bench_p7<'s>(c: &mut Criterion, rt: &Tokio, scene: &'s OnceCell<Scene>, sizes: Sizes) {
    let fixture = || -> &'s Scene { scene.get_or_init(|| Scene::new(rt, sizes.teams)) };
    let mut group = c.benchmark_group("p7_create_spawn_handshake");
    group.throughput(Throughput::Elements(1));
    // Each timing leaves untimed work behind it (a deletion, a stop): keep the budget small.
    group.measurement_time(sizes.measurement / 2);
    group.bench_function("runtime_get_or_create_new_pair", |b| {
        let scene = fixture();
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let pair = scene.fresh_pair().clone();
                timed += rt.block_on(create_fresh(scene, &pair));
            }
            timed
        });
    });
    group.bench_function("direct_conversation_start", |b| {
        let scene = fixture();
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let to = scene.fresh_pair().1.clone();
                timed += rt.block_on(start_fresh_direct(scene, &to));
            }
            timed
        });
    });
    group.finish();
}

// ----- bookkeeping -----

/// A store with `sessions` sessions and the next turn number of each.
struct Ledger {
    _dir: TempDir,
    store: Store,
    sessions: Arc<Vec<(SessionId, TeamName)>>,
    seqs: Arc<Vec<AtomicU64>>,
}

impl Ledger {
    fn new(rt: &Tokio, sessions: usize, options: StoreOptions) -> Ledger {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path().join("iris.redb"), options).unwrap();
        let to = TeamName::new("peer").unwrap();
        let now = Timestamp::now();
        let records: Vec<SessionRecord> = (0..sessions)
            .map(|i| {
                let from = TeamName::new(format!("s{i:03}")).unwrap();
                SessionRecord::new(Pair::new(from, to.clone()), SessionId::new_v4(), now)
            })
            .collect();
        let records = rt.block_on(store.create_many(records)).unwrap();
        let sessions = records
            .iter()
            .map(|r| (r.session_id, r.pair().from.clone()))
            .collect();
        let seqs = (0..records.len()).map(|_| AtomicU64::new(0)).collect();
        Ledger {
            _dir: dir,
            store,
            sessions: Arc::new(sessions),
            seqs: Arc::new(seqs),
        }
    }
}

/// The store writes of one completed tell, in the order and form the session actor makes them.
async fn bookkeep_one(store: &Store, session_id: SessionId, from: &TeamName, seq: u64) {
    let text_limit = Settings::DEFAULT_TURN_TEXT_LIMIT.get();
    let retain = Settings::DEFAULT_TURN_RETENTION.get() as u64;
    let turn_id = TurnId::new();
    // The tell finds nothing running, so the turn starts at once: no `queued` row, and one
    // unawaited write for the `running` row and the record's transient state.
    let mut running = TurnRecord::queued(
        session_id,
        seq,
        turn_id,
        from.clone(),
        MESSAGE,
        text_limit,
        Timestamp::now(),
    );
    running.status = TurnStatus::Running;
    running.started_at = Some(Timestamp::now());
    store
        .enqueue(Mutation::RecordTurn {
            session_id,
            changes: vec![
                Change::SetProcessState(ProcessState::Processing),
                Change::SetCurrentTurn(Some(turn_id)),
            ],
            turn: running.clone(),
            retain,
            spend_day: None,
        })
        .await
        .unwrap();
    // The turn ends: the record's changes and the completed row in one durable write, awaited.
    let (changes, completed) = completion(running);
    black_box(
        store
            .record_turn(session_id, changes, completed, retain, Some(BENCH_DAY))
            .await
            .unwrap(),
    );
}

/// The record's changes and the final row of a turn that completed on a live agent, as the
/// session actor books them.
fn completion(running: TurnRecord) -> (Vec<Change>, TurnRecord) {
    let now = Timestamp::now();
    let usage = UsageTotals {
        cost_usd: 0.0012,
        input_tokens: 120,
        output_tokens: 40,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 800,
    };
    let mut completed = running;
    completed.status = TurnStatus::Completed;
    completed.finished_at = Some(now);
    completed.set_text(
        &format!("echo: {MESSAGE}"),
        Settings::DEFAULT_TURN_TEXT_LIMIT.get(),
    );
    completed.subtype = Some("success".to_owned());
    completed.usage = usage;
    completed.duration_ms = Some(1);
    completed.num_turns = Some(1);
    let changes = vec![
        Change::SetCurrentTurn(None),
        Change::SetProcessState(ProcessState::Idle),
        Change::TouchLastUsed(now),
        Change::SetLastResponse(now),
        Change::AddUsage(usage),
        Change::IncrementMessageCount(1),
    ];
    (changes, completed)
}

/// One `record_turn` of a completed turn, awaited alone: a single durable commit (fsync), the
/// floor under a tell's round trip.
async fn lone_commit(store: &Store, session_id: SessionId, from: &TeamName, seq: u64) {
    let mut running = TurnRecord::queued(
        session_id,
        seq,
        TurnId::new(),
        from.clone(),
        MESSAGE,
        Settings::DEFAULT_TURN_TEXT_LIMIT.get(),
        Timestamp::now(),
    );
    running.status = TurnStatus::Running;
    running.started_at = Some(Timestamp::now());
    let (changes, completed) = completion(running);
    let retain = Settings::DEFAULT_TURN_RETENTION.get() as u64;
    black_box(
        store
            .record_turn(session_id, changes, completed, retain, Some(BENCH_DAY))
            .await
            .unwrap(),
    );
}

/// `tells` tells' bookkeeping in every session at once (one task per session, each awaiting its
/// `record_turn` before its next tell). Returns the wall time and the commits made.
fn bookkeeping_run(rt: &Tokio, ledger: &Ledger, tells: usize) -> (Duration, u64) {
    let batches = ledger.store.writer_stats().batches;
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let mut set = JoinSet::new();
        for k in 0..ledger.sessions.len() {
            let (store, sessions, seqs) = (
                ledger.store.clone(),
                ledger.sessions.clone(),
                ledger.seqs.clone(),
            );
            set.spawn(async move {
                let (session_id, from) = &sessions[k];
                for _ in 0..tells {
                    let seq = seqs[k].fetch_add(1, Ordering::Relaxed) + 1;
                    bookkeep_one(&store, *session_id, from, seq).await;
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        start.elapsed()
    });
    (elapsed, ledger.store.writer_stats().batches - batches)
}

fn bench_bookkeeping(c: &mut Criterion, rt: &Tokio, sizes: Sizes) {
    let mut group = common::heavy_group(c, "bookkeeping");
    for (id, max_batch, tells) in [
        (
            "group_commit",
            StoreOptions::default().max_batch,
            sizes.book_tells,
        ),
        ("one_commit_per_write", 1, sizes.book_anchor_tells),
    ] {
        let options = StoreOptions {
            max_batch,
            ..StoreOptions::default()
        };
        let per_run = sizes.book_sessions * tells;
        let mut ledger = None;
        group.throughput(Throughput::Elements(per_run as u64));
        group.bench_function(BenchmarkId::new(id, per_run), |b| {
            let ledger =
                ledger.get_or_insert_with(|| Ledger::new(rt, sizes.book_sessions, options));
            b.iter_custom(|iters| {
                tallied_runs(&format!("bookkeeping/{id}"), per_run as u64, iters, || {
                    let (elapsed, commits) = bookkeeping_run(rt, ledger, tells);
                    (elapsed, Some(commits))
                })
            });
        });
    }
    group.finish();
}

// ----- summary -----

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let n = samples.len();
    (samples[n / 2], samples[(n * 99 / 100).min(n - 1)])
}

/// The mean of a histogram's observations between two snapshots, and their count.
fn mean_between(before: &MetricsSnapshot, after: &MetricsSnapshot, name: &str) -> (Duration, u64) {
    let find = |s: &MetricsSnapshot| {
        s.histograms
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| (h.sum_us, h.count()))
            .unwrap_or_default()
    };
    let ((sum0, n0), (sum1, n1)) = (find(before), find(after));
    let n = n1 - n0;
    (Duration::from_micros((sum1 - sum0) / n.max(1)), n)
}

fn signed_us(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e6
}

fn summary(rt: &Tokio, scene: &OnceCell<Scene>, sizes: Sizes, quick: bool) {
    println!();
    println!("==== iris tell summary (ratios from this run; DESIGN targets in brackets) ====");
    if quick {
        println!("(quick run: small counts, not the DESIGN figures)");
    }
    let scene = scene.get_or_init(|| Scene::new(rt, sizes.teams));
    let warm = scene.warm.len();

    // P4 latency: a tell and a direct turn, interleaved, each timed on its own.
    let metrics_before = scene.runtime.metrics();
    let batches_before = scene.store.writer_stats().batches;
    let floor = Ledger::new(rt, 1, StoreOptions::default());
    let (tells, turns, lone) = {
        let (runtime, warm_pairs) = (scene.runtime.clone(), scene.warm.clone());
        let (store, sessions) = (floor.store.clone(), floor.sessions.clone());
        let (conversation, stall, calls) = (scene.direct[0].clone(), scene.stall, sizes.p4_calls);
        rt.block_on(rt.spawn(async move {
            let (from, to) = &warm_pairs[0];
            let mut conversation = conversation.lock().await;
            let (session_id, writer) = &sessions[0];
            let (mut tells, mut turns) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
            let mut lone = Vec::with_capacity(calls);
            for seq in 1..=calls as u64 {
                let start = Instant::now();
                tell_once(&runtime, from, to).await;
                tells.push(start.elapsed());
                let start = Instant::now();
                direct_turn(&mut conversation, stall).await;
                turns.push(start.elapsed());
                let start = Instant::now();
                lone_commit(&store, *session_id, writer, seq).await;
                lone.push(start.elapsed());
            }
            (tells, turns, lone)
        }))
        .unwrap()
    };
    let commits = scene.store.writer_stats().batches - batches_before;
    let metrics_after = scene.runtime.metrics();
    let (queue_wait, _) = mean_between(&metrics_before, &metrics_after, "queue_wait");
    let (turn_time, _) = mean_between(&metrics_before, &metrics_after, "turn_time");
    let (t50, t99) = percentiles(tells);
    let (d50, d99) = percentiles(turns);
    let (l50, l99) = percentiles(lone);
    let overhead = signed_us(t50, d50);
    println!(
        "P4 tell round trip, warm session, fake-claude echo ({} calls, interleaved with the anchor; each tell waits for its fsync'd commit): runtime p50 {t50:.1?}, p99 {t99:.1?} vs direct turn p50 {d50:.1?}, p99 {d99:.1?}; overhead p50 {overhead:.0} µs (p99 {:.0} µs), runtime / direct = {:.2}x at p50 [overhead p50 <= 300 µs: {}]",
        sizes.p4_calls,
        signed_us(t99, d99),
        t50.as_secs_f64() / d50.as_secs_f64(),
        verdict(overhead <= 300.0),
    );
    println!(
        "P4   where it goes: {:.2} store commits per tell; one record_turn awaited alone (one fsync'd commit, same loop) p50 {l50:.1?}, p99 {l99:.1?}, so overhead p50 minus one commit p50 = {:.0} µs; the runtime's own metrics over these tells: mean queue wait {queue_wait:.1?}, mean turn time (message sent -> result, in the worker) {turn_time:.1?}",
        commits as f64 / sizes.p4_calls as f64,
        overhead - l50.as_secs_f64() * 1e6,
    );

    if let (Some(runtime), Some(direct)) = (
        tallied("p4_throughput/runtime_tells"),
        tallied("p4_throughput/direct_turns"),
    ) {
        println!(
            "P4 throughput across {warm} warm sessions, {} tasks round-robin: {} ({} tells in {} runs, {:.1} tells per commit) vs direct turns on {warm} conversations, one task each: {} = {:.2}x [>= 10k tells/s across 100 warm sessions: {}]",
            warm * TASKS_PER_SESSION,
            rate(runtime.per_second()),
            runtime.elements,
            runtime.runs,
            runtime.elements as f64 / runtime.commits.max(1) as f64,
            rate(direct.per_second()),
            runtime.per_second() / direct.per_second(),
            verdict(runtime.per_second() >= 10_000.0),
        );
    }

    // P7: a new pair's eager creation and a direct start, interleaved, each timed on its own.
    let metrics_before = scene.runtime.metrics();
    let (mut creations, mut starts) = (Vec::new(), Vec::new());
    let mut create_commits = 0;
    rt.block_on(async {
        for _ in 0..sizes.p7_calls {
            let pair = scene.fresh_pair().clone();
            let (from, to) = &pair;
            let batches = scene.store.writer_stats().batches;
            let start = Instant::now();
            let record = scene.runtime.get_or_create_session(from, to).await.unwrap();
            creations.push(start.elapsed());
            create_commits += scene.store.writer_stats().batches - batches;
            scene
                .runtime
                .delete_session(&record.session_id, true)
                .await
                .unwrap();
            starts.push(start_fresh_direct(scene, to).await);
        }
    });
    let metrics_after = scene.runtime.metrics();
    let (spawn_time, spawned) = mean_between(&metrics_before, &metrics_after, "spawn_time");
    assert_eq!(spawned, sizes.p7_calls as u64);
    let (c50, c99) = percentiles(creations);
    let (s50, s99) = percentiles(starts);
    println!(
        "P7 create + spawn + handshake of a new pair, eager ({} calls, interleaved with the anchor): get_or_create_session p50 {c50:.2?}, p99 {c99:.2?} vs Conversation::start p50 {s50:.2?}, p99 {s99:.2?} = {:.2}x at p50, overhead p50 {:.0} µs [p50 <= 5 ms: {}]",
        sizes.p7_calls,
        c50.as_secs_f64() / s50.as_secs_f64(),
        signed_us(c50, s50),
        verdict(c50 <= Duration::from_millis(5)),
    );
    println!(
        "P7   where it goes: {:.2} store commits per creation; the runtime's own mean spawn + handshake {spawn_time:.2?}",
        create_commits as f64 / sizes.p7_calls as f64,
    );

    if let (Some(group), Some(anchor)) = (
        tallied("bookkeeping/group_commit"),
        tallied("bookkeeping/one_commit_per_write"),
    ) {
        let per_tell = |t: &Tally| t.elapsed.as_secs_f64() * 1e6 / t.elements as f64;
        let per_commit = |t: &Tally| t.elements as f64 / t.commits.max(1) as f64;
        println!(
            "Bookkeeping per tell (2 writes, the last awaited), {} sessions at once: {:.1} µs amortized, {} ({} tells in {} runs, {:.1} tells per commit) [<= 30 µs amortized: {}; >= 30k tells/s: {}]",
            sizes.book_sessions,
            per_tell(&group),
            rate(group.per_second()),
            group.elements,
            group.runs,
            per_commit(&group),
            verdict(per_tell(&group) <= 30.0),
            verdict(group.per_second() >= 30_000.0),
        );
        println!(
            "Bookkeeping anchor, one commit per write: {:.1} µs amortized, {} ({} tells in {} runs, {:.2} tells per commit); group commit / anchor = {:.1}x",
            per_tell(&anchor),
            rate(anchor.per_second()),
            anchor.elements,
            anchor.runs,
            per_commit(&anchor),
            group.per_second() / anchor.per_second(),
        );
    }
}
