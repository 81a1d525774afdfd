//! Online backups. redb has no backup call, and copying the file of a running server can catch
//! a commit half written, so a backup is a logical copy: every table, row by row, read from
//! ONE read transaction (an MVCC snapshot: syncs keep committing meanwhile and none of their
//! writes is half in it) into a new redb file next to the target, which is made durable and
//! only then renamed over the target. A backup that fails or is interrupted leaves at most a
//! hidden `.NAME.*.partial` file, never a file under the target's name that looks complete.
//!
//! Left out, because a restored server would throw them away: a sync's staged rows (no sync
//! survives a restart), generations being written by an upload or waiting for deletion, and
//! the scratch folder. A table this module does not know fails the backup instead of being
//! skipped.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redb::{
    AccessGuard, Database, Durability, Key, MultimapTableHandle, ReadTransaction, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, Value, WriteTransaction,
};

use super::disk::DiskFault;
use super::tables::{
    GenerationRecord, GenerationState, BLOBS, BLOB_REFS, CARDS, CHANGES, COLLECTIONS, GENERATIONS,
    GRAVES, HOST_KEYS, MEDIA, MEDIA_TOTALS, MEDIA_USN, META, NOTES, OBJECTS, REVLOG, STAGED, USERS,
    USER_HOST_KEYS, USER_NAMES,
};
use super::{decode, Store, StoreError};

/// Bytes written to the backup per transaction: bounds the memory of a backup of any size.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Page cache of the backup file while it is written; it is only appended to.
const TARGET_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    /// Size of the backup file.
    pub bytes: u64,
    pub elapsed: Duration,
    pub users: u64,
    /// Rows copied, all tables together.
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot write the backup {}: {fault}", path.display())]
    Write { path: PathBuf, fault: DiskFault },
    #[error("cannot write the backup {}: {source}", path.display())]
    Target {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("cannot back up into {}: it is the database itself", path.display())]
    SameFile { path: PathBuf },
    #[error(
        "the database has a table this ankisyncd does not back up ({0}): was it written by a \
         newer ankisyncd?"
    )]
    UnknownTable(String),
    #[error("reading the database for a backup: {0}")]
    Store(#[from] StoreError),
}

/// Write a consistent copy of `store` to `out` (replacing it, atomically, if it exists).
pub fn backup_to(store: &Store, out: &Path) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if same_file(store.path(), out) {
        return Err(BackupError::SameFile {
            path: out.to_path_buf(),
        });
    }
    let snapshot = store.read()?;
    let partial = Partial::create(out)?;
    let target = Target::open(partial.path())?;
    let rows = copy_tables(&snapshot, &target)?;
    let users = snapshot
        .open_table(USERS)
        .map_err(read)?
        .len()
        .map_err(read)?;
    drop(snapshot);
    target.finish()?;
    let bytes = partial.commit(out)?;
    Ok(BackupReport {
        path: out.to_path_buf(),
        bytes,
        elapsed: started.elapsed(),
        users,
        rows,
    })
}

/// Copy every table of the snapshot; fails if the file has a table not copied here.
fn copy_tables(src: &ReadTransaction, target: &Target) -> Result<u64, BackupError> {
    let kept = kept_generations(src)?;
    let live = |generation: u64| kept.contains(&generation);
    let mut copied: Vec<&str> = Vec::new();
    let mut rows = 0;
    let mut all = |name: &'static str, n: Result<u64, BackupError>| -> Result<(), BackupError> {
        rows += n?;
        copied.push(name);
        Ok(())
    };
    all(META.name(), target.copy(src, META, |_| true))?;
    all(USERS.name(), target.copy(src, USERS, |_| true))?;
    all(USER_NAMES.name(), target.copy(src, USER_NAMES, |_| true))?;
    all(HOST_KEYS.name(), target.copy(src, HOST_KEYS, |_| true))?;
    all(
        USER_HOST_KEYS.name(),
        target.copy(src, USER_HOST_KEYS, |_| true),
    )?;
    all(COLLECTIONS.name(), target.copy(src, COLLECTIONS, |_| true))?;
    all(
        GENERATIONS.name(),
        target.copy(src, GENERATIONS, |k| live(k.value().1)),
    )?;
    all(NOTES.name(), target.copy(src, NOTES, |k| live(k.value().0)))?;
    all(CARDS.name(), target.copy(src, CARDS, |k| live(k.value().0)))?;
    all(
        REVLOG.name(),
        target.copy(src, REVLOG, |k| live(k.value().0)),
    )?;
    all(
        GRAVES.name(),
        target.copy(src, GRAVES, |k| live(k.value().0)),
    )?;
    all(
        CHANGES.name(),
        target.copy(src, CHANGES, |k| live(k.value().0)),
    )?;
    all(
        OBJECTS.name(),
        target.copy(src, OBJECTS, |k| live(k.value().0)),
    )?;
    all(STAGED.name(), target.copy(src, STAGED, |_| false))?;
    all(MEDIA.name(), target.copy(src, MEDIA, |_| true))?;
    all(MEDIA_USN.name(), target.copy(src, MEDIA_USN, |_| true))?;
    all(
        MEDIA_TOTALS.name(),
        target.copy(src, MEDIA_TOTALS, |_| true),
    )?;
    all(BLOB_REFS.name(), target.copy(src, BLOB_REFS, |_| true))?;
    all(BLOBS.name(), target.copy(src, BLOBS, |_| true))?;
    for table in src.list_tables().map_err(read)? {
        if !copied.contains(&table.name()) {
            return Err(BackupError::UnknownTable(table.name().to_string()));
        }
    }
    if let Some(table) = src.list_multimap_tables().map_err(read)?.next() {
        return Err(BackupError::UnknownTable(table.name().to_string()));
    }
    Ok(rows)
}

/// Generations a restored server would keep: live and retained ones.
fn kept_generations(src: &ReadTransaction) -> Result<HashSet<u64>, BackupError> {
    let table = src.open_table(GENERATIONS).map_err(read)?;
    let mut kept = HashSet::new();
    for entry in table.iter().map_err(read)? {
        let (key, value) = entry.map_err(read)?;
        let (_, generation) = key.value();
        let record: GenerationRecord = decode(value.value(), "generations", generation)?;
        if matches!(
            record.state,
            GenerationState::Live | GenerationState::Retained
        ) {
            kept.insert(generation);
        }
    }
    Ok(kept)
}

fn read(e: impl Into<redb::Error>) -> BackupError {
    BackupError::Store(StoreError::from(e.into()))
}

/// The new redb file the rows go to.
struct Target {
    db: Database,
    path: PathBuf,
}

impl Target {
    fn open(path: &Path) -> Result<Target, BackupError> {
        let db = Database::builder()
            .set_cache_size(TARGET_CACHE_BYTES)
            .create(path)
            .map_err(|e| target_error(path, e))?;
        Ok(Target {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Copy the rows of one table for which `keep` holds, in transactions of about
    /// [`BATCH_BYTES`]; the table is created even when empty. Returns the rows copied.
    fn copy<K: Key + 'static, V: Value + 'static>(
        &self,
        src: &ReadTransaction,
        definition: TableDefinition<K, V>,
        keep: impl Fn(&AccessGuard<'_, K>) -> bool,
    ) -> Result<u64, BackupError> {
        let source = src.open_table(definition).map_err(read)?;
        let mut entries = source.iter().map_err(read)?;
        let mut copied = 0;
        loop {
            let tx = self.batch()?;
            let mut more = false;
            {
                let mut table = tx.open_table(definition).map_err(|e| self.error(e))?;
                let mut bytes = 0;
                for entry in entries.by_ref() {
                    let (key, value) = entry.map_err(read)?;
                    if !keep(&key) {
                        continue;
                    }
                    let (key, value) = (key.value(), value.value());
                    bytes += K::as_bytes(&key).as_ref().len() + V::as_bytes(&value).as_ref().len();
                    table.insert(key, value).map_err(|e| self.error(e))?;
                    copied += 1;
                    if bytes >= BATCH_BYTES {
                        more = true;
                        break;
                    }
                }
            }
            tx.commit().map_err(|e| self.error(e))?;
            if !more {
                return Ok(copied);
            }
        }
    }

    /// A write transaction that does not wait for the disk: only the whole backup must be
    /// durable, and [`Target::finish`] makes it so.
    fn batch(&self) -> Result<WriteTransaction, BackupError> {
        let mut tx = self.db.begin_write().map_err(|e| self.error(e))?;
        tx.set_durability(Durability::None)
            .map_err(|e| self.error(redb::Error::from(e)))?;
        Ok(tx)
    }

    /// Make everything durable and close the file.
    fn finish(self) -> Result<(), BackupError> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))?;
        let path = self.path;
        self.db.close().map_err(|e| target_error(&path, e))
    }

    fn error(&self, e: impl Into<redb::Error>) -> BackupError {
        target_error(&self.path, e)
    }
}

fn target_error(path: &Path, e: impl Into<redb::Error>) -> BackupError {
    match e.into() {
        redb::Error::Io(source) => BackupError::Write {
            path: path.to_path_buf(),
            fault: DiskFault::new(&source),
        },
        source => BackupError::Target {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn io_error(path: &Path, source: &std::io::Error) -> BackupError {
    BackupError::Write {
        path: path.to_path_buf(),
        fault: DiskFault::new(source),
    }
}

/// The backup being written, under a hidden name next to the target; removed unless it was
/// renamed into place.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    fn create(out: &Path) -> Result<Partial, BackupError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                io_error(
                    out,
                    &std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
                )
            })?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = out.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        // Password hashes are in it: readable by its owner only, whatever the umask.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path).map_err(|e| io_error(&path, &e))?;
        Ok(Partial { path, done: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Flush the file to disk, rename it to `out` and make the rename durable too. Returns
    /// the file's size.
    fn commit(mut self, out: &Path) -> Result<u64, BackupError> {
        let file = File::open(&self.path).map_err(|e| io_error(&self.path, &e))?;
        file.sync_all().map_err(|e| io_error(&self.path, &e))?;
        let bytes = file.metadata().map_err(|e| io_error(&self.path, &e))?.len();
        std::fs::rename(&self.path, out).map_err(|e| io_error(out, &e))?;
        self.done = true;
        sync_parent(out).map_err(|e| io_error(out, &e))?;
        Ok(bytes)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// fsync the directory holding `path`, so a rename in it survives a power cut.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use redb::TableDefinition;

    use super::super::fixture::{add_in_flight, populated_store, ALICE};
    use super::super::NoteRow;
    use super::*;

    /// Every table of the file with its number of rows, read without knowing its types:
    /// a table the backup forgot, or copied in part, shows up here.
    fn table_sizes(store: &Store) -> BTreeMap<String, u64> {
        let tx = store.read().unwrap();
        tx.list_tables()
            .unwrap()
            .map(|table| {
                let name = table.name().to_string();
                let len = tx.open_untyped_table(table).unwrap().len().unwrap();
                (name, len)
            })
            .collect()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_backup_has_every_table_and_row_but_what_is_in_flight() {
        let (dir, store) = populated_store();
        add_in_flight(&store);
        let out = dir.path().join("backup.redb");
        let report = backup_to(&store, &out).unwrap();
        assert_eq!(report.users, 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
        assert!(!files_in(dir.path()).iter().any(|n| n.ends_with(".partial")));

        // The source without what a restart throws away is what the backup must hold.
        store.clear_all_staged().unwrap();
        store.doom_unfinished().unwrap();
        assert!(store.repair().unwrap().remaining.is_clean());
        let expected = table_sizes(&store);
        let backup = Store::open_existing(&out).unwrap();
        assert_eq!(table_sizes(&backup), expected);
        let empty: Vec<&str> = expected
            .iter()
            .filter(|(_, rows)| **rows == 0)
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(empty, ["staged"], "the fixture fills every other table");
        assert_eq!(backup.list_users().unwrap(), store.list_users().unwrap());
        let record = store.collection(ALICE).unwrap().unwrap();
        assert_eq!(backup.collection(ALICE).unwrap().unwrap(), record);
        let notes = |s: &Store| -> Vec<(i64, NoteRow)> {
            let generation = s.collection(ALICE).unwrap().unwrap().generation;
            s.snapshot()
                .unwrap()
                .notes(generation)
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(notes(&backup), notes(&store));
        let check = backup.check().unwrap();
        assert!(check.is_clean(), "{:?}", check.findings);
    }

    #[test]
    fn writes_after_the_snapshot_are_not_in_the_backup() {
        let (dir, store) = populated_store();
        let snapshot = store.read().unwrap();
        store.set_user("dave", "hash", 0).unwrap();
        store.remove_user("alice").unwrap();
        let path = dir.path().join("copy.redb");
        let target = Target::open(&path).unwrap();
        copy_tables(&snapshot, &target).unwrap();
        target.finish().unwrap();
        let copy = Store::open_existing(&path).unwrap();
        let names: Vec<String> = copy
            .list_users()
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(copy.check().unwrap().is_clean());
    }

    #[test]
    fn a_table_the_backup_does_not_know_fails_it_and_leaves_nothing() {
        let (dir, store) = populated_store();
        let tx = store.write().unwrap();
        tx.open_table(TableDefinition::<u64, u64>::new("added_later"))
            .unwrap()
            .insert(1, 1)
            .unwrap();
        tx.commit().unwrap();
        let before = files_in(dir.path());
        let out = dir.path().join("backup.redb");
        match backup_to(&store, &out) {
            Err(BackupError::UnknownTable(name)) => assert_eq!(name, "added_later"),
            other => panic!("{other:?}"),
        }
        assert_eq!(files_in(dir.path()), before);
    }

    #[test]
    fn a_backup_replaces_an_older_one_and_never_the_database() {
        let (dir, store) = populated_store();
        let out = dir.path().join("backup.redb");
        std::fs::write(&out, b"an older backup").unwrap();
        backup_to(&store, &out).unwrap();
        assert_eq!(
            Store::open_existing(&out)
                .unwrap()
                .list_users()
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(
            backup_to(&store, store.path()),
            Err(BackupError::SameFile { .. })
        ));
        match backup_to(&store, &dir.path().join("no such dir/backup.redb")) {
            Err(BackupError::Write { fault, .. }) => {
                assert_eq!(fault.kind, std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
    }
}
