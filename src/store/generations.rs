//! Generations: a full upload writes a complete new copy of a user's rows under a fresh
//! generation number, in short batches, then one small transaction makes it live. Readers
//! and other users' writers interleave with the batches; nobody ever sees a half-written
//! collection. Former generations are kept (`keep_generations`) so a mistaken upload can be
//! undone, and the rest are deleted later in batches by the janitor.

use redb::{ReadableTable, WriteTransaction};

use super::tables::{
    CardRow, CollectionRecord, GenerationRecord, GenerationState, NoteRow, ObjectRecord, RevlogRow,
    CARDS, CHANGES, COLLECTIONS, GENERATIONS, GRAVES, META, META_NEXT_GENERATION, NOTES, OBJECTS,
    REVLOG, USERS,
};
use super::{decode, encode, encode_row, Store, StoreError};

/// Rows for one write transaction of an upload.
#[derive(Debug, Default)]
pub struct RowBatch {
    pub notes: Vec<(i64, NoteRow)>,
    pub cards: Vec<(i64, CardRow)>,
    pub revlog: Vec<(i64, RevlogRow)>,
    /// (usn, kind, object id)
    pub graves: Vec<(i32, u8, i64)>,
    /// (kind, key, object)
    pub objects: Vec<(u8, String, ObjectRecord)>,
    /// Entries of the changes index: (usn, row kind, row id).
    pub changes: Vec<(i32, u8, i64)>,
}

impl RowBatch {
    pub fn len(&self) -> usize {
        self.notes.len()
            + self.cards.len()
            + self.revlog.len()
            + self.graves.len()
            + self.objects.len()
            + self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A generation a full upload is writing. Its batches are written without waiting for the
/// disk, so if the file is reopened after a disk fault meanwhile they may be gone: the
/// token remembers which opening of the file they went to, and activation refuses another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewGeneration {
    pub id: u64,
    epoch: u64,
}

/// What `restore_previous` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    NoSuchUser,
    NothingToRestore,
    /// The retained generation is live again; the one it replaced is retained in its place,
    /// so restoring twice undoes the restore.
    Restored {
        generation: u64,
        replaced: u64,
    },
}

impl Store {
    /// Allocate a generation for a full upload of `user_id`'s collection, whose rows with a
    /// usn of at least `indexed_from` go in the changes index.
    pub fn begin_generation(
        &self,
        user_id: u64,
        indexed_from: i32,
        now_ms: i64,
    ) -> Result<NewGeneration, StoreError> {
        let tx = self.write()?;
        let epoch = self.epoch();
        let generation = {
            let mut meta = tx.open_table(META)?;
            let generation = meta
                .get(META_NEXT_GENERATION)?
                .map(|v| v.value())
                .unwrap_or(1);
            meta.insert(META_NEXT_GENERATION, generation + 1)?;
            let record = GenerationRecord {
                state: GenerationState::Building,
                created_ms: now_ms,
                indexed_from,
                collection: None,
            };
            tx.open_table(GENERATIONS)?
                .insert((user_id, generation), encode(&record)?.as_slice())?;
            generation
        };
        self.commit(tx)?;
        Ok(NewGeneration {
            id: generation,
            epoch,
        })
    }

    /// Write one batch of a generation being built. Not durable on its own: only the commit
    /// that makes the generation live must survive a crash, and it makes these durable too.
    /// Returns the bytes the batch's rows and objects take (the collection quota's measure,
    /// see [`CollectionRecord::data_bytes`]).
    pub fn write_batch(&self, generation: u64, batch: &RowBatch) -> Result<u64, StoreError> {
        fn encode_all<T: serde::Serialize>(
            rows: &[(i64, T)],
        ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
            rows.iter()
                .map(|(id, row)| Ok((*id, encode_row(row)?)))
                .collect()
        }
        // Encoded before the write lock is taken: other users' `finish`es wait for the
        // lock, and encoding is a good part of a batch's work.
        let notes = encode_all(&batch.notes)?;
        let cards = encode_all(&batch.cards)?;
        let revlog = encode_all(&batch.revlog)?;
        let objects = batch
            .objects
            .iter()
            .map(|(kind, key, object)| Ok((*kind, key.as_str(), encode(object)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut tx = self.write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Redb(e.into()))?;
        let mut bytes = 0u64;
        {
            for (table, rows) in [(NOTES, &notes), (CARDS, &cards), (REVLOG, &revlog)] {
                let mut table = tx.open_table(table)?;
                for (id, value) in rows {
                    bytes += value.len() as u64;
                    table.insert((generation, *id), value.as_slice())?;
                }
            }
            let mut graves = tx.open_table(GRAVES)?;
            for (usn, kind, id) in &batch.graves {
                graves.insert((generation, *usn, *kind, *id), ())?;
            }
            let mut table = tx.open_table(OBJECTS)?;
            for (kind, key, value) in &objects {
                bytes += value.len() as u64;
                table.insert((generation, *kind, *key), value.as_slice())?;
            }
            let mut changes = tx.open_table(CHANGES)?;
            for (usn, kind, id) in &batch.changes {
                changes.insert((generation, *usn, *kind, *id), ())?;
            }
        }
        self.commit(tx)?;
        Ok(bytes)
    }

    /// Make a fully written generation the user's collection, durably, in one small
    /// transaction. The former live generation is retained; retained ones beyond `keep` are
    /// doomed. Returns false (and changes nothing) if the user was removed meanwhile; fails if
    /// the file was reopened since the generation began.
    pub fn activate_generation(
        &self,
        user_id: u64,
        generation: NewGeneration,
        mut record: CollectionRecord,
        keep: usize,
    ) -> Result<bool, StoreError> {
        let tx = self.write()?;
        if generation.epoch != self.epoch() {
            return Err(StoreError::Interrupted);
        }
        let generation = generation.id;
        let activated = {
            let mut collections = tx.open_table(COLLECTIONS)?;
            let current = super::collections::read_record(&collections, user_id)?;
            match current {
                None => false,
                Some(current) => {
                    // Media is not part of a collection upload.
                    record.media_usn = current.media_usn;
                    record.generation = generation;
                    collections.insert(user_id, encode(&record)?.as_slice())?;
                    drop(collections);
                    set_state(&tx, user_id, generation, GenerationState::Live, None)?;
                    retire(&tx, user_id, current, keep)?;
                    true
                }
            }
        };
        self.commit(tx)?;
        Ok(activated)
    }

    /// Make the user's collection empty, as a new user's is; the one it replaces is kept
    /// as after a full upload (`keep`), so `restore-previous` undoes this too. For an import
    /// that replaces a collection with none. Returns false if the user does not exist.
    pub fn reset_collection(
        &self,
        user_id: u64,
        now_ms: i64,
        keep: usize,
    ) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let reset = {
            let mut collections = tx.open_table(COLLECTIONS)?;
            match super::collections::read_record(&collections, user_id)? {
                None => false,
                Some(current) => {
                    let mut record = CollectionRecord::empty(now_ms);
                    record.media_usn = current.media_usn;
                    collections.insert(user_id, encode(&record)?.as_slice())?;
                    drop(collections);
                    retire(&tx, user_id, current, keep)?;
                    true
                }
            }
        };
        self.commit(tx)?;
        Ok(reset)
    }

    /// Swap the live generation with the newest retained one (`user restore-previous`).
    pub fn restore_previous(&self, name: &str, now_ms: i64) -> Result<RestoreOutcome, StoreError> {
        let tx = self.write()?;
        let outcome = {
            let users = tx.open_table(USERS)?;
            let user = users
                .get(name)?
                .map(|v| decode::<super::UserRecord>(v.value(), "users", name))
                .transpose()?;
            drop(users);
            match user {
                None => RestoreOutcome::NoSuchUser,
                Some(user) => {
                    let retained = newest_retained(&tx, user.id)?;
                    match retained {
                        None => RestoreOutcome::NothingToRestore,
                        Some((generation, record)) => {
                            let mut collections = tx.open_table(COLLECTIONS)?;
                            let current = collections
                                .get(user.id)?
                                .map(|v| {
                                    decode::<CollectionRecord>(v.value(), "collections", user.id)
                                })
                                .transpose()?
                                .unwrap_or_else(|| CollectionRecord::empty(now_ms));
                            let mut restored =
                                record.unwrap_or_else(|| CollectionRecord::empty(now_ms));
                            restored.generation = generation;
                            restored.media_usn = current.media_usn;
                            collections.insert(user.id, encode(&restored)?.as_slice())?;
                            drop(collections);
                            set_state(&tx, user.id, generation, GenerationState::Live, None)?;
                            set_state(
                                &tx,
                                user.id,
                                current.generation,
                                GenerationState::Retained,
                                Some(current.clone()),
                            )?;
                            RestoreOutcome::Restored {
                                generation,
                                replaced: current.generation,
                            }
                        }
                    }
                }
            }
        };
        self.commit(tx)?;
        Ok(outcome)
    }

    /// Doom generations an interrupted upload left behind. Run at startup, before serving.
    pub fn doom_unfinished(&self) -> Result<usize, StoreError> {
        let tx = self.write()?;
        let count = {
            let mut table = tx.open_table(GENERATIONS)?;
            let mut building = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let (user, generation) = key.value();
                let mut record: GenerationRecord =
                    decode(value.value(), "generations", generation)?;
                if record.state == GenerationState::Building {
                    record.state = GenerationState::Doomed;
                    building.push(((user, generation), record));
                }
            }
            for (key, record) in &building {
                table.insert(key, encode(record)?.as_slice())?;
            }
            building.len()
        };
        self.commit(tx)?;
        Ok(count)
    }

    /// Doom a generation whose upload failed (e.g. the ingest found bad data).
    pub fn abandon_generation(&self, user_id: u64, generation: u64) -> Result<(), StoreError> {
        let tx = self.write()?;
        set_state(&tx, user_id, generation, GenerationState::Doomed, None)?;
        self.commit(tx)?;
        Ok(())
    }

    /// (user id, generation) of every generation waiting for deletion.
    pub fn doomed_generations(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(GENERATIONS)?;
        let mut doomed = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let record: GenerationRecord = decode(value.value(), "generations", key.value().1)?;
            if record.state == GenerationState::Doomed {
                doomed.push(key.value());
            }
        }
        Ok(doomed)
    }

    /// Delete every doomed generation now, `batch` rows per transaction (offline
    /// maintenance; the running server's janitor does it in the background). Returns how
    /// many generations went.
    pub fn delete_doomed_generations(&self, batch: usize) -> Result<usize, StoreError> {
        let doomed = self.doomed_generations()?;
        for (user_id, generation) in &doomed {
            while !self.delete_generation_batch(*user_id, *generation, batch)? {}
        }
        Ok(doomed.len())
    }

    /// Delete up to `max_rows` rows of a doomed generation in one short transaction; when
    /// none are left, forget the generation. Returns true when it is gone.
    pub fn delete_generation_batch(
        &self,
        user_id: u64,
        generation: u64,
        max_rows: usize,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Redb(e.into()))?;
        let mut budget = max_rows;
        let done = {
            budget -= delete_some(&tx, NOTES, generation, budget)?;
            budget -= delete_some(&tx, CARDS, generation, budget)?;
            budget -= delete_some(&tx, REVLOG, generation, budget)?;
            for definition in [GRAVES, CHANGES] {
                let mut table = tx.open_table(definition)?;
                let keys: Vec<_> = table
                    .range(
                        (generation, i32::MIN, 0u8, i64::MIN)
                            ..=(generation, i32::MAX, u8::MAX, i64::MAX),
                    )?
                    .take(budget)
                    .map(|e| e.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for key in &keys {
                    table.remove(key)?;
                }
                budget -= keys.len();
            }
            let mut objects = tx.open_table(OBJECTS)?;
            let keys: Vec<(u8, String)> = objects
                .range((generation, 0u8, "")..(generation + 1, 0u8, ""))?
                .take(budget)
                .map(|e| e.map(|(k, _)| (k.value().1, k.value().2.to_string())))
                .collect::<Result<_, _>>()?;
            for (kind, key) in &keys {
                objects.remove((generation, *kind, key.as_str()))?;
            }
            budget -= keys.len();
            if budget > 0 {
                tx.open_table(GENERATIONS)?.remove((user_id, generation))?;
                true
            } else {
                false
            }
        };
        self.commit(tx)?;
        Ok(done)
    }
}

fn delete_some(
    tx: &WriteTransaction,
    table: redb::TableDefinition<(u64, i64), &[u8]>,
    generation: u64,
    budget: usize,
) -> Result<usize, StoreError> {
    if budget == 0 {
        return Ok(0);
    }
    let mut table = tx.open_table(table)?;
    let keys: Vec<i64> = table
        .range((generation, i64::MIN)..=(generation, i64::MAX))?
        .take(budget)
        .map(|e| e.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for id in &keys {
        table.remove((generation, *id))?;
    }
    Ok(keys.len())
}

fn set_state(
    tx: &WriteTransaction,
    user_id: u64,
    generation: u64,
    state: GenerationState,
    collection: Option<CollectionRecord>,
) -> Result<(), StoreError> {
    let mut table = tx.open_table(GENERATIONS)?;
    let existing = table
        .get((user_id, generation))?
        .map(|v| decode::<GenerationRecord>(v.value(), "generations", generation))
        .transpose()?;
    let Some(mut record) = existing else {
        return Ok(());
    };
    record.state = state;
    if collection.is_some() || state == GenerationState::Live {
        record.collection = collection;
    }
    table.insert((user_id, generation), encode(&record)?.as_slice())?;
    Ok(())
}

/// The user's retained generations, newest first.
fn retained(
    tx: &WriteTransaction,
    user_id: u64,
) -> Result<Vec<(u64, GenerationRecord)>, StoreError> {
    let table = tx.open_table(GENERATIONS)?;
    let mut found = Vec::new();
    for entry in table.range((user_id, 0)..=(user_id, u64::MAX))? {
        let (key, value) = entry?;
        let record: GenerationRecord = decode(value.value(), "generations", key.value().1)?;
        if record.state == GenerationState::Retained {
            found.push((key.value().1, record));
        }
    }
    found.sort_by(|a, b| b.1.created_ms.cmp(&a.1.created_ms).then(b.0.cmp(&a.0)));
    Ok(found)
}

fn newest_retained(
    tx: &WriteTransaction,
    user_id: u64,
) -> Result<Option<(u64, Option<CollectionRecord>)>, StoreError> {
    Ok(retained(tx, user_id)?
        .into_iter()
        .next()
        .map(|(generation, record)| (generation, record.collection)))
}

/// The collection `former` is no longer live: its generation is retained with its record
/// (for `restore-previous`), and retained ones beyond `keep` are doomed.
fn retire(
    tx: &WriteTransaction,
    user_id: u64,
    former: CollectionRecord,
    keep: usize,
) -> Result<(), StoreError> {
    if former.generation != 0 {
        let generation = former.generation;
        set_state(
            tx,
            user_id,
            generation,
            GenerationState::Retained,
            Some(former),
        )?;
    }
    doom_beyond(tx, user_id, keep)
}

fn doom_beyond(tx: &WriteTransaction, user_id: u64, keep: usize) -> Result<(), StoreError> {
    for (generation, _) in retained(tx, user_id)?.into_iter().skip(keep) {
        set_state(tx, user_id, generation, GenerationState::Doomed, None)?;
    }
    Ok(())
}

/// Doom every generation of a user (the user is being removed).
pub(super) fn doom_all(tx: &WriteTransaction, user_id: u64) -> Result<(), StoreError> {
    let generations: Vec<u64> = {
        let table = tx.open_table(GENERATIONS)?;
        table
            .range((user_id, 0)..=(user_id, u64::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?
    };
    for generation in generations {
        set_state(tx, user_id, generation, GenerationState::Doomed, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tables::ObjectKind;
    use super::super::temp_store;
    use super::*;

    use crate::store::fixture;

    fn upload(store: &Store, user: u64, text: &str, modified_ms: i64) -> u64 {
        let generation = store.begin_generation(user, 0, modified_ms).unwrap();
        let batch = RowBatch {
            notes: vec![(1, fixture::note(text, 0))],
            objects: vec![(
                ObjectKind::Tag as u8,
                text.to_string(),
                ObjectRecord {
                    usn: 0,
                    json: String::new(),
                },
            )],
            ..Default::default()
        };
        store.write_batch(generation.id, &batch).unwrap();
        let mut record = CollectionRecord::empty(0);
        record.modified_ms = modified_ms;
        assert!(store
            .activate_generation(user, generation, record, 1)
            .unwrap());
        generation.id
    }

    fn live_note(store: &Store, user: u64) -> String {
        let snapshot = store.snapshot().unwrap();
        let generation = snapshot.collection(user).unwrap().unwrap().generation;
        let notes: Vec<_> = snapshot
            .notes(generation)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        notes[0].1.fields.clone()
    }

    fn drain(store: &Store) -> usize {
        let doomed = store.doomed_generations().unwrap();
        for (user, generation) in &doomed {
            while !store
                .delete_generation_batch(*user, *generation, 1)
                .unwrap()
            {}
        }
        doomed.len()
    }

    #[test]
    fn uploads_replace_keep_one_and_restore_swaps() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        let first = upload(&store, 1, "first", 10);
        let second = upload(&store, 1, "second", 20);
        assert_eq!(live_note(&store, 1), "second");
        assert_eq!(drain(&store), 0, "the first is retained");

        let third = upload(&store, 1, "third", 30);
        assert_eq!(store.doomed_generations().unwrap(), vec![(1, first)]);
        assert_eq!(drain(&store), 1);
        let snapshot = store.snapshot().unwrap();
        assert_eq!(snapshot.notes(first).unwrap().count(), 0, "rows deleted");
        assert!(snapshot.objects(first, ObjectKind::Tag).unwrap().is_empty());

        let restored = store.restore_previous("a", 0).unwrap();
        assert_eq!(
            restored,
            RestoreOutcome::Restored {
                generation: second,
                replaced: third
            }
        );
        assert_eq!(live_note(&store, 1), "second");
        let record = store.collection(1).unwrap().unwrap();
        assert_eq!(
            record.modified_ms, 20,
            "the restored collection's own scalars"
        );
        store.restore_previous("a", 0).unwrap();
        assert_eq!(live_note(&store, 1), "third");
        assert_eq!(
            store.restore_previous("nobody", 0).unwrap(),
            RestoreOutcome::NoSuchUser
        );
    }

    #[test]
    fn an_interrupted_upload_is_invisible_and_doomed_at_startup() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        upload(&store, 1, "kept", 10);
        let generation = store.begin_generation(1, 0, 0).unwrap();
        store
            .write_batch(
                generation.id,
                &RowBatch {
                    notes: vec![(1, fixture::note("half", 0))],
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(live_note(&store, 1), "kept");
        assert_eq!(store.doom_unfinished().unwrap(), 1);
        assert_eq!(drain(&store), 1);
        assert_eq!(live_note(&store, 1), "kept");
        assert_eq!(
            store.restore_previous("a", 0).unwrap(),
            RestoreOutcome::NothingToRestore
        );
    }

    #[test]
    fn removing_a_user_dooms_their_generations() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        store.set_user("b", "h", 0).unwrap();
        upload(&store, 1, "a1", 1);
        upload(&store, 1, "a2", 2);
        upload(&store, 2, "b1", 1);
        store.remove_user("a").unwrap();
        assert_eq!(drain(&store), 2);
        assert_eq!(live_note(&store, 2), "b1");
        // Activation for a removed user changes nothing.
        let generation = store.begin_generation(1, 0, 0).unwrap();
        assert!(!store
            .activate_generation(1, generation, CollectionRecord::empty(0), 1)
            .unwrap());
    }
}
