//! The overflow of a normal sync's stage: when a sync brings more rows than the stage keeps
//! in memory, they wait here until `finish` applies them (in its one transaction) or the
//! sync is discarded. Nothing here is durable on its own: a crash loses the stage, as it
//! should, and startup clears whatever is left.

use super::tables::{SpilledRow, STAGED};
use super::{decode, encode, Snapshot, Store, StoreError};

/// Where a sync's rows wait: the user's part of the staging table, in one opening of the file
/// (a reopening after a disk fault may lose them, as they are not written durably).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spill {
    pub user_id: u64,
    pub(super) epoch: u64,
}

impl Store {
    /// Move staged rows of `user_id` out of memory: (row kind, id, row).
    pub fn spill(&self, user_id: u64, rows: &[(u8, i64, SpilledRow)]) -> Result<Spill, StoreError> {
        let mut tx = self.write()?;
        let spill = Spill {
            user_id,
            epoch: self.epoch(),
        };
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Redb(e.into()))?;
        {
            let mut table = tx.open_table(STAGED)?;
            for (kind, id, row) in rows {
                table.insert((user_id, *kind, *id), encode(row)?.as_slice())?;
            }
        }
        self.commit(tx)?;
        Ok(spill)
    }

    /// Forget the staged rows of `user_id` (their sync was discarded or replaced).
    pub fn clear_staged(&self, user_id: u64) -> Result<(), StoreError> {
        // Every `start` calls this, and almost no sync ever spills: look first, with a read
        // transaction, rather than queue for the one writer behind other users' durable
        // `finish` commits. With 32 users syncing, that queue made `start` as slow as
        // `finish` (p99 0.7 s; benches/README.md, "Load"). Only this user's actor writes
        // its staged rows, so none can appear between the look and the write.
        if !self.snapshot()?.has_staged(user_id)? {
            return Ok(());
        }
        let mut tx = self.write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Redb(e.into()))?;
        tx.open_table(STAGED)?.retain_in(
            (user_id, 0u8, i64::MIN)..=(user_id, u8::MAX, i64::MAX),
            |_, _| false,
        )?;
        self.commit(tx)?;
        Ok(())
    }

    /// Forget every staged row: no sync survives a restart.
    pub fn clear_all_staged(&self) -> Result<(), StoreError> {
        let tx = self.write()?;
        tx.open_table(STAGED)?.retain(|_, _| false)?;
        self.commit(tx)?;
        Ok(())
    }
}

impl Snapshot {
    pub fn staged(
        &self,
        user_id: u64,
        kind: u8,
        id: i64,
    ) -> Result<Option<SpilledRow>, StoreError> {
        let table = self.tx().open_table(STAGED)?;
        let found = table.get((user_id, kind, id))?;
        found.map(|v| decode(v.value(), "staged", id)).transpose()
    }

    /// Whether `user_id` has staged rows.
    pub fn has_staged(&self, user_id: u64) -> Result<bool, StoreError> {
        let table = self.tx().open_table(STAGED)?;
        let mut range = table.range((user_id, 0u8, i64::MIN)..=(user_id, u8::MAX, i64::MAX))?;
        Ok(range.next().transpose()?.is_some())
    }

    /// Every staged row of `user_id`: (row kind, id, row).
    pub fn staged_rows(&self, user_id: u64) -> Result<Vec<(u8, i64, SpilledRow)>, StoreError> {
        let table = self.tx().open_table(STAGED)?;
        let range = table.range((user_id, 0u8, i64::MIN)..=(user_id, u8::MAX, i64::MAX))?;
        range
            .map(|entry| {
                let (key, value) = entry?;
                let (_, kind, id) = key.value();
                Ok((kind, id, decode(value.value(), "staged", id)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::store::temp_store;

    fn revlog_row() -> SpilledRow {
        SpilledRow::Revlog(crate::store::RevlogRow {
            cid: 1,
            usn: 0,
            ease: 3,
            ivl: 1,
            last_ivl: 0,
            factor: 2500,
            time: 6000,
            rtype: 1,
        })
    }

    #[test]
    fn clearing_removes_only_that_users_rows() {
        let (_dir, store) = temp_store();
        store.spill(1, &[(2, 10, revlog_row())]).unwrap();
        store.spill(2, &[(2, 20, revlog_row())]).unwrap();
        store.clear_staged(1).unwrap();
        let snapshot = store.snapshot().unwrap();
        assert!(!snapshot.has_staged(1).unwrap());
        assert!(snapshot.has_staged(2).unwrap());
        assert_eq!(snapshot.staged_rows(2).unwrap().len(), 1);
    }

    #[test]
    fn clearing_nothing_does_not_wait_for_the_writer() {
        let (_dir, store) = temp_store();
        let store = std::sync::Arc::new(store);
        store.spill(2, &[(2, 20, revlog_row())]).unwrap();
        // Another user's write transaction, open for as long as this test runs.
        let held = store.write().unwrap();
        let (done, finished) = mpsc::channel();
        let clearing = std::sync::Arc::clone(&store);
        // Detached: if clearing waited for the writer, it would wait until the test ends.
        thread::spawn(move || {
            let _ = done.send(clearing.clear_staged(1).map_err(|e| e.to_string()));
        });
        let outcome = finished.recv_timeout(Duration::from_secs(30));
        drop(held);
        assert_eq!(outcome, Ok(Ok(())), "clear_staged waited for the writer");
    }
}
