//! `import`: take the official server's user folders into the database, in three steps.
//! First every folder is checked: its user known or declared, not already holding data, the
//! official server stopped. Then every folder is read: media files hashed and compared with
//! `media.db`, collections ingested into generations that are not visible yet; a failure
//! here abandons them and leaves every user as they were. Last, user by user, the media
//! index is written with its usns, the collection made live and the official key accepted.
//!
//! An import cut short in that last step leaves the users it finished, and for the user in
//! progress at most their media (unfinished generations are doomed at the next start):
//! running it again with `--force` completes it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};

use super::media_db::{self, MediaDbEntry};
use super::official::{self, UserFolder};
use super::MigrateError;
use crate::auth::{
    apply_env_users, hash_host_key, official_host_key, validate_user_name, EnvUser, EnvUserOutcome,
};
use crate::fullsync::{self, ChangeIndex, FullSyncError, Ingested, Scratch};
use crate::media::{filename_problem, Digests};
use crate::store::{
    Counts, HostKeyRecord, ImportedMedia, MediaBytes, MediaContent, Store, UserUpsert,
};

/// Files and bytes of media written per transaction: bounds the transaction, not the import.
const MEDIA_BATCH_FILES: usize = 1000;
const MEDIA_BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// The client version recorded with an accepted official host key (`user list` counts it as
/// one device).
const OFFICIAL_KEY_CLIENT: &str = "official server login (imported)";

pub(crate) struct ImportOptions<'a> {
    /// `SYNC_USER1..` as set now: users missing here are created from them, and the host
    /// keys the official server derived from them are accepted.
    pub declared: &'a [EnvUser],
    /// Replace the collection and media of users that already have some here.
    pub force: bool,
    /// Do not accept the official server's host keys: devices must log in again.
    pub require_login: bool,
    pub keep_generations: usize,
    pub now_ms: i64,
}

/// What was imported for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportedUser {
    pub name: String,
    /// Created from `SYNC_USERn` by this import.
    pub created: bool,
    /// Counts of the imported collection; `None` when the folder had none.
    pub collection: Option<Counts>,
    pub media_files: u64,
    pub media_bytes: u64,
    /// Devices logged in to the official server keep working without a new login.
    pub official_key: bool,
}

pub(crate) fn import_official(
    store: &Store,
    scratch: &Scratch,
    dir: &std::path::Path,
    options: &ImportOptions<'_>,
) -> Result<Vec<ImportedUser>, MigrateError> {
    let folders = official::user_folders(dir)?;
    for folder in &folders {
        validate_user_name(&folder.name).map_err(|reason| MigrateError::BadUserName {
            name: folder.name.clone(),
            reason,
        })?;
        official::ensure_not_served(&folder.path)?;
    }
    let declared: Vec<EnvUser> = options
        .declared
        .iter()
        .filter(|user| folders.iter().any(|f| f.name == user.name))
        .cloned()
        .collect();
    let unknown: Vec<String> = folders
        .iter()
        .filter(|f| !declared.iter().any(|u| u.name == f.name))
        .map(|f| Ok((f.name.clone(), store.user(&f.name)?.is_none())))
        .collect::<Result<Vec<_>, MigrateError>>()?
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
    if !unknown.is_empty() {
        return Err(MigrateError::UnknownUsers(unknown));
    }
    if !options.force {
        let mut busy = Vec::new();
        for folder in &folders {
            if let Some(user) = store.user(&folder.name)? {
                let record = store.collection(user.id)?;
                if record.is_some_and(|r| r.generation != 0 || r.media_usn != 0) {
                    busy.push(folder.name.clone());
                }
            }
        }
        if !busy.is_empty() {
            return Err(MigrateError::HasData(busy));
        }
    }
    let applied = apply_env_users(store, &declared, options.now_ms)?;

    // Everything is read and checked, and every collection ingested (not yet visible),
    // before anything becomes live: one bad folder leaves all users' data as it was.
    let mut prepared = Vec::with_capacity(folders.len());
    for folder in &folders {
        match prepare(store, scratch, folder, options) {
            Ok(user) => prepared.push(user),
            Err(e) => {
                for user in prepared {
                    if let Some(ingested) = user.collection {
                        store.abandon_generation(user.user_id, ingested.generation.id)?;
                    }
                }
                return Err(e);
            }
        }
    }

    let mut imported = Vec::with_capacity(prepared.len());
    for user in prepared {
        let name = user.folder.name.clone();
        let counts = user.collection.as_ref().map(|c| c.record.counts);
        user.media.store(store, user.user_id, user.folder)?;
        make_live(store, user.user_id, user.collection, options)?;
        let declaration = declared.iter().find(|u| u.name == name);
        let official_key = match (declaration, options.require_login) {
            (Some(declaration), false) => {
                accept_official_key(store, user.user_id, declaration, options.now_ms)?;
                true
            }
            _ => false,
        };
        tracing::info!(
            user = %name,
            notes = counts.map_or(0, |c| c.notes),
            media_files = user.media.files,
            "imported"
        );
        imported.push(ImportedUser {
            created: applied.iter().any(|(applied, outcome)| {
                applied == &name
                    && matches!(outcome, EnvUserOutcome::Applied(UserUpsert::Created { .. }))
            }),
            name,
            collection: counts,
            media_files: user.media.files,
            media_bytes: user.media.bytes,
            official_key,
        });
    }
    Ok(imported)
}

/// A user ready to be written: media checked, collection ingested but not live.
struct Prepared<'a> {
    folder: &'a UserFolder,
    user_id: u64,
    media: MediaPlan,
    collection: Option<Ingested>,
}

fn prepare<'a>(
    store: &Store,
    scratch: &Scratch,
    folder: &'a UserFolder,
    options: &ImportOptions<'_>,
) -> Result<Prepared<'a>, MigrateError> {
    let user_id = store
        .user(&folder.name)?
        .ok_or_else(|| MigrateError::UnknownUsers(vec![folder.name.clone()]))?
        .id;
    let media = MediaPlan::read(scratch, folder)?;
    let collection = ingest_collection(store, scratch, folder, user_id, options)?;
    Ok(Prepared {
        folder,
        user_id,
        media,
        collection,
    })
}

/// Ingest the folder's collection (a copy of it, log included) into a generation that is
/// not live yet. Every row goes into the changes index: devices that last synced with the
/// official server at any usn come back with normal syncs.
fn ingest_collection(
    store: &Store,
    scratch: &Scratch,
    folder: &UserFolder,
    user_id: u64,
    options: &ImportOptions<'_>,
) -> Result<Option<Ingested>, MigrateError> {
    let Some(path) = folder.collection() else {
        return Ok(None);
    };
    let copy = scratch.upload_file();
    official::copy_database(&path, copy.path())?;
    fullsync::ingest(
        store,
        user_id,
        copy.path(),
        ChangeIndex::All,
        None,
        options.now_ms,
    )
    .map(Some)
    .map_err(|e| match e {
        FullSyncError::Corrupt(reason) => MigrateError::Collection {
            user: folder.name.clone(),
            reason,
        },
        other => other.into(),
    })
}

/// Make the ingested collection live; a folder without one leaves the user with an empty
/// collection, as the official server would create at the first sync.
fn make_live(
    store: &Store,
    user_id: u64,
    ingested: Option<Ingested>,
    options: &ImportOptions<'_>,
) -> Result<(), MigrateError> {
    match ingested {
        Some(ingested) => fullsync::activate(store, user_id, ingested, options.keep_generations)?,
        None => {
            store.reset_collection(user_id, options.now_ms, options.keep_generations)?;
        }
    }
    Ok(())
}

/// Register the key the official server gave this user's devices, so they keep syncing
/// without a new login.
fn accept_official_key(
    store: &Store,
    user_id: u64,
    declaration: &EnvUser,
    now_ms: i64,
) -> Result<(), MigrateError> {
    let record = HostKeyRecord {
        user_id,
        created: now_ms / 1000,
        client_version: OFFICIAL_KEY_CLIENT.to_string(),
        last_seen: 0,
    };
    store.add_host_key(&hash_host_key(&official_host_key(declaration)), &record)?;
    Ok(())
}

/// A user's media index as the official server had it, every present file checked against
/// its recorded SHA-1.
struct MediaPlan {
    entries: Vec<ImportedMedia>,
    /// The user's media usn: what `meta` and `msync/begin` reported.
    last_usn: i32,
    files: u64,
    bytes: u64,
}

impl MediaPlan {
    fn read(scratch: &Scratch, folder: &UserFolder) -> Result<MediaPlan, MigrateError> {
        let user = &folder.name;
        let Some(path) = folder.media_db() else {
            return Ok(MediaPlan {
                entries: Vec::new(),
                last_usn: 0,
                files: 0,
                bytes: 0,
            });
        };
        let copy = scratch.upload_file();
        official::copy_database(&path, copy.path())?;
        let index = media_db::read(copy.path()).map_err(|reason| MigrateError::MediaDb {
            user: user.clone(),
            reason,
        })?;
        let mut usns = HashSet::new();
        let mut plan = MediaPlan {
            entries: Vec::with_capacity(index.entries.len()),
            last_usn: index.last_usn,
            files: 0,
            bytes: 0,
        };
        for entry in index.entries {
            let problem = |problem: String| MigrateError::MediaFile {
                user: user.clone(),
                name: entry.name.clone(),
                problem,
            };
            if let Some(why) = filename_problem(&entry.name) {
                return Err(problem(format!("not a usable name ({why})")));
            }
            if !usns.insert(entry.usn) {
                return Err(problem(format!("usn {} is used twice", entry.usn)));
            }
            plan.last_usn = plan.last_usn.max(entry.usn);
            let content = match entry.sha1 {
                None => None,
                Some(_) => Some(check_file(folder, &entry, plan.entries.len()).map_err(problem)?),
            };
            if let Some(content) = &content {
                plan.files += 1;
                plan.bytes += content.size;
            }
            plan.entries.push(ImportedMedia {
                name: entry.name,
                usn: entry.usn,
                content,
            });
        }
        if plan.last_usn != index.last_usn {
            tracing::warn!(
                user = %user,
                recorded = index.last_usn,
                highest = plan.last_usn,
                "media.db records a media usn below its files' usns; using the highest"
            );
        }
        Ok(plan)
    }

    /// Write the index in batches, replacing what the user had; the last batch sets the
    /// media usn.
    fn store(&self, store: &Store, user_id: u64, folder: &UserFolder) -> Result<(), MigrateError> {
        let status = store.media_status(user_id)?;
        if status.is_some_and(|s| s.last_usn != 0 || s.files != 0) {
            store.clear_media(user_id)?;
        }
        let mut files = FolderFiles {
            folder,
            entries: &self.entries,
        };
        let mut start = 0;
        loop {
            let mut end = start;
            let mut bytes = 0;
            while end < self.entries.len()
                && end - start < MEDIA_BATCH_FILES
                && (end == start || bytes < MEDIA_BATCH_BYTES)
            {
                bytes += self.entries[end].content.map_or(0, |c| c.size);
                end += 1;
            }
            let last = (end == self.entries.len()).then_some(self.last_usn);
            store.import_media(user_id, &self.entries[start..end], &mut files, last)?;
            if last.is_some() {
                return Ok(());
            }
            start = end;
        }
    }
}

/// Hash a present file and compare it with the index: the official server would serve
/// these bytes, so they must be the ones the index (and every device) knows.
fn check_file(
    folder: &UserFolder,
    entry: &MediaDbEntry,
    index: usize,
) -> Result<MediaContent, String> {
    let path = folder.media_file(&entry.name);
    let mut file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut digests = Digests::default();
    let size = io::copy(&mut file, &mut digests).map_err(|e| format!("{}: {e}", path.display()))?;
    let (sha1, blake3) = digests.finish();
    if Some(sha1) != entry.sha1 || size == 0 {
        return Err(format!(
            "{} does not match media.db (its SHA-1 or size differs); run Check Media on a \
             device, sync it with the official server, then import again",
            path.display()
        ));
    }
    Ok(MediaContent {
        sha1,
        blake3,
        size,
        entry: index,
    })
}

/// The bytes of a user's media files, read from the official folder when the store needs
/// them (files already stored for another user are not read again).
struct FolderFiles<'a> {
    folder: &'a UserFolder,
    entries: &'a [ImportedMedia],
}

impl MediaBytes for FolderFiles<'_> {
    fn copy_entry(&mut self, entry: usize, out: &mut dyn Write) -> io::Result<()> {
        let name = &self
            .entries
            .get(entry)
            .ok_or_else(|| io::Error::other(format!("no media entry {entry}")))?
            .name;
        let mut file = File::open(self.folder.media_file(name))?;
        io::copy(&mut file, out)?;
        Ok(())
    }
}
