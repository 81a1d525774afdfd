//! Errors of the storage layer: one enum, each variant saying what failed and on which file
//! or row, so the log tells an operator what to fix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {path} is in use by another process (is an ankisyncd server running on it? \
         stop it first, or wait for it to exit)"
    )]
    Locked { path: PathBuf },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("{path}: {source}")]
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
    #[error("database: {0}")]
    Redb(#[from] redb::Error),
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
                StoreError::Redb(e.into())
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
