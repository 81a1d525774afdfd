//! `export`: write every user out in the official server's layout, so that server, started
//! on the folder, serves the devices without a full sync. Each user's folder is written
//! under a temporary name, synced to disk, then renamed into place: a half-written export
//! never looks complete, and an existing folder is replaced only when the new one is whole.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::media_db::{self, MediaDbEntry};
use super::official::{self, COLLECTION, MEDIA_DB, MEDIA_FOLDER};
use super::MigrateError;
use crate::fullsync::write_schema18;
use crate::media::filename_problem;
use crate::store::{Counts, Store};

/// What was exported for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportedUser {
    pub name: String,
    /// Counts of the collection written; `None` when the user has none yet.
    pub collection: Option<Counts>,
    pub media_files: u64,
    pub media_bytes: u64,
}

pub(crate) fn export_official(
    store: &Store,
    dir: &Path,
    force: bool,
) -> Result<Vec<ExportedUser>, MigrateError> {
    fs::create_dir_all(dir).map_err(MigrateError::io(dir))?;
    let users = store.list_users()?;
    let mut existing = Vec::new();
    for user in &users {
        if let Some(reason) = folder_name_problem(&user.name) {
            return Err(MigrateError::BadUserName {
                name: user.name.clone(),
                reason: reason.into(),
            });
        }
        let target = dir.join(&user.name);
        official::ensure_not_served(&target)?;
        let occupied = fs::read_dir(&target).is_ok_and(|mut entries| entries.next().is_some());
        if occupied {
            existing.push(target);
        }
    }
    if !existing.is_empty() && !force {
        return Err(MigrateError::TargetExists(existing));
    }
    let mut exported = Vec::with_capacity(users.len());
    for user in users {
        let staging = dir.join(format!(".{}.ankisyncd-export", user.name));
        remove_dir(&staging)?;
        let report = write_user(store, user.id, &user.name, &staging)?;
        replace(&staging, &dir.join(&user.name), dir)?;
        exported.push(report);
    }
    sync_dir(dir)?;
    Ok(exported)
}

/// A user name the official server can hold as a folder of its data folder.
fn folder_name_problem(name: &str) -> Option<&'static str> {
    if name.starts_with('.') {
        Some("a folder name starting with '.' is hidden and taken for temporary files")
    } else if name.contains(['/', '\\', '\0']) {
        Some("contains a path separator")
    } else {
        None
    }
}

fn write_user(
    store: &Store,
    user_id: u64,
    name: &str,
    folder: &Path,
) -> Result<ExportedUser, MigrateError> {
    let media_folder = folder.join(MEDIA_FOLDER);
    fs::create_dir_all(&media_folder).map_err(MigrateError::io(&media_folder))?;

    let snapshot = store.snapshot()?;
    let record = snapshot
        .collection(user_id)?
        .ok_or_else(|| MigrateError::UnknownUsers(vec![name.to_string()]))?;
    let collection = if record.generation == 0 {
        None
    } else {
        let path = folder.join(COLLECTION);
        write_schema18(&snapshot, &record, &path)?;
        sync_file(&path)?;
        Some(record.counts)
    };

    let media = store.media_snapshot()?;
    let mut entries = Vec::new();
    let (mut files, mut bytes) = (0, 0);
    for entry in media.entries(user_id)? {
        let (file_name, record) = entry?;
        if let Some(problem) = filename_problem(&file_name) {
            return Err(MigrateError::MediaFile {
                user: name.to_string(),
                name: file_name,
                problem: problem.into(),
            });
        }
        if let Some(blob) = record.blob {
            let path = media_folder.join(&file_name);
            let mut out = File::create(&path).map_err(MigrateError::io(&path))?;
            io::copy(&mut media.blob_reader(&blob)?, &mut out).map_err(MigrateError::io(&path))?;
            out.sync_all().map_err(MigrateError::io(&path))?;
            files += 1;
            bytes += record.size;
        }
        entries.push(MediaDbEntry {
            name: file_name,
            sha1: record.sha1,
            size: record.size,
            usn: record.usn,
        });
    }
    let db = folder.join(MEDIA_DB);
    media_db::write(&db, entries, record.media_usn, bytes, files).map_err(|e| {
        MigrateError::MediaDb {
            user: name.to_string(),
            reason: e.to_string(),
        }
    })?;
    sync_file(&db)?;
    sync_dir(&media_folder)?;
    sync_dir(folder)?;
    tracing::info!(user = %name, media_files = files, "exported");
    Ok(ExportedUser {
        name: name.to_string(),
        collection,
        media_files: files,
        media_bytes: bytes,
    })
}

/// Put the finished `staging` folder at `target`, replacing what was there only once the
/// new folder is in place.
fn replace(staging: &Path, target: &Path, dir: &Path) -> Result<(), MigrateError> {
    let old = target.exists().then(|| {
        let mut name = target.as_os_str().to_os_string();
        name.push(".ankisyncd-old");
        PathBuf::from(name)
    });
    if let Some(old) = &old {
        remove_dir(old)?;
        fs::rename(target, old).map_err(MigrateError::io(target))?;
    }
    fs::rename(staging, target).map_err(MigrateError::io(staging))?;
    sync_dir(dir)?;
    if let Some(old) = &old {
        remove_dir(old)?;
    }
    Ok(())
}

fn remove_dir(path: &Path) -> Result<(), MigrateError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MigrateError::io(path)(e)),
    }
}

fn sync_file(path: &Path) -> Result<(), MigrateError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(MigrateError::io(path))
}

/// Make renames and new entries in a directory durable.
fn sync_dir(path: &Path) -> Result<(), MigrateError> {
    sync_file(path)
}
