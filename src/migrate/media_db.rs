//! The official server's media index, `media.db` (version 4 of its layout): a `media` table
//! with one row per file ever synced (`fname`, `csum` = SHA-1, `size` = 0 once deleted,
//! `usn`, `mtime`) and a one-row `meta` table (`last_usn`, `total_bytes`,
//! `total_nonempty_files`), in WAL mode. Read for `import`, written for `export`.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};

/// The layout version the official server writes (`PRAGMA user_version`) and upgrades older
/// files to whenever it starts.
const VERSION: u32 = 4;

const SCHEMA: &str = "
CREATE TABLE media (fname text NOT NULL PRIMARY KEY, csum blob NOT NULL,
  size int NOT NULL, usn int NOT NULL, mtime int NOT NULL);
CREATE INDEX ix_usn ON media (usn);
CREATE TABLE meta (last_usn int NOT NULL, total_bytes int NOT NULL,
  total_nonempty_files int NOT NULL);
";

/// One row of `media`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaDbEntry {
    pub name: String,
    /// `None` for a deleted file.
    pub sha1: Option<[u8; 20]>,
    pub size: u64,
    pub usn: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaDb {
    pub last_usn: i32,
    /// In usn order.
    pub entries: Vec<MediaDbEntry>,
}

/// Read a media index (a private copy: opening may replay its log).
pub(crate) fn read(path: &Path) -> Result<MediaDb, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open it: {e}"))?;
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version != VERSION {
        return Err(format!(
            "layout version {version}, not {VERSION}: start the official server once on this \
             folder (it upgrades the file), stop it, then import"
        ));
    }
    let last_usn: i32 = conn
        .query_row("SELECT last_usn FROM meta", [], |r| r.get(0))
        .map_err(|e| format!("meta: {e}"))?;
    let mut statement = conn
        .prepare("SELECT fname, csum, size, usn FROM media ORDER BY usn, fname")
        .map_err(|e| e.to_string())?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i32>(3)?,
            ))
        })
        .map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    for row in rows {
        let (name, csum, size, usn) = row.map_err(|e| format!("media: {e}"))?;
        let sha1 = if size > 0 {
            let sha1: [u8; 20] = csum
                .as_slice()
                .try_into()
                .map_err(|_| format!("{name:?}: the checksum is {} bytes, not 20", csum.len()))?;
            Some(sha1)
        } else {
            None
        };
        entries.push(MediaDbEntry {
            name,
            sha1,
            size: u64::try_from(size).unwrap_or(0),
            usn,
        });
    }
    Ok(MediaDb { last_usn, entries })
}

/// Write a new media index at `path`. Rows go in in the order given; the same rows give the
/// same bytes. What the official server keeps and we do not (a deleted file's checksum, the
/// time of each change) is written empty and 0: it reads neither.
pub(crate) fn write(
    path: &Path,
    entries: impl IntoIterator<Item = MediaDbEntry>,
    last_usn: i32,
    total_bytes: u64,
    total_files: u64,
) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;",
    )?;
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    {
        let mut insert = tx.prepare("INSERT INTO media VALUES (?1, ?2, ?3, ?4, 0)")?;
        for entry in entries {
            let csum: &[u8] = entry.sha1.as_ref().map_or(&[], |sha1| sha1.as_slice());
            insert.execute(params![entry.name, csum, entry.size as i64, entry.usn])?;
        }
    }
    tx.execute(
        "INSERT INTO meta VALUES (?1, ?2, ?3)",
        params![last_usn, total_bytes as i64, total_files as i64],
    )?;
    tx.execute_batch(&format!("PRAGMA user_version = {VERSION};"))?;
    tx.commit()?;
    // As the official server leaves it; closing checkpoints, so no `-wal` remains.
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    conn.close().map_err(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_indexes_read_back_and_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            MediaDbEntry {
                name: "b.jpg".into(),
                sha1: Some([7; 20]),
                size: 10,
                usn: 1,
            },
            MediaDbEntry {
                name: "a.mp3".into(),
                sha1: None,
                size: 0,
                usn: 3,
            },
        ];
        let (first, second) = (dir.path().join("1.db"), dir.path().join("2.db"));
        write(&first, entries.clone(), 3, 10, 1).unwrap();
        write(&second, entries.clone(), 3, 10, 1).unwrap();
        assert_eq!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap()
        );
        assert!(!dir.path().join("1.db-wal").exists());
        let read_back = read(&first).unwrap();
        assert_eq!(
            read_back,
            MediaDb {
                last_usn: 3,
                entries
            }
        );
    }

    #[test]
    fn an_old_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("media.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 3;").unwrap();
        drop(conn);
        let err = read(&path).unwrap_err();
        assert!(err.contains("start the official server once"), "{err}");
    }
}
