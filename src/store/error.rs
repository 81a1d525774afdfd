//! Errors of the storage layer: one enum, each variant saying what failed and on which file
//! or row, so the log tells an operator what to fix.

use std::path::{Path, PathBuf};

use super::disk::DiskFault;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {path} is in use by another process (is an ankisyncd server running on it? \
         stop it first, or wait for it to exit)"
    )]
    Locked { path: PathBuf },
    #[error("no database at {path} (check --database or the config's `database`)")]
    Missing { path: PathBuf },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("{path}: {source}{}", fix_for(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database layout version {found} is newer than this ankisyncd understands \
         ({supported}); use a newer ankisyncd"
    )]
    UnsupportedFormat { found: u64, supported: u64 },
    #[error("database row {table}/{key} is unreadable: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: String,
    },
    #[error("cannot encode a database row: {0}")]
    Encode(String),
    /// Reading or writing the database file failed; nothing of the transaction was kept.
    #[error("database file: {0}")]
    Disk(DiskFault),
    /// The file failed earlier and could not be opened again yet.
    #[error("database {path} is unavailable after a disk fault ({reason}); retrying at the next request")]
    Unavailable { path: PathBuf, reason: String },
    /// Rows written without waiting for the disk may have been lost when the file was
    /// reopened after a disk fault; the operation that wrote them must start again.
    #[error("the database file was reopened after a disk fault while this was being written; nothing of it was kept")]
    Interrupted,
    #[error("database: {0}")]
    Redb(redb::Error),
    /// A commit shared with other syncs failed for a reason reported with the first of them.
    #[error("committing failed: {0}")]
    CommitFailed(String),
}

impl StoreError {
    /// Whether the error says the disk (not the data or the code) is at fault: the operator
    /// must act, the client can only try again later.
    pub fn is_disk(&self) -> bool {
        matches!(
            self,
            StoreError::Disk(_) | StoreError::Unavailable { .. } | StoreError::Interrupted
        ) || matches!(self, StoreError::Io { source, .. } if super::disk::is_disk_fault(source))
    }
}

impl StoreError {
    /// The same failure for another caller: several syncs that shared one commit each get
    /// it. Disk faults stay disk faults (503, try again later).
    pub(super) fn shared(&self) -> StoreError {
        match self {
            StoreError::Disk(fault) => StoreError::Disk(fault.clone()),
            StoreError::Unavailable { path, reason } => StoreError::Unavailable {
                path: path.clone(),
                reason: reason.clone(),
            },
            StoreError::Interrupted => StoreError::Interrupted,
            other => StoreError::CommitFailed(other.to_string()),
        }
    }
}

/// " (what to fix)" after a disk fault's message; nothing after other failures.
fn fix_for(error: &std::io::Error) -> String {
    if super::disk::is_disk_fault(error) {
        format!(" ({})", super::disk::advice(error.kind()))
    } else {
        String::new()
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(source) => StoreError::Disk(DiskFault::new(&source)),
            redb::Error::PreviousIo => StoreError::Disk(DiskFault {
                kind: std::io::ErrorKind::Other,
                message: "an earlier read or write of the file failed".to_string(),
            }),
            e => StoreError::Redb(e),
        }
    }
}

impl StoreError {
    pub(crate) fn open(path: &Path, source: redb::DatabaseError) -> StoreError {
        match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.to_path_buf(),
            },
            source => StoreError::Open {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                redb::Error::from(e).into()
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
