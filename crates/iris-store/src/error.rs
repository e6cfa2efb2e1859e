//! Errors of opening a store and of operating on one.

use std::path::PathBuf;
use std::sync::Arc;

use iris_core::{Coded, ErrorCode, Pair, SessionId, TurnId};

/// Why a store could not be opened. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The parent directory could not be created, or the file could not be created or opened.
    #[error(
        "cannot create or open the iris database {path}: {source}; check the path and its permissions"
    )]
    Io {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the file.
    #[error(
        "the iris database {path} is in use by another process (another iris node may be using it); stop that process, or point this one at another database"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a redb database at all.
    #[error(
        "{path} is not an iris database ({reason}); move it away or configure another database path"
    )]
    NotADatabase {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The file is a redb database, but is damaged or belongs to another program.
    #[error(
        "the iris database {path} is corrupt or foreign ({reason}); restore it from a backup or move it away"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The file was written by a version of iris whose schema this one does not know.
    #[error(
        "the iris database {path} has schema version {found}, but this build supports version {supported}; run a matching iris version"
    )]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Any other storage failure while opening.
    #[error("cannot open the iris database {path}: {source}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: redb::Error,
    },
}

impl Coded for OpenError {
    fn code(&self) -> ErrorCode {
        match self {
            OpenError::Locked { .. } => ErrorCode::StoreLocked,
            OpenError::NotADatabase { .. }
            | OpenError::Corrupt { .. }
            | OpenError::UnsupportedSchema { .. } => ErrorCode::StoreCorrupt,
            OpenError::Io { .. } | OpenError::Storage { .. } => ErrorCode::StoreError,
        }
    }
}

/// Why a store operation failed.
///
/// A rejected mutation (`PairExists`, `SessionIdExists`, `SessionNotFound`, `Mismatch`,
/// `TurnIdExists`, `InvalidTurn`) failed alone and left the database as it was; the other
/// mutations of its batch were unaffected.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The pair has a session already.
    #[error("the pair {pair} already has session {existing}; use it, or delete it first")]
    PairExists {
        /// The pair.
        pair: Pair,
        /// The session it has.
        existing: SessionId,
    },
    /// The session id is taken by another record.
    #[error("session id {session_id} is already used by another session; generate a new id")]
    SessionIdExists {
        /// The duplicate id.
        session_id: SessionId,
    },
    /// No record has this id.
    #[error("no session with id {session_id}; list sessions to find the right id")]
    SessionNotFound {
        /// The unknown id.
        session_id: SessionId,
    },
    /// A replacement record does not match the record it replaces.
    #[error("cannot replace session {session_id}: {reason}")]
    Mismatch {
        /// The record's id.
        session_id: SessionId,
        /// What differs.
        reason: &'static str,
    },
    /// The turn id is already used by another turn row.
    #[error(
        "turn id {turn_id} is already used by turn {seq} of session {session_id}; give each turn a new id"
    )]
    TurnIdExists {
        /// The duplicate id.
        turn_id: TurnId,
        /// The session of the row that holds it.
        session_id: SessionId,
        /// The number of the row that holds it.
        seq: u64,
    },
    /// A turn row cannot be written as given.
    #[error("cannot write turn {seq} of session {session_id}: {reason}")]
    InvalidTurn {
        /// The turn's session.
        session_id: SessionId,
        /// The turn's number.
        seq: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A stored value could not be decoded.
    #[error(
        "stored {what} is unreadable ({reason}); the database may be corrupt or from a newer iris"
    )]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it could not be decoded.
        reason: String,
    },
    /// A value could not be encoded for storage.
    #[error("cannot encode {what} for storage: {reason}")]
    Encode {
        /// What was being written.
        what: String,
        /// Why encoding failed.
        reason: String,
    },
    /// redb failed (I/O, a full disk, a poisoned transaction). The whole batch failed.
    #[error("database {operation} failed: {source}")]
    Storage {
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Arc<redb::Error>,
    },
    /// The store was closed (its runtime shut down, or every handle was dropped), so it takes
    /// no more reads or writes.
    #[error(
        "the iris store is closed (its runtime has shut down); open the database again to use it"
    )]
    Closed,
    /// [`Store::close`](crate::Store::close) gave up waiting for the writer to commit what was
    /// queued; the store closes when that commit ends.
    #[error(
        "closing the iris store {path} took longer than {waited:?}: its writer is still committing on a slow or stalled disk; the file stays locked until it is done"
    )]
    CloseTimedOut {
        /// The database file (`:memory:` for an in-memory store).
        path: String,
        /// How long the close waited.
        waited: std::time::Duration,
    },
    /// The database cannot commit because of a storage fault (a full disk, an I/O error): nothing
    /// of the write was stored. The store reopens itself with backoff and takes writes again once
    /// the fault is gone, without a restart; until then writes (and reads, while the file is being
    /// reopened) fail fast with this error.
    #[error("{}", unavailable_message(.path, .fault))]
    Unavailable {
        /// The database file (`:memory:` for an in-memory store).
        path: String,
        /// What went wrong.
        fault: StorageFault,
    },
}

/// What kind of storage fault stopped a store's commits. Serialized as its
/// [`as_str`](FaultKind::as_str) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum FaultKind {
    /// The filesystem is full (`ENOSPC`) or the user's quota is spent (`EDQUOT`).
    #[serde(rename = "disk_full")]
    DiskFull,
    /// Any other I/O failure of the database file.
    #[serde(rename = "io_error")]
    Io,
}

impl FaultKind {
    /// A stable lowercase name: `disk_full`, `io_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::DiskFull => "disk_full",
            FaultKind::Io => "io_error",
        }
    }
}

/// A storage fault: why the store cannot commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFault {
    /// What kind of fault.
    pub kind: FaultKind,
    /// The operating system's (or redb's) own words.
    pub detail: String,
}

impl StorageFault {
    /// The fault a redb error reports, if it is one: an I/O error, or redb's "previous I/O
    /// error, close and re-open the database" state (and a database closed under a reader).
    /// Anything else (corruption, a value too large) is not a fault of the storage.
    pub(crate) fn of(error: &redb::Error) -> Option<StorageFault> {
        match error {
            redb::Error::Io(io) => Some(StorageFault::from_io(io)),
            redb::Error::PreviousIo => Some(StorageFault {
                kind: FaultKind::Io,
                detail: "an earlier I/O error left the database handle unusable".into(),
            }),
            redb::Error::DatabaseClosed => Some(StorageFault {
                kind: FaultKind::Io,
                detail: "the database handle was closed to be reopened".into(),
            }),
            _ => None,
        }
    }

    /// The fault of an I/O error.
    pub(crate) fn from_io(io: &std::io::Error) -> StorageFault {
        // ENOSPC and EDQUOT on Linux (and most unixes' ENOSPC).
        let full = matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) || matches!(io.raw_os_error(), Some(28 | 122));
        StorageFault {
            kind: if full {
                FaultKind::DiskFull
            } else {
                FaultKind::Io
            },
            detail: io.to_string(),
        }
    }
}

impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FaultKind::DiskFull => write!(f, "its filesystem is full ({})", self.detail),
            FaultKind::Io => write!(f, "an I/O error ({})", self.detail),
        }
    }
}

fn unavailable_message(path: &str, fault: &StorageFault) -> String {
    let what_to_do = match fault.kind {
        FaultKind::DiskFull => "free space on that filesystem",
        FaultKind::Io => "check the disk and the system log",
    };
    format!(
        "the iris database {path} cannot store writes: {fault}; nothing of this request was stored. \
         To fix it, {what_to_do}: iris reopens the database by itself and takes writes again without a restart"
    )
}

impl StoreError {
    pub(crate) fn storage(operation: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
        move |source| StoreError::Storage {
            operation,
            source: Arc::new(source),
        }
    }
}

impl Coded for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::PairExists { .. }
            | StoreError::SessionIdExists { .. }
            | StoreError::TurnIdExists { .. } => ErrorCode::AlreadyExists,
            StoreError::SessionNotFound { .. } => ErrorCode::SessionNotFound,
            StoreError::Mismatch { .. } | StoreError::InvalidTurn { .. } => {
                ErrorCode::ValidationError
            }
            StoreError::Corrupt { .. } => ErrorCode::StoreCorrupt,
            StoreError::Encode { .. } => ErrorCode::StoreError,
            StoreError::Storage { .. }
            | StoreError::Closed
            | StoreError::CloseTimedOut { .. }
            | StoreError::Unavailable { .. } => ErrorCode::StoreError,
        }
    }
}

/// Converts any redb error type into a [`StoreError::Storage`].
pub(crate) trait StorageContext<T> {
    fn during(self, operation: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> StorageContext<T> for Result<T, E> {
    fn during(self, operation: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::storage(operation)(e.into()))
    }
}
