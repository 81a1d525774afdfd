//! The one database file. `Store` opens it once, owns the `redb::Database`, and offers
//! short, typed transactions to the layers above (users, host keys, collections, media). It
//! knows nothing of HTTP or of the sync protocol.
//!
//! Never hold a write transaction across an `.await` or a network round trip: redb has one
//! writer, so a long write blocks every user.

pub mod backup;
mod check;
mod collections;
mod commit_queue;
mod devices;
mod disk;
mod error;
#[cfg(test)]
pub(crate) mod fixture;
mod generations;
mod media;
mod repair;
mod snapshot;
mod staging;
mod sync;
mod tables;
mod users;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable};

pub use backup::{backup_to, BackupError, BackupReport};
pub use check::{CheckReport, Finding};
pub use devices::{DeviceSeen, DeviceSummary, HostKeyHash};
pub use disk::{advice as disk_advice, is_disk_fault, DiskFault};
use disk::{DiskWatch, WatchedFile};
pub use error::StoreError;
pub use generations::{NewGeneration, RestoreOutcome, RowBatch};
pub use media::{
    BlobReader, BlobStats, ImportedMedia, MediaApplied, MediaBytes, MediaChange, MediaContent,
    MediaSnapshot, MediaStatus, MediaUpdate, UploadOutcome,
};
pub use repair::RepairReport;
pub use snapshot::Snapshot;
pub use staging::Spill;
pub use sync::{ChangedIds, CommitOutcome, SyncCommit};
pub use tables::{
    CardRow, CollectionRecord, Counts, HostKeyRecord, MediaRecord, NoteRow, ObjectKind,
    ObjectRecord, RevlogRow, RowKind, SortField, SpilledRow, UserRecord, UserSource,
};
pub use users::{LoggedOut, SourceChange, UserSummary, UserUpsert};

use tables::{
    BLOBS, BLOB_REFS, CARDS, CHANGES, COLLECTIONS, FORMAT_VERSION, GENERATIONS, GRAVES, HOST_KEYS,
    MEDIA, MEDIA_TOTALS, MEDIA_USN, META, META_FORMAT, NOTES, OBJECTS, REVLOG, STAGED, USERS,
    USER_HOST_KEYS, USER_NAMES,
};

/// Page cache for command-line use and tests; the server takes `cache_megs`.
const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Told how long each commit took (the server's metrics).
type CommitObserver = Box<dyn Fn(Duration) + Send + Sync>;

pub struct Store {
    open: RwLock<OpenFile>,
    /// How many times the file was reopened after a disk fault. Writes made without waiting
    /// for the disk (upload batches, a sync's spilled rows) belong to one opening: the
    /// reopening recovers the last durable commit, which may predate them.
    epoch: AtomicU64,
    path: PathBuf,
    cache_bytes: usize,
    commit_observer: OnceLock<CommitObserver>,
    commit_queue: commit_queue::CommitQueue,
}

/// The database as currently opened, and the watch on its file. `db` is `None` between
/// closing a file that failed and opening it again.
struct OpenFile {
    db: Option<Arc<Database>>,
    watch: Arc<DiskWatch>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (or create) the database file. Fails with [`StoreError::Locked`] when another
    /// process, such as a running server, holds it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// `open` with a page cache of `cache_bytes` (the `cache_megs` setting). redb's own
    /// default (1 GiB) would let a server grow with the largest collection it ever read
    /// (benches/README.md, full sync: 16 MiB costs no measurable time).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let watch = Arc::new(DiskWatch::default());
        let db = open_database(path, cache_bytes, watch.clone())?;
        let store = Store {
            open: RwLock::new(OpenFile {
                db: Some(Arc::new(db)),
                watch,
            }),
            epoch: AtomicU64::new(0),
            path: path.to_path_buf(),
            cache_bytes,
            commit_observer: OnceLock::new(),
            commit_queue: Default::default(),
        };
        store.initialize()?;
        Ok(store)
    }

    /// Open the file of a stopped server for maintenance (backup, check, compact): unlike
    /// [`Store::open`], a missing file is an error rather than a new database.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// redb's own check of the file: its structure and every page's checksum. Returns false
    /// if redb found damage and repaired it (back to the last intact commit). Needs the only
    /// handle on the database, with no transaction open.
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        let db = self.only_handle()?;
        db.check_integrity()
            .map_err(|e| StoreError::open(&self.path, e))
    }

    /// Shrink the file: move data to its start and cut off the free space (after users or
    /// generations were removed). Returns the sizes before and after.
    pub fn compact(&mut self) -> Result<(u64, u64), StoreError> {
        let before = self.file_size()?;
        // Each pass moves what it can; a few suffice, the bound only guards against a loop.
        for _ in 0..64 {
            let db = self.only_handle()?;
            if !db
                .compact()
                .map_err(|e| StoreError::from(redb::Error::from(e)))?
            {
                break;
            }
        }
        Ok((before, self.file_size()?))
    }

    fn only_handle(&mut self) -> Result<&mut Database, StoreError> {
        let path = self.path.clone();
        self.open
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .db
            .as_mut()
            .and_then(Arc::get_mut)
            .ok_or(StoreError::Open {
                path,
                source: redb::DatabaseError::TransactionInProgress,
            })
    }

    /// Create every table so readers never meet a missing one, and check the layout version.
    fn initialize(&self) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get(META_FORMAT)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION)?;
                }
                Some(v) if v == FORMAT_VERSION => {}
                Some(v) => {
                    return Err(StoreError::UnsupportedFormat {
                        found: v,
                        supported: FORMAT_VERSION,
                    })
                }
            }
            tx.open_table(USERS)?;
            tx.open_table(USER_NAMES)?;
            tx.open_table(HOST_KEYS)?;
            tx.open_table(USER_HOST_KEYS)?;
            tx.open_table(COLLECTIONS)?;
            tx.open_table(GENERATIONS)?;
            tx.open_table(NOTES)?;
            tx.open_table(CARDS)?;
            tx.open_table(REVLOG)?;
            tx.open_table(GRAVES)?;
            tx.open_table(OBJECTS)?;
            tx.open_table(CHANGES)?;
            tx.open_table(STAGED)?;
            tx.open_table(MEDIA)?;
            tx.open_table(MEDIA_USN)?;
            tx.open_table(MEDIA_TOTALS)?;
            tx.open_table(BLOBS)?;
            tx.open_table(BLOB_REFS)?;
        }
        self.commit(tx)?;
        Ok(())
    }

    /// From now on, `observer` is told the duration of every commit. Set once; later calls
    /// change nothing.
    pub(crate) fn observe_commits(&self, observer: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.commit_observer.set(Box::new(observer));
    }

    /// Every write transaction ends here, so its latency is measured in one place.
    fn commit(&self, tx: redb::WriteTransaction) -> Result<(), StoreError> {
        let started = Instant::now();
        tx.commit()?;
        if let Some(observe) = self.commit_observer.get() {
            observe(started.elapsed());
        }
        Ok(())
    }

    /// Which opening of the file this is (see the `epoch` field); read after beginning a
    /// write transaction, it is that transaction's opening.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether the file is open and has not failed since: then reads are quick, where a
    /// read after a fault first reopens the file (which may repair it, for seconds).
    pub fn is_healthy(&self) -> bool {
        let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
        open.db.is_some() && open.watch.failure().is_none()
    }

    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.database()?.begin_read()?)
    }

    fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        Ok(self.database()?.begin_write()?)
    }

    /// The open database, opened again first if its file failed since: redb refuses every
    /// operation on a `Database` after one failed read or write, and reopening recovers the
    /// last commit, so one disk fault costs the requests it hit, not all later ones.
    fn database(&self) -> Result<Arc<Database>, StoreError> {
        {
            let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
            if let (Some(db), None) = (&open.db, open.watch.failure()) {
                return Ok(db.clone());
            }
        }
        let mut open = self.open.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(fault) = open.watch.failure() {
            if open.db.take().is_some() {
                tracing::error!(
                    "database {}: {fault}; it stays as of its last commit and is reopened",
                    self.path.display()
                );
            }
        } else if let Some(db) = &open.db {
            return Ok(db.clone());
        }
        // Any transaction still holding the failed file keeps it open (and locked) until it
        // ends; it fails soon, and the next request opens the file again.
        let watch = Arc::new(open.watch.renewed());
        match open_database(&self.path, self.cache_bytes, watch.clone()) {
            Ok(db) => {
                let db = Arc::new(db);
                self.epoch.fetch_add(1, Ordering::SeqCst);
                tracing::info!("database {} reopened", self.path.display());
                *open = OpenFile {
                    db: Some(db.clone()),
                    watch,
                };
                Ok(db)
            }
            Err(StoreError::Locked { .. }) => Err(StoreError::Unavailable {
                path: self.path.clone(),
                reason: "requests that met the fault are still ending".to_string(),
            }),
            Err(e) => Err(StoreError::Unavailable {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Open (or create) the file through a [`WatchedFile`]; redb repairs it from its last
/// commit if it was not closed cleanly.
fn open_database(
    path: &Path,
    cache_bytes: usize,
    watch: Arc<DiskWatch>,
) -> Result<Database, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let backend = WatchedFile::new(file, watch).map_err(|e| StoreError::open(path, e))?;
    Database::builder()
        .set_cache_size(cache_bytes)
        .create_with_backend(backend)
        .map_err(|e| StoreError::open(path, e))
}

/// Decode a MessagePack value, naming the row when the bytes are not what we wrote.
fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    table: &'static str,
    key: impl std::fmt::Display,
) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Collection rows are many and their columns fixed by the protocol: encode them as
/// positional arrays, without field names.
fn encode_row<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode_row<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    table: &'static str,
    id: i64,
) -> Result<T, StoreError> {
    decode(bytes, table, id)
}

impl Store {
    /// Makes the disk "full" for this store's file (it cannot grow), or no longer (unit
    /// tests).
    #[cfg(test)]
    pub(crate) fn inject_disk_full(&self, on: bool) {
        let size = std::fs::metadata(&self.path).map(|m| m.len()).ok();
        self.open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .watch
            .limit_growth(size.filter(|_| on));
    }
}

#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("test.redb")).expect("open store");
    (dir, store)
}

#[cfg(test)]
mod disk_fault_tests {
    use super::*;

    /// Fill the "disk" until a write fails; returns that write's error. The fault stays on.
    fn fill_the_disk(store: &Store) -> StoreError {
        store.inject_disk_full(true);
        for i in 0..1_000 {
            if let Err(e) = store.set_user(&format!("filler {i}"), &"h".repeat(64 * 1024), 0) {
                return e;
            }
        }
        panic!("the disk never filled");
    }

    #[test]
    fn a_failed_write_keeps_the_last_commit_and_reads_go_on() {
        let (_dir, store) = temp_store();
        store.set_user("before", "h", 0).unwrap();
        let err = fill_the_disk(&store);
        assert!(
            matches!(&err, StoreError::Disk(f) if f.kind == std::io::ErrorKind::StorageFull),
            "{err:?}"
        );
        assert!(err.to_string().contains("free space"), "{err}");
        // redb refuses everything on a file that failed a write; the store reopens it.
        assert!(store.user("before").unwrap().is_some());
        assert!(store
            .set_user("during", &"h".repeat(1 << 20), 0)
            .unwrap_err()
            .is_disk());
        assert!(store.user("before").unwrap().is_some());
        store.inject_disk_full(false);
        store.set_user("after", "h", 0).unwrap();
        assert!(store.user("during").unwrap().is_none());
        assert!(store.user("after").unwrap().is_some());
        assert!(store.check().unwrap().is_clean());
    }

    #[test]
    fn an_upload_written_across_a_reopening_is_refused() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        let generation = store.begin_generation(1, 0, 0).unwrap();
        fill_the_disk(&store);
        store.inject_disk_full(false);
        let batch = RowBatch {
            notes: vec![(1, fixture::note("after the fault", 0))],
            ..Default::default()
        };
        store.write_batch(generation.id, &batch).unwrap();
        let err = store
            .activate_generation(1, generation, CollectionRecord::empty(0), 1)
            .unwrap_err();
        assert!(matches!(err, StoreError::Interrupted), "{err:?}");
        assert_eq!(store.collection(1).unwrap().unwrap().generation, 0);
    }

    #[test]
    fn a_sync_whose_staged_rows_may_be_lost_is_refused() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        let row = SpilledRow::Note {
            existed: false,
            after: Some(fixture::note("staged", 0)),
        };
        let spill = store.spill(1, &[(RowKind::Note as u8, 1, row)]).unwrap();
        fill_the_disk(&store);
        store.inject_disk_full(false);
        let commit = SyncCommit {
            spilled: Some(spill),
            ..Default::default()
        };
        let err = store.commit_sync(1, 0, 0, commit, None, 1).unwrap_err();
        assert!(matches!(err, StoreError::Interrupted), "{err:?}");
        assert_eq!(store.collection(1).unwrap().unwrap().usn, 0);
    }
}
