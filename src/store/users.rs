//! Users: creating, changing and removing them, and which declaration (the command line, the
//! environment, the users file) each came from. A user row, its name index, its collection
//! record and its host keys are created, changed and removed together, in one transaction
//! each, so no request can see a key whose user is gone.

use std::collections::BTreeSet;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::devices::{devices_of, revoke_all_keys};
use super::tables::{
    CollectionRecord, UserRecord, UserSource, COLLECTIONS, HOST_KEYS, META, META_NEXT_USER_ID,
    USERS, USER_HOST_KEYS, USER_NAMES,
};
use super::{decode, encode, Store, StoreError};

/// What `set_user` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserUpsert {
    Created {
        id: u64,
    },
    /// The password hash changed; the user's devices were logged out.
    PasswordChanged {
        id: u64,
        revoked_keys: usize,
    },
}

/// A user whose devices were logged out: by a new password, or by `user revoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedOut {
    pub id: u64,
    pub devices: usize,
}

/// What [`Store::set_source_users`] did to one declared or formerly declared user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChange {
    Created {
        id: u64,
    },
    /// A new hash; the user's devices were logged out.
    PasswordChanged {
        id: u64,
        revoked_keys: usize,
    },
    /// No longer declared: removed with all their data.
    Removed {
        id: u64,
    },
    Unchanged,
    /// The name belongs to a user from another source, which is left alone.
    OwnedElsewhere(UserSource),
}

/// One line of `user list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub name: String,
    pub id: u64,
    pub created: i64,
    pub source: UserSource,
    pub devices: usize,
    /// The latest saved activity of any of the user's devices (Unix seconds).
    pub last_seen: Option<i64>,
    /// Distinct client versions of the user's devices, sorted.
    pub client_versions: Vec<String>,
}

impl Store {
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let tx = self.read()?;
        let users = tx.open_table(USERS)?;
        let found = users.get(name)?;
        found.map(|v| decode(v.value(), "users", name)).transpose()
    }

    /// Create the user unless the name is taken (then `None`, and nothing changes).
    pub fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        source: UserSource,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        let tx = self.write()?;
        let created = match read_user(&tx, name)? {
            Some(_) => None,
            None => Some(insert_user(&tx, name, password_hash, source, now_ms)?),
        };
        self.commit(tx)?;
        Ok(created)
    }

    /// Create the user (as if from the command line), or give an existing user a new
    /// password hash (which logs out every device, as a changed password does on the official
    /// server, whose host key is derived from the password).
    pub fn set_user(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<UserUpsert, StoreError> {
        self.upsert_user(name, password_hash, UserSource::Command, now_ms)
    }

    /// `set_user` for users declared by `source`: a new user is managed by it; an existing
    /// one stays with whoever declared them first.
    pub fn upsert_user(
        &self,
        name: &str,
        password_hash: &str,
        source: UserSource,
        now_ms: i64,
    ) -> Result<UserUpsert, StoreError> {
        let tx = self.write()?;
        let outcome = match read_user(&tx, name)? {
            Some(record) => UserUpsert::PasswordChanged {
                id: record.id,
                revoked_keys: replace_password(&tx, name, record, password_hash)?,
            },
            None => UserUpsert::Created {
                id: insert_user(&tx, name, password_hash, source, now_ms)?,
            },
        };
        self.commit(tx)?;
        Ok(outcome)
    }

    /// Give an existing user a new password hash, logging out every device. `None` if there
    /// is no such user.
    pub fn change_password(
        &self,
        name: &str,
        password_hash: &str,
    ) -> Result<Option<LoggedOut>, StoreError> {
        let tx = self.write()?;
        let outcome = match read_user(&tx, name)? {
            None => None,
            Some(record) => Some(LoggedOut {
                id: record.id,
                devices: replace_password(&tx, name, record, password_hash)?,
            }),
        };
        self.commit(tx)?;
        Ok(outcome)
    }

    /// Remove the user with everything that belongs to them (their rows are doomed and
    /// deleted by the janitor). Returns the removed user's id, `None` if there was no such
    /// user.
    pub fn remove_user(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let tx = self.write()?;
        let removed = match read_user(&tx, name)? {
            None => None,
            Some(record) => {
                delete_user(&tx, name, &record)?;
                Some(record.id)
            }
        };
        self.commit(tx)?;
        Ok(removed)
    }

    /// Make the users managed by `source` exactly `declared` (name, PHC hash), in one
    /// transaction: create the missing, give the changed a new hash (logging their devices
    /// out), remove those of `source` no longer declared. A declared name that belongs to
    /// another source is left alone and reported.
    pub fn set_source_users(
        &self,
        source: UserSource,
        declared: &[(String, String)],
        now_ms: i64,
    ) -> Result<Vec<(String, SourceChange)>, StoreError> {
        let tx = self.write()?;
        let mut changes = Vec::with_capacity(declared.len());
        for (name, hash) in declared {
            let change = match read_user(&tx, name)? {
                None => SourceChange::Created {
                    id: insert_user(&tx, name, hash, source, now_ms)?,
                },
                Some(record) if record.source != source => {
                    SourceChange::OwnedElsewhere(record.source)
                }
                Some(record) if record.password_hash == *hash => SourceChange::Unchanged,
                Some(record) => {
                    let id = record.id;
                    let revoked_keys = replace_password(&tx, name, record, hash)?;
                    SourceChange::PasswordChanged { id, revoked_keys }
                }
            };
            changes.push((name.clone(), change));
        }
        let keep: BTreeSet<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
        let mut gone = Vec::new();
        for entry in tx.open_table(USERS)?.iter()? {
            let (name, value) = entry?;
            let name = name.value();
            let record: UserRecord = decode(value.value(), "users", name)?;
            if record.source == source && !keep.contains(name) {
                gone.push((name.to_string(), record));
            }
        }
        for (name, record) in gone {
            delete_user(&tx, &name, &record)?;
            changes.push((name, SourceChange::Removed { id: record.id }));
        }
        self.commit(tx)?;
        Ok(changes)
    }

    pub fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let tx = self.read()?;
        let users = tx.open_table(USERS)?;
        let index = tx.open_table(USER_HOST_KEYS)?;
        let keys = tx.open_table(HOST_KEYS)?;
        let mut out = Vec::with_capacity(users.len()? as usize);
        for entry in users.iter()? {
            let (name, value) = entry?;
            let name = name.value().to_string();
            let record: UserRecord = decode(value.value(), "users", &name)?;
            let devices = devices_of(&index, &keys, record.id)?;
            let client_versions: BTreeSet<String> = devices
                .iter()
                .map(|d| d.client_version.clone())
                .filter(|v| !v.is_empty())
                .collect();
            out.push(UserSummary {
                name,
                id: record.id,
                created: record.created,
                source: record.source,
                devices: devices.len(),
                last_seen: devices.iter().map(|d| d.last_seen).max(),
                client_versions: client_versions.into_iter().collect(),
            });
        }
        Ok(out)
    }

    /// Every user's name, in order: the users table's keys only, for the pages that name or
    /// count users (`/`, `/metrics`) without reading each user's devices.
    pub fn user_names(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.read()?;
        let users = tx.open_table(USERS)?;
        let names = users
            .iter()?
            .map(|entry| Ok(entry?.0.value().to_string()))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(names)
    }

    pub fn user_name(&self, id: u64) -> Result<Option<String>, StoreError> {
        let tx = self.read()?;
        let names = tx.open_table(USER_NAMES)?;
        let name = names.get(id)?.map(|v| v.value().to_string());
        Ok(name)
    }
}

pub(super) fn read_user(
    tx: &WriteTransaction,
    name: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let users = tx.open_table(USERS)?;
    let found = users.get(name)?;
    found.map(|v| decode(v.value(), "users", name)).transpose()
}

fn insert_user(
    tx: &WriteTransaction,
    name: &str,
    password_hash: &str,
    source: UserSource,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(META)?;
    let id = meta.get(META_NEXT_USER_ID)?.map(|v| v.value()).unwrap_or(1);
    meta.insert(META_NEXT_USER_ID, id + 1)?;
    let record = UserRecord {
        id,
        password_hash: password_hash.to_string(),
        created: now_ms / 1000,
        source,
    };
    tx.open_table(USERS)?
        .insert(name, encode(&record)?.as_slice())?;
    tx.open_table(USER_NAMES)?.insert(id, name)?;
    tx.open_table(COLLECTIONS)?
        .insert(id, encode(&CollectionRecord::empty(now_ms))?.as_slice())?;
    Ok(id)
}

/// Store `record` with a new hash and log every device out; returns how many were.
fn replace_password(
    tx: &WriteTransaction,
    name: &str,
    mut record: UserRecord,
    password_hash: &str,
) -> Result<usize, StoreError> {
    record.password_hash = password_hash.to_string();
    tx.open_table(USERS)?
        .insert(name, encode(&record)?.as_slice())?;
    revoke_all_keys(tx, record.id)
}

fn delete_user(tx: &WriteTransaction, name: &str, record: &UserRecord) -> Result<(), StoreError> {
    tx.open_table(USERS)?.remove(name)?;
    revoke_all_keys(tx, record.id)?;
    tx.open_table(USER_NAMES)?.remove(record.id)?;
    tx.open_table(COLLECTIONS)?.remove(record.id)?;
    super::generations::doom_all(tx, record.id)?;
    super::media::remove_user_media(tx, record.id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tables::HostKeyRecord;
    use super::super::temp_store;
    use super::*;

    const CMD: UserSource = UserSource::Command;

    fn key(user_id: u64, n: u8) -> ([u8; 32], HostKeyRecord) {
        (
            [n; 32],
            HostKeyRecord {
                user_id,
                created: 1,
                client_version: "test".into(),
                last_seen: 1,
            },
        )
    }

    #[test]
    fn users_get_distinct_ids_and_an_empty_collection() {
        let (_dir, store) = temp_store();
        let a = store.set_user("alice", "h1", 5_000).unwrap();
        let b = store.set_user("bob", "h2", 5_000).unwrap();
        assert_eq!(a, UserUpsert::Created { id: 1 });
        assert_eq!(b, UserUpsert::Created { id: 2 });
        assert_eq!(store.user("alice").unwrap().unwrap().password_hash, "h1");
        assert_eq!(store.user_name(2).unwrap().as_deref(), Some("bob"));
        let col = store.collection(1).unwrap().unwrap();
        assert_eq!(col, CollectionRecord::empty(5_000));
    }

    #[test]
    fn create_refuses_a_taken_name_and_keeps_the_password() {
        let (_dir, store) = temp_store();
        assert_eq!(store.create_user("a", "h1", CMD, 0).unwrap(), Some(1));
        assert_eq!(store.create_user("a", "h2", CMD, 0).unwrap(), None);
        assert_eq!(store.user("a").unwrap().unwrap().password_hash, "h1");
    }

    #[test]
    fn a_new_password_revokes_the_users_keys_only() {
        let (_dir, store) = temp_store();
        store.set_user("alice", "h1", 0).unwrap();
        store.set_user("bob", "h2", 0).unwrap();
        let (ka, ra) = key(1, 1);
        let (kb, rb) = key(2, 2);
        assert!(store.add_host_key(&ka, &ra).unwrap());
        assert!(store.add_host_key(&kb, &rb).unwrap());
        assert_eq!(store.resolve_host_key(&ka).unwrap().map(|u| u.0), Some(1));
        let changed = store.set_user("alice", "h3", 0).unwrap();
        assert_eq!(
            changed,
            UserUpsert::PasswordChanged {
                id: 1,
                revoked_keys: 1
            }
        );
        assert_eq!(store.resolve_host_key(&ka).unwrap(), None);
        assert_eq!(store.resolve_host_key(&kb).unwrap().map(|u| u.0), Some(2));
        store.add_host_key(&ka, &ra).unwrap();
        let changed = store.change_password("alice", "h4").unwrap();
        assert_eq!(changed, Some(LoggedOut { id: 1, devices: 1 }));
        assert_eq!(store.change_password("nobody", "h").unwrap(), None);
        assert_eq!(store.user("alice").unwrap().unwrap().password_hash, "h4");
    }

    #[test]
    fn removing_a_user_removes_keys_and_collection_and_ids_are_not_reused() {
        let (_dir, store) = temp_store();
        store.set_user("alice", "h1", 0).unwrap();
        let (ka, ra) = key(1, 1);
        store.add_host_key(&ka, &ra).unwrap();
        assert_eq!(store.remove_user("alice").unwrap(), Some(1));
        assert_eq!(store.remove_user("alice").unwrap(), None);
        assert_eq!(store.resolve_host_key(&ka).unwrap(), None);
        assert!(store.collection(1).unwrap().is_none());
        assert!(store.user_name(1).unwrap().is_none());
        // A key issued to a removed user is not stored.
        assert!(!store.add_host_key(&ka, &ra).unwrap());
        assert_eq!(
            store.set_user("alice", "h1", 0).unwrap(),
            UserUpsert::Created { id: 2 }
        );
    }

    #[test]
    fn list_counts_devices_and_reports_their_activity() {
        let (_dir, store) = temp_store();
        store.set_user("alice", "h1", 0).unwrap();
        store
            .create_user("bob", "h2", UserSource::Environment, 0)
            .unwrap();
        for n in 1..=3 {
            let (k, mut r) = key(1, n);
            r.last_seen = i64::from(n) * 10;
            r.client_version = format!("v{}", n % 2);
            store.add_host_key(&k, &r).unwrap();
        }
        let list = store.list_users().unwrap();
        let devices: Vec<_> = list.iter().map(|u| (u.name.as_str(), u.devices)).collect();
        assert_eq!(devices, vec![("alice", 3), ("bob", 0)]);
        assert_eq!(list[0].last_seen, Some(30));
        assert_eq!(list[0].client_versions, ["v0", "v1"]);
        assert_eq!(list[1].last_seen, None);
        assert_eq!(list[1].source, UserSource::Environment);
        assert_eq!(store.user_names().unwrap(), ["alice", "bob"]);
    }

    #[test]
    fn a_source_manages_only_its_own_users() {
        let (_dir, store) = temp_store();
        let file = UserSource::UsersFile;
        store.set_user("cli", "c", 0).unwrap();
        let decl = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, h)| (n.to_string(), h.to_string()))
                .collect()
        };
        let out = store
            .set_source_users(file, &decl(&[("a", "h1"), ("b", "h2"), ("cli", "x")]), 0)
            .unwrap();
        assert_eq!(
            out,
            vec![
                ("a".into(), SourceChange::Created { id: 2 }),
                ("b".into(), SourceChange::Created { id: 3 }),
                ("cli".into(), SourceChange::OwnedElsewhere(CMD)),
            ]
        );
        let (k, r) = key(2, 9);
        store.add_host_key(&k, &r).unwrap();
        let out = store
            .set_source_users(file, &decl(&[("a", "h1b")]), 0)
            .unwrap();
        assert_eq!(
            out,
            vec![
                (
                    "a".into(),
                    SourceChange::PasswordChanged {
                        id: 2,
                        revoked_keys: 1
                    }
                ),
                ("b".into(), SourceChange::Removed { id: 3 }),
            ]
        );
        assert_eq!(store.user("cli").unwrap().unwrap().password_hash, "c");
        assert!(store.user("b").unwrap().is_none());
        let out = store
            .set_source_users(file, &decl(&[("a", "h1b")]), 0)
            .unwrap();
        assert_eq!(out, vec![("a".into(), SourceChange::Unchanged)]);
        // Nothing declared removes every user of the source, and only those.
        let out = store.set_source_users(file, &[], 0).unwrap();
        assert_eq!(out, vec![("a".into(), SourceChange::Removed { id: 2 })]);
        assert_eq!(store.list_users().unwrap().len(), 1);
    }

    #[test]
    fn a_second_process_gets_a_clear_locked_error() {
        let (dir, _store) = temp_store();
        let err = Store::open(&dir.path().join("test.redb")).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use"));
    }
}
