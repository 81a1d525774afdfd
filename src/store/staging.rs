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
