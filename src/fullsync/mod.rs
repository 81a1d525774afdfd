//! Full sync: a whole collection in (`upload`) or out (`download`) as an Anki SQLite file.
//! The file only exists in the scratch directory while a transfer is in flight; the
//! collection itself lives as rows in redb (`store`), one generation per upload. `ingest`
//! and `write_schema18` also serve `import` and `export`, which move collections between the
//! official server's data folder and the database.
//!
//! Everything here is blocking (SQLite, redb, disk): the user's actor runs it on the blocking
//! pool. It never holds a redb write transaction for more than one batch of rows.

mod collection_file;
mod download;
mod error;
mod objects;
mod schema18_file;
mod scratch;
mod upload;

pub use download::{prepare_download, Download, DownloadSchema};
pub use error::FullSyncError;
pub(crate) use schema18_file::write_schema18;
pub use scratch::Scratch;
pub(crate) use scratch::{leftovers as scratch_leftovers, ScratchFile};
pub(crate) use upload::{activate, ingest, ChangeIndex, Ingested};
pub use upload::{receive_upload, UploadReply};
