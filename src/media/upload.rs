//! `uploadChanges`: a zip of at most 25 changes, applied all or nothing (protocol.md §5.4),
//! or refused whole when it would take the user over the media quota.
//! The body is already decompressed, in memory when small, else in a scratch file; it is read
//! twice, entry by entry: first every entry is checked and hashed (names, `_meta` against
//! the entries, declared against real sizes, compression ratio, CRC), then the store takes
//! the changes in one transaction, reading again only the bytes of files it does not hold yet.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, Write};
use std::path::PathBuf;

use zip::ZipArchive;

use serde::Serialize;

use super::{filename, BadUpload, Digests, JsonRefusal, JsonResult, MediaError, MediaState};
use super::{MAX_FILES_PER_ZIP, MAX_FILE_SIZE};
use crate::store::{MediaApplied, MediaBytes, MediaContent, MediaUpdate, Store};

/// Most bytes of `_meta` read, as on the official server; a longer one fails to parse.
const MAX_META_BYTES: u64 = 50 * 1024;
/// A compressed entry may expand at most this many times...
const MAX_RATIO: u64 = 100;
/// ...once it declares more than this: small text-like files may compress very well, and
/// current clients store entries uncompressed anyway (ratio 1).
const RATIO_FLOOR: u64 = 1024 * 1024;

/// What `uploadChanges` answers: `[processed, current media usn]`, or the reason the upload
/// was refused (a quota), which the client shows.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum UploadChangesReply {
    Applied(JsonResult<(usize, i32)>),
    Refused(JsonRefusal),
}

/// Where an upload zip is.
#[derive(Debug)]
pub(crate) enum UploadSource {
    Memory(Vec<u8>),
    File(PathBuf),
}

/// Take in an upload zip; `quota` is the user's media quota in bytes.
pub(crate) fn upload_changes(
    store: &Store,
    state: &MediaState,
    zip: UploadSource,
    quota: Option<u64>,
) -> Result<UploadChangesReply, MediaError> {
    match zip {
        UploadSource::Memory(bytes) => take_in(store, state, Cursor::new(bytes), quota),
        UploadSource::File(path) => {
            let file = File::open(path).map_err(MediaError::Scratch)?;
            take_in(store, state, io::BufReader::new(file), quota)
        }
    }
}

fn take_in(
    store: &Store,
    state: &MediaState,
    reader: impl Read + Seek,
    quota: Option<u64>,
) -> Result<UploadChangesReply, MediaError> {
    let mut zip = UploadZip::open(reader)?;
    let updates = zip.check()?;
    let outcome = match store.apply_media_updates(state.user.id, &updates, &mut zip, quota)? {
        MediaApplied::Done(outcome) => outcome,
        MediaApplied::UnknownUser => return Err(MediaError::UnknownUser),
        MediaApplied::OverQuota(exceeded) => {
            let err = exceeded.media_message();
            tracing::warn!(user = %state.user.name, "media upload refused: {err}");
            return Ok(UploadChangesReply::Refused(JsonRefusal { err }));
        }
    };
    if outcome.changed > 0 {
        tracing::debug!(
            user = %state.user.name,
            changes = updates.len(),
            stored = outcome.changed,
            usn = outcome.last_usn,
            "media upload applied"
        );
    }
    Ok(UploadChangesReply::Applied(JsonResult::ok((
        outcome.processed,
        outcome.last_usn,
    ))))
}

/// An upload zip being read.
pub struct UploadZip<R> {
    archive: ZipArchive<R>,
}

impl<R: Read + Seek> UploadZip<R> {
    pub fn open(reader: R) -> Result<Self, BadUpload> {
        let archive = ZipArchive::new(reader).map_err(|e| BadUpload::NotAZip(e.to_string()))?;
        if archive.len() > MAX_FILES_PER_ZIP + 1 {
            return Err(BadUpload::TooManyEntries(archive.len()));
        }
        Ok(UploadZip { archive })
    }

    /// Check every change and hash every file, in `_meta` order; the first problem refuses
    /// the whole zip.
    pub fn check(&mut self) -> Result<Vec<MediaUpdate>, BadUpload> {
        let meta = self.read_meta()?;
        if meta.len() > MAX_FILES_PER_ZIP {
            return Err(BadUpload::TooManyFiles(meta.len()));
        }
        let mut updates = Vec::with_capacity(meta.len());
        for (name, entry) in meta {
            if let Some(why) = filename::problem(&name) {
                return Err(BadUpload::BadName { name, why });
            }
            // Older clients and AnkiDroid mark a deletion with "" rather than null.
            let content = match entry.filter(|entry| !entry.is_empty()) {
                None => None,
                Some(entry) => Some(self.check_entry(&entry)?),
            };
            updates.push(MediaUpdate { name, content });
        }
        Ok(updates)
    }

    fn read_meta(&mut self) -> Result<Vec<(String, Option<String>)>, BadUpload> {
        let meta = match self.archive.by_name("_meta") {
            Ok(meta) => meta,
            Err(zip::result::ZipError::FileNotFound) => return Err(BadUpload::NoMeta),
            Err(e) => {
                return Err(BadUpload::Corrupt {
                    name: "_meta".into(),
                    reason: e.to_string(),
                })
            }
        };
        let mut text = Vec::new();
        meta.take(MAX_META_BYTES)
            .read_to_end(&mut text)
            .map_err(|e| BadUpload::Corrupt {
                name: "_meta".into(),
                reason: e.to_string(),
            })?;
        serde_json::from_slice(&text).map_err(|e| BadUpload::BadMeta(e.to_string()))
    }

    /// Read one entry through, trusting none of its header: the size is capped and compared,
    /// the ratio bounded, and the CRC checked by the zip reader at the end.
    fn check_entry(&mut self, entry: &str) -> Result<MediaContent, BadUpload> {
        let index = self
            .archive
            .index_for_name(entry)
            .ok_or_else(|| BadUpload::MissingEntry(entry.to_string()))?;
        let corrupt = |e: &dyn std::fmt::Display| BadUpload::Corrupt {
            name: entry.to_string(),
            reason: e.to_string(),
        };
        let file = self.archive.by_index(index).map_err(|e| corrupt(&e))?;
        let declared = file.size();
        let compressed = file.compressed_size();
        if declared > MAX_FILE_SIZE {
            return Err(BadUpload::TooLarge {
                name: entry.to_string(),
                size: declared,
            });
        }
        if declared > RATIO_FLOOR && declared / MAX_RATIO > compressed {
            return Err(BadUpload::Bomb {
                name: entry.to_string(),
                compressed,
                declared,
            });
        }
        let mut hashes = Digests::default();
        let actual =
            io::copy(&mut file.take(declared + 1), &mut hashes).map_err(|e| corrupt(&e))?;
        if actual != declared {
            return Err(BadUpload::SizeMismatch {
                name: entry.to_string(),
                declared,
                actual,
            });
        }
        if actual == 0 {
            return Err(BadUpload::EmptyEntry(entry.to_string()));
        }
        let (sha1, blake3) = hashes.finish();
        Ok(MediaContent {
            sha1,
            blake3,
            size: actual,
            entry: index,
        })
    }
}

impl<R: Read + Seek> MediaBytes for UploadZip<R> {
    fn copy_entry(&mut self, entry: usize, out: &mut dyn Write) -> io::Result<()> {
        let file = self.archive.by_index(entry).map_err(io::Error::other)?;
        // Checked before, capped again: the store compares length and hash too.
        io::copy(&mut file.take(MAX_FILE_SIZE + 1), out)?;
        Ok(())
    }
}
