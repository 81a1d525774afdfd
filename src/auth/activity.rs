//! When each device was last seen, and with which client: kept in memory as requests come
//! in, and saved to the host-key rows in one transaction now and then (every
//! [`FLUSH_INTERVAL`], before `user list`/`user devices` answer, and at shutdown), so a
//! request never costs a durable write for it. A crash loses at most one interval of it.
//!
//! Only devices whose key resolved are recorded, so the map is bounded by the number of
//! logged-in devices.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{DeviceSeen, HostKeyHash, Store, StoreError};

/// How often the latest activity is saved while the server runs.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct DeviceActivity {
    unsaved: Mutex<HashMap<HostKeyHash, Seen>>,
}

#[derive(Debug, Clone)]
struct Seen {
    at: i64,
    client_version: String,
}

impl DeviceActivity {
    /// A request from `device` at `now_secs`; `client_version` may be empty (unknown).
    pub fn record(&self, device: HostKeyHash, client_version: &str, now_secs: i64) {
        let mut unsaved = self.lock();
        let seen = unsaved.entry(device).or_insert_with(|| Seen {
            at: now_secs,
            client_version: String::new(),
        });
        seen.at = seen.at.max(now_secs);
        if !client_version.is_empty() && seen.client_version != client_version {
            seen.client_version = client_version.to_string();
        }
    }

    /// Save what was recorded since the last flush. On failure it is kept for the next try.
    /// Blocking (a write transaction): call it off the async runtime.
    pub fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let taken = std::mem::take(&mut *self.lock());
        if taken.is_empty() {
            return Ok(0);
        }
        let seen: Vec<DeviceSeen> = taken
            .iter()
            .map(|(hash, seen)| DeviceSeen {
                hash: *hash,
                at: seen.at,
                client_version: seen.client_version.clone(),
            })
            .collect();
        store.record_device_activity(&seen).inspect_err(|_| {
            let mut unsaved = self.lock();
            for (hash, old) in taken {
                // Anything recorded meanwhile is newer.
                unsaved.entry(hash).or_insert(old);
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HostKeyHash, Seen>> {
        // The map holds no invariant a panic could break.
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Flush `activity` every [`FLUSH_INTERVAL`], for as long as the server runs.
pub async fn flush_periodically(activity: Arc<DeviceActivity>, store: Arc<Store>) {
    let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        flush_now(&activity, &store).await;
    }
}

/// Flush `activity` on the blocking pool; a failure is logged (the activity is kept for the
/// next flush).
pub async fn flush_now(activity: &Arc<DeviceActivity>, store: &Arc<Store>) {
    let (activity, store) = (activity.clone(), store.clone());
    match tokio::task::spawn_blocking(move || activity.flush(&store)).await {
        Ok(Ok(saved)) => tracing::trace!(saved, "device activity saved"),
        Ok(Err(e)) => tracing::warn!("saving device activity: {e}"),
        Err(e) => tracing::warn!("saving device activity: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{temp_store, HostKeyRecord};

    #[test]
    fn the_latest_request_is_saved_once_per_flush() {
        let (_dir, store) = temp_store();
        store.set_user("a", "h", 0).unwrap();
        let record = HostKeyRecord {
            user_id: 1,
            created: 5,
            client_version: "login".into(),
            last_seen: 0,
        };
        store.add_host_key(&[1; 32], &record).unwrap();
        let activity = DeviceActivity::default();
        activity.record([1; 32], "26.9.3", 20);
        activity.record([1; 32], "", 30);
        activity.record([1; 32], "", 25);
        assert_eq!(activity.flush(&store).unwrap(), 1);
        assert_eq!(activity.flush(&store).unwrap(), 0, "nothing new to save");
        let device = &store.user_devices("a").unwrap().unwrap().1[0];
        assert_eq!(
            (device.last_seen, device.client_version.as_str()),
            (30, "26.9.3")
        );
    }
}
