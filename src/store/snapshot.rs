//! A consistent read of the database at one moment (redb MVCC): a full download reads every
//! row of a generation from one snapshot while other users keep writing.

use redb::ReadTransaction;

use super::tables::{
    CardRow, CollectionRecord, NoteRow, ObjectKind, ObjectRecord, RevlogRow, CARDS, COLLECTIONS,
    GRAVES, NOTES, OBJECTS, REVLOG,
};
use super::{decode, decode_row, Store, StoreError};

pub struct Snapshot {
    tx: ReadTransaction,
}

type Rows<T> = Box<dyn Iterator<Item = Result<(i64, T), StoreError>>>;

impl Store {
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot { tx: self.read()? })
    }
}

impl Snapshot {
    pub(super) fn tx(&self) -> &ReadTransaction {
        &self.tx
    }

    pub fn collection(&self, user_id: u64) -> Result<Option<CollectionRecord>, StoreError> {
        let table = self.tx.open_table(COLLECTIONS)?;
        let found = table.get(user_id)?;
        found
            .map(|v| decode(v.value(), "collections", user_id))
            .transpose()
    }

    pub fn notes(&self, generation: u64) -> Result<Rows<NoteRow>, StoreError> {
        self.rows(NOTES, "notes", generation)
    }

    pub fn cards(&self, generation: u64) -> Result<Rows<CardRow>, StoreError> {
        self.rows(CARDS, "cards", generation)
    }

    pub fn revlog(&self, generation: u64) -> Result<Rows<RevlogRow>, StoreError> {
        self.rows(REVLOG, "revlog", generation)
    }

    fn rows<T: serde::de::DeserializeOwned + 'static>(
        &self,
        definition: redb::TableDefinition<(u64, i64), &[u8]>,
        name: &'static str,
        generation: u64,
    ) -> Result<Rows<T>, StoreError> {
        let table = self.tx.open_table(definition)?;
        let range = table.range((generation, i64::MIN)..=(generation, i64::MAX))?;
        Ok(Box::new(range.map(move |entry| {
            let (key, value) = entry?;
            let id = key.value().1;
            Ok((id, decode_row(value.value(), name, id)?))
        })))
    }

    /// (usn, kind, object id) of every grave.
    pub fn graves(&self, generation: u64) -> Result<Vec<(i32, u8, i64)>, StoreError> {
        let table = self.tx.open_table(GRAVES)?;
        let range = table.range(
            (generation, i32::MIN, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX),
        )?;
        range
            .map(|entry| {
                let (key, ()) = entry.map(|(k, v)| (k, v.value()))?;
                let (_, usn, kind, id) = key.value();
                Ok((usn, kind, id))
            })
            .collect()
    }

    /// Every object of one kind, by key.
    pub fn objects(
        &self,
        generation: u64,
        kind: ObjectKind,
    ) -> Result<Vec<(String, ObjectRecord)>, StoreError> {
        let table = self.tx.open_table(OBJECTS)?;
        let kind = kind as u8;
        let range = table.range((generation, kind, "")..(generation, kind + 1, ""))?;
        range
            .map(|entry| {
                let (key, value) = entry?;
                let name = key.value().2.to_string();
                let record = decode(value.value(), "objects", &name)?;
                Ok((name, record))
            })
            .collect()
    }
}
