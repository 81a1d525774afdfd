//! What a normal sync reads and writes. Reads go through a [`Snapshot`] (each request of a
//! sync reads the live state as it is, which no other device can change while the user's
//! actor runs this sync); the client's changes are written by [`Store::commit_sync`] in ONE
//! durable transaction at `finish`, together with the usn step, so a sync is all or nothing.

use redb::{ReadableTable, WriteTransaction};

use super::tables::{
    CardRow, CollectionRecord, Counts, NoteRow, ObjectKind, ObjectRecord, RevlogRow, RowKind,
    SpilledRow, CARDS, CHANGES, COLLECTIONS, GRAVES, NOTES, OBJECTS, REVLOG, STAGED,
};
use super::{decode, decode_row, encode, encode_row, Snapshot, Store, StoreError};

/// Ids of rows changed at or after some usn, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangedIds {
    pub revlog: Vec<i64>,
    pub notes: Vec<i64>,
    pub cards: Vec<i64>,
}

/// Everything one normal sync changes on the server, applied at `finish`.
#[derive(Debug, Default)]
pub struct SyncCommit {
    /// `None` deletes the row.
    pub notes: Vec<(i64, Option<NoteRow>)>,
    pub cards: Vec<(i64, Option<CardRow>)>,
    /// Reviews are only ever added.
    pub revlog: Vec<(i64, RevlogRow)>,
    /// `None` deletes the object.
    pub objects: Vec<(ObjectKind, String, Option<ObjectRecord>)>,
    /// The whole collection config, replacing what is stored.
    pub config: Option<Vec<(String, ObjectRecord)>>,
    /// Deletions to record for other devices: (grave kind, id).
    pub graves: Vec<(u8, i64)>,
    pub created_secs: Option<i64>,
    /// Row counts after this sync.
    pub counts: Counts,
    /// The user whose rows were partly staged in the database (see `staging`): they are
    /// applied first, then the rows above, which are newer.
    pub spilled_user: Option<u64>,
}

impl Snapshot {
    pub fn note(&self, generation: u64, id: i64) -> Result<Option<NoteRow>, StoreError> {
        self.row(NOTES, "notes", generation, id)
    }

    pub fn card(&self, generation: u64, id: i64) -> Result<Option<CardRow>, StoreError> {
        self.row(CARDS, "cards", generation, id)
    }

    pub fn review(&self, generation: u64, id: i64) -> Result<Option<RevlogRow>, StoreError> {
        self.row(REVLOG, "revlog", generation, id)
    }

    fn row<T: serde::de::DeserializeOwned>(
        &self,
        definition: redb::TableDefinition<(u64, i64), &[u8]>,
        name: &'static str,
        generation: u64,
        id: i64,
    ) -> Result<Option<T>, StoreError> {
        let table = self.tx().open_table(definition)?;
        let found = table.get((generation, id))?;
        found.map(|v| decode_row(v.value(), name, id)).transpose()
    }

    pub fn object(
        &self,
        generation: u64,
        kind: ObjectKind,
        key: &str,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let table = self.tx().open_table(OBJECTS)?;
        let found = table.get((generation, kind as u8, key))?;
        found.map(|v| decode(v.value(), "objects", key)).transpose()
    }

    /// Rows changed at usn `since` or later, from the changes index.
    pub fn changed_rows(&self, generation: u64, since: i32) -> Result<ChangedIds, StoreError> {
        let table = self.tx().open_table(CHANGES)?;
        let mut ids = ChangedIds::default();
        for entry in table
            .range((generation, since, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX))?
        {
            let (key, _) = entry?;
            let (_, _, kind, id) = key.value();
            match kind {
                k if k == RowKind::Revlog as u8 => ids.revlog.push(id),
                k if k == RowKind::Note as u8 => ids.notes.push(id),
                k if k == RowKind::Card as u8 => ids.cards.push(id),
                _ => {}
            }
        }
        Ok(ids)
    }

    /// Graves recorded at usn `since` or later: (kind, id).
    pub fn graves_since(&self, generation: u64, since: i32) -> Result<Vec<(u8, i64)>, StoreError> {
        let table = self.tx().open_table(GRAVES)?;
        let range = table.range(
            (generation, since, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX),
        )?;
        range
            .map(|entry| {
                let (key, _) = entry?;
                let (_, _, kind, id) = key.value();
                Ok((kind, id))
            })
            .collect()
    }
}

impl Store {
    /// Apply a normal sync's changes and step the usn, durably, in one transaction. Returns
    /// `None` (and changes nothing) if the collection is no longer the one the sync started
    /// from: another device replaced it or finished a sync meanwhile.
    pub fn commit_sync(
        &self,
        user_id: u64,
        generation: u64,
        server_usn: i32,
        commit: &SyncCommit,
        now_ms: i64,
    ) -> Result<Option<CollectionRecord>, StoreError> {
        let tx = self.write()?;
        let record = {
            let mut collections = tx.open_table(COLLECTIONS)?;
            let current = super::collections::read_record(&collections, user_id)?;
            match current {
                Some(mut record) if record.generation == generation && record.usn == server_usn => {
                    apply(&tx, generation, server_usn, commit)?;
                    record.usn = server_usn + 1;
                    record.modified_ms = now_ms;
                    record.last_sync_ms = now_ms;
                    record.counts = commit.counts;
                    if let Some(created) = commit.created_secs {
                        record.created_secs = created;
                    }
                    collections.insert(user_id, encode(&record)?.as_slice())?;
                    Some(record)
                }
                _ => None,
            }
        };
        if record.is_some() {
            self.commit(tx)?;
        } else {
            tx.abort()?;
        }
        Ok(record)
    }
}

fn apply(
    tx: &WriteTransaction,
    generation: u64,
    usn: i32,
    commit: &SyncCommit,
) -> Result<(), StoreError> {
    if let Some(user_id) = commit.spilled_user {
        let spilled = take_spilled(tx, user_id)?;
        apply_rows(tx, generation, usn, &spilled)?;
    }
    apply_rows(tx, generation, usn, commit)?;
    apply_objects(tx, generation, usn, commit)
}

/// The staged rows of a user that outgrew memory, as a commit of rows only; removed from the
/// staging table in the same transaction.
fn take_spilled(tx: &WriteTransaction, user_id: u64) -> Result<SyncCommit, StoreError> {
    let mut table = tx.open_table(STAGED)?;
    let mut spilled = SyncCommit::default();
    let range = (user_id, 0u8, i64::MIN)..=(user_id, u8::MAX, i64::MAX);
    for entry in table.extract_from_if(range, |_, _| true)? {
        let (key, value) = entry?;
        let (_, _, id) = key.value();
        match decode::<SpilledRow>(value.value(), "staged", id)? {
            SpilledRow::Note { after, .. } => spilled.notes.push((id, after)),
            SpilledRow::Card { after, .. } => spilled.cards.push((id, after)),
            SpilledRow::Revlog(row) => spilled.revlog.push((id, row)),
        }
    }
    Ok(spilled)
}

fn apply_rows(
    tx: &WriteTransaction,
    generation: u64,
    usn: i32,
    commit: &SyncCommit,
) -> Result<(), StoreError> {
    let mut changes = tx.open_table(CHANGES)?;
    let mut reindex =
        |kind: RowKind, id: i64, old_usn: Option<i32>, exists: bool| -> Result<(), StoreError> {
            if let Some(old) = old_usn {
                changes.remove((generation, old, kind as u8, id))?;
            }
            if exists {
                changes.insert((generation, usn, kind as u8, id), ())?;
            }
            Ok(())
        };
    {
        let mut notes = tx.open_table(NOTES)?;
        for (id, row) in &commit.notes {
            let old = match row {
                Some(row) => notes.insert((generation, *id), encode_row(row)?.as_slice())?,
                None => notes.remove((generation, *id))?,
            };
            let old_usn = old
                .map(|v| decode_row::<NoteRow>(v.value(), "notes", *id).map(|n| n.usn))
                .transpose()?;
            reindex(RowKind::Note, *id, old_usn, row.is_some())?;
        }
        let mut cards = tx.open_table(CARDS)?;
        for (id, row) in &commit.cards {
            let old = match row {
                Some(row) => cards.insert((generation, *id), encode_row(row)?.as_slice())?,
                None => cards.remove((generation, *id))?,
            };
            let old_usn = old
                .map(|v| decode_row::<CardRow>(v.value(), "cards", *id).map(|c| c.usn))
                .transpose()?;
            reindex(RowKind::Card, *id, old_usn, row.is_some())?;
        }
        let mut revlog = tx.open_table(REVLOG)?;
        for (id, row) in &commit.revlog {
            if revlog.get((generation, *id))?.is_none() {
                revlog.insert((generation, *id), encode_row(row)?.as_slice())?;
                reindex(RowKind::Revlog, *id, None, true)?;
            }
        }
    }
    Ok(())
}

fn apply_objects(
    tx: &WriteTransaction,
    generation: u64,
    usn: i32,
    commit: &SyncCommit,
) -> Result<(), StoreError> {
    let mut objects = tx.open_table(OBJECTS)?;
    for (kind, key, object) in &commit.objects {
        match object {
            Some(object) => {
                objects.insert(
                    (generation, *kind as u8, key.as_str()),
                    encode(object)?.as_slice(),
                )?;
            }
            None => {
                objects.remove((generation, *kind as u8, key.as_str()))?;
            }
        }
    }
    if let Some(config) = &commit.config {
        let kind = ObjectKind::Config as u8;
        let old: Vec<String> = objects
            .range((generation, kind, "")..(generation, kind + 1, ""))?
            .map(|e| e.map(|(k, _)| k.value().2.to_string()))
            .collect::<Result<_, _>>()?;
        for key in &old {
            objects.remove((generation, kind, key.as_str()))?;
        }
        for (key, object) in config {
            objects.insert((generation, kind, key.as_str()), encode(object)?.as_slice())?;
        }
    }
    let mut graves = tx.open_table(GRAVES)?;
    for (kind, id) in &commit.graves {
        graves.insert((generation, usn, *kind, *id), ())?;
    }
    Ok(())
}
