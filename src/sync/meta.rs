//! `meta`: report the collection's state so the client can choose between no changes, a
//! normal sync and a full sync. Read-only: unlike the official server it does not cancel
//! another device's sync in progress (clients do not rely on that; `start` replaces it).

use super::{SyncError, UserState};
use crate::protocol::{MetaRequest, MetaResponse, MAX_SYNC_VERSION, MIN_SYNC_VERSION};
use crate::store::Store;

pub(crate) fn meta(
    store: &Store,
    state: &UserState,
    request: &MetaRequest,
    now_ms: i64,
) -> Result<MetaResponse, SyncError> {
    if !(MIN_SYNC_VERSION..=MAX_SYNC_VERSION).contains(&request.sync_version) {
        return Err(SyncError::ClientTooOld(request.sync_version));
    }
    // The user was removed while this request waited: the key is dead.
    let collection = store
        .collection(state.user.id)?
        .ok_or(SyncError::AuthFailed)?;
    Ok(MetaResponse {
        modified_ms: collection.modified_ms,
        schema_ms: collection.schema_ms,
        usn: collection.usn,
        server_time_secs: now_ms / 1000,
        msg: String::new(),
        should_continue: true,
        host_number: 0,
        empty: collection.counts.cards == 0,
        media_usn: collection.media_usn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserRef;
    use crate::store::temp_store;

    #[test]
    fn a_new_user_looks_like_a_fresh_official_collection() {
        let (_dir, store) = temp_store();
        store.set_user("me", "h", 1_700_000_000_123).unwrap();
        let state = UserState::new(&UserRef::new(1, "me"), &Default::default());
        let req = MetaRequest {
            sync_version: 11,
            client_version: String::new(),
        };
        let m = meta(&store, &state, &req, 1_700_000_100_999).unwrap();
        assert_eq!(
            (m.modified_ms, m.schema_ms, m.usn, m.empty, m.media_usn),
            (0, 1_700_000_000_123, 0, true, 0)
        );
        assert_eq!(m.server_time_secs, 1_700_000_100);
        assert!(m.should_continue);
    }

    #[test]
    fn versions_outside_8_to_11_are_too_old() {
        let (_dir, store) = temp_store();
        store.set_user("me", "h", 0).unwrap();
        let state = UserState::new(&UserRef::new(1, "me"), &Default::default());
        for v in [0, 7, 12] {
            let req = MetaRequest {
                sync_version: v,
                client_version: String::new(),
            };
            assert!(matches!(
                meta(&store, &state, &req, 0),
                Err(SyncError::ClientTooOld(_))
            ));
        }
    }
}
