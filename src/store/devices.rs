//! Host keys: one per device login, stored as a hash. Issued at login, resolved on every
//! request, listed and revoked by `ankisyncd user devices|revoke`, and given the device's
//! latest activity now and then (never on every request: see `auth::DeviceActivity`).

use redb::{ReadableTable, WriteTransaction};

use super::tables::{HostKeyRecord, HOST_KEYS, USER_HOST_KEYS, USER_NAMES};
use super::users::{read_user, LoggedOut};
use super::{decode, encode, Store, StoreError};

/// blake3 of a host key: what the database keeps instead of the key.
pub type HostKeyHash = [u8; 32];

/// One logged-in device of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    pub hash: HostKeyHash,
    /// Unix seconds of the login.
    pub created: i64,
    /// Unix seconds of the latest saved activity (the login at least).
    pub last_seen: i64,
    pub client_version: String,
}

/// A device's latest request, to be saved in its host-key row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSeen {
    pub hash: HostKeyHash,
    /// Unix seconds.
    pub at: i64,
    /// Empty when the request did not say.
    pub client_version: String,
}

impl Store {
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

    /// The user's id and logged-in devices, oldest login first; `None` if there is no such
    /// user.
    pub fn user_devices(
        &self,
        name: &str,
    ) -> Result<Option<(u64, Vec<DeviceSummary>)>, StoreError> {
        let Some(record) = self.user(name)? else {
            return Ok(None);
        };
        let tx = self.read()?;
        let index = tx.open_table(USER_HOST_KEYS)?;
        let keys = tx.open_table(HOST_KEYS)?;
        let mut devices = devices_of(&index, &keys, record.id)?;
        devices.sort_by_key(|d| (d.created, d.hash));
        Ok(Some((record.id, devices)))
    }

    /// Log out every device of the user; `None` if there is no such user.
    pub fn revoke_devices(&self, name: &str) -> Result<Option<LoggedOut>, StoreError> {
        let tx = self.write()?;
        let outcome = match read_user(&tx, name)? {
            None => None,
            Some(record) => Some(LoggedOut {
                id: record.id,
                devices: revoke_all_keys(&tx, record.id)?,
            }),
        };
        self.commit(tx)?;
        Ok(outcome)
    }

    /// Log out one device of the user; false if the key is not (or no longer) theirs.
    pub fn revoke_device(&self, user_id: u64, hash: &HostKeyHash) -> Result<bool, StoreError> {
        let tx = self.write()?;
        let revoked = tx
            .open_table(USER_HOST_KEYS)?
            .remove((user_id, *hash))?
            .is_some();
        if revoked {
            tx.open_table(HOST_KEYS)?.remove(hash)?;
        }
        self.commit(tx)?;
        Ok(revoked)
    }

    /// Save devices' latest activity in one transaction. Keys revoked meanwhile are skipped,
    /// never brought back. Returns how many rows changed.
    pub fn record_device_activity(&self, seen: &[DeviceSeen]) -> Result<usize, StoreError> {
        let tx = self.write()?;
        let mut changed = 0;
        {
            let mut keys = tx.open_table(HOST_KEYS)?;
            for device in seen {
                let found = keys
                    .get(&device.hash)?
                    .map(|v| {
                        decode::<HostKeyRecord>(v.value(), "host_keys", hex::encode(device.hash))
                    })
                    .transpose()?;
                let Some(mut record) = found else { continue };
                record.last_seen = record.last_seen.max(device.at);
                if !device.client_version.is_empty() {
                    record.client_version.clone_from(&device.client_version);
                }
                keys.insert(&device.hash, encode(&record)?.as_slice())?;
                changed += 1;
            }
        }
        self.commit(tx)?;
        Ok(changed)
    }
}

/// Every device of `user_id`.
pub(super) fn devices_of(
    index: &impl ReadableTable<(u64, HostKeyHash), ()>,
    keys: &impl ReadableTable<HostKeyHash, &'static [u8]>,
    user_id: u64,
) -> Result<Vec<DeviceSummary>, StoreError> {
    let mut devices = Vec::new();
    for entry in index.range((user_id, [0u8; 32])..=(user_id, [0xffu8; 32]))? {
        let (key, _) = entry?;
        let hash = key.value().1;
        let Some(value) = keys.get(&hash)? else {
            continue;
        };
        let record: HostKeyRecord = decode(value.value(), "host_keys", hex::encode(hash))?;
        devices.push(DeviceSummary {
            hash,
            created: record.created,
            last_seen: record.last_seen.max(record.created),
            client_version: record.client_version,
        });
    }
    Ok(devices)
}

pub(super) fn revoke_all_keys(tx: &WriteTransaction, user_id: u64) -> Result<usize, StoreError> {
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

    fn record(user_id: u64, created: i64) -> HostKeyRecord {
        HostKeyRecord {
            user_id,
            created,
            client_version: "login".into(),
            last_seen: 0,
        }
    }

    #[test]
    fn devices_are_listed_revoked_one_by_one_or_all() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        store.set_user("b", "h", 0).unwrap();
        store.add_host_key(&[2; 32], &record(1, 20)).unwrap();
        store.add_host_key(&[1; 32], &record(1, 10)).unwrap();
        store.add_host_key(&[3; 32], &record(2, 10)).unwrap();
        let (id, devices) = store.user_devices("a").unwrap().unwrap();
        assert_eq!(id, 1);
        let hashes: Vec<_> = devices.iter().map(|d| d.hash[0]).collect();
        assert_eq!(hashes, [1, 2], "oldest login first");
        assert_eq!(devices[0].last_seen, 10, "the login counts as seen");
        assert!(store.user_devices("nobody").unwrap().is_none());

        assert!(!store.revoke_device(1, &[3; 32]).unwrap(), "not a's key");
        assert!(store.revoke_device(1, &[1; 32]).unwrap());
        assert!(store.resolve_host_key(&[1; 32]).unwrap().is_none());
        assert!(store.resolve_host_key(&[2; 32]).unwrap().is_some());
        assert_eq!(
            store.revoke_devices("a").unwrap(),
            Some(LoggedOut { id: 1, devices: 1 })
        );
        assert_eq!(store.user_devices("a").unwrap().unwrap().1, []);
        assert!(store.resolve_host_key(&[3; 32]).unwrap().is_some());
        assert_eq!(store.revoke_devices("nobody").unwrap(), None);
    }

    #[test]
    fn activity_updates_live_keys_only() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        store.add_host_key(&[1; 32], &record(1, 10)).unwrap();
        let seen = |hash: u8, at: i64, client: &str| DeviceSeen {
            hash: [hash; 32],
            at,
            client_version: client.into(),
        };
        let changed = store
            .record_device_activity(&[seen(1, 50, "26.9.3"), seen(9, 60, "x")])
            .unwrap();
        assert_eq!(changed, 1);
        assert!(
            store.resolve_host_key(&[9; 32]).unwrap().is_none(),
            "no key is created"
        );
        store.record_device_activity(&[seen(1, 40, "")]).unwrap();
        let device = &store.user_devices("a").unwrap().unwrap().1[0];
        assert_eq!(
            (device.last_seen, device.client_version.as_str()),
            (50, "26.9.3"),
            "an older time and an unknown client keep what was saved"
        );
    }
}
