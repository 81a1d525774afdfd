//! Users and their host keys. A user row, its name index, its collection record and its host
//! keys are created, changed and removed together, in one transaction each, so no request can
//! see a key whose user is gone.

use redb::{ReadableTable, ReadableTableMetadata};

use super::tables::{
    CollectionRecord, HostKeyRecord, UserRecord, COLLECTIONS, HOST_KEYS, META, META_NEXT_USER_ID,
    USERS, USER_HOST_KEYS, USER_NAMES,
};
use super::{decode, encode, Store, StoreError};

/// blake3 of a host key: what the database keeps instead of the key.
pub type HostKeyHash = [u8; 32];

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

/// One line of `user list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub name: String,
    pub id: u64,
    pub created: i64,
    pub devices: usize,
}

impl Store {
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let tx = self.read()?;
        let users = tx.open_table(USERS)?;
        let found = users.get(name)?;
        found.map(|v| decode(v.value(), "users", name)).transpose()
    }

    /// Create the user, or give an existing user a new password hash (which logs out every
    /// device, as a changed password does on the official server, whose host key is derived
    /// from the password).
    pub fn set_user(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<UserUpsert, StoreError> {
        let tx = self.write()?;
        let outcome = {
            let mut users = tx.open_table(USERS)?;
            let existing = users
                .get(name)?
                .map(|v| decode::<UserRecord>(v.value(), "users", name))
                .transpose()?;
            match existing {
                Some(mut record) => {
                    record.password_hash = password_hash.to_string();
                    users.insert(name, encode(&record)?.as_slice())?;
                    let revoked_keys = revoke_all_keys(&tx, record.id)?;
                    UserUpsert::PasswordChanged {
                        id: record.id,
                        revoked_keys,
                    }
                }
                None => {
                    let mut meta = tx.open_table(META)?;
                    let id = meta.get(META_NEXT_USER_ID)?.map(|v| v.value()).unwrap_or(1);
                    meta.insert(META_NEXT_USER_ID, id + 1)?;
                    let record = UserRecord {
                        id,
                        password_hash: password_hash.to_string(),
                        created: now_ms / 1000,
                    };
                    users.insert(name, encode(&record)?.as_slice())?;
                    tx.open_table(USER_NAMES)?.insert(id, name)?;
                    let collection = CollectionRecord::empty(now_ms);
                    tx.open_table(COLLECTIONS)?
                        .insert(id, encode(&collection)?.as_slice())?;
                    UserUpsert::Created { id }
                }
            }
        };
        self.commit(tx)?;
        Ok(outcome)
    }

    /// Remove the user with everything that belongs to them (their rows are doomed and
    /// deleted by the janitor). Returns false if there was no such user.
    pub fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let removed = {
            let mut users = tx.open_table(USERS)?;
            let record = users
                .remove(name)?
                .map(|v| decode::<UserRecord>(v.value(), "users", name))
                .transpose()?;
            match record {
                None => false,
                Some(record) => {
                    revoke_all_keys(&tx, record.id)?;
                    tx.open_table(USER_NAMES)?.remove(record.id)?;
                    tx.open_table(COLLECTIONS)?.remove(record.id)?;
                    super::generations::doom_all(&tx, record.id)?;
                    super::media::remove_user_media(&tx, record.id)?;
                    true
                }
            }
        };
        self.commit(tx)?;
        Ok(removed)
    }

    pub fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let tx = self.read()?;
        let users = tx.open_table(USERS)?;
        let keys = tx.open_table(USER_HOST_KEYS)?;
        let mut out = Vec::with_capacity(users.len()? as usize);
        for entry in users.iter()? {
            let (name, value) = entry?;
            let name = name.value().to_string();
            let record: UserRecord = decode(value.value(), "users", &name)?;
            let devices = keys
                .range((record.id, [0u8; 32])..=(record.id, [0xffu8; 32]))?
                .count();
            out.push(UserSummary {
                name,
                id: record.id,
                created: record.created,
                devices,
            });
        }
        Ok(out)
    }

    pub fn user_name(&self, id: u64) -> Result<Option<String>, StoreError> {
        let tx = self.read()?;
        let names = tx.open_table(USER_NAMES)?;
        let name = names.get(id)?.map(|v| v.value().to_string());
        Ok(name)
    }

    /// Record a host key issued at login. Fails quietly (no key stored) if the user was
    /// removed in the meantime, so a racing removal cannot leave an orphan key.
    pub fn add_host_key(
        &self,
        hash: &HostKeyHash,
        record: &HostKeyRecord,
    ) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let stored = {
            let names = tx.open_table(USER_NAMES)?;
            if names.get(record.user_id)?.is_none() {
                false
            } else {
                tx.open_table(HOST_KEYS)?
                    .insert(hash, encode(record)?.as_slice())?;
                tx.open_table(USER_HOST_KEYS)?
                    .insert((record.user_id, *hash), ())?;
                true
            }
        };
        self.commit(tx)?;
        Ok(stored)
    }

    /// The user (id and name) a host key belongs to, if the key is known.
    pub fn resolve_host_key(
        &self,
        hash: &HostKeyHash,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let tx = self.read()?;
        let keys = tx.open_table(HOST_KEYS)?;
        let found = keys.get(hash)?;
        let Some(record) = found
            .map(|v| decode::<HostKeyRecord>(v.value(), "host_keys", hex::encode(hash)))
            .transpose()?
        else {
            return Ok(None);
        };
        let names = tx.open_table(USER_NAMES)?;
        let name = names.get(record.user_id)?.map(|v| v.value().to_string());
        Ok(name.map(|name| (record.user_id, name)))
    }
}

fn revoke_all_keys(tx: &redb::WriteTransaction, user_id: u64) -> Result<usize, StoreError> {
    let mut index = tx.open_table(USER_HOST_KEYS)?;
    let mut keys = tx.open_table(HOST_KEYS)?;
    let hashes: Vec<HostKeyHash> = index
        .extract_from_if((user_id, [0u8; 32])..=(user_id, [0xffu8; 32]), |_, _| true)?
        .map(|entry| entry.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for hash in &hashes {
        keys.remove(hash)?;
    }
    Ok(hashes.len())
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;
    use super::*;

    fn key(user_id: u64, n: u8) -> (HostKeyHash, HostKeyRecord) {
        (
            [n; 32],
            HostKeyRecord {
                user_id,
                created: 1,
                client_version: "test".into(),
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
    }

    #[test]
    fn removing_a_user_removes_keys_and_collection_and_ids_are_not_reused() {
        let (_dir, store) = temp_store();
        store.set_user("alice", "h1", 0).unwrap();
        let (ka, ra) = key(1, 1);
        store.add_host_key(&ka, &ra).unwrap();
        assert!(store.remove_user("alice").unwrap());
        assert!(!store.remove_user("alice").unwrap());
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
    fn list_counts_devices() {
        let (_dir, store) = temp_store();
        store.set_user("alice", "h1", 0).unwrap();
        store.set_user("bob", "h2", 0).unwrap();
        for n in 1..=3 {
            let (k, r) = key(1, n);
            store.add_host_key(&k, &r).unwrap();
        }
        let list = store.list_users().unwrap();
        let devices: Vec<_> = list.iter().map(|u| (u.name.as_str(), u.devices)).collect();
        assert_eq!(devices, vec![("alice", 3), ("bob", 0)]);
    }

    #[test]
    fn a_second_process_gets_a_clear_locked_error() {
        let (dir, _store) = temp_store();
        let err = Store::open(&dir.path().join("test.redb")).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use"));
    }
}
