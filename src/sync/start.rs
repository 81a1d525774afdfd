//! `start`: open a sync session, replacing any other of the same user (its device will get
//! 409 on its next step), and reply with the server's deletions since the client's last
//! sync.

use super::session::{SyncSession, GRAVE_CARD, GRAVE_DECK, GRAVE_NOTE};
use super::{SyncError, UserState};
use crate::protocol::{Graves, StartRequest};
use crate::store::{HostKeyHash, Store};

pub(crate) fn start(
    store: &Store,
    state: &mut UserState,
    key: &str,
    device: HostKeyHash,
    request: StartRequest,
    memory_rows: usize,
) -> Result<Graves, SyncError> {
    if key.is_empty() {
        return Err(SyncError::BadRequest("missing skey".into()));
    }
    state.discard_session();
    // Rows a discarded sync moved out of memory (cheap: not durable, usually nothing).
    state.clear_staged(store)?;
    let snapshot = store.snapshot()?;
    let record = snapshot
        .collection(state.user.id)?
        .ok_or(SyncError::AuthFailed)?;
    let mut session = SyncSession {
        key: key.to_string(),
        device,
        user_id: state.user.id,
        generation: record.generation,
        server_usn: record.usn,
        client_usn: request.min_usn,
        client_is_newer: request.client_is_newer,
        memory_rows,
        base_counts: record.counts,
        outgoing: None,
        stage: Default::default(),
        started: std::time::Instant::now(),
        _live: state.live.enter(),
    };
    // Collected before the client's own deletions are staged, so they are not echoed back.
    let mut graves = Graves::default();
    for (kind, id) in snapshot.graves_since(record.generation, request.min_usn)? {
        match kind {
            GRAVE_CARD => graves.cards.push(id),
            GRAVE_NOTE => graves.notes.push(id),
            GRAVE_DECK => graves.decks.push(id),
            _ => {}
        }
    }
    if let Some(legacy) = request.graves.filter(|g| !g.is_empty()) {
        session.apply_graves(&snapshot, &legacy)?;
    }
    tracing::debug!(
        user = %state.user.name,
        server_usn = session.server_usn,
        client_usn = session.client_usn,
        "sync started"
    );
    state.session = Some(session);
    Ok(graves)
}
