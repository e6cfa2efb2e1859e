//! What the benches share: tallies of their own timed runs (criterion does not expose its
//! estimates), from which each bench prints a plain summary with ratios to its anchor.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use iris::store::WriterStats;

/// Totals of the timed runs recorded under one name.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Elements (operations) timed.
    pub elements: u64,
    /// Time they took.
    pub elapsed: Duration,
    /// Timed runs.
    pub runs: u64,
    /// Time per element of each run.
    pub per_element: Vec<Duration>,
    /// The store writer's counters at the last run, when recorded.
    pub writer: Option<WriterStats>,
    /// Store commits during the runs, when recorded.
    pub commits: u64,
}

impl Tally {
    /// Elements per second over every run.
    pub fn per_second(&self) -> f64 {
        self.elements as f64 / self.elapsed.as_secs_f64()
    }
}

static TALLIES: Mutex<BTreeMap<String, Tally>> = Mutex::new(BTreeMap::new());

fn with_tally(name: &str, update: impl FnOnce(&mut Tally)) {
    let mut tallies = TALLIES.lock().unwrap_or_else(|p| p.into_inner());
    update(tallies.entry(name.to_owned()).or_default());
}

/// Records one timed run of `elements` operations.
pub fn tally(name: &str, elements: u64, elapsed: Duration) {
    with_tally(name, |t| {
        t.elements += elements;
        t.elapsed += elapsed;
        t.runs += 1;
        t.per_element
            .push(elapsed / u32::try_from(elements.max(1)).unwrap_or(u32::MAX));
    });
}

/// Records the store writer's counters after a run.
pub fn tally_writer(name: &str, writer: WriterStats) {
    with_tally(name, |t| t.writer = Some(writer));
}

/// Adds store commits made during a run.
pub fn tally_commits(name: &str, commits: u64) {
    with_tally(name, |t| t.commits += commits);
}

/// Criterion's `iter_custom` body for runs that each time `elements` operations: runs `run`
/// `iters` times, tallies each run (and its store commits, if it reports them) under `name`,
/// and returns the total timed.
pub fn tallied_runs(
    name: &str,
    elements: u64,
    iters: u64,
    mut run: impl FnMut() -> (Duration, Option<u64>),
) -> Duration {
    let mut timed = Duration::ZERO;
    for _ in 0..iters {
        let (elapsed, commits) = run();
        tally(name, elements, elapsed);
        if let Some(commits) = commits {
            tally_commits(name, commits);
        }
        timed += elapsed;
    }
    timed
}

/// What was recorded under `name`.
pub fn tallied(name: &str) -> Option<Tally> {
    TALLIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .cloned()
}

/// A rate for humans: `4.94M/s`, `118.3k/s`, `950/s`.
pub fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M/s", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1}k/s", per_second / 1e3)
    } else {
        format!("{per_second:.0}/s")
    }
}

/// `met` or `MISSED`, for a target.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The workspace's fake-claude binary in this bench's profile directory (`target/release` under
/// `cargo bench`), built in that profile if it is missing. (`tests/support`'s finder builds the
/// dev profile, which lands in another directory.)
pub fn fake_claude_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap_or_else(|| panic!("no profile directory above {}", exe.display()))
        .to_path_buf();
    let path = profile_dir.join("fake-claude");
    if !path.exists() {
        let profile = if profile_dir.ends_with("release") {
            "--release"
        } else {
            "--profile=dev"
        };
        let ok = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "fake-claude",
                "--bin",
                "fake-claude",
                profile,
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "building fake-claude failed");
    }
    path
}

/// A criterion group for heavy runs (a fresh store or runtime, thousands of durable writes per
/// run): the fewest samples criterion allows, one run each, no warm-up to speak of.
pub fn heavy_group<'a>(
    c: &'a mut criterion::Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.sampling_mode(criterion::SamplingMode::Flat);
    group.warm_up_time(std::time::Duration::from_millis(1));
    group.measurement_time(std::time::Duration::from_millis(100));
    group
}
