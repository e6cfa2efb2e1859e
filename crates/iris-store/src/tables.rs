//! The redb tables and the schema version.
//!
//! | table | key | value | purpose |
//! |---|---|---|---|
//! | `sessions` | session id (u128) | versioned record | the records |
//! | `pairs` | (from, to) | session id | pair lookup, unique pairs, `list(from)` |
//! | `pairs_by_to` | (to, from) | session id | `list(to)` without a scan |
//! | `live` | session id | () | records whose process is not `stopped` or that carry a process mark, so start-up work is proportional to them alone |
//! | `meta` | name | versioned value | schema version, counters |

use redb::TableDefinition;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
pub(crate) const PAIRS: TableDefinition<(&str, &str), u128> = TableDefinition::new("pairs");
pub(crate) const PAIRS_BY_TO: TableDefinition<(&str, &str), u128> =
    TableDefinition::new("pairs_by_to");
pub(crate) const LIVE: TableDefinition<u128, ()> = TableDefinition::new("live");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_COUNTERS: &str = "counters";

/// Every table name, to recognise a file as ours.
pub(crate) const TABLE_NAMES: [&str; 5] = ["sessions", "pairs", "pairs_by_to", "live", "meta"];
