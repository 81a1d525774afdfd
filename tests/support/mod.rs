//! End-to-end test harness: drives the real, official Anki sync client against a sync server.
//!
//! This module owns:
//! - the client installs: one Python virtual environment per [`ClientVersion`], created on
//!   first use under `<target>/anki-clients/<version>/` and reused afterwards;
//! - [`Server`]: our `ankisyncd` binary as a child process with its own database, port and log
//!   (and its admin socket; SIGHUP; waiting for a line in its log);
//! - [`OfficialServer`]: the official server (`python -m anki.syncserver`) with the same
//!   lifecycle, as a reference to compare against;
//! - [`Device`]: one simulated Anki device, i.e. one collection driven by the official client
//!   through `tests/client/device.py`, with a small vocabulary (login, sync, full upload,
//!   realistic content, a user's small edits between syncs, a dump of everything a sync
//!   carries, ...), and [`sync_concurrently`] to race devices' syncs;
//! - [`SyncServer`]: what scenarios need from either server, so one scenario runs on both;
//! - [`make_dataset`]: large generated collections (`tests/client/make_dataset.py`) for
//!   benchmarks, which a device takes over with [`Device::open_dataset`];
//! - [`http_get`]: plain HTTP GETs for non-client endpoints such as `/health`;
//! - [`tls`]: a test certificate authority and an HTTPS client that pins a TLS version.
//!
//! Every wait is bounded, and all traffic stays on 127.0.0.1. `benches/full_sync.rs`
//! compiles this module too (process ids for `/proc`, longer device timeouts).

// Each test binary compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

pub mod tls;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long a server may take to answer `GET /health` after being spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one device command (a whole sync included) may take, unless changed with
/// [`Device::set_timeout`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long creating one client virtual environment (venv + pip install) may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one run of the server's command-line interface may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for a single plain HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a line the server is about to log may take to appear.
const LOG_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables that must not reach servers, devices or the CLI: proxies would
/// route loopback traffic elsewhere, and the legacy client reads its server address from the
/// `SYNC_ENDPOINT*` pair (the driver sets those itself). The client install keeps them, as
/// pip may need a proxy to reach its index.
const SCRUBBED_ENV: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "SYNC_ENDPOINT",
    "SYNC_ENDPOINT_MEDIA",
];

fn scrub_env(command: &mut Command) {
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
}

// ---------------------------------------------------------------------------------------
// Paths

/// The binary under test. The only place that names it, so that a crate without the real
/// server can substitute another binary of the same name. `TEST_ANKISYNCD_BIN`, when set,
/// points at another build instead (e.g. to benchmark an experimental change against this
/// one); not `ANKISYNCD_*`, which the server would take for one of its configuration keys.
fn server_binary() -> PathBuf {
    match std::env::var_os("TEST_ANKISYNCD_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_ankisyncd")),
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (where client installs and benchmark data are kept).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // Cargo resolves a relative target dir against the directory it was started in,
        // which for `cargo test` is normally the manifest directory.
        Some(dir) => manifest_dir().join(dir),
        None => manifest_dir().join("target"),
    }
}

// ---------------------------------------------------------------------------------------
// Client installs

/// Which official client a [`Device`] runs (and which Python the [`OfficialServer`] uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientVersion {
    /// A current client, sync protocol v11.
    Current,
    /// The last client of the legacy protocol (v10, multipart requests).
    Legacy,
}

impl ClientVersion {
    fn pin(self) -> &'static str {
        match self {
            ClientVersion::Current => "26.9.3",
            ClientVersion::Legacy => "2.1.49",
        }
    }

    fn requirements(self) -> &'static [&'static str] {
        match self {
            ClientVersion::Current => &["anki==26.9.3"],
            // Newer protobuf releases break the 2.1.49 generated code at import time.
            ClientVersion::Legacy => &["anki==2.1.49", "protobuf<3.21"],
        }
    }

    /// The Python interpreter of this client's virtual environment, creating the
    /// environment first if no complete one exists yet.
    pub fn python(self) -> PathBuf {
        let root = target_dir().join("anki-clients");
        let venv = root.join(self.pin());
        let python = venv.join("bin").join("python");
        let marker = venv.join(".complete");
        let wanted = self.requirements().join("\n");
        let complete = || fs::read_to_string(&marker).is_ok_and(|found| found == wanted);
        if complete() {
            return python;
        }

        fs::create_dir_all(&root).expect("create the anki-clients directory");
        // Test threads and concurrently running test binaries may all get here: one
        // installs while the others wait, then find the marker.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(format!("{}.lock", self.pin())))
            .expect("open the client install lock");
        lock.lock().expect("take the client install lock");
        if complete() {
            return python;
        }

        // Whatever is there is left from an interrupted install or other requirements.
        if venv.exists() {
            fs::remove_dir_all(&venv).expect("remove an incomplete client install");
        }
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(&venv);
        expect_success(run_bounded(create, b"", INSTALL_TIMEOUT), "python3 -m venv");
        let mut pip = Command::new(&python);
        pip.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--no-input")
        .args(self.requirements());
        expect_success(run_bounded(pip, b"", INSTALL_TIMEOUT), "pip install");
        // Written last: its presence means the install finished.
        fs::write(&marker, wanted).expect("write the client install marker");
        python
    }
}

fn expect_success(output: Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Runs a command to completion with `stdin` as its input, panicking if it takes longer
/// than `timeout` (the child is killed first).
fn run_bounded(mut command: Command, stdin: &[u8], timeout: Duration) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A program that never reads its input must not block us: write from a thread and
    // ignore a broken pipe. Dropping the handle closes the child's stdin.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    writer.join().expect("stdin writer thread");
    Output {
        status,
        stdout: stdout.join().expect("stdout reader thread"),
        stderr: stderr.join().expect("stderr reader thread"),
    }
}

fn read_in_background(mut source: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        bytes
    })
}

// ---------------------------------------------------------------------------------------
// Plain HTTP

/// `GET path` (e.g. `"/health"`) on the server at `endpoint` (`http://127.0.0.1:PORT/`);
/// returns the status code and the body.
pub fn http_get(endpoint: &str, path: &str) -> (u16, String) {
    try_http_get(endpoint, path).unwrap_or_else(|e| panic!("GET {endpoint} {path}: {e}"))
}

/// [`http_get`] that reports failures instead of panicking.
pub fn try_http_get(endpoint: &str, path: &str) -> io::Result<(u16, String)> {
    let (status, body) = try_http_request(endpoint, "GET", path, &[], b"")?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Any request with raw headers and body, for feeding the server malformed input. The body
/// is sent after the headers; a server that answers early (e.g. 413) may close before it is
/// all written, so write errors are ignored and the answer is read regardless.
pub fn http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, body) = http_request_raw(endpoint, method, path, headers, body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The boundary of the multipart bodies built by [`multipart`].
pub const MULTIPART_BOUNDARY: &str = "ankisyncdTestBoundary";

/// A legacy (`multipart/form-data`) request body with these fields, in this order, for
/// hand-made legacy requests; send it with [`post_multipart`].
pub fn multipart(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{MULTIPART_BOUNDARY}--\r\n").as_bytes());
    body
}

/// POST a [`multipart`] body; the reply as bytes (legacy replies are never compressed).
pub fn post_multipart_raw(endpoint: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let content_type = format!("multipart/form-data; boundary={MULTIPART_BOUNDARY}");
    http_request_raw(
        endpoint,
        "POST",
        path,
        &[("Content-Type", &content_type)],
        body,
    )
}

/// POST a [`multipart`] body; the reply as text.
pub fn post_multipart(endpoint: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, reply) = post_multipart_raw(endpoint, path, body);
    (status, String::from_utf8_lossy(&reply).into_owned())
}

/// `http_request` with the response body as bytes (e.g. a zstd-compressed v11 reply).
pub fn http_request_raw(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    try_http_request(endpoint, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {endpoint} {path}: {e}"))
}

fn try_http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let authority = endpoint
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("not an http:// endpoint: {endpoint}"));
    let address = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("no address for {authority}")))?;
    let mut stream = TcpStream::connect_timeout(&address, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    let has_length = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" && !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    // Headers in one write: a server may act on the first segment it reads.
    stream.write_all(head.as_bytes())?;
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that answered early and closed may reset the connection after its reply.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_http_response(&response)
}

fn parse_http_response(response: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// Decodes a chunked transfer-encoded body (servers may stream even small replies).
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------
// Server processes

/// Users and extra environment for a server under test.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Accounts passed as `SYNC_USER1..N=user:pass`.
    pub users: Vec<(String, String)>,
    /// Further environment variables, applied last (so they can override the defaults).
    pub extra_env: Vec<(String, String)>,
    /// Set by [`ServerOptions::with_tls`]: the CA file that the harness trusts to reach the
    /// server over HTTPS.
    pub https_ca: Option<PathBuf>,
}

impl ServerOptions {
    /// Options with a single account.
    pub fn with_user(user: &str, password: &str) -> Self {
        ServerOptions {
            users: vec![(user.to_string(), password.to_string())],
            ..Default::default()
        }
    }

    /// Serve HTTPS with `cert` (issued by `ca`): the endpoint becomes `https://`.
    pub fn with_tls(mut self, ca: &tls::TestCa, cert: &tls::ServerCert) -> Self {
        self.env("ANKISYNCD_TLS_CERT", &cert.cert.to_string_lossy());
        self.env("ANKISYNCD_TLS_KEY", &cert.key.to_string_lossy());
        self.https_ca = Some(ca.ca_file().to_path_buf());
        self
    }

    /// Adds an environment variable.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.extra_env.push((key.to_string(), value.to_string()));
        self
    }

    fn apply(&self, command: &mut Command) {
        for (i, (user, password)) in self.users.iter().enumerate() {
            command.env(format!("SYNC_USER{}", i + 1), format!("{user}:{password}"));
        }
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
    }
}

/// A server child process: spawn on a free loopback port, wait for health, stop or kill.
/// Both server kinds share it; each supplies the command line for a given port.
struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
    /// Serves HTTPS with a certificate from this CA.
    https_ca: Option<PathBuf>,
}

impl ServerProcess {
    fn new(name: &'static str, log_path: PathBuf) -> Self {
        ServerProcess {
            name,
            child: None,
            port: 0,
            log_path,
            https_ca: None,
        }
    }

    fn healthy(&self) -> bool {
        match &self.https_ca {
            Some(ca) => {
                tls::https_get(self.port, "/health", ca, None).is_ok_and(|r| r.status == 200)
            }
            None => matches!(try_http_get(&self.endpoint(), "/health"), Ok((200, _))),
        }
    }

    fn start(&mut self, command_for_port: impl FnOnce(u16) -> Command) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.port = free_port();
        let mut command = command_for_port(self.port);
        // Appending keeps the history of earlier runs (before a restart) in one log.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the server log");
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        scrub_env(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({command:?}): {e}", self.name));
        self.child = Some(child);
        self.wait_until_healthy();
    }

    fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("started");
            if let Some(status) = child.try_wait().expect("poll server") {
                self.child = None;
                panic!(
                    "{} exited during startup ({status}); log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if self.healthy() {
                return;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} did not answer GET /health with 200 within {STARTUP_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoint(&self) -> String {
        let scheme = if self.https_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
            .id()
    }

    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("poll server").is_none(),
            None => false,
        }
    }

    fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("poll server") {
                return status;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed); log:\n{}",
            self.name,
            self.log()
        );
    }

    fn signal(&self, signal_number: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        signal(child, signal_number);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: plain syscall on a child we spawned and have not reaped yet, so the pid
    // cannot have been reused.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A loopback port that was free a moment ago. Another process could take it before the
/// server binds it; a server that fails to bind exits and startup reports it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// Our `ankisyncd` binary, running with a database file in its own temporary directory.
pub struct Server {
    // Declared first so it is dropped (the process killed) before the directory goes.
    process: ServerProcess,
    options: ServerOptions,
    db_path: PathBuf,
    dir: TempDir,
}

impl Server {
    /// Spawns the server with a fresh database and waits until `GET /health` answers 200.
    pub fn start(options: ServerOptions) -> Server {
        Self::start_in(
            TempDir::new().expect("create the server directory"),
            options,
        )
    }

    /// Spawns the server on a copy of the database file `database` (e.g. a backup), in a
    /// directory of its own.
    pub fn start_from(database: &Path, options: ServerOptions) -> Server {
        let dir = TempDir::new().expect("create the server directory");
        fs::copy(database, dir.path().join("ankisyncd.redb"))
            .unwrap_or_else(|e| panic!("copy {} for a server: {e}", database.display()));
        Self::start_in(dir, options)
    }

    fn start_in(dir: TempDir, options: ServerOptions) -> Server {
        let db_path = dir.path().join("ankisyncd.redb");
        let mut process = ServerProcess::new("ankisyncd", dir.path().join("server.log"));
        process.https_ca = options.https_ca.clone();
        let mut server = Server {
            process,
            options,
            db_path,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let (options, db_path) = (&self.options, &self.db_path);
        self.process.start(|port| {
            let mut command = Command::new(server_binary());
            command
                .current_dir(db_path.parent().expect("database directory"))
                .env("ANKISYNCD_HOST", "127.0.0.1")
                .env("ANKISYNCD_PORT", port.to_string())
                .env("ANKISYNCD_DATABASE", db_path)
                .env("ANKISYNCD_LOG_LEVEL", "debug")
                .env("RUST_LOG", "debug");
            options.apply(&mut command);
            command
        });
    }

    /// The sync endpoint as clients are configured with it: `http://127.0.0.1:PORT/`
    /// (`https://` with [`ServerOptions::with_tls`]).
    pub fn endpoint(&self) -> String {
        self.process.endpoint()
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// SIGHUP: the server reads its files (TLS certificate) again.
    pub fn hang_up(&self) {
        let child = self.process.child.as_ref().expect("server running");
        signal(child, libc::SIGHUP);
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The server's process id (panics if it is not running), e.g. to read its CPU time
    /// and memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The users and environment the next `restart` uses (e.g. a changed `SYNC_USER1`).
    pub fn options_mut(&mut self) -> &mut ServerOptions {
        &mut self.options
    }

    /// Everything the server wrote to stdout and stderr, across restarts.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Graceful shutdown: SIGTERM, then wait (bounded; panics after killing it).
    pub fn stop(&mut self) -> ExitStatus {
        self.process.stop()
    }

    /// Abrupt end: SIGKILL, as in a crash or power loss.
    pub fn kill(&mut self) {
        self.process.kill()
    }

    /// SIGHUP: the server re-reads its files (the users file).
    pub fn hangup(&self) {
        self.process.signal(libc::SIGHUP)
    }

    /// The admin socket the server listens on while it runs (`<database>.sock`).
    pub fn socket_path(&self) -> PathBuf {
        let mut path = self.db_path.clone().into_os_string();
        path.push(".sock");
        PathBuf::from(path)
    }

    /// Waits until the log holds `needle` at least `count` times (bounded; panics with the
    /// log when it does not happen), e.g. for the end of a reload or a test pause point.
    pub fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + LOG_TIMEOUT;
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "`{needle}` did not appear {count} time(s) in the log within {LOG_TIMEOUT:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server if it runs, then starts it again on the same database. The port
    /// may change: returns the new endpoint.
    pub fn restart(&mut self) -> String {
        if self.process.is_running() {
            self.stop();
        }
        self.process.kill(); // reaps a server that had already exited on its own
        self.spawn();
        self.endpoint()
    }

    /// Runs the binary's command-line interface on this server's database:
    /// `ankisyncd --database <db> ARGS...` with `stdin` as input.
    /// Returns (exit status, stdout, stderr).
    pub fn run_cli(&self, args: &[&str], stdin: &str) -> (ExitStatus, String, String) {
        self.run_cli_with_env(args, stdin, &[])
    }

    /// `run_cli` with extra environment variables (e.g. a bad setting that must stop
    /// startup). With no arguments the binary serves, so use it only where it must exit.
    pub fn run_cli_with_env(
        &self,
        args: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> (ExitStatus, String, String) {
        run_cli_on(&self.db_path, self.dir.path(), args, stdin, env)
    }

    /// Limits the size of every file the running server writes to `bytes` (its
    /// `RLIMIT_FSIZE`, as `ulimit -f` would), or lifts the limit (`None`): a write past it
    /// fails with "File too large", as a write on a full disk fails with "No space left".
    pub fn limit_file_size(&self, bytes: Option<u64>) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: prlimit on our own child process with valid pointers to local structs.
        let got = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut current) };
        assert_eq!(
            got,
            0,
            "read the server's file size limit: {}",
            io::Error::last_os_error()
        );
        let wanted = libc::rlimit {
            rlim_cur: bytes.map_or(current.rlim_max, |b| b as libc::rlim_t),
            rlim_max: current.rlim_max,
        };
        // SAFETY: as above; only the soft limit changes, within the hard one.
        let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &wanted, std::ptr::null_mut()) };
        assert_eq!(
            set,
            0,
            "set the server's file size limit: {}",
            io::Error::last_os_error()
        );
    }
}

/// Runs the binary's command-line interface on the database file `database` (which need
/// not belong to a running server): `ankisyncd --database <database> ARGS...` in `dir`.
/// Returns (exit status, stdout, stderr).
pub fn run_cli_on(
    database: &Path,
    dir: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> (ExitStatus, String, String) {
    let mut command = Command::new(server_binary());
    command
        .current_dir(dir)
        .arg("--database")
        .arg(database)
        .args(args);
    scrub_env(&mut command);
    command.envs(env.iter().copied());
    let output = run_bounded(command, stdin.as_bytes(), CLI_TIMEOUT);
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The official sync server (`python -m anki.syncserver` from the current client's
/// environment), with its data folder in its own temporary directory.
pub struct OfficialServer {
    // Declared first so it is dropped (the process killed) before the directory goes.
    process: ServerProcess,
    options: ServerOptions,
    python: PathBuf,
    dir: TempDir,
}

impl OfficialServer {
    /// Spawns the official server with an empty data folder and waits until `GET /health`
    /// answers 200.
    pub fn start(options: ServerOptions) -> OfficialServer {
        let python = ClientVersion::Current.python();
        let dir = TempDir::new().expect("create the official server directory");
        fs::create_dir(dir.path().join("base")).expect("create SYNC_BASE");
        let mut server = OfficialServer {
            process: ServerProcess::new("official sync server", dir.path().join("server.log")),
            options,
            python,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let (options, python, dir) = (&self.options, &self.python, self.dir.path());
        self.process.start(|port| {
            let mut command = Command::new(python);
            command
                .current_dir(dir)
                .args(["-m", "anki.syncserver"])
                .env("SYNC_HOST", "127.0.0.1")
                .env("SYNC_PORT", port.to_string())
                .env("SYNC_BASE", dir.join("base"));
            options.apply(&mut command);
            command
        });
    }

    /// The sync endpoint as clients are configured with it: `http://127.0.0.1:PORT/`.
    pub fn endpoint(&self) -> String {
        self.process.endpoint()
    }

    /// The server's data folder (`SYNC_BASE`): one subfolder per user.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("base")
    }

    /// The server's process id (panics if it is not running), e.g. to read its CPU time
    /// and memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything the server wrote to stdout and stderr, across restarts.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Graceful shutdown: SIGTERM, then wait (bounded; panics after killing it).
    pub fn stop(&mut self) -> ExitStatus {
        self.process.stop()
    }

    /// Abrupt end: SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill()
    }

    /// Stops the server if it runs, then starts it again on the same data folder. The port
    /// may change: returns the new endpoint.
    pub fn restart(&mut self) -> String {
        if self.process.is_running() {
            self.stop();
        }
        self.process.kill(); // reaps a server that had already exited on its own
        self.spawn();
        self.endpoint()
    }
}

/// What a scenario needs from a server, so one scenario runs against ours and the official
/// one alike.
pub trait SyncServer {
    /// The sync endpoint as clients are configured with it: `http://127.0.0.1:PORT/`.
    fn endpoint(&self) -> String;
    /// Stops the server and starts it again on the same data; returns the new endpoint.
    fn restart(&mut self) -> String;
}

impl SyncServer for Server {
    fn endpoint(&self) -> String {
        Server::endpoint(self)
    }

    fn restart(&mut self) -> String {
        Server::restart(self)
    }
}

impl SyncServer for OfficialServer {
    fn endpoint(&self) -> String {
        OfficialServer::endpoint(self)
    }

    fn restart(&mut self) -> String {
        OfficialServer::restart(self)
    }
}

// ---------------------------------------------------------------------------------------
// Datasets

/// How long generating one dataset may take (100k notes take well under this).
const DATASET_TIMEOUT: Duration = Duration::from_secs(600);

/// Writes a schema-18 collection of `notes` generated notes (about two cards and five
/// revlog rows each, the same content for the same `seed`) to `path` with
/// `tests/client/make_dataset.py`, using the current client. Returns the script's summary
/// (counts, size, seconds taken) as JSON.
pub fn make_dataset(path: &Path, notes: usize, seed: u64) -> Value {
    let mut command = Command::new(ClientVersion::Current.python());
    command
        .arg(
            manifest_dir()
                .join("tests")
                .join("client")
                .join("make_dataset.py"),
        )
        .arg(path)
        .arg(notes.to_string())
        .arg(seed.to_string());
    scrub_env(&mut command);
    let output = run_bounded(command, b"", DATASET_TIMEOUT);
    expect_success(output.clone(), "make_dataset.py");
    // The summary is the last line: anything the anki package prints comes before it.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(summary)
        .unwrap_or_else(|e| panic!("make_dataset.py summary ({e}): {stdout}"))
}

// ---------------------------------------------------------------------------------------
// Devices

/// A sync call that failed the way the client reports failures to its user.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SyncFailure {
    /// The client's `SyncError` kind (`"AUTH"`, `"OTHER"`), `"NETWORK"` for its
    /// `NetworkError`, or the class name of any other error from the `anki` package
    /// (e.g. `"BackendError"` for a downloaded collection the client cannot open).
    pub kind: String,
    /// The client's (English) message.
    pub message: String,
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for SyncFailure {}

/// What the client concluded from a normal sync (its `SyncOutput.required`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangesRequired {
    /// Nothing to do, or a normal sync that completed: the client says this after a
    /// successful incremental sync too, so compare collections to see what travelled.
    NoChanges,
    NormalSync,
    /// A one-way sync is needed and either direction is possible: the user must choose.
    FullSync,
    FullDownload,
    FullUpload,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SyncOutcome {
    pub required: ChangesRequired,
    /// The server's media usn from `meta` (v11 clients only).
    pub server_media_usn: Option<i32>,
    /// The server's `meta` message, shown to the user.
    pub server_message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct NoteRow {
    pub id: i64,
    pub guid: String,
    pub mid: i64,
    pub r#mod: i64,
    pub usn: i32,
    pub tags: String,
    pub flds: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CardRow {
    pub id: i64,
    pub nid: i64,
    pub did: i64,
    pub ord: i64,
    pub r#mod: i64,
    pub usn: i32,
    pub r#type: i64,
    pub queue: i64,
    pub due: i64,
    pub ivl: i64,
    pub factor: i64,
    pub reps: i64,
    pub lapses: i64,
    pub left: i64,
    pub odue: i64,
    pub odid: i64,
    pub flags: i64,
    pub data: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RevlogRow {
    pub id: i64,
    pub cid: i64,
    pub usn: i32,
    pub ease: i64,
    pub ivl: i64,
    #[serde(rename = "lastIvl")]
    pub last_ivl: i64,
    pub factor: i64,
    pub time: i64,
    pub r#type: i64,
}

/// The columns of the collection's single `col` row that a full sync carries unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ColRow {
    /// Creation time in seconds: the day-0 anchor of every review card's `due`.
    pub crt: i64,
    /// Schema modification time in milliseconds: clients compare it to decide on full syncs.
    pub scm: i64,
}

/// The synced content of a device's collection, for equality assertions between devices.
/// Rows are ordered by id; decks, notetypes and deck configs are the client's own JSON
/// objects, keyed by name.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CollectionDump {
    pub notes: Vec<NoteRow>,
    pub cards: Vec<CardRow>,
    pub revlog: Vec<RevlogRow>,
    pub decks: BTreeMap<String, Value>,
    pub notetypes: BTreeMap<String, Value>,
    pub deck_configs: BTreeMap<String, Value>,
    pub tags: Vec<String>,
    /// The collection config keys `Device::add_rich_content` sets (JSON `null` when unset).
    pub config: BTreeMap<String, Value>,
    pub col: ColRow,
}

impl CollectionDump {
    /// The dump with every row's usn zeroed. A device that resends rows the server already
    /// has (after a crash, a restore or a failed sync) stamps its copies with the new usn
    /// while the server keeps its own, as the official server does: only that bookkeeping
    /// may differ between devices that agree on everything a user sees.
    pub fn without_usns(mut self) -> CollectionDump {
        self.notes.iter_mut().for_each(|n| n.usn = 0);
        self.cards.iter_mut().for_each(|c| c.usn = 0);
        self.revlog.iter_mut().for_each(|r| r.usn = 0);
        self
    }
}

/// One simulated Anki device: a collection of its own, driven by the official client of
/// `version` in a long-lived Python process (`tests/client/device.py`).
///
/// Note ids come from the millisecond clock, so two devices adding notes at the same
/// moment can mint the same ids; modification times have one-second resolution. Space
/// devices' actions out where a test depends on either.
pub struct Device {
    process: Child,
    requests: ChildStdin,
    replies: Receiver<String>,
    version: ClientVersion,
    timeout: Duration,
    dir: TempDir,
}

impl Device {
    /// A device with a new, empty collection. Nothing is sent until `login`.
    pub fn new(version: ClientVersion) -> Device {
        Device::with_env(version, &[])
    }

    /// A device whose client process gets these environment variables too (e.g.
    /// `SSL_CERT_FILE`, which the current client's TLS reads its trusted roots from).
    pub fn with_env(version: ClientVersion, env: &[(&str, &Path)]) -> Device {
        let python = version.python();
        let dir = TempDir::new().expect("create the device directory");
        let stderr = File::create(dir.path().join("driver.log")).expect("create the driver log");
        let mut command = Command::new(python);
        command
            .current_dir(dir.path())
            .arg(
                manifest_dir()
                    .join("tests")
                    .join("client")
                    .join("device.py"),
            )
            .arg(dir.path().join("collection.anki2"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        scrub_env(&mut command);
        command.envs(env.iter().copied());
        let mut process = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the device driver ({command:?}): {e}"));
        let requests = process.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(process.stdout.take().expect("piped stdout"));
        let (sender, replies) = mpsc::channel();
        // A reader thread lets requests wait with a timeout; it ends when the driver does.
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Device {
            process,
            requests,
            replies,
            version,
            timeout: REQUEST_TIMEOUT,
            dir,
        }
    }

    pub fn version(&self) -> ClientVersion {
        self.version
    }

    /// The driver's process id: the client (its Rust backend included) runs in it, so its
    /// CPU time in `/proc` is the client's.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// How long each later command may take (default 120 s); benchmarks on large
    /// collections need more.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Logs in (`hostKey`) and keeps the host key and endpoint for later syncs.
    pub fn login(&mut self, user: &str, password: &str, endpoint: &str) -> Result<(), SyncFailure> {
        self.call(
            "login",
            json!({"user": user, "password": password, "endpoint": endpoint}),
        )
        .map(drop)
    }

    /// Points the device at another endpoint (e.g. after a server restart on a new port),
    /// keeping its host key.
    pub fn set_endpoint(&mut self, endpoint: &str) {
        self.command("set_endpoint", json!({ "endpoint": endpoint }));
    }

    /// The host key from the last login (panics if there was none).
    pub fn host_key(&mut self) -> String {
        match self.command("host_key", json!({})) {
            Value::String(key) => key,
            other => panic!("device has no host key (not logged in?): {other}"),
        }
    }

    /// Uses `key` as the host key from now on, as if the client had stored it earlier.
    pub fn set_host_key(&mut self, key: &str) {
        self.command("set_host_key", json!({ "hkey": key }));
    }

    /// A normal collection sync (media off). A full sync is never started by this: the
    /// outcome says when one is required.
    pub fn sync(&mut self) -> Result<SyncOutcome, SyncFailure> {
        let reply = self.call("sync", json!({}))?;
        Ok(serde_json::from_value(reply).expect("sync outcome"))
    }

    /// A one-way sync replacing the server's collection with this device's.
    pub fn full_upload(&mut self) -> Result<(), SyncFailure> {
        self.call("full_upload", json!({})).map(drop)
    }

    /// A one-way sync replacing this device's collection with the server's.
    pub fn full_download(&mut self) -> Result<(), SyncFailure> {
        self.call("full_download", json!({})).map(drop)
    }

    /// Adds `n` notes of the stock "Basic" notetype to the default deck, with fields
    /// `"{prefix} {i} front"` / `"{prefix} {i} back"`; returns their ids.
    pub fn add_notes(&mut self, n: usize, prefix: &str) -> Vec<i64> {
        let ids = self.command("add_notes", json!({"n": n, "prefix": prefix}));
        serde_json::from_value(ids).expect("note ids")
    }

    /// Adds what a real user's collection holds: a custom notetype (4 fields, 2 templates,
    /// css), cloze and basic notes, nested decks (`Languages::Spanish`, ...), a deck options
    /// preset (`Intensive`) with non-default values on one deck, hierarchical and non-ASCII
    /// tags, the config keys listed in `device.py`'s `CONFIG_KEYS`, cards studied with
    /// different answers (so revlog rows exist), one suspended and one flagged card.
    /// `label` appears in the notes' text so devices' content differs. Returns the number
    /// of notes added.
    pub fn add_rich_content(&mut self, label: &str) -> usize {
        let added = self.command("add_rich_content", json!({ "label": label }));
        serde_json::from_value(added).expect("note count")
    }

    /// Marks the schema as modified, as the client does before a change that needs a
    /// one-way sync: the next `sync` then reports a full sync as required even when the
    /// collections were in step.
    pub fn force_full_sync(&mut self) {
        self.command("force_full_sync", json!({}));
    }

    /// Replaces the device's collection with a copy of the collection file at `path`
    /// (e.g. one written by [`make_dataset`]); returns its note count.
    pub fn open_dataset(&mut self, path: &Path) -> usize {
        let notes = self.command("open_dataset", json!({ "path": path }));
        serde_json::from_value(notes).expect("note count")
    }

    /// Ids of the notes matching a client search (e.g. `"deck:Languages::Spanish"`), sorted.
    pub fn find_notes(&mut self, query: &str) -> Vec<i64> {
        serde_json::from_value(self.command("find_notes", json!({ "query": query })))
            .expect("note ids")
    }

    /// Ids of the cards matching a client search, sorted.
    pub fn find_cards(&mut self, query: &str) -> Vec<i64> {
        serde_json::from_value(self.command("find_cards", json!({ "query": query })))
            .expect("card ids")
    }

    /// Moves cards to deck `deck` (created, parents included, if missing).
    pub fn move_cards(&mut self, cids: &[i64], deck: &str) {
        self.command("move_cards", json!({"cids": cids, "deck": deck}));
    }

    /// Suspends cards, as the browser does.
    pub fn suspend_cards(&mut self, cids: &[i64]) {
        self.command("suspend_cards", json!({ "cids": cids }));
    }

    /// Sets user flag `flag` (0 = none, 1 = red .. 7) on cards.
    pub fn flag_cards(&mut self, cids: &[i64], flag: u8) {
        self.command("flag_cards", json!({"cids": cids, "flag": flag}));
    }

    /// The fields of note `nid`, in notetype order.
    pub fn note_fields(&mut self, nid: i64) -> Vec<String> {
        serde_json::from_value(self.command("note_fields", json!({ "nid": nid })))
            .expect("note fields")
    }

    /// Sets field `field` (by name) of note `nid` to `value`, as the editor does.
    pub fn edit_note(&mut self, nid: i64, field: &str, value: &str) {
        self.command(
            "edit_note",
            json!({"nid": nid, "field": field, "value": value}),
        );
    }

    /// Removes notes and their cards; returns how many notes were removed.
    pub fn delete_notes(&mut self, nids: &[i64]) -> usize {
        serde_json::from_value(self.command("delete_notes", json!({ "nids": nids })))
            .expect("removed count")
    }

    /// Studies up to `n` cards of `deck` (and its subdecks) with the client's scheduler,
    /// answering each with `ease` (1 = again .. 4 = easy); each answer writes a revlog row.
    /// Returns the number answered (fewer when the deck runs out of cards to study).
    pub fn answer_cards(&mut self, n: usize, ease: u8, deck: &str) -> usize {
        serde_json::from_value(
            self.command("answer_cards", json!({"n": n, "ease": ease, "deck": deck})),
        )
        .expect("answered count")
    }

    /// Creates deck `name` (`::` for nesting, parents included) unless it exists; returns
    /// its id.
    pub fn add_deck(&mut self, name: &str) -> i64 {
        serde_json::from_value(self.command("add_deck", json!({ "name": name }))).expect("deck id")
    }

    /// Renames an existing deck (its full name, `::` for nesting).
    pub fn rename_deck(&mut self, old: &str, new: &str) {
        self.command("rename_deck", json!({"old": old, "new": new}));
    }

    /// Sets one value of the deck options preset `preset` (e.g. `"Default"`), `path` being
    /// the key path in its JSON (e.g. `&["new", "perDay"]`).
    pub fn set_deck_config(&mut self, preset: &str, path: &[&str], value: Value) {
        self.command(
            "set_deck_config",
            json!({"name": preset, "path": path, "value": value}),
        );
    }

    /// Adds the space-separated `tags` to the notes; returns how many notes changed.
    pub fn add_tags(&mut self, nids: &[i64], tags: &str) -> usize {
        serde_json::from_value(self.command("add_tags", json!({"nids": nids, "tags": tags})))
            .expect("changed count")
    }

    /// Sets a collection config key (only `CONFIG_KEYS` of `device.py` appear in `dump`).
    pub fn set_config(&mut self, key: &str, value: Value) {
        self.command("set_config", json!({"key": key, "value": value}));
    }

    /// Changes a notetype's css: a change a normal sync carries.
    /// Adds notetype `name`, a copy of `base`; returns its id.
    pub fn add_notetype(&mut self, name: &str, base: &str) -> i64 {
        serde_json::from_value(self.command("add_notetype", json!({"name": name, "base": base})))
            .expect("notetype id")
    }

    pub fn set_notetype_css(&mut self, notetype: &str, css: &str) {
        self.command(
            "set_notetype_css",
            json!({"notetype": notetype, "css": css}),
        );
    }

    /// Adds a field to a notetype: a schema change, so the next sync must be a full sync.
    pub fn add_field(&mut self, notetype: &str, field: &str) {
        self.command("add_field", json!({"notetype": notetype, "field": field}));
    }

    /// Adds `n` "Basic" notes like [`Device::add_notes`] but quickly (one backend call on
    /// v11 clients, one transaction on the legacy client), for thousands of notes. Returns
    /// the number added.
    pub fn add_notes_bulk(&mut self, n: usize, prefix: &str) -> usize {
        serde_json::from_value(self.command("add_notes_bulk", json!({"n": n, "prefix": prefix})))
            .expect("note count")
    }

    pub fn note_count(&mut self) -> usize {
        serde_json::from_value(self.command("note_count", json!({}))).expect("note count")
    }

    pub fn card_count(&mut self) -> usize {
        serde_json::from_value(self.command("card_count", json!({}))).expect("card count")
    }

    /// Writes media files through the client's media API (which normalises names, e.g. to
    /// NFC, as when a file is added in the GUI): each `(name, size, seed)` gets `size`
    /// deterministic bytes. Returns the names as stored.
    pub fn write_media(&mut self, files: &[(&str, usize, u64)]) -> Vec<String> {
        let names = self.command("write_media", json!({ "files": files }));
        serde_json::from_value(names).expect("media names")
    }

    /// A media sync, waited for until it has finished (or failed).
    pub fn sync_media(&mut self) -> Result<(), SyncFailure> {
        self.call("sync_media", json!({})).map(drop)
    }

    /// The files of the media folder: name → (size, sha1 hex).
    pub fn media_files(&mut self) -> BTreeMap<String, (u64, String)> {
        #[derive(Deserialize)]
        struct MediaFile {
            size: u64,
            sha1: String,
        }
        let files: BTreeMap<String, MediaFile> =
            serde_json::from_value(self.command("media_files", json!({}))).expect("media files");
        files
            .into_iter()
            .map(|(name, f)| (name, (f.size, f.sha1)))
            .collect()
    }

    /// Deletes media files and registers the deletions for the next media sync.
    pub fn trash_media(&mut self, names: &[&str]) {
        self.command("trash_media", json!({ "names": names }));
    }

    pub fn dump(&mut self) -> CollectionDump {
        serde_json::from_value(self.command("dump", json!({}))).expect("collection dump")
    }

    /// A command that cannot fail the way a sync can: any failure is a test bug.
    fn command(&mut self, cmd: &str, args: Value) -> Value {
        self.call(cmd, args).unwrap_or_else(|failure| {
            self.fail(&format!("{cmd} reported a sync failure: {failure}"))
        })
    }

    fn call(&mut self, cmd: &str, args: Value) -> Result<Value, SyncFailure> {
        let request = json!({"cmd": cmd, "args": args}).to_string();
        if let Err(e) = writeln!(self.requests, "{request}").and_then(|()| self.requests.flush()) {
            self.fail(&format!("cannot send {cmd}: {e}"));
        }
        let timeout = self.timeout;
        let line = match self.replies.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                self.fail(&format!("{cmd} got no reply within {timeout:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.fail(&format!("the driver exited during {cmd}"))
            }
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Reply {
            Ok(Value),
            Failure(SyncFailure),
            Error(String),
        }
        match serde_json::from_str(&line) {
            Ok(Reply::Ok(value)) => Ok(value),
            Ok(Reply::Failure(failure)) => Err(failure),
            Ok(Reply::Error(traceback)) => self.fail(&format!("{cmd} raised:\n{traceback}")),
            Err(e) => self.fail(&format!("unreadable reply to {cmd} ({e}): {line}")),
        }
    }

    /// Kills the driver and panics with `what` and the driver's stderr.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let log = fs::read_to_string(self.dir.path().join("driver.log")).unwrap_or_default();
        panic!(
            "device ({:?} client): {what}\n--- driver stderr ---\n{log}",
            self.version
        );
    }
}

/// Devices A and B of `user`, in step: A, holding `add_rich_content(label)`, made the first
/// full upload, and B, new, downloaded it (both with the current client).
pub fn uploaded_pair(
    server: &impl SyncServer,
    user: &str,
    password: &str,
    label: &str,
) -> (Device, Device) {
    let mut a = Device::new(ClientVersion::Current);
    a.login(user, password, &server.endpoint()).unwrap();
    a.add_rich_content(label);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    let mut b = Device::new(ClientVersion::Current);
    b.login(user, password, &server.endpoint()).unwrap();
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    (a, b)
}

/// Runs `sync` on all `devices` at the same moment, each from its own thread (released
/// together by a barrier), and returns their results in the same order. For two devices of
/// one user racing each other on the server.
pub fn sync_concurrently(devices: &mut [&mut Device]) -> Vec<Result<SyncOutcome, SyncFailure>> {
    let barrier = std::sync::Barrier::new(devices.len());
    thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter_mut()
            .map(|device| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    device.sync()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
