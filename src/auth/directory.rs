//! How the actor layer finds a user from a host key: the `Directory` the session supervisor
//! asks on every authenticated request. It reads the database each time, so a removed user or
//! a revoked key fails at its very next request.

use std::sync::Arc;

use ankisyncd_actors::Directory;

use super::hash_host_key;
use crate::store::{Store, StoreError};

/// A user as the actors know them: the id keys their data, the name is for logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserRef {
    pub id: u64,
    pub name: Arc<str>,
}

impl UserRef {
    pub fn new(id: u64, name: &str) -> Self {
        UserRef {
            id,
            name: Arc::from(name),
        }
    }
}

pub struct StoreDirectory {
    store: Arc<Store>,
}

impl StoreDirectory {
    pub fn new(store: Arc<Store>) -> Self {
        StoreDirectory { store }
    }
}

impl Directory for StoreDirectory {
    type Key = UserRef;
    type Error = StoreError;

    fn resolve(&self, credential: &str) -> Result<Option<UserRef>, StoreError> {
        if credential.is_empty() {
            return Ok(None);
        }
        let found = self.store.resolve_host_key(&hash_host_key(credential))?;
        Ok(found.map(|(id, name)| UserRef::new(id, &name)))
    }
}
