//! `[budgets]`: spending caps, each optional, in US dollars and in tokens (the CLI misprices
//! some models, so tokens are the fallback).
//!
//! | scope | key | over |
//! |---|---|---|
//! | a session | `session` | its whole life |
//! | a team as the sender (what its tells cost the teams it talks to) | `[budgets.teams.NAME] as_sender` | a day |
//! | a team as the receiver (what its agent spends) | `[budgets.teams.NAME] as_receiver` | a day |
//! | the node | `node_daily` | a day |
//!
//! `[budgets.teams.default]` applies to every team without a table of its own (field by field).
//! Days start at midnight UTC, or at midnight of the fixed offset `day` names (`"+02:00"`).
//! Tokens counted are input, output and cache-creation tokens; cache reads are left out (they
//! cost a tenth of input tokens and would dominate every count).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::UsageTotals;
use crate::team::TeamName;
use crate::time::Timestamp;

/// One cap: dollars, tokens, or both (whichever is reached first).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cap {
    /// At most this many US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    /// At most this many tokens (input, output and cache creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

// A loaded cap's `usd` is finite and above 0 (the loader refuses anything else, NaN included),
// so equality is total.
impl Eq for Cap {}

/// A team's caps, each per day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamCaps {
    /// What the team's tells may cost, across the teams it talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_sender: Option<Cap>,
    /// What the team's agent may spend, across the teams that talk to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_receiver: Option<Cap>,
}

/// `[budgets]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Budgets {
    /// When a day starts: minutes east of UTC (0: midnight UTC).
    #[serde(rename = "day", serialize_with = "serialize_offset")]
    pub day_offset_minutes: i32,
    /// Every session, over its life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Cap>,
    /// Everything the node's agents spend in a day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_daily: Option<Cap>,
    /// `[budgets.teams.default]` and each `[budgets.teams.NAME]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub teams: BTreeMap<String, TeamCaps>,
}

/// The key of `[budgets.teams]` that applies to every team without a table of its own.
pub const DEFAULT_TEAM: &str = "default";

impl Budgets {
    /// Whether any cap is set.
    pub fn any(&self) -> bool {
        self.session.is_some()
            || self.node_daily.is_some()
            || self
                .teams
                .values()
                .any(|t| t.as_sender.is_some() || t.as_receiver.is_some())
    }

    /// Team `team`'s caps: its own, each falling back to `[budgets.teams.default]`'s.
    pub fn team(&self, team: &TeamName) -> TeamCaps {
        let own = self.teams.get(team.as_str()).copied().unwrap_or_default();
        let default = self.teams.get(DEFAULT_TEAM).copied().unwrap_or_default();
        TeamCaps {
            as_sender: own.as_sender.or(default.as_sender),
            as_receiver: own.as_receiver.or(default.as_receiver),
        }
    }

    /// The budget day `at` falls in: days since 1970-01-01 at the configured offset.
    pub fn day_of(&self, at: Timestamp) -> u32 {
        let shifted = i128::from(at.as_millis()) + i128::from(self.day_offset_minutes) * 60_000;
        u32::try_from(shifted.max(0) / MILLIS_PER_DAY).unwrap_or(u32::MAX)
    }

    /// When days start, as `day` is written: `"UTC"` or `"+02:00"`.
    pub fn day_text(&self) -> String {
        OffsetText(self.day_offset_minutes).to_string()
    }

    /// The calendar date of budget day `day`, `YYYY-MM-DD`.
    pub fn date_of(day: u32) -> String {
        let midnight = Timestamp::from_millis(u64::from(day) * MILLIS_PER_DAY as u64);
        midnight.to_string().chars().take(10).collect()
    }

    /// When budget day `day` ends (and the next starts).
    pub fn day_end(&self, day: u32) -> Timestamp {
        let end =
            (i128::from(day) + 1) * MILLIS_PER_DAY - i128::from(self.day_offset_minutes) * 60_000;
        Timestamp::from_millis(u64::try_from(end.max(0)).unwrap_or(u64::MAX))
    }
}

const MILLIS_PER_DAY: i128 = 86_400_000;

/// The tokens a budget counts of `usage`: input, output and cache creation.
pub fn counted_tokens(usage: &UsageTotals) -> u64 {
    usage
        .input_tokens
        .saturating_add(usage.output_tokens)
        .saturating_add(usage.cache_creation_input_tokens)
}

/// Parses `day`: `"UTC"` (or `"Z"`) or a fixed offset `"+HH:MM"` / `"-HH:MM"`; minutes east of
/// UTC.
pub fn parse_day_offset(text: &str) -> Result<i32, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Ok(0);
    }
    let invalid = || {
        format!(
            "{} is not a day start; write \"UTC\" or a fixed offset from UTC such as \"+02:00\" or \"-05:00\"",
            crate::redact::quoted(text)
        )
    };
    let (sign, rest) = match text.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(invalid()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(invalid)?;
    let (hours, minutes): (i32, i32) = (
        hours.parse().map_err(|_| invalid())?,
        minutes.parse().map_err(|_| invalid())?,
    );
    // Offsets in use reach ±14:00.
    if (0..=14).contains(&hours) && (0..60).contains(&minutes) && hours * 60 + minutes <= 840 {
        Ok(sign * (hours * 60 + minutes))
    } else {
        Err(invalid())
    }
}

fn serialize_offset<S: serde::Serializer>(minutes: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&OffsetText(*minutes).to_string())
}

/// Which cap a setting names, as `iris budget set` takes it: `session`, `node_daily`,
/// `teams.NAME.as_sender` or `teams.NAME.as_receiver` (`NAME` a team, or `default`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CapKey {
    /// `session`.
    Session,
    /// `node_daily`.
    NodeDaily,
    /// `teams.NAME.as_sender`.
    Sender(String),
    /// `teams.NAME.as_receiver`.
    Receiver(String),
}

impl CapKey {
    /// Reads a key; a key that names no cap says which keys there are.
    pub fn parse(text: &str) -> Result<CapKey, String> {
        let text = text.trim();
        match text {
            "session" => return Ok(CapKey::Session),
            "node_daily" => return Ok(CapKey::NodeDaily),
            _ => {}
        }
        let parts: Vec<&str> = text.split('.').collect();
        match parts.as_slice() {
            ["teams", name, "as_sender"] if !name.is_empty() => Ok(CapKey::Sender((*name).into())),
            ["teams", name, "as_receiver"] if !name.is_empty() => {
                Ok(CapKey::Receiver((*name).into()))
            }
            _ => Err(format!(
                "{text:?} names no budget cap; use session, node_daily, teams.NAME.as_sender or teams.NAME.as_receiver (NAME a team, or default)"
            )),
        }
    }

    /// The team a team cap names (`default` included).
    pub fn team(&self) -> Option<&str> {
        match self {
            CapKey::Sender(team) | CapKey::Receiver(team) => Some(team),
            CapKey::Session | CapKey::NodeDaily => None,
        }
    }

    /// Where the configuration sets this cap: `[budgets] session`, `[budgets.teams.beta]
    /// as_receiver`.
    pub fn config_key(&self) -> String {
        match self {
            CapKey::Session => "[budgets] session".to_owned(),
            CapKey::NodeDaily => "[budgets] node_daily".to_owned(),
            CapKey::Sender(team) => format!("[budgets.teams.{team}] as_sender"),
            CapKey::Receiver(team) => format!("[budgets.teams.{team}] as_receiver"),
        }
    }
}

impl fmt::Display for CapKey {
    /// The key as `iris budget set` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapKey::Session => f.write_str("session"),
            CapKey::NodeDaily => f.write_str("node_daily"),
            CapKey::Sender(team) => write!(f, "teams.{team}.as_sender"),
            CapKey::Receiver(team) => write!(f, "teams.{team}.as_receiver"),
        }
    }
}

impl fmt::Display for Cap {
    /// "$10.00 or 12000 tokens".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.usd, self.tokens) {
            (Some(usd), Some(tokens)) => write!(f, "${usd:.2} or {tokens} tokens"),
            (Some(usd), None) => write!(f, "${usd:.2}"),
            (None, Some(tokens)) => write!(f, "{tokens} tokens"),
            (None, None) => f.write_str("no limit"),
        }
    }
}

impl Cap {
    /// Checks a cap given at run time as the loader checks the configuration's: a limit in
    /// dollars (finite, above 0), in tokens (above 0), or both.
    pub fn check(&self) -> Result<(), String> {
        match (self.usd, self.tokens) {
            (None, None) => Err("a cap needs a limit: give dollars, tokens or both".to_owned()),
            (Some(usd), _) if !(usd.is_finite() && usd > 0.0) => Err(format!(
                "{usd} is not a dollar limit; give an amount above 0 such as 5.0"
            )),
            (_, Some(0)) => Err("0 tokens is not a limit; give a count above 0".to_owned()),
            _ => Ok(()),
        }
    }
}

impl Budgets {
    /// These budgets with the cap `key` names replaced by `cap`.
    pub fn with_cap(mut self, key: &CapKey, cap: Cap) -> Budgets {
        match key {
            CapKey::Session => self.session = Some(cap),
            CapKey::NodeDaily => self.node_daily = Some(cap),
            CapKey::Sender(team) => {
                self.teams.entry(team.clone()).or_default().as_sender = Some(cap)
            }
            CapKey::Receiver(team) => {
                self.teams.entry(team.clone()).or_default().as_receiver = Some(cap)
            }
        }
        self
    }
}

/// An offset as `day` writes it.
struct OffsetText(i32);

impl fmt::Display for OffsetText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.0 < 0 { '-' } else { '+' };
        let minutes = self.0.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_midnight_of_its_offset() {
        let utc = Budgets::default();
        // 2026-12-06T23:30:00Z.
        let late = Timestamp::from_millis(1_796_599_800_000);
        let day = utc.day_of(late);
        assert_eq!(utc.day_end(day).as_millis(), 1_796_601_600_000);
        // At +02:00 it is already the 7th there.
        let east = Budgets {
            day_offset_minutes: 120,
            ..Budgets::default()
        };
        assert_eq!(east.day_of(late), day + 1);
        assert_eq!(
            east.day_end(day + 1).as_millis(),
            1_796_601_600_000 + 86_400_000 - 7_200_000
        );
    }

    #[test]
    fn day_offsets_parse_and_print_alike() {
        for (text, minutes) in [
            ("UTC", 0),
            ("+02:00", 120),
            ("-05:30", -330),
            ("+14:00", 840),
        ] {
            assert_eq!(parse_day_offset(text), Ok(minutes), "{text}");
            assert_eq!(OffsetText(minutes).to_string(), text);
        }
        for bad in ["", "2", "+2", "+25:00", "+02:60", "CET"] {
            assert!(parse_day_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cap_keys_read_and_print_alike_and_replace_their_cap() {
        for text in [
            "session",
            "node_daily",
            "teams.beta.as_sender",
            "teams.default.as_receiver",
        ] {
            assert_eq!(
                CapKey::parse(text).map(|k| k.to_string()).as_deref(),
                Ok(text)
            );
        }
        for bad in [
            "",
            "teams",
            "teams.beta",
            "teams..as_sender",
            "budgets.session",
            "node",
        ] {
            assert!(CapKey::parse(bad).is_err(), "{bad}");
        }
        let cap = Cap {
            usd: Some(3.0),
            tokens: None,
        };
        let key = CapKey::parse("teams.beta.as_receiver").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.config_key(), "[budgets.teams.beta] as_receiver");
        let budgets = Budgets::default().with_cap(&key, cap);
        let beta = budgets.team(&TeamName::new("beta").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(beta.as_receiver, Some(cap));
        assert_eq!(beta.as_sender, None);
        assert!(cap.check().is_ok());
        for bad in [
            (None, None),
            (Some(0.0), None),
            (Some(f64::NAN), None),
            (None, Some(0)),
        ] {
            let cap = Cap {
                usd: bad.0,
                tokens: bad.1,
            };
            assert!(cap.check().is_err(), "{cap:?}");
        }
    }

    #[test]
    fn a_team_falls_back_to_the_default_field_by_field() {
        let cap = |usd| Cap {
            usd: Some(usd),
            tokens: None,
        };
        let budgets = Budgets {
            teams: [
                (
                    DEFAULT_TEAM.to_owned(),
                    TeamCaps {
                        as_sender: Some(cap(1.0)),
                        as_receiver: Some(cap(2.0)),
                    },
                ),
                (
                    "alpha".to_owned(),
                    TeamCaps {
                        as_sender: None,
                        as_receiver: Some(cap(9.0)),
                    },
                ),
            ]
            .into(),
            ..Budgets::default()
        };
        let alpha = budgets.team(&TeamName::new("alpha").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(alpha.as_sender, Some(cap(1.0)));
        assert_eq!(alpha.as_receiver, Some(cap(9.0)));
        assert!(budgets.any());
        assert!(!Budgets::default().any());
    }
}
