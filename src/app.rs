//! The running server: opens the database, applies `SYNC_USERn`, starts the actors, binds
//! the listener, serves until SIGINT/SIGTERM, and shuts down in order (HTTP first, then the
//! actors, then the database), so every request in progress ends before the file closes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ankisyncd_actors::{SupervisorConfig, SupervisorHandle};

use crate::auth::{
    apply_env_users, env_users, EnvUserError, EnvUserOutcome, LoginLimiter, StoreDirectory,
};
use crate::config::Config;
use crate::store::{Store, StoreError, UserUpsert};
use crate::sync::UserState;

/// Shared by every request.
pub(crate) struct App {
    pub store: Arc<Store>,
    pub users: SupervisorHandle<StoreDirectory, UserState>,
    pub limiter: LoginLimiter,
    pub limits: crate::http::Limits,
    started: Instant,
    local_addr: SocketAddr,
}

impl App {
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// `host:port` as a client on this machine would reach it.
    pub(crate) fn listen_address(&self) -> String {
        self.local_addr.to_string()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Users(#[from] EnvUserError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the actors: {0}")]
    Actors(String),
    #[error("{0}")]
    Runtime(String),
}

/// Run the server until a shutdown signal.
pub async fn serve(config: Config, env: BTreeMap<String, String>) -> Result<(), ServeError> {
    let store = {
        let path = config.database.clone();
        let declared = env_users(&env)?;
        tokio::task::spawn_blocking(move || -> Result<Store, ServeError> {
            let store = Store::open(&path)?;
            for (name, outcome) in apply_env_users(&store, &declared, crate::clock::now_millis())? {
                match outcome {
                    EnvUserOutcome::Unchanged => tracing::debug!(user = %name, "user unchanged"),
                    EnvUserOutcome::Applied(UserUpsert::Created { .. }) => {
                        tracing::info!(user = %name, "user created from the environment")
                    }
                    EnvUserOutcome::Applied(UserUpsert::PasswordChanged { revoked_keys, .. }) => {
                        tracing::info!(user = %name, devices_logged_out = revoked_keys, "password changed from the environment")
                    }
                }
            }
            Ok(store)
        })
        .await
        .map_err(|e| ServeError::Runtime(e.to_string()))??
    };
    let store = Arc::new(store);
    let user_count = store.list_users()?.len();

    let users = SupervisorHandle::start(
        Arc::new(StoreDirectory::new(store.clone())),
        UserState::new,
        SupervisorConfig {
            idle_timeout: Duration::from_secs(config.user_idle_secs),
            name: "collection".to_string(),
        },
    )
    .await
    .map_err(|e| ServeError::Actors(e.to_string()))?;

    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        "ankisyncd {} listening on http://{local_addr}/ (database {}, {user_count} users)",
        env!("CARGO_PKG_VERSION"),
        store.path().display()
    );
    if user_count == 0 {
        tracing::warn!(
            "no users yet: add one with `ankisyncd user add NAME` or SYNC_USER1=name:password"
        );
    }

    let app = Arc::new(App {
        limiter: LoginLimiter::new(
            config.login_failures,
            Duration::from_secs(config.login_window_secs),
        ),
        limits: crate::http::Limits::from_payload_megs(config.max_payload_megs),
        store,
        users: users.clone(),
        started: Instant::now(),
        local_addr,
    });
    crate::http::serve(app, listener, shutdown_signal()).await;
    users.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
