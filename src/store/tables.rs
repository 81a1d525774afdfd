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

/// User id → [`CollectionRecord`]: the scalars of the user's collection that `meta` reports.
/// Created with the user, removed with the user.
pub(crate) const COLLECTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("collections");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: u64,
    /// PHC string: argon2id for passwords set here, or whatever `PASSWORDS_HASHED` supplied.
    pub password_hash: String,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKeyRecord {
    pub user_id: u64,
    /// Unix seconds of the login that issued the key.
    pub created: i64,
    /// Client version string sent at login (e.g. "26.09,abc,linux"), for `user list`.
    pub client_version: String,
}

/// The collection-level scalars of a user's collection, in the units of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// Last modification, milliseconds; 0 for a collection nobody has uploaded to.
    pub modified_ms: i64,
    /// Schema modification, milliseconds; a client with another value must full-sync.
    pub schema_ms: i64,
    /// The next update sequence number to hand out.
    pub usn: i32,
    /// Last sync, milliseconds.
    pub last_sync_ms: i64,
    /// Number of cards; 0 makes `meta` report the collection as empty.
    pub cards: u64,
    /// Media update sequence number reported by `meta`.
    pub media_usn: i32,
}

impl CollectionRecord {
    /// A collection nobody has synced yet, as the official server creates it on first use:
    /// no modification, usn 0, schema time = creation time.
    pub fn empty(now_ms: i64) -> Self {
        CollectionRecord {
            modified_ms: 0,
            schema_ms: now_ms,
            usn: 0,
            last_sync_ms: 0,
            cards: 0,
            media_usn: 0,
        }
    }
}
