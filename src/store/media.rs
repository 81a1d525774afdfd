//! Media rows: each user's media index (`MEDIA`, `MEDIA_USN`, `MEDIA_TOTALS`, the media usn in
//! the user's collection record) and the content-addressed blob store shared by all users
//! (`BLOBS`, `BLOB_REFS`). One upload zip is one write transaction with immediate durability:
//! it writes the new blobs, moves the reference counts, frees blobs nobody refers to any
//! more, and stamps usns, so a crash leaves either all of a zip or none of it.
//!
//! It must never hold a whole file in memory (bytes move in chunks of at most
//! [`BLOB_CHUNK`]) and never learn where the bytes come from: the caller streams them in
//! through [`MediaBytes`], already validated.

use std::io::{self, Read, Write};

use redb::{ReadOnlyTable, ReadableTable, ReadableTableMetadata, Table};

use super::collections::read_record;
use super::tables::{
    CollectionRecord, MediaRecord, BLOBS, BLOB_CHUNK, BLOB_REFS, COLLECTIONS, MEDIA, MEDIA_TOTALS,
    MEDIA_USN,
};
use super::{decode, encode, Store, StoreError};
use crate::quota::Exceeded;

/// A file's state as `mediaChanges` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaChange {
    pub name: String,
    pub usn: i32,
    /// `None` for a deleted file.
    pub sha1: Option<[u8; 20]>,
}

/// A user's media as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaStatus {
    pub last_usn: i32,
    /// Present (not deleted) files.
    pub files: u64,
    pub bytes: u64,
}

/// One change of an upload, checked by the caller: `content` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUpdate {
    /// NFC, validated.
    pub name: String,
    pub content: Option<MediaContent>,
}

/// A file of another server's media index (`import`), keeping the usn it had there;
/// `content` is `None` for a deleted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedMedia {
    /// NFC, validated.
    pub name: String,
    pub usn: i32,
    pub content: Option<MediaContent>,
}

/// The bytes of an added file, described by hashes the caller computed while validating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaContent {
    pub sha1: [u8; 20],
    pub blake3: [u8; 32],
    pub size: u64,
    /// Which entry of the caller's [`MediaBytes`] holds the bytes.
    pub entry: usize,
}

/// Where the bytes of an upload come from (the zip in a scratch file). Asked only for blobs
/// not already stored, so an identical file costs no second copy.
pub trait MediaBytes {
    /// Write all bytes of `entry` into `out`.
    fn copy_entry(&mut self, entry: usize, out: &mut dyn Write) -> io::Result<()>;
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Every change was handled (no-ops included).
    pub processed: usize,
    /// The media usn after the transaction.
    pub last_usn: i32,
    /// Changes that took a usn.
    pub changed: usize,
}

/// What [`Store::apply_media_updates`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaApplied {
    Done(UploadOutcome),
    /// The user was removed meanwhile; nothing was written.
    UnknownUser,
    /// The upload would break the user's media quota; nothing was written.
    OverQuota(Exceeded),
}

/// How much the blob store holds, across all users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobStats {
    pub blobs: u64,
    pub chunks: u64,
    pub bytes: u64,
}

fn media_key_range(user_id: u64) -> std::ops::RangeInclusive<(u64, i32)> {
    (user_id, i32::MIN)..=(user_id, i32::MAX)
}

impl Store {
    /// The user's media usn and totals; `None` if the user does not exist (any more).
    pub fn media_status(&self, user_id: u64) -> Result<Option<MediaStatus>, StoreError> {
        let tx = self.read()?;
        let collections = tx.open_table(COLLECTIONS)?;
        let found = collections.get(user_id)?;
        let Some(record) = found
            .map(|v| decode::<CollectionRecord>(v.value(), "collections", user_id))
            .transpose()?
        else {
            return Ok(None);
        };
        let totals = tx.open_table(MEDIA_TOTALS)?;
        let (files, bytes) = totals.get(user_id)?.map(|v| v.value()).unwrap_or((0, 0));
        Ok(Some(MediaStatus {
            last_usn: record.media_usn,
            files,
            bytes,
        }))
    }

    /// Files whose last change has a usn above `after_usn`, ascending by usn, at most
    /// `limit` of them.
    pub fn media_changes(
        &self,
        user_id: u64,
        after_usn: i32,
        limit: usize,
    ) -> Result<Vec<MediaChange>, StoreError> {
        let tx = self.read()?;
        let by_usn = tx.open_table(MEDIA_USN)?;
        let media = tx.open_table(MEDIA)?;
        let mut out = Vec::new();
        let Some(first) = after_usn.checked_add(1) else {
            return Ok(out);
        };
        for entry in by_usn.range((user_id, first)..=(user_id, i32::MAX))? {
            if out.len() >= limit {
                break;
            }
            let (key, name) = entry?;
            let name = name.value().to_string();
            let record = media
                .get((user_id, name.as_str()))?
                .map(|v| decode::<MediaRecord>(v.value(), "media", &name))
                .transpose()?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "media_usn",
                    key: format!("{user_id}/{}", key.value().1),
                    reason: format!("names {name:?}, which has no media row"),
                })?;
            out.push(MediaChange {
                name,
                usn: record.usn,
                sha1: record.sha1,
            });
        }
        Ok(out)
    }

    /// Apply one upload's changes, in order, in one durable transaction. Each change that
    /// alters the index (a new or different file, the deletion of a present one) takes the
    /// next usn; the others change nothing. Nothing is written if the user was removed
    /// meanwhile, or if the result would break the media quota `limit` (bytes).
    pub fn apply_media_updates(
        &self,
        user_id: u64,
        updates: &[MediaUpdate],
        bytes: &mut dyn MediaBytes,
        limit: Option<u64>,
    ) -> Result<MediaApplied, StoreError> {
        // Immediate durability (redb's default): the client marks these files synced as soon
        // as it has the reply.
        let tx = self.write()?;
        let outcome = {
            let mut collections = tx.open_table(COLLECTIONS)?;
            let Some(mut collection) = read_record(&collections, user_id)? else {
                return Ok(MediaApplied::UnknownUser);
            };
            let mut media = tx.open_table(MEDIA)?;
            let mut by_usn = tx.open_table(MEDIA_USN)?;
            let mut totals_table = tx.open_table(MEDIA_TOTALS)?;
            let mut blobs = tx.open_table(BLOBS)?;
            let mut refs = tx.open_table(BLOB_REFS)?;
            // (files, bytes) of the user's present media.
            let mut sums = totals_table
                .get(user_id)?
                .map(|v| v.value())
                .unwrap_or((0, 0));
            let bytes_before = sums.1;
            let mut changed = 0;
            for update in updates {
                let current = media
                    .get((user_id, update.name.as_str()))?
                    .map(|v| decode::<MediaRecord>(v.value(), "media", &update.name))
                    .transpose()?;
                let present = current.as_ref().filter(|r| r.blob.is_some());
                let unchanged = match (&update.content, present) {
                    (None, None) => true,
                    (Some(new), Some(old)) => old.sha1 == Some(new.sha1),
                    _ => false,
                };
                if unchanged {
                    continue;
                }
                let usn = collection.media_usn.checked_add(1).ok_or_else(|| {
                    StoreError::Encode(format!("media usn of user {user_id} overflows"))
                })?;
                if let Some(old) = present {
                    sums.0 = sums.0.saturating_sub(1);
                    sums.1 = sums.1.saturating_sub(old.size);
                    if let Some(blob) = old.blob {
                        release_blob(&mut refs, &mut blobs, &blob)?;
                    }
                }
                if let Some(old) = &current {
                    by_usn.remove((user_id, old.usn))?;
                }
                let content = update.content.as_ref();
                let record = take_in(content, usn, &mut refs, &mut blobs, bytes, &mut sums)?;
                media.insert((user_id, update.name.as_str()), encode(&record)?.as_slice())?;
                by_usn.insert((user_id, usn), update.name.as_str())?;
                collection.media_usn = usn;
                changed += 1;
            }
            if crate::quota::breaks(limit, bytes_before, sums.1) {
                // Dropping the transaction discards the blobs written above.
                return Ok(MediaApplied::OverQuota(Exceeded {
                    limit: limit.unwrap_or(0),
                    current: bytes_before,
                    after: Some(sums.1),
                }));
            }
            if changed > 0 {
                totals_table.insert(user_id, sums)?;
                collections.insert(user_id, encode(&collection)?.as_slice())?;
            }
            UploadOutcome {
                processed: updates.len(),
                last_usn: collection.media_usn,
                changed,
            }
        };
        self.commit(tx)?;
        Ok(MediaApplied::Done(outcome))
    }

    /// Forget every media file of a user (index, totals, blob references) and set their
    /// media usn back to 0, in one transaction: what an import with `--force` replaces.
    pub fn clear_media(&self, user_id: u64) -> Result<(), StoreError> {
        let tx = self.write()?;
        remove_user_media(&tx, user_id)?;
        {
            let mut collections = tx.open_table(COLLECTIONS)?;
            if let Some(mut record) = read_record(&collections, user_id)? {
                record.media_usn = 0;
                collections.insert(user_id, encode(&record)?.as_slice())?;
            }
        }
        self.commit(tx)?;
        Ok(())
    }

    /// Add files to a user's media index as another server had them, each with the usn it
    /// had there, in one transaction; `last_usn`, when given, becomes the user's media usn
    /// (an import's last batch sets it). Names and usns must be new to the index. Returns
    /// false (and writes nothing) if the user does not exist.
    pub fn import_media(
        &self,
        user_id: u64,
        entries: &[ImportedMedia],
        bytes: &mut dyn MediaBytes,
        last_usn: Option<i32>,
    ) -> Result<bool, StoreError> {
        let tx = self.write()?;
        {
            let mut collections = tx.open_table(COLLECTIONS)?;
            let Some(mut collection) = read_record(&collections, user_id)? else {
                return Ok(false);
            };
            let mut media = tx.open_table(MEDIA)?;
            let mut by_usn = tx.open_table(MEDIA_USN)?;
            let mut totals = tx.open_table(MEDIA_TOTALS)?;
            let mut blobs = tx.open_table(BLOBS)?;
            let mut refs = tx.open_table(BLOB_REFS)?;
            let mut sums = totals.get(user_id)?.map(|v| v.value()).unwrap_or((0, 0));
            for entry in entries {
                let clash = |table: &'static str, reason: &str| StoreError::Corrupt {
                    table,
                    key: format!("{user_id}/{}", entry.name),
                    reason: format!("imported media entry {reason}"),
                };
                if media.get((user_id, entry.name.as_str()))?.is_some() {
                    return Err(clash("media", "names a file already in the index"));
                }
                if by_usn.get((user_id, entry.usn))?.is_some() {
                    return Err(clash("media_usn", "has a usn another file has"));
                }
                let content = entry.content.as_ref();
                let record = take_in(content, entry.usn, &mut refs, &mut blobs, bytes, &mut sums)?;
                media.insert((user_id, entry.name.as_str()), encode(&record)?.as_slice())?;
                by_usn.insert((user_id, entry.usn), entry.name.as_str())?;
            }
            totals.insert(user_id, sums)?;
            if let Some(last_usn) = last_usn {
                collection.media_usn = last_usn;
                collections.insert(user_id, encode(&collection)?.as_slice())?;
            }
        }
        self.commit(tx)?;
        Ok(true)
    }

    /// A consistent view of the media of every user, for building a download while uploads
    /// go on.
    pub fn media_snapshot(&self) -> Result<MediaSnapshot, StoreError> {
        let tx = self.read()?;
        Ok(MediaSnapshot {
            media: tx.open_table(MEDIA)?,
            blobs: tx.open_table(BLOBS)?,
        })
    }

    /// Totals of the blob store (all users): the operator's view, and the tests' proof of
    /// deduplication.
    pub fn blob_stats(&self) -> Result<BlobStats, StoreError> {
        let tx = self.read()?;
        let refs = tx.open_table(BLOB_REFS)?;
        let blobs = tx.open_table(BLOBS)?;
        let mut bytes = 0u64;
        for entry in blobs.iter()? {
            let (_, chunk) = entry?;
            bytes += chunk.value().len() as u64;
        }
        Ok(BlobStats {
            blobs: refs.len()?,
            chunks: blobs.len()?,
            bytes,
        })
    }
}

/// The index row of a file added (`content`) or deleted (`None`) with `usn`: an added file
/// takes a reference to its blob (written first if nobody has it) and counts in `totals`
/// (files, bytes).
fn take_in(
    content: Option<&MediaContent>,
    usn: i32,
    refs: &mut Table<[u8; 32], u64>,
    blobs: &mut Table<([u8; 32], u32), &[u8]>,
    bytes: &mut dyn MediaBytes,
    totals: &mut (u64, u64),
) -> Result<MediaRecord, StoreError> {
    let Some(content) = content else {
        return Ok(MediaRecord {
            sha1: None,
            usn,
            blob: None,
            size: 0,
        });
    };
    retain_blob(refs, blobs, content, bytes)?;
    totals.0 += 1;
    totals.1 += content.size;
    Ok(MediaRecord {
        sha1: Some(content.sha1),
        usn,
        blob: Some(content.blake3),
        size: content.size,
    })
}

/// Add a reference to the blob of `content`, writing its chunks first if nobody has it yet.
fn retain_blob(
    refs: &mut Table<[u8; 32], u64>,
    blobs: &mut Table<([u8; 32], u32), &[u8]>,
    content: &MediaContent,
    bytes: &mut dyn MediaBytes,
) -> Result<(), StoreError> {
    let count = refs.get(&content.blake3)?.map(|v| v.value()).unwrap_or(0);
    if count == 0 {
        let mut writer = ChunkWriter {
            blobs,
            key: content.blake3,
            hasher: blake3::Hasher::new(),
            buffer: Vec::with_capacity(BLOB_CHUNK),
            next_chunk: 0,
            written: 0,
            failure: None,
        };
        let copied = bytes.copy_entry(content.entry, &mut writer);
        let copied = copied.and_then(|()| writer.flush());
        if let Some(store_error) = writer.failure.take() {
            return Err(store_error);
        }
        copied.map_err(|source| StoreError::Io {
            path: "media upload".into(),
            source,
        })?;
        // The caller hashed these bytes once already; a difference means the source changed
        // under us, and storing them would corrupt every user of this blob.
        let actual: [u8; 32] = writer.hasher.finalize().into();
        if actual != content.blake3 || writer.written != content.size {
            return Err(StoreError::Corrupt {
                table: "blobs",
                key: hex::encode(content.blake3),
                reason: format!(
                    "upload changed while being stored ({} bytes, expected {})",
                    writer.written, content.size
                ),
            });
        }
    }
    refs.insert(&content.blake3, count + 1)?;
    Ok(())
}

/// Drop a reference to `blob`; the last one deletes its chunks.
fn release_blob(
    refs: &mut Table<[u8; 32], u64>,
    blobs: &mut Table<([u8; 32], u32), &[u8]>,
    blob: &[u8; 32],
) -> Result<(), StoreError> {
    let count = refs.get(blob)?.map(|v| v.value()).unwrap_or(0);
    debug_assert!(
        count > 0,
        "blob {} released more than retained",
        hex::encode(blob)
    );
    if count > 1 {
        refs.insert(blob, count - 1)?;
        return Ok(());
    }
    refs.remove(blob)?;
    blobs.retain_in((*blob, 0)..=(*blob, u32::MAX), |_, _| false)?;
    Ok(())
}

/// Cuts a stream into chunk rows of a blob, hashing as it goes. A storage failure is kept
/// aside (the `Write` interface can only carry an `io::Error`).
struct ChunkWriter<'t, 'a> {
    blobs: &'t mut Table<'a, ([u8; 32], u32), &'static [u8]>,
    key: [u8; 32],
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
    next_chunk: u32,
    written: u64,
    failure: Option<StoreError>,
}

impl ChunkWriter<'_, '_> {
    fn store_chunk(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self
            .blobs
            .insert((self.key, self.next_chunk), self.buffer.as_slice());
        if let Err(e) = result {
            self.failure = Some(e.into());
            return Err(io::Error::other("storing a media chunk failed"));
        }
        self.next_chunk += 1;
        self.buffer.clear();
        Ok(())
    }
}

impl Write for ChunkWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOB_CHUNK - self.buffer.len();
        let taken = &data[..data.len().min(room)];
        self.buffer.extend_from_slice(taken);
        self.hasher.update(taken);
        self.written += taken.len() as u64;
        if self.buffer.len() == BLOB_CHUNK {
            self.store_chunk()?;
        }
        Ok(taken.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.store_chunk()
    }
}

/// A read snapshot of the media index and blobs.
pub struct MediaSnapshot {
    media: ReadOnlyTable<(u64, &'static str), &'static [u8]>,
    blobs: ReadOnlyTable<([u8; 32], u32), &'static [u8]>,
}

impl MediaSnapshot {
    pub fn entry(&self, user_id: u64, name: &str) -> Result<Option<MediaRecord>, StoreError> {
        self.media
            .get((user_id, name))?
            .map(|v| decode(v.value(), "media", name))
            .transpose()
    }

    /// Every media row of a user (present files and tombstones), in name order.
    pub fn entries(
        &self,
        user_id: u64,
    ) -> Result<impl Iterator<Item = Result<(String, MediaRecord), StoreError>> + '_, StoreError>
    {
        let range = self.media.range((user_id, "")..(user_id + 1, ""))?;
        Ok(range.map(|entry| {
            let (key, value) = entry?;
            let name = key.value().1.to_string();
            let record = decode(value.value(), "media", &name)?;
            Ok((name, record))
        }))
    }

    /// The bytes of a blob, chunk by chunk.
    pub fn blob_reader(&self, blob: &[u8; 32]) -> Result<BlobReader, StoreError> {
        Ok(BlobReader {
            chunks: self.blobs.range((*blob, 0)..=(*blob, u32::MAX))?,
            current: None,
            offset: 0,
        })
    }
}

/// Reads a blob's chunks in order; holds one chunk at a time.
pub struct BlobReader {
    chunks: redb::Range<'static, ([u8; 32], u32), &'static [u8]>,
    current: Option<redb::AccessGuard<'static, &'static [u8]>>,
    offset: usize,
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let rest = &chunk.value()[self.offset..];
                if !rest.is_empty() {
                    let n = rest.len().min(out.len());
                    out[..n].copy_from_slice(&rest[..n]);
                    self.offset += n;
                    return Ok(n);
                }
            }
            match self.chunks.next() {
                None => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(StoreError::from(e))),
                Some(Ok((_, chunk))) => {
                    self.current = Some(chunk);
                    self.offset = 0;
                }
            }
        }
    }
}

/// Delete every media row of a user and release their blobs, inside the caller's
/// transaction (user removal).
pub(super) fn remove_user_media(
    tx: &redb::WriteTransaction,
    user_id: u64,
) -> Result<(), StoreError> {
    let mut media = tx.open_table(MEDIA)?;
    let mut blobs = tx.open_table(BLOBS)?;
    let mut refs = tx.open_table(BLOB_REFS)?;
    let held: Vec<[u8; 32]> = media
        .extract_from_if((user_id, "")..(user_id + 1, ""), |_, _| true)?
        .map(|entry| {
            let (key, value) = entry?;
            let record: MediaRecord = decode(value.value(), "media", key.value().1)?;
            Ok(record.blob)
        })
        .filter_map(|blob: Result<Option<[u8; 32]>, StoreError>| blob.transpose())
        .collect::<Result<_, _>>()?;
    for blob in &held {
        release_blob(&mut refs, &mut blobs, blob)?;
    }
    tx.open_table(MEDIA_USN)?
        .retain_in(media_key_range(user_id), |_, _| false)?;
    tx.open_table(MEDIA_TOTALS)?.remove(user_id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    /// Upload bytes from memory, counting how often the store asked for them.
    struct Files {
        data: Vec<Vec<u8>>,
        reads: usize,
    }

    impl MediaBytes for Files {
        fn copy_entry(&mut self, entry: usize, out: &mut dyn Write) -> io::Result<()> {
            self.reads += 1;
            out.write_all(&self.data[entry])
        }
    }

    /// A batch of adds (`Some(bytes)`) and deletes (`None`).
    fn upload(
        store: &Store,
        user: u64,
        changes: &[(&str, Option<&[u8]>)],
    ) -> (UploadOutcome, usize) {
        let mut files = Files {
            data: Vec::new(),
            reads: 0,
        };
        let updates: Vec<MediaUpdate> = changes
            .iter()
            .map(|(name, bytes)| MediaUpdate {
                name: name.to_string(),
                content: bytes.map(|bytes| {
                    files.data.push(bytes.to_vec());
                    content(bytes, files.data.len() - 1)
                }),
            })
            .collect();
        let MediaApplied::Done(outcome) = store
            .apply_media_updates(user, &updates, &mut files, None)
            .unwrap()
        else {
            panic!("upload not applied")
        };
        (outcome, files.reads)
    }

    fn content(bytes: &[u8], entry: usize) -> MediaContent {
        use sha1::Digest;
        MediaContent {
            sha1: sha1::Sha1::digest(bytes).into(),
            blake3: blake3::hash(bytes).into(),
            size: bytes.len() as u64,
            entry,
        }
    }

    fn two_users() -> (tempfile::TempDir, Store) {
        let (dir, store) = temp_store();
        store.set_user("alice", "h", 0).unwrap();
        store.set_user("bob", "h", 0).unwrap();
        (dir, store)
    }

    fn read_back(store: &Store, user: u64, name: &str) -> Option<Vec<u8>> {
        let snapshot = store.media_snapshot().unwrap();
        let record = snapshot.entry(user, name).unwrap()?;
        let mut out = Vec::new();
        snapshot
            .blob_reader(&record.blob?)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        Some(out)
    }

    #[test]
    fn identical_files_are_stored_once_across_users_and_chunked() {
        let (_dir, store) = two_users();
        let big: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
        let (_, reads) = upload(&store, 1, &[("a.bin", Some(&big)), ("b.bin", Some(&big))]);
        assert_eq!(reads, 1, "the second copy is not even read");
        let (_, reads) = upload(&store, 2, &[("other name.bin", Some(&big))]);
        assert_eq!(reads, 0);
        let stats = store.blob_stats().unwrap();
        assert_eq!((stats.blobs, stats.chunks, stats.bytes), (1, 3, 600 * 1024));
        assert_eq!(read_back(&store, 2, "other name.bin").unwrap(), big);
        assert_eq!(read_back(&store, 1, "b.bin").unwrap(), big);
    }

    #[test]
    fn blobs_are_freed_when_the_last_reference_goes() {
        let (_dir, store) = two_users();
        upload(&store, 1, &[("a.jpg", Some(b"one"))]);
        upload(&store, 2, &[("a.jpg", Some(b"one"))]);
        upload(&store, 1, &[("a.jpg", None)]);
        assert_eq!(store.blob_stats().unwrap().blobs, 1, "bob still has it");
        upload(&store, 2, &[("a.jpg", Some(b"two"))]);
        let stats = store.blob_stats().unwrap();
        assert_eq!((stats.blobs, stats.chunks, stats.bytes), (1, 1, 3));
        assert_eq!(read_back(&store, 2, "a.jpg").unwrap(), b"two");
        assert!(store.remove_user("bob").unwrap().is_some());
        let stats = store.blob_stats().unwrap();
        assert_eq!((stats.blobs, stats.chunks), (0, 0));
        assert_eq!(store.media_changes(2, 0, 10).unwrap(), vec![]);
    }

    #[test]
    fn only_real_changes_take_a_usn_and_deletions_stay_as_tombstones() {
        let (_dir, store) = two_users();
        let (out, _) = upload(
            &store,
            1,
            &[("a", Some(b"1")), ("b", Some(b"2")), ("ghost", None)],
        );
        assert_eq!((out.processed, out.last_usn, out.changed), (3, 2, 2));
        let (out, _) = upload(&store, 1, &[("a", Some(b"1")), ("b", None), ("b", None)]);
        assert_eq!((out.processed, out.last_usn, out.changed), (3, 3, 1));
        let status = store.media_status(1).unwrap().unwrap();
        assert_eq!((status.last_usn, status.files, status.bytes), (3, 1, 1));
        assert_eq!(store.collection(1).unwrap().unwrap().media_usn, 3);
        let changes = store.media_changes(1, 0, 10).unwrap();
        let sha1_a = content(b"1", 0).sha1;
        assert_eq!(
            changes,
            vec![
                MediaChange {
                    name: "a".into(),
                    usn: 1,
                    sha1: Some(sha1_a)
                },
                MediaChange {
                    name: "b".into(),
                    usn: 3,
                    sha1: None
                },
            ]
        );
        // A deleted file comes back with a new usn.
        let (out, _) = upload(&store, 1, &[("b", Some(b"2"))]);
        assert_eq!(out.last_usn, 4);
        assert_eq!(store.media_changes(1, 3, 10).unwrap().len(), 1);
        assert_eq!(store.media_status(2).unwrap().unwrap().last_usn, 0);
    }

    #[test]
    fn changes_page_in_usn_order_with_one_entry_per_file() {
        let (_dir, store) = two_users();
        let names: Vec<String> = (0..2500).map(|i| format!("f{i:04}")).collect();
        for batch in names.chunks(25) {
            let changes: Vec<(&str, Option<&[u8]>)> = batch
                .iter()
                .map(|n| (n.as_str(), Some(n.as_bytes())))
                .collect();
            upload(&store, 1, &changes);
        }
        // Touch an early file again: it moves to the end.
        upload(&store, 1, &[("f0000", Some(b"new"))]);
        let mut after = 0;
        let mut pages = Vec::new();
        let mut seen = Vec::new();
        loop {
            let page = store.media_changes(1, after, 1000).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.windows(2).all(|w| w[0].usn < w[1].usn));
            after = page.last().unwrap().usn;
            pages.push(page.len());
            seen.extend(page.into_iter().map(|c| c.name));
        }
        assert_eq!(pages, vec![1000, 1000, 500]);
        assert_eq!(seen.len(), 2500);
        assert_eq!(seen.last().map(String::as_str), Some("f0000"));
        assert_eq!(after, 2501);
    }

    #[test]
    fn a_removed_user_cannot_upload() {
        let (_dir, store) = two_users();
        store.remove_user("alice").unwrap();
        let mut files = Files {
            data: vec![b"x".to_vec()],
            reads: 0,
        };
        let update = MediaUpdate {
            name: "a".into(),
            content: Some(content(b"x", 0)),
        };
        assert_eq!(
            store
                .apply_media_updates(1, &[update], &mut files, None)
                .unwrap(),
            MediaApplied::UnknownUser
        );
        assert_eq!(store.blob_stats().unwrap().blobs, 0);
        assert_eq!(store.media_status(1).unwrap(), None);
    }
}
