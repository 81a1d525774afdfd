//! Group commit of normal syncs. Every `finish` is one durable transaction, and redb has one
//! writer: with many users syncing, each `finish` queued behind the others' fsyncs (p50
//! 61 ms at 32 users; benches/README.md, "Load"). Here the first `finish` to arrive leads:
//! it writes every `finish` waiting at that moment into one transaction and commits it with
//! one fsync, while the next ones gather for the following round. Each sync is still all or
//! nothing: a member that fails (an error, or the quota) is taken out, its answer given,
//! and the rest written again in a fresh transaction, so no other sync is lost with it.
//! A leader writes one round and then hands the lead to the oldest waiting `finish`, so no
//! request is kept leading round after round while its own reply waits.

use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};

use super::sync::SyncFinish;
use super::{CommitOutcome, Store, StoreError};

/// What a waiting `finish` is told: its outcome, or that it leads the next round.
enum Message {
    Done(Result<CommitOutcome, StoreError>),
    Lead,
}

type Reply = mpsc::Sender<Message>;

#[derive(Default)]
pub(super) struct CommitQueue {
    state: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    finishes: Vec<(SyncFinish, Reply)>,
    /// A thread is writing a round or has been told to write the next one.
    leading: bool,
}

impl CommitQueue {
    /// Commit `finish`, with whichever others are waiting, and return its outcome. Blocks
    /// (call it on the blocking pool) while this thread or another writes the round.
    pub(super) fn commit(
        &self,
        store: &Store,
        finish: SyncFinish,
    ) -> Result<CommitOutcome, StoreError> {
        let (reply, outcome) = mpsc::channel();
        let lead = {
            let mut waiting = self.lock();
            waiting.finishes.push((finish, reply));
            !std::mem::replace(&mut waiting.leading, true)
        };
        if lead {
            self.lead_round(store);
        }
        loop {
            match outcome.recv() {
                Ok(Message::Done(result)) => return result,
                // Its own finish is still waiting: this round takes it.
                Ok(Message::Lead) => self.lead_round(store),
                Err(_) => {
                    return Err(StoreError::CommitFailed(
                        "the thread committing it stopped".into(),
                    ))
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write one round (everything waiting, the leader's own `finish` included), then hand
    /// the lead to the oldest `finish` that arrived meanwhile, or resign if none did. A
    /// round that panics (a bug) fails its own members (their reply channels close as it
    /// unwinds); the lead is handed on all the same.
    fn lead_round(&self, store: &Store) {
        let round = std::mem::take(&mut self.lock().finishes);
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_round(store, round);
        }));
        if let Err(panic) = written {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!("committing a round of syncs panicked: {message}");
        }
        let mut waiting = self.lock();
        // The oldest waiting `finish` leads next; one whose caller is gone cannot, and is
        // dropped (nobody waits for its answer).
        while let Some((_, reply)) = waiting.finishes.first() {
            if reply.send(Message::Lead).is_ok() {
                return;
            }
            waiting.finishes.remove(0);
        }
        waiting.leading = false;
    }
}

/// Commit `round` in one transaction, each member's outcome to its reply channel.
fn write_round(store: &Store, mut round: Vec<(SyncFinish, Reply)>) {
    while !round.is_empty() {
        let tx = match store.write() {
            Ok(tx) => tx,
            Err(e) => return fail_all(round, &e),
        };
        let mut outcomes = Vec::with_capacity(round.len());
        let mut failed = None;
        for (index, (finish, _)) in round.iter().enumerate() {
            match store.apply_finish(&tx, finish) {
                Ok(CommitOutcome::OverQuota(exceeded)) => {
                    failed = Some((index, Ok(CommitOutcome::OverQuota(exceeded))));
                    break;
                }
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    failed = Some((index, Err(e)));
                    break;
                }
            }
        }
        if let Some((index, result)) = failed {
            // Part of that member may be in `tx`: drop it all, answer that member, and
            // write the others again.
            if let Err(e) = tx.abort() {
                tracing::debug!("dropping a failed round: {e}");
            }
            let (_, reply) = round.remove(index);
            let _ = reply.send(Message::Done(result));
            continue;
        }
        let stored = if outcomes
            .iter()
            .all(|outcome| matches!(outcome, CommitOutcome::Conflict))
        {
            tx.abort().map_err(StoreError::from)
        } else {
            store.commit(tx)
        };
        if round.len() > 1 {
            tracing::debug!(syncs = round.len(), "syncs committed together");
        }
        match stored {
            Ok(()) => {
                for ((_, reply), outcome) in round.into_iter().zip(outcomes) {
                    let _ = reply.send(Message::Done(Ok(outcome)));
                }
            }
            Err(e) => fail_all(round, &e),
        }
        return;
    }
}

/// The round failed as a whole: every member gets the error.
fn fail_all(round: Vec<(SyncFinish, Reply)>, error: &StoreError) {
    for (_, reply) in round {
        let _ = reply.send(Message::Done(Err(error.shared())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{fixture, temp_store, CollectionRecord, RowBatch, SyncCommit};

    /// Users 1..=n, each with an uploaded collection of one note; their generations.
    fn users(n: u64) -> (tempfile::TempDir, Store, Vec<u64>) {
        let (dir, store) = temp_store();
        let mut generations = Vec::new();
        for user in 1..=n {
            store.set_user(&format!("user{user}"), "h", 0).unwrap();
            let generation = store.begin_generation(user, 0, 0).unwrap();
            let batch = RowBatch {
                notes: vec![(1, fixture::note("one", 0))],
                ..Default::default()
            };
            let bytes = store.write_batch(generation.id, &batch).unwrap();
            let mut record = CollectionRecord::empty(0);
            record.data_bytes = Some(bytes);
            generations.push(generation.id);
            assert!(store
                .activate_generation(user, generation, record, 1)
                .unwrap());
        }
        (dir, store, generations)
    }

    /// A sync of `user` adding note 2, from usn `usn`.
    fn finish(user: u64, generation: u64, usn: i32, limit: Option<u64>) -> SyncFinish {
        SyncFinish {
            user_id: user,
            generation,
            server_usn: usn,
            commit: SyncCommit {
                notes: vec![(2, Some(fixture::note(&"new ".repeat(50), 0)))],
                ..Default::default()
            },
            limit,
            now_ms: 7,
        }
    }

    fn added(store: &Store, generation: u64) -> bool {
        store
            .snapshot()
            .unwrap()
            .note(generation, 2)
            .unwrap()
            .is_some()
    }

    #[test]
    fn a_failing_member_costs_only_itself() {
        let (_dir, store, generations) = users(3);
        let tight = Some(store.collection(2).unwrap().unwrap().data_bytes.unwrap() + 1);
        let members = [
            finish(1, generations[0], 0, None),
            finish(2, generations[1], 0, tight),
            finish(3, generations[2], 5, None),
        ];
        let (round, replies): (Vec<_>, Vec<_>) = members
            .into_iter()
            .map(|member| {
                let (reply, outcome) = mpsc::channel();
                ((member, reply), outcome)
            })
            .unzip();
        // User 1 is written before user 2 breaks its quota: the round is written again
        // without user 2.
        write_round(&store, round);
        let outcomes: Vec<_> = replies
            .iter()
            .map(|r| match r.recv().unwrap() {
                Message::Done(result) => result.unwrap(),
                Message::Lead => panic!("write_round never hands the lead"),
            })
            .collect();
        assert!(matches!(&outcomes[0], CommitOutcome::Committed(r) if r.usn == 1));
        assert!(matches!(outcomes[1], CommitOutcome::OverQuota(_)));
        assert_eq!(
            outcomes[2],
            CommitOutcome::Conflict,
            "started from another usn"
        );
        assert!(added(&store, generations[0]));
        assert!(
            !added(&store, generations[1]),
            "nothing of the refused sync"
        );
        assert!(!added(&store, generations[2]));
        assert_eq!(store.collection(1).unwrap().unwrap().usn, 1);
        assert_eq!(store.collection(2).unwrap().unwrap().usn, 0);
    }

    /// Leaders hand over while others arrive: every sync of every user must land (a
    /// leader that cleared the queue on its way out once dropped a newcomer's sync).
    #[test]
    fn many_rounds_of_concurrent_finishes_lose_nothing() {
        const SYNCS: i32 = 40;
        let (_dir, store, generations) = users(6);
        std::thread::scope(|scope| {
            for (user, generation) in (1..).zip(&generations) {
                let store = &store;
                scope.spawn(move || {
                    for usn in 0..SYNCS {
                        let outcome = store
                            .commit_sync(user, *generation, usn, SyncCommit::default(), None, 7)
                            .unwrap();
                        assert!(matches!(outcome, CommitOutcome::Committed(r) if r.usn == usn + 1));
                    }
                });
            }
        });
        for user in 1..=6 {
            assert_eq!(store.collection(user).unwrap().unwrap().usn, SYNCS);
        }
    }

    #[test]
    fn concurrent_finishes_each_commit_once() {
        let (_dir, store, generations) = users(8);
        std::thread::scope(|scope| {
            for (user, generation) in (1..).zip(&generations) {
                let store = &store;
                scope.spawn(move || {
                    let outcome = store
                        .commit_sync(
                            user,
                            *generation,
                            0,
                            finish(user, 0, 0, None).commit,
                            None,
                            7,
                        )
                        .unwrap();
                    assert!(matches!(outcome, CommitOutcome::Committed(r) if r.usn == 1));
                });
            }
        });
        for (user, generation) in (1..).zip(&generations) {
            assert_eq!(store.collection(user).unwrap().unwrap().usn, 1);
            assert!(added(&store, *generation));
        }
    }
}
