//! `upload`: take a checked collection file into a new generation of the user's rows, batch
//! by batch, and make it live in one small transaction. Until that last commit nothing is
//! visible; if anything fails (or the collection quota would break) the generation is
//! abandoned and the old collection stays. `ingest` is also how `import` takes in the
//! official server's collection files.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use super::collection_file::{check_integrity, open_upload, ColRow};
use super::objects::{read_objects, LegacyObjects};
use super::FullSyncError;
use crate::quota::Exceeded;
use crate::store::{
    CardRow, CollectionRecord, Counts, NewGeneration, NoteRow, ObjectKind, ObjectRecord, RevlogRow,
    RowBatch, RowKind, SortField, Store,
};

/// Rows per write transaction: small enough that other users' `finish`es, which wait for the
/// write lock and then write the batch's pages with their own, wait little (about 1–3 ms of
/// work each; 10,000 rows held it 10–25 ms), large enough that the ingest as a whole takes
/// no longer (1.2–1.9 s at 100k notes either way, `cargo bench --bench full_sync`).
const BATCH_ROWS: usize = 2_500;
/// How often a long ingest logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The bare-string replies of `upload` (protocol.md §4.10): HTTP 200 in every case; the
/// client treats exactly `OK` as success and shows anything else to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadReply {
    Ok,
    TooLarge,
    Corrupt,
    /// The collection would take the user over the collection quota.
    OverQuota(Exceeded),
}

impl UploadReply {
    pub(crate) fn text(&self) -> String {
        match self {
            UploadReply::Ok => "OK".into(),
            UploadReply::TooLarge => "collection exceeds size limit".into(),
            UploadReply::Corrupt => {
                "Your upload was corrupt. Please use Check Database, or restore from backup.".into()
            }
            UploadReply::OverQuota(exceeded) => exceeded.collection_message(),
        }
    }
}

/// Which rows of an ingested collection go into the changes index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeIndex {
    /// Rows a client could still ask for: after a full upload every other device full-syncs,
    /// and this collection's own devices are at its usn, so older rows are never asked for.
    FromCollectionUsn,
    /// Every row: an imported collection keeps its schema time, so devices that synced with
    /// it at any earlier usn come back with normal syncs.
    All,
}

/// A collection taken in as a new generation that is not live yet.
#[derive(Debug)]
pub(crate) struct Ingested {
    pub generation: NewGeneration,
    /// The record to make live with it (its media usn is the user's current one).
    pub record: CollectionRecord,
}

/// Check the received file at `path` and make it the user's collection. A file we refuse is
/// an `UploadReply` the client shows (logged with the reason); only server faults are
/// errors. `quota` is the collection quota in bytes.
pub fn receive_upload(
    store: &Store,
    user_id: u64,
    path: &Path,
    keep_generations: usize,
    quota: Option<u64>,
    now_ms: i64,
) -> Result<UploadReply, FullSyncError> {
    let started = Instant::now();
    let refused = |reply: UploadReply, reason: &dyn std::fmt::Display| {
        tracing::warn!(user_id, "full upload refused: {reason}");
        Ok(reply)
    };
    let ingested = crate::bulk::run("ingest", || {
        ingest(
            store,
            user_id,
            path,
            ChangeIndex::FromCollectionUsn,
            quota,
            now_ms,
        )
    });
    let ingested = match ingested {
        Ok(ingested) => ingested,
        Err(FullSyncError::Corrupt(reason)) => return refused(UploadReply::Corrupt, &reason),
        Err(FullSyncError::OverQuota(exceeded)) => {
            let reply = UploadReply::OverQuota(exceeded);
            return refused(reply.clone(), &reply.text());
        }
        Err(e) => return Err(e),
    };
    let counts = ingested.record.counts;
    let generation = ingested.generation.id;
    activate(store, user_id, ingested, keep_generations)?;
    tracing::info!(
        user_id,
        generation,
        notes = counts.notes,
        cards = counts.cards,
        revlog = counts.revlog,
        secs = format_args!("{:.1}", started.elapsed().as_secs_f64()),
        "full upload stored"
    );
    Ok(UploadReply::Ok)
}

/// Take the collection file at `path` into a new generation of `user_id`'s rows, batch by
/// batch, without making it live. A file we cannot take is `FullSyncError::Corrupt`; one
/// that would break `quota` (bytes) is `FullSyncError::OverQuota`. Either way the
/// generation is abandoned and nothing is visible.
///
/// SQLite's integrity check runs on a second thread meanwhile (at this thread's priority):
/// a failed check stops the ingest at its next batch and is the answer whatever the ingest
/// did, so the outcome is the same as checking first, in less wall time.
pub(crate) fn ingest(
    store: &Store,
    user_id: u64,
    path: &Path,
    index: ChangeIndex,
    quota: Option<u64>,
    now_ms: i64,
) -> Result<Ingested, FullSyncError> {
    let failed = AtomicBool::new(false);
    let check = || {
        let checked = check_integrity(path);
        failed.store(checked.is_err(), Ordering::Relaxed);
        checked
    };
    std::thread::scope(|scope| {
        let beside = std::thread::Builder::new()
            .name("upload-check".into())
            .spawn_scoped(scope, check);
        let beside = match beside {
            Ok(handle) => Some(handle),
            // No thread to spare: check first, as the official server does.
            Err(_) => {
                check()?;
                None
            }
        };
        let ingested = ingest_checked_later(store, user_id, path, index, quota, now_ms, &failed);
        let checked = match beside {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Ok(()),
        };
        match (checked, ingested) {
            (Ok(()), ingested) => ingested,
            (Err(e), Ok(ingested)) => {
                store.abandon_generation(user_id, ingested.generation.id)?;
                Err(e)
            }
            (Err(e), Err(_)) => Err(e),
        }
    })
}

/// The ingest proper; `check_failed` turns true if the integrity check running beside it
/// fails, and then it stops.
fn ingest_checked_later(
    store: &Store,
    user_id: u64,
    path: &Path,
    index: ChangeIndex,
    quota: Option<u64>,
    now_ms: i64,
    check_failed: &AtomicBool,
) -> Result<Ingested, FullSyncError> {
    let started = Instant::now();
    let (conn, col) = open_upload(path)?;
    let objects =
        read_objects(&conn, col.version).map_err(|e| FullSyncError::Corrupt(e.to_string()))?;
    let current_bytes = match quota {
        Some(_) => store.collection_data_bytes(user_id)?,
        None => 0,
    };
    let index_from = match index {
        ChangeIndex::FromCollectionUsn => col.usn,
        ChangeIndex::All => i32::MIN,
    };
    let generation = store.begin_generation(user_id, index_from, now_ms)?;
    let mut ingest = Ingest {
        store,
        generation: generation.id,
        batch: RowBatch::default(),
        counts: Counts::default(),
        bytes: 0,
        quota,
        current_bytes,
        started,
        last_progress: started,
        user_id,
        index_from,
        check_failed,
    };
    if let Err(e) = ingest.run(&conn, objects) {
        store.abandon_generation(user_id, generation.id)?;
        return Err(e);
    }
    let record = collection_record(&col, ingest.counts, ingest.bytes);
    tracing::debug!(
        user_id,
        generation = generation.id,
        schema = col.version,
        "collection ingested"
    );
    Ok(Ingested { generation, record })
}

/// Make an ingested generation the user's collection; the one it replaces is kept as
/// `keep_generations` says.
pub(crate) fn activate(
    store: &Store,
    user_id: u64,
    ingested: Ingested,
    keep_generations: usize,
) -> Result<(), FullSyncError> {
    let Ingested { generation, record } = ingested;
    let activated = match store.activate_generation(user_id, generation, record, keep_generations) {
        Ok(activated) => activated,
        Err(e) => {
            // Best effort: if the disk still fails, it stays `building` and the next start
            // dooms it.
            let _ = store.abandon_generation(user_id, generation.id);
            return Err(e.into());
        }
    };
    if !activated {
        store.abandon_generation(user_id, generation.id)?;
        return Err(FullSyncError::UnknownUser);
    }
    Ok(())
}

fn collection_record(col: &ColRow, counts: Counts, data_bytes: u64) -> CollectionRecord {
    CollectionRecord {
        generation: 0, // set by activate_generation
        created_secs: col.created_secs,
        modified_ms: col.modified_ms,
        schema_ms: col.schema_ms,
        usn: col.usn,
        last_sync_ms: col.last_sync_ms,
        counts,
        media_usn: 0, // kept from the current record by activate_generation
        data_bytes: Some(data_bytes),
    }
}

struct Ingest<'a> {
    store: &'a Store,
    generation: u64,
    batch: RowBatch,
    counts: Counts,
    /// Bytes written so far (the collection quota's measure).
    bytes: u64,
    quota: Option<u64>,
    /// Bytes of the collection this one replaces: a smaller upload is never refused.
    current_bytes: u64,
    started: Instant,
    last_progress: Instant,
    user_id: u64,
    /// Rows with a usn at least this go into the changes index: a client that syncs with
    /// this collection has a usn at least the uploaded one, so older rows are never asked for.
    index_from: i32,
    /// Set when the integrity check running beside the ingest failed.
    check_failed: &'a AtomicBool,
}

impl Ingest<'_> {
    fn run(&mut self, conn: &Connection, objects: LegacyObjects) -> Result<(), FullSyncError> {
        self.objects(objects)?;
        self.table(
            conn,
            "SELECT id, guid, mid, mod, usn, tags, flds, sfld, csum, flags, data FROM notes",
            |ingest, row| {
                let note = NoteRow {
                    guid: text(row, 1)?,
                    mid: int(row, 2)?,
                    modified: int(row, 3)?,
                    usn: usn(row, 4)?,
                    tags: text(row, 5)?,
                    fields: text(row, 6)?,
                    sort_field: sort_field(row, 7)?,
                    checksum: int(row, 8)?,
                    flags: int(row, 9)?,
                    data: text(row, 10)?,
                };
                let id = int(row, 0)?;
                ingest.index(note.usn, RowKind::Note, id);
                ingest.batch.notes.push((id, note));
                ingest.counts.notes += 1;
                Ok(())
            },
        )?;
        self.table(
            conn,
            "SELECT id, nid, did, ord, mod, usn, type, queue, due, ivl, factor, reps, lapses, \
             left, odue, odid, flags, data FROM cards",
            |ingest, row| {
                let card = CardRow {
                    nid: int(row, 1)?,
                    did: int(row, 2)?,
                    ord: int(row, 3)?,
                    modified: int(row, 4)?,
                    usn: usn(row, 5)?,
                    ctype: int(row, 6)?,
                    queue: int(row, 7)?,
                    due: int(row, 8)?,
                    ivl: int(row, 9)?,
                    factor: int(row, 10)?,
                    reps: int(row, 11)?,
                    lapses: int(row, 12)?,
                    left: int(row, 13)?,
                    odue: int(row, 14)?,
                    odid: int(row, 15)?,
                    flags: int(row, 16)?,
                    data: text(row, 17)?,
                };
                let id = int(row, 0)?;
                ingest.index(card.usn, RowKind::Card, id);
                ingest.batch.cards.push((id, card));
                ingest.counts.cards += 1;
                Ok(())
            },
        )?;
        self.table(
            conn,
            "SELECT id, cid, usn, ease, ivl, lastIvl, factor, time, type FROM revlog",
            |ingest, row| {
                let review = RevlogRow {
                    cid: int(row, 1)?,
                    usn: usn(row, 2)?,
                    ease: int(row, 3)?,
                    ivl: int(row, 4)?,
                    last_ivl: int(row, 5)?,
                    factor: int(row, 6)?,
                    time: int(row, 7)?,
                    rtype: int(row, 8)?,
                };
                let id = int(row, 0)?;
                ingest.index(review.usn, RowKind::Revlog, id);
                ingest.batch.revlog.push((id, review));
                ingest.counts.revlog += 1;
                Ok(())
            },
        )?;
        self.table(conn, "SELECT usn, type, oid FROM graves", |ingest, row| {
            let kind = u8::try_from(int(row, 1)?)
                .ok()
                .filter(|k| *k <= 2)
                .ok_or_else(|| corrupt_row("graves", "type is not 0, 1 or 2"))?;
            ingest.batch.graves.push((usn(row, 0)?, kind, int(row, 2)?));
            ingest.counts.graves += 1;
            Ok(())
        })?;
        self.flush()
    }

    fn index(&mut self, usn: i32, kind: RowKind, id: i64) {
        if usn >= self.index_from {
            self.batch.changes.push((usn, kind as u8, id));
        }
    }

    fn objects(&mut self, objects: LegacyObjects) -> Result<(), FullSyncError> {
        self.counts.notetypes = objects.notetypes.len() as u64;
        self.counts.decks = objects.decks.len() as u64;
        self.counts.deck_configs = objects.deck_configs.len() as u64;
        for (kind, list) in [
            (ObjectKind::Notetype, objects.notetypes),
            (ObjectKind::Deck, objects.decks),
            (ObjectKind::DeckConfig, objects.deck_configs),
        ] {
            for (id, object) in list {
                // Uploads carry no pending changes (the client resets -1 to 0 first); a file
                // that still has some is normalised, as the official server would see them.
                let usn = object
                    .get("usn")
                    .and_then(serde_json::Value::as_i64)
                    .map_or(0, |u| i32::try_from(u.max(0)).unwrap_or(0));
                let json = serde_json::Value::Object(object).to_string();
                self.batch
                    .objects
                    .push((kind as u8, id.to_string(), ObjectRecord { usn, json }));
            }
        }
        for (tag, usn) in objects.tags {
            let record = ObjectRecord {
                usn: usn.max(0),
                json: String::new(),
            };
            self.batch
                .objects
                .push((ObjectKind::Tag as u8, tag, record));
        }
        for (key, value) in objects.config {
            let record = ObjectRecord {
                usn: 0,
                json: value.to_string(),
            };
            self.batch
                .objects
                .push((ObjectKind::Config as u8, key, record));
        }
        self.flush()
    }

    /// Read every row of one query, writing a batch whenever it is full.
    fn table(
        &mut self,
        conn: &Connection,
        sql: &str,
        mut take: impl FnMut(&mut Self, &Row<'_>) -> Result<(), FullSyncError>,
    ) -> Result<(), FullSyncError> {
        let mut statement = conn
            .prepare(sql)
            .map_err(|e| FullSyncError::Corrupt(format!("{sql}: {e}")))?;
        let mut rows = statement
            .query([])
            .map_err(|e| FullSyncError::Corrupt(format!("{sql}: {e}")))?;
        while let Some(row) = rows
            .next()
            .map_err(|e| FullSyncError::Corrupt(format!("reading rows: {e}")))?
        {
            take(self, row)?;
            if self.batch.len() >= BATCH_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FullSyncError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.check_failed.load(Ordering::Relaxed) {
            // The check's own error is the answer; this one only stops the work.
            return Err(FullSyncError::Corrupt("integrity check failed".into()));
        }
        self.bytes += self.store.write_batch(self.generation, &self.batch)?;
        self.batch = RowBatch::default();
        if crate::quota::breaks(self.quota, self.current_bytes, self.bytes) {
            // Stopped at the limit: what the whole file would need is not known.
            return Err(FullSyncError::OverQuota(Exceeded {
                limit: self.quota.unwrap_or(0),
                current: self.current_bytes,
                after: None,
            }));
        }
        tracing::debug!(
            user_id = self.user_id,
            generation = self.generation,
            "upload batch written"
        );
        test_hooks::after_batch();
        if self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = Instant::now();
            tracing::info!(
                user_id = self.user_id,
                notes = self.counts.notes,
                cards = self.counts.cards,
                revlog = self.counts.revlog,
                secs = self.started.elapsed().as_secs(),
                "full upload in progress"
            );
        }
        Ok(())
    }
}

/// Lets the end-to-end tests kill the server in the middle of an ingest, which is otherwise
/// too quick to hit. Compiled into debug builds only; release binaries have no such knob.
mod test_hooks {
    #[cfg(debug_assertions)]
    pub(super) fn after_batch() {
        static PAUSE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        let pause = PAUSE.get_or_init(|| {
            std::env::var("TEST_ANKISYNCD_INGEST_PAUSE_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
        });
        if let Some(ms) = pause {
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn after_batch() {}
}

fn corrupt_row(table: &str, reason: &str) -> FullSyncError {
    FullSyncError::Corrupt(format!("{table}: {reason}"))
}

/// An integer column. Old clients wrote some numbers as reals; they are truncated, as the
/// official code does when it reads them.
fn int(row: &Row<'_>, index: usize) -> Result<i64, FullSyncError> {
    match row.get_ref(index) {
        Ok(ValueRef::Integer(i)) => Ok(i),
        Ok(ValueRef::Real(f)) => Ok(f as i64),
        Ok(ValueRef::Null) => Ok(0),
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| {
                FullSyncError::Corrupt(format!("column {index}: text where a number belongs"))
            }),
        Ok(ValueRef::Blob(_)) => Err(FullSyncError::Corrupt(format!(
            "column {index}: blob where a number belongs"
        ))),
        Err(e) => Err(FullSyncError::Corrupt(format!("column {index}: {e}"))),
    }
}

/// A usn column; a pending change (-1) left in an upload is stored as 0, as the client's own
/// preparation for upload would have made it.
fn usn(row: &Row<'_>, index: usize) -> Result<i32, FullSyncError> {
    let value = int(row, index)?.max(0);
    i32::try_from(value).map_err(|_| FullSyncError::Corrupt(format!("usn {value} out of range")))
}

fn text(row: &Row<'_>, index: usize) -> Result<String, FullSyncError> {
    match row.get_ref(index) {
        Ok(ValueRef::Text(t)) => Ok(String::from_utf8_lossy(t).into_owned()),
        Ok(ValueRef::Null) => Ok(String::new()),
        Ok(ValueRef::Integer(i)) => Ok(i.to_string()),
        Ok(ValueRef::Real(f)) => Ok(f.to_string()),
        Ok(ValueRef::Blob(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Err(e) => Err(FullSyncError::Corrupt(format!("column {index}: {e}"))),
    }
}

fn sort_field(row: &Row<'_>, index: usize) -> Result<SortField, FullSyncError> {
    match row.get_ref(index) {
        Ok(ValueRef::Integer(i)) => Ok(SortField::Int(i)),
        Ok(ValueRef::Real(f)) => Ok(SortField::Real(f)),
        Ok(ValueRef::Null) => Ok(SortField::Text(String::new())),
        Ok(ValueRef::Text(t)) | Ok(ValueRef::Blob(t)) => {
            Ok(SortField::Text(String::from_utf8_lossy(t).into_owned()))
        }
        Err(e) => Err(FullSyncError::Corrupt(format!("column {index}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    /// A copy of the rich v11 fixture at `dir/name`.
    fn rich_copy(dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rich.v11.anki2");
        std::fs::copy(fixture, &path).unwrap();
        path
    }

    /// The rich fixture with one index redefined over another column: every row reads
    /// fine, only SQLite's integrity check sees that the index no longer matches its table.
    fn index_out_of_step(dir: &Path) -> std::path::PathBuf {
        let path = rich_copy(dir, "c.anki2");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_master SET sql = 'CREATE INDEX ix_notes_usn ON notes (mod)'
             WHERE name = 'ix_notes_usn';",
        )
        .unwrap();
        path
    }

    #[test]
    fn a_file_only_the_integrity_check_refuses_is_refused_and_leaves_nothing() {
        let (_dir, store) = temp_store();
        store.set_user("u", "h", 0).unwrap();
        let files = tempfile::tempdir().unwrap();
        let path = index_out_of_step(files.path());
        let (conn, _) = open_upload(&path).unwrap();
        drop(conn);
        assert!(matches!(
            check_integrity(&path),
            Err(FullSyncError::Corrupt(_))
        ));

        let before = store.collection(1).unwrap();
        let reply = receive_upload(&store, 1, &path, 1, None, 0).unwrap();
        assert_eq!(reply, UploadReply::Corrupt);
        assert_eq!(store.collection(1).unwrap(), before);
        // The rows the ingest wrote meanwhile belong to an abandoned generation.
        assert_eq!(store.doomed_generations().unwrap().len(), 1);

        // The same file, intact, goes in.
        let intact = rich_copy(files.path(), "intact.anki2");
        assert_eq!(
            receive_upload(&store, 1, &intact, 1, None, 0).unwrap(),
            UploadReply::Ok
        );
        assert_eq!(store.collection(1).unwrap().unwrap().counts.notes, 4);
    }
}
