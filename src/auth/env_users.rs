//! Users declared the official server's way: `SYNC_USER1..N=name:password`, or
//! `name:<PHC hash>` when `PASSWORDS_HASHED` is set (to any value). Applied at startup:
//! missing users are created and changed passwords updated; an unchanged password leaves the
//! user and their logged-in devices alone, so restarting the server logs nobody out.

use std::collections::BTreeMap;

use super::password::{check_phc, hash_password, verify_password, PasswordError};
use crate::store::{Store, StoreError, UserSource, UserUpsert};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvUser {
    pub var: String,
    pub name: String,
    pub secret: Secret,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Plain(String),
    Phc(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Plain(..)"),
            Secret::Phc(_) => f.write_str("Phc(..)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvUserError {
    #[error("{var} should be in 'username:password' format")]
    Format { var: String },
    #[error("{var}: {reason}")]
    Name { var: String, reason: String },
    #[error("{var}: PASSWORDS_HASHED is set but the password is not a usable hash: {source}")]
    Hash {
        var: String,
        #[source]
        source: PasswordError,
    },
    #[error("{var}: {source}")]
    Password {
        var: String,
        #[source]
        source: PasswordError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read `SYNC_USER1`, `SYNC_USER2`, … up to the first gap, as the official server does.
pub fn env_users(env: &BTreeMap<String, String>) -> Result<Vec<EnvUser>, EnvUserError> {
    let hashed = env.contains_key("PASSWORDS_HASHED");
    let mut users = Vec::new();
    for idx in 1.. {
        let var = format!("SYNC_USER{idx}");
        let Some(value) = env.get(&var) else { break };
        let (name, password) = value
            .split_once(':')
            .ok_or_else(|| EnvUserError::Format { var: var.clone() })?;
        super::validate_user_name(name).map_err(|reason| EnvUserError::Name {
            var: var.clone(),
            reason,
        })?;
        let secret = if hashed {
            check_phc(password).map_err(|source| EnvUserError::Hash {
                var: var.clone(),
                source,
            })?;
            Secret::Phc(password.to_string())
        } else {
            Secret::Plain(password.to_string())
        };
        users.push(EnvUser {
            var,
            name: name.to_string(),
            secret,
        });
    }
    Ok(users)
}

/// What happened to each declared user, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvUserOutcome {
    Unchanged,
    Applied(UserUpsert),
}

/// Create or update the declared users. Runs the slow password hash, so call it off the
/// async runtime.
pub fn apply_env_users(
    store: &Store,
    users: &[EnvUser],
    now_ms: i64,
) -> Result<Vec<(String, EnvUserOutcome)>, EnvUserError> {
    let mut outcomes = Vec::with_capacity(users.len());
    for user in users {
        let existing = store.user(&user.name)?;
        let unchanged = match (&existing, &user.secret) {
            (None, _) => false,
            (Some(record), Secret::Phc(phc)) => record.password_hash == *phc,
            // A stored hash we cannot read is replaced by the declared password.
            (Some(record), Secret::Plain(pass)) => {
                verify_password(pass, &record.password_hash).unwrap_or(false)
            }
        };
        let outcome = if unchanged {
            EnvUserOutcome::Unchanged
        } else {
            let hash = match &user.secret {
                Secret::Phc(phc) => phc.clone(),
                Secret::Plain(pass) => {
                    hash_password(pass).map_err(|source| EnvUserError::Password {
                        var: user.var.clone(),
                        source,
                    })?
                }
            };
            EnvUserOutcome::Applied(store.upsert_user(
                &user.name,
                &hash,
                UserSource::Environment,
                now_ms,
            )?)
        };
        outcomes.push((user.name.clone(), outcome));
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env_map as env;
    use crate::store::temp_store;

    #[test]
    fn reads_up_to_the_first_gap() {
        let users = env_users(&env(&[
            ("SYNC_USER1", "a:x:y"),
            ("SYNC_USER2", "b:pw"),
            ("SYNC_USER4", "d:pw"),
        ]))
        .unwrap();
        let names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        // Only the first ':' separates, as in the official server.
        assert_eq!(users[0].secret, Secret::Plain("x:y".into()));
    }

    #[test]
    fn malformed_entries_name_the_variable() {
        let err = env_users(&env(&[("SYNC_USER1", "nocolon")])).unwrap_err();
        assert!(err.to_string().contains("SYNC_USER1"), "{err}");
        let err = env_users(&env(&[("SYNC_USER1", ":pw")])).unwrap_err();
        assert!(err.to_string().contains("SYNC_USER1"), "{err}");
        let err = env_users(&env(&[
            ("SYNC_USER1", "a:plain"),
            ("PASSWORDS_HASHED", "1"),
        ]))
        .unwrap_err();
        assert!(matches!(err, EnvUserError::Hash { .. }), "{err}");
    }

    #[test]
    fn restarts_keep_users_unchanged_and_password_changes_apply() {
        let (_dir, store) = temp_store();
        let first = env_users(&env(&[("SYNC_USER1", "a:one")])).unwrap();
        let out = apply_env_users(&store, &first, 0).unwrap();
        assert_eq!(
            out[0].1,
            EnvUserOutcome::Applied(UserUpsert::Created { id: 1 })
        );
        let out = apply_env_users(&store, &first, 0).unwrap();
        assert_eq!(out[0].1, EnvUserOutcome::Unchanged);
        let source = store.user("a").unwrap().unwrap().source;
        assert_eq!(source, UserSource::Environment);
        let second = env_users(&env(&[("SYNC_USER1", "a:two")])).unwrap();
        let out = apply_env_users(&store, &second, 0).unwrap();
        assert!(matches!(
            out[0].1,
            EnvUserOutcome::Applied(UserUpsert::PasswordChanged { id: 1, .. })
        ));
        let stored = store.user("a").unwrap().unwrap().password_hash;
        assert!(verify_password("two", &stored).unwrap());
    }

    #[test]
    fn hashed_passwords_are_stored_verbatim() {
        let (_dir, store) = temp_store();
        let phc = hash_password("pw").unwrap();
        let users = env_users(&env(&[
            ("SYNC_USER1", &format!("a:{phc}")),
            ("PASSWORDS_HASHED", "1"),
        ]))
        .unwrap();
        apply_env_users(&store, &users, 0).unwrap();
        assert_eq!(store.user("a").unwrap().unwrap().password_hash, phc);
    }
}
