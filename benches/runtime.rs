//! Benchmarks of `iris-runtime` against DESIGN.md ("Numbers we hold ourselves to"), each beside
//! its anchor in the same run.
//!
//! Run with `cargo bench --bench runtime` (a few minutes on 2 cores). Every runtime uses
//! `session_init = "lazy"`, so no agent process is ever started, `passivate_after = "24h"`, so
//! every session stays live for the whole run, and a redb file in a temporary directory
//! (`Durability::Immediate`, so creations include fsync). The tokio runtime has 2 worker threads.
//!
//! | group | what | anchor | DESIGN |
//! |---|---|---|---|
//! | `p1_latency` | `Runtime::get_or_create_session` of a live pair (10k live pairs), one task awaiting one call after the other | the same lookup through the registry's mailbox | P1: p50 ≤ 2 µs |
//! | `p1_throughput_2_tasks` | the same, from 2 tasks on the 2 worker threads | the same | P1: ≥ 1M/s |
//! | `p2_concurrent_creations` | 10,000 distinct pairs (100 teams → 100×100) created at once, one task per pair, through `get_or_create_session` on a fresh store and runtime per run | the same with `StoreOptions { max_batch: 1 }`: one commit per creation | P2: ≥ 20k/s |
//! | P5 (not criterion) | RSS per live idle session over 317² = 100,489 sessions | as many bare ractor actors (no state, no messages) | P5: ≤ 4 KiB |
//!
//! **The P1 anchor.** The runtime has no public "look up through the registry" call, but
//! `Runtime::create_session` of a pair that is live takes exactly that path: a `ractor` call to
//! the Registry actor, which checks both teams, finds the pair's `Slot::Live` in its `HashMap`,
//! loads the record snapshot and replies (with `AlreadyExists`, carrying the session id, instead
//! of the record). So the anchor is the real registry round trip, not an imitation; every anchor
//! call asserts that the answer is `AlreadyExists`. Both paths are called from tokio tasks on the
//! worker threads, as a node's request handlers would call them.
//!
//! **P5** runs in child processes of this binary (so that memory freed by the criterion groups
//! cannot be reused and hide the growth). RSS is `VmRSS` of `/proc/self/status`, the same figure
//! as `/proc/self/statm`'s resident pages × page size; the figure is (after − before) / sessions.
//! It covers everything one more live idle session costs: the ractor actor (its tokio task and
//! channels), the `SessionActor` state, the `ArcSwap`'d record snapshot, the `DashMap` entry of
//! the published map, the registry's `HashMap` entries, and whatever else an idle session holds
//! at the time (such as a pending passivation timer). Two variants:
//! - `preloaded` (the P5 figure): the records are created in the store first (`create_many`) and
//!   read once each, so redb's page cache is warm before the first reading; bringing the sessions
//!   up then only loads records and starts actors.
//! - `created`: the sessions are created through `get_or_create_session` between the two
//!   readings, so the figure also includes the store's growth (redb's cache of the new pages).
//! - `bare_actor` (the anchor): as many ractor actors with no state, linked to one supervisor,
//!   spawned the same way. It is the floor any actor-per-session design pays with ractor 0.16:
//!   each actor preallocates two unbounded tokio channels (a 32-slot block each; the
//!   supervision channel's slots are 80 bytes) besides its task.
//!
//! Sessions are brought up by 256 concurrent tasks (not one task per pair, so that the transient
//! memory of 100k waiting tasks does not count).
//!
//! Environment:
//! - `IRIS_BENCH_QUICK=1`: a smoke run with small counts (P1 on 100 live pairs, P2 on 20×20 =
//!   400 creations, P5 on 32² = 1,024 sessions) and short measurement times. The figures of a
//!   quick run are not the DESIGN figures. `cargo test --benches` (test mode) uses the quick
//!   counts too.
//! - `IRIS_BENCH_RSS=0` skips P5 (for example when filtering to one criterion group).
//!
//! After criterion's report, a plain summary prints each figure with its anchor and the ratio:
//! P1 latencies from fixed runs timed call by call with `Instant` (which adds its own ~20 ns),
//! P1 and P2 rates from the timed runs of the criterion groups above.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use common::{Tally, rate, tallied, tallied_runs, tally, verdict};
use std::cell::OnceCell;
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use iris::core::config::Config;
use iris::runtime::{Runtime, RuntimeError};
use iris::store::StoreOptions;
use iris::{Pair, SessionId, SessionRecord, Store, TeamName, Timestamp};
use tempfile::TempDir;
use tokio::runtime::Runtime as Tokio;
use tokio::task::JoinSet;

/// Set (to the variant) in the child processes that measure P5.
const RSS_CHILD_ENV: &str = "IRIS_BENCH_RSS_CHILD";
/// How many teams a P5 child configures (it brings up teams² sessions).
const RSS_TEAMS_ENV: &str = "IRIS_BENCH_RSS_TEAMS";
/// Concurrent tasks that bring sessions up for P5 (and for the P1 fixture).
const BRING_UP_TASKS: usize = 256;
/// Records per `create_many` transaction when preloading a store.
const PRELOAD_CHUNK: usize = 50_000;

/// The counts of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// P1: live pairs are `p1_teams²`.
    p1_teams: usize,
    /// P1: calls of the fixed, call-by-call timed runs of the summary.
    p1_fast_calls: usize,
    p1_registry_calls: usize,
    /// P2: creations per run are `p2_teams²`, for the group-commit store and for the anchor.
    p2_teams: usize,
    p2_anchor_teams: usize,
    /// P5: sessions are `p5_teams²`.
    p5_teams: usize,
    warm_up: Duration,
    measurement: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            p1_teams: 100,
            p1_fast_calls: 200_000,
            p1_registry_calls: 50_000,
            p2_teams: 100,
            p2_anchor_teams: 100,
            p5_teams: 317,
            warm_up: Duration::from_millis(500),
            measurement: Duration::from_secs(3),
        }
    }

    fn quick() -> Sizes {
        Sizes {
            p1_teams: 10,
            p1_fast_calls: 10_000,
            p1_registry_calls: 2_000,
            p2_teams: 20,
            p2_anchor_teams: 20,
            p5_teams: 32,
            warm_up: Duration::from_millis(100),
            measurement: Duration::from_millis(500),
        }
    }
}

fn main() {
    if let Ok(variant) = std::env::var(RSS_CHILD_ENV) {
        rss_child(&variant);
        return;
    }
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
    let with_rss = !list_mode && std::env::var("IRIS_BENCH_RSS").map_or(true, |v| v != "0");

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
    let warm = OnceCell::new();

    bench_p1(&mut c, &rt, &warm, sizes);
    bench_p2(&mut c, &rt, sizes);
    c.final_summary();
    if list_mode {
        return;
    }
    let rss = if with_rss {
        measure_rss(sizes)
    } else {
        Vec::new()
    };
    summary(&rt, warm.get(), sizes, &rss, quick || test_mode);
}

// ----- fixtures -----

/// Team directories and a lazy configuration naming them.
struct Scene {
    _root: TempDir,
    config: Config,
    /// Every ordered pair of the configured teams, self-pairs included.
    pairs: Vec<(TeamName, TeamName)>,
}

impl Scene {
    fn new(teams: usize) -> Scene {
        let root = tempfile::tempdir().unwrap();
        // The agent command is never run: sessions are lazy and nothing here sends a message.
        // Passivation is pushed out of reach so that every session stays live for the whole run.
        let mut toml = String::from(
            "[settings]\nsession_init = \"lazy\"\npassivate_after = \"24h\"\n\
             [agent]\ncommand = \"iris-bench-agent-never-started\"\n",
        );
        let names: Vec<String> = (0..teams).map(|i| format!("t{i:03}")).collect();
        for name in &names {
            std::fs::create_dir_all(root.path().join("teams").join(name)).unwrap();
            writeln!(
                toml,
                "[teams.{name}]\npath = \"teams/{name}\"\ngrant_permission = \"yes\""
            )
            .unwrap();
        }
        let config = Config::from_toml_str(&toml, root.path(), "bench.toml", &|_| None).unwrap();
        let teams: Vec<TeamName> = names
            .iter()
            .map(|n| TeamName::new(n.as_str()).unwrap())
            .collect();
        let pairs = teams
            .iter()
            .flat_map(|from| teams.iter().map(|to| (from.clone(), to.clone())))
            .collect();
        Scene {
            _root: root,
            config,
            pairs,
        }
    }

    /// A runtime of this scene on a fresh store file in `db`, and a handle to its store.
    fn start(&self, rt: &Tokio, db: &TempDir, options: StoreOptions) -> (Runtime, Store) {
        let store = Store::open_with(db.path().join("iris.redb"), options).unwrap();
        let runtime = rt
            .block_on(Runtime::start(self.config.clone(), store.clone()))
            .unwrap();
        (runtime, store)
    }
}

/// The P1 fixture: a runtime with every pair of its scene live.
struct Warm {
    _scene: Scene,
    _db: TempDir,
    runtime: Runtime,
    pairs: Arc<Vec<(TeamName, TeamName)>>,
}

impl Warm {
    fn new(rt: &Tokio, teams: usize) -> Warm {
        let scene = Scene::new(teams);
        let db = tempfile::tempdir().unwrap();
        let (runtime, _) = scene.start(rt, &db, StoreOptions::default());
        let pairs = Arc::new(scene.pairs.clone());
        rt.block_on(bring_up(&runtime, &pairs, BRING_UP_TASKS));
        assert_eq!(runtime.live_sessions(), pairs.len());
        Warm {
            _scene: scene,
            _db: db,
            runtime,
            pairs,
        }
    }
}

/// Brings every pair up through `get_or_create_session`, `tasks` calls at a time.
async fn bring_up(runtime: &Runtime, pairs: &Arc<Vec<(TeamName, TeamName)>>, tasks: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..tasks.min(pairs.len()) {
        let (runtime, pairs, next) = (runtime.clone(), pairs.clone(), next.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((from, to)) = pairs.get(i) else {
                    break;
                };
                runtime.get_or_create_session(from, to).await.unwrap();
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
}

// ----- our own tallies, for the summary -----

// ----- P1 -----

/// Which way a live pair's session is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `get_or_create_session`: the published map and the snapshot, no mailbox.
    Fast,
    /// `create_session` of a live pair: a call to the Registry actor, answered `AlreadyExists`.
    Registry,
}

impl Route {
    const BOTH: [Route; 2] = [Route::Fast, Route::Registry];

    fn id(self) -> &'static str {
        match self {
            Route::Fast => "fast_path",
            Route::Registry => "registry_call",
        }
    }
}

/// The `i`th pair of a lookup sequence that strides through all of them.
fn nth(pairs: &[(TeamName, TeamName)], i: u64) -> &(TeamName, TeamName) {
    let len = pairs.len() as u64;
    &pairs[usize::try_from(i.wrapping_mul(7919) % len).unwrap()]
}

async fn lookup(runtime: &Runtime, route: Route, from: &TeamName, to: &TeamName) {
    match route {
        Route::Fast => {
            black_box(runtime.get_or_create_session(from, to).await.unwrap());
        }
        Route::Registry => {
            let answer = runtime.create_session(from, to).await;
            assert!(matches!(answer, Err(RuntimeError::AlreadyExists { .. })));
            let _ = black_box(answer);
        }
    }
}

/// `calls` lookups from `tasks` tasks on the worker threads, each awaiting its call before the
/// next; the wall time from the first spawn to the last answer.
fn lookups(rt: &Tokio, warm: &Warm, route: Route, tasks: u64, calls: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let mut set = JoinSet::new();
        for t in 0..tasks {
            let share = calls / tasks + u64::from(t < calls % tasks);
            let (runtime, pairs) = (warm.runtime.clone(), warm.pairs.clone());
            set.spawn(async move {
                for i in 0..share {
                    let (from, to) = nth(&pairs, i * tasks + t);
                    lookup(&runtime, route, from, to).await;
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        start.elapsed()
    })
}

fn bench_p1<'w>(c: &mut Criterion, rt: &Tokio, warm: &'w OnceCell<Warm>, sizes: Sizes) {
    let fixture = || -> &'w Warm { warm.get_or_init(|| Warm::new(rt, sizes.p1_teams)) };

    let mut group = c.benchmark_group("p1_latency");
    group.throughput(Throughput::Elements(1));
    for route in Route::BOTH {
        group.bench_function(route.id(), |b| {
            let warm = fixture();
            b.iter_custom(|iters| lookups(rt, warm, route, 1, iters));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("p1_throughput_2_tasks");
    group.throughput(Throughput::Elements(1));
    for route in Route::BOTH {
        group.bench_function(route.id(), |b| {
            let warm = fixture();
            b.iter_custom(|iters| {
                let elapsed = lookups(rt, warm, route, 2, iters);
                tally(
                    &format!("p1_throughput_2_tasks/{}", route.id()),
                    iters,
                    elapsed,
                );
                elapsed
            });
        });
    }
    group.finish();
}

/// p50 and p99 of `calls` lookups from one task on a worker thread, each timed on its own.
fn latency(rt: &Tokio, warm: &Warm, route: Route, calls: usize) -> (Duration, Duration) {
    let (runtime, pairs) = (warm.runtime.clone(), warm.pairs.clone());
    let task = rt.spawn(async move {
        // Warm the path (and the caches) first.
        for i in 0..(calls as u64 / 10) {
            let (from, to) = nth(&pairs, i);
            lookup(&runtime, route, from, to).await;
        }
        let mut times = Vec::with_capacity(calls);
        for i in 0..calls as u64 {
            let (from, to) = nth(&pairs, i);
            let start = Instant::now();
            lookup(&runtime, route, from, to).await;
            times.push(start.elapsed());
        }
        times.sort();
        (times[calls / 2], times[calls * 99 / 100])
    });
    rt.block_on(task).unwrap()
}

// ----- P2 -----

fn bench_p2(c: &mut Criterion, rt: &Tokio, sizes: Sizes) {
    // Each run is heavy (a fresh store and runtime, thousands of durable creations): the fewest
    // samples criterion allows, one run each.
    let mut group = common::heavy_group(c, "p2_concurrent_creations");
    for (id, max_batch, teams) in [
        (
            "group_commit",
            StoreOptions::default().max_batch,
            sizes.p2_teams,
        ),
        ("one_commit_per_creation", 1, sizes.p2_anchor_teams),
    ] {
        let creations = teams * teams;
        let options = StoreOptions {
            max_batch,
            ..StoreOptions::default()
        };
        let mut scene = None;
        group.throughput(Throughput::Elements(creations as u64));
        group.bench_function(BenchmarkId::new(id, creations), |b| {
            let scene = scene.get_or_insert_with(|| Scene::new(teams));
            b.iter_custom(|iters| {
                let name = format!("p2_concurrent_creations/{id}");
                tallied_runs(&name, creations as u64, iters, || {
                    let (elapsed, commits) = creation_run(rt, scene, options);
                    (elapsed, Some(commits))
                })
            });
        });
    }
    group.finish();
}

/// One run of P2: a fresh store and runtime (not timed), every pair created at once with one task
/// per pair (timed until the last answer), then checks and a shutdown (not timed).
/// Returns the timed wall time and the store commits of the run.
fn creation_run(rt: &Tokio, scene: &Scene, options: StoreOptions) -> (Duration, u64) {
    let db = tempfile::tempdir().unwrap();
    let (runtime, store) = scene.start(rt, &db, options);
    let batches_before = store.writer_stats().batches;
    let work = scene.pairs.clone();
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        let mut set = JoinSet::new();
        for (from, to) in work {
            let runtime = runtime.clone();
            set.spawn(async move { runtime.get_or_create_session(&from, &to).await });
        }
        while let Some(done) = set.join_next().await {
            black_box(done.unwrap().unwrap());
        }
        start.elapsed()
    });
    let expected = scene.pairs.len();
    assert_eq!(store.stats().total, expected as u64);
    let commits = store.writer_stats().batches - batches_before;
    assert_eq!(runtime.live_sessions(), expected);
    assert_eq!(runtime.agent_spawns(), 0, "lazy creation spawns no agent");
    rt.block_on(runtime.shutdown(Duration::from_secs(1)));
    (elapsed, commits)
}

// ----- P5 -----

/// What a P5 child measured.
#[derive(Debug, Clone)]
struct Rss {
    variant: String,
    sessions: u64,
    before: u64,
    after: u64,
    bring_up: Duration,
}

impl Rss {
    fn per_session(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.sessions as f64
    }
}

/// Resident set size of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Runs both P5 variants, each in a fresh child process of this binary.
fn measure_rss(sizes: Sizes) -> Vec<Rss> {
    let exe = std::env::current_exe().unwrap();
    ["preloaded", "created", "bare_actor"]
        .iter()
        .filter_map(|variant| {
            let output = Command::new(&exe)
                .env(RSS_CHILD_ENV, variant)
                .env(RSS_TEAMS_ENV, sizes.p5_teams.to_string())
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let parsed = stdout.lines().find_map(parse_rss_line);
            if parsed.is_none() {
                println!(
                    "P5 {variant}: the child failed ({}); its output: {stdout}",
                    output.status
                );
            }
            parsed
        })
        .collect()
}

fn parse_rss_line(line: &str) -> Option<Rss> {
    let rest = line.strip_prefix("RSS_RESULT ")?;
    let field = |key: &str| {
        rest.split(' ')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    Some(Rss {
        variant: field("variant")?.to_owned(),
        sessions: field("sessions")?.parse().ok()?,
        before: field("before")?.parse().ok()?,
        after: field("after")?.parse().ok()?,
        bring_up: Duration::from_nanos(field("bring_up_ns")?.parse().ok()?),
    })
}

/// The body of a P5 child: bring `teams²` sessions up and print the RSS before and after.
fn rss_child(variant: &str) {
    let teams: usize = std::env::var(RSS_TEAMS_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if variant == "bare_actor" {
        bare_actors_child(&rt, teams * teams);
    }
    let scene = Scene::new(teams);
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(db.path().join("iris.redb")).unwrap();
    let pairs = Arc::new(scene.pairs.clone());
    let pair_of = |(from, to): &(TeamName, TeamName)| Pair::new(from.clone(), to.clone());
    match variant {
        "preloaded" => {
            let now = Timestamp::now();
            for chunk in pairs.chunks(PRELOAD_CHUNK) {
                let records: Vec<SessionRecord> = chunk
                    .iter()
                    .map(|p| SessionRecord::new(pair_of(p), SessionId::new_v4(), now))
                    .collect();
                rt.block_on(store.create_many(records)).unwrap();
            }
        }
        "created" => {}
        other => panic!("unknown P5 variant {other}"),
    }
    let runtime = rt
        .block_on(Runtime::start(scene.config.clone(), store.clone()))
        .unwrap();
    if variant == "preloaded" {
        // Read every record once so that redb's cache holds its pages before the first reading.
        for pair in pairs.iter() {
            black_box(store.get_by_pair(&pair_of(pair)).unwrap().unwrap());
        }
    }
    let before = rss_bytes();
    let start = Instant::now();
    rt.block_on(bring_up(&runtime, &pairs, BRING_UP_TASKS));
    let bring_up_time = start.elapsed();
    let after = rss_bytes();
    assert_eq!(runtime.live_sessions(), pairs.len());
    assert_eq!(store.stats().total, pairs.len() as u64);
    assert_eq!(runtime.agent_spawns(), 0);
    println!(
        "RSS_RESULT variant={variant} sessions={} before={before} after={after} bring_up_ns={}",
        pairs.len(),
        bring_up_time.as_nanos()
    );
    // Skip tearing down 100k actors: remove the files and leave.
    let _ = std::fs::remove_dir_all(db.path());
    drop(scene);
    std::process::exit(0);
}

/// An actor with no state that handles no messages: the P5 anchor.
struct Bare;

impl ractor::Actor for Bare {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<()>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

/// Spawns `count` bare actors linked to one supervisor (as session actors are linked to the
/// registry), from the same number of concurrent tasks as the sessions, and prints the RSS.
fn bare_actors_child(rt: &Tokio, count: usize) -> ! {
    let (supervisor, _) = rt.block_on(ractor::Actor::spawn(None, Bare, ())).unwrap();
    let before = rss_bytes();
    let start = Instant::now();
    let actors = rt.block_on(async {
        let mut tasks = JoinSet::new();
        for task in 0..BRING_UP_TASKS {
            let supervisor = supervisor.get_cell();
            tasks.spawn(async move {
                let mut mine = Vec::new();
                for _ in (task..count).step_by(BRING_UP_TASKS) {
                    let (actor, _) =
                        ractor::Actor::spawn_linked(None, Bare, (), supervisor.clone())
                            .await
                            .unwrap();
                    mine.push(actor);
                }
                mine
            });
        }
        let mut all = Vec::with_capacity(count);
        while let Some(mine) = tasks.join_next().await {
            all.extend(mine.unwrap());
        }
        all
    });
    let bring_up_time = start.elapsed();
    let after = rss_bytes();
    assert_eq!(actors.len(), count);
    println!(
        "RSS_RESULT variant=bare_actor sessions={count} before={before} after={after} bring_up_ns={}",
        bring_up_time.as_nanos()
    );
    std::process::exit(0);
}

// ----- summary -----

fn summary(rt: &Tokio, warm: Option<&Warm>, sizes: Sizes, rss: &[Rss], quick: bool) {
    println!();
    println!("==== iris-runtime summary (ratios from this run; DESIGN targets in brackets) ====");
    if quick {
        println!("(quick run: small counts, not the DESIGN figures)");
    }
    if let Some(warm) = warm {
        let live = warm.pairs.len();
        let (fast50, fast99) = latency(rt, warm, Route::Fast, sizes.p1_fast_calls);
        let (reg50, reg99) = latency(rt, warm, Route::Registry, sizes.p1_registry_calls);
        println!(
            "P1 get_or_create of a live pair ({live} live), one task: p50 {fast50:?}, p99 {fast99:?} vs registry call p50 {reg50:?}, p99 {reg99:?} = {:.1}x at p50 [p50 <= 2 µs: {}]",
            reg50.as_secs_f64() / fast50.as_secs_f64(),
            verdict(fast50 <= Duration::from_micros(2)),
        );
    }
    if let (Some(fast), Some(reg)) = (
        tallied("p1_throughput_2_tasks/fast_path"),
        tallied("p1_throughput_2_tasks/registry_call"),
    ) {
        println!(
            "P1 throughput, 2 tasks on 2 worker threads: {} vs registry call {} = {:.1}x [>= 1M/s: {}]",
            rate(fast.per_second()),
            rate(reg.per_second()),
            fast.per_second() / reg.per_second(),
            verdict(fast.per_second() >= 1e6),
        );
    }
    if let (Some(group), Some(anchor)) = (
        tallied("p2_concurrent_creations/group_commit"),
        tallied("p2_concurrent_creations/one_commit_per_creation"),
    ) {
        let per_run = |t: &Tally| t.elapsed / u32::try_from(t.runs.max(1)).unwrap_or(u32::MAX);
        let per_commit = |t: &Tally| t.elements as f64 / t.commits.max(1) as f64;
        println!(
            "P2 concurrent lazy creations, durable: {} ({} per run, mean {:.1?} per run over {} runs, {:.1} creations per commit) [>= 20k/s: {}]",
            rate(group.per_second()),
            sizes.p2_teams * sizes.p2_teams,
            per_run(&group),
            group.runs,
            per_commit(&group),
            verdict(group.per_second() >= 20_000.0),
        );
        println!(
            "P2 anchor, one commit per creation: {} ({} per run, mean {:.1?} per run over {} runs, {:.1} creations per commit); group commit / anchor = {:.1}x",
            rate(anchor.per_second()),
            sizes.p2_anchor_teams * sizes.p2_anchor_teams,
            per_run(&anchor),
            anchor.runs,
            per_commit(&anchor),
            group.per_second() / anchor.per_second(),
        );
    }
    let anchor = rss.iter().find(|r| r.variant == "bare_actor");
    for r in rss {
        let what = match r.variant.as_str() {
            "preloaded" => "records preloaded, store cache warm",
            "bare_actor" => "anchor: a bare ractor actor, no state",
            _ => "created between the readings, includes the store's growth",
        };
        let mut target = String::new();
        if let Some(anchor) = anchor.filter(|_| r.variant != "bare_actor") {
            let _ = write!(
                target,
                " = {:.2}x the bare actor",
                r.per_session() / anchor.per_session()
            );
        }
        if r.variant == "preloaded" {
            let _ = write!(
                target,
                " [<= 4 KiB: {}]",
                verdict(r.per_session() <= 4096.0)
            );
        }
        println!(
            "P5 RSS per live idle session ({what}): {:.0} B over {} sessions (RSS {} -> {} MiB; brought up in {:.1?}){target}",
            r.per_session(),
            r.sessions,
            r.before >> 20,
            r.after >> 20,
            r.bring_up,
        );
    }
}
