//! The collection record of each user: the scalars `meta` reports. Rows of the collection
//! itself arrive with full sync.

use redb::ReadableTable;

use super::tables::{CollectionRecord, COLLECTIONS};
use super::{decode, Store, StoreError};

/// The user's collection record, read inside a write transaction that may change it.
pub(super) fn read_record(
    table: &redb::Table<'_, u64, &[u8]>,
    user_id: u64,
) -> Result<Option<CollectionRecord>, StoreError> {
    let found = table.get(user_id)?;
    found
        .map(|v| decode(v.value(), "collections", user_id))
        .transpose()
}

impl Store {
    pub fn collection(&self, user_id: u64) -> Result<Option<CollectionRecord>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(COLLECTIONS)?;
        let found = table.get(user_id)?;
        found
            .map(|v| decode(v.value(), "collections", user_id))
            .transpose()
    }
}
