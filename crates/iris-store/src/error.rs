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
    /// The store's writer has stopped, so no more writes are accepted.
    #[error("the iris store is closed; no further writes are accepted")]
    Closed,
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
            StoreError::Storage { .. } | StoreError::Closed => ErrorCode::StoreError,
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
