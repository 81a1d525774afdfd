//! `meta`: report the collection's state so the client can choose between no changes, a
//! normal sync and a full sync. Read-only: unlike the official server it does not cancel
//! another device's sync in progress (clients do not rely on that; `start` replaces it).
//!
//! Clients of sync versions 8 and 9 predate scheduling features a collection may use; as on
//! the official server, they are told so (`cont: false` with a message) instead of being let
//! in to damage it.
//!
//! After a sync refused for its quota, the next `meta` stops the client with the reason,
//! once: the client shows a `meta` message, never the body of a failed request.

use super::{SyncError, UserState};
use crate::protocol::{MetaRequest, MetaResponse, MAX_SYNC_VERSION, MIN_SYNC_VERSION};
use crate::store::{CollectionRecord, ObjectKind, Snapshot, Store, StoreError};

/// The first sync version that understands the v2 scheduler.
const V2_SCHEDULER_SYNC_VERSION: u8 = 9;
/// The first sync version that understands the v2 timezone handling.
const V2_TIMEZONE_SYNC_VERSION: u8 = 10;
/// The official server's messages, shown by old clients as they are.
const NO_V2_SCHEDULER: &str = "Your client does not support the v2 scheduler";
const NO_V2_TIMEZONE: &str = "Your client does not support the new timezone handling.";

pub(crate) fn meta(
    store: &Store,
    state: &mut UserState,
    request: &MetaRequest,
    now_ms: i64,
) -> Result<MetaResponse, SyncError> {
    let version = request.sync_version;
    if !(MIN_SYNC_VERSION..=MAX_SYNC_VERSION).contains(&version) {
        return Err(SyncError::ClientTooOld(version));
    }
    let snapshot = store.snapshot()?;
    // The user was removed while this request waited: the key is dead.
    let collection = snapshot
        .collection(state.user.id)?
        .ok_or(SyncError::AuthFailed)?;
    let too_old = if version < V2_TIMEZONE_SYNC_VERSION {
        let features = Scheduling::of(&snapshot, &collection)?;
        if features.v2_scheduler && version < V2_SCHEDULER_SYNC_VERSION {
            Some(NO_V2_SCHEDULER)
        } else if features.v2_timezone {
            Some(NO_V2_TIMEZONE)
        } else {
            None
        }
    } else {
        None
    };
    // A client too old for the collection cannot sync at all; a quota refusal waits for a
    // client that can.
    let refusal = match too_old {
        Some(message) => Some(message.to_string()),
        None => state.refusal.take(),
    };
    Ok(MetaResponse {
        modified_ms: collection.modified_ms,
        schema_ms: collection.schema_ms,
        usn: collection.usn,
        server_time_secs: now_ms / 1000,
        should_continue: refusal.is_none(),
        msg: refusal.unwrap_or_default(),
        host_number: 0,
        empty: collection.counts.cards == 0,
        media_usn: collection.media_usn,
    })
}

/// The scheduling features of a collection that old clients do not understand, read from its
/// config as the official server reads them: a value of the wrong type counts as absent.
#[derive(Debug, PartialEq, Eq)]
struct Scheduling {
    /// `schedVer` is 2 (the v3 scheduler is a flag on top of it).
    v2_scheduler: bool,
    /// `creationOffset` holds a number of minutes.
    v2_timezone: bool,
}

impl Scheduling {
    fn of(snapshot: &Snapshot, collection: &CollectionRecord) -> Result<Scheduling, StoreError> {
        // No collection uploaded yet: the official server's fresh collection uses the v2
        // scheduler and, being a server's, has no creation offset.
        if collection.generation == 0 {
            return Ok(Scheduling {
                v2_scheduler: true,
                v2_timezone: false,
            });
        }
        let config = |key: &str| {
            snapshot
                .object(collection.generation, ObjectKind::Config, key)
                .map(|found| found.map(|record| record.json))
        };
        Ok(Scheduling {
            v2_scheduler: config("schedVer")?
                .is_some_and(|json| serde_json::from_str::<u8>(&json).is_ok_and(|v| v == 2)),
            v2_timezone: config("creationOffset")?
                .is_some_and(|json| serde_json::from_str::<i32>(&json).is_ok()),
        })
    }
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
        let mut state = UserState::new(&UserRef::new(1, "me"), &Default::default());
        let req = MetaRequest {
            sync_version: 11,
            client_version: String::new(),
        };
        let m = meta(&store, &mut state, &req, 1_700_000_100_999).unwrap();
        assert_eq!(
            (m.modified_ms, m.schema_ms, m.usn, m.empty, m.media_usn),
            (0, 1_700_000_000_123, 0, true, 0)
        );
        assert_eq!(m.server_time_secs, 1_700_000_100);
        assert!(m.should_continue);
    }

    /// A user whose uploaded collection holds these config entries (key, JSON value).
    fn user_with_config(entries: &[(&str, &str)]) -> (tempfile::TempDir, Store, UserState) {
        use crate::store::{ObjectRecord, RowBatch};
        let (dir, store) = temp_store();
        store.set_user("me", "h", 0).unwrap();
        let generation = store.begin_generation(1, 0, 0).unwrap();
        let batch = RowBatch {
            objects: entries
                .iter()
                .map(|(key, json)| {
                    let record = ObjectRecord {
                        usn: 0,
                        json: json.to_string(),
                    };
                    (ObjectKind::Config as u8, key.to_string(), record)
                })
                .collect(),
            ..RowBatch::default()
        };
        store.write_batch(generation.id, &batch).unwrap();
        let mut record = CollectionRecord::empty(0);
        record.modified_ms = 5;
        assert!(store.activate_generation(1, generation, record, 1).unwrap());
        (
            dir,
            store,
            UserState::new(&UserRef::new(1, "me"), &Default::default()),
        )
    }

    /// (cont, msg) of `meta` for each sync version 8..=11.
    fn answers(store: &Store, state: &mut UserState) -> Vec<(bool, String)> {
        (8..=11)
            .map(|v| {
                let req = MetaRequest {
                    sync_version: v,
                    client_version: String::new(),
                };
                let m = meta(store, &mut *state, &req, 0).unwrap();
                (m.should_continue, m.msg)
            })
            .collect()
    }

    fn ok() -> (bool, String) {
        (true, String::new())
    }

    fn refused(msg: &str) -> (bool, String) {
        (false, msg.to_string())
    }

    #[test]
    fn old_clients_are_refused_what_they_do_not_understand() {
        // A fresh account is the official server's new collection: v2 scheduler, no offset.
        let (_dir, store) = temp_store();
        store.set_user("me", "h", 0).unwrap();
        let mut state = UserState::new(&UserRef::new(1, "me"), &Default::default());
        assert_eq!(
            answers(&store, &mut state),
            [refused(NO_V2_SCHEDULER), ok(), ok(), ok()]
        );

        let (_dir, store, mut state) =
            user_with_config(&[("schedVer", "2"), ("creationOffset", "-60")]);
        assert_eq!(
            answers(&store, &mut state),
            [
                refused(NO_V2_SCHEDULER),
                refused(NO_V2_TIMEZONE),
                ok(),
                ok()
            ]
        );

        let (_dir, store, mut state) = user_with_config(&[("creationOffset", "0")]);
        assert_eq!(
            answers(&store, &mut state),
            [refused(NO_V2_TIMEZONE), refused(NO_V2_TIMEZONE), ok(), ok()]
        );

        // Values of another type count as absent, as the official server reads them.
        for config in [
            &[("schedVer", "1"), ("creationOffset", "null")][..],
            &[("schedVer", "2.0"), ("creationOffset", "\"-60\"")],
            &[("schedVer", "3"), ("creationOffset", "1e3")],
            &[],
        ] {
            let (_dir, store, mut state) = user_with_config(config);
            assert_eq!(
                answers(&store, &mut state),
                [ok(), ok(), ok(), ok()],
                "{config:?}"
            );
        }
    }

    #[test]
    fn a_refused_sync_is_explained_at_the_next_meta_only() {
        let (_dir, store) = temp_store();
        store.set_user("me", "h", 0).unwrap();
        let mut state = UserState::new(&UserRef::new(1, "me"), &Default::default());
        state.refusal = Some("over quota".into());
        let req = MetaRequest {
            sync_version: 11,
            client_version: String::new(),
        };
        let m = meta(&store, &mut state, &req, 0).unwrap();
        assert_eq!((m.should_continue, m.msg.as_str()), (false, "over quota"));
        let m = meta(&store, &mut state, &req, 0).unwrap();
        assert_eq!((m.should_continue, m.msg.as_str()), (true, ""));
    }

    #[test]
    fn versions_outside_8_to_11_are_too_old() {
        let (_dir, store) = temp_store();
        store.set_user("me", "h", 0).unwrap();
        let mut state = UserState::new(&UserRef::new(1, "me"), &Default::default());
        for v in [0, 7, 12] {
            let req = MetaRequest {
                sync_version: v,
                client_version: String::new(),
            };
            assert!(matches!(
                meta(&store, &mut state, &req, 0),
                Err(SyncError::ClientTooOld(_))
            ));
        }
    }
}
