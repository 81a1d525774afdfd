//! What a running server does in memory after the database changed under it: a removed or
//! logged-out user's actors are stopped (their state, with any sync in progress, dropped)
//! and the rows that sync had staged in the database cleared; a single revoked device loses
//! only the sync it started. The database change itself was already committed, so every
//! later request of those devices fails authentication whatever happens here.

use super::execute::Aftermath;
use crate::app::App;
use crate::auth::UserRef;

pub(crate) async fn settle(app: &App, aftermath: Aftermath) {
    match aftermath {
        Aftermath::Nothing => {}
        Aftermath::UserStopped { user, removed } => {
            stop(app, &user).await;
            if removed {
                app.scratch.drop_downloads(user.id);
                app.janitor.notify_one();
            }
        }
        Aftermath::DeviceRevoked { user, device } => {
            let store = app.store.clone();
            let discarded = app
                .users
                .run(&user, move |state| {
                    if state.discard_session_of(&device) {
                        state.clear_staged(&store)
                    } else {
                        Ok(())
                    }
                })
                .await;
            match discarded {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(user = %user.name, "clearing staged rows: {e}"),
                Err(e) => {
                    tracing::warn!(user = %user.name, "discarding a revoked device's sync: {e}")
                }
            }
        }
        Aftermath::CollectionReplaced { user } => {
            stop(app, &user).await;
            app.scratch.drop_downloads(user.id);
        }
    }
}

/// Stop the user's collection and media actors (each after its job in progress) and clear
/// what a discarded sync staged in the database.
async fn stop(app: &App, user: &UserRef) {
    app.users.stop_user(user).await;
    app.media.stop_user(user).await;
    let (store, id) = (app.store.clone(), user.id);
    match tokio::task::spawn_blocking(move || store.clear_staged(id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(user = %user.name, "clearing staged rows: {e}"),
        Err(e) => tracing::warn!(user = %user.name, "clearing staged rows: {e}"),
    }
}
