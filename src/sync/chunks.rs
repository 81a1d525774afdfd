//! `chunk` (server rows to the client, 250 at a time) and `applyChunk` (the client's rows,
//! staged). The server's rows are chosen on the first `chunk` call from the changes index:
//! rows changed since the client's last sync.

use super::{SyncError, UserState};
use crate::protocol::{card_json, note_json, revlog_json, ApplyChunkRequest, Chunk, CHUNK_SIZE};
use crate::store::Store;

pub(crate) fn chunk(store: &Store, state: &mut UserState, key: &str) -> Result<Chunk, SyncError> {
    state.with_session(key, |session| {
        let snapshot = store.snapshot()?;
        let generation = session.generation;
        let client_usn = session.client_usn;
        if session.outgoing.is_none() {
            session.outgoing = Some(snapshot.changed_rows(generation, client_usn)?);
        }
        let stage = &session.stage;
        let Some(ids) = session.outgoing.as_mut() else {
            return Err(SyncError::Internal("no outgoing rows".into()));
        };
        let mut chunk = Chunk::default();
        let mut taken = 0;
        // Round robin, as the official server does, so each kind makes progress.
        while taken < CHUNK_SIZE {
            let before = taken;
            if let Some(id) = ids.revlog.pop() {
                if let Some(row) = snapshot.review(generation, id)? {
                    chunk.revlog.push(revlog_json(id, &row));
                }
                taken += 1;
            }
            if taken < CHUNK_SIZE {
                if let Some(id) = ids.notes.pop() {
                    if stage.deletes_note(id) {
                        // deleted by this sync's graves: not sent back
                    } else if let Some(row) = snapshot.note(generation, id)? {
                        chunk.notes.push(note_json(id, &row));
                    }
                    taken += 1;
                }
            }
            if taken < CHUNK_SIZE {
                if let Some(id) = ids.cards.pop() {
                    if stage.deletes_card(id) {
                        // deleted by this sync's graves: not sent back
                    } else if let Some(row) = snapshot.card(generation, id)? {
                        chunk.cards.push(card_json(id, &row));
                    }
                    taken += 1;
                }
            }
            if taken == before {
                break;
            }
        }
        chunk.done = ids.revlog.is_empty() && ids.notes.is_empty() && ids.cards.is_empty();
        Ok(chunk)
    })
}

pub(crate) fn apply_chunk(
    store: &Store,
    state: &mut UserState,
    key: &str,
    request: ApplyChunkRequest,
) -> Result<(), SyncError> {
    state.stage_step(store, key, |session| {
        session.apply_chunk(&store.snapshot()?, &request.chunk)
    })
}
