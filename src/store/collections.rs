//! The collection record of each user: the scalars `meta` reports. Rows of the collection
//! itself arrive with full sync.

use redb::ReadableTable;

use super::tables::{CollectionRecord, COLLECTIONS};
use super::{decode, encode, Store, StoreError};

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

impl Store {
    /// Bytes the user's live collection takes (the collection quota's measure, see
    /// [`CollectionRecord::data_bytes`]); 0 for an unknown user. A record stored before the
    /// count was kept is counted once here and remembered.
    pub fn collection_data_bytes(&self, user_id: u64) -> Result<u64, StoreError> {
        let tx = self.write()?;
        let bytes = {
            let mut table = tx.open_table(COLLECTIONS)?;
            match read_record(&table, user_id)? {
                None => None,
                Some(CollectionRecord {
                    data_bytes: Some(bytes),
                    ..
                }) => Some(bytes),
                Some(mut record) => {
                    let bytes = super::sync::count_data_bytes(&tx, record.generation)?;
                    record.data_bytes = Some(bytes);
                    table.insert(user_id, encode(&record)?.as_slice())?;
                    drop(table);
                    self.commit(tx)?;
                    return Ok(bytes);
                }
            }
        };
        tx.abort()?;
        Ok(bytes.unwrap_or(0))
    }
}
