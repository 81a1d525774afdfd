//! The users file applied to the database: at startup, before anything serves (a bad file
//! stops startup), and on SIGHUP (a bad file changes nothing and is reported; the users it
//! changed or removed are then stopped as `user passwd`/`user remove` would stop them).
//! Only users the file created are changed or removed by it.

use std::path::Path;

use super::execute::Aftermath;
use super::live::settle;
use crate::app::App;
use crate::auth::{read_users_file, UserRef, UsersFileError};
use crate::store::{SourceChange, Store, StoreError, UserSource};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    File(#[from] UsersFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read `path` and make the file's users match it, in one transaction. Blocking. Returns
/// what a running server must do about the users it changed.
pub(crate) fn apply_users_file(
    store: &Store,
    path: &Path,
    now_ms: i64,
) -> Result<Vec<Aftermath>, ApplyError> {
    let declared = read_users_file(path)?;
    let pairs: Vec<(String, String)> = declared
        .iter()
        .map(|user| (user.name.clone(), user.phc.clone()))
        .collect();
    let changes = store.set_source_users(UserSource::UsersFile, &pairs, now_ms)?;
    let (mut created, mut changed, mut removed) = (0, 0, 0);
    let mut aftermath = Vec::new();
    for (name, change) in changes {
        match change {
            SourceChange::Created { .. } => {
                created += 1;
                tracing::info!(user = %name, "user created from the users file");
            }
            SourceChange::PasswordChanged { id, revoked_keys } => {
                changed += 1;
                tracing::info!(user = %name, devices_logged_out = revoked_keys, "password changed from the users file");
                aftermath.push(Aftermath::UserStopped {
                    user: UserRef::new(id, &name),
                    removed: false,
                });
            }
            SourceChange::Removed { id } => {
                removed += 1;
                tracing::info!(user = %name, "user removed: no longer in the users file");
                aftermath.push(Aftermath::UserStopped {
                    user: UserRef::new(id, &name),
                    removed: true,
                });
            }
            SourceChange::Unchanged => tracing::debug!(user = %name, "user unchanged"),
            SourceChange::OwnedElsewhere(source) => {
                let line = declared
                    .iter()
                    .find(|user| user.name == name)
                    .map_or(0, |user| user.line);
                let owner = match source {
                    UserSource::Environment => "SYNC_USERn",
                    UserSource::UsersFile | UserSource::Command => "`ankisyncd user add`",
                };
                tracing::warn!(
                    "users file {} line {line}: user {name} was created by {owner}; left alone",
                    path.display()
                );
            }
        }
    }
    tracing::info!(
        file = %path.display(),
        users = declared.len(),
        created,
        changed,
        removed,
        "users file applied"
    );
    Ok(aftermath)
}

/// SIGHUP: apply the server's users file again, if it has one.
pub(crate) async fn reload_users_file(app: &App) {
    let Some(path) = app.users_file.clone() else {
        tracing::info!("no users_file configured: no users to reload");
        return;
    };
    let store = app.store.clone();
    let applied = tokio::task::spawn_blocking(move || {
        apply_users_file(&store, &path, crate::clock::now_millis())
    })
    .await;
    match applied {
        Ok(Ok(aftermath)) => {
            for step in aftermath {
                settle(app, step).await;
            }
        }
        Ok(Err(e)) => tracing::error!("{e}; users left as they were"),
        Err(e) => tracing::error!("reloading the users file: {e}"),
    }
}
