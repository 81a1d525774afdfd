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
    let result = state.with_session(key, |session| {
        let snapshot = store.snapshot()?;
        session.apply_graves(&snapshot, &request.chunk)?;
        session.bound_memory(store)?;
        Ok(session.spilled())
    });
    // Before the result: a step that failed after spilling leaves rows behind too.
    if !matches!(result, Ok(false)) {
        state.staged_clear = false;
    }
    result.map(|_| ())
}
