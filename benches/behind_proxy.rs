//! A real client's full upload and download of a large collection through a reverse proxy,
//! configured from the examples in `deploy/` (`nginx.conf`, `Caddyfile`) with only the
//! names, ports and certificate paths replaced, beside the same sync to ankisyncd's own
//! TLS. It proves the examples' body-size and timeout settings carry a big full sync, and
//! that ankisyncd's `/` page and metrics see the proxy's view.
//!
//! ```sh
//! apt-get install -y nginx-light caddy          # Debian packages
//! cargo bench --bench behind_proxy              # 100k notes (a 95 MB collection)
//! PROXY_NOTES=20000 cargo bench --bench behind_proxy
//! ```
//!
//! Not part of `cargo test`: it needs nginx and Caddy installed and takes about a minute.
//! Every process listens on 127.0.0.1 only and is stopped by its own handle.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::tls::{https_get, ServerCert, TestCa};
use support::{http_get, ChangesRequired, ClientVersion, Device, Server, ServerOptions};
use tempfile::TempDir;

const USER: &str = "bench";
const PASSWORD: &str = "bench";
const PREFIX: &str = "/anki";
const DEVICE_TIMEOUT: Duration = Duration::from_secs(600);
const PROXY_STARTUP: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq)]
enum Front {
    /// Plain HTTP straight to ankisyncd: the reference.
    Plain,
    /// ankisyncd's built-in TLS, no proxy.
    BuiltIn,
    Nginx,
    Caddy,
}

impl Front {
    fn name(self) -> &'static str {
        match self {
            Front::Plain => "plain HTTP (no TLS, no proxy)",
            Front::BuiltIn => "ankisyncd TLS (no proxy)",
            Front::Nginx => "nginx (deploy/nginx.conf)",
            Front::Caddy => "Caddy (deploy/Caddyfile)",
        }
    }
}

/// A proxy process with its own directory; killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `text` with each `(from, to)` replaced; every `from` must be there, so the examples
/// and this harness cannot drift apart unnoticed.
fn substitute(mut text: String, replacements: &[(&str, String)]) -> String {
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "the example no longer contains {from:?}"
        );
        text = text.replace(from, to);
    }
    text
}

fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed: apt-get install -y nginx-light caddy"))
}

fn start_nginx(upstream: u16, cert: &ServerCert) -> Proxy {
    let dir = TempDir::new().expect("nginx directory");
    let port = free_port();
    let site = substitute(
        example("nginx.conf"),
        &[
            (
                "    listen 443 ssl;\n    listen [::]:443 ssl;\n",
                format!("    listen 127.0.0.1:{port} ssl;\n"),
            ),
            (
                "/etc/letsencrypt/live/anki.example.org/fullchain.pem",
                cert.cert.display().to_string(),
            ),
            (
                "/etc/letsencrypt/live/anki.example.org/privkey.pem",
                cert.key.display().to_string(),
            ),
            (
                "http://127.0.0.1:27701",
                format!("http://127.0.0.1:{upstream}"),
            ),
        ],
    );
    let d = dir.path().display();
    fs::write(dir.path().join("site.conf"), site).expect("write site.conf");
    // One process (no workers to orphan when it is killed), everything in its directory.
    let main = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  include {d}/site.conf;\n}}\n"
    );
    fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
    let mut command = Command::new(program("nginx"));
    command
        .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c"])
        .arg(dir.path().join("nginx.conf"));
    spawn(command, port, dir)
}

fn start_caddy(upstream: u16, cert: &ServerCert) -> Proxy {
    let dir = TempDir::new().expect("caddy directory");
    let port = free_port();
    let d = dir.path().display();
    let site = substitute(
        example("Caddyfile"),
        &[
            (
                "anki.example.org {",
                format!(
                    "https://127.0.0.1:{port} {{\n\ttls {} {}",
                    cert.cert.display(),
                    cert.key.display()
                ),
            ),
            ("127.0.0.1:27701", format!("127.0.0.1:{upstream}")),
        ],
    );
    let global = format!(
        "{{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {d}/data\n}}\n\n"
    );
    fs::write(dir.path().join("Caddyfile"), global + &site).expect("write the Caddyfile");
    let mut command = Command::new(program("caddy"));
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.path().join("Caddyfile"))
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    spawn(command, port, dir)
}

fn spawn(mut command: Command, port: u16, dir: TempDir) -> Proxy {
    let log = fs::File::create(dir.path().join("stdout.log")).expect("proxy log");
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    Proxy { child, port, dir }
}

fn wait_healthy(proxy: &mut Proxy, ca: &TestCa) {
    let deadline = Instant::now() + PROXY_STARTUP;
    loop {
        if let Some(status) = proxy.child.try_wait().expect("poll the proxy") {
            let log = fs::read_to_string(proxy.dir.path().join("stdout.log")).unwrap_or_default();
            panic!("the proxy exited ({status}):\n{log}");
        }
        if https_get(proxy.port, &format!("{PREFIX}/health"), ca.ca_file(), None)
            .is_ok_and(|r| r.status == 200)
        {
            return;
        }
        assert!(Instant::now() < deadline, "the proxy did not come up");
        thread::sleep(Duration::from_millis(50));
    }
}

fn device(ca: &TestCa, endpoint: &str) -> Device {
    let mut device = Device::with_env(ClientVersion::Current, &[("SSL_CERT_FILE", ca.ca_file())]);
    device.set_timeout(DEVICE_TIMEOUT);
    device.login(USER, PASSWORD, endpoint).unwrap();
    device
}

fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

struct Row {
    front: Front,
    upload_secs: f64,
    download_secs: f64,
}

fn run(front: Front, ca: &TestCa, dataset: &Path) -> Row {
    let cert = ca.issue("front");
    let mut options = ServerOptions::with_user(USER, PASSWORD);
    options.env("ANKISYNCD_PATH_PREFIX", PREFIX);
    if front == Front::BuiltIn {
        options = options.with_tls(ca, &cert);
    }
    let server = Server::start(options);
    let mut proxy = match front {
        Front::Plain | Front::BuiltIn => None,
        Front::Nginx => Some(start_nginx(server.port(), &cert)),
        Front::Caddy => Some(start_caddy(server.port(), &cert)),
    };
    if let Some(proxy) = proxy.as_mut() {
        wait_healthy(proxy, ca);
    }
    let port = proxy.as_ref().map_or(server.port(), |p| p.port);
    let scheme = if front == Front::Plain {
        "http"
    } else {
        "https"
    };
    let endpoint = format!("{scheme}://127.0.0.1:{port}{PREFIX}/");
    let get = |path: &str| -> String {
        let path = format!("{PREFIX}{path}");
        match front {
            Front::Plain => http_get(&endpoint, &path).1,
            _ => https_get(port, &path, ca.ca_file(), None).unwrap().body,
        }
    };

    // The / page through the front names the address the visitor used.
    let page = get("/");
    assert!(
        page.contains(&format!("Self-hosted sync server: {endpoint}\n")),
        "{page}"
    );

    let mut a = device(ca, &endpoint);
    let notes = a.open_dataset(dataset);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    let started = Instant::now();
    a.full_upload().unwrap();
    let upload_secs = started.elapsed().as_secs_f64();

    let mut b = device(ca, &endpoint);
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    let started = Instant::now();
    b.full_download().unwrap();
    let download_secs = started.elapsed().as_secs_f64();
    assert_eq!(b.note_count(), notes);
    assert_eq!(b.card_count(), a.card_count());

    let page = get("/metrics");
    assert_eq!(
        metric(&page, r#"ankisyncd_full_syncs_total{direction="upload"}"#),
        1.0
    );
    assert_eq!(
        metric(&page, r#"ankisyncd_full_syncs_total{direction="download"}"#),
        1.0
    );
    let uploaded = metric(
        &page,
        r#"ankisyncd_received_bytes_total{method="sync/upload"}"#,
    );
    println!(
        "{}: {notes} notes; upload {upload_secs:.2} s ({:.1} MB compressed), download {download_secs:.2} s",
        front.name(),
        uploaded / 1e6
    );
    Row {
        front,
        upload_secs,
        download_secs,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let notes: usize = std::env::var("PROXY_NOTES")
        .ok()
        .map(|n| n.parse().expect("PROXY_NOTES: a number of notes"))
        .unwrap_or(100_000);
    let dataset = common::loadgen::dataset(notes);
    let ca = TestCa::new();
    let rows: Vec<Row> = [Front::Plain, Front::BuiltIn, Front::Nginx, Front::Caddy]
        .into_iter()
        .map(|front| run(front, &ca, &dataset))
        .collect();
    println!("\n| front | full upload (s) | full download (s) |\n|---|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.2} | {:.2} |",
            row.front.name(),
            row.upload_secs,
            row.download_secs
        );
    }
}
