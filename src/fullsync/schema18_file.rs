//! A user's collection as a schema-18 SQLite file, the layout the official server keeps in
//! its data folder (`export`). Downloads use schema 11 (`download`); this file must be what
//! the official server opens as its own, so notetypes, decks and deck configs go into their
//! tables as protobuf blobs (`objects::to_schema18`), with the `unicase` collation.
//!
//! Deterministic: the same collection gives the same bytes (rows in key order, one
//! transaction, no timestamps of its own), so an export can be compared byte for byte.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::params;
use unicase::UniCase;

use super::download::{
    create_file, insert_col, insert_rows, LegacyJson, CORE_TABLES, SCHEMA_11_INDEXES,
};
use super::objects::{deck_config_row, deck_row, notetype_rows, register_unicase, JsonObject};
use super::FullSyncError;
use crate::store::{CollectionRecord, ObjectKind, ObjectRecord, Snapshot};

/// The tables schema 18 adds or rebuilds (collection.md §3.1–3.2).
const SCHEMA_18_TABLES: &str = "
CREATE TABLE graves (oid integer NOT NULL, type integer NOT NULL, usn integer NOT NULL,
  PRIMARY KEY (oid, type)) WITHOUT ROWID;
CREATE TABLE deck_config (id integer PRIMARY KEY NOT NULL, name text NOT NULL COLLATE unicase,
  mtime_secs integer NOT NULL, usn integer NOT NULL, config blob NOT NULL);
CREATE TABLE config (KEY text NOT NULL PRIMARY KEY, usn integer NOT NULL,
  mtime_secs integer NOT NULL, val blob NOT NULL) WITHOUT ROWID;
CREATE TABLE fields (ntid integer NOT NULL, ord integer NOT NULL,
  name text NOT NULL COLLATE unicase, config blob NOT NULL, PRIMARY KEY (ntid, ord))
  WITHOUT ROWID;
CREATE TABLE templates (ntid integer NOT NULL, ord integer NOT NULL,
  name text NOT NULL COLLATE unicase, mtime_secs integer NOT NULL, usn integer NOT NULL,
  config blob NOT NULL, PRIMARY KEY (ntid, ord)) WITHOUT ROWID;
CREATE TABLE notetypes (id integer NOT NULL PRIMARY KEY, name text NOT NULL COLLATE unicase,
  mtime_secs integer NOT NULL, usn integer NOT NULL, config blob NOT NULL);
CREATE TABLE decks (id integer PRIMARY KEY NOT NULL, name text NOT NULL COLLATE unicase,
  mtime_secs integer NOT NULL, usn integer NOT NULL, common blob NOT NULL, kind blob NOT NULL);
CREATE TABLE tags (tag text NOT NULL PRIMARY KEY COLLATE unicase, usn integer NOT NULL,
  collapsed boolean NOT NULL, config blob NULL) WITHOUT ROWID;
";

const SCHEMA_18_INDEXES: &str = "
CREATE UNIQUE INDEX idx_fields_name_ntid ON fields (name, ntid);
CREATE UNIQUE INDEX idx_templates_name_ntid ON templates (name, ntid);
CREATE INDEX idx_templates_usn ON templates (usn);
CREATE UNIQUE INDEX idx_notetypes_name ON notetypes (name);
CREATE INDEX idx_notetypes_usn ON notetypes (usn);
CREATE UNIQUE INDEX idx_decks_name ON decks (name);
CREATE INDEX idx_notes_mid ON notes (mid);
CREATE INDEX idx_cards_odid ON cards (odid) WHERE odid != 0;
CREATE INDEX idx_graves_pending ON graves (usn);
";

/// Write the collection `record` names, as `snapshot` holds it, to a new file at `path`.
pub(crate) fn write_schema18(
    snapshot: &Snapshot,
    record: &CollectionRecord,
    path: &Path,
) -> Result<(), FullSyncError> {
    let generation = record.generation;
    let mut conn = create_file(path)?;
    register_unicase(&conn)?;
    let tx = conn.transaction()?;
    tx.execute_batch(CORE_TABLES)?;
    tx.execute_batch(SCHEMA_18_TABLES)?;
    // The legacy JSON columns are empty in schema 18: everything is in its own table.
    insert_col(&tx, record, 18, &LegacyJson::default())?;
    insert_rows(&tx, snapshot, generation)?;
    {
        // Schema 18 keeps one grave per object; in usn order, the latest deletion wins.
        let mut insert = tx.prepare("INSERT OR REPLACE INTO graves VALUES (?1, ?2, ?3)")?;
        for (usn, kind, id) in snapshot.graves(generation)? {
            insert.execute(params![id, kind, usn])?;
        }
    }
    insert_notetypes(&tx, snapshot, generation)?;
    insert_decks(&tx, snapshot, generation)?;
    insert_deck_configs(&tx, snapshot, generation)?;
    {
        // Config rows carry no usn or time that matters: the protocol sends all of them or
        // none (protocol.md §4.2), and full syncs take neither, so both are written as 0.
        let mut insert = tx.prepare("INSERT INTO config VALUES (?1, 0, 0, ?2)")?;
        for (key, entry) in snapshot.objects(generation, ObjectKind::Config)? {
            insert.execute(params![key, entry.json.as_bytes()])?;
        }
        // Tags differing only in case are one tag to the official code: the first is kept.
        let mut insert = tx.prepare("INSERT OR IGNORE INTO tags VALUES (?1, ?2, 0, NULL)")?;
        for (tag, entry) in snapshot.objects(generation, ObjectKind::Tag)? {
            insert.execute(params![tag, entry.usn])?;
        }
    }
    tx.execute_batch(SCHEMA_11_INDEXES)?;
    tx.execute_batch(SCHEMA_18_INDEXES)?;
    tx.commit()?;
    // As the official server leaves its files; closing checkpoints, so no `-wal` remains.
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

fn insert_notetypes(
    tx: &rusqlite::Transaction<'_>,
    snapshot: &Snapshot,
    generation: u64,
) -> Result<(), FullSyncError> {
    let mut names = UniqueNames::default();
    let mut notetype = tx.prepare("INSERT INTO notetypes VALUES (?1, ?2, ?3, ?4, ?5)")?;
    let mut field = tx.prepare("INSERT INTO fields VALUES (?1, ?2, ?3, ?4)")?;
    let mut template = tx.prepare("INSERT INTO templates VALUES (?1, ?2, ?3, 0, 0, ?4)")?;
    for (key, entry) in snapshot.objects(generation, ObjectKind::Notetype)? {
        let (id, object) = parse(ObjectKind::Notetype, &key, &entry)?;
        let rows = notetype_rows(&object);
        let name = names.claim(rows.name, "notetype");
        notetype.execute(params![id, name, rows.mtime_secs, entry.usn, rows.config])?;
        let mut field_names = UniqueNames::default();
        for (ord, (name, config)) in rows.fields.into_iter().enumerate() {
            let name = field_names.claim(name, "field");
            field.execute(params![id, ord as i64, name, config])?;
        }
        let mut template_names = UniqueNames::default();
        for (ord, (name, config)) in rows.templates.into_iter().enumerate() {
            let name = template_names.claim(name, "template");
            template.execute(params![id, ord as i64, name, config])?;
        }
    }
    Ok(())
}

fn insert_decks(
    tx: &rusqlite::Transaction<'_>,
    snapshot: &Snapshot,
    generation: u64,
) -> Result<(), FullSyncError> {
    let mut names = UniqueNames::default();
    let mut insert = tx.prepare("INSERT INTO decks VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    for (key, entry) in snapshot.objects(generation, ObjectKind::Deck)? {
        let (id, object) = parse(ObjectKind::Deck, &key, &entry)?;
        let row = deck_row(&object);
        let name = names.claim(row.native_name, "deck");
        insert.execute(params![
            id,
            name,
            row.mtime_secs,
            entry.usn,
            row.common,
            row.kind
        ])?;
    }
    Ok(())
}

fn insert_deck_configs(
    tx: &rusqlite::Transaction<'_>,
    snapshot: &Snapshot,
    generation: u64,
) -> Result<(), FullSyncError> {
    let mut insert = tx.prepare("INSERT INTO deck_config VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (key, entry) in snapshot.objects(generation, ObjectKind::DeckConfig)? {
        let (id, object) = parse(ObjectKind::DeckConfig, &key, &entry)?;
        let row = deck_config_row(&object);
        insert.execute(params![id, row.name, row.mtime_secs, entry.usn, row.config])?;
    }
    Ok(())
}

/// A stored object and its id; both were checked when the object was stored, so a failure
/// here means the database itself is damaged.
fn parse(
    kind: ObjectKind,
    key: &str,
    entry: &ObjectRecord,
) -> Result<(i64, JsonObject), FullSyncError> {
    let damaged = |reason: String| {
        FullSyncError::Store(crate::store::StoreError::Corrupt {
            table: "objects",
            key: format!("{kind:?} {key}"),
            reason,
        })
    };
    let id = key
        .parse()
        .map_err(|_| damaged("the key is not an id".into()))?;
    match serde_json::from_str(&entry.json) {
        Ok(serde_json::Value::Object(object)) => Ok((id, object)),
        Ok(_) => Err(damaged("not a JSON object".into())),
        Err(e) => Err(damaged(e.to_string())),
    }
}

/// Names the official schema keeps unique regardless of case. Clients resolve clashes when
/// they add or rename; two devices can still bring in "Spanish" and "spanish" before either
/// syncs, and the official server then renames one with a `+` suffix, as done here.
#[derive(Default)]
struct UniqueNames(HashSet<UniCase<String>>);

impl UniqueNames {
    fn claim(&mut self, mut name: String, what: &str) -> String {
        let wanted = name.clone();
        while !self.0.insert(UniCase::new(name.clone())) {
            name.push('+');
        }
        if name != wanted {
            tracing::warn!("{what} {wanted:?} clashes with another name; written as {name:?}");
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::collection_file::open_upload;
    use super::super::objects::read_objects;
    use super::super::{activate, ingest, ChangeIndex};
    use super::*;
    use crate::store::{temp_store, Store};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("fixtures")
            .join(name)
    }

    /// Take the collection file at `path` in as user 1's collection.
    fn take_in(store: &Store, path: &Path) -> CollectionRecord {
        let ingested = ingest(store, 1, path, ChangeIndex::All, None, 0).unwrap();
        activate(store, 1, ingested, 0).unwrap();
        store.collection(1).unwrap().unwrap()
    }

    fn write_out(store: &Store, path: &Path) {
        let snapshot = store.snapshot().unwrap();
        let record = snapshot.collection(1).unwrap().unwrap();
        write_schema18(&snapshot, &record, path).unwrap();
    }

    fn rows(store: &Store) -> String {
        let snapshot = store.snapshot().unwrap();
        let generation = snapshot.collection(1).unwrap().unwrap().generation;
        let notes: Vec<_> = snapshot
            .notes(generation)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let cards: Vec<_> = snapshot
            .cards(generation)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let revlog: Vec<_> = snapshot
            .revlog(generation)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let graves = snapshot.graves(generation).unwrap();
        let mut objects = Vec::new();
        for kind in [
            ObjectKind::Notetype,
            ObjectKind::Deck,
            ObjectKind::DeckConfig,
            ObjectKind::Tag,
            ObjectKind::Config,
        ] {
            // The export writes each object's usn from its record; a JSON copy left pending
            // (-1) by the uploading client comes back as that usn.
            let normalized: Vec<_> = snapshot
                .objects(generation, kind)
                .unwrap()
                .into_iter()
                .map(|(key, entry)| {
                    let json = match serde_json::from_str(&entry.json) {
                        Ok(serde_json::Value::Object(mut o)) if o.contains_key("usn") => {
                            o.insert("usn".into(), entry.usn.into());
                            serde_json::Value::Object(o).to_string()
                        }
                        _ => entry.json.clone(),
                    };
                    (key, entry.usn, json)
                })
                .collect();
            objects.push(normalized);
        }
        format!("{notes:?}\n{cards:?}\n{revlog:?}\n{graves:?}\n{objects:?}")
    }

    /// Every fixture (written by the official client) goes in, out as schema 18, and in
    /// again unchanged; written out again, the file is the same to the byte.
    #[test]
    fn collections_round_trip_through_schema_18_files() {
        for name in ["minimal", "rich", "extras", "rich.v11"] {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("source.anki2");
            std::fs::copy(fixture(&format!("{name}.anki2")), &source).unwrap();
            let (_a, first) = temp_store();
            first.set_user("u", "h", 0).unwrap();
            let record = take_in(&first, &source);

            let written = dir.path().join("written.anki2");
            write_out(&first, &written);
            let (conn, col) = open_upload(&written).unwrap();
            assert_eq!(col.version, 18, "{name}");
            let objects = read_objects(&conn, 18).unwrap();
            drop(conn);
            let (_b, second) = temp_store();
            second.set_user("u", "h", 0).unwrap();
            let again = take_in(&second, &written);
            assert_eq!(
                (
                    again.modified_ms,
                    again.schema_ms,
                    again.usn,
                    again.created_secs
                ),
                (
                    record.modified_ms,
                    record.schema_ms,
                    record.usn,
                    record.created_secs
                ),
                "{name}"
            );
            assert_eq!(again.counts, record.counts, "{name}");
            assert_eq!(rows(&second), rows(&first), "{name}");
            assert!(!objects.notetypes.is_empty(), "{name}");

            let rewritten = dir.path().join("rewritten.anki2");
            write_out(&second, &rewritten);
            assert!(
                std::fs::read(&written).unwrap() == std::fs::read(&rewritten).unwrap(),
                "{name}: a second export differs"
            );
        }
    }
}
