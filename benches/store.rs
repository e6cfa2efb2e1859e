//! Benchmarks of `iris-store` against the figures in DESIGN.md ("Numbers we hold ourselves to").
//!
//! Run with `cargo bench --bench store` (a few minutes on 2 cores). Every database is a redb file
//! in a temporary directory, written with `Durability::Immediate`, so the figures include fsync.
//!
//! | group | what | DESIGN |
//! |---|---|---|
//! | `create` | durable creates: one awaited at a time, and from 64 concurrent submitters | P2 |
//! | `mutations` | acknowledged increment+touch mutations from 1, 8 and 64 submitters, each awaiting its own write before the next, with group commit and with `max_batch: 1` (one commit per mutation, the anchor) | P3 |
//! | `read_10k` | `get_by_pair` and `get_by_session_id` on 10k records | P1 |
//! | `list_from` | `list(from = X)` returning 100 records, on 10k and 100k rows | P10 |
//! | `stats` | `stats()` on 100k rows | P9 |
//! | `reset_all_process_states` | the start-up reset on 100k rows of which 10% are not stopped | P6 |
//! | `reopen_1m` | `Store::open` + `reset_all_process_states` on 1M rows, 10% (and 0%) not stopped | P6 |
//!
//! After criterion's report, a plain summary prints each comparison as a ratio, computed from the
//! timings of the runs above (the `mutations` and `create` ratios) and from short fixed runs timed
//! with `Instant` (the read latencies).
//!
//! Environment:
//! - `IRIS_BENCH_1M=0` skips the 1M-record case (building its ~300 MiB file takes ~10 s, and each
//!   of its iterations first marks 100k records live through the writer).
//!
//! Filters work as usual (`cargo bench --bench store -- mutations`); fixtures are built only for
//! the benchmarks that run. In `--test` mode (`cargo test --benches`) the 1M case is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use common::{Tally, rate, tallied, tally, tally_writer, verdict};
use std::cell::OnceCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use iris_core::{Pair, ProcessState, SessionFilter, SessionId, SessionRecord, TeamName, Timestamp};
use iris_store::{Change, Store, StoreOptions};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Records are inserted in transactions of this many when building fixtures.
const FILL_CHUNK: usize = 50_000;
/// Submitter counts of the `mutations` group.
const SUBMITTERS: [usize; 3] = [1, 8, 64];

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test" || a == "--list");
    let with_1m = !test_mode && std::env::var("IRIS_BENCH_1M").map_or(true, |v| v != "0");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fixtures = Fixtures::default();

    bench_create(&mut c, &rt);
    bench_mutations(&mut c, &rt);
    bench_reads(&mut c, &rt, &fixtures);
    bench_list(&mut c, &rt, &fixtures);
    bench_stats_and_reset(&mut c, &rt, &fixtures);
    if with_1m {
        bench_reopen_1m(&mut c, &rt);
    }
    c.final_summary();
    if !test_mode {
        summary(&fixtures, with_1m);
    }
}

// ----- fixtures -----

/// A store on a file in its own temporary directory, and the records put in it.
struct Filled {
    _dir: TempDir,
    store: Store,
    records: Vec<SessionRecord>,
}

/// Fixtures shared between groups, built on first use.
#[derive(Default)]
struct Fixtures {
    rows_10k: OnceCell<Filled>,
    rows_100k: OnceCell<Filled>,
}

impl Fixtures {
    fn rows_10k(&self, rt: &Runtime) -> &Filled {
        self.rows_10k.get_or_init(|| filled(rt, 100, 100))
    }

    fn rows_100k(&self, rt: &Runtime) -> &Filled {
        self.rows_100k.get_or_init(|| filled(rt, 1000, 100))
    }
}

fn team(name: String) -> TeamName {
    TeamName::new(name).unwrap()
}

/// The `n`th pair of a family: `{prefix}{n / 1000}` -> `t{n % 1000}`.
fn nth_record(prefix: &str, n: u64) -> SessionRecord {
    let pair = Pair::new(
        team(format!("{prefix}{}", n / 1000)),
        team(format!("t{}", n % 1000)),
    );
    SessionRecord::new(pair, SessionId::new_v4(), Timestamp::now())
}

fn temp_store(options: StoreOptions) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path().join("bench.redb"), options).unwrap();
    (dir, store)
}

/// `teams` from-teams, each with `per_team` to-teams: `f{i:04}` -> `t{j:03}`.
fn fill(rt: &Runtime, store: &Store, teams: usize, per_team: usize) -> Vec<SessionRecord> {
    let now = Timestamp::now();
    let all: Vec<SessionRecord> = (0..teams)
        .flat_map(|i| {
            (0..per_team).map(move |j| {
                let pair = Pair::new(team(format!("f{i:04}")), team(format!("t{j:03}")));
                SessionRecord::new(pair, SessionId::new_v4(), now)
            })
        })
        .collect();
    let mut stored = Vec::with_capacity(all.len());
    for chunk in all.chunks(FILL_CHUNK) {
        stored.extend(rt.block_on(store.create_many(chunk.to_vec())).unwrap());
    }
    stored
}

fn filled(rt: &Runtime, teams: usize, per_team: usize) -> Filled {
    let (dir, store) = temp_store(StoreOptions::default());
    let records = fill(rt, &store, teams, per_team);
    Filled {
        _dir: dir,
        store,
        records,
    }
}

// ----- our own tallies, for the summary -----

// ----- workloads -----

/// Runs `total` operations from `submitters` concurrent tasks, each awaiting its own operation
/// before taking the next; returns the wall time until the last acknowledgement.
fn drive<F, Fut>(rt: &Runtime, submitters: usize, total: u64, op: F) -> Duration
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async move {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for s in 0..submitters.min(usize::try_from(total).unwrap_or(usize::MAX)) {
            let (next, op) = (next.clone(), op.clone());
            tasks.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    op(s, n).await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        start.elapsed()
    })
}

/// Marks `ids` as processing (not stopped) through the writer, 512 submitters at a time.
fn mark_live(rt: &Runtime, store: &Store, ids: &Arc<Vec<SessionId>>) {
    let (store, ids2) = (store.clone(), ids.clone());
    drive(rt, 512, ids.len() as u64, move |_, n| {
        let (store, id) = (store.clone(), ids2[n as usize]);
        async move {
            store
                .update(id, Change::SetProcessState(ProcessState::Processing))
                .await
                .unwrap();
        }
    });
}

// ----- groups -----

fn bench_create(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("create");
    group.throughput(Throughput::Elements(1));
    let counter = Arc::new(AtomicU64::new(0));

    let mut sequential = None;
    group.bench_function("sequential", |b| {
        let (_, store) = sequential.get_or_insert_with(|| temp_store(StoreOptions::default()));
        let store = store.clone();
        let counter = counter.clone();
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    black_box(store.create(nth_record("s", n)).await.unwrap());
                }
            });
            let elapsed = start.elapsed();
            tally("create/sequential", iters, elapsed);
            tally_writer("create/sequential", store.writer_stats());
            elapsed
        });
    });

    let mut concurrent = None;
    group.bench_function("concurrent_64", |b| {
        let (_, store) = concurrent.get_or_insert_with(|| temp_store(StoreOptions::default()));
        let store = store.clone();
        let counter = counter.clone();
        b.iter_custom(|iters| {
            let (store2, counter) = (store.clone(), counter.clone());
            let elapsed = drive(rt, 64, iters, move |_, _| {
                let (store, n) = (store2.clone(), counter.fetch_add(1, Ordering::Relaxed));
                async move {
                    black_box(store.create(nth_record("c", n)).await.unwrap());
                }
            });
            tally("create/concurrent_64", iters, elapsed);
            tally_writer("create/concurrent_64", store.writer_stats());
            elapsed
        });
    });
    group.finish();
}

fn bench_mutations(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("mutations");
    group.throughput(Throughput::Elements(1));
    for (mode, max_batch) in [
        ("group_commit", StoreOptions::default().max_batch),
        ("one_commit_per_mutation", 1),
    ] {
        for submitters in SUBMITTERS {
            let name = format!("mutations/{mode}/{submitters}");
            let mut fixture = None;
            group.bench_with_input(
                BenchmarkId::new(mode, submitters),
                &submitters,
                |b, &submitters| {
                    let (_, store, ids) = fixture.get_or_insert_with(|| {
                        let options = StoreOptions {
                            max_batch,
                            ..StoreOptions::default()
                        };
                        let (dir, store) = temp_store(options);
                        let ids = fill(rt, &store, 1, submitters)
                            .into_iter()
                            .map(|r| r.session_id)
                            .collect::<Vec<_>>();
                        (dir, store, Arc::new(ids))
                    });
                    b.iter_custom(|iters| {
                        let (store2, ids) = (store.clone(), ids.clone());
                        // Submitter `s` mutates its own session, as a session actor would.
                        let elapsed = drive(rt, submitters, iters, move |s, _| {
                            let (store, id) = (store2.clone(), ids[s]);
                            async move {
                                let changes = vec![
                                    Change::IncrementMessageCount(1),
                                    Change::TouchLastUsed(Timestamp::now()),
                                ];
                                black_box(store.update_all(id, changes).await.unwrap());
                            }
                        });
                        tally(&name, iters, elapsed);
                        tally_writer(&name, store.writer_stats());
                        elapsed
                    });
                },
            );
        }
    }
    group.finish();
}

fn bench_reads(c: &mut Criterion, rt: &Runtime, fixtures: &Fixtures) {
    let mut group = c.benchmark_group("read_10k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_by_pair", |b| {
        let f = fixtures.rows_10k(rt);
        let pairs: Vec<Pair> = f.records.iter().map(SessionRecord::pair).collect();
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % pairs.len();
            black_box(f.store.get_by_pair(&pairs[i]).unwrap())
        });
    });
    group.bench_function("get_by_session_id", |b| {
        let f = fixtures.rows_10k(rt);
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % f.records.len();
            black_box(f.store.get_by_session_id(&f.records[i].session_id).unwrap())
        });
    });
    group.finish();
}

fn bench_list(c: &mut Criterion, rt: &Runtime, fixtures: &Fixtures) {
    let mut group = c.benchmark_group("list_from");
    for rows in [10_000, 100_000] {
        group.bench_with_input(BenchmarkId::new("rows", rows), &rows, |b, &rows| {
            let f = if rows == 10_000 {
                fixtures.rows_10k(rt)
            } else {
                fixtures.rows_100k(rt)
            };
            let filters = list_filters(rows);
            assert_eq!(f.store.list(&filters[0]).unwrap().len(), 100);
            let mut i = 0;
            b.iter(|| {
                i = (i + 37) % filters.len();
                black_box(f.store.list(&filters[i]).unwrap())
            });
        });
    }
    group.finish();
}

/// One `list(from = f....)` filter per from-team of a fixture of `rows` rows.
fn list_filters(rows: usize) -> Vec<SessionFilter> {
    (0..rows / 100)
        .map(|i| SessionFilter::all().from_team(team(format!("f{i:04}"))))
        .collect()
}

fn bench_stats_and_reset(c: &mut Criterion, rt: &Runtime, fixtures: &Fixtures) {
    let mut group = c.benchmark_group("stats");
    group.bench_function("100k_rows", |b| {
        let f = fixtures.rows_100k(rt);
        assert_eq!(f.store.stats().total, 100_000);
        b.iter(|| black_box(f.store.stats()));
    });
    group.finish();

    let mut group = c.benchmark_group("reset_all_process_states");
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("100k_rows_10pct_live", |b| {
        let f = fixtures.rows_100k(rt);
        let live: Arc<Vec<SessionId>> =
            Arc::new(f.records.iter().step_by(10).map(|r| r.session_id).collect());
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                mark_live(rt, &f.store, &live);
                let start = Instant::now();
                let changed = rt.block_on(f.store.reset_all_process_states()).unwrap();
                let elapsed = start.elapsed();
                assert_eq!(changed, live.len() as u64);
                tally("reset/100k_10pct", 1, elapsed);
                timed += elapsed;
            }
            timed
        });
    });
    group.finish();
}

fn bench_reopen_1m(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("reopen_1m");
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(1));

    // The file is built once and closed; every iteration opens it afresh.
    let mut fixture: Option<(TempDir, PathBuf, Arc<Vec<SessionId>>)> = None;
    let mut build = || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1m.redb");
        let start = Instant::now();
        let store = Store::open(&path).unwrap();
        let records = fill(rt, &store, 10_000, 100);
        let live: Vec<SessionId> = records.iter().step_by(10).map(|r| r.session_id).collect();
        drop(records);
        drop(store);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        println!(
            "reopen_1m: built 1M records in {:.1?} ({} MiB file)",
            start.elapsed(),
            size >> 20
        );
        (dir, path, Arc::new(live))
    };

    for (id, live_pct) in [
        ("open_plus_reset_10pct_live", 10),
        ("open_plus_reset_0pct_live", 0),
    ] {
        group.bench_function(id, |b| {
            let (_, path, live) = fixture.get_or_insert_with(&mut build);
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    if live_pct > 0 {
                        let store = Store::open(&*path).unwrap();
                        mark_live(rt, &store, live);
                        assert_eq!(store.stats().total, 1_000_000);
                    }
                    // The store was dropped, so its writer is joined and the file released.
                    let start = Instant::now();
                    let store = Store::open(&*path).unwrap();
                    let changed = rt.block_on(store.reset_all_process_states()).unwrap();
                    let elapsed = start.elapsed();
                    drop(store);
                    let expected = if live_pct > 0 { live.len() as u64 } else { 0 };
                    assert_eq!(changed, expected);
                    tally(&format!("reopen_1m/{id}"), 1, elapsed);
                    timed += elapsed;
                }
                timed
            });
        });
    }
    group.finish();
}

// ----- summary -----

fn batch(t: &Tally) -> String {
    t.writer.map_or_else(String::new, |w| {
        format!(
            " (mean batch {:.1}, max {})",
            w.mutations as f64 / w.batches.max(1) as f64,
            w.max_batch
        )
    })
}

/// Median and 99th percentile of `runs` calls of `f`, each timed on its own.
fn latency<R>(runs: usize, mut f: impl FnMut(usize) -> R) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|i| {
            let start = Instant::now();
            black_box(f(i));
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 99 / 100])
}

fn summary(fixtures: &Fixtures, with_1m: bool) {
    println!();
    println!("==== iris-store summary (ratios from this run; DESIGN targets in brackets) ====");
    for submitters in SUBMITTERS {
        let group = tallied(&format!("mutations/group_commit/{submitters}"));
        let anchor = tallied(&format!("mutations/one_commit_per_mutation/{submitters}"));
        if let (Some(g), Some(a)) = (group, anchor) {
            println!(
                "group commit vs one-commit-per-mutation at {submitters} submitters: {} vs {} = {:.1}x{}",
                rate(g.per_second()),
                rate(a.per_second()),
                g.per_second() / a.per_second(),
                batch(&g),
            );
        }
    }
    if let Some(g) = tallied("mutations/group_commit/64") {
        println!(
            "P3 acknowledged mutations at 64 submitters: {} [>= 100k/s: {}]",
            rate(g.per_second()),
            verdict(g.per_second() >= 100_000.0)
        );
    }
    if let (Some(con), Some(seq)) = (
        tallied("create/concurrent_64"),
        tallied("create/sequential"),
    ) {
        println!(
            "durable creates, 64 concurrent vs one at a time: {} vs {} = {:.1}x{} [P2: >= 20k/s]",
            rate(con.per_second()),
            rate(seq.per_second()),
            con.per_second() / seq.per_second(),
            batch(&con),
        );
    }
    if let Some(f) = fixtures.rows_10k.get() {
        let pairs: Vec<Pair> = f.records.iter().map(SessionRecord::pair).collect();
        let (p50, p99) = latency(10_000, |i| f.store.get_by_pair(&pairs[i]).unwrap());
        println!("get_by_pair on 10k rows: p50 {p50:?}, p99 {p99:?} [P1: p50 <= 2 µs]");
        let (p50, p99) = latency(10_000, |i| {
            f.store.get_by_session_id(&f.records[i].session_id).unwrap()
        });
        println!("get_by_session_id on 10k rows: p50 {p50:?}, p99 {p99:?}");
        let filters = list_filters(10_000);
        let (p50, p99) = latency(1_000, |i| {
            f.store.list(&filters[i % filters.len()]).unwrap()
        });
        println!("list(from) on 10k rows, 100 results: p50 {p50:?}, p99 {p99:?} [P10: <= 100 µs]");
    }
    if let Some(f) = fixtures.rows_100k.get() {
        let filters = list_filters(100_000);
        let (p50, p99) = latency(1_000, |i| {
            f.store.list(&filters[i * 37 % filters.len()]).unwrap()
        });
        println!(
            "list(from) on 100k rows, 100 results: p50 {p50:?}, p99 {p99:?} [P10: <= 100 µs; original 510 µs]"
        );
        let (p50, p99) = latency(10_000, |_| f.store.stats());
        println!("stats on 100k rows: p50 {p50:?}, p99 {p99:?} [P9: <= 10 µs; original 21.7 ms]");
    }
    if let Some(t) = tallied("reset/100k_10pct") {
        let mean = t.elapsed / u32::try_from(t.elements.max(1)).unwrap_or(u32::MAX);
        println!(
            "reset_all_process_states on 100k rows, 10k not stopped: mean {mean:.1?} over {} runs [original 74 ms per 100k rows]",
            t.elements
        );
    }
    if with_1m {
        for (id, what) in [
            ("open_plus_reset_10pct_live", "10% (100k) not stopped"),
            ("open_plus_reset_0pct_live", "none not stopped"),
        ] {
            if let Some(t) = tallied(&format!("reopen_1m/{id}")) {
                let mut runs = t.per_element.clone();
                runs.sort();
                let mean = t.elapsed / u32::try_from(runs.len().max(1)).unwrap_or(u32::MAX);
                println!(
                    "Store::open + reset on 1M rows, {what}: mean {mean:.1?}, min {:.1?}, max {:.1?} over {} runs [<= 3 s; P6 <= 1 s]",
                    runs[0],
                    runs[runs.len() - 1],
                    runs.len()
                );
            }
        }
    } else {
        println!("1M reopen: skipped (IRIS_BENCH_1M=0 or test mode)");
    }
}
