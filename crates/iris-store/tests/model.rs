//! Model-based test: random operation sequences run against the store and against plain
//! `BTreeMap`s (records, and the turn ledger), compared after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::pair;
use iris_core::{
    Pair, ProcessState, SessionFilter, SessionId, SessionRecord, SessionStats, SessionStatus,
    Timestamp, TurnFailure, TurnId, TurnRecord, TurnStatus,
};
use iris_store::{Applied, Change, Mutation, Store, StoreError};
use proptest::prelude::*;

const TEAMS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// Which record an operation aims at: one that exists (by position), or one that does not.
#[derive(Debug, Clone)]
enum Target {
    Existing(usize),
    Unknown,
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        from: usize,
        to: usize,
        reuse_id: Option<usize>,
    },
    CreateMany(Vec<(usize, usize)>),
    Update {
        target: Target,
        changes: Vec<Change>,
    },
    SetStatusMany {
        targets: Vec<Target>,
        status: SessionStatus,
    },
    Delete(Target),
    DeleteByPair(usize, usize),
    Reset,
    /// `PutTurn`, or with `changes` a `RecordTurn`.
    Turn {
        target: Target,
        slot: Slot,
        status: TurnStatus,
        retain: u64,
        changes: Option<Vec<Change>>,
    },
    InterruptOpenTurns,
}

/// Which row a turn operation writes.
#[derive(Debug, Clone)]
enum Slot {
    /// A new turn after the session's newest.
    Next,
    /// An existing row of the session (by position), with its own id: an upsert. `Next` if the
    /// session has no rows.
    Existing(usize),
    /// A new turn carrying the id of an existing row of any session (by position).
    StealId(usize),
    /// Turn number 0.
    Zero,
}

fn arb_slot() -> impl Strategy<Value = Slot> {
    prop_oneof![
        5 => Just(Slot::Next),
        4 => any::<usize>().prop_map(Slot::Existing),
        1 => any::<usize>().prop_map(Slot::StealId),
        1 => Just(Slot::Zero),
    ]
}

fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![9 => any::<usize>().prop_map(Target::Existing), 1 => Just(Target::Unknown)]
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0u64..10_000).prop_map(|t| Change::TouchLastUsed(Timestamp::from_millis(t))),
        (0u64..50).prop_map(Change::IncrementMessageCount),
        Just(Change::ResetMessageCount),
        (0..SessionStatus::ALL.len()).prop_map(|i| Change::SetStatus(SessionStatus::ALL[i])),
        (0..ProcessState::ALL.len()).prop_map(|i| Change::SetProcessState(ProcessState::ALL[i])),
        any::<bool>().prop_map(|b| Change::SetCurrentTurn(b.then(TurnId::new))),
        (0u64..10_000).prop_map(|t| Change::SetLastResponse(Timestamp::from_millis(t))),
        proptest::option::of("[a-z ]{0,12}").prop_map(|c| Change::SetDebugInfo {
            launch_command: c.clone(),
            team_config_snapshot: c,
        }),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let team = 0..TEAMS.len();
    prop_oneof![
        4 => (team.clone(), team.clone(), proptest::option::weighted(0.1, any::<usize>()))
            .prop_map(|(from, to, reuse_id)| Op::Create { from, to, reuse_id }),
        1 => proptest::collection::vec((team.clone(), team.clone()), 0..4).prop_map(Op::CreateMany),
        4 => (arb_target(), proptest::collection::vec(arb_change(), 1..4))
            .prop_map(|(target, changes)| Op::Update { target, changes }),
        1 => (proptest::collection::vec(arb_target(), 0..3), 0..SessionStatus::ALL.len())
            .prop_map(|(targets, s)| Op::SetStatusMany { targets, status: SessionStatus::ALL[s] }),
        1 => arb_target().prop_map(Op::Delete),
        1 => (team.clone(), team).prop_map(|(f, t)| Op::DeleteByPair(f, t)),
        1 => Just(Op::Reset),
        6 => (
            arb_target(),
            arb_slot(),
            0..TurnStatus::ALL.len(),
            0u64..5,
            proptest::option::weighted(0.3, proptest::collection::vec(arb_change(), 0..3)),
        )
            .prop_map(|(target, slot, s, retain, changes)| Op::Turn {
                target,
                slot,
                status: TurnStatus::ALL[s],
                retain,
                changes,
            }),
        1 => Just(Op::InterruptOpenTurns),
    ]
}

/// The reference: what the store should hold, as a plain map.
#[derive(Default)]
struct Model {
    records: BTreeMap<SessionId, SessionRecord>,
    next_id: u64,
    turns: BTreeMap<(SessionId, u64), TurnRecord>,
}

/// Outcomes reduced to what both sides can be compared on.
#[derive(Debug, PartialEq)]
enum Outcome {
    Record(SessionRecord),
    Records(Vec<SessionRecord>),
    Deleted(Option<SessionRecord>),
    Count(u64),
    PairExists,
    SessionIdExists,
    NotFound,
    TurnIdExists,
    InvalidTurn,
}

impl Model {
    fn resolve(&self, target: &Target) -> SessionId {
        match target {
            Target::Existing(i) if !self.records.is_empty() => {
                *self.records.keys().nth(i % self.records.len()).unwrap()
            }
            _ => SessionId::new_v4(),
        }
    }

    fn pair_taken(&self, pair: &Pair) -> bool {
        self.records.values().any(|r| r.pair() == *pair)
    }

    fn create_many(&mut self, records: Vec<SessionRecord>) -> Outcome {
        let mut pairs = Vec::new();
        let mut ids = Vec::new();
        for r in &records {
            if self.pair_taken(&r.pair()) || pairs.contains(&r.pair()) {
                return Outcome::PairExists;
            }
            if self.records.contains_key(&r.session_id) || ids.contains(&r.session_id) {
                return Outcome::SessionIdExists;
            }
            pairs.push(r.pair());
            ids.push(r.session_id);
        }
        let mut out = Vec::new();
        for mut r in records {
            self.next_id += 1;
            r.id = self.next_id;
            self.records.insert(r.session_id, r.clone());
            out.push(r);
        }
        Outcome::Records(out)
    }

    fn update(&mut self, id: SessionId, changes: &[Change]) -> Outcome {
        let Some(r) = self.records.get_mut(&id) else {
            return Outcome::NotFound;
        };
        for c in changes {
            c.apply_to(r);
        }
        Outcome::Record(r.clone())
    }

    fn set_status_many(&mut self, ids: &[SessionId], status: SessionStatus) -> Outcome {
        if ids.iter().any(|id| !self.records.contains_key(id)) {
            return Outcome::NotFound;
        }
        let mut out = Vec::new();
        for id in ids {
            let r = self.records.get_mut(id).unwrap();
            r.status = status;
            out.push(r.clone());
        }
        Outcome::Records(out)
    }

    fn delete(&mut self, id: SessionId) -> Outcome {
        self.turns.retain(|(s, _), _| *s != id);
        Outcome::Deleted(self.records.remove(&id))
    }

    fn delete_pair(&mut self, pair: &Pair) -> Outcome {
        let id = self
            .records
            .values()
            .find(|r| r.pair() == *pair)
            .map(|r| r.session_id);
        match id {
            Some(id) => self.delete(id),
            None => Outcome::Deleted(None),
        }
    }

    fn session_turns(&self, id: SessionId) -> impl DoubleEndedIterator<Item = &TurnRecord> {
        self.turns.range((id, 0)..=(id, u64::MAX)).map(|(_, t)| t)
    }

    fn last_seq(&self, id: SessionId) -> u64 {
        self.session_turns(id).next_back().map_or(0, |t| t.seq)
    }

    /// The turn a `Turn` operation writes.
    fn turn_for(
        &self,
        id: SessionId,
        slot: &Slot,
        status: TurnStatus,
        clock: &mut u64,
    ) -> TurnRecord {
        *clock += 1;
        let fresh = |seq| {
            TurnRecord::queued(
                id,
                seq,
                TurnId::new(),
                common::team("alpha"),
                "hello",
                16,
                Timestamp::from_millis(*clock),
            )
        };
        let mut turn = match slot {
            Slot::Next => fresh(self.last_seq(id) + 1),
            Slot::Zero => fresh(0),
            Slot::Existing(i) => {
                let rows: Vec<_> = self.session_turns(id).collect();
                if rows.is_empty() {
                    fresh(self.last_seq(id) + 1)
                } else {
                    rows[i % rows.len()].clone()
                }
            }
            Slot::StealId(i) => {
                let mut turn = fresh(self.last_seq(id) + 1);
                if !self.turns.is_empty() {
                    turn.turn_id = self
                        .turns
                        .values()
                        .nth(i % self.turns.len())
                        .unwrap()
                        .turn_id;
                }
                turn
            }
        };
        turn.status = status;
        turn.finished_at = status.is_final().then(|| Timestamp::from_millis(*clock));
        turn
    }

    fn put_turn(&mut self, turn: &TurnRecord, retain: u64, changes: Option<&[Change]>) -> Outcome {
        let id = turn.session_id;
        if !self.records.contains_key(&id) {
            return Outcome::NotFound;
        }
        if turn.seq == 0 {
            return Outcome::InvalidTurn;
        }
        if self
            .turns
            .values()
            .any(|t| t.turn_id == turn.turn_id && (t.session_id, t.seq) != (id, turn.seq))
        {
            return Outcome::TurnIdExists;
        }
        if self
            .turns
            .get(&(id, turn.seq))
            .is_some_and(|t| t.turn_id != turn.turn_id)
        {
            return Outcome::InvalidTurn;
        }
        self.turns.insert((id, turn.seq), turn.clone());
        let cutoff = self.last_seq(id).saturating_sub(retain.max(1));
        let before = self.turns.len();
        self.turns.retain(|(s, seq), _| *s != id || *seq > cutoff);
        let pruned = (before - self.turns.len()) as u64;
        match changes {
            Some(changes) => self.update(id, changes),
            None => Outcome::Count(pruned),
        }
    }

    fn interrupt(&mut self, at: Timestamp) -> Outcome {
        let mut n = 0;
        for turn in self.turns.values_mut().filter(|t| !t.status.is_final()) {
            turn.status = TurnStatus::Interrupted;
            turn.finished_at = Some(at);
            turn.error = Some(TurnFailure::node_stopped());
            self.records
                .get_mut(&turn.session_id)
                .unwrap()
                .interrupted_turns += 1;
            n += 1;
        }
        Outcome::Count(n)
    }

    fn reset(&mut self) -> Outcome {
        let mut n = 0;
        for r in self.records.values_mut() {
            if r.process_state != ProcessState::Stopped || r.current_turn.is_some() {
                r.process_state = ProcessState::Stopped;
                r.current_turn = None;
                n += 1;
            }
        }
        Outcome::Count(n)
    }
}

fn reduce<T>(result: Result<T, StoreError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(v) => ok(v),
        Err(StoreError::PairExists { .. }) => Outcome::PairExists,
        Err(StoreError::SessionIdExists { .. }) => Outcome::SessionIdExists,
        Err(StoreError::SessionNotFound { .. }) => Outcome::NotFound,
        Err(StoreError::TurnIdExists { .. }) => Outcome::TurnIdExists,
        Err(StoreError::InvalidTurn { .. }) => Outcome::InvalidTurn,
        Err(other) => panic!("unexpected store error: {other}"),
    }
}

fn new_record(from: usize, to: usize, id: SessionId, clock: &mut u64) -> SessionRecord {
    *clock += 1;
    SessionRecord::new(
        pair(TEAMS[from], TEAMS[to]),
        id,
        Timestamp::from_millis(*clock),
    )
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = Store::in_memory().unwrap();
    let mut model = Model::default();
    let mut clock = 0;
    for op in ops {
        let (expected, actual) = match op {
            Op::Create { from, to, reuse_id } => {
                let id = match reuse_id {
                    Some(i) => model.resolve(&Target::Existing(i)),
                    None => SessionId::new_v4(),
                };
                let r = new_record(from, to, id, &mut clock);
                let expected = match model.create_many(vec![r.clone()]) {
                    Outcome::Records(mut v) => Outcome::Record(v.remove(0)),
                    other => other,
                };
                (expected, reduce(store.create(r).await, Outcome::Record))
            }
            Op::CreateMany(pairs) => {
                let records: Vec<_> = pairs
                    .into_iter()
                    .map(|(f, t)| new_record(f, t, SessionId::new_v4(), &mut clock))
                    .collect();
                let expected = model.create_many(records.clone());
                (
                    expected,
                    reduce(store.create_many(records).await, Outcome::Records),
                )
            }
            Op::Update { target, changes } => {
                let id = model.resolve(&target);
                let expected = model.update(id, &changes);
                (
                    expected,
                    reduce(store.update_all(id, changes).await, Outcome::Record),
                )
            }
            Op::SetStatusMany { targets, status } => {
                let ids: Vec<_> = targets.iter().map(|t| model.resolve(t)).collect();
                let expected = model.set_status_many(&ids, status);
                (
                    expected,
                    reduce(store.set_status_many(ids, status).await, Outcome::Records),
                )
            }
            Op::Delete(target) => {
                let id = model.resolve(&target);
                let expected = model.delete(id);
                (expected, reduce(store.delete(id).await, Outcome::Deleted))
            }
            Op::DeleteByPair(f, t) => {
                let p = pair(TEAMS[f], TEAMS[t]);
                let expected = model.delete_pair(&p);
                (
                    expected,
                    reduce(store.delete_by_pair(p).await, Outcome::Deleted),
                )
            }
            Op::Reset => (
                model.reset(),
                reduce(store.reset_all_process_states().await, Outcome::Count),
            ),
            Op::Turn {
                target,
                slot,
                status,
                retain,
                changes,
            } => {
                let id = model.resolve(&target);
                let turn = model.turn_for(id, &slot, status, &mut clock);
                let expected = model.put_turn(&turn, retain, changes.as_deref());
                let mutation = match changes {
                    Some(changes) => Mutation::RecordTurn {
                        session_id: id,
                        changes,
                        turn,
                        retain,
                        spend_day: None,
                    },
                    None => Mutation::PutTurn { turn, retain },
                };
                let actual = reduce(store.submit(mutation).await, |applied| match applied {
                    Applied::Record(r) => Outcome::Record(r),
                    Applied::Count(n) => Outcome::Count(n),
                    other => panic!("unexpected outcome {other:?}"),
                });
                (expected, actual)
            }
            Op::InterruptOpenTurns => {
                clock += 1;
                let at = Timestamp::from_millis(clock);
                (
                    model.interrupt(at),
                    reduce(store.interrupt_open_turns(at).await, Outcome::Count),
                )
            }
        };
        prop_assert_eq!(actual, expected);
        check_same(&store, &model)?;
    }
    Ok(())
}

/// Every read the store offers agrees with the model.
fn check_same(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    let mut expected: Vec<_> = model.records.values().cloned().collect();
    let all = SessionFilter::all();
    all.order_and_limit(&mut expected);
    prop_assert_eq!(store.list(&all).unwrap(), expected);
    prop_assert_eq!(
        store.stats(),
        SessionStats::from_records(model.records.values())
    );
    for from in TEAMS {
        for to in TEAMS {
            let p = pair(from, to);
            let want = model.records.values().find(|r| r.pair() == p).cloned();
            prop_assert_eq!(store.get_by_pair(&p).unwrap(), want);
        }
        for filter in [
            SessionFilter::all().from_team(common::team(from)),
            SessionFilter::all().to_team(common::team(from)),
        ] {
            let mut want: Vec<_> = model
                .records
                .values()
                .filter(|r| filter.matches(r))
                .cloned()
                .collect();
            filter.order_and_limit(&mut want);
            prop_assert_eq!(store.list(&filter).unwrap(), want);
        }
    }
    for (id, r) in &model.records {
        prop_assert_eq!(store.get_by_session_id(id).unwrap(), Some(r.clone()));
        let want: Vec<_> = model.session_turns(*id).rev().cloned().collect();
        prop_assert_eq!(store.turns(*id, usize::MAX).unwrap(), want);
        prop_assert_eq!(store.last_turn_seq(*id).unwrap(), model.last_seq(*id));
    }
    for turn in model.turns.values() {
        prop_assert_eq!(store.turn(turn.turn_id).unwrap(), Some(turn.clone()));
    }
    let open = model
        .turns
        .values()
        .filter(|t| !t.status.is_final())
        .count();
    prop_assert_eq!(store.open_turn_count().unwrap(), open as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
