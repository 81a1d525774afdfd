//! Moving users between the official sync server's data folder (`SYNC_BASE`: one folder per
//! user with `collection.anki2`, `media/` and `media.db`) and this database: `import` takes
//! the folders in, `export` writes them out again, so users can come and go.
//!
//! What makes a move invisible to devices: the collection keeps its modification and schema
//! times, its usn and every row's usn, and the media index keeps each file's usn and the
//! user's media usn, so `meta` and `mediaChanges` answer exactly as the other server did.
//! Collections go through full sync's ingest and schema-18 writer, media through the store's
//! media index, so the store's invariants (counts, changes index, blob references) hold.
//!
//! Offline: the caller holds the database, and the official server must not be running on
//! the folder. Never writes into a folder it imports from.

mod error;
mod export;
mod import;
mod media_db;
mod official;

pub(crate) use error::MigrateError;
pub(crate) use export::export_official;
pub(crate) use import::{import_official, ImportOptions};
