//! The official server's data folder, as that server lays it out (rslib `sync/http_server`):
//! a folder per user named after the user, holding `collection.anki2` (schema 18, WAL mode),
//! `media.db` (the server's media index) and `media/` (the files, under their own names).
//! The one place that knows those names, and how to tell whether that server still runs.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::MigrateError;

pub(crate) const COLLECTION: &str = "collection.anki2";
pub(crate) const MEDIA_DB: &str = "media.db";
pub(crate) const MEDIA_FOLDER: &str = "media";

/// SQLite's log beside a database whose last connection did not close cleanly (the official
/// server stops without closing on SIGTERM): it holds committed changes, so it travels with
/// its database.
const WAL_SUFFIX: &str = "-wal";

/// One user's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserFolder {
    pub name: String,
    pub path: PathBuf,
}

impl UserFolder {
    pub(crate) fn collection(&self) -> Option<PathBuf> {
        Some(self.path.join(COLLECTION)).filter(|p| p.is_file())
    }

    pub(crate) fn media_db(&self) -> Option<PathBuf> {
        Some(self.path.join(MEDIA_DB)).filter(|p| p.is_file())
    }

    /// Where the official server keeps the media file `name` (already checked to be a plain
    /// file name).
    pub(crate) fn media_file(&self, name: &str) -> PathBuf {
        self.path.join(MEDIA_FOLDER).join(name)
    }
}

/// The user folders in `dir`, by name: folders holding a collection or a media index (the
/// official server creates both on first use). Anything else, such as a database that lives
/// in the same folder, is left alone.
pub(crate) fn user_folders(dir: &Path) -> Result<Vec<UserFolder>, MigrateError> {
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(MigrateError::io(dir))? {
        let entry = entry.map_err(MigrateError::io(dir))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let folder = UserFolder { name, path };
        if folder.collection().is_some() || folder.media_db().is_some() {
            folders.push(folder);
        }
    }
    folders.sort_by(|a, b| a.name.cmp(&b.name));
    if folders.is_empty() {
        return Err(MigrateError::NoUsers(dir.to_path_buf()));
    }
    Ok(folders)
}

/// Fail if a process holds a lock on the folder's databases: the official server keeps its
/// media index locked (SQLite exclusive mode) for as long as it runs, and its collection
/// while open. Copying files it is writing would give a torn copy.
pub(crate) fn ensure_not_served(folder: &Path) -> Result<(), MigrateError> {
    for name in [MEDIA_DB, COLLECTION] {
        let path = folder.join(name);
        if locked_by_another_process(&path).map_err(MigrateError::io(&path))? {
            return Err(MigrateError::InUse(folder.to_path_buf()));
        }
    }
    Ok(())
}

/// Whether any process holds an fcntl lock (SQLite's kind) anywhere in the file. Asking
/// takes no lock and writes nothing, unlike opening the database would.
#[cfg(unix)]
fn locked_by_another_process(path: &Path) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // SAFETY: `flock` is a plain C struct for which all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // l_start = 0 and l_len = 0: the whole file, including SQLite's lock bytes past its end.
    // SAFETY: F_GETLK only reads and writes the struct passed, and `file` stays open for the
    // duration of the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i32::from(lock.l_type) != libc::F_UNLCK)
}

#[cfg(not(unix))]
fn locked_by_another_process(_path: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Copy a SQLite database and its write-ahead log, if it has one, to `dest` (and
/// `dest-wal`): SQLite reads the copy as the original would have been read, and the
/// original folder is never written to.
pub(crate) fn copy_database(source: &Path, dest: &Path) -> Result<(), MigrateError> {
    std::fs::copy(source, dest).map_err(MigrateError::io(source))?;
    let wal = with_suffix(source, WAL_SUFFIX);
    if wal.is_file() {
        std::fs::copy(&wal, with_suffix(dest, WAL_SUFFIX)).map_err(MigrateError::io(&wal))?;
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_with_a_collection_or_media_index_are_users() {
        let dir = tempfile::tempdir().unwrap();
        for (folder, file) in [("bob", COLLECTION), ("alice", MEDIA_DB), ("x.scratch", "f")] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
            std::fs::write(dir.path().join(folder).join(file), b"").unwrap();
        }
        std::fs::write(dir.path().join("ankisyncd.redb"), b"").unwrap();
        let names: Vec<_> = user_folders(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            user_folders(empty.path()),
            Err(MigrateError::NoUsers(_))
        ));
    }

    #[test]
    fn a_database_another_process_holds_in_exclusive_mode_is_in_use() {
        use std::io::{BufRead, Write};
        let dir = tempfile::tempdir().unwrap();
        ensure_not_served(dir.path()).unwrap();
        // Another process, holding the media index as the official server does.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1])\n\
                 c.execute('pragma locking_mode=exclusive')\n\
                 c.execute('pragma journal_mode=wal')\n\
                 c.execute('create table t (x)'); c.commit()\n\
                 print('ready', flush=True); sys.stdin.read()",
            )
            .arg(dir.path().join(MEDIA_DB))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        let held = ensure_not_served(dir.path());
        holder.stdin.take().unwrap().flush().unwrap();
        holder.wait().unwrap();
        assert!(matches!(held, Err(MigrateError::InUse(_))), "{held:?}");
        ensure_not_served(dir.path()).unwrap();
    }

    #[test]
    fn a_database_is_copied_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src.db");
        std::fs::write(&source, b"db").unwrap();
        std::fs::write(with_suffix(&source, WAL_SUFFIX), b"log").unwrap();
        let dest = dir.path().join("copy.db");
        copy_database(&source, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"db");
        assert_eq!(
            std::fs::read(with_suffix(&dest, WAL_SUFFIX)).unwrap(),
            b"log"
        );
    }
}
