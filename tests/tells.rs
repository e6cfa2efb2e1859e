//! Actor-level tests of tells: queueing, stalls, crashes, error results, control operations,
//! scale and bookkeeping across restarts, with fake-claude as the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use iris::core::{Coded, ProcessState, SessionStatus, TeamName, TurnStatus};
use iris::runtime::{Runtime, RuntimeError, TellOptions, TellOutcome, TurnError, TurnEvent};
use iris::store::Store;
use support::{World, fake_claude, start};

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

fn completed_text(outcome: &TellOutcome) -> &str {
    match outcome {
        TellOutcome::Completed(result) => &result.text,
        other => panic!("expected a completed turn, got {other:?}"),
    }
}

fn failure(outcome: &TellOutcome) -> &TurnError {
    match outcome {
        TellOutcome::Failed { error, .. } => error,
        other => panic!("expected a failed turn, got {other:?}"),
    }
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_to_one_pair_run_one_at_a_time_in_order_and_a_full_queue_refuses() {
    let world = World::new();
    let runtime = start(&world, &["alpha", "beta"], "queue_depth = 2").await;
    let (a, b) = (team("alpha"), team("beta"));
    let first = runtime.submit(&a, &b, "!sleep 600").await.unwrap();
    let second = runtime.submit(&a, &b, "second").await.unwrap();
    let third = runtime.submit(&a, &b, "third").await.unwrap();
    // Two wait behind the running turn: the queue (depth 2) is full.
    let refused = runtime.submit(&a, &b, "fourth").await.unwrap_err();
    assert!(
        matches!(refused, RuntimeError::QueueFull { depth: 2, .. }),
        "{refused:?}"
    );
    let second_id = second.turn_id();
    let mut stream = second.into_events();
    // The turn in flight was not disturbed by the refusal.
    assert!(completed_text(&first.outcome().await).contains("!sleep 600"));
    // The second one started only after the first ended, then streamed and finished.
    let mut seen = Vec::new();
    loop {
        match stream.recv().await.unwrap() {
            TurnEvent::Finished { outcome } => {
                assert_eq!(completed_text(&outcome), "echo: second");
                break;
            }
            event => seen.push(event),
        }
    }
    assert!(matches!(seen.first(), Some(TurnEvent::Started { turn_id }) if *turn_id == second_id));
    assert_eq!(completed_text(&third.outcome().await), "echo: third");
    let report = runtime.report(&a, &b, 10).unwrap();
    let seqs: Vec<u64> = report.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, vec![3, 2, 1], "newest first, in submission order");
    assert!(report.iter().all(|t| t.status == TurnStatus::Completed));
    let record = runtime.get_session(&a, &b).unwrap().unwrap();
    assert_eq!(record.message_count, 3);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_turn_is_killed_and_no_caller_hangs_in_any_wait_mode() {
    let world = World::new();
    let runtime = start(&world, &["alpha", "beta"], "response_timeout = \"400ms\"").await;
    let (a, b) = (team("alpha"), team("beta"));
    let woken = runtime.wake(&a, &b).await.unwrap();
    let pid = runtime
        .get_session(&a, &b)
        .unwrap()
        .unwrap()
        .agent_process
        .unwrap()
        .pid;
    // Every read shows the live state at once, though the store may not hold it yet.
    let by_id = runtime
        .get_session_by_id(&woken.session_id)
        .unwrap()
        .unwrap();
    assert_eq!(by_id.agent_process.map(|m| m.pid), Some(pid));
    let listed = runtime.list_sessions(&Default::default()).unwrap();
    assert_eq!(listed[0].agent_process.map(|m| m.pid), Some(pid));

    // Complete: the stall timeout ends the turn.
    let outcome = runtime
        .tell(&a, &b, "!stall", TellOptions::complete())
        .await
        .unwrap();
    assert!(
        matches!(failure(&outcome), TurnError::Timeout { .. }),
        "{outcome:?}"
    );
    assert!(
        iris::agent::procfs::live_group_members(pid).is_empty(),
        "the stalled agent was killed"
    );
    let record = runtime.get_session(&a, &b).unwrap().unwrap();
    assert_eq!(record.process_state, ProcessState::Stopped);
    assert_eq!(record.failed_turns, 1);

    // Timeout: the caller gets what streamed so far; the turn's end is kept in the ledger.
    let outcome = runtime
        .tell(
            &a,
            &b,
            "!stall",
            TellOptions::timeout(Duration::from_millis(150)),
        )
        .await
        .unwrap();
    let TellOutcome::CallerTimeout { turn_id, .. } = outcome else {
        panic!("expected a caller timeout, got {outcome:?}");
    };
    eventually("the stalled turn to be recorded as failed", async || {
        runtime
            .turn(&turn_id)
            .unwrap()
            .is_some_and(|t| t.status == TurnStatus::Failed)
    })
    .await;

    // Async: accepted at once; the outcome is fetched later from the ledger.
    let outcome = runtime
        .tell(&a, &b, "!stall", TellOptions::no_wait())
        .await
        .unwrap();
    let TellOutcome::Accepted { turn_id } = outcome else {
        panic!("expected accepted, got {outcome:?}");
    };
    assert!(
        runtime.turn(&turn_id).unwrap().is_some(),
        "an accepted turn is in the ledger before its id is returned"
    );
    eventually("the async stalled turn to fail", async || {
        runtime.turn(&turn_id).unwrap().is_some_and(|t| {
            t.status == TurnStatus::Failed
                && t.error
                    .as_ref()
                    .is_some_and(|e| e.code == iris::core::ErrorCode::Timeout)
        })
    })
    .await;
    assert_eq!(runtime.metrics().counter("stalls"), Some(3));
    runtime.shutdown(Duration::from_secs(2)).await;
}

/// A caller that does not wait holds only a turn id, so the turn's first ledger row is durable
/// before the id comes back: for a turn that starts at once (`running`) and for one queued
/// behind it (`queued`). The store lingers a minute over unawaited writes here, so a row that
/// was only queued for the store would not be readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_tells_turn_is_in_the_ledger_when_its_id_comes_back() {
    let world = World::new();
    let config = world.config(&["alpha", "beta"], fake_claude(), "");
    let lingering = iris::store::StoreOptions {
        linger: Duration::from_secs(60),
        ..Default::default()
    };
    let store = Store::open_with(world.db_path(), lingering).unwrap();
    let runtime = Runtime::start(config, store).await.unwrap();
    let (a, b) = (team("alpha"), team("beta"));
    let mut ids = Vec::new();
    for message in ["!sleep 400", "behind it"] {
        let outcome = runtime
            .tell(&a, &b, message, TellOptions::no_wait())
            .await
            .unwrap();
        let TellOutcome::Accepted { turn_id } = outcome else {
            panic!("expected accepted, got {outcome:?}");
        };
        let row = runtime.turn(&turn_id).unwrap();
        assert!(
            row.is_some(),
            "the turn of {message:?} is not in the ledger"
        );
        ids.push(turn_id);
    }
    let behind = runtime.turn(&ids[1]).unwrap().unwrap();
    assert_eq!(behind.status, TurnStatus::Queued, "{behind:?}");
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_the_turn_at_once_and_the_next_tell_resumes_the_same_conversation() {
    let world = World::new();
    // A long stall timeout proves the crash is reported without waiting for it.
    let runtime = start(&world, &["alpha", "beta"], "response_timeout = \"60s\"").await;
    let (a, b) = (team("alpha"), team("beta"));
    let first = runtime
        .tell(&a, &b, "remember me", TellOptions::complete())
        .await
        .unwrap();
    assert_eq!(completed_text(&first), "echo: remember me");
    let crashed = tokio::time::timeout(
        Duration::from_secs(10),
        runtime.tell(&a, &b, "!crash 7", TellOptions::complete()),
    )
    .await
    .expect("the crash is reported without waiting for the stall timeout")
    .unwrap();
    match failure(&crashed) {
        TurnError::AgentExited { code, .. } => assert_eq!(*code, Some(7)),
        other => panic!("expected AgentExited, got {other:?}"),
    }
    let record = runtime.get_session(&a, &b).unwrap().unwrap();
    assert_eq!(record.process_state, ProcessState::Stopped);
    let after = runtime
        .tell(&a, &b, "still there?", TellOptions::complete())
        .await
        .unwrap();
    assert_eq!(completed_text(&after), "echo: still there?");
    // fake-claude resumed the same transcript: it holds the turn before and after the crash.
    let record = runtime.get_session(&a, &b).unwrap().unwrap();
    assert!(
        record
            .launch_command
            .as_deref()
            .unwrap()
            .contains("--resume"),
        "{:?}",
        record.launch_command
    );
    let transcript = find_transcript(world.claude_home.path(), &record.session_id.to_string());
    let text = std::fs::read_to_string(transcript).unwrap();
    assert!(
        text.contains("remember me") && text.contains("still there?"),
        "{text}"
    );
    assert_eq!(record.message_count, 2);
    runtime.shutdown(Duration::from_secs(2)).await;
}

fn find_transcript(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    fn search(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
        std::fs::read_dir(dir).ok()?.find_map(|entry| {
            let path = entry.ok()?.path();
            if path.is_dir() {
                search(&path, name)
            } else {
                path.file_name().is_some_and(|n| n == name).then_some(path)
            }
        })
    }
    search(dir, &format!("{id}.jsonl"))
        .unwrap_or_else(|| panic!("no transcript {id}.jsonl under {}", dir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_result_is_a_failed_turn_and_repeated_crashes_put_the_session_in_error() {
    let world = World::new();
    let runtime = start(&world, &["alpha", "beta"], "crash_limit = 2").await;
    let (a, b) = (team("alpha"), team("beta"));
    let outcome = runtime
        .tell(&a, &b, "!error", TellOptions::complete())
        .await
        .unwrap();
    assert!(
        matches!(failure(&outcome), TurnError::ErrorResult { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        runtime.get_session(&a, &b).unwrap().unwrap().message_count,
        0
    );
    for _ in 0..3 {
        let outcome = runtime
            .tell(&a, &b, "!crash", TellOptions::complete())
            .await
            .unwrap();
        assert!(matches!(failure(&outcome), TurnError::AgentExited { .. }));
    }
    let record = runtime.get_session(&a, &b).unwrap().unwrap();
    assert_eq!(record.status, SessionStatus::Error);
    let refused = runtime
        .tell(&a, &b, "hello", TellOptions::complete())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RuntimeError::SessionFailed { .. }),
        "{refused:?}"
    );
    // Waking takes it out of error.
    runtime.wake(&a, &b).await.unwrap();
    let outcome = runtime
        .tell(&a, &b, "hello", TellOptions::complete())
        .await
        .unwrap();
    assert_eq!(completed_text(&outcome), "echo: hello");
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_operations_act_on_the_named_pair_only() {
    let world = World::new();
    let runtime = start(
        &world,
        &["alpha", "beta", "gamma"],
        "session_init = \"lazy\"",
    )
    .await;
    let (a, b, g) = (team("alpha"), team("beta"), team("gamma"));
    // wake_all wakes alpha -> every other team, and nothing else.
    let woken = runtime.wake_all(&a).await;
    assert_eq!(woken.len(), 2);
    assert!(woken.iter().all(|(_, r)| r.is_ok()), "{woken:?}");
    assert!(runtime.is_awake(&a, &b).await.unwrap());
    assert!(runtime.is_awake(&a, &g).await.unwrap());
    assert!(!runtime.is_awake(&b, &a).await.unwrap());
    runtime.wake(&b, &a).await.unwrap();

    // cancel: interrupts alpha->beta's turn and drops its queue; gamma is untouched.
    let long = runtime.submit(&a, &b, "!hang").await.unwrap();
    let queued = runtime.submit(&a, &b, "queued").await.unwrap();
    let other = runtime.submit(&a, &g, "!sleep 300").await.unwrap();
    eventually("the hang to start", async || {
        runtime.status(&a, &b).await.unwrap().busy
    })
    .await;
    let cancelled = runtime.cancel(&a, &b, true).await.unwrap();
    assert!(cancelled.interrupted);
    assert_eq!(cancelled.dropped, 1);
    assert!(matches!(
        failure(&long.outcome().await),
        TurnError::Cancelled
    ));
    assert!(matches!(
        failure(&queued.outcome().await),
        TurnError::Cancelled
    ));
    assert_eq!(completed_text(&other.outcome().await), "echo: !sleep 300");

    // sleep (graceful) waits for the turn in flight; only the named pair sleeps.
    let busy = runtime.submit(&a, &g, "!sleep 300").await.unwrap();
    eventually("the turn to start", async || {
        runtime.status(&a, &g).await.unwrap().busy
    })
    .await;
    runtime.sleep(&a, &g, false).await.unwrap();
    assert_eq!(completed_text(&busy.outcome().await), "echo: !sleep 300");
    assert!(!runtime.is_awake(&a, &g).await.unwrap());
    assert!(runtime.is_awake(&b, &a).await.unwrap());

    // sleep (forced) interrupts the turn in flight.
    let busy = runtime.submit(&b, &a, "!hang").await.unwrap();
    eventually("the hang to start", async || {
        runtime.status(&b, &a).await.unwrap().busy
    })
    .await;
    runtime.sleep(&b, &a, true).await.unwrap();
    assert!(matches!(
        failure(&busy.outcome().await),
        TurnError::Cancelled
    ));
    assert!(!runtime.is_awake(&b, &a).await.unwrap());

    // reboot: a new session (new id) for that pair only.
    let before = runtime.get_session(&a, &b).unwrap().unwrap().session_id;
    let other_before = runtime.get_session(&b, &a).unwrap().unwrap().session_id;
    let rebooted = runtime.reboot(&a, &b).await.unwrap();
    assert_ne!(rebooted.session_id, before);
    assert_eq!(
        runtime.get_session(&b, &a).unwrap().unwrap().session_id,
        other_before
    );
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sessions_with_twenty_concurrent_tells_each_count_exactly() {
    let world = World::new();
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let runtime = start(
        &world,
        &refs,
        "max_processes = 100\nqueue_depth = 20\nsession_init = \"lazy\"",
    )
    .await;
    let mut tells = tokio::task::JoinSet::new();
    for from in &names {
        for to in &names {
            for n in 0..20 {
                let (runtime, from, to) = (runtime.clone(), team(from), team(to));
                tells.spawn(async move {
                    let outcome = runtime
                        .tell(&from, &to, format!("m{n}"), TellOptions::complete())
                        .await
                        .unwrap();
                    assert_eq!(completed_text(&outcome), format!("echo: m{n}"));
                    // `Completed` means booked: the ledger (the store, not the actor) has it.
                    let TellOutcome::Completed(result) = &outcome else {
                        unreachable!()
                    };
                    let row = runtime.turn(&result.turn_id).unwrap().unwrap();
                    assert_eq!(row.status, TurnStatus::Completed);
                });
            }
        }
    }
    while let Some(done) = tells.join_next().await {
        done.unwrap();
    }
    for from in &names {
        for to in &names {
            let record = runtime
                .get_session(&team(from), &team(to))
                .unwrap()
                .unwrap();
            assert_eq!(record.message_count, 20, "{from}->{to}");
        }
    }
    assert_eq!(runtime.metrics().counter("turns_completed"), Some(2000));
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn counts_and_costs_survive_a_restart_and_unfinished_turns_become_interrupted() {
    let world = World::new();
    let (a, b) = (team("alpha"), team("beta"));
    // The first node runs on its own tokio runtime, dropped without any shutdown: every task
    // (actors, workers) is dropped mid-flight, as in a crash of the node.
    let first = tokio::runtime::Runtime::new().unwrap();
    let (cost, turn_id) = first.block_on(async {
        let runtime = start(&world, &["alpha", "beta"], "").await;
        for n in 0..3 {
            runtime
                .tell(&a, &b, format!("m{n}"), TellOptions::complete())
                .await
                .unwrap();
        }
        let record = runtime.get_session(&a, &b).unwrap().unwrap();
        let hanging = runtime.submit(&a, &b, "!hang").await.unwrap();
        eventually("the hang to start", async || {
            runtime.status(&a, &b).await.unwrap().busy
        })
        .await;
        // Let the transient "running" row reach the ledger.
        eventually("the running row", async || {
            runtime
                .turn(&hanging.turn_id())
                .unwrap()
                .is_some_and(|t| t.status == TurnStatus::Running)
        })
        .await;
        (record.usage.cost_usd, hanging.turn_id())
    });
    drop(first);
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let runtime = start(&world, &["alpha", "beta"], "").await;
        assert!(runtime.startup_report().interrupted_turns >= 1);
        let record = runtime.get_session(&a, &b).unwrap().unwrap();
        assert_eq!(record.message_count, 3);
        assert!(cost > 0.0);
        assert_eq!(record.usage.cost_usd, cost);
        assert_eq!(record.process_state, ProcessState::Stopped);
        let turn = runtime.turn(&turn_id).unwrap().unwrap();
        assert_eq!(turn.status, TurnStatus::Interrupted);
        runtime.shutdown(Duration::from_secs(2)).await;
    });
}

/// Liveness, not silence, through the runtime: a silent tool that runs longer than
/// `response_timeout` completes, status shows it running and the turn's events its start and
/// end; a team's `turn_timeout` caps a turn that keeps streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tool_outlives_the_stall_limit_and_status_shows_it_running() {
    let world = World::new();
    // fake-claude's !tool stays silent (no background-task notice) for as long as it runs.
    let silent = "agent = { env = { FAKE_CLAUDE_TASK_NOTICE_MS = \"600000\" } }";
    let config = world.config_with_teams(
        &[
            ("alpha", ""),
            ("beta", silent),
            ("gamma", "turn_timeout = \"1s\""),
        ],
        fake_claude(),
        "response_timeout = \"1s\"",
    );
    let runtime = Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap();
    let (a, b, c) = (team("alpha"), team("beta"), team("gamma"));

    let mut handle = runtime.submit(&a, &b, "!tool 3000 marker").await.unwrap();
    // From the turn's queueing: it may have started (and its tool too) before submit returned.
    let mut events = handle.take_events();
    let mut shown = String::new();
    eventually("status to show the running tool", async || {
        let status = runtime.status(&a, &b).await.unwrap();
        shown = status.activity.map(|a| a.to_string()).unwrap_or_default();
        shown.starts_with("running tool Bash for ")
    })
    .await;
    let outcome = handle.outcome().await;
    assert!(
        completed_text(&outcome).starts_with("after tool"),
        "{outcome:?}"
    );
    let mut tool_events = Vec::new();
    while let Ok(event) = events.try_recv() {
        match event {
            TurnEvent::ToolStarted { tool, .. } => tool_events.push(format!("started {tool}")),
            TurnEvent::ToolFinished { tool, .. } => tool_events.push(format!("finished {tool}")),
            _ => {}
        }
    }
    assert_eq!(tool_events, ["started Bash", "finished Bash"]);
    let after = runtime.status(&a, &b).await.unwrap();
    assert_eq!(
        after.activity.map(|a| a.to_string()).as_deref(),
        Some("idle")
    );

    // gamma's turns are capped at 1 s: a minute of streaming fails with the cap's error.
    let capped = runtime
        .tell(&a, &c, "!stream 600 100", TellOptions::complete())
        .await
        .unwrap();
    let error = failure(&capped);
    assert_eq!(
        error,
        &TurnError::TurnTimeout {
            limit: Duration::from_secs(1)
        }
    );
    assert_eq!(
        iris::core::Coded::code(error),
        iris::core::ErrorCode::Timeout
    );
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_compaction_that_is_dropped_leaves_the_session_active() {
    let world = World::new();
    let runtime = start(&world, &["alpha", "beta"], "").await;
    let (a, b) = (team("alpha"), team("beta"));
    for drop_it in ["cancel", "forced sleep"] {
        let running = runtime.submit(&a, &b, "!sleep 3000").await.unwrap();
        let id = runtime.get_session(&a, &b).unwrap().unwrap().session_id;
        let compaction = {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.compact_session(&id).await })
        };
        eventually("the compaction is queued", async || {
            runtime.get_session(&a, &b).unwrap().unwrap().status == SessionStatus::Compacting
        })
        .await;
        match drop_it {
            "cancel" => {
                runtime.cancel(&a, &b, true).await.unwrap();
            }
            _ => runtime.sleep(&a, &b, true).await.unwrap(),
        }
        assert!(compaction.await.unwrap().is_err(), "{drop_it}");
        let _ = running.outcome().await;
        let record = runtime.get_session(&a, &b).unwrap().unwrap();
        assert_eq!(record.status, SessionStatus::Active, "{drop_it}");
        let told = runtime
            .tell(&a, &b, "after", TellOptions::complete())
            .await
            .unwrap();
        assert_eq!(completed_text(&told), "echo: after");
    }
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_retried_with_its_request_id_runs_once_also_after_a_restart() {
    let world = World::new();
    let (a, b, c) = (team("alpha"), team("beta"), team("gamma"));
    let request = iris::core::RequestId::new();
    let once = || TellOptions::complete().with_request_id(request);
    let runtime = start(&world, &["alpha", "beta", "gamma"], "").await;
    // Three attempts at once (two waiting for the end, one not): whichever comes first runs,
    // and the others join its turn.
    let (first, joined, accepted) = tokio::join!(
        runtime.tell(&a, &b, "!sleep 300", once()),
        runtime.tell(&a, &b, "!sleep 300", once()),
        runtime.tell(
            &a,
            &b,
            "!sleep 300",
            TellOptions::no_wait().with_request_id(request)
        ),
    );
    let (first, joined, accepted) = (first.unwrap(), joined.unwrap(), accepted.unwrap());
    assert!(completed_text(&first).contains("!sleep 300"), "{first:?}");
    assert_eq!(
        joined, first,
        "a duplicate gets the first attempt's outcome"
    );
    assert_eq!(accepted.turn_id(), first.turn_id());
    // A later retry too, from the ledger.
    assert_eq!(
        runtime.tell(&a, &b, "!sleep 300", once()).await.unwrap(),
        first
    );
    let ledger = runtime.report(&a, &b, 10).unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:#?}");
    assert_eq!(ledger[0].request_id, Some(request));
    // The same id for another pair is a caller's mistake, said so.
    let reused = runtime.tell(&a, &c, "other", once()).await.unwrap_err();
    assert!(
        matches!(reused, RuntimeError::RequestReused { .. }),
        "{reused:?}"
    );
    runtime.shutdown(Duration::from_secs(2)).await;

    // After a restart, the ledger still knows the request: no second turn.
    let runtime = start(&world, &["alpha", "beta", "gamma"], "").await;
    let again = runtime.tell(&a, &b, "!sleep 300", once()).await.unwrap();
    assert_eq!(again.turn_id(), first.turn_id());
    assert_eq!(completed_text(&again), completed_text(&first));
    assert_eq!(runtime.report(&a, &b, 10).unwrap().len(), 1);
    // Without an id, the same message is a new turn, as always.
    runtime
        .tell(&a, &b, "!sleep 300", TellOptions::complete())
        .await
        .unwrap();
    assert_eq!(runtime.report(&a, &b, 10).unwrap().len(), 2);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_turn_costs_is_counted_in_the_store_for_its_session_teams_and_node() {
    use iris::store::spend::{SpendScope, WHOLE_LIFE};
    let world = World::new();
    let (a, b) = (team("alpha"), team("beta"));
    let runtime = start(&world, &["alpha", "beta"], "").await;
    let today =
        || iris::core::config::budget::Budgets::default().day_of(iris::core::Timestamp::now());
    let day = today();
    let outcome = runtime
        .tell(&a, &b, "what does it cost?", TellOptions::complete())
        .await
        .unwrap();
    let TellOutcome::Completed(result) = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        result.cost_usd > 0.0,
        "fake-claude reports a cost: {result:?}"
    );
    let session = runtime.get_session(&a, &b).unwrap().unwrap().session_id;
    // Across midnight UTC the turn counts in the next day: not worth a flaky failure.
    let crossed_midnight = today() != day;
    runtime.shutdown(Duration::from_secs(2)).await;
    if crossed_midnight {
        return;
    }

    let store = Store::open(world.db_path()).unwrap();
    for (scope, on) in [
        (SpendScope::Session(session), WHOLE_LIFE),
        (SpendScope::Sender(a.clone()), day),
        (SpendScope::Receiver(b.clone()), day),
        (SpendScope::Node, day),
    ] {
        let spent = store.spend(&scope, on).unwrap();
        assert_eq!(spent.usd, result.cost_usd, "{scope}");
        assert!(spent.tokens > 0, "{scope}: {spent:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_is_refused_once_a_cap_is_reached_and_still_after_a_restart() {
    let world = World::new();
    let (a, b, c) = (team("alpha"), team("beta"), team("gamma"));
    let teams = ["alpha", "beta", "gamma"];
    let tell = |runtime: &Runtime, to: &TeamName| {
        let (runtime, from, to) = (runtime.clone(), a.clone(), to.clone());
        async move {
            runtime
                .tell(&from, &to, "spend", TellOptions::complete())
                .await
        }
    };
    // Budget days are set so that it is noon now: no midnight falls within the test. Every
    // runtime here counts spend in those days.
    let day = format!(
        "\n[budgets]\nday = \"{}\"\n",
        support::offset_putting_now_at_noon()
    );
    // What one turn costs (fake-claude's price is fixed).
    let runtime = start(&world, &teams, &day).await;
    let cost = match tell(&runtime, &b).await.unwrap() {
        TellOutcome::Completed(result) => result.cost_usd,
        other => panic!("{other:?}"),
    };
    runtime.shutdown(Duration::from_secs(2)).await;

    // beta may spend 2.5 turns' worth a day as receiver: it has spent 1. Its agent is launched
    // with the 1.5 turns' worth left as its spending limit: the next turn passes, the one
    // after is stopped by the agent at that limit (and still counted), and the next is refused
    // at the door.
    let budgets = format!(
        "{day}[budgets.teams.beta]\nas_receiver = {{ usd = {} }}\n",
        cost * 2.5
    );
    let runtime = start(&world, &teams, &budgets).await;
    assert!(matches!(
        tell(&runtime, &b).await,
        Ok(TellOutcome::Completed(_))
    ));
    let launch = runtime
        .get_session(&a, &b)
        .unwrap()
        .unwrap()
        .launch_command
        .clone()
        .unwrap_or_default();
    // What was left, to the micro-dollar, rounded down.
    let left = format!("{:.6}", (cost * 1.5 * 1e6).floor() / 1e6);
    assert!(
        launch.ends_with(&format!("--max-budget-usd={left}")),
        "{launch}"
    );
    match tell(&runtime, &b).await.unwrap() {
        TellOutcome::Failed { error, .. } => {
            assert_eq!(
                error.code(),
                iris::core::ErrorCode::BudgetExceeded,
                "{error}"
            );
            assert!(error.to_string().contains("spending limit"), "{error}");
        }
        other => panic!("the agent's limit stops the turn: {other:?}"),
    }
    let refused = tell(&runtime, &b).await.unwrap_err();
    assert_eq!(
        refused.code(),
        iris::core::ErrorCode::BudgetExceeded,
        "{refused}"
    );
    let message = refused.to_string();
    for says in [
        "team beta as receiver",
        "resets at",
        "[budgets.teams.beta] as_receiver",
    ] {
        assert!(message.contains(says), "{message}");
    }
    // Another receiver is not affected. Another sender to beta is refused before its session
    // is made.
    assert!(matches!(
        tell(&runtime, &c).await,
        Ok(TellOutcome::Completed(_))
    ));
    let refused = runtime
        .tell(&c, &b, "spend", TellOptions::complete())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        iris::core::ErrorCode::BudgetExceeded,
        "{refused}"
    );
    assert_eq!(runtime.get_session(&c, &b).unwrap(), None);
    runtime.shutdown(Duration::from_secs(2)).await;

    // The spend is durable: after a restart the cap still holds.
    let runtime = start(&world, &teams, &budgets).await;
    let refused = tell(&runtime, &b).await.unwrap_err();
    assert_eq!(
        refused.code(),
        iris::core::ErrorCode::BudgetExceeded,
        "{refused}"
    );
    assert_eq!(runtime.report(&a, &b, 10).unwrap().len(), 3);
    runtime.shutdown(Duration::from_secs(2)).await;
}

/// A clock for budgets that the test moves: it starts at noon UTC today.
fn movable_clock() -> (
    iris::runtime::Clock,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let day = 86_400_000;
    let noon = iris::core::Timestamp::now().as_millis() / day * day + day / 2;
    let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(noon));
    let read = now.clone();
    let clock = iris::runtime::Clock::from_fn(move || {
        iris::core::Timestamp::from_millis(read.load(std::sync::atomic::Ordering::SeqCst))
    });
    (clock, now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_resets_when_the_budget_day_changes() {
    let world = World::new();
    let (a, b) = (team("alpha"), team("beta"));
    let (clock, now) = movable_clock();
    // One counted token is enough to reach it: every turn spends the day's budget.
    let budgets = "\n[budgets]\n[budgets.teams.alpha]\nas_sender = { tokens = 1 }\n";
    let runtime =
        support::start_with_clock(&world, &["alpha", "beta"], budgets, clock.clone()).await;
    let tell = || runtime.tell(&a, &b, "spend", TellOptions::complete());
    assert!(matches!(tell().await, Ok(TellOutcome::Completed(_))));
    let refused = tell().await.unwrap_err();
    assert_eq!(refused.code(), iris::core::ErrorCode::BudgetExceeded);
    assert!(
        refused.to_string().contains("team alpha as sender"),
        "{refused}"
    );
    // Eleven hours later it is still the same UTC day…
    now.fetch_add(11 * 3_600_000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        tell().await.unwrap_err().code(),
        iris::core::ErrorCode::BudgetExceeded
    );
    // …and two hours after that, a new one.
    now.fetch_add(2 * 3_600_000, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(tell().await, Ok(TellOutcome::Completed(_))));
    assert_eq!(
        tell().await.unwrap_err().code(),
        iris::core::ErrorCode::BudgetExceeded
    );
    assert_eq!(runtime.metrics().counter("budget_refusals"), Some(3));
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_queued_behind_the_turn_that_reaches_a_cap_fail_with_budget_exceeded() {
    let world = World::new();
    let (a, b) = (team("alpha"), team("beta"));
    let (clock, _) = movable_clock();
    let budgets = "\n[budgets]\n[budgets.teams.beta]\nas_receiver = { tokens = 1 }\n";
    let runtime = support::start_with_clock(&world, &["alpha", "beta"], budgets, clock).await;
    // The first turn runs long enough for two more to queue behind it.
    let first = runtime.submit(&a, &b, "!sleep 500").await.unwrap();
    let mut queued = Vec::new();
    for n in 0..2 {
        queued.push(runtime.submit(&a, &b, format!("queued {n}")).await.unwrap());
    }
    let limit = Duration::from_secs(30);
    assert!(matches!(
        first.outcome_within(limit).await,
        TellOutcome::Completed(_)
    ));
    for handle in &queued {
        match handle.outcome_within(limit).await {
            TellOutcome::Failed { error, .. } => {
                assert_eq!(
                    error.code(),
                    iris::core::ErrorCode::BudgetExceeded,
                    "{error}"
                );
                assert!(error.to_string().contains("waited in the queue"), "{error}");
            }
            other => panic!("a queued tell fails at the cap: {other:?}"),
        }
    }
    let ledger = runtime.report(&a, &b, 10).unwrap();
    let codes: Vec<_> = ledger
        .iter()
        .map(|t| (t.status, t.error.as_ref().map(|e| e.code)))
        .collect();
    assert_eq!(
        codes,
        vec![
            (
                TurnStatus::Failed,
                Some(iris::core::ErrorCode::BudgetExceeded)
            ),
            (
                TurnStatus::Failed,
                Some(iris::core::ErrorCode::BudgetExceeded)
            ),
            (TurnStatus::Completed, None),
        ]
    );
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_at_80_percent_flags_the_turn_and_the_pair_and_is_counted_once() {
    let world = World::new();
    let (a, b) = (team("alpha"), team("beta"));
    let (clock, _) = movable_clock();
    // What one turn counts, in tokens (fake-claude's are fixed for a given text).
    let runtime = support::start_with_clock(&world, &["alpha", "beta"], "", clock.clone()).await;
    runtime
        .tell(&a, &b, "spend", TellOptions::complete())
        .await
        .unwrap();
    let turn = runtime.report(&a, &b, 1).unwrap().remove(0);
    let tokens = iris::core::config::budget::counted_tokens(&turn.usage);
    assert!(!turn.budget_warning);
    runtime.shutdown(Duration::from_secs(2)).await;

    // A cap one such turn fills to 85 %: spent already (the spend is durable), so the next
    // turn crosses it. Only the node cap is set, so the warning comes from it.
    let cap = (tokens as f64 / 0.85).ceil() as u64;
    let budgets = format!("\n[budgets]\nnode_daily = {{ tokens = {} }}\n", cap * 2);
    let runtime = support::start_with_clock(&world, &["alpha", "beta"], &budgets, clock).await;
    runtime
        .tell(&a, &b, "spend", TellOptions::complete())
        .await
        .unwrap();
    let ledger = runtime.report(&a, &b, 2).unwrap();
    assert!(
        ledger[0].budget_warning,
        "2 turns of {tokens} of a cap of {}",
        cap * 2
    );
    assert!(!ledger[1].budget_warning);
    assert!(runtime.status(&a, &b).await.unwrap().budget_warning);
    assert_eq!(runtime.metrics().counter("budget_warnings"), Some(1));
    // The next turn reaches the cap: counted once as exceeded, and the turn is flagged too.
    runtime
        .tell(&a, &b, "spend", TellOptions::complete())
        .await
        .unwrap();
    assert_eq!(runtime.metrics().counter("budget_exceeded"), Some(1));
    assert_eq!(runtime.metrics().counter("budget_warnings"), Some(1));
    assert!(runtime.report(&a, &b, 1).unwrap()[0].budget_warning);
    runtime.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_raised_at_run_time_applies_at_once_and_after_a_restart_until_reset() {
    use iris::core::config::budget::Cap;
    let world = World::new();
    let (a, b) = (team("alpha"), team("beta"));
    let (clock, _) = movable_clock();
    let budgets = "\n[budgets]\n[budgets.teams.beta]\nas_receiver = { tokens = 1 }\n";
    let teams = ["alpha", "beta"];
    let runtime = support::start_with_clock(&world, &teams, budgets, clock.clone()).await;
    let tell = |runtime: &Runtime| {
        let (runtime, a, b) = (runtime.clone(), a.clone(), b.clone());
        async move { runtime.tell(&a, &b, "spend", TellOptions::complete()).await }
    };
    assert!(matches!(
        tell(&runtime).await,
        Ok(TellOutcome::Completed(_))
    ));
    let refused = tell(&runtime).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("iris budget set teams.beta.as_receiver"),
        "{refused}"
    );

    // Raised without a restart: the next tell passes.
    let raised = Cap {
        usd: None,
        tokens: Some(1_000_000),
    };
    let report = runtime
        .set_budget_cap("teams.beta.as_receiver", Some(raised))
        .await
        .unwrap();
    let beta = report
        .scopes
        .iter()
        .find(|s| s.scope == "receiver" && s.key == "beta")
        .unwrap();
    assert_eq!(beta.cap, raised);
    assert_eq!(beta.set_by, "iris budget set teams.beta.as_receiver");
    assert!(matches!(
        tell(&runtime).await,
        Ok(TellOutcome::Completed(_))
    ));
    // A key that names no cap, or no team, or a cap without a limit: refused, nothing kept.
    for (key, cap) in [
        ("teams.beta", raised),
        ("teams.nobody.as_sender", raised),
        (
            "node_daily",
            Cap {
                usd: Some(-1.0),
                tokens: None,
            },
        ),
    ] {
        let error = runtime.set_budget_cap(key, Some(cap)).await.unwrap_err();
        assert_eq!(
            error.code(),
            iris::core::ErrorCode::ValidationError,
            "{error}"
        );
        assert!(error.to_string().contains(key), "{error}");
    }
    runtime.shutdown(Duration::from_secs(2)).await;

    // Kept across a restart, until it is reset.
    let runtime = support::start_with_clock(&world, &teams, budgets, clock.clone()).await;
    assert!(matches!(
        tell(&runtime).await,
        Ok(TellOutcome::Completed(_))
    ));
    let report = runtime
        .set_budget_cap("teams.beta.as_receiver", None)
        .await
        .unwrap();
    assert_eq!(report.scopes.len(), 1, "{report:?}");
    assert!(
        report
            .scopes
            .iter()
            .all(|s| s.set_by.starts_with("[budgets"))
    );
    let refused = tell(&runtime).await.unwrap_err();
    assert_eq!(refused.code(), iris::core::ErrorCode::BudgetExceeded);
    runtime.shutdown(Duration::from_secs(2)).await;
}
