//! Which steps of a sync are light enough to run inline on the user's actor (an async
//! worker) rather than on the blocking pool: those that write nothing and read a bounded
//! amount. Under a load of small syncs the hop to the blocking pool and back was most of
//! the server's CPU per sync (context switches; benches/README.md, "Load"), while the step
//! itself took microseconds. A step judged heavy, or one whose judgement fails, simply
//! runs on the blocking pool, so these checks only ever cost speed, never correctness.

use super::UserState;
use crate::store::Store;

/// Most rows (or graves) a light step may read or stage: a few hundred point reads and the
/// JSON for them, well under a millisecond.
const LIGHT_ROWS: usize = 1_000;

/// A step of a normal sync, with what the judgement needs from its request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    Meta,
    /// With the client's last usn.
    Start {
        since: i32,
    },
    /// With how many notes, cards and reviews (or graves) the request stages.
    Stage {
        rows: usize,
    },
    Changes,
    Chunk,
    SanityCheck,
    Abort,
}

/// Whether `step` may run inline for this user now.
pub(crate) fn is_light(store: &Store, state: &UserState, step: Step) -> bool {
    match step {
        Step::Meta | Step::Changes => true,
        // Rows a discarded sync left in the staging table are cleared by a write; and a
        // client far behind gets every grave since its last sync.
        Step::Start { since } => {
            state.staged_clear
                && store.snapshot().is_ok_and(|snapshot| {
                    matches!(snapshot.collection(state.user.id), Ok(Some(record))
                        if matches!(snapshot.graves_exceed(record.generation, since, LIGHT_ROWS), Ok(false)))
                })
        }
        // Staging past `memory_rows` moves the stage to the database.
        Step::Stage { rows } => state.session.as_ref().is_none_or(|session| {
            rows <= LIGHT_ROWS && session.stage_rows() + rows <= session.memory_rows
        }),
        // The first `chunk` lists every row changed since the client's last sync.
        Step::Chunk => match state.session.as_ref() {
            None => true,
            Some(session) if session.has_outgoing() => true,
            Some(session) => store.snapshot().is_ok_and(|snapshot| {
                matches!(
                    snapshot.changed_rows_exceed(session.generation, session.client_usn, LIGHT_ROWS),
                    Ok(false)
                )
            }),
        },
        // A spilled sync's counts read the staging table; a mismatch clears it.
        Step::SanityCheck | Step::Abort => state.staged_clear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserRef;
    use crate::protocol::{note_json, ApplyChunkRequest, Chunk, StartRequest};
    use crate::store::fixture::{self, populated_store, ALICE};

    fn start(store: &Store, state: &mut UserState, memory_rows: usize) {
        let request = StartRequest {
            min_usn: 0,
            client_is_newer: false,
            graves: None,
        };
        super::super::start(store, state, "key", [7; 32], request, memory_rows).unwrap();
    }

    /// New notes from the client, staged by `applyChunk`.
    fn apply_notes(store: &Store, state: &mut UserState, ids: std::ops::Range<i64>) {
        let chunk = Chunk {
            notes: ids
                .map(|id| note_json(id, &fixture::note(&format!("new {id}"), -1)))
                .collect(),
            ..Chunk::default()
        };
        super::super::apply_chunk(store, state, "key", ApplyChunkRequest { chunk }).unwrap();
    }

    #[test]
    fn a_step_is_light_until_it_may_write() {
        let (_dir, store) = populated_store();
        let mut state = UserState::new(&UserRef::new(ALICE, "alice"), &Default::default());
        let light = |state: &UserState, step| is_light(&store, state, step);
        // A fresh state does not know whether a discarded sync left staged rows.
        assert!(!light(&state, Step::Start { since: 0 }));
        assert!(!light(&state, Step::Abort));
        assert!(light(&state, Step::Meta));

        start(&store, &mut state, 3);
        assert!(light(&state, Step::Start { since: 0 }));
        assert!(light(&state, Step::SanityCheck));
        assert!(light(&state, Step::Chunk), "a few changed rows");
        assert!(light(&state, Step::Stage { rows: 3 }));
        assert!(!light(&state, Step::Stage { rows: 4 }), "past memory_rows");

        apply_notes(&store, &mut state, 1_000..1_002);
        assert!(light(&state, Step::Stage { rows: 1 }));
        assert!(!light(&state, Step::Stage { rows: 2 }));
        assert!(state.staged_clear);

        // Past memory_rows: the stage moves to the database.
        apply_notes(&store, &mut state, 2_000..2_002);
        assert!(!state.staged_clear);
        assert!(!light(&state, Step::SanityCheck));
        assert!(!light(&state, Step::Start { since: 0 }));

        // A new start clears them (a write), after which starting is light again.
        start(&store, &mut state, 3);
        assert!(state.staged_clear);
        assert!(!store.snapshot().unwrap().has_staged(ALICE).unwrap());
        assert!(light(&state, Step::Start { since: 0 }));
    }

    #[test]
    fn the_probes_read_no_further_than_their_limit() {
        let (_dir, store) = populated_store();
        let snapshot = store.snapshot().unwrap();
        let generation = snapshot.collection(ALICE).unwrap().unwrap().generation;
        let changed = snapshot.changed_rows(generation, 0).unwrap();
        let rows = changed.notes.len() + changed.cards.len() + changed.revlog.len();
        let graves = snapshot.graves_since(generation, 0).unwrap().len();
        assert!(rows > 1 && graves > 0, "the fixture has both");
        assert!(snapshot
            .changed_rows_exceed(generation, 0, rows - 1)
            .unwrap());
        assert!(!snapshot.changed_rows_exceed(generation, 0, rows).unwrap());
        assert!(!snapshot
            .changed_rows_exceed(generation, i32::MAX, 0)
            .unwrap());
        assert!(snapshot.graves_exceed(generation, 0, graves - 1).unwrap());
        assert!(!snapshot.graves_exceed(generation, 0, graves).unwrap());
    }
}
