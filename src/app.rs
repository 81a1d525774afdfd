//! The running server: reads the TLS files, opens the database, applies `SYNC_USERn` and the
//! users file, starts the janitor, the scheduled backups and the actors, binds the admin
//! socket and the listener, serves until SIGINT/SIGTERM (SIGHUP re-reads files), and shuts
//! down in order (HTTP first, then the admin socket, then the actors, then the database), so
//! every request in progress ends before the file closes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ankisyncd_actors::{SupervisorConfig, SupervisorHandle};
use tokio::sync::Notify;

use crate::admin::{apply_users_file, reload_users_file, AdminSocket, ApplyError, SocketError};
use crate::auth::{
    apply_env_users, env_users, flush_now, flush_periodically, DeviceActivity, EnvUserError,
    EnvUserOutcome, LoginLimiter, StoreDirectory,
};
use crate::compat::Compat;
use crate::config::Config;
use crate::fullsync::Scratch;
use crate::media::MediaState;
use crate::metrics::Metrics;
use crate::quota::Quota;
use crate::store::{Store, StoreError, UserUpsert};
use crate::sync::{LiveSessions, UserState};
use crate::tls::{Certificates, TlsError};

/// Shared by every request.
pub(crate) struct App {
    pub store: Arc<Store>,
    pub scratch: Arc<Scratch>,
    /// Former generations kept per user for `user restore-previous`.
    pub keep_generations: usize,
    /// Rows a normal sync keeps in memory before staging the rest in the database.
    pub stage_memory_rows: usize,
    /// Wakes the janitor when a generation was doomed.
    pub janitor: Arc<Notify>,
    pub users: SupervisorHandle<StoreDirectory, UserState>,
    /// Each user's media sync, serialized per user apart from their collection sync: clients
    /// run both at once.
    pub media: SupervisorHandle<StoreDirectory, MediaState>,
    pub limiter: LoginLimiter,
    pub limits: crate::http::Limits,
    /// Devices' latest requests, saved now and then.
    pub activity: Arc<DeviceActivity>,
    /// Re-read on SIGHUP; its users are left to it by `user passwd`/`user remove`.
    pub users_file: Option<PathBuf>,
    /// Per-user limits on stored data.
    pub quota: Quota,
    /// The normalized `path_prefix` (`/anki`, or empty).
    pub path_prefix: String,
    /// The certificate of built-in HTTPS, when `[tls]` is set.
    pub tls: Option<Arc<Certificates>>,
    pub metrics: Arc<Metrics>,
    /// Whether `/metrics` is served (recording goes on regardless).
    pub metrics_page: bool,
    pub sessions: LiveSessions,
    pub compat: Compat,
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

    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Users(#[from] EnvUserError),
    #[error(transparent)]
    UsersFile(#[from] ApplyError),
    #[error(transparent)]
    AdminSocket(#[from] SocketError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("scratch directory next to the database: {0}")]
    Scratch(#[source] std::io::Error),
    #[error("cannot start the actors: {0}")]
    Actors(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Runtime(String),
}

/// Run the server until a shutdown signal.
pub async fn serve(config: Config, env: BTreeMap<String, String>) -> Result<(), ServeError> {
    return_large_allocations();
    survive_file_size_limit();
    // Before the database: a mistake in the settings should not wait for a large file.
    let tls = match config.tls.enabled() {
        true => Some(Certificates::load(&config.tls)?),
        false => None,
    };
    let store = {
        let path = config.database.clone();
        let cache_bytes =
            usize::try_from(config.cache_megs.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let declared = env_users(&env)?;
        let users_file = config.users_file.clone();
        tokio::task::spawn_blocking(move || -> Result<Store, ServeError> {
            let store = Store::open_with_cache(&path, cache_bytes)?;
            store.clear_all_staged()?;
            let unfinished = store.doom_unfinished()?;
            if unfinished > 0 {
                tracing::warn!(unfinished, "discarded full uploads interrupted by the last shutdown");
            }
            let now = crate::clock::now_millis();
            for (name, outcome) in apply_env_users(&store, &declared, now)? {
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
            if let Some(file) = &users_file {
                // Nothing runs yet that could hold state of the users it changes.
                apply_users_file(&store, file, now)?;
            }
            Ok(store)
        })
        .await
        .map_err(|e| ServeError::Runtime(e.to_string()))??
    };
    let store = Arc::new(store);
    let metrics = Arc::new(Metrics::new(config.metrics_per_user));
    {
        let metrics = metrics.clone();
        store.observe_commits(move |took| metrics.commit(took));
    }
    let user_count = store.list_users()?.len();
    let scratch = Arc::new(Scratch::open(&config.database).map_err(ServeError::Scratch)?);
    let janitor = Arc::new(Notify::new());
    tokio::spawn(run_janitor(store.clone(), janitor.clone()));
    tokio::spawn(crate::backup_schedule::run(
        store.clone(),
        config.backup.clone(),
    ));

    let sessions = LiveSessions::default();
    let users = SupervisorHandle::start(
        Arc::new(StoreDirectory::new(store.clone())),
        {
            let sessions = sessions.clone();
            move |user| UserState::new(user, &sessions)
        },
        SupervisorConfig {
            idle_timeout: Duration::from_secs(config.user_idle_secs),
            name: "collection".to_string(),
        },
    )
    .await
    .map_err(|e| ServeError::Actors(e.to_string()))?;

    let media = SupervisorHandle::start(
        Arc::new(StoreDirectory::new(store.clone())),
        MediaState::new,
        SupervisorConfig {
            idle_timeout: Duration::from_secs(config.user_idle_secs),
            name: "media".to_string(),
        },
    )
    .await
    .map_err(|e| ServeError::Actors(e.to_string()))?;

    let admin_socket = AdminSocket::bind(store.path())?;
    // Listened for before anything serves, so no SIGHUP can find the default (exit) action.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| ServeError::Runtime(format!("cannot listen for SIGHUP: {e}")))?;

    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener.local_addr().unwrap_or(addr);
    let acceptor = match &tls {
        Some(certificates) => Some(certificates.server_config()?),
        None => None,
    };
    tracing::info!(
        workers = config.worker_threads(),
        blocking_threads = config.blocking_threads(),
        "thread pools"
    );

    let app = Arc::new(App {
        path_prefix: config.path_prefix.clone(),
        tls,
        metrics,
        metrics_page: config.metrics,
        sessions,
        compat: Compat::default(),
        limiter: LoginLimiter::new(
            config.login_failures,
            Duration::from_secs(config.login_window_secs),
        ),
        limits: crate::http::Limits::from_payload_megs(config.max_payload_megs),
        quota: Quota::from_config(&config.quota),
        store,
        scratch,
        keep_generations: config.keep_generations,
        stage_memory_rows: config.stage_memory_rows,
        janitor,
        users: users.clone(),
        media: media.clone(),
        activity: Arc::new(DeviceActivity::default()),
        users_file: config.users_file.clone(),
        started: Instant::now(),
        local_addr,
    });
    tracing::info!(
        "ankisyncd {} listening on {}://{local_addr}{}/ (database {}, {user_count} users, admin socket {})",
        env!("CARGO_PKG_VERSION"),
        app.scheme(),
        app.path_prefix,
        app.store.path().display(),
        admin_socket.path().display()
    );
    if user_count == 0 {
        tracing::warn!(
            "no users yet: add one with `ankisyncd user add NAME` or SYNC_USER1=name:password"
        );
    }
    let stop_admin = Arc::new(Notify::new());
    let admin = tokio::spawn(admin_socket.serve(app.clone(), stop_admin.clone()));
    let flusher = tokio::spawn(flush_periodically(app.activity.clone(), app.store.clone()));
    let reloader = tokio::spawn(reload_on_hangup(app.clone(), hangups));

    crate::http::serve(app.clone(), listener, acceptor, shutdown_signal()).await;
    // No new admin requests from here; the socket file goes with its listener.
    stop_admin.notify_one();
    let _ = admin.await;
    reloader.abort();
    flusher.abort();
    users.shutdown().await;
    media.shutdown().await;
    flush_now(&app.activity, &app.store).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP re-reads what the server reads from files while it runs. The one place that
/// handles the signal: every file-based setting that can be reloaded is reloaded here.
async fn reload_on_hangup(app: Arc<App>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading");
        reload_tls(&app);
        reload_users_file(&app).await;
    }
}

/// A write past the file size limit (`ulimit -f`) kills a process by default; ignored, the
/// write fails with "File too large" and only the request that made it fails, as on a full
/// disk.
fn survive_file_size_limit() {
    #[cfg(unix)]
    // SAFETY: sets the disposition of one signal to "ignore"; no handler code is involved.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Rows deleted per janitor transaction: short enough not to delay anybody's commit.
const JANITOR_BATCH: usize = 10_000;

/// Allocations at least this large are mapped for themselves and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const LARGE_ALLOCATION: libc::c_int = 1024 * 1024;

/// Large allocations (19 MiB for each argon2 password hash, at startup and at every login)
/// go back to the system when freed. By default glibc raises its mmap threshold after the
/// first such free and serves later ones from its heaps, which keep them: an idle server
/// that had hashed the passwords of 130 `SYNC_USERn` held 68 MB instead of 9, and one that
/// 100 users had logged in to held hundreds of MB (benches/README.md, "Load"). Fixing the
/// threshold also turns off that adjustment.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations() {
    // SAFETY: mallopt only sets a parameter of the allocator; it takes the allocator's own
    // lock and is safe to call while other threads allocate.
    let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_ALLOCATION) };
    if applied != 1 {
        tracing::warn!(
            "could not set the allocator's mmap threshold; freed memory may stay resident"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations() {}

/// Deletes doomed generations (replaced uploads beyond `keep_generations`, interrupted
/// uploads, removed users) in short batches, whenever woken and once a minute.
async fn run_janitor(store: Arc<Store>, wake: Arc<Notify>) {
    loop {
        let doomed = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.doomed_generations()).await
        };
        match doomed {
            Ok(Ok(doomed)) => {
                for (user_id, generation) in doomed {
                    loop {
                        let store = store.clone();
                        let step = tokio::task::spawn_blocking(move || {
                            store.delete_generation_batch(user_id, generation, JANITOR_BATCH)
                        })
                        .await;
                        match step {
                            Ok(Ok(true)) => {
                                tracing::debug!(user_id, generation, "old generation deleted");
                                break;
                            }
                            Ok(Ok(false)) => continue,
                            Ok(Err(e)) => {
                                tracing::error!(
                                    user_id,
                                    generation,
                                    "deleting an old generation: {e}"
                                );
                                break;
                            }
                            Err(e) => {
                                tracing::error!("janitor task failed: {e}");
                                break;
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::error!("listing old generations: {e}"),
            Err(e) => tracing::error!("janitor task failed: {e}"),
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

/// New TLS handshakes get the certificate on disk now; connections and syncs in progress
/// keep theirs.
fn reload_tls(app: &App) {
    if let Some(certificates) = &app.tls {
        match certificates.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded; new connections get it"),
            Err(e) => tracing::error!("TLS certificate NOT reloaded, the old one stays: {e}"),
        }
    }
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
