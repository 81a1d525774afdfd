//! The in-memory state of one user, owned by that user's actor: only the actor's current
//! job touches it, so it needs no lock. It is dropped when the actor retires after
//! `user_idle_secs` without requests.

use crate::auth::UserRef;

#[derive(Debug)]
pub(crate) struct UserState {
    pub user: UserRef,
}

impl UserState {
    pub(crate) fn new(user: &UserRef) -> Self {
        UserState { user: user.clone() }
    }
}
