//! The redb tables and the schema version.
//!
//! | table | key | value | purpose |
//! |---|---|---|---|
//! | `sessions` | session id (u128) | versioned record | the records |
//! | `pairs` | (from, to) | session id | pair lookup, unique pairs, `list(from)` |
//! | `pairs_by_to` | (to, from) | session id | `list(to)` without a scan |
//! | `live` | session id | () | records whose process is not `stopped` or that carry a process mark, so start-up work is proportional to them alone |
//! | `turns` | (session id, seq) | versioned turn | the turn ledger; a session's turns are one key range, in order |
//! | `turn_ids` | turn id (u128) | (session id, seq) | `turn(turn_id)` without a scan |
//! | `request_ids` | request id (u128) | (session id, seq) | `turn_by_request(request_id)`: a retried tell finds the turn its first attempt made |
//! | `spend` | (budget day, scope) | versioned spend | what each scope (`session:<id>`, `sender:<team>`, `receiver:<team>`, `node`) spent that day (`u32::MAX`: over a session's life); one day's rows are one key range |
//! | `budget_caps` | cap key (`teams.beta.as_receiver`) | versioned cap | caps set at run time by `iris budget set`, over the configuration's |
//! | `open_turns` | (session id, seq) | () | turns `queued` or `running`, so start-up interrupts them without scanning the ledger |
//! | `conversations` | (session id, conversation id) | () | every conversation id the agent reported for a session (they change after `/clear`), so deleting a session can remove each transcript |
//! | `meta` | name | versioned value | schema version, counters |
//!
//! # Schema version
//!
//! The turn tables, `request_ids`, `spend`, `budget_caps` and `conversations` were added without bumping [`SCHEMA_VERSION`], on purpose: the change is
//! purely additive. Every table is created at open when missing, so a file written before the
//! ledger existed opens as is (with an empty ledger), and nothing already stored changed shape.
//! Bumping the version would make this build refuse every existing file unless it also carried
//! a migration, and would gain nothing: an older build that opens a newer file still works, as
//! it ignores tables it does not know. The one thing an older build cannot do is cascade a
//! session's deletion to its turns; the ledger tolerates the orphaned rows that leaves (they are
//! never read through a session that exists, and start-up interrupts them without a session to
//! count them on). Bump the version only for a change an older build would misread.

use redb::TableDefinition;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
pub(crate) const PAIRS: TableDefinition<(&str, &str), u128> = TableDefinition::new("pairs");
pub(crate) const PAIRS_BY_TO: TableDefinition<(&str, &str), u128> =
    TableDefinition::new("pairs_by_to");
pub(crate) const LIVE: TableDefinition<u128, ()> = TableDefinition::new("live");
pub(crate) const TURNS: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("turns");
pub(crate) const TURN_IDS: TableDefinition<u128, (u128, u64)> = TableDefinition::new("turn_ids");
pub(crate) const REQUEST_IDS: TableDefinition<u128, (u128, u64)> =
    TableDefinition::new("request_ids");
pub(crate) const SPEND: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("spend");
pub(crate) const BUDGET_CAPS: TableDefinition<&str, &[u8]> = TableDefinition::new("budget_caps");
pub(crate) const OPEN_TURNS: TableDefinition<(u128, u64), ()> = TableDefinition::new("open_turns");
pub(crate) const CONVERSATIONS: TableDefinition<(u128, &str), ()> =
    TableDefinition::new("conversations");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_COUNTERS: &str = "counters";

/// Every table name, to recognise a file as ours.
pub(crate) const TABLE_NAMES: [&str; 12] = [
    "sessions",
    "pairs",
    "pairs_by_to",
    "live",
    "turns",
    "turn_ids",
    "request_ids",
    "spend",
    "budget_caps",
    "open_turns",
    "conversations",
    "meta",
];
