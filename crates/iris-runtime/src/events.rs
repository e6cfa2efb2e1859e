//! The runtime's event stream: what dashboards and integrations watch.
//!
//! Every session actor publishes its state changes (created, process started or stopped, its
//! record's status), its turns' lifecycle (queued, started, text, tools, completed or failed
//! with the cost) and budget alerts to one [`EventBus`]. Each event gets the next number of
//! this run ([`Event::seq`], from 1); the run has an id of its own ([`EventBus::run`]), so a
//! client that resumes after a restart of the node learns its numbers are from another run.
//!
//! The bus keeps the last [`WINDOW`] events, so a client that lost its connection resumes
//! from the last number it saw ([`EventBus::subscribe`]); one that fell further behind is told
//! so ([`Resume::Gap`]) and reloads what it shows. Publishing never waits: a subscriber that
//! does not keep up misses events (its receiver reports the lag) instead of slowing a session.
//!
//! Events of one pair come in the order they happened: a session publishes from its own actor
//! (and its turns' progress, in order), and numbers are given under the bus's lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use iris_core::{
    Pair, ProcessState, SessionId, SessionStatus, Timestamp, TurnId, TurnStatus, UsageTotals,
};
use serde::Serialize;
use tokio::sync::broadcast;

/// How many recent events the bus keeps for clients that resume.
pub const WINDOW: usize = 10_000;

/// How many events a live subscriber may fall behind before it misses some.
const LIVE_BUFFER: usize = 4_096;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Its number in this run: 1, 2, 3, …
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// The pair it is about (`None`: a budget alert of a team or the node).
    #[serde(flatten, with = "pair_fields")]
    pub pair: Option<Pair>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The pair got a session.
    SessionCreated {
        /// The session.
        session_id: SessionId,
    },
    /// The pair's session record changed (status, process state, counters, cost, turn).
    Session {
        /// The session.
        session_id: SessionId,
        /// Its status.
        status: SessionStatus,
        /// Its agent process's state.
        process_state: ProcessState,
        /// Turns it answered.
        message_count: u64,
        /// What it has cost.
        cost_usd: f64,
        /// When it was last used.
        last_used_at: Timestamp,
        /// The turn in flight.
        current_turn: Option<TurnId>,
        /// Turns waiting in its queue.
        queued: usize,
    },
    /// An agent process is up for the pair.
    ProcessStarted {
        /// The session.
        session_id: SessionId,
        /// The agent's process id.
        pid: u32,
    },
    /// The pair's agent process is gone.
    ProcessStopped {
        /// The session.
        session_id: SessionId,
    },
    /// The pair's session was deleted.
    SessionDeleted {
        /// The session that was.
        session_id: SessionId,
    },
    /// A turn was queued.
    TurnQueued {
        /// The turn.
        turn_id: TurnId,
        /// Turns waiting now, this one included.
        queued: usize,
    },
    /// A turn left the queue and is running.
    TurnStarted {
        /// The turn.
        turn_id: TurnId,
    },
    /// A piece of a turn's answer, as it streamed (a new text block starts with a newline).
    Text {
        /// The turn.
        turn_id: TurnId,
        /// The piece.
        text: String,
    },
    /// The agent called a tool.
    ToolStarted {
        /// The turn.
        turn_id: TurnId,
        /// The tool's name.
        tool: String,
        /// The call's id.
        tool_use_id: String,
    },
    /// A tool call's result came back.
    ToolFinished {
        /// The turn.
        turn_id: TurnId,
        /// The tool's name.
        tool: String,
        /// The call's id.
        tool_use_id: String,
        /// How long it ran, in milliseconds.
        ran_for_ms: u64,
    },
    /// A turn completed (its bookkeeping is durable).
    TurnCompleted {
        /// The turn.
        turn_id: TurnId,
        /// What it cost.
        cost_usd: f64,
        /// Its tokens.
        usage: UsageTotals,
        /// The agent's own duration.
        duration_ms: Option<u64>,
    },
    /// A turn failed, was cancelled or interrupted.
    TurnFailed {
        /// The turn.
        turn_id: TurnId,
        /// How it ended: `failed`, `cancelled` or `interrupted`.
        status: TurnStatus,
        /// The stable error code.
        code: String,
        /// What happened and what to do.
        message: String,
    },
    /// A budget cap reached 80 %.
    BudgetWarning(BudgetAlert),
    /// A budget cap was reached.
    BudgetExceeded(BudgetAlert),
}

/// A budget cap's state, in a budget event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetAlert {
    /// The scope's kind: `session`, `sender`, `receiver` or `node`.
    pub scope: String,
    /// Its key: a session id, a team, or `node`.
    pub key: String,
    /// How full it is (the larger of dollars and tokens), in percent.
    pub percent: f64,
    /// What was spent.
    pub spent: iris_store::spend::Spend,
    /// The cap.
    pub cap: iris_core::config::budget::Cap,
}

/// Where a resumed subscription starts.
#[derive(Debug)]
pub enum Resume {
    /// The events after the one asked for, all still kept.
    From(Vec<Arc<Event>>),
    /// Some events after the one asked for are no longer kept (or it is from the future):
    /// the client reloads what it shows.
    Gap,
}

/// A subscription: what it missed (when it resumed), then everything from now on.
#[derive(Debug)]
pub struct Subscription {
    /// The number of the last event published when it was made: `live` starts after it.
    pub last_seq: u64,
    /// The kept events after the one asked for.
    pub resume: Resume,
    /// Every later event, in order.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// The runtime's event stream. Cheap to publish to; see the module documentation.
#[derive(Debug)]
pub struct EventBus {
    run: String,
    kept: Mutex<Kept>,
    live: broadcast::Sender<Arc<Event>>,
}

#[derive(Debug, Default)]
struct Kept {
    last_seq: u64,
    events: VecDeque<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus::new()
    }
}

impl EventBus {
    /// A bus with a new run id.
    pub fn new() -> EventBus {
        EventBus {
            // 48 random bits: enough to tell this run from the node's earlier ones.
            run: SessionId::new_v4().to_string().replace('-', "")[..12].to_owned(),
            kept: Mutex::new(Kept::default()),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }

    /// This run's id: event numbers are comparable only within one run.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The number of the last event published (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// Publishes an event about `pair` (or about no pair).
    pub fn publish(&self, pair: Option<&Pair>, kind: EventKind) {
        let mut kept = self.lock();
        kept.last_seq += 1;
        let event = Arc::new(Event {
            seq: kept.last_seq,
            at: Timestamp::now(),
            pair: pair.cloned(),
            kind,
        });
        if kept.events.len() == WINDOW {
            kept.events.pop_front();
        }
        kept.events.push_back(event.clone());
        // Under the lock, so a subscription sees each event once: in its resume or live.
        let _ = self.live.send(event);
    }

    /// Subscribes from now on, after resuming from event `after` when given.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let kept = self.lock();
        let live = self.live.subscribe();
        let resume = match after {
            None => Resume::From(Vec::new()),
            Some(after) => kept.after(after),
        };
        Subscription {
            last_seq: kept.last_seq,
            resume,
            live,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Kept {
    fn after(&self, after: u64) -> Resume {
        let oldest = self.events.front().map_or(self.last_seq + 1, |e| e.seq);
        if after > self.last_seq || after + 1 < oldest {
            return Resume::Gap;
        }
        let skip = usize::try_from(after + 1 - oldest).unwrap_or(usize::MAX);
        Resume::From(self.events.iter().skip(skip).cloned().collect())
    }
}

/// A pair as the `from` and `to` fields of an event.
mod pair_fields {
    use iris_core::Pair;
    use serde::Serialize;
    use serde::ser::Serializer;

    #[derive(Serialize)]
    struct Fields<'a> {
        from: &'a str,
        to: &'a str,
    }

    pub fn serialize<S: Serializer>(pair: &Option<Pair>, s: S) -> Result<S::Ok, S::Error> {
        match pair {
            Some(pair) => Fields {
                from: pair.from.as_str(),
                to: pair.to.as_str(),
            }
            .serialize(s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> Pair {
        Pair::new(
            iris_core::TeamName::new("alpha").unwrap(),
            iris_core::TeamName::new("beta").unwrap(),
        )
    }

    fn started() -> EventKind {
        EventKind::TurnStarted {
            turn_id: TurnId::new(),
        }
    }

    fn seqs(resume: Resume) -> Option<Vec<u64>> {
        match resume {
            Resume::From(events) => Some(events.iter().map(|e| e.seq).collect()),
            Resume::Gap => None,
        }
    }

    #[test]
    fn a_resumed_subscription_gets_what_it_missed_then_the_rest_once_each() {
        let bus = EventBus::new();
        for _ in 0..5 {
            bus.publish(Some(&pair()), started());
        }
        let mut sub = bus.subscribe(Some(3));
        assert_eq!(seqs(sub.resume), Some(vec![4, 5]));
        bus.publish(Some(&pair()), started());
        assert_eq!(sub.live.try_recv().unwrap().seq, 6);
        assert!(sub.live.try_recv().is_err());
        assert_eq!(seqs(bus.subscribe(Some(6)).resume), Some(vec![]));
        assert_eq!(
            seqs(bus.subscribe(Some(0)).resume),
            Some(vec![1, 2, 3, 4, 5, 6])
        );
    }

    #[test]
    fn a_resume_from_outside_the_window_is_a_gap() {
        let bus = EventBus::new();
        for _ in 0..WINDOW + 10 {
            bus.publish(None, started());
        }
        assert_eq!(bus.last_seq(), (WINDOW + 10) as u64);
        assert!(seqs(bus.subscribe(Some(5)).resume).is_none());
        // From the future (another run's numbers): a gap too.
        assert!(seqs(bus.subscribe(Some(WINDOW as u64 + 11)).resume).is_none());
        // The oldest kept one's predecessor is still a resume.
        assert_eq!(
            seqs(bus.subscribe(Some(10)).resume).map(|s| s.len()),
            Some(WINDOW)
        );
    }

    #[test]
    fn an_event_reads_as_flat_json_with_its_pair() {
        let bus = EventBus::new();
        bus.publish(
            Some(&pair()),
            EventKind::Text {
                turn_id: TurnId::new(),
                text: "hi".into(),
            },
        );
        let sub = bus.subscribe(Some(0));
        let Resume::From(events) = sub.resume else {
            panic!("kept");
        };
        let json = serde_json::to_value(&*events[0]).unwrap();
        assert_eq!(json["kind"], "text");
        assert_eq!(json["from"], "alpha");
        assert_eq!(json["to"], "beta");
        assert_eq!(json["text"], "hi");
        assert_eq!(json["seq"], 1);
        assert!(json["at"].is_string());
        bus.publish(
            None,
            EventKind::BudgetWarning(BudgetAlert {
                scope: "node".into(),
                key: "node".into(),
                percent: 80.0,
                spent: Default::default(),
                cap: iris_core::config::budget::Cap {
                    usd: Some(1.0),
                    tokens: None,
                },
            }),
        );
        let Resume::From(events) = bus.subscribe(Some(1)).resume else {
            panic!("kept");
        };
        let json = serde_json::to_value(&*events[0]).unwrap();
        assert_eq!(json["kind"], "budget_warning");
        assert!(json.get("from").is_none(), "{json}");
        assert_eq!(json["scope"], "node");
    }
}
