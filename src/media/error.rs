//! Errors of the media methods, named by what the client should be told; `http::error` maps
//! each to its status (protocol.md §5): a refused upload or request is 400 ("check media"),
//! a file the server does not have is 409, a vanished user 403.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MediaError {
    /// The host key's user was removed while the request waited.
    #[error("authentication failed")]
    UnknownUser,
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid media upload: {0}")]
    BadUpload(#[from] BadUpload),
    /// `downloadFiles` asked for a file the server does not have (or has deleted): the
    /// protocol has no way to skip one, and the official server answers 409 too.
    #[error("media file not on the server: {0}")]
    NotOnServer(String),
    #[error("media scratch file: {0}")]
    Scratch(#[source] std::io::Error),
    #[error("building the media download: {0}")]
    Zip(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an upload zip was refused. Nothing of a refused zip is stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadUpload {
    #[error("not a readable zip archive: {0}")]
    NotAZip(String),
    #[error("the zip has no _meta entry")]
    NoMeta,
    #[error("_meta is not a JSON list of [name, entry] pairs: {0}")]
    BadMeta(String),
    #[error("{0} changes in one zip; at most 25 are allowed")]
    TooManyFiles(usize),
    #[error("the zip holds {0} entries; at most 26 (25 files and _meta) are allowed")]
    TooManyEntries(usize),
    #[error("bad media filename {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("_meta names zip entry {0:?}, which the zip does not have")]
    MissingEntry(String),
    #[error("zip entry {0:?} is empty")]
    EmptyEntry(String),
    #[error("zip entry {name:?} is {size} bytes; a media file may be at most 100 MiB")]
    TooLarge { name: String, size: u64 },
    #[error("zip entry {name:?} declares {declared} bytes but holds {actual}")]
    SizeMismatch {
        name: String,
        declared: u64,
        actual: u64,
    },
    #[error("zip entry {name:?} expands {compressed} bytes to {declared}: refused as a zip bomb")]
    Bomb {
        name: String,
        compressed: u64,
        declared: u64,
    },
    #[error("zip entry {name:?} is unreadable: {reason}")]
    Corrupt { name: String, reason: String },
}
