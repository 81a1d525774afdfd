//! Opening an uploaded collection file and deciding whether we take it: the checks the
//! official server runs (SQLite opens it, `PRAGMA integrity_check` says `ok`, the schema
//! version is one clients upload), plus ours (the tables we read exist, `col` has one row),
//! so a non-Anki SQLite file is refused instead of being taken for an empty collection.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::objects::register_unicase;
use super::FullSyncError;

/// The scalars of the `col` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColRow {
    pub version: u32,
    pub created_secs: i64,
    pub modified_ms: i64,
    pub schema_ms: i64,
    pub usn: i32,
    pub last_sync_ms: i64,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const TABLES_11: [&str; 5] = ["col", "notes", "cards", "revlog", "graves"];
const TABLES_18: [&str; 7] = [
    "notetypes",
    "fields",
    "templates",
    "decks",
    "deck_config",
    "config",
    "tags",
];

fn corrupt(reason: impl Into<String>) -> FullSyncError {
    FullSyncError::Corrupt(reason.into())
}

/// Open an uploaded file and check its shape (the tables we read, one `col` row, a schema
/// version clients upload); [`check_integrity`] is the other half of accepting it. The
/// connection may write (`-wal`/`-shm` files beside it in the scratch directory), never to
/// anything the server keeps.
pub(crate) fn open_upload(path: &Path) -> Result<(Connection, ColRow), FullSyncError> {
    let conn = open(path)?;
    require_tables(&conn, &TABLES_11)?;
    let col = read_col(&conn)?;
    match col.version {
        11 => {}
        18 => require_tables(&conn, &TABLES_18)?,
        v => {
            return Err(corrupt(format!(
                "collection schema {v} (clients upload schema 11 or 18)"
            )))
        }
    }
    Ok((conn, col))
}

/// `PRAGMA integrity_check` on its own connection, as the official server runs it on every
/// upload. It reads the whole file (about 40 % of an upload's work), so the caller runs it
/// beside the ingest rather than before it.
pub(crate) fn check_integrity(path: &Path) -> Result<(), FullSyncError> {
    let conn = open(path)?;
    let check: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| corrupt(format!("integrity check failed: {e}")))?;
    if check != ["ok"] {
        return Err(corrupt(format!(
            "integrity check failed: {}",
            check.join("; ").chars().take(300).collect::<String>()
        )));
    }
    Ok(())
}

/// A connection to a file that starts like a SQLite database, with the collation Anki's
/// indexes use.
fn open(path: &Path) -> Result<Connection, FullSyncError> {
    let mut magic = [0u8; 16];
    let read =
        std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
    if read.is_err() || &magic != SQLITE_MAGIC {
        return Err(corrupt("not a SQLite database"));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| corrupt(format!("SQLite cannot open it: {e}")))?;
    register_unicase(&conn).map_err(|e| corrupt(format!("collation: {e}")))?;
    Ok(conn)
}

fn require_tables(conn: &Connection, tables: &[&str]) -> Result<(), FullSyncError> {
    for table in tables {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(|e| corrupt(format!("reading the schema: {e}")))?;
        if found == 0 {
            return Err(corrupt(format!(
                "not an Anki collection: no `{table}` table"
            )));
        }
    }
    Ok(())
}

fn read_col(conn: &Connection) -> Result<ColRow, FullSyncError> {
    let rows: Vec<ColRow> = conn
        .prepare("SELECT ver, crt, mod, scm, usn, ls FROM col")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(ColRow {
                    version: r.get(0)?,
                    created_secs: r.get(1)?,
                    modified_ms: r.get(2)?,
                    schema_ms: r.get(3)?,
                    usn: r.get(4)?,
                    last_sync_ms: r.get(5)?,
                })
            })?
            .collect()
        })
        .map_err(|e| corrupt(format!("reading the col row: {e}")))?;
    match rows.as_slice() {
        [one] => Ok(*one),
        other => Err(corrupt(format!(
            "the col table has {} rows, not 1",
            other.len()
        ))),
    }
}
