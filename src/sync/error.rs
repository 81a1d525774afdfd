//! Errors of the sync methods, named by what the client should be told. `http::error` maps
//! each to the status code the official client expects (protocol.md §4.12).

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    /// Wrong user name or password, or an unknown host key: clients treat it as "log in
    /// again", so it is used for nothing else.
    #[error("authentication failed")]
    AuthFailed,
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("sync version {0} is not supported (this server speaks 8..=11); update Anki")]
    ClientTooOld(u8),
    /// The request is malformed or its data cannot be applied; clients suggest Check
    /// Database.
    #[error("{0}")]
    BadRequest(String),
    /// No sync in progress under this session key (another device started one).
    #[error("{0}")]
    Conflict(&'static str),
    /// The sync would take the collection over the user's quota; nothing was stored.
    #[error("{0}")]
    OverQuota(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}
