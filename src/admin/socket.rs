//! The admin socket of a running server: a Unix socket next to the database
//! (`<database>.sock`, mode 0600, so only the server's own user and root can use it) that
//! takes one request per connection: a JSON line in, a JSON line out. It exists while the
//! server runs: created at startup, once nothing answers on a socket a crash left behind, and
//! removed at shutdown.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use super::execute::{execute, Context};
use super::live::settle;
use super::protocol::{Request, Response};
use crate::app::App;
use crate::auth::flush_now;

/// Largest request line; real ones are well under a kilobyte.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the admin socket of the server on `database` lives.
pub fn socket_path(database: &Path) -> PathBuf {
    let mut path = OsString::from(database.as_os_str());
    path.push(".sock");
    PathBuf::from(path)
}

/// Longest path a Unix socket can be reached by (Linux: `sun_path` is 108 bytes with its NUL).
const MAX_PATH_BYTES: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "admin socket {}: the path is {len} bytes, and a Unix socket is reachable by at most \
         {MAX_PATH_BYTES}; give the database a shorter path",
        path.display()
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error("admin socket {}: another process answers on it", path.display())]
    InUse { path: PathBuf },
    #[error(
        "admin socket {}: something that is not a socket has this name; move it away",
        path.display()
    )]
    NotASocket { path: PathBuf },
    #[error("admin socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The bound socket; dropping it removes the file (if it is still ours).
pub(crate) struct AdminSocket {
    path: PathBuf,
    listener: UnixListener,
    /// (device, inode) of the file we bound, so we never remove someone else's.
    identity: (u64, u64),
}

impl AdminSocket {
    /// Create the socket for the server on `database`. Call it only while holding the
    /// database (so no other server of this file can be running).
    pub(crate) fn bind(database: &Path) -> Result<AdminSocket, SocketError> {
        let path = socket_path(database);
        let len = path.as_os_str().len();
        if len > MAX_PATH_BYTES {
            // It could be bound and moved there, but no command could ever connect to it.
            return Err(SocketError::PathTooLong { path, len });
        }
        let io = |source| SocketError::Io {
            path: path.clone(),
            source,
        };
        clear_stale(&path)?;
        let listener = bind_private(&path).map_err(io)?;
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let listener = UnixListener::from_std(listener).map_err(io)?;
        Ok(AdminSocket {
            identity: (meta.dev(), meta.ino()),
            path,
            listener,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Answer requests until `stop` is notified; each connection in its own task.
    pub(crate) async fn serve(self, app: Arc<App>, stop: Arc<Notify>) {
        loop {
            tokio::select! {
                () = stop.notified() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let app = app.clone();
                        tokio::spawn(async move { answer(&app, stream).await });
                    }
                    Err(e) => {
                        // e.g. out of file descriptors: wait rather than spin.
                        tracing::warn!("admin socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("removing the admin socket {}: {e}", self.path.display());
            }
        }
    }
}

/// Remove a socket left by a server that is gone; refuse to touch anything else.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(
                "replacing the admin socket {} left by an earlier run",
                path.display()
            );
            std::fs::remove_file(path).map_err(|source| SocketError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(SocketError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Bind inside a fresh directory only we can enter, restrict the socket to 0600, then move
/// it into place: it is never reachable with the looser mode the umask would give it.
fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".ankisyncd-admin-{}", std::process::id()));
    // A leftover of a crashed process that had our pid; nobody else uses the name.
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inner = private.join("s");
    let bound = std::os::unix::net::UnixListener::bind(&inner).and_then(|listener| {
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&inner, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// One connection: read the request line, carry it out, write the response line.
async fn answer(app: &App, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let mut line = String::new();
    match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!("admin socket: reading a request: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("admin socket: no request within {READ_TIMEOUT:?}");
            return;
        }
    }
    let response = match serde_json::from_str::<Request>(line.trim_end()) {
        Ok(request) => run(app, request).await,
        Err(e) => Err(format!(
            "the server does not understand this request ({e}); is it older than this command?"
        )),
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::Err(format!("encoding the answer: {e}"))).unwrap_or_default()
    });
    out.push(b'\n');
    if let Err(e) = write.write_all(&out).await {
        tracing::debug!("admin socket: writing an answer: {e}");
    }
}

/// Carry a request out on the running server.
pub(crate) async fn run(app: &App, request: Request) -> Response {
    let what = request.describe();
    if request.shows_activity() {
        flush_now(&app.activity, &app.store).await;
    }
    let (store, users_file) = (app.store.clone(), app.users_file.clone());
    let executed = tokio::task::spawn_blocking(move || {
        let cx = Context {
            store: &store,
            users_file: users_file.as_deref(),
            now_ms: crate::clock::now_millis(),
        };
        execute(&cx, request)
    })
    .await;
    match executed {
        Ok(Ok(outcome)) => {
            settle(app, outcome.aftermath).await;
            tracing::info!("admin: {what}");
            Ok(outcome.reply)
        }
        Ok(Err(super::AdminError::Store(e))) => {
            tracing::error!("admin: {what} failed: {e}");
            Err(e.to_string())
        }
        Ok(Err(refused)) => {
            tracing::info!("admin: {what} refused: {refused}");
            Err(refused.to_string())
        }
        Err(e) => {
            tracing::error!("admin: {what} failed: {e}");
            Err("the request failed; the server log has the details".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_sits_next_to_the_database() {
        assert_eq!(
            socket_path(Path::new("/srv/anki/ankisyncd.redb")),
            PathBuf::from("/srv/anki/ankisyncd.redb.sock")
        );
    }

    #[tokio::test]
    async fn binding_is_private_replaces_a_stale_socket_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("db.redb");
        let path = socket_path(&database);
        // What a crash leaves: a socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let socket = AdminSocket::bind(&database).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let others: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(others.len(), 1, "no staging directory is left");
        assert!(matches!(
            AdminSocket::bind(&database),
            Err(SocketError::InUse { .. })
        ));
        drop(socket);
        assert!(!path.exists(), "removed when dropped");

        let deep = dir.path().join("d".repeat(120)).join("db.redb");
        assert!(matches!(
            AdminSocket::bind(&deep),
            Err(SocketError::PathTooLong { .. })
        ));

        std::fs::write(&path, "notes").unwrap();
        assert!(matches!(
            AdminSocket::bind(&database),
            Err(SocketError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "notes");
    }
}
