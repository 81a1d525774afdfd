//! The scratch directory next to the database (`<database>.scratch/`): uploads being
//! received and checked, and built downloads cached for the next device. Nothing in it is
//! needed after a restart, so it is emptied at startup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    counter: AtomicU64,
    /// Users who may have cached downloads (the folder starts empty): every `finish`
    /// drops a user's downloads, and listing the folder each time cost more than the rest
    /// of the request.
    cached: Mutex<HashSet<u64>>,
}

/// SQLite may leave these beside a file it opened.
const SIDECARS: [&str; 4] = ["-wal", "-shm", "-journal", ".raw"];

/// The scratch directory of `database`.
fn dir_for(database: &Path) -> PathBuf {
    let mut name = database
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "ankisyncd".into());
    name.push(".scratch");
    database.with_file_name(name)
}

/// Files a stopped server left in the scratch directory of `database` other than cached
/// downloads: uploads and builds that were in progress. The next start removes them.
pub(crate) fn leftovers(database: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = dir_for(database);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let cached = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("download-"));
        if entry.path().is_file() && !cached {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

impl Scratch {
    /// Create (or empty) the scratch directory for `database`.
    pub fn open(database: &Path) -> std::io::Result<Scratch> {
        let dir = dir_for(database);
        if dir.exists() {
            let mut removed = 0;
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_file() {
                    std::fs::remove_file(&path)?;
                    removed += 1;
                }
            }
            if removed > 0 {
                tracing::info!(
                    files = removed,
                    "removed scratch files left by the last run"
                );
            }
        } else {
            std::fs::create_dir_all(&dir)?;
        }
        Ok(Scratch {
            dir,
            counter: AtomicU64::new(0),
            cached: Mutex::new(HashSet::new()),
        })
    }

    /// A new, unique path for an upload being received.
    pub(crate) fn upload_file(&self) -> ScratchFile {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        ScratchFile(
            self.dir
                .join(format!("upload-{}-{n}.anki2", std::process::id())),
        )
    }

    /// Where the download built for this exact state of a user's collection is cached.
    pub(crate) fn download_path(
        &self,
        user_id: u64,
        version: CollectionVersion,
        schema: u8,
    ) -> PathBuf {
        self.cached_users().insert(user_id);
        self.dir.join(format!(
            "{}s{schema}.anki2",
            download_stem(user_id, version)
        ))
    }

    /// A temporary path to build a download in before it is renamed into the cache.
    pub(crate) fn build_file(&self, user_id: u64) -> ScratchFile {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        ScratchFile(self.dir.join(format!("building-{user_id}-{n}.anki2")))
    }

    /// Forget every cached download of a user: their collection changed.
    pub fn drop_downloads(&self, user_id: u64) {
        if !self.cached_users().remove(&user_id) {
            return;
        }
        self.remove_downloads(user_id, None);
    }

    /// Forget a user's cached downloads of any collection version but `keep` (in either
    /// layout).
    pub(crate) fn drop_downloads_but(&self, user_id: u64, keep: CollectionVersion) {
        self.remove_downloads(user_id, Some(&download_stem(user_id, keep)));
    }

    fn remove_downloads(&self, user_id: u64, keep: Option<&str>) {
        let prefix = format!("download-{user_id}-");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && !keep.is_some_and(|keep| name.starts_with(keep)) {
                remove_with_sidecars(&entry.path());
            }
        }
    }
}

/// What a cached download was built from: the collection's generation, usn and modification
/// time. Any change to the collection changes one of them.
pub(crate) type CollectionVersion = (u64, i32, i64);

/// The start of the names of a collection version's cached files (one per layout).
fn download_stem(user_id: u64, (generation, usn, modified_ms): CollectionVersion) -> String {
    format!("download-{user_id}-{generation}-{usn}-{modified_ms}-")
}

impl Scratch {
    fn cached_users(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A scratch file removed (with SQLite's sidecar files) when dropped, whatever happened.
#[derive(Debug)]
pub(crate) struct ScratchFile(PathBuf);

impl ScratchFile {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        remove_with_sidecars(&self.0);
    }
}

fn remove_with_sidecars(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in SIDECARS {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_empties_the_directory_and_files_clean_up_after_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.redb");
        let scratch = Scratch::open(&db).unwrap();
        let leftover = scratch.upload_file();
        std::fs::write(leftover.path(), b"half an upload").unwrap();
        let path = leftover.path().to_path_buf();
        std::mem::forget(leftover); // as if the process had been killed
        let cached = scratch.download_path(1, (2, 3, 4), 11);
        std::fs::write(&cached, b"x").unwrap();
        let scratch = Scratch::open(&db).unwrap();
        assert!(!path.exists());
        assert!(!cached.exists());

        let file = scratch.upload_file();
        std::fs::write(file.path(), b"x").unwrap();
        let mut wal = file.path().as_os_str().to_os_string();
        wal.push("-wal");
        std::fs::write(&wal, b"x").unwrap();
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists());
        assert!(!PathBuf::from(wal).exists());

        let stray = scratch.build_file(9);
        std::fs::write(stray.path(), b"x").unwrap();
        assert_eq!(leftovers(&db).unwrap(), vec![stray.path().to_path_buf()]);
        drop(stray);

        std::fs::write(scratch.download_path(7, (1, 1, 1), 18), b"x").unwrap();
        assert!(
            leftovers(&db).unwrap().is_empty(),
            "a cached download is no leftover"
        );
        std::fs::write(scratch.download_path(8, (1, 1, 1), 18), b"x").unwrap();
        scratch.drop_downloads(7);
        assert!(!scratch.download_path(7, (1, 1, 1), 18).exists());
        assert!(scratch.download_path(8, (1, 1, 1), 18).exists());
        // Cached again after being dropped: dropped again.
        std::fs::write(scratch.download_path(7, (2, 2, 2), 18), b"x").unwrap();
        scratch.drop_downloads(7);
        assert!(!scratch.download_path(7, (2, 2, 2), 18).exists());
    }

    #[test]
    fn building_one_layout_keeps_the_other_of_the_same_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::open(&dir.path().join("x.redb")).unwrap();
        let (old, current) = ((1, 5, 50), (1, 6, 60));
        let files = [
            scratch.download_path(3, old, 11),
            scratch.download_path(3, old, 18),
            scratch.download_path(3, current, 11),
            scratch.download_path(4, old, 18),
        ];
        for file in &files {
            std::fs::write(file, b"x").unwrap();
        }
        scratch.drop_downloads_but(3, current);
        let exist: Vec<bool> = files.iter().map(|f| f.exists()).collect();
        assert_eq!(exist, [false, false, true, true]);
    }
}
