#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use iris_core::config::Config;
use iris_core::{AgentProcessMark, Pair, SessionId, SessionRecord, TeamName, Timestamp};
use iris_store::{Change, Store};

use super::*;

fn config(dir: &Path, text: &str) -> Config {
    Config::from_toml_str(text, dir, "test.toml", &|_| None).unwrap()
}

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

fn invalid(e: &RuntimeError) -> (&TeamName, &str) {
    match e {
        RuntimeError::InvalidTeam { team, reason } => (team, reason.as_str()),
        other => panic!("expected InvalidTeam, got {other:?}"),
    }
}

#[test]
fn a_missing_team_path_names_the_team_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let cfg = config(
        dir.path(),
        &format!(
            "[teams.frontend]\npath = {:?}\n",
            missing.display().to_string()
        ),
    );
    let e = validate_teams(&cfg).unwrap_err();
    let (name, reason) = invalid(&e);
    assert_eq!(name, &team("frontend"));
    assert!(reason.contains("does not exist"), "{reason}");
    assert!(reason.contains(&missing.display().to_string()), "{reason}");
    let shown = e.to_string();
    assert!(
        shown.contains("frontend") && shown.contains("nowhere"),
        "{shown}"
    );
    assert_eq!(
        iris_core::Coded::code(&e),
        iris_core::ErrorCode::ConfigError
    );
}

#[test]
fn a_relative_path_is_resolved_against_the_config_dir_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("proj")).unwrap();
    let cfg = config(dir.path(), "[teams.web]\npath = \"proj\"\n");
    validate_teams(&cfg).unwrap();
    assert!(team_problems(&cfg).is_empty());
}

#[test]
fn a_system_location_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[teams.ops]\npath = \"/etc\"\n");
    let e = validate_teams(&cfg).unwrap_err();
    let (name, reason) = invalid(&e);
    assert_eq!(name, &team("ops"));
    assert!(reason.contains("system location"), "{reason}");
    assert!(reason.contains("/etc"), "{reason}");
}

#[test]
fn a_remote_team_skips_the_local_path_checks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[teams.far]\npath = \"/definitely/not/here/on/this/machine\"\nremote = { destination = \"me@host\" }\n",
    );
    validate_teams(&cfg).unwrap();
    assert!(team_problems(&cfg).is_empty());
}

#[test]
fn team_problems_returns_every_problem_in_name_order_and_validate_the_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("good")).unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[teams.zeta]\npath = \"/etc\"\n\
             [teams.alpha]\npath = \"missing\"\n\
             [teams.mid]\npath = \"good\"\n\
             [teams.beta]\npath = {:?}\n\
             [teams.remote]\npath = \"/nope\"\nremote = {{ destination = \"me@host\" }}\n",
            file.display().to_string()
        ),
    );
    let problems = team_problems(&cfg);
    let names: Vec<_> = problems.iter().map(|p| invalid(p).0.clone()).collect();
    assert_eq!(names, vec![team("alpha"), team("beta"), team("zeta")]);
    assert!(invalid(&problems[1]).1.contains("not a directory"));
    let first = validate_teams(&cfg).unwrap_err();
    assert_eq!(invalid(&first).0, &team("alpha"));
}

#[test]
fn an_empty_team_table_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    validate_teams(&cfg).unwrap();
}

#[test]
fn only_outcomes_that_end_our_claim_clear_the_mark() {
    assert!(clears_mark(&ReapOutcome::NotRunning));
    assert!(clears_mark(&ReapOutcome::PidReused { pid: 1 }));
    assert!(clears_mark(&ReapOutcome::Killed {
        pgid: 1,
        members: 1
    }));
    assert!(!clears_mark(&ReapOutcome::Unverifiable { pid: 1 }));
    assert!(!clears_mark(&ReapOutcome::Survived {
        pgid: 1,
        members: vec![1]
    }));
}

async fn marked(store: &Store, from: &str, to: &str, mark: AgentProcessMark) -> SessionId {
    let record = SessionRecord::new(
        Pair::new(team(from), team(to)),
        SessionId::new_v4(),
        Timestamp::now(),
    );
    let id = record.session_id;
    store.create(record).await.unwrap();
    store
        .update(id, Change::SetAgentProcess(Some(mark)))
        .await
        .unwrap();
    id
}

/// A pid above the kernel's maximum (2^22), so no process can have it.
const NO_SUCH_PID: u32 = 4_000_000_000;

#[tokio::test]
async fn gone_groups_lose_their_mark_and_unverifiable_ones_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let store = Store::in_memory().unwrap();
    let gone = marked(
        &store,
        "a",
        "b",
        AgentProcessMark {
            pid: NO_SUCH_PID,
            pgid: NO_SUCH_PID,
            start_ticks: Some(1),
        },
    )
    .await;
    // Our own test process, recorded without a start time: it cannot be proven to be an agent of
    // ours, so it must be left alone (or this test would kill itself) and the mark kept.
    let me = std::process::id();
    let unverifiable = marked(
        &store,
        "b",
        "a",
        AgentProcessMark {
            pid: me,
            pgid: me,
            start_ticks: None,
        },
    )
    .await;

    let report = prepare(
        &cfg,
        &store,
        &Containment::default(),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(report.reset, 0);
    assert_eq!(report.reaped.len(), 2);
    let outcome = |id| {
        report
            .reaped
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, o)| o.clone())
            .unwrap()
    };
    assert_eq!(outcome(gone), ReapOutcome::NotRunning);
    assert_eq!(outcome(unverifiable), ReapOutcome::Unverifiable { pid: me });

    let gone_record = store.get_by_session_id(&gone).unwrap().unwrap();
    assert_eq!(gone_record.agent_process, None);
    let kept = store.get_by_session_id(&unverifiable).unwrap().unwrap();
    assert_eq!(kept.agent_process.map(|m| m.pid), Some(me));
    assert_eq!(
        store
            .agent_process_marks()
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>(),
        vec![unverifiable]
    );
}

#[tokio::test]
async fn many_marks_are_all_reaped_and_reported_in_store_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let store = Store::in_memory().unwrap();
    let count = REAP_PARALLELISM * 2 + 3;
    for i in 0..count {
        let pid = NO_SUCH_PID + i as u32;
        marked(
            &store,
            &format!("from{i}"),
            "to",
            AgentProcessMark {
                pid,
                pgid: pid,
                start_ticks: Some(7),
            },
        )
        .await;
    }
    let listed: Vec<SessionId> = store
        .agent_process_marks()
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let report = prepare(
        &cfg,
        &store,
        &Containment::default(),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let reported: Vec<SessionId> = report.reaped.iter().map(|(s, _)| *s).collect();
    assert_eq!(reported, listed);
    assert!(
        report
            .reaped
            .iter()
            .all(|(_, o)| *o == ReapOutcome::NotRunning)
    );
    assert!(store.agent_process_marks().unwrap().is_empty());
}
