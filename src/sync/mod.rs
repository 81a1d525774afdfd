//! Collection sync: one file per protocol method, each a plain function over `store` that the
//! user's actor runs with the user's state. Nothing here knows HTTP or ractor.

mod changes;
mod chunks;
mod error;
mod finish;
mod graves;
mod host_key;
mod meta;
mod note_fields;
mod placement;
mod sanity;
mod session;
mod start;
mod state;

pub(crate) use changes::apply_changes;
pub(crate) use chunks::{apply_chunk, chunk};
pub(crate) use error::SyncError;
pub(crate) use finish::{abort, finish};
pub(crate) use graves::apply_graves;
pub(crate) use host_key::host_key;
pub(crate) use meta::meta;
pub(crate) use placement::{is_light, Step};
pub(crate) use sanity::sanity_check;
pub(crate) use start::start;
pub(crate) use state::{LiveSessions, UserState};
