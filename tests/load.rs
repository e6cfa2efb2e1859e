//! Load waits instead of failing: a tell that finds its session's queue full waits for room,
//! within its own wait limit; only a caller that asked not to wait (`--async`) is refused at
//! once. On the default configuration, 100 concurrent tells to one pair and 1,000 across 50
//! pairs all complete, and every session counts exactly the messages it was sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::time::{Duration, Instant};

use iris::core::TeamName;
use iris::runtime::{Runtime, RuntimeError, TellOptions, TellOutcome};
use support::{World, start};

fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

fn completed(outcome: &TellOutcome) -> &str {
    match outcome {
        TellOutcome::Completed(result) => &result.text,
        other => panic!("expected a completed turn, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_that_finds_the_queue_full_waits_for_room_unless_it_asked_not_to_wait() {
    let world = World::new();
    let runtime = start(&world, &["alpha", "beta"], "queue_depth = 1").await;
    let (a, b) = (team("alpha"), team("beta"));
    // One turn runs for a while, one waits behind it: the queue is full.
    let running = runtime.submit(&a, &b, "!sleep 3000").await.unwrap();
    let queued = runtime.submit(&a, &b, "queued").await.unwrap();

    let refused = runtime
        .tell(&a, &b, "async", TellOptions::no_wait())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RuntimeError::QueueFull { .. }),
        "{refused:?}"
    );
    let refused = runtime
        .tell(
            &a,
            &b,
            "brief",
            TellOptions::timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RuntimeError::QueueFull { .. }),
        "{refused:?}"
    );
    assert_eq!(runtime.metrics().counter("queue_full"), Some(2));

    // A tell that waits for its answer waits for room first.
    let waiting = {
        let runtime = runtime.clone();
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            runtime
                .tell(&a, &b, "patient", TellOptions::complete())
                .await
        })
    };
    assert!(completed(&running.outcome().await).contains("!sleep 3000"));
    assert_eq!(completed(&queued.outcome().await), "echo: queued");
    let patient = waiting.await.unwrap().unwrap();
    assert_eq!(completed(&patient), "echo: patient");
    assert_eq!(
        runtime.metrics().counter("queue_full"),
        Some(2),
        "a tell that waited is not a refusal"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// Sends `per_pair` concurrent tells to each pair `from`→`to`, all waiting for their answers,
/// and checks every one completed and every session counts exactly its messages.
async fn burst(runtime: &Runtime, pairs: &[(TeamName, TeamName)], per_pair: usize) {
    let started = Instant::now();
    let mut tells = tokio::task::JoinSet::new();
    for (from, to) in pairs {
        for n in 0..per_pair {
            let (runtime, from, to) = (runtime.clone(), from.clone(), to.clone());
            tells.spawn(async move {
                let message = format!("{from} to {to}, number {n}");
                let outcome = runtime
                    .tell(&from, &to, message.clone(), TellOptions::complete())
                    .await;
                (message, outcome)
            });
        }
    }
    let mut done = 0;
    while let Some(joined) = tells.join_next().await {
        let (message, outcome) = joined.unwrap();
        let outcome = outcome.unwrap_or_else(|e| panic!("{message}: {e}"));
        assert_eq!(completed(&outcome), format!("echo: {message}"));
        done += 1;
    }
    assert_eq!(done, pairs.len() * per_pair);
    for (from, to) in pairs {
        let record = runtime.get_session(from, to).unwrap().unwrap();
        assert_eq!(record.message_count, per_pair as u64, "{from}->{to}");
    }
    eprintln!(
        "{} tells over {} pair(s): all completed in {:?}",
        done,
        pairs.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_tells_to_one_pair_all_complete_on_the_default_config() {
    let world = World::new();
    let runtime = start(&world, &["alpha", "beta"], "").await;
    burst(&runtime, &[(team("alpha"), team("beta"))], 100).await;
    assert_eq!(runtime.metrics().counter("queue_full"), Some(0));
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tells_across_fifty_pairs_all_complete_on_the_default_config() {
    let world = World::new();
    let names: Vec<String> = (0..51).map(|n| format!("t{n}")).collect();
    let teams: Vec<&str> = names.iter().map(String::as_str).collect();
    let runtime = start(&world, &teams, "").await;
    let pairs: Vec<(TeamName, TeamName)> =
        (1..=50).map(|n| (team("t0"), team(&names[n]))).collect();
    burst(&runtime, &pairs, 20).await;
    assert_eq!(runtime.metrics().counter("queue_full"), Some(0));
    runtime.shutdown(Duration::from_secs(5)).await;
}
