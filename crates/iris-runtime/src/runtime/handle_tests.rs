//! A caller's wait on a turn, with the session's side played in-process and time paused: the
//! caller's timeout is its own (the turn goes on and its result is kept), and no wait outlives
//! the session that holds the turn.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use iris_core::TurnId;
use tokio::time::Instant;

use super::TurnHandle;
use crate::session::TurnProgress;
use crate::tell::{TellOutcome, TurnError, TurnEvent, TurnResult};

fn turn() -> (std::sync::Arc<TurnProgress>, TurnHandle) {
    let (progress, ticket) = TurnProgress::new(iris_core::SessionId::new_v4(), TurnId::new());
    (progress, TurnHandle { ticket })
}

fn completed(turn_id: TurnId, text: &str) -> TellOutcome {
    TellOutcome::Completed(TurnResult {
        turn_id,
        text: text.into(),
        subtype: "success".into(),
        is_error: false,
        cost_usd: 0.5,
        usage: Default::default(),
        duration_ms: 1,
        num_turns: 1,
    })
}

#[tokio::test(start_paused = true)]
async fn a_caller_timeout_returns_the_text_so_far_at_its_deadline_and_the_turn_goes_on() {
    let (progress, handle) = turn();
    let id = handle.turn_id();
    let session = {
        let progress = progress.clone();
        tokio::spawn(async move {
            progress.started();
            progress.text("first part".into());
            tokio::time::sleep(Duration::from_secs(90)).await;
            progress.finish(completed(progress.turn_id, "first part"));
        })
    };
    let began = Instant::now();
    let early = handle.outcome_within(Duration::from_secs(30)).await;
    assert_eq!(began.elapsed(), Duration::from_secs(30));
    assert_eq!(
        early,
        TellOutcome::CallerTimeout {
            turn_id: id,
            partial: "first part".into()
        }
    );
    // The turn was not disturbed: a later wait gets its result when it ends.
    assert_eq!(handle.outcome().await, completed(id, "first part"));
    assert_eq!(began.elapsed(), Duration::from_secs(90));
    session.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_result_before_the_deadline_is_returned_at_once() {
    let (progress, handle) = turn();
    let id = handle.turn_id();
    progress.finish(completed(id, "quick"));
    let began = Instant::now();
    assert_eq!(
        handle.outcome_within(Duration::from_secs(30)).await,
        completed(id, "quick")
    );
    assert_eq!(began.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn waiters_in_every_mode_are_answered_when_the_session_drops_the_turn() {
    let (progress, handle) = turn();
    let mut events = handle.events();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(progress);
    });
    let interrupted = |outcome: TellOutcome| {
        matches!(
            outcome,
            TellOutcome::Failed {
                error: TurnError::Interrupted { .. },
                ..
            }
        )
    };
    // An unbounded wait does not hang, and neither does a bounded one longer than the turn.
    assert!(interrupted(handle.outcome().await));
    assert!(interrupted(
        handle.outcome_within(Duration::from_secs(3600)).await
    ));
    // The event stream ends too.
    assert!(matches!(
        events.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_the_stream_in_order_then_the_outcome() {
    let (progress, handle) = turn();
    let id = handle.turn_id();
    let mut events = handle.events();
    progress.started();
    progress.text("a".into());
    progress.text("b".into());
    progress.finish(completed(id, "a\nb"));
    let mut seen = Vec::new();
    while let Ok(event) = events.recv().await {
        let done = matches!(event, TurnEvent::Finished { .. });
        seen.push(event);
        if done {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            TurnEvent::Started { turn_id: id },
            TurnEvent::Text {
                turn_id: id,
                text: "a".into()
            },
            TurnEvent::Text {
                turn_id: id,
                text: "b".into()
            },
            TurnEvent::Finished {
                outcome: completed(id, "a\nb")
            },
        ]
    );
    assert_eq!(handle.partial(), "a\nb");
}
