//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use iris_core::{Pair, SessionId, SessionRecord, TeamName, Timestamp};

pub fn team(name: &str) -> TeamName {
    TeamName::new(name).unwrap()
}

pub fn pair(from: &str, to: &str) -> Pair {
    Pair::new(team(from), team(to))
}

pub fn record(from: &str, to: &str) -> SessionRecord {
    SessionRecord::new(pair(from, to), SessionId::new_v4(), Timestamp::now())
}

pub fn record_at(from: &str, to: &str, millis: u64) -> SessionRecord {
    SessionRecord::new(
        pair(from, to),
        SessionId::new_v4(),
        Timestamp::from_millis(millis),
    )
}
