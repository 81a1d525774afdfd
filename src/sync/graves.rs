//! `applyGraves`: the client's deletions, staged until `finish`.

use super::{SyncError, UserState};
use crate::protocol::ApplyGravesRequest;
use crate::store::Store;

pub(crate) fn apply_graves(
    store: &Store,
    state: &mut UserState,
    key: &str,
    request: ApplyGravesRequest,
) -> Result<(), SyncError> {
    state.stage_step(store, key, |session| {
        session.apply_graves(&store.snapshot()?, &request.chunk)
    })
}
