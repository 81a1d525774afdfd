//! Every redb table of the database, in one place: key and value types, and what each row
//! means. Values are rmp-serde (MessagePack, named fields so that later fields can be added
//! with defaults); keys are plain redb types so that a user's rows form one range.
//!
//! This module defines layout only; transactions live in the sibling modules.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

/// Database-wide counters and the layout version. Keys are the `META_*` constants.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Layout version of this file; a newer file is refused rather than misread.
pub(crate) const META_FORMAT: &str = "format_version";
/// Next user id to hand out; ids are never reused, so stale references cannot alias a new
/// user.
pub(crate) const META_NEXT_USER_ID: &str = "next_user_id";
pub(crate) const FORMAT_VERSION: u64 = 1;

/// User name → [`UserRecord`]. Names are compared exactly, as the official server does.
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// User id → user name: the reverse of `USERS`, kept in the same transactions.
pub(crate) const USER_NAMES: TableDefinition<u64, &str> = TableDefinition::new("user_names");

/// blake3(host key) → [`HostKeyRecord`]. Only the hash is stored: a copy of the database does
/// not log anybody in.
pub(crate) const HOST_KEYS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("host_keys");

/// (user id, blake3(host key)) → (): a user's devices, so removing a user or changing a
/// password finds every key without a scan. Written with `HOST_KEYS`.
pub(crate) const USER_HOST_KEYS: TableDefinition<(u64, [u8; 32]), ()> =
    TableDefinition::new("user_host_keys");

/// User id → [`CollectionRecord`]: the scalars of the user's collection that `meta` reports,
/// and which generation of rows is live. Created with the user, removed with the user.
pub(crate) const COLLECTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("collections");

/// Next generation number to hand out; generation numbers are global, so `(generation, id)`
/// keys of different users never meet.
pub(crate) const META_NEXT_GENERATION: &str = "next_generation";

/// (user id, generation) → [`GenerationRecord`]: every generation of a user's rows that
/// exists on disk, and what may be done with it. The live one is also named by the user's
/// [`CollectionRecord`]; both change in the same transaction.
pub(crate) const GENERATIONS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("generations");

/// (generation, note id) → [`NoteRow`].
pub(crate) const NOTES: TableDefinition<(u64, i64), &[u8]> = TableDefinition::new("notes");
/// (generation, card id) → [`CardRow`].
pub(crate) const CARDS: TableDefinition<(u64, i64), &[u8]> = TableDefinition::new("cards");
/// (generation, review id) → [`RevlogRow`]. The id is the review time in ms.
pub(crate) const REVLOG: TableDefinition<(u64, i64), &[u8]> = TableDefinition::new("revlog");
/// (generation, usn, kind, object id) → (): deletions other devices must learn of. Kind is
/// the protocol's grave type (0 card, 1 note, 2 deck).
pub(crate) const GRAVES: TableDefinition<(u64, i32, u8, i64), ()> = TableDefinition::new("graves");
/// (generation, usn, kind, row id) → (): which notes, cards and reviews changed in which
/// sync, so "everything since usn N" is a range read, not a scan. Kinds are [`RowKind`].
/// Kept by the transactions that write the rows; an upload indexes only rows a client could
/// still ask for (usn at least the uploaded collection's usn).
pub(crate) const CHANGES: TableDefinition<(u64, i32, u8, i64), ()> =
    TableDefinition::new("changes");

/// (user id, row kind, row id) → [`SpilledRow`]: rows of a normal sync in progress that
/// outgrew the memory bound of its stage (`sync::session`). Written and read only by that
/// user's actor; cleared when the sync ends or a new one starts, and all of it at startup
/// (no session survives a restart).
pub(crate) const STAGED: TableDefinition<(u64, u8, i64), &[u8]> = TableDefinition::new("staged");

/// (generation, kind, key) → [`ObjectRecord`]: notetypes, decks and deck configs (key = id in
/// decimal), tags (key = name) and config entries (key = config key), as the legacy JSON the
/// protocol carries.
pub(crate) const OBJECTS: TableDefinition<(u64, u8, &str), &[u8]> = TableDefinition::new("objects");

/// (user id, NFC filename) → [`MediaRecord`]: every media file a user's devices ever synced,
/// current or deleted (a tombstone, kept forever so other devices learn of the deletion).
/// Names are case-sensitive keys. Written with `MEDIA_USN`, `MEDIA_TOTALS`, `BLOB_REFS` and the
/// user's [`CollectionRecord::media_usn`] in one transaction per upload zip.
pub(crate) const MEDIA: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("media");

/// (user id, usn) → filename: the last change of each file, so `mediaChanges` is a range read
/// in usn order. Exactly one row per `MEDIA` row (its usn); moved when the file changes.
pub(crate) const MEDIA_USN: TableDefinition<(u64, i32), &str> = TableDefinition::new("media_usn");

/// User id → (files, bytes) of the user's present (not deleted) media, for `mediaSanity`
/// without a scan. Kept by the transactions that write `MEDIA`.
pub(crate) const MEDIA_TOTALS: TableDefinition<u64, (u64, u64)> =
    TableDefinition::new("media_totals");

/// (blake3 of a file's bytes, chunk number) → up to [`BLOB_CHUNK`] bytes of that file.
/// Content-addressed and shared by every user: identical files are stored once. A blob
/// exists exactly while its `BLOB_REFS` count is above zero.
pub(crate) const BLOBS: TableDefinition<([u8; 32], u32), &[u8]> = TableDefinition::new("blobs");

/// blake3 of a file's bytes → how many `MEDIA` rows (of any user) point at it. The blob's
/// chunks are deleted in the transaction that brings it to zero.
pub(crate) const BLOB_REFS: TableDefinition<[u8; 32], u64> = TableDefinition::new("blob_refs");

/// Largest chunk of a blob: big enough that a 100 MiB file is 400 rows, small enough that a
/// chunk in flight costs little memory.
pub(crate) const BLOB_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: u64,
    /// PHC string: argon2id for passwords set here, or whatever `PASSWORDS_HASHED` or the
    /// users file supplied.
    pub password_hash: String,
    /// Unix seconds.
    pub created: i64,
    /// Who declared the user; the users file changes and removes only its own users.
    #[serde(default)]
    pub source: UserSource,
}

/// Where a user was declared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserSource {
    /// `ankisyncd user add`; also every user from before sources were recorded.
    #[default]
    Command,
    /// `SYNC_USERn`.
    Environment,
    /// The users file (`users_file`).
    UsersFile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKeyRecord {
    pub user_id: u64,
    /// Unix seconds of the login that issued the key.
    pub created: i64,
    /// Client version string of the device's latest request whose activity was saved (at
    /// first the login's), e.g. "26.09,abc,linux", for `user devices`.
    pub client_version: String,
    /// Unix seconds of the device's latest request whose activity was saved; 0 for keys
    /// issued before this was recorded (then `created` stands in). Saved from memory now and
    /// then (`auth::DeviceActivity`), not on every request.
    #[serde(default)]
    pub last_seen: i64,
}

/// The collection-level scalars of a user's collection, in the units of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// The live generation of the user's rows; 0 until the first full upload.
    #[serde(default)]
    pub generation: u64,
    /// Creation time, seconds (the scheduler's day 0).
    #[serde(default)]
    pub created_secs: i64,
    /// Last modification, milliseconds; 0 for a collection nobody has uploaded to.
    pub modified_ms: i64,
    /// Schema modification, milliseconds; a client with another value must full-sync.
    pub schema_ms: i64,
    /// The next update sequence number to hand out.
    pub usn: i32,
    /// Last sync, milliseconds.
    pub last_sync_ms: i64,
    /// Row counts of the live generation, kept by the transactions that change the rows.
    #[serde(default)]
    pub counts: Counts,
    /// The user's media `last_usn`, reported by `meta` and `msync/begin`: the one copy of it,
    /// written by the media transactions (store/media.rs) and carried over by every other
    /// writer of this record.
    pub media_usn: i32,
    /// Bytes of the live generation's note, card and revlog rows and objects as stored: what
    /// the collection quota measures. Kept by the transactions that change those rows; `None`
    /// for a collection stored before it was counted (counted when a quota first needs it).
    #[serde(default)]
    pub data_bytes: Option<u64>,
}

/// One media file of a user: present (`blob` set) or a tombstone (`blob` and `sha1` empty,
/// size 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// SHA-1 of the bytes, as clients compare files; `None` for a deleted file.
    pub sha1: Option<[u8; 20]>,
    /// The media usn of the file's last change (add, replace or delete).
    pub usn: i32,
    /// blake3 of the bytes: the key of the blob in `BLOBS`; `None` for a deleted file.
    pub blob: Option<[u8; 32]>,
    /// Length in bytes; 0 for a deleted file (files are never empty).
    pub size: u64,
}

/// Row counts, as `sanityCheck2` compares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub notes: u64,
    pub cards: u64,
    pub revlog: u64,
    pub graves: u64,
    pub notetypes: u64,
    pub decks: u64,
    pub deck_configs: u64,
}

impl CollectionRecord {
    /// A collection nobody has synced yet, as the official server creates it on first use:
    /// no modification, usn 0, schema time = creation time.
    pub fn empty(now_ms: i64) -> Self {
        CollectionRecord {
            generation: 0,
            created_secs: now_ms / 1000,
            modified_ms: 0,
            schema_ms: now_ms,
            usn: 0,
            last_sync_ms: 0,
            counts: Counts::default(),
            media_usn: 0,
            data_bytes: Some(0),
        }
    }
}

/// What may happen to a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenerationState {
    /// Rows are being written by a full upload; not visible to anybody. Left over after a
    /// crash, it is doomed at the next start.
    Building,
    /// The user's current collection.
    Live,
    /// A former live generation kept so a mistaken full upload can be undone.
    Retained,
    /// To be deleted by the janitor.
    Doomed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub state: GenerationState,
    /// When the generation was created (ms).
    pub created_ms: i64,
    /// Rows with a usn at least this are in `CHANGES` (an upload indexes only the rows a
    /// client could still ask for; later syncs index every row they write). Absent in files
    /// written before it was recorded: taken as "every row".
    #[serde(default = "index_everything")]
    pub indexed_from: i32,
    /// The collection scalars it had when it stopped being live; restored with it.
    pub collection: Option<CollectionRecord>,
}

fn index_everything() -> i32 {
    i32::MIN
}

/// A note as the protocol and the SQLite file carry it. `sfld` keeps its SQLite type (the
/// column is declared integer so numeric sort fields sort numerically).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteRow {
    pub guid: String,
    pub mid: i64,
    pub modified: i64,
    pub usn: i32,
    pub tags: String,
    pub fields: String,
    pub sort_field: SortField,
    pub checksum: i64,
    pub flags: i64,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortField {
    Int(i64),
    Real(f64),
    Text(String),
}

/// A card: every column after the id, in the protocol's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRow {
    pub nid: i64,
    pub did: i64,
    pub ord: i64,
    pub modified: i64,
    pub usn: i32,
    pub ctype: i64,
    pub queue: i64,
    pub due: i64,
    pub ivl: i64,
    pub factor: i64,
    pub reps: i64,
    pub lapses: i64,
    pub left: i64,
    pub odue: i64,
    pub odid: i64,
    pub flags: i64,
    pub data: String,
}

/// A review: every column after the id, in the protocol's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevlogRow {
    pub cid: i64,
    pub usn: i32,
    pub ease: i64,
    pub ivl: i64,
    pub last_ivl: i64,
    pub factor: i64,
    pub time: i64,
    pub rtype: i64,
}

/// A staged row moved out of memory: what it will be after the sync, and whether it existed
/// before (for the counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SpilledRow {
    Note {
        existed: bool,
        after: Option<NoteRow>,
    },
    Card {
        existed: bool,
        after: Option<CardRow>,
    },
    Revlog(RevlogRow),
}

/// Kinds of [`CHANGES`] rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RowKind {
    Note = 1,
    Card = 2,
    Revlog = 3,
}

/// Kinds of [`OBJECTS`] rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Notetype = 1,
    Deck = 2,
    DeckConfig = 3,
    Tag = 4,
    Config = 5,
}

/// A notetype, deck, deck config, tag or config entry. `json` is the legacy JSON text of the
/// object (for a tag: empty; for a config entry: the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub usn: i32,
    pub json: String,
}
