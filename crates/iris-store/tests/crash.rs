//! Multi-process crash test: acknowledged writes survive `kill -9`.
//!
//! The parent test re-invokes this very test binary as a child process that runs
//! [`child_writer`]. The child opens the store and makes writes from many concurrent tasks through
//! the group-commit writer, printing one line to stdout after each acknowledgement. The parent
//! kills it with SIGKILL at a random moment after its first acknowledgement, reopens the file, and
//! checks that the file opens cleanly and holds every acknowledged write, that nothing more than
//! the writes in flight at the kill appeared, that every pair has one record, that the counters
//! behind `stats` agree with the records, and that the records of earlier iterations are exactly
//! as they were. The same file is carried across iterations, so a file that was reopened after a
//! crash is crashed again.
//!
//! The seed of the random kill delays is printed on stderr; set `IRIS_CRASH_SEED` to replay it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iris_core::{
    Pair, ProcessState, SessionFilter, SessionId, SessionRecord, SessionStats, SessionStatus,
    TeamName, Timestamp,
};
use iris_store::{Change, Store};

/// The environment variable that carries the database path to the child. Without it,
/// [`child_writer`] returns at once.
const CHILD_DB_ENV: &str = "IRIS_CRASH_CHILD_DB";
/// The environment variable that carries the child's team-name prefix (one per iteration).
const CHILD_TAG_ENV: &str = "IRIS_CRASH_CHILD_TAG";
/// Concurrent writer tasks in the child.
const CHILD_TASKS: usize = 16;
/// Crash iterations.
const ITERATIONS: u64 = 30;
/// The child gives up on its own after this long, so a lost parent leaves no process behind.
const CHILD_MAX_LIFETIME: Duration = Duration::from_secs(60);
/// SIGKILL's number on Linux and the BSDs (`Child::kill` sends it), without a libc dependency.
const SIGKILL: i32 = 9;

/// The child side. It is `#[ignore]`d because it is not a test on its own: it loops writing until
/// it is killed, and does so only when the parent sets [`CHILD_DB_ENV`]. The parent runs it with
/// `child_writer --exact --ignored --nocapture`; a plain `cargo test -- --ignored` runs it without
/// the variable, and it returns at once.
#[test]
#[ignore = "the child process of `acknowledged_writes_survive_sigkill`; does nothing on its own"]
fn child_writer() {
    let Some(path) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let tag = std::env::var(CHILD_TAG_ENV).expect("the parent sets the team prefix");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // libtest may have written a partial line (`test child_writer ... `) before us.
        ack(format_args!(""));
        let store = Store::open(Path::new(&path)).unwrap();
        // What a node does at start-up; it also makes a write on a file reopened after a crash.
        let reset = store.reset_all_process_states().await.unwrap();
        ack(format_args!("reset {reset}"));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..CHILD_TASKS {
            tasks.spawn(child_task(store.clone(), format!("{tag}-t{task}")));
        }
        let deadline = tokio::time::sleep(CHILD_MAX_LIFETIME);
        tokio::select! {
            _ = deadline => {}
            Some(done) = tasks.join_next() => done.unwrap(),
        }
        // Not reached in a normal run: the parent kills us first.
        std::process::exit(3);
    });
}

/// One writer task of the child: creates session after session for its own `from` team, and
/// takes each through increments, then a status change or a deletion.
async fn child_task(store: Store, from: String) {
    let from = TeamName::new(from).unwrap();
    for k in 0u64.. {
        let to = TeamName::new(format!("p{k}")).unwrap();
        let pair = Pair::new(from.clone(), to.clone());
        let created = store
            .create(SessionRecord::new(
                pair,
                SessionId::new_v4(),
                Timestamp::now(),
            ))
            .await
            .unwrap();
        let id = created.session_id;
        ack(format_args!("created {id} {from} {to}"));
        for n in 1..=1 + k % 4 {
            let mut changes = vec![
                Change::IncrementMessageCount(1),
                Change::TouchLastUsed(Timestamp::now()),
            ];
            if n == 1 {
                changes.push(Change::SetProcessState(ProcessState::Processing));
            }
            let record = store.update_all(id, changes).await.unwrap();
            assert_eq!(
                record.message_count, n,
                "the writer acknowledged a wrong count"
            );
            ack(format_args!("count {id} {n}"));
        }
        match k % 3 {
            0 => {
                // Announce the deletion first: once it is in flight, the session may be gone
                // after a crash without its acknowledgement having been printed.
                ack(format_args!("deleting {id}"));
                let deleted = store.delete(id).await.unwrap();
                assert!(deleted.is_some(), "deleting {id} deleted nothing");
                ack(format_args!("deleted {id}"));
            }
            1 => {
                let status = if k % 2 == 0 {
                    SessionStatus::Idle
                } else {
                    SessionStatus::Archived
                };
                store.update(id, Change::SetStatus(status)).await.unwrap();
                ack(format_args!("status {id} {status}"));
            }
            _ => {}
        }
    }
}

/// Prints one line and flushes it, so that it is in the pipe before the next write is submitted.
fn ack(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// What the parent learned about one session from the child's acknowledgements.
#[derive(Debug, Default)]
struct Acked {
    pair: Option<Pair>,
    count: u64,
    status: Option<SessionStatus>,
    deleting: bool,
    deleted: bool,
}

/// Parses the child's complete lines into facts per session. Lines that are not
/// acknowledgements (libtest's chatter) are ignored.
fn parse_acks(lines: &[String]) -> (HashMap<SessionId, Acked>, usize) {
    let mut sessions: HashMap<SessionId, Acked> = HashMap::new();
    let mut acks = 0;
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (verb, id) = match words.as_slice() {
            [
                verb @ ("created" | "count" | "status" | "deleting" | "deleted"),
                id,
                ..,
            ] => (*verb, SessionId::parse(id).unwrap()),
            _ => continue,
        };
        let entry = sessions.entry(id).or_default();
        match (verb, &words[2..]) {
            ("created", [from, to]) => {
                entry.pair = Some(Pair::new(
                    TeamName::new(*from).unwrap(),
                    TeamName::new(*to).unwrap(),
                ));
            }
            ("count", [n]) => entry.count = entry.count.max(n.parse().unwrap()),
            ("status", [s]) => entry.status = Some(s.parse().unwrap()),
            ("deleting", []) => entry.deleting = true,
            ("deleted", []) => entry.deleted = true,
            _ => panic!("malformed acknowledgement line {line:?}"),
        }
        if verb != "deleting" {
            acks += 1;
        }
    }
    (sessions, acks)
}

/// A small xorshift generator: enough to pick kill moments, and replayable from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Runs one child until its first acknowledgement, lets it write for `delay`, kills it with
/// SIGKILL, and returns every complete line it printed.
fn run_and_kill(path: &Path, tag: &str, delay: Duration) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DB_ENV, path)
        .env(CHILD_TAG_ENV, tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (first_ack_tx, first_ack_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        let mut signalled = false;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).unwrap();
            // EOF, or a last line cut short by the kill: only whole lines were acknowledged.
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            let line = String::from_utf8(buf[..buf.len() - 1].to_vec()).unwrap();
            if !signalled && line.starts_with("created ") {
                signalled = true;
                let _ = first_ack_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let started = first_ack_rx.recv_timeout(Duration::from_secs(20));
    if started.is_ok() {
        std::thread::sleep(delay);
    }
    // `Child::kill` sends SIGKILL on Unix.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    let stderr = stderr_reader.join().unwrap();
    assert!(
        started.is_ok(),
        "{tag}: the child acknowledged no write within 20 s; its stderr:\n{stderr}"
    );
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "{tag}: the child ended before it was killed ({status}); its stderr:\n{stderr}"
    );
    lines
}

/// Checks the reopened store against what the child acknowledged and against the state of earlier
/// iterations, and returns how many sessions of this iteration were verified present.
fn verify(
    store: &Store,
    tag: &str,
    acked: &HashMap<SessionId, Acked>,
    before: &BTreeMap<SessionId, SessionRecord>,
) -> usize {
    let all = store.list(&SessionFilter::all()).unwrap();

    // Counters are consistent with the records, and the indexes with the table.
    let stats = store.stats();
    assert_eq!(stats.total, all.len() as u64, "{tag}: stats().total");
    assert_eq!(
        stats.total_messages,
        all.iter().map(|r| r.message_count).sum::<u64>(),
        "{tag}: stats().total_messages"
    );
    assert_eq!(stats, SessionStats::from_records(&all), "{tag}: stats()");
    let mut pairs = HashSet::new();
    let mut ids = HashSet::new();
    for record in &all {
        assert!(
            pairs.insert(record.pair()),
            "{tag}: two records for {}",
            record.pair()
        );
        assert!(ids.insert(record.session_id), "{tag}: duplicate id");
        assert_eq!(
            store.get_by_pair(&record.pair()).unwrap().as_ref(),
            Some(record),
            "{tag}: get_by_pair disagrees with list"
        );
    }

    // Earlier iterations' records are exactly as they were after the last verification.
    let prefix = format!("{tag}-");
    let (mine, older): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| r.from_team.as_str().starts_with(&prefix));
    let older: BTreeMap<_, _> = older.into_iter().map(|r| (r.session_id, r)).collect();
    assert!(
        &older == before,
        "{tag}: records of earlier iterations changed: {} before, {} now",
        before.len(),
        older.len()
    );

    // Every acknowledged write is there.
    let mut present = 0;
    for (id, facts) in acked {
        let pair = facts
            .pair
            .as_ref()
            .unwrap_or_else(|| panic!("{tag}: {id} acknowledged before its creation"));
        let by_id = store.get_by_session_id(id).unwrap();
        let by_pair = store.get_by_pair(pair).unwrap();
        assert_eq!(
            by_id, by_pair,
            "{tag}: {id}: lookups by id and by pair differ"
        );
        if facts.deleted {
            assert!(by_id.is_none(), "{tag}: {id} was deleted, but is back");
            continue;
        }
        let Some(record) = by_id else {
            assert!(
                facts.deleting,
                "{tag}: acknowledged session {id} ({pair}) is lost"
            );
            continue;
        };
        present += 1;
        assert_eq!(&record.pair(), pair, "{tag}: {id}: pair");
        // Writes to one session are sequential, so at most one increment was unacknowledged.
        assert!(
            record.message_count == facts.count || record.message_count == facts.count + 1,
            "{tag}: {id}: message_count {} after an acknowledged {}",
            record.message_count,
            facts.count
        );
        if let Some(status) = facts.status {
            assert_eq!(record.status, status, "{tag}: {id}: status");
            assert_eq!(
                record.message_count, facts.count,
                "{tag}: {id}: final count"
            );
        }
    }

    // Nothing appeared beyond the writes in flight: at most one unacknowledged create per task.
    let unacked = mine
        .iter()
        .filter(|r| !acked.contains_key(&r.session_id))
        .count();
    assert!(
        unacked <= CHILD_TASKS,
        "{tag}: {unacked} sessions that no acknowledgement mentions"
    );
    for record in &mine {
        if !acked.contains_key(&record.session_id) {
            assert_eq!(record.message_count, 0, "{tag}: phantom increments");
        }
    }
    present
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let seed = std::env::var("IRIS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed} (set IRIS_CRASH_SEED={seed} to replay the kill delays)");
    let mut rng = XorShift(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut before = BTreeMap::new();
    let (mut total_acks, mut total_present) = (0, 0);
    for iteration in 0..ITERATIONS {
        let tag = format!("c{iteration:02}");
        let delay = Duration::from_millis(20 + rng.next() % 281);
        let lines = run_and_kill(&path, &tag, delay);
        let (acked, acks) = parse_acks(&lines);
        assert!(
            acks > 0,
            "{tag}: no acknowledged write, so nothing was tested"
        );

        let store = Store::open(&path)
            .unwrap_or_else(|e| panic!("{tag}: the crashed file does not reopen: {e}"));
        let present = verify(&store, &tag, &acked, &before);
        // A node's start-up write on the crashed file; it must succeed and leave all stopped.
        runtime
            .block_on(store.reset_all_process_states())
            .unwrap_or_else(|e| panic!("{tag}: reset after the crash failed: {e}"));
        assert_eq!(
            store.stats().by_process_state[&ProcessState::Stopped],
            store.stats().total,
            "{tag}: reset left a process running"
        );
        before = store
            .list(&SessionFilter::all())
            .unwrap()
            .into_iter()
            .map(|r| (r.session_id, r))
            .collect();
        drop(store);
        eprintln!(
            "{tag}: killed after {delay:?}: {acks} acks over {} sessions, {present} present, {} records in the file",
            acked.len(),
            before.len()
        );
        total_acks += acks;
        total_present += present;
    }
    eprintln!(
        "{ITERATIONS} crashes in {:?}: {total_acks} acknowledged writes checked, {total_present} sessions verified present",
        started.elapsed()
    );
}
