//! # iris-store
//!
//! Durable persistence of iris session records, and of their turn ledgers, in a single redb file.
//!
//! - **Durability.** Every acknowledged write was committed with `Durability::Immediate`: a
//!   `kill -9` of the process loses nothing that was acknowledged.
//! - **Throughput.** One writer thread applies every queued mutation in one transaction (group
//!   commit), so one fsync serves many callers. A rejected mutation fails only its own caller.
//! - **Reads** run on the caller's thread against a snapshot and never wait for the writer.
//! - **Indexes and counters** keep `list(from)`, `list(to)`, `stats` and the start-up reset
//!   proportional to what they return or change, not to the size of the store.
//! - **Turn ledger.** One row per turn ([`iris_core::TurnRecord`]), keyed by session and turn
//!   number, pruned to a retention per session on every write, indexed by turn id and by
//!   openness; [`Store::record_turn`] writes a finished turn and its session's bookkeeping in
//!   one durable write.
//! - **Storage faults.** A commit that fails for a full disk or an I/O error acknowledges
//!   nothing and fails its callers with [`StoreError::Unavailable`] (naming the cause and what to
//!   do); the writer reopens the database with backoff, refusing writes at once meanwhile, and
//!   [`Store::health`] says so until it can commit again.
//! - **Format.** Values are a version byte plus postcard; the schema version is checked at open.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use iris_core::{Pair, SessionId, SessionRecord, TeamName, Timestamp};
//! use iris_store::{Change, Store};
//!
//! let store = Store::in_memory()?;
//! let pair = Pair::new(TeamName::new("alpha")?, TeamName::new("beta")?);
//! let record = store
//!     .create(SessionRecord::new(pair.clone(), SessionId::new_v4(), Timestamp::now()))
//!     .await?;
//! store.update(record.session_id, Change::IncrementMessageCount(1)).await?;
//! assert_eq!(store.get_by_pair(&pair)?.map(|r| r.message_count), Some(1));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod codec;
mod counters;
mod error;
mod mutation;
pub mod spend;
mod store;
mod tables;
mod writer;

pub use error::{FaultKind, OpenError, StorageFault, StoreError};
pub use mutation::{Applied, Change, Mutation};
pub use store::{PendingWrite, Store, StoreHealth, StoreOptions};
pub use tables::SCHEMA_VERSION;
pub use writer::WriterStats;
