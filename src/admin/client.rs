//! The command line's side of the admin socket: send one request to the running server
//! and read its answer, telling apart "no server here" (then the command opens the file
//! itself) from a server that is there but cannot be reached.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Request, Response};

/// How long the server may take to answer. Logging out a user waits for their request in
/// progress, which may be a large upload being taken in.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest answer read (a user list of many thousands of users fits).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket, or one left behind by a server that is gone.
    #[error("no server answers on {}: {source}", path.display())]
    NoServer {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "permission denied on the admin socket {}: run the command as the user the server \
         runs as (the socket is mode 0600)",
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    #[error(
        "the server did not answer on {} within {} s; it may still carry the request out",
        path.display(),
        ANSWER_TIMEOUT.as_secs()
    )]
    NoAnswer { path: PathBuf },
    #[error("admin socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket {}: unreadable answer ({reason})", path.display())]
    BadAnswer { path: PathBuf, reason: String },
}

/// Send `request` to the server listening on `path`.
pub fn send(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let at = || path.to_path_buf();
    let io = |source: std::io::Error| match source.kind() {
        ErrorKind::PermissionDenied => ClientError::PermissionDenied { path: at() },
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ClientError::NoAnswer { path: at() },
        _ => ClientError::Io { path: at(), source },
    };
    let mut stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            ClientError::NoServer { path: at(), source }
        }
        _ => io(source),
    })?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::BadAnswer {
        path: at(),
        reason: format!("cannot encode the request: {e}"),
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_ANSWER))
        .read_line(&mut answer)
        .map_err(io)?;
    serde_json::from_str(answer.trim_end()).map_err(|e| ClientError::BadAnswer {
        path: at(),
        reason: if answer.is_empty() {
            "the server closed the connection".into()
        } else {
            e.to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_and_a_stale_socket_both_mean_no_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        let err = send(&path, &Request::ListUsers).unwrap_err();
        assert!(matches!(err, ClientError::NoServer { .. }), "{err}");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = send(&path, &Request::ListUsers).unwrap_err();
        assert!(matches!(err, ClientError::NoServer { .. }), "{err}");
    }

    #[test]
    fn one_line_each_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            let request: Request = serde_json::from_str(&line).unwrap();
            let response: Response = Err(format!("refused {}", request.describe()));
            (&stream)
                .write_all(format!("{}\n", serde_json::to_string(&response).unwrap()).as_bytes())
                .unwrap();
        });
        let answer = send(&path, &Request::ListUsers).unwrap();
        assert_eq!(answer, Err("refused user list".into()));
        server.join().unwrap();
    }
}
