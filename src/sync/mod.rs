//! Collection sync: one file per protocol method, each a plain function over `store` that the
//! user's actor runs. Nothing here knows HTTP or ractor.

mod error;
mod host_key;
mod meta;
mod state;

pub(crate) use error::SyncError;
pub(crate) use host_key::host_key;
pub(crate) use meta::meta;
pub(crate) use state::UserState;
