//! The in-memory state of one user, owned by that user's actor: only the actor's current
//! job touches it, so it needs no lock. It is dropped when the actor retires after
//! `user_idle_secs` without requests, which discards a sync left unfinished.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::session::SyncSession;
use super::SyncError;
use crate::auth::UserRef;
use crate::store::{HostKeyHash, Store, StoreError};

#[derive(Debug)]
pub(crate) struct UserState {
    pub user: UserRef,
    /// The normal sync in progress, if any: at most one per user, the newest `start` wins.
    pub session: Option<SyncSession>,
    /// Why the user's last sync was refused (a quota), for the next `meta` to show: clients
    /// display no text from a failed request.
    pub refusal: Option<String>,
    pub live: LiveSessions,
    /// True from a `clear_staged` of this user until a sync of theirs spills rows: then
    /// no staged row of theirs is in the database, and clearing them needs no write.
    pub staged_clear: bool,
}

impl UserState {
    pub(crate) fn new(user: &UserRef, live: &LiveSessions) -> Self {
        UserState {
            user: user.clone(),
            session: None,
            refusal: None,
            live: live.clone(),
            staged_clear: false,
        }
    }

    /// Run a step of the sync whose session key is `key`. A step that fails discards the
    /// whole sync, as the official server rolls back its transaction: the client then
    /// starts over (or is told to check its database).
    pub(crate) fn with_session<T>(
        &mut self,
        key: &str,
        step: impl FnOnce(&mut SyncSession) -> Result<T, SyncError>,
    ) -> Result<T, SyncError> {
        if key.is_empty() {
            return Err(SyncError::BadRequest("missing skey".into()));
        }
        let session = match self.session.as_mut() {
            None => return Err(SyncError::Conflict("no active sync")),
            Some(session) if session.key != key => {
                return Err(SyncError::Conflict("active sync with different key"))
            }
            Some(session) => session,
        };
        let result = step(session);
        if let Err(e) = &result {
            tracing::warn!(user = %self.user.name, "sync discarded: {e}");
            self.session = None;
        }
        result
    }

    /// Run a step of the sync `key` that stages the client's rows, then keep the stage
    /// within `memory_rows` (past it the rows move to the database's staging table). Once
    /// rows may be there, clearing them takes a write again.
    pub(crate) fn stage_step(
        &mut self,
        store: &Store,
        key: &str,
        step: impl FnOnce(&mut SyncSession) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        let result = self.with_session(key, |session| {
            step(session)?;
            session.bound_memory(store)?;
            Ok(session.spilled())
        });
        // Before the result: a step that failed after spilling leaves rows behind too.
        if !matches!(result, Ok(false)) {
            self.staged_clear = false;
        }
        result.map(|_| ())
    }

    /// Remove this user's rows from the staging table, unless none can be there.
    pub(crate) fn clear_staged(&mut self, store: &Store) -> Result<(), StoreError> {
        if !self.staged_clear {
            store.clear_staged(self.user.id)?;
            self.staged_clear = true;
        }
        Ok(())
    }

    /// Forget the sync in progress (abort, full sync, a newer start).
    pub(crate) fn discard_session(&mut self) {
        if self.session.take().is_some() {
            tracing::debug!(user = %self.user.name, "unfinished sync discarded");
        }
    }

    /// Forget the sync in progress if `device` started it (that device was logged out);
    /// true if there was one. Its rows staged in the database are the caller's to clear.
    pub(crate) fn discard_session_of(&mut self, device: &HostKeyHash) -> bool {
        if self.session.as_ref().is_some_and(|s| s.device == *device) {
            self.session = None;
            tracing::info!(user = %self.user.name, "sync of a logged-out device discarded");
            true
        } else {
            false
        }
    }
}

/// How many sync sessions exist across all users (the metrics' gauge). Each session holds a
/// [`Counted`] token, so every way a session ends (finish, abort, a newer start, a failed
/// step, the actor retiring) is counted by the drop itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveSessions(Arc<AtomicUsize>);

impl LiveSessions {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn enter(&self) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(self.0.clone())
    }
}

#[derive(Debug)]
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_follows_the_tokens() {
        let live = LiveSessions::default();
        let a = live.enter();
        let b = live.clone().enter();
        assert_eq!(live.count(), 2);
        drop(a);
        assert_eq!(live.count(), 1);
        drop(b);
        assert_eq!(live.count(), 0);
    }
}
