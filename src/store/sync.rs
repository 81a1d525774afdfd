//! What a normal sync reads and writes. Reads go through a [`Snapshot`] (each request of a
//! sync reads the live state as it is, which no other device can change while the user's
//! actor runs this sync); the client's changes are written by [`Store::commit_sync`] in ONE
//! durable transaction at `finish`, together with the usn step, so a sync is all or nothing.

use redb::{ReadableTable, WriteTransaction};

use super::staging::Spill;
use super::tables::{
    CardRow, CollectionRecord, Counts, NoteRow, ObjectKind, ObjectRecord, RevlogRow, RowKind,
    SpilledRow, CARDS, CHANGES, COLLECTIONS, GRAVES, NOTES, OBJECTS, REVLOG, STAGED,
};
use super::{decode, decode_row, encode, encode_row, Snapshot, Store, StoreError};
use crate::quota::Exceeded;

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
    /// Rows of this sync staged in the database (see `staging`): they are applied first,
    /// then the rows above, which are newer.
    pub spilled: Option<Spill>,
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

    /// Whether more than `limit` rows changed at usn `since` or later (reads at most
    /// `limit + 1` index entries).
    pub fn changed_rows_exceed(
        &self,
        generation: u64,
        since: i32,
        limit: usize,
    ) -> Result<bool, StoreError> {
        self.usn_range_exceeds(CHANGES, generation, since, limit)
    }

    /// Whether more than `limit` graves were recorded at usn `since` or later.
    pub fn graves_exceed(
        &self,
        generation: u64,
        since: i32,
        limit: usize,
    ) -> Result<bool, StoreError> {
        self.usn_range_exceeds(GRAVES, generation, since, limit)
    }

    /// Whether `table`, keyed (generation, usn, kind, id), holds more than `limit` entries
    /// of `generation` at usn `since` or later.
    fn usn_range_exceeds(
        &self,
        table: redb::TableDefinition<(u64, i32, u8, i64), ()>,
        generation: u64,
        since: i32,
        limit: usize,
    ) -> Result<bool, StoreError> {
        let table = self.tx().open_table(table)?;
        let range = table.range(
            (generation, since, 0u8, i64::MIN)..=(generation, i32::MAX, u8::MAX, i64::MAX),
        )?;
        Ok(range.take(limit + 1).count() > limit)
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

/// What `commit_sync` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The sync is stored; the collection record as it is now.
    Committed(CollectionRecord),
    /// Nothing was stored: the collection is no longer the one the sync started from
    /// (another device replaced it or finished a sync meanwhile).
    Conflict,
    /// Nothing was stored: the sync would take the collection over its quota.
    OverQuota(Exceeded),
}

/// One normal sync's `finish`, as the commit queue takes it.
#[derive(Debug)]
pub(super) struct SyncFinish {
    pub user_id: u64,
    /// The collection the sync started from: its generation and usn.
    pub generation: u64,
    pub server_usn: i32,
    pub commit: SyncCommit,
    /// The collection quota, bytes.
    pub limit: Option<u64>,
    pub now_ms: i64,
}

impl Store {
    /// Apply a normal sync's changes and step the usn, durably, in one transaction. Nothing
    /// is stored if the collection is no longer the one the sync started from, or if the
    /// result would break the collection quota `limit` (bytes, see
    /// [`CollectionRecord::data_bytes`]). Syncs of other users finishing at the same moment
    /// may share the transaction (see [`super::commit_queue`]).
    pub fn commit_sync(
        &self,
        user_id: u64,
        generation: u64,
        server_usn: i32,
        commit: SyncCommit,
        limit: Option<u64>,
        now_ms: i64,
    ) -> Result<CommitOutcome, StoreError> {
        self.commit_queue.commit(
            self,
            SyncFinish {
                user_id,
                generation,
                server_usn,
                commit,
                limit,
                now_ms,
            },
        )
    }

    /// Write one sync into `tx`. Conflict writes nothing; an error or `OverQuota` may have
    /// written part of it, so the caller must then abort `tx`.
    pub(super) fn apply_finish(
        &self,
        tx: &WriteTransaction,
        finish: &SyncFinish,
    ) -> Result<CommitOutcome, StoreError> {
        let SyncFinish {
            user_id,
            generation,
            server_usn,
            ref commit,
            limit,
            now_ms,
        } = *finish;
        if commit
            .spilled
            .is_some_and(|spill| spill.epoch != self.epoch())
        {
            return Err(StoreError::Interrupted);
        }
        let mut collections = tx.open_table(COLLECTIONS)?;
        let current = super::collections::read_record(&collections, user_id)?;
        let Some(mut record) =
            current.filter(|record| record.generation == generation && record.usn == server_usn)
        else {
            return Ok(CommitOutcome::Conflict);
        };
        let before = match record.data_bytes {
            None if limit.is_some() => Some(count_data_bytes(tx, generation)?),
            known => known,
        };
        let delta = apply(tx, generation, server_usn, commit)?;
        let after = before.map(|bytes| bytes.saturating_add_signed(delta));
        if let (Some(before), Some(after)) = (before, after) {
            if crate::quota::breaks(limit, before, after) {
                return Ok(CommitOutcome::OverQuota(Exceeded {
                    limit: limit.unwrap_or(0),
                    current: before,
                    after: Some(after),
                }));
            }
        }
        record.usn = server_usn + 1;
        record.modified_ms = now_ms;
        record.last_sync_ms = now_ms;
        record.counts = commit.counts;
        record.data_bytes = after;
        if let Some(created) = commit.created_secs {
            record.created_secs = created;
        }
        collections.insert(user_id, encode(&record)?.as_slice())?;
        Ok(CommitOutcome::Committed(record))
    }
}

/// Apply the commit; returns how many bytes the stored rows and objects grew (or shrank).
fn apply(
    tx: &WriteTransaction,
    generation: u64,
    usn: i32,
    commit: &SyncCommit,
) -> Result<i64, StoreError> {
    let mut delta = 0;
    if let Some(spill) = commit.spilled {
        let spilled = take_spilled(tx, spill.user_id)?;
        delta += apply_rows(tx, generation, usn, &spilled)?;
    }
    delta += apply_rows(tx, generation, usn, commit)?;
    delta += apply_objects(tx, generation, usn, commit)?;
    Ok(delta)
}

/// Bytes a value takes: the collection quota's unit.
fn size(value: &[u8]) -> i64 {
    i64::try_from(value.len()).unwrap_or(i64::MAX)
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
) -> Result<i64, StoreError> {
    let mut delta = 0;
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
                Some(row) => {
                    let value = encode_row(row)?;
                    delta += size(&value);
                    notes.insert((generation, *id), value.as_slice())?
                }
                None => notes.remove((generation, *id))?,
            };
            let old_usn = old
                .map(|v| {
                    delta -= size(v.value());
                    decode_row::<NoteRow>(v.value(), "notes", *id).map(|n| n.usn)
                })
                .transpose()?;
            reindex(RowKind::Note, *id, old_usn, row.is_some())?;
        }
        let mut cards = tx.open_table(CARDS)?;
        for (id, row) in &commit.cards {
            let old = match row {
                Some(row) => {
                    let value = encode_row(row)?;
                    delta += size(&value);
                    cards.insert((generation, *id), value.as_slice())?
                }
                None => cards.remove((generation, *id))?,
            };
            let old_usn = old
                .map(|v| {
                    delta -= size(v.value());
                    decode_row::<CardRow>(v.value(), "cards", *id).map(|c| c.usn)
                })
                .transpose()?;
            reindex(RowKind::Card, *id, old_usn, row.is_some())?;
        }
        let mut revlog = tx.open_table(REVLOG)?;
        for (id, row) in &commit.revlog {
            if revlog.get((generation, *id))?.is_none() {
                let value = encode_row(row)?;
                delta += size(&value);
                revlog.insert((generation, *id), value.as_slice())?;
                reindex(RowKind::Revlog, *id, None, true)?;
            }
        }
    }
    Ok(delta)
}

fn apply_objects(
    tx: &WriteTransaction,
    generation: u64,
    usn: i32,
    commit: &SyncCommit,
) -> Result<i64, StoreError> {
    let mut delta = 0;
    let mut objects = tx.open_table(OBJECTS)?;
    for (kind, key, object) in &commit.objects {
        let old = match object {
            Some(object) => {
                let value = encode(object)?;
                delta += size(&value);
                objects.insert((generation, *kind as u8, key.as_str()), value.as_slice())?
            }
            None => objects.remove((generation, *kind as u8, key.as_str()))?,
        };
        if let Some(old) = old {
            delta -= size(old.value());
        }
    }
    if let Some(config) = &commit.config {
        let kind = ObjectKind::Config as u8;
        let old: Vec<String> = objects
            .range((generation, kind, "")..(generation, kind + 1, ""))?
            .map(|e| e.map(|(k, _)| k.value().2.to_string()))
            .collect::<Result<_, _>>()?;
        for key in &old {
            if let Some(old) = objects.remove((generation, kind, key.as_str()))? {
                delta -= size(old.value());
            }
        }
        for (key, object) in config {
            let value = encode(object)?;
            delta += size(&value);
            objects.insert((generation, kind, key.as_str()), value.as_slice())?;
        }
    }
    let mut graves = tx.open_table(GRAVES)?;
    for (kind, id) in &commit.graves {
        graves.insert((generation, usn, *kind, *id), ())?;
    }
    Ok(delta)
}

/// Bytes of a generation's rows and objects, counted by reading them all: for a collection
/// record stored before the count was kept.
pub(super) fn count_data_bytes(tx: &WriteTransaction, generation: u64) -> Result<u64, StoreError> {
    let mut bytes = 0u64;
    for definition in [NOTES, CARDS, REVLOG] {
        let table = tx.open_table(definition)?;
        for entry in table.range((generation, i64::MIN)..=(generation, i64::MAX))? {
            bytes += entry?.1.value().len() as u64;
        }
    }
    let objects = tx.open_table(OBJECTS)?;
    for entry in objects.range((generation, 0u8, "")..(generation + 1, 0u8, ""))? {
        bytes += entry?.1.value().len() as u64;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::super::{temp_store, RowBatch};
    use super::*;

    use crate::store::fixture;

    fn object(json: &str) -> ObjectRecord {
        ObjectRecord {
            usn: 0,
            json: json.into(),
        }
    }

    /// A user with an uploaded collection of two notes and a config entry.
    fn uploaded() -> (tempfile::TempDir, Store, u64) {
        let (dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        let generation = store.begin_generation(1, 0, 0).unwrap();
        let batch = RowBatch {
            notes: vec![(1, fixture::note("one", 0)), (2, fixture::note("two", 0))],
            objects: vec![(ObjectKind::Config as u8, "k".into(), object("1"))],
            ..Default::default()
        };
        let bytes = store.write_batch(generation.id, &batch).unwrap();
        let mut record = CollectionRecord::empty(0);
        record.data_bytes = Some(bytes);
        assert!(store.activate_generation(1, generation, record, 1).unwrap());
        (dir, store, generation.id)
    }

    fn recount(store: &Store, generation: u64) -> u64 {
        let tx = store.write().unwrap();
        count_data_bytes(&tx, generation).unwrap()
    }

    fn growing_sync() -> SyncCommit {
        SyncCommit {
            notes: vec![
                (1, Some(fixture::note(&"longer ".repeat(50), 0))),
                (2, None),
            ],
            revlog: vec![(
                5,
                RevlogRow {
                    cid: 1,
                    usn: 0,
                    ease: 3,
                    ivl: 1,
                    last_ivl: 0,
                    factor: 2500,
                    time: 100,
                    rtype: 0,
                },
            )],
            objects: vec![(ObjectKind::Tag, "t".into(), Some(object("")))],
            config: Some(vec![("k".into(), object("\"a longer value\""))]),
            ..Default::default()
        }
    }

    #[test]
    fn the_byte_count_follows_every_change_of_a_sync() {
        let (_dir, store, generation) = uploaded();
        assert_eq!(
            store.collection_data_bytes(1).unwrap(),
            recount(&store, generation)
        );
        let outcome = store
            .commit_sync(1, generation, 0, growing_sync(), None, 5)
            .unwrap();
        let CommitOutcome::Committed(record) = outcome else {
            panic!("not committed: {outcome:?}")
        };
        assert_eq!(record.data_bytes, Some(recount(&store, generation)));
    }

    #[test]
    fn a_sync_over_the_quota_stores_nothing() {
        let (_dir, store, generation) = uploaded();
        let before = store.collection(1).unwrap().unwrap();
        let current = before.data_bytes.unwrap();
        let outcome = store
            .commit_sync(1, generation, 0, growing_sync(), Some(current + 10), 5)
            .unwrap();
        let CommitOutcome::OverQuota(exceeded) = outcome else {
            panic!("not refused: {outcome:?}")
        };
        assert_eq!(exceeded.current, current);
        assert!(exceeded.after.unwrap() > current + 10);
        assert_eq!(store.collection(1).unwrap().unwrap(), before);
        assert_eq!(recount(&store, generation), current, "no row changed");
        let snapshot = store.snapshot().unwrap();
        assert_eq!(
            snapshot.note(generation, 2).unwrap(),
            Some(fixture::note("two", 0))
        );
    }

    #[test]
    fn an_uncounted_collection_is_counted_when_a_quota_needs_it() {
        let (_dir, store, generation) = uploaded();
        let mut record = store.collection(1).unwrap().unwrap();
        let counted = record.data_bytes.take();
        let tx = store.write().unwrap();
        tx.open_table(COLLECTIONS)
            .unwrap()
            .insert(1, encode(&record).unwrap().as_slice())
            .unwrap();
        tx.commit().unwrap();
        let outcome = store
            .commit_sync(1, generation, 0, SyncCommit::default(), Some(u64::MAX), 5)
            .unwrap();
        let CommitOutcome::Committed(record) = outcome else {
            panic!("not committed: {outcome:?}")
        };
        assert_eq!(record.data_bytes, counted);
    }
}
