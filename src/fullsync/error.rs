//! What can go wrong in a full sync, split by who must act: the client (a corrupt upload gets
//! the official text reply) or the operator (storage faults, logged, HTTP 500).

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FullSyncError {
    /// The uploaded file is not a collection we can take; nothing was changed.
    #[error("upload rejected: {0}")]
    Corrupt(String),
    /// A download was asked of a user who never uploaded a collection.
    #[error("there is no collection on the server yet; upload one from a device first")]
    NothingToDownload,
    /// The user disappeared while the request waited.
    #[error("unknown user")]
    UnknownUser,
    #[error("scratch file {path}: {source}")]
    Scratch {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the download: {0}")]
    Build(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FullSyncError {
    pub(crate) fn scratch(path: &std::path::Path, source: std::io::Error) -> Self {
        FullSyncError::Scratch {
            path: path.display().to_string(),
            source,
        }
    }
}
