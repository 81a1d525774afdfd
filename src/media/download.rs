//! `downloadFiles`: up to 25 named files as a zip (entries `"0"`, `"1"`, … and a `_meta`
//! object mapping entry to name), cut after the file that takes the total past 2.5 MiB; the
//! client asks again for the rest (protocol.md §5.5). The zip is written entry by entry into
//! a scratch file from one read snapshot and streamed from there, so memory stays flat
//! however large the files.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use serde::Deserialize;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::{MediaError, MediaState, MAX_FILES_PER_ZIP};
use crate::store::{Store, StoreError};

/// A zip stops after the file that takes it past this many bytes (2.5 MiB).
pub(crate) const DOWNLOAD_CUTOFF: u64 = 2_621_440;

#[derive(Debug, Deserialize)]
pub(crate) struct DownloadFilesRequest {
    pub files: Vec<String>,
}

/// The built zip, open for reading from its start.
#[derive(Debug)]
pub(crate) struct DownloadZip {
    pub file: File,
    pub len: u64,
}

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
    // Read back from the same handle: the caller unlinks the path before the stream ends.
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dest)
        .map_err(MediaError::Scratch)?;
    let mut zip = ZipWriter::new(BufWriter::new(file));
    // Media files are mostly compressed already; clients expect stored entries.
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut meta = serde_json::Map::new();
    let mut total = 0u64;
    for (index, name) in request.files.iter().enumerate() {
        let record = snapshot.entry(state.user.id, name)?;
        let Some((blob, size)) = record.and_then(|r| r.blob.map(|blob| (blob, r.size))) else {
            return Err(MediaError::NotOnServer(name.clone()));
        };
        let entry = index.to_string();
        zip.start_file(entry.as_str(), options).map_err(zip_error)?;
        let copied = io::copy(&mut snapshot.blob_reader(&blob)?, &mut zip).map_err(copy_error)?;
        if copied != size {
            return Err(StoreError::Corrupt {
                table: "blobs",
                key: hex::encode(blob),
                reason: format!("{copied} bytes stored for a file of {size}"),
            }
            .into());
        }
        meta.insert(entry, name.clone().into());
        total += size;
        if total > DOWNLOAD_CUTOFF {
            break;
        }
    }
    if meta.len() < request.files.len() {
        tracing::debug!(
            user = %state.user.name,
            sent = meta.len(),
            asked = request.files.len(),
            "media download cut at 2.5 MiB; the client asks again for the rest"
        );
    }
    zip.start_file("_meta", options).map_err(zip_error)?;
    serde_json::to_writer(&mut zip, &meta).map_err(|e| MediaError::Zip(e.to_string()))?;
    let writer = zip.finish().map_err(zip_error)?;
    let mut file = writer
        .into_inner()
        .map_err(|e| MediaError::Scratch(e.into_error()))?;
    file.flush().map_err(MediaError::Scratch)?;
    let len = file.metadata().map_err(MediaError::Scratch)?.len();
    file.rewind().map_err(MediaError::Scratch)?;
    Ok(DownloadZip { file, len })
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
