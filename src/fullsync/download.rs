//! `download`: write the user's collection as a SQLite file from one redb snapshot, and keep
//! it for the next device until the collection changes.
//!
//! The file is in the layout the client's sync version reads as it is, as the official server
//! sends it (protocol.md §1): schema 11 for legacy clients (v10 and older), schema 18 for
//! current ones (v11). Current clients could upgrade a schema-11 file, but that cost them
//! 0.37 s on a 100k-note collection at every full download (benches/README.md). The
//! end-to-end tests compare every row and object after a download by both kinds of client.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use rusqlite::{params, Connection};

use super::schema18_file::write_schema18;
use super::{FullSyncError, Scratch};
use crate::store::{CollectionRecord, ObjectKind, Snapshot, SortField, Store};

/// A built collection file, open for sending: as it is (legacy clients) and zstd-compressed
/// (current clients), so a cached download costs a file copy, not a compression
/// (benches/README.md, cached full download).
#[derive(Debug)]
pub struct Download {
    pub file: File,
    pub len: u64,
    pub compressed: File,
}

/// zstd level of the cached compressed copy: the fastest, since the first device to download
/// waits for it.
const CACHE_ZSTD_LEVEL: i32 = 1;

/// The tables both layouts share, as the legacy layout declares them (collection.md §2.1);
/// schema 18 only changes `graves`.
pub(super) const CORE_TABLES: &str = "
CREATE TABLE col (id integer PRIMARY KEY, crt integer NOT NULL, mod integer NOT NULL,
  scm integer NOT NULL, ver integer NOT NULL, dty integer NOT NULL, usn integer NOT NULL,
  ls integer NOT NULL, conf text NOT NULL, models text NOT NULL, decks text NOT NULL,
  dconf text NOT NULL, tags text NOT NULL);
CREATE TABLE notes (id integer PRIMARY KEY, guid text NOT NULL, mid integer NOT NULL,
  mod integer NOT NULL, usn integer NOT NULL, tags text NOT NULL, flds text NOT NULL,
  sfld integer NOT NULL, csum integer NOT NULL, flags integer NOT NULL, data text NOT NULL);
CREATE TABLE cards (id integer PRIMARY KEY, nid integer NOT NULL, did integer NOT NULL,
  ord integer NOT NULL, mod integer NOT NULL, usn integer NOT NULL, type integer NOT NULL,
  queue integer NOT NULL, due integer NOT NULL, ivl integer NOT NULL, factor integer NOT NULL,
  reps integer NOT NULL, lapses integer NOT NULL, left integer NOT NULL, odue integer NOT NULL,
  odid integer NOT NULL, flags integer NOT NULL, data text NOT NULL);
CREATE TABLE revlog (id integer PRIMARY KEY, cid integer NOT NULL, usn integer NOT NULL,
  ease integer NOT NULL, ivl integer NOT NULL, lastIvl integer NOT NULL, factor integer NOT NULL,
  time integer NOT NULL, type integer NOT NULL);
";

/// The legacy `graves` table: no key, `usn` first.
const GRAVES_11: &str =
    "CREATE TABLE graves (usn integer NOT NULL, oid integer NOT NULL, type integer NOT NULL);";

/// Indexes are built after the rows are in: one sort instead of a b-tree update per row.
pub(super) const SCHEMA_11_INDEXES: &str = "
CREATE INDEX ix_notes_usn ON notes (usn);
CREATE INDEX ix_cards_usn ON cards (usn);
CREATE INDEX ix_revlog_usn ON revlog (usn);
CREATE INDEX ix_cards_nid ON cards (nid);
CREATE INDEX ix_cards_sched ON cards (did, queue, due);
CREATE INDEX ix_revlog_cid ON revlog (cid);
CREATE INDEX ix_notes_csum ON notes (csum);
";

/// The collection layout of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadSchema {
    V11,
    V18,
}

impl DownloadSchema {
    /// What a client of this sync version reads without converting.
    pub fn for_sync_version(version: u8) -> Self {
        if version >= 11 {
            DownloadSchema::V18
        } else {
            DownloadSchema::V11
        }
    }

    fn number(self) -> u8 {
        match self {
            DownloadSchema::V11 => 11,
            DownloadSchema::V18 => 18,
        }
    }
}

/// The collection file for `user_id` as it is now, in `schema`: from the cache when nothing
/// changed since it was built, else built from one snapshot.
pub fn prepare_download(
    store: &Store,
    scratch: &Scratch,
    user_id: u64,
    schema: DownloadSchema,
) -> Result<Download, FullSyncError> {
    let snapshot = store.snapshot()?;
    let record = snapshot
        .collection(user_id)?
        .ok_or(FullSyncError::UnknownUser)?;
    if record.generation == 0 {
        return Err(FullSyncError::NothingToDownload);
    }
    let version = (record.generation, record.usn, record.modified_ms);
    let cached = scratch.download_path(user_id, version, schema.number());
    let compressed = compressed_path(&cached);
    if let Some(download) = open(&cached, &compressed)? {
        tracing::debug!(
            user_id,
            bytes = download.len,
            "full download from the cache"
        );
        return Ok(download);
    }
    // Older versions are useless now; this version in the other layout may still be asked for.
    scratch.drop_downloads_but(user_id, version);
    let started = Instant::now();
    let building = scratch.build_file(user_id);
    match schema {
        DownloadSchema::V11 => build(&snapshot, &record, building.path())?,
        DownloadSchema::V18 => write_schema18(&snapshot, &record, building.path())?,
    }
    // The compressed copy goes into place first: a raw file in the cache always has its
    // compressed twin.
    let zst = scratch.build_file(user_id);
    compress(building.path(), zst.path())?;
    std::fs::rename(zst.path(), &compressed).map_err(|e| FullSyncError::scratch(&compressed, e))?;
    std::fs::rename(building.path(), &cached).map_err(|e| FullSyncError::scratch(&cached, e))?;
    let download = open(&cached, &compressed)?.ok_or_else(|| {
        FullSyncError::scratch(&cached, std::io::Error::other("vanished after building"))
    })?;
    tracing::info!(
        user_id,
        notes = record.counts.notes,
        cards = record.counts.cards,
        bytes = download.len,
        schema = schema.number(),
        secs = format_args!("{:.1}", started.elapsed().as_secs_f64()),
        "full download built"
    );
    Ok(download)
}

fn compressed_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".zst");
    name.into()
}

fn open(path: &Path, compressed: &Path) -> Result<Option<Download>, FullSyncError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FullSyncError::scratch(path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| FullSyncError::scratch(path, e))?
        .len();
    let compressed = File::open(compressed).map_err(|e| FullSyncError::scratch(compressed, e))?;
    Ok(Some(Download {
        file,
        len,
        compressed,
    }))
}

fn compress(raw: &Path, dest: &Path) -> Result<(), FullSyncError> {
    let input = File::open(raw).map_err(|e| FullSyncError::scratch(raw, e))?;
    let output = File::create(dest).map_err(|e| FullSyncError::scratch(dest, e))?;
    zstd::stream::copy_encode(
        std::io::BufReader::with_capacity(256 * 1024, input),
        std::io::BufWriter::with_capacity(256 * 1024, output),
        CACHE_ZSTD_LEVEL,
    )
    .map_err(|e| FullSyncError::scratch(dest, e))
}

/// Write the collection into a new schema-11 SQLite file at `path`: one transaction, no
/// journal (the file is scratch until renamed), prepared statements.
fn build(snapshot: &Snapshot, record: &CollectionRecord, path: &Path) -> Result<(), FullSyncError> {
    let generation = record.generation;
    let mut conn = create_file(path)?;
    let tx = conn.transaction()?;
    tx.execute_batch(CORE_TABLES)?;
    tx.execute_batch(GRAVES_11)?;
    let legacy = LegacyJson {
        config: keyed_json(snapshot, generation, ObjectKind::Config)?,
        notetypes: keyed_json(snapshot, generation, ObjectKind::Notetype)?,
        decks: keyed_json(snapshot, generation, ObjectKind::Deck)?,
        deck_configs: keyed_json(snapshot, generation, ObjectKind::DeckConfig)?,
        tags: tags_json(snapshot, generation)?,
    };
    insert_col(&tx, record, 11, &legacy)?;
    insert_rows(&tx, snapshot, generation)?;
    {
        let mut insert = tx.prepare("INSERT INTO graves VALUES (?1, ?2, ?3)")?;
        for (usn, kind, id) in snapshot.graves(generation)? {
            insert.execute(params![usn, id, kind])?;
        }
    }
    tx.execute_batch(SCHEMA_11_INDEXES)?;
    tx.commit()?;
    // A plain rollback-journal file, complete on its own, as the legacy layout expects.
    conn.execute_batch("PRAGMA journal_mode = DELETE;")?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// A new SQLite file for a collection being written: the page size clients use, and no
/// journal or syncing while it is built (it is scratch until renamed or closed).
/// The JSON columns of `col` that schema 11 fills and schema 18 leaves empty.
#[derive(Default)]
pub(super) struct LegacyJson {
    pub config: String,
    pub notetypes: String,
    pub decks: String,
    pub deck_configs: String,
    pub tags: String,
}

/// The one `col` row of a collection file of schema `version`.
pub(super) fn insert_col(
    tx: &rusqlite::Transaction<'_>,
    record: &CollectionRecord,
    version: u8,
    legacy: &LegacyJson,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO col VALUES (1, ?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            record.created_secs,
            record.modified_ms,
            record.schema_ms,
            version,
            record.usn,
            record.last_sync_ms,
            legacy.config,
            legacy.notetypes,
            legacy.decks,
            legacy.deck_configs,
            legacy.tags,
        ],
    )?;
    Ok(())
}

pub(super) fn create_file(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;",
    )?;
    Ok(conn)
}

/// Notes, cards and reviews of a generation into the tables of [`CORE_TABLES`], in id order.
pub(super) fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    snapshot: &Snapshot,
    generation: u64,
) -> Result<(), FullSyncError> {
    let mut insert =
        tx.prepare("INSERT INTO notes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")?;
    for entry in snapshot.notes(generation)? {
        let (id, n) = entry?;
        let sort_field: rusqlite::types::Value = match n.sort_field {
            SortField::Int(i) => i.into(),
            SortField::Real(f) => f.into(),
            SortField::Text(t) => t.into(),
        };
        insert.execute(params![
            id, n.guid, n.mid, n.modified, n.usn, n.tags, n.fields, sort_field, n.checksum,
            n.flags, n.data
        ])?;
    }
    let mut insert = tx.prepare(
        "INSERT INTO cards VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
         ?14, ?15, ?16, ?17, ?18)",
    )?;
    for entry in snapshot.cards(generation)? {
        let (id, c) = entry?;
        insert.execute(params![
            id, c.nid, c.did, c.ord, c.modified, c.usn, c.ctype, c.queue, c.due, c.ivl, c.factor,
            c.reps, c.lapses, c.left, c.odue, c.odid, c.flags, c.data
        ])?;
    }
    let mut insert =
        tx.prepare("INSERT INTO revlog VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?;
    for entry in snapshot.revlog(generation)? {
        let (id, r) = entry?;
        insert.execute(params![
            id, r.cid, r.usn, r.ease, r.ivl, r.last_ivl, r.factor, r.time, r.rtype
        ])?;
    }
    Ok(())
}

/// `{"<key>": <stored JSON>, ...}` for notetypes, decks, deck configs or config: the stored
/// JSON is already valid JSON text, so it is spliced in rather than parsed again.
fn keyed_json(
    snapshot: &Snapshot,
    generation: u64,
    kind: ObjectKind,
) -> Result<String, FullSyncError> {
    let objects = snapshot.objects(generation, kind)?;
    let mut out = String::with_capacity(
        2 + objects
            .iter()
            .map(|(k, o)| k.len() + o.json.len() + 4)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (key, object)) in objects.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(key.as_str()).to_string());
        out.push(':');
        out.push_str(if object.json.is_empty() {
            "null"
        } else {
            &object.json
        });
    }
    out.push('}');
    Ok(out)
}

/// `{"tag": usn, ...}`
fn tags_json(snapshot: &Snapshot, generation: u64) -> Result<String, FullSyncError> {
    let map: serde_json::Map<String, serde_json::Value> = snapshot
        .objects(generation, ObjectKind::Tag)?
        .into_iter()
        .map(|(name, object)| (name, object.usn.into()))
        .collect();
    Ok(serde_json::Value::Object(map).to_string())
}
