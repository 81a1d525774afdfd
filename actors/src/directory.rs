//! The one seam through which the actor layer learns who a client is. It owns the
//! trait only; implementations live in the domain crate.

/// Maps client credentials (host keys) to user keys.
pub trait Directory: Send + Sync + 'static {
    /// Identifies one user's actor; one key, one write lock.
    type Key: Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static;
    /// What a failed lookup reports; surfaced as [`crate::ActorError::Directory`].
    type Error: std::error::Error + Send + Sync + 'static;

    /// Resolve a client credential (a host key) to a user key. Runs on the caller's
    /// thread, an async worker included: it must be a quick lookup (a point read of a
    /// small, hot table), never a scan or a write. `Ok(None)` means the credential is
    /// unknown.
    fn resolve(&self, credential: &str) -> Result<Option<Self::Key>, Self::Error>;
}
