//! `hostKey`: verify a user name and password and issue a new host key for the device.
//! Every login gets its own key, so one device can be logged out without the others.

use std::net::IpAddr;
use std::sync::Arc;

use super::SyncError;
use crate::auth::{hash_host_key, new_host_key, verify_password, LoginLimiter};
use crate::protocol::{HostKeyRequest, HostKeyResponse};
use crate::store::{HostKeyRecord, Store};

pub(crate) async fn host_key(
    store: Arc<Store>,
    limiter: &LoginLimiter,
    peer: IpAddr,
    client_version: String,
    request: HostKeyRequest,
    now_secs: i64,
) -> Result<HostKeyResponse, SyncError> {
    if let Err(wait) = limiter.check(peer, &request.user) {
        tracing::warn!(user = %request.user, %peer, "login refused: too many failures");
        return Err(SyncError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let user = request.user.clone();
    let issued =
        tokio::task::spawn_blocking(move || login(&store, request, client_version, now_secs))
            .await
            .map_err(|e| SyncError::Internal(format!("login task failed: {e}")))??;
    match issued {
        Some(key) => {
            limiter.record_success(&user);
            Ok(HostKeyResponse { key })
        }
        None => {
            limiter.record_failure(peer, &user);
            tracing::info!(user = %user, %peer, "login failed: wrong user name or password");
            Err(SyncError::AuthFailed)
        }
    }
}

/// Slow on purpose (password hash): runs on the blocking pool.
fn login(
    store: &Store,
    request: HostKeyRequest,
    client_version: String,
    now_secs: i64,
) -> Result<Option<String>, SyncError> {
    let record = store.user(&request.user)?;
    let stored_hash = record
        .as_ref()
        .map_or(crate::auth::decoy_hash(), |r| r.password_hash.as_str());
    let matches = verify_password(&request.password, stored_hash).unwrap_or_else(|e| {
        tracing::error!(user = %request.user, "stored password hash is unusable: {e}");
        false
    });
    let Some(record) = record.filter(|_| matches) else {
        return Ok(None);
    };
    let key = new_host_key();
    let stored = store.add_host_key(
        &hash_host_key(&key),
        &HostKeyRecord {
            user_id: record.id,
            created: now_secs,
            client_version,
            last_seen: now_secs,
        },
    )?;
    Ok(stored.then_some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_password;
    use crate::store::temp_store;

    fn req(u: &str, p: &str) -> HostKeyRequest {
        serde_json::from_value(serde_json::json!({"u": u, "p": p})).unwrap()
    }

    /// A store with user "me" (password "pw") and a limiter allowing `failures`.
    fn setup(failures: u32) -> (tempfile::TempDir, Arc<Store>, LoginLimiter) {
        let (dir, store) = temp_store();
        store
            .set_user("me", &hash_password("pw").unwrap(), 0)
            .unwrap();
        let limiter = LoginLimiter::new(failures, std::time::Duration::from_secs(60));
        (dir, Arc::new(store), limiter)
    }

    async fn login(
        store: &Arc<Store>,
        limiter: &LoginLimiter,
        request: HostKeyRequest,
    ) -> Result<HostKeyResponse, SyncError> {
        let peer: IpAddr = [127, 0, 0, 1].into();
        host_key(store.clone(), limiter, peer, "c".into(), request, 1).await
    }

    #[tokio::test]
    async fn right_password_issues_a_new_resolvable_key_each_time() {
        let (_dir, store, limiter) = setup(3);
        let a = login(&store, &limiter, req("me", "pw")).await.unwrap();
        let b = login(&store, &limiter, req("me", "pw")).await.unwrap();
        assert_ne!(a.key, b.key);
        let owner = store.resolve_host_key(&hash_host_key(&a.key)).unwrap();
        assert_eq!(owner.map(|(id, _)| id), Some(1));
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_fail_then_get_limited() {
        let (_dir, store, limiter) = setup(2);
        for r in [req("me", "bad"), req("nobody", "pw")] {
            let e = login(&store, &limiter, r).await;
            assert!(matches!(e, Err(SyncError::AuthFailed)), "{e:?}");
        }
        let e = login(&store, &limiter, req("me", "pw")).await;
        assert!(matches!(e, Err(SyncError::RateLimited { .. })), "{e:?}");
        assert_eq!(store.list_users().unwrap()[0].devices, 0);
    }
}
