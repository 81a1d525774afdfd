//! Built-in HTTPS with the real client: the current client (26.9.3) trusts a test CA the way
//! it trusts any other (its rustls reads `SSL_CERT_FILE`), syncs over TLS 1.2 and over 1.3,
//! and keeps syncing while the certificate is replaced and reloaded with SIGHUP.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::tls::{https_get, TestCa};
use support::{ChangesRequired, ClientVersion, Device, Server, ServerOptions};

const USER: &str = "user";
const PASSWORD: &str = "pass";

fn tls_server(ca: &TestCa, extra: &[(&str, &str)]) -> Server {
    let mut options = ServerOptions::with_user(USER, PASSWORD).with_tls(ca, &ca.issue("server"));
    for (k, v) in extra {
        options.env(k, v);
    }
    Server::start(options)
}

/// A current client that trusts `ca` (and nothing else), logged in to `server`.
fn device(ca: &TestCa, server: &Server) -> Device {
    let mut device = Device::with_env(ClientVersion::Current, &[("SSL_CERT_FILE", ca.ca_file())]);
    device.login(USER, PASSWORD, &server.endpoint()).unwrap();
    device
}

/// The value of one series in the server's `/metrics` (0 when absent).
fn metric(server: &Server, ca: &TestCa, series: &str) -> f64 {
    let reply = https_get(server.port(), "/metrics", ca.ca_file(), None).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Upload from one device, download to another, then a normal sync each way: everything a
/// client does, over whatever TLS version the server offers.
fn sync_story(ca: &TestCa, server: &Server) {
    let mut a = device(ca, server);
    a.add_notes(5, "over tls");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    let mut b = device(ca, server);
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    b.add_notes(3, "from b");
    b.sync().unwrap();
    a.sync().unwrap();
    assert_eq!(a.note_count(), 8);
    assert_eq!(a.dump(), b.dump());
}

/// The real client synced over `version` only: the server counted its handshakes under
/// that version and none under the other.
fn syncs_over(version: &str, other: &str) {
    let ca = TestCa::new();
    let server = tls_server(&ca, &[("TEST_ANKISYNCD_TLS_VERSION", version)]);
    sync_story(&ca, &server);
    let handshakes = |v: &str| {
        let series = format!("ankisyncd_tls_handshakes_total{{version=\"TLSv{v}\"}}");
        metric(&server, &ca, &series)
    };
    assert!(handshakes(version) >= 2.0);
    assert_eq!(handshakes(other), 0.0);
}

#[test]
fn the_real_client_syncs_over_tls_1_2() {
    syncs_over("1.2", "1.3");
}

#[test]
fn the_real_client_syncs_over_tls_1_3() {
    syncs_over("1.3", "1.2");
}

#[test]
fn both_versions_are_offered_and_plain_http_is_not_served() {
    let ca = TestCa::new();
    let server = tls_server(&ca, &[]);
    for (pin, expected) in [
        (&rustls::version::TLS12, "TLSv1.2"),
        (&rustls::version::TLS13, "TLSv1.3"),
    ] {
        let reply = https_get(server.port(), "/health", ca.ca_file(), Some(pin)).unwrap();
        assert_eq!((reply.status, reply.version), (200, expected));
    }
    let reply = https_get(server.port(), "/", ca.ca_file(), None).unwrap();
    assert_eq!(reply.version, "TLSv1.3");
    let url = format!("https://127.0.0.1:{}/", server.port());
    assert!(reply.body.contains(&url), "{}", reply.body);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = support::try_http_get(&format!("http://127.0.0.1:{}/", server.port()), "/health");
    assert!(plain.is_err(), "{plain:?}");
}

#[test]
fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let ca = TestCa::new();
    let server = tls_server(&ca, &[]);
    let stranger = TestCa::new();
    let mut device = Device::with_env(
        ClientVersion::Current,
        &[("SSL_CERT_FILE", stranger.ca_file())],
    );
    let failure = device
        .login(USER, PASSWORD, &server.endpoint())
        .unwrap_err();
    assert_eq!(failure.kind, "NETWORK", "{failure}");
}

/// Certificates replaced and reloaded (SIGHUP) over and over while a device syncs: every
/// sync succeeds, nothing is lost, and new connections get the newest certificate.
#[test]
fn certificate_reloads_during_a_sync_loop_lose_no_sync() {
    const SYNCS: usize = 8;
    const MAX_RELOADS: usize = 400;
    let ca = TestCa::new();
    let installed = ca.issue("server");
    let mut server =
        Server::start(ServerOptions::with_user(USER, PASSWORD).with_tls(&ca, &installed));
    let mut a = device(&ca, &server);
    a.add_notes(20, "before");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();

    let done = AtomicBool::new(false);
    let reloads = thread::scope(|scope| {
        let reloader = scope.spawn(|| {
            let mut sent = 0;
            while !done.load(Ordering::Relaxed) && sent < MAX_RELOADS {
                ca.issue(&format!("next{sent}")).install_as(&installed);
                server.hang_up();
                sent += 1;
                thread::sleep(Duration::from_millis(20));
            }
            sent
        });
        for i in 0..SYNCS {
            a.add_notes(5, &format!("round {i}"));
            let outcome = a.sync();
            assert!(outcome.is_ok(), "sync {i} during reloads: {outcome:?}");
        }
        done.store(true, Ordering::Relaxed);
        reloader.join().unwrap()
    });
    assert!(reloads > 0);

    // After one more reload, a new connection gets that very certificate.
    let last = ca.issue("last");
    last.install_as(&installed);
    server.hang_up();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = https_get(server.port(), "/health", ca.ca_file(), None).unwrap();
        if reply.cert_der == last.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last certificate was never served"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let reloaded = server.log().matches("TLS certificate reloaded").count();
    assert!(reloaded >= 2, "{reloaded} reloads logged");

    let mut b = device(&ca, &server);
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    assert_eq!(b.note_count(), 20 + 5 * SYNCS);
    assert_eq!(a.dump(), b.dump());
    assert!(server.is_running());
}

#[test]
fn a_broken_certificate_on_reload_keeps_the_old_one() {
    let ca = TestCa::new();
    let installed = ca.issue("server");
    let server = Server::start(ServerOptions::with_user(USER, PASSWORD).with_tls(&ca, &installed));
    std::fs::write(&installed.cert, "not a certificate").unwrap();
    server.hang_up();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("TLS certificate NOT reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let reply = https_get(server.port(), "/health", ca.ca_file(), None).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.cert_der, installed.der);
    let mut a = device(&ca, &server);
    a.add_notes(1, "still");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
}

#[test]
fn startup_stops_on_a_missing_key_and_healthcheck_speaks_tls() {
    let ca = TestCa::new();
    let cert = ca.issue("server");
    let server = Server::start(ServerOptions::with_user(USER, PASSWORD).with_tls(&ca, &cert));
    let port = server.port().to_string();
    let tls_env = [
        ("ANKISYNCD_TLS_CERT", cert.cert.to_str().unwrap()),
        ("ANKISYNCD_TLS_KEY", cert.key.to_str().unwrap()),
    ];
    let (status, stdout, stderr) =
        server.run_cli_with_env(&["--port", &port, "healthcheck"], "", &tls_env);
    assert!(status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "healthy");
    // Without TLS settings the probe speaks plain HTTP to a TLS port: unhealthy.
    let (status, _, stderr) = server.run_cli_with_env(&["--port", &port, "healthcheck"], "", &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer in HTTP"), "{stderr}");

    let missing = cert.key.with_file_name("missing.key");
    let (status, _, stderr) = server.run_cli_with_env(
        &["--port", "0", "serve"],
        "",
        &[
            ("ANKISYNCD_TLS_CERT", cert.cert.to_str().unwrap()),
            ("ANKISYNCD_TLS_KEY", missing.to_str().unwrap()),
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing.key"), "{stderr}");
}
