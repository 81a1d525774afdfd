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
        self.objects_since(generation, kind, i32::MIN)
    }

    /// The objects of one kind whose usn is at least `since`, by key. Each sync asks for
    /// these; the others are skipped without copying their JSON (a notetype's templates
    /// and CSS run to kilobytes).
    pub fn objects_since(
        &self,
        generation: u64,
        kind: ObjectKind,
        since: i32,
    ) -> Result<Vec<(String, ObjectRecord)>, StoreError> {
        /// The usn alone; the JSON beside it is skipped.
        #[derive(serde::Deserialize)]
        struct Usn {
            usn: i32,
        }
        let table = self.tx.open_table(OBJECTS)?;
        let kind = kind as u8;
        let mut found = Vec::new();
        for entry in table.range((generation, kind, "")..(generation, kind + 1, ""))? {
            let (key, value) = entry?;
            let name = key.value().2;
            if since > i32::MIN {
                let Usn { usn } = decode(value.value(), "objects", name)?;
                if usn < since {
                    continue;
                }
            }
            let record = decode(value.value(), "objects", name)?;
            found.push((name.to_string(), record));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{temp_store, RowBatch};
    use super::*;

    #[test]
    fn objects_since_returns_whole_records_at_or_after_the_usn_only() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        let generation = store.begin_generation(1, 0, 0).unwrap().id;
        let deck = |usn: i32| ObjectRecord {
            usn,
            json: format!(r#"{{"usn":{usn},"css":"{}"}}"#, "x".repeat(100)),
        };
        let batch = RowBatch {
            objects: vec![
                (ObjectKind::Deck as u8, "1".into(), deck(1)),
                (ObjectKind::Deck as u8, "2".into(), deck(5)),
                (ObjectKind::Deck as u8, "3".into(), deck(9)),
                (ObjectKind::Tag as u8, "t".into(), deck(7)),
            ],
            ..Default::default()
        };
        store.write_batch(generation, &batch).unwrap();
        let snapshot = store.snapshot().unwrap();
        let since = snapshot
            .objects_since(generation, ObjectKind::Deck, 5)
            .unwrap();
        assert_eq!(since, vec![("2".into(), deck(5)), ("3".into(), deck(9))]);
        let all = snapshot.objects(generation, ObjectKind::Deck).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], ("1".into(), deck(1)));
        assert!(snapshot
            .objects_since(generation, ObjectKind::Deck, 10)
            .unwrap()
            .is_empty());
    }
}
