//! `finish` writes the whole sync in one durable transaction and steps the usn; `abort`
//! forgets it. The value `finish` returns is the collection's new modification time, which
//! `meta` reports from then on. A sync that would take the collection over its quota is
//! refused here, with nothing stored.

use std::time::Duration;

use super::{SyncError, UserState};
use crate::store::{CommitOutcome, Store};

/// What a finished sync tells the caller.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The reply: the collection's new modification time.
    pub modified_ms: i64,
    /// From `start` to now.
    pub took: Duration,
}

pub(crate) fn finish(
    store: &Store,
    state: &mut UserState,
    key: &str,
    quota: Option<u64>,
    now_ms: i64,
) -> Result<Finished, SyncError> {
    state.with_session(key, |_| Ok(()))?;
    let Some(session) = state.session.take() else {
        return Err(SyncError::Conflict("no active sync"));
    };
    let (generation, server_usn) = (session.generation, session.server_usn);
    let took = session.started.elapsed();
    let counts = session.counts(&store.snapshot()?)?;
    let commit = session.into_commit(counts);
    let rows = (commit.notes.len(), commit.cards.len(), commit.revlog.len());
    match store.commit_sync(state.user.id, generation, server_usn, commit, quota, now_ms)? {
        CommitOutcome::Committed(record) => {
            tracing::debug!(
                user = %state.user.name,
                usn = record.usn,
                notes = rows.0,
                cards = rows.1,
                revlog = rows.2,
                "sync finished"
            );
            Ok(Finished {
                modified_ms: record.modified_ms,
                took,
            })
        }
        // A full upload replaced the collection while this sync ran.
        CommitOutcome::Conflict => Err(SyncError::Conflict(
            "the collection changed during the sync",
        )),
        CommitOutcome::OverQuota(exceeded) => {
            state.clear_staged(store)?;
            let message = exceeded.collection_message();
            tracing::warn!(user = %state.user.name, "sync refused: {message}");
            // The client shows nothing of an error reply but its status; `meta` tells the
            // user why at the next attempt.
            state.refusal = Some(message.clone());
            Err(SyncError::OverQuota(message))
        }
    }
}

pub(crate) fn abort(store: &Store, state: &mut UserState) -> Result<(), SyncError> {
    state.discard_session();
    state.clear_staged(store)?;
    Ok(())
}
