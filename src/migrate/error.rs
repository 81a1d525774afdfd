//! What can stop an import or export, each saying what the operator should do. Nothing is
//! changed for a user whose checks fail; the checks of all users run before any is imported.

use std::path::PathBuf;

use crate::auth::EnvUserError;
use crate::fullsync::FullSyncError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} holds no user folders (the official server keeps one folder per user, with \
         collection.anki2, media.db and media/)"
    )]
    NoUsers(PathBuf),
    #[error(
        "{0} is in use: the official sync server is still running on it; stop it, then run \
         this again"
    )]
    InUse(PathBuf),
    #[error(
        "no user here for folder(s) {}: add them with `ankisyncd user add NAME`, or set \
         SYNC_USER1.. as the official server had them",
        .0.join(", ")
    )]
    UnknownUsers(Vec<String>),
    #[error(
        "user(s) {} already have a collection or media here; add --force to replace them",
        .0.join(", ")
    )]
    HasData(Vec<String>),
    #[error("folder name {name:?} is not a usable user name: {reason}")]
    BadUserName { name: String, reason: String },
    #[error("{user}: the collection cannot be imported: {reason}")]
    Collection { user: String, reason: String },
    #[error("{user}: media.db: {reason}")]
    MediaDb { user: String, reason: String },
    #[error("{user}: media file {name:?}: {problem}")]
    MediaFile {
        user: String,
        name: String,
        problem: String,
    },
    #[error("{} already exist(s); add --force to replace", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    TargetExists(Vec<PathBuf>),
    #[error(transparent)]
    Users(#[from] EnvUserError),
    #[error(transparent)]
    FullSync(#[from] FullSyncError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MigrateError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| MigrateError::Io { path, source }
    }
}
