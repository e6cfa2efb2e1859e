//! Model-based test of the runtime: random sequences of its operations, some of them run
//! concurrently, checked against a plain `HashMap` after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use iris::core::{Pair, SessionFilter, SessionId, SessionRecord, SessionStatus, TeamName};
use iris::runtime::{Runtime, RuntimeError, TranscriptRemoval};
use iris::store::Store;
use proptest::prelude::*;
use support::{World, fake_claude};

const TEAMS: [&str; 3] = ["a", "b", "c"];

/// A pair of teams, by position in [`TEAMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct P(usize, usize);

impl P {
    fn all() -> Vec<P> {
        (0..TEAMS.len())
            .flat_map(|f| (0..TEAMS.len()).map(move |t| P(f, t)))
            .collect()
    }

    fn from(self) -> TeamName {
        TeamName::new(TEAMS[self.0]).unwrap()
    }

    fn to(self) -> TeamName {
        TeamName::new(TEAMS[self.1]).unwrap()
    }

    fn pair(self) -> Pair {
        Pair::new(self.from(), self.to())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    GetOrCreate,
    Create,
    Get,
    Increment(u64),
    RecordUsage,
    Delete,
    Compact,
}

/// One operation. `unknown` applies to the operations addressed by session id: instead of the
/// pair's current session, aim at an id that does not exist (a deleted one, or a fresh one).
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    pair: P,
    unknown: Option<usize>,
}

#[derive(Debug, Clone)]
enum Step {
    One(Op),
    /// Operations on distinct pairs, run concurrently.
    Concurrent(Vec<Op>),
    /// Concurrent creators of one pair: `true` is `create_session`, `false` is
    /// `get_or_create_session`.
    SamePair(P, Vec<bool>),
    /// Concurrent `increment_message_count` calls on one session (picked among the existing
    /// ones by position, if there are any).
    Increments(usize, Vec<u64>),
}

fn arb_pair() -> impl Strategy<Value = P> {
    proptest::sample::select(P::all())
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::GetOrCreate),
        2 => Just(Kind::Create),
        1 => Just(Kind::Get),
        4 => (0u64..50).prop_map(Kind::Increment),
        1 => Just(Kind::RecordUsage),
        2 => Just(Kind::Delete),
        2 => Just(Kind::Compact),
    ]
}

fn arb_unknown() -> impl Strategy<Value = Option<usize>> {
    proptest::option::weighted(0.15, any::<usize>())
}

fn arb_op_on(pair: P) -> impl Strategy<Value = Op> {
    (arb_kind(), arb_unknown()).prop_map(move |(kind, unknown)| Op {
        kind,
        pair,
        unknown,
    })
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => arb_pair().prop_flat_map(arb_op_on).prop_map(Step::One),
        2 => proptest::sample::subsequence(P::all(), 2..=4)
            .prop_flat_map(|pairs| pairs.into_iter().map(arb_op_on).collect::<Vec<_>>())
            .prop_map(Step::Concurrent),
        1 => (arb_pair(), proptest::collection::vec(any::<bool>(), 2..6))
            .prop_map(|(pair, creators)| Step::SamePair(pair, creators)),
        1 => (any::<usize>(), proptest::collection::vec(1u64..10, 2..6))
            .prop_map(|(i, by)| Step::Increments(i, by)),
    ]
}

/// Outcomes reduced to what the model can predict.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Session {
        id: SessionId,
        count: u64,
        status: SessionStatus,
    },
    NoSession,
    Deleted(Option<SessionId>),
    AlreadyExists(SessionId),
    NotFound,
    Unexpected(String),
}

impl Outcome {
    fn of(record: &SessionRecord) -> Outcome {
        Outcome::Session {
            id: record.session_id,
            count: record.message_count,
            status: record.status,
        }
    }

    fn session_id(&self) -> Option<SessionId> {
        match self {
            Outcome::Session { id, .. } | Outcome::AlreadyExists(id) => Some(*id),
            _ => None,
        }
    }
}

fn reduce<T>(result: Result<T, RuntimeError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(v) => ok(v),
        Err(RuntimeError::AlreadyExists { existing, .. }) => Outcome::AlreadyExists(existing),
        Err(RuntimeError::NotFound { .. }) => Outcome::NotFound,
        Err(other) => Outcome::Unexpected(format!("{other:?}")),
    }
}

/// Runs `op`; `id` is the session id it is addressed to (for the operations that take one).
async fn exec(runtime: &Runtime, op: Op, id: SessionId) -> Outcome {
    let (from, to) = (op.pair.from(), op.pair.to());
    match op.kind {
        Kind::GetOrCreate => reduce(runtime.get_or_create_session(&from, &to).await, |r| {
            Outcome::of(&r)
        }),
        Kind::Create => reduce(runtime.create_session(&from, &to).await, |r| {
            Outcome::of(&r)
        }),
        Kind::Get => reduce(runtime.get_session(&from, &to), |r| {
            r.map_or(Outcome::NoSession, |r| Outcome::of(&r))
        }),
        Kind::Increment(n) => reduce(runtime.increment_message_count(&id, n).await, |r| {
            Outcome::of(&r)
        }),
        Kind::RecordUsage => reduce(runtime.record_usage(&id).await, |r| Outcome::of(&r)),
        Kind::Compact => reduce(runtime.compact_session(&id).await, |r| Outcome::of(&r)),
        Kind::Delete => reduce(runtime.delete_session(&id, false).await, |d| {
            if d.transcript != TranscriptRemoval::NotRequested {
                return Outcome::Unexpected(format!("transcript: {:?}", d.transcript));
            }
            Outcome::Deleted(d.deleted.map(|r| r.session_id))
        }),
    }
}

#[derive(Debug, Clone)]
struct ModelSession {
    session_id: SessionId,
    message_count: u64,
    status: SessionStatus,
}

impl ModelSession {
    fn outcome(&self) -> Outcome {
        Outcome::Session {
            id: self.session_id,
            count: self.message_count,
            status: self.status,
        }
    }
}

/// The reference: which pairs have a session, and what it holds.
#[derive(Debug, Default)]
struct Model {
    sessions: HashMap<P, ModelSession>,
    /// Every session id the runtime ever handed out.
    seen: HashSet<SessionId>,
    /// Ids of deleted sessions.
    deleted: Vec<SessionId>,
}

impl Model {
    /// The id `op` is addressed to: the pair's session, or one that does not exist.
    fn resolve(&self, op: &Op) -> SessionId {
        match (op.unknown, self.sessions.get(&op.pair)) {
            (None, Some(s)) => s.session_id,
            (Some(i), _) if i % (self.deleted.len() + 1) < self.deleted.len() => {
                self.deleted[i % (self.deleted.len() + 1)]
            }
            _ => SessionId::new_v4(),
        }
    }

    /// The `i`th pair with a session, in a fixed order, or any pair if none has one.
    fn existing(&self, i: usize) -> P {
        let mut pairs: Vec<P> = self.sessions.keys().copied().collect();
        if pairs.is_empty() {
            pairs = P::all();
        }
        pairs.sort_unstable_by_key(|p| (p.0, p.1));
        pairs[i % pairs.len()]
    }

    /// Learns a session the runtime just created for `pair`: a new id, count 0, active.
    fn created(&mut self, pair: P, actual: &Outcome) -> Result<(), TestCaseError> {
        let Outcome::Session { id, count, status } = *actual else {
            return Err(TestCaseError::fail(format!(
                "{pair:?} has no session: expected a new one, got {actual:?}"
            )));
        };
        prop_assert!(
            self.seen.insert(id),
            "{pair:?} got a session id handed out before: {id}"
        );
        prop_assert_eq!((count, status), (0, SessionStatus::Active));
        self.sessions.insert(
            pair,
            ModelSession {
                session_id: id,
                message_count: 0,
                status: SessionStatus::Active,
            },
        );
        Ok(())
    }

    /// Checks `actual`, the outcome of `op` addressed to `id`, and applies `op` to the model.
    fn apply(&mut self, op: &Op, id: SessionId, actual: &Outcome) -> Result<(), TestCaseError> {
        let pair = op.pair;
        let current = self.sessions.get(&pair).cloned();
        // Whether the id-addressed operation reaches the pair's session.
        let hit = current.as_ref().filter(|s| s.session_id == id);
        match op.kind {
            Kind::GetOrCreate => match current {
                Some(s) => prop_assert_eq!(actual, &s.outcome(), "{:?}", op),
                None => self.created(pair, actual)?,
            },
            Kind::Create => match current {
                Some(s) => {
                    prop_assert_eq!(actual, &Outcome::AlreadyExists(s.session_id), "{:?}", op)
                }
                None => self.created(pair, actual)?,
            },
            Kind::Get => {
                let want = current.map_or(Outcome::NoSession, |s| s.outcome());
                prop_assert_eq!(actual, &want, "{:?}", op);
            }
            Kind::Increment(_) | Kind::RecordUsage | Kind::Compact => {
                let want = match hit {
                    None => Outcome::NotFound,
                    Some(s) => {
                        let mut s = s.clone();
                        match op.kind {
                            Kind::Increment(n) => s.message_count += n,
                            Kind::Compact => {
                                s.message_count = 0;
                                s.status = SessionStatus::Active;
                            }
                            _ => {}
                        }
                        let want = s.outcome();
                        self.sessions.insert(pair, s);
                        want
                    }
                };
                prop_assert_eq!(actual, &want, "{:?}", op);
            }
            Kind::Delete => {
                let want = Outcome::Deleted(hit.map(|s| s.session_id));
                prop_assert_eq!(actual, &want, "{:?}", op);
                if hit.is_some() {
                    self.sessions.remove(&pair);
                    self.deleted.push(id);
                }
            }
        }
        Ok(())
    }

    /// Checks the outcomes of concurrent creators of `pair` (`true`: `create_session`).
    fn apply_creators(
        &mut self,
        pair: P,
        creators: &[bool],
        actual: &[Outcome],
    ) -> Result<(), TestCaseError> {
        if let Some(s) = self.sessions.get(&pair) {
            for (&create, outcome) in creators.iter().zip(actual) {
                let want = if create {
                    Outcome::AlreadyExists(s.session_id)
                } else {
                    s.outcome()
                };
                prop_assert_eq!(outcome, &want, "create_session: {}", create);
            }
            return Ok(());
        }
        let ids: HashSet<_> = actual.iter().map(Outcome::session_id).collect();
        prop_assert_eq!(
            ids.len(),
            1,
            "every creator got the same session: {:?}",
            actual
        );
        let created: Vec<_> = creators
            .iter()
            .zip(actual)
            .filter(|(create, outcome)| **create && matches!(outcome, Outcome::Session { .. }))
            .collect();
        prop_assert!(created.len() <= 1, "two creations succeeded: {:?}", actual);
        if creators.iter().all(|c| *c) {
            prop_assert_eq!(created.len(), 1, "one creation succeeds: {:?}", actual);
        }
        for (&create, outcome) in creators.iter().zip(actual) {
            if !create {
                prop_assert!(matches!(outcome, Outcome::Session { .. }), "{:?}", outcome);
            }
        }
        let session = actual
            .iter()
            .find(|o| matches!(o, Outcome::Session { .. }))
            .cloned()
            .unwrap();
        self.created(pair, &session)
    }

    /// Checks the outcomes of concurrent increments of `pair`'s session by `by`: each one
    /// applied once, in some order.
    fn apply_increments(
        &mut self,
        pair: P,
        by: &[u64],
        actual: &[Outcome],
    ) -> Result<(), TestCaseError> {
        let Some(s) = self.sessions.get_mut(&pair) else {
            for outcome in actual {
                prop_assert_eq!(outcome, &Outcome::NotFound);
            }
            return Ok(());
        };
        let base = s.message_count;
        let mut counts = Vec::with_capacity(actual.len());
        for (n, outcome) in by.iter().zip(actual) {
            let Outcome::Session { id, count, status } = *outcome else {
                return Err(TestCaseError::fail(format!(
                    "increment by {n}: {outcome:?}"
                )));
            };
            prop_assert_eq!((id, status), (s.session_id, s.status));
            prop_assert!(count >= base + n, "increment by {} saw {}", n, count);
            counts.push(count);
        }
        // The increments are serialized: every one sees a distinct count, the last one all.
        counts.sort_unstable();
        counts.dedup();
        prop_assert_eq!(counts.len(), by.len(), "{:?}", actual);
        s.message_count = base + by.iter().sum::<u64>();
        prop_assert_eq!(counts.last().copied(), Some(s.message_count));
        Ok(())
    }
}

/// Every read the runtime offers agrees with the model.
fn check_same(runtime: &Runtime, model: &Model) -> Result<(), TestCaseError> {
    let listed: HashMap<Pair, Outcome> = runtime
        .list_sessions(&SessionFilter::all())
        .unwrap()
        .iter()
        .map(|r| (r.pair(), Outcome::of(r)))
        .collect();
    let want: HashMap<Pair, Outcome> = model
        .sessions
        .iter()
        .map(|(p, s)| (p.pair(), s.outcome()))
        .collect();
    prop_assert_eq!(&listed, &want);
    prop_assert_eq!(
        runtime.list_sessions(&SessionFilter::all()).unwrap().len(),
        model.sessions.len()
    );

    let stats = runtime.stats();
    prop_assert_eq!(stats.sessions.total, model.sessions.len() as u64);
    prop_assert_eq!(
        stats.sessions.total_messages,
        model
            .sessions
            .values()
            .map(|s| s.message_count)
            .sum::<u64>()
    );
    prop_assert_eq!(stats.sessions.active, model.sessions.len() as u64);
    prop_assert!(
        stats.live_actors <= model.sessions.len() as u64,
        "{} live actors for {} sessions",
        stats.live_actors,
        model.sessions.len()
    );

    for p in P::all() {
        let got = runtime
            .get_session(&p.from(), &p.to())
            .unwrap()
            .map(|r| Outcome::of(&r));
        prop_assert_eq!(
            got,
            model.sessions.get(&p).map(ModelSession::outcome),
            "{:?}",
            p
        );
    }
    for (p, s) in &model.sessions {
        let record = runtime.get_session_by_id(&s.session_id).unwrap().unwrap();
        prop_assert_eq!(record.pair(), p.pair());
        prop_assert_eq!(Outcome::of(&record), s.outcome());
    }
    for id in &model.deleted {
        prop_assert!(runtime.get_session_by_id(id).unwrap().is_none(), "{}", id);
    }
    Ok(())
}

async fn run_steps(runtime: &Runtime, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    // Only the agent can compact its conversation, so a compaction starts it; nothing else
    // does under lazy creation.
    let compactions = steps
        .iter()
        .map(|step| match step {
            Step::One(op) => usize::from(op.kind == Kind::Compact),
            Step::Concurrent(ops) => ops.iter().filter(|op| op.kind == Kind::Compact).count(),
            Step::SamePair(..) | Step::Increments(..) => 0,
        })
        .sum::<usize>();
    for step in steps {
        match step {
            Step::One(op) => {
                let id = model.resolve(&op);
                let actual = exec(runtime, op, id).await;
                model.apply(&op, id, &actual)?;
            }
            Step::Concurrent(ops) => {
                // Distinct pairs: each operation's outcome depends on the model before the batch
                // only, so the model can apply them in any order afterwards.
                let calls: Vec<_> = ops
                    .iter()
                    .map(|&op| {
                        let id = model.resolve(&op);
                        let runtime = runtime.clone();
                        (
                            op,
                            id,
                            tokio::spawn(async move { exec(&runtime, op, id).await }),
                        )
                    })
                    .collect();
                for (op, id, call) in calls {
                    let actual = call.await.unwrap();
                    model.apply(&op, id, &actual)?;
                }
            }
            Step::SamePair(pair, creators) => {
                let calls: Vec<_> = creators
                    .iter()
                    .map(|&create| {
                        let op = Op {
                            kind: if create {
                                Kind::Create
                            } else {
                                Kind::GetOrCreate
                            },
                            pair,
                            unknown: None,
                        };
                        let runtime = runtime.clone();
                        tokio::spawn(async move { exec(&runtime, op, SessionId::new_v4()).await })
                    })
                    .collect();
                let mut actual = Vec::with_capacity(calls.len());
                for call in calls {
                    actual.push(call.await.unwrap());
                }
                model.apply_creators(pair, &creators, &actual)?;
            }
            Step::Increments(i, by) => {
                let pair = model.existing(i);
                let id = model.resolve(&Op {
                    kind: Kind::Increment(0),
                    pair,
                    unknown: None,
                });
                let calls: Vec<_> = by
                    .iter()
                    .map(|&n| {
                        let runtime = runtime.clone();
                        tokio::spawn(async move {
                            reduce(runtime.increment_message_count(&id, n).await, |r| {
                                Outcome::of(&r)
                            })
                        })
                    })
                    .collect();
                let mut actual = Vec::with_capacity(calls.len());
                for call in calls {
                    actual.push(call.await.unwrap());
                }
                model.apply_increments(pair, &by, &actual)?;
            }
        }
        check_same(runtime, &model)?;
    }
    prop_assert!(
        runtime.agent_spawns() <= compactions as u64,
        "lazy creation spawns no agent; only compactions did ({} spawns, {compactions} compactions)",
        runtime.agent_spawns()
    );
    Ok(())
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let world = World::new();
    let config = world.config(&TEAMS, fake_claude(), "session_init = \"lazy\"");
    let runtime = Runtime::start(config, Store::open(world.db_path()).unwrap())
        .await
        .unwrap();
    let result = run_steps(&runtime, steps).await;
    runtime.shutdown(Duration::from_secs(1)).await;
    result
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_runtime_behaves_like_a_map(steps in proptest::collection::vec(arb_step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(steps))?;
    }
}
