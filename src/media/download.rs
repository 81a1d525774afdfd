//! `downloadFiles`: up to 25 named files as a zip (entries `"0"`, `"1"`, … and a `_meta`
//! object mapping entry to name), cut after the file that takes the total past 2.5 MiB; the
//! client asks again for the rest (protocol.md §5.5). The zip is written entry by entry from
//! one read snapshot: in memory when its files add up to at most [`ZIP_IN_MEMORY`] (every zip
//! of small files), otherwise into a scratch file it is streamed from, so memory stays flat
//! however large the files.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use serde::Deserialize;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::{MediaError, MediaState, MAX_FILES_PER_ZIP, ZIP_IN_MEMORY};
use crate::store::{MediaSnapshot, Store, StoreError};

/// A zip stops after the file that takes it past this many bytes (2.5 MiB).
pub(crate) const DOWNLOAD_CUTOFF: u64 = 2_621_440;

#[derive(Debug, Deserialize)]
pub(crate) struct DownloadFilesRequest {
    pub files: Vec<String>,
}

/// The built zip.
#[derive(Debug)]
pub(crate) enum DownloadZip {
    Memory(Vec<u8>),
    /// Open for reading from its start.
    File {
        file: File,
        len: u64,
    },
}

/// One file of the zip: its name, blob and size.
type Planned = (String, [u8; 32], u64);

pub(crate) fn download_files(
    store: &Store,
    state: &MediaState,
    request: &DownloadFilesRequest,
    dest: &Path,
) -> Result<DownloadZip, MediaError> {
    if request.files.len() > MAX_FILES_PER_ZIP {
        return Err(MediaError::BadRequest(format!(
            "{} files requested; at most {MAX_FILES_PER_ZIP} per request",
            request.files.len()
        )));
    }
    let snapshot = store.media_snapshot()?;
    let mut planned: Vec<Planned> = Vec::new();
    let mut total = 0u64;
    for name in &request.files {
        let record = snapshot.entry(state.user.id, name)?;
        let Some((blob, size)) = record.and_then(|r| r.blob.map(|blob| (blob, r.size))) else {
            return Err(MediaError::NotOnServer(name.clone()));
        };
        planned.push((name.clone(), blob, size));
        total += size;
        if total > DOWNLOAD_CUTOFF {
            break;
        }
    }
    if planned.len() < request.files.len() {
        tracing::debug!(
            user = %state.user.name,
            sent = planned.len(),
            asked = request.files.len(),
            "media download cut at 2.5 MiB; the client asks again for the rest"
        );
    }
    if total <= ZIP_IN_MEMORY as u64 {
        let buffer = io::Cursor::new(Vec::with_capacity(usize::try_from(total).unwrap_or(0)));
        let buffer = write_zip(&snapshot, &planned, buffer)?;
        return Ok(DownloadZip::Memory(buffer.into_inner()));
    }
    // Read back from the same handle: the caller unlinks the path before the stream ends.
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dest)
        .map_err(MediaError::Scratch)?;
    let writer = write_zip(&snapshot, &planned, BufWriter::new(file))?;
    let mut file = writer
        .into_inner()
        .map_err(|e| MediaError::Scratch(e.into_error()))?;
    file.flush().map_err(MediaError::Scratch)?;
    let len = file.metadata().map_err(MediaError::Scratch)?.len();
    file.rewind().map_err(MediaError::Scratch)?;
    Ok(DownloadZip::File { file, len })
}

/// The planned files as zip entries `"0"`, `"1"`, … and their `_meta`.
fn write_zip<W: Write + Seek>(
    snapshot: &MediaSnapshot,
    planned: &[Planned],
    out: W,
) -> Result<W, MediaError> {
    let mut zip = ZipWriter::new(out);
    // Media files are mostly compressed already; clients expect stored entries.
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut meta = serde_json::Map::new();
    for (index, (name, blob, size)) in planned.iter().enumerate() {
        let entry = index.to_string();
        zip.start_file(entry.as_str(), options).map_err(zip_error)?;
        let copied = io::copy(&mut snapshot.blob_reader(blob)?, &mut zip).map_err(copy_error)?;
        if copied != *size {
            return Err(StoreError::Corrupt {
                table: "blobs",
                key: hex::encode(blob),
                reason: format!("{copied} bytes stored for a file of {size}"),
            }
            .into());
        }
        meta.insert(entry, name.clone().into());
    }
    zip.start_file("_meta", options).map_err(zip_error)?;
    serde_json::to_writer(&mut zip, &meta).map_err(|e| MediaError::Zip(e.to_string()))?;
    zip.finish().map_err(zip_error)
}

fn zip_error(e: zip::result::ZipError) -> MediaError {
    match e {
        zip::result::ZipError::Io(e) => MediaError::Scratch(e),
        e => MediaError::Zip(e.to_string()),
    }
}

/// A copy fails either reading the blob (a store error carried inside the `io::Error`) or
/// writing the scratch file.
fn copy_error(e: io::Error) -> MediaError {
    if e.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(store) = inner.downcast::<StoreError>() {
                return MediaError::Store(*store);
            }
        }
        return MediaError::Zip("reading a stored media file failed".into());
    }
    MediaError::Scratch(e)
}
