//! `applyChanges`: reply with the server's notetypes, decks, deck configs and tags changed
//! since the client's last sync (and config, when the server is newer) — gathered BEFORE the
//! client's are staged, so nothing is echoed back — then stage the client's.

use serde_json::{Map, Value};

use super::session::Stage;
use super::{SyncError, UserState};
use crate::protocol::{ApplyChangesRequest, Changes};
use crate::store::{ObjectKind, Snapshot, Store};

pub(crate) fn apply_changes(
    store: &Store,
    state: &mut UserState,
    key: &str,
    request: ApplyChangesRequest,
) -> Result<Changes, SyncError> {
    let user_id = state.user.id;
    state.with_session(key, |session| {
        let snapshot = store.snapshot()?;
        let (generation, since) = (session.generation, session.client_usn);
        let stage = &session.stage;
        let mut reply = Changes {
            notetypes: changed(&snapshot, stage, generation, ObjectKind::Notetype, since)?,
            decks_and_configs: (
                changed(&snapshot, stage, generation, ObjectKind::Deck, since)?,
                changed(&snapshot, stage, generation, ObjectKind::DeckConfig, since)?,
            ),
            tags: snapshot
                .objects_since(generation, ObjectKind::Tag, since)?
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            config: None,
            created_secs: None,
        };
        if !session.client_is_newer {
            let mut config = Map::new();
            for (key, entry) in snapshot.objects(generation, ObjectKind::Config)? {
                config.insert(key, parse(&entry.json)?);
            }
            reply.config = Some(config);
            reply.created_secs = snapshot
                .collection(user_id)?
                .map(|record| record.created_secs);
        }
        session.apply_changes(&snapshot, request.changes)?;
        Ok(reply)
    })
}

/// Objects changed since the client's last sync, less those its graves just deleted.
fn changed(
    snapshot: &Snapshot,
    stage: &Stage,
    generation: u64,
    kind: ObjectKind,
    since: i32,
) -> Result<Vec<Map<String, Value>>, SyncError> {
    snapshot
        .objects_since(generation, kind, since)?
        .into_iter()
        .filter(|(key, _)| !stage.deletes_object(kind, key))
        .map(|(_, object)| match parse(&object.json)? {
            Value::Object(map) => Ok(map),
            _ => Err(SyncError::Internal(format!(
                "stored {kind:?} is not a JSON object"
            ))),
        })
        .collect()
}

fn parse(json: &str) -> Result<Value, SyncError> {
    serde_json::from_str(json).map_err(|e| SyncError::Internal(format!("stored JSON: {e}")))
}
