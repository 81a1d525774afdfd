//! The one database file. `Store` opens it once, owns the `redb::Database`, and offers
//! short, typed transactions to the layers above (users, host keys, collections, media). It
//! knows nothing of HTTP or of the sync protocol.
//!
//! Never hold a write transaction across an `.await` or a network round trip: redb has one
//! writer, so a long write blocks every user.

mod collections;
mod error;
mod generations;
mod media;
mod snapshot;
mod staging;
mod sync;
mod tables;
mod users;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable};

pub use error::StoreError;
pub use generations::{RestoreOutcome, RowBatch};
pub use media::{
    BlobReader, BlobStats, MediaBytes, MediaChange, MediaContent, MediaSnapshot, MediaStatus,
    MediaUpdate, UploadOutcome,
};
pub use snapshot::Snapshot;
pub use sync::{ChangedIds, SyncCommit};
pub use tables::{
    CardRow, CollectionRecord, Counts, HostKeyRecord, MediaRecord, NoteRow, ObjectKind,
    ObjectRecord, RevlogRow, RowKind, SortField, SpilledRow, UserRecord,
};
pub use users::{HostKeyHash, UserSummary, UserUpsert};

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
    db: Database,
    path: PathBuf,
    commit_observer: OnceLock<CommitObserver>,
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
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| StoreError::open(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            commit_observer: OnceLock::new(),
        };
        store.initialize()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create every table so readers never meet a missing one, and check the layout version.
    fn initialize(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
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

    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        Ok(self.db.begin_write()?)
    }
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

#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("test.redb")).expect("open store");
    (dir, store)
}
