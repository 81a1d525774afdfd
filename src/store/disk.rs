//! The file under redb, watched. redb latches the first failed read or write of its file
//! (disk full, a read-only remount, an I/O error): every later operation on that `Database`
//! fails, reads included, until it is closed and opened again. [`WatchedFile`] passes every
//! call through to redb's own file backend and notes such a failure in a [`DiskWatch`], so
//! the store knows to reopen the file (which repairs it from its last commit) instead of
//! failing every request until a restart.
//!
//! Also the operator's side of a disk fault: [`DiskFault`] says in words what to fix.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// A failed read or write of a file, with what the operator can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFault {
    pub kind: io::ErrorKind,
    /// The system's message, e.g. "No space left on device (os error 28)".
    pub message: String,
}

impl DiskFault {
    pub fn new(error: &io::Error) -> DiskFault {
        DiskFault {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// What to fix, when the kind of failure says it.
    pub fn advice(&self) -> &'static str {
        advice(self.kind)
    }
}

impl fmt::Display for DiskFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.advice())
    }
}

/// The operator's next step for a failed file operation of this kind.
pub fn advice(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "the disk is full or over quota: free space on it; writes resume by themselves"
        }
        io::ErrorKind::FileTooLarge => {
            "a file reached the size limit (`ulimit -f`, or the filesystem's largest file): \
             raise the limit; writes resume by themselves"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "the filesystem is read-only: remount it read-write; writes resume by themselves"
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied: let the user running ankisyncd write there"
        }
        _ => "check the disk and the kernel log (dmesg)",
    }
}

/// Whether an I/O error is a fault of the disk (or its limits), as opposed to, say, a
/// client hanging up: these are the failures whose log line must tell the operator what to
/// fix.
pub fn is_disk_fault(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::PermissionDenied
    )
}

/// The first failure of the file under one open `Database`.
#[derive(Debug, Default)]
pub(super) struct DiskWatch {
    failure: Mutex<Option<DiskFault>>,
    /// Unit tests set a size the file may not grow beyond, as on a full disk; shared by
    /// every reopening of one store. 0 means no limit.
    #[cfg(test)]
    limit: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl DiskWatch {
    /// A watch for a newly opened file, keeping the previous watch's injected fault.
    pub(super) fn renewed(&self) -> DiskWatch {
        DiskWatch {
            failure: Mutex::default(),
            #[cfg(test)]
            limit: self.limit.clone(),
        }
    }

    pub(super) fn failure(&self) -> Option<DiskFault> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn note<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let Err(error) = &result {
            let mut failure = self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            failure.get_or_insert_with(|| DiskFault::new(error));
        }
        result
    }

    /// Lets the file grow no further than `limit` bytes (`None`: no limit), as a full disk
    /// would (unit tests). Writes within the file still succeed, as they do on a full disk
    /// whose blocks for them are already allocated.
    #[cfg(test)]
    pub(super) fn limit_growth(&self, limit: Option<u64>) {
        self.limit
            .store(limit.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the file may extend to `end` bytes.
    #[cfg_attr(not(test), allow(unused_variables))]
    fn room_for(&self, end: u64) -> io::Result<()> {
        #[cfg(test)]
        {
            let limit = self.limit.load(std::sync::atomic::Ordering::SeqCst);
            if limit > 0 && end > limit {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
        }
        Ok(())
    }
}

/// redb's file backend with its failures noted in a [`DiskWatch`].
#[derive(Debug)]
pub(super) struct WatchedFile {
    inner: FileBackend,
    watch: std::sync::Arc<DiskWatch>,
}

impl WatchedFile {
    pub(super) fn new(
        file: File,
        watch: std::sync::Arc<DiskWatch>,
    ) -> Result<WatchedFile, redb::DatabaseError> {
        Ok(WatchedFile {
            inner: FileBackend::new(file)?,
            watch,
        })
    }
}

impl StorageBackend for WatchedFile {
    fn len(&self) -> io::Result<u64> {
        self.watch.note(self.inner.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.watch.note(self.inner.read(offset, out))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let result = self
            .watch
            .room_for(len)
            .and_then(|()| self.inner.set_len(len));
        self.watch.note(result)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.watch.note(self.inner.sync_data())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset.saturating_add(data.len() as u64);
        let result = self
            .watch
            .room_for(end)
            .and_then(|()| self.inner.write(offset, data));
        self.watch.note(result)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
