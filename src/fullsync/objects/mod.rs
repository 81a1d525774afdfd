//! Turns the notetypes, decks, deck configs, collection config and tag list of
//! an uploaded collection file into the legacy (schema 11) JSON objects that
//! the sync protocol carries, whichever of the two layouts clients upload:
//! schema 11 (everything is JSON in the `col` row) or schema 18 (separate
//! tables with protobuf blobs).
//!
//! It owns only that read-and-convert step. It must never write to the
//! connection, never look at notes, cards, revlog or graves, and never decide
//! whether an upload as a whole is acceptable (integrity checks, size limits
//! and the version policy beyond "which layout is this" belong to the caller).
//! For schema 18 its output is meant to be exactly what the official client's
//! downgrade to schema 11 would write, because that is what clients expect to
//! receive back.
//!
//! `to_schema18` goes the other way (legacy JSON → schema-18 rows) for `export`,
//! so that what it writes reads back here as the same JSON.

mod proto;
mod schema11;
mod schema18;
#[cfg(test)]
mod tests;
mod to_schema18;

use std::cmp::Ordering;

use serde_json::{Map, Value};
use unicase::UniCase;

pub(crate) use to_schema18::{deck_config_row, deck_row, notetype_rows};

/// A legacy JSON object (`col.models[id]`, `col.decks[id]`, …).
pub(crate) type JsonObject = Map<String, Value>;

/// The five legacy maps of a collection, each as the `col` row of a schema-11
/// file would hold them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LegacyObjects {
    /// Notetype id → legacy notetype object (`col.models`).
    pub notetypes: Vec<(i64, JsonObject)>,
    /// Deck id → legacy deck object (`col.decks`).
    pub decks: Vec<(i64, JsonObject)>,
    /// Deck-config id → legacy options group (`col.dconf`).
    pub deck_configs: Vec<(i64, JsonObject)>,
    /// Collection config key → value (`col.conf`).
    pub config: Vec<(String, Value)>,
    /// Tag name → usn (`col.tags`).
    pub tags: Vec<(String, i32)>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ObjectsError {
    #[error(
        "collection schema version {0} is not supported: only 11 and 18 are accepted \
         (no known client uploads the intermediate versions 14-17)"
    )]
    UnsupportedVersion(u32),
    #[error("{what}: {source}")]
    Sqlite {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{object}: {part}: protobuf decode error: {source}")]
    Protobuf {
        object: String,
        part: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("col.{column}: {problem}")]
    LegacyJson {
        column: &'static str,
        problem: String,
    },
    #[error("{object}: {problem}")]
    Invalid { object: String, problem: String },
}

impl ObjectsError {
    pub(crate) fn sqlite(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Self {
        let what = what.into();
        move |source| ObjectsError::Sqlite { what, source }
    }
}

/// Reads the legacy objects out of an uploaded collection.
///
/// `version` is `col.ver`. The connection must have the `unicase` collation
/// registered (see [`register_unicase`]) when the file is schema 18, since its
/// tables declare that collation.
pub(crate) fn read_objects(
    conn: &rusqlite::Connection,
    version: u32,
) -> Result<LegacyObjects, ObjectsError> {
    match version {
        11 => schema11::read(conn),
        18 => schema18::read(conn),
        other => Err(ObjectsError::UnsupportedVersion(other)),
    }
}

/// Registers the `unicase` collation that schema-15+ tables and indexes are
/// declared with. The ordering must be the one the official client built its
/// indexes with (the `unicase` crate's), or SQLite can see a valid file's
/// indexes as out of order.
pub(crate) fn register_unicase(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.create_collation("unicase", unicase_cmp)
}

fn unicase_cmp(a: &str, b: &str) -> Ordering {
    UniCase::new(a).cmp(&UniCase::new(b))
}
