//! Start-up against a real store file and real processes: process states are reset, a leftover
//! agent group is killed, a recycled pid is spared, and an invalid team stops start-up before the
//! store is touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iris_agent::containment::Containment;
use iris_agent::procfs;
use iris_agent::reap::ReapOutcome;
use iris_core::config::Config;
use iris_core::{
    AgentProcessMark, Pair, ProcessState, SessionId, SessionRecord, SessionStatus, TeamName,
    Timestamp,
};
use iris_runtime::error::RuntimeError;
use iris_runtime::startup::prepare;
use iris_store::{Change, Store};

const PATIENCE: Duration = Duration::from_secs(2);

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

fn config(dir: &Path, text: &str) -> Config {
    Config::from_toml_str(text, dir, "test.toml", &|_| None).unwrap()
}

/// A configuration with one valid local team.
fn valid_config(dir: &Path) -> Config {
    std::fs::create_dir_all(dir.join("project")).unwrap();
    config(dir, "[teams.web]\npath = \"project\"\n")
}

async fn session(store: &Store, from: &str, to: &str, changes: Vec<Change>) -> SessionId {
    let record = SessionRecord::new(
        Pair::new(team(from), team(to)),
        SessionId::new_v4(),
        Timestamp::now(),
    );
    let id = record.session_id;
    store.create(record).await.unwrap();
    if !changes.is_empty() {
        store.update_all(id, changes).await.unwrap();
    }
    id
}

/// A child leading its own process group; its group is killed and the child reaped on drop, so a
/// failing assertion leaves nothing behind.
struct Group(Child);

impl Group {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        finish(&mut self.0);
    }
}

fn spawn_group(script: &str) -> Group {
    Group(
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

/// Waits (bounded) for `cond`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps `child` within a bounded time, killing its group first if it is still alive.
/// Never panics: it also runs from `Drop`, possibly while a failed assertion unwinds.
fn finish(child: &mut Child) {
    let pid = child.id();
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = child.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            eprintln!("child {pid} did not exit within 10 s");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_resets_states_kills_our_leftovers_and_spares_recycled_pids() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = valid_config(dir.path());
    let db = dir.path().join("iris.redb");

    // A "previous run": records left busy, and agent groups left behind.
    let leftover = spawn_group("sleep 300 & exec sleep 300");
    let leftover_pid = leftover.pid();
    // Wait until the group has both members (the shell has forked the background sleep and
    // exec'd), so that the kill is tested against a real multi-process group.
    eventually("the leftover group to have two members", || {
        procfs::live_group_members(leftover_pid).len() == 2
    });
    let leftover_ticks = procfs::stat(leftover_pid).map(|s| s.start_ticks);
    assert!(leftover_ticks.is_some());

    let unrelated = spawn_group("exec sleep 300");
    let unrelated_pid = unrelated.pid();
    let unrelated_ticks = procfs::stat(unrelated_pid).unwrap().start_ticks;

    let (processing, idle, stopped, killed_session, spared_session);
    {
        let store = Store::open(&db).unwrap();
        processing = session(
            &store,
            "a",
            "b",
            vec![Change::SetProcessState(ProcessState::Processing)],
        )
        .await;
        idle = session(
            &store,
            "b",
            "a",
            vec![Change::SetProcessState(ProcessState::Idle)],
        )
        .await;
        stopped = session(&store, "a", "c", vec![]).await;
        killed_session = session(
            &store,
            "c",
            "a",
            vec![
                Change::SetProcessState(ProcessState::Idle),
                Change::SetAgentProcess(Some(AgentProcessMark {
                    pid: leftover_pid,
                    pgid: leftover_pid,
                    start_ticks: leftover_ticks,
                })),
            ],
        )
        .await;
        // The pid was recorded for a process that started at another time: the kernel has since
        // given it to something else, which must not be touched.
        spared_session = session(
            &store,
            "c",
            "b",
            vec![Change::SetAgentProcess(Some(AgentProcessMark {
                pid: unrelated_pid,
                pgid: unrelated_pid,
                start_ticks: Some(unrelated_ticks - 1),
            }))],
        )
        .await;
        // The store is dropped here, as when the node stopped.
    }

    // The next run.
    let store = Store::open(&db).unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        prepare(&cfg, &store, &Containment::default(), PATIENCE),
    )
    .await
    .expect("start-up finished in time")
    .unwrap();

    // Step 2: every busy state was reset and counted.
    assert_eq!(report.reset, 3, "{report:?}");
    for id in [processing, idle, stopped, killed_session, spared_session] {
        let record = store.get_by_session_id(&id).unwrap().unwrap();
        assert_eq!(record.process_state, ProcessState::Stopped, "{id}");
        assert_eq!(record.current_turn, None);
    }

    // Step 3: our leftover group is gone, the recycled pid is spared, both marks are cleared.
    let outcome = |id: SessionId| {
        report
            .reaped
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, o)| o.clone())
            .unwrap()
    };
    assert_eq!(report.reaped.len(), 2, "{report:?}");
    assert!(
        outcome(killed_session)
            == ReapOutcome::Killed {
                pgid: leftover_pid,
                members: 2,
            },
        "{report:?}"
    );
    assert_eq!(
        outcome(spared_session),
        ReapOutcome::PidReused { pid: unrelated_pid }
    );
    assert!(procfs::live_group_members(leftover_pid).is_empty());
    let spared = procfs::stat(unrelated_pid).unwrap();
    assert!(spared.is_alive());
    assert_eq!(spared.start_ticks, unrelated_ticks);
    for id in [killed_session, spared_session] {
        let record = store.get_by_session_id(&id).unwrap().unwrap();
        assert_eq!(record.agent_process, None, "{id}");
    }
    assert!(store.agent_process_marks().unwrap().is_empty());

    // The marks stay cleared across another restart: a second start-up finds nothing to do.
    let again = prepare(&cfg, &store, &Containment::default(), PATIENCE)
        .await
        .unwrap();
    assert_eq!(again.reset, 0);
    assert!(again.reaped.is_empty());

    // The spared process is still ours to clean up: dropping the guards kills and reaps both.
    drop(leftover);
    drop(unrelated);
    assert!(procfs::live_group_members(unrelated_pid).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_team_stops_start_up_before_the_store_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("good")).unwrap();
    let cfg = config(
        dir.path(),
        "[teams.good]\npath = \"good\"\n[teams.lost]\npath = \"missing-project\"\n",
    );
    let store = Store::open(dir.path().join("iris.redb")).unwrap();
    // A group that start-up would reap, had it got that far.
    let leftover = spawn_group("exec sleep 300");
    let pid = leftover.pid();
    let mark = AgentProcessMark {
        pid,
        pgid: pid,
        start_ticks: procfs::stat(pid).map(|s| s.start_ticks),
    };
    let busy = session(
        &store,
        "good",
        "lost",
        vec![
            Change::SetProcessState(ProcessState::Processing),
            Change::SetAgentProcess(Some(mark)),
        ],
    )
    .await;

    let e = tokio::time::timeout(
        Duration::from_secs(30),
        prepare(&cfg, &store, &Containment::default(), PATIENCE),
    )
    .await
    .expect("start-up finished in time")
    .unwrap_err();
    match &e {
        RuntimeError::InvalidTeam { team: name, reason } => {
            assert_eq!(name, &team("lost"));
            assert!(reason.contains("missing-project"), "{reason}");
        }
        other => panic!("expected InvalidTeam, got {other:?}"),
    }

    let record = store.get_by_session_id(&busy).unwrap().unwrap();
    assert_eq!(record.process_state, ProcessState::Processing);
    assert_eq!(record.agent_process, Some(mark));
    assert!(procfs::stat(pid).unwrap().is_alive());

    drop(leftover);
}

#[tokio::test]
async fn a_compaction_the_previous_run_never_finished_is_repaired_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = valid_config(dir.path());
    let store = Store::open(dir.path().join("iris.redb")).unwrap();
    let stuck = session(
        &store,
        "web",
        "api",
        vec![Change::SetStatus(SessionStatus::Compacting)],
    )
    .await;
    let fine = session(&store, "api", "web", vec![]).await;
    let report = prepare(&cfg, &store, &Containment::default(), PATIENCE)
        .await
        .unwrap();
    assert_eq!(report.repaired_compactions, 1);
    let status = |id| store.get_by_session_id(&id).unwrap().unwrap().status;
    assert_eq!(status(stuck), SessionStatus::Active);
    assert_eq!(status(fine), SessionStatus::Active);
    let again = prepare(&cfg, &store, &Containment::default(), PATIENCE)
        .await
        .unwrap();
    assert_eq!(again.repaired_compactions, 0);
}
