//! `sanityCheck2`: compare the client's counts with what the server will have after this
//! sync. A mismatch discards the sync; the client then asks for a full sync.

use super::{SyncError, UserState};
use crate::protocol::{SanityCheckRequest, SanityCheckResponse, SanityCounts};
use crate::store::Store;

pub(crate) fn sanity_check(
    store: &Store,
    state: &mut UserState,
    key: &str,
    request: SanityCheckRequest,
) -> Result<SanityCheckResponse, SyncError> {
    let user = state.user.name.clone();
    let (client, server) = state.with_session(key, |session| {
        let c = session.counts(&store.snapshot()?)?;
        let server = SanityCounts(
            [0, 0, 0],
            c.cards,
            c.notes,
            c.revlog,
            0,
            c.notetypes,
            c.decks,
            c.deck_configs,
        );
        Ok((SanityCounts::from_client(&request.client), server))
    })?;
    let ok = client == Some(server);
    if !ok {
        tracing::warn!(%user, ?client, ?server, "sanity check failed; the sync is discarded");
        state.discard_session();
        state.clear_staged(store)?;
    }
    Ok(SanityCheckResponse {
        status: if ok { "ok" } else { "bad" },
        client,
        server: Some(server),
    })
}
