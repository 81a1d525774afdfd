//! Media sync (`/msync/<method>`, protocol.md §5): one file per method, each with its request
//! type, reply type and handler, as plain Rust over `store`. The user's media actor runs these
//! handlers one at a time per user, beside (never behind) the user's collection sync.
//!
//! It owns the media protocol's rules: filename validation (NFC, no separators), the zip
//! formats both ways and their limits, usn accounting (+1 per real change), and the JSON
//! envelope `{"data": …, "err": ""}`. It must never hold more than a small zip (a few MiB)
//! in memory, never change anything for an upload it refuses, and never import hyper or
//! ractor.

mod begin;
mod changes;
mod digests;
mod download;
mod error;
mod filename;
mod sanity;
mod upload;

use serde::Serialize;

use crate::auth::UserRef;

pub(crate) use begin::{begin, BeginRequest};
pub(crate) use changes::media_changes;
pub(crate) use digests::Digests;
pub(crate) use download::{download_files, DownloadFilesRequest, DownloadZip};
pub use error::BadUpload;
pub(crate) use error::MediaError;
pub(crate) use filename::problem as filename_problem;
pub(crate) use sanity::media_sanity;
pub use upload::UploadZip;
pub(crate) use upload::{upload_changes, UploadSource};

/// Most files in one zip, either way (protocol.md §5.4, §5.5).
pub(crate) const MAX_FILES_PER_ZIP: usize = 25;
/// Largest single media file (100 MiB), as on the official server.
pub(crate) const MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;
/// A zip of up to this many bytes, either way, is held in memory rather than in a scratch
/// file: every zip of small files (a zip closes at about 2.5 MiB, plus the file that
/// crossed it). Writing such a zip to a file and reading it back cost more than the rest of
/// its request (benches/README.md, media sync); memory stays bounded by one zip per user.
pub(crate) const ZIP_IN_MEMORY: usize = 8 * 1024 * 1024;

/// What the media actor keeps for a user between requests. Media sync has no session (the
/// official server dropped media session keys), so this is only who the actor serves; the
/// actor itself is what matters: it runs the user's media requests one at a time.
#[derive(Debug)]
pub(crate) struct MediaState {
    pub user: UserRef,
}

impl MediaState {
    pub(crate) fn new(user: &UserRef) -> Self {
        MediaState { user: user.clone() }
    }
}

/// The JSON envelope of every media reply except `downloadFiles`; `err` must be present
/// (legacy clients require it) and empty on success.
#[derive(Debug, Serialize)]
pub(crate) struct JsonResult<T> {
    pub data: T,
    pub err: &'static str,
}

impl<T> JsonResult<T> {
    pub(crate) fn ok(data: T) -> Self {
        JsonResult { data, err: "" }
    }
}

/// A refusal for the user to read: `{"err": "<message>"}` with HTTP 200, which clients show
/// as it is (protocol.md §5.0), where an error status would only show its code. Used for
/// what the user can act on: a quota.
#[derive(Debug, Serialize)]
pub(crate) struct JsonRefusal {
    pub err: String,
}

#[cfg(test)]
mod tests;
