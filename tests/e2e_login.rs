//! The foundation, proved with the official client: users from the environment and from the
//! command line log in, a wrong password is refused the way the client understands, host keys
//! survive restarts and die with their user, and a new account is reported as needing a full
//! sync.

mod support;

use support::{http_get, ChangesRequired, ClientVersion, Device, Server, ServerOptions};

fn server() -> Server {
    Server::start(ServerOptions::with_user("user", "pass"))
}

#[test]
fn a_client_logs_in_and_learns_the_new_account_needs_a_full_upload() {
    let server = server();
    let mut device = Device::new(ClientVersion::Current);
    device.login("user", "pass", &server.endpoint()).unwrap();
    device.add_notes(3, "first");
    let outcome = device.sync().unwrap();
    assert_eq!(outcome.required, ChangesRequired::FullUpload);
    assert_eq!(outcome.server_media_usn, Some(0));

    // An untouched device and an untouched account: nothing to do, as with the official server.
    let mut fresh = Device::new(ClientVersion::Current);
    fresh.login("user", "pass", &server.endpoint()).unwrap();
    assert_eq!(fresh.sync().unwrap().required, ChangesRequired::NoChanges);

    let log = server.log();
    assert!(
        log.contains("sync/meta"),
        "one log line per request:\n{log}"
    );
}

#[test]
fn the_legacy_client_logs_in_and_learns_the_same() {
    let server = server();
    let mut device = Device::new(ClientVersion::Legacy);
    device.login("user", "pass", &server.endpoint()).unwrap();
    device.add_notes(1, "old");
    assert_eq!(device.sync().unwrap().required, ChangesRequired::FullUpload);
    let failure = device
        .login("user", "nope", &server.endpoint())
        .unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
    // A host key the server does not know (e.g. after `user remove`): log in again.
    device.set_host_key("0123456789abcdef0123456789abcdef");
    let failure = device.sync().unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
}

#[test]
fn wrong_credentials_are_the_clients_auth_error() {
    let server = server();
    let mut device = Device::new(ClientVersion::Current);
    for (user, password) in [("user", "wrong"), ("nobody", "pass"), ("", "")] {
        let failure = device
            .login(user, password, &server.endpoint())
            .unwrap_err();
        assert_eq!(failure.kind, "AUTH", "{user}/{password}: {failure}");
    }
    // A made-up host key is refused the same way.
    device.login("user", "pass", &server.endpoint()).unwrap();
    device.set_host_key("0123456789abcdef0123456789abcdef");
    assert_eq!(device.sync().unwrap_err().kind, "AUTH");
}

#[test]
fn repeated_failures_are_rate_limited_and_the_limit_lifts() {
    let mut options = ServerOptions::with_user("user", "pass");
    options.extra_env = vec![
        ("ANKISYNCD_LOGIN_FAILURES".into(), "2".into()),
        ("ANKISYNCD_LOGIN_WINDOW_SECS".into(), "2".into()),
    ];
    let server = Server::start(options);
    let mut device = Device::new(ClientVersion::Current);
    for _ in 0..2 {
        let failure = device
            .login("user", "wrong", &server.endpoint())
            .unwrap_err();
        assert_eq!(failure.kind, "AUTH");
    }
    // Even the right password is refused while the limit holds, and not as a bad password.
    let failure = device
        .login("user", "pass", &server.endpoint())
        .unwrap_err();
    assert_ne!(failure.kind, "AUTH", "{failure}");
    assert!(server.log().contains("too many failures"));
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    device.login("user", "pass", &server.endpoint()).unwrap();
}

#[test]
fn a_host_key_survives_a_restart_and_dies_with_its_user() {
    let mut server = server();
    let mut device = Device::new(ClientVersion::Current);
    device.login("user", "pass", &server.endpoint()).unwrap();
    device.add_notes(1, "n");

    let endpoint = server.restart();
    device.set_endpoint(&endpoint);
    assert_eq!(device.sync().unwrap().required, ChangesRequired::FullUpload);

    // Changing the password in the environment logs devices out, as on the official server.
    server.options_mut().users = vec![("user".into(), "changed".into())];
    device.set_endpoint(&server.restart());
    assert_eq!(device.sync().unwrap_err().kind, "AUTH");
    device.login("user", "changed", &server.endpoint()).unwrap();
    assert_eq!(device.sync().unwrap().required, ChangesRequired::FullUpload);

    // Removing the user (server stopped: the CLI needs the file) kills the key for good.
    server.options_mut().users.clear();
    server.stop();
    let (status, stdout, stderr) = server.run_cli(&["user", "remove", "user"], "");
    assert!(status.success(), "{stdout}{stderr}");
    device.set_endpoint(&server.restart());
    assert_eq!(device.sync().unwrap_err().kind, "AUTH");
}

#[test]
fn users_managed_from_the_command_line_can_log_in() {
    let mut server = Server::start(ServerOptions::default());
    // While the server runs, the file is locked: the CLI asks the server instead.
    let (status, out, err) = server.run_cli(&["user", "list"], "");
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 1, "a header and no users: {out}");

    server.stop();
    let (status, out, err) =
        server.run_cli(&["user", "add", "bob", "--password-stdin"], "s3cret\n");
    assert!(status.success(), "{out}{err}");
    let (status, _, err) = server.run_cli(&["user", "add", "bob", "--password-stdin"], "x\n");
    assert!(!status.success());
    assert!(err.contains("already exists"), "{err}");
    let (status, _, err) = server.run_cli(&["user", "add", "eve"], "");
    assert!(!status.success(), "no terminal and no --password-stdin");
    assert!(err.contains("--password-stdin"), "{err}");
    let (status, _, err) = server.run_cli(&["user", "add", "a:b", "--password-stdin"], "x\n");
    assert!(!status.success());
    assert!(err.contains("':'"), "{err}");
    let endpoint = server.restart();

    let mut device = Device::new(ClientVersion::Current);
    device.login("bob", "s3cret", &endpoint).unwrap();
    assert_eq!(device.sync().unwrap().required, ChangesRequired::NoChanges);

    server.stop();
    let (status, out, _) = server.run_cli(&["user", "list"], "");
    assert!(status.success());
    let bob = out
        .lines()
        .find(|l| l.starts_with("bob"))
        .expect("bob is listed");
    assert_eq!(
        bob.split_whitespace().nth(2),
        Some("1"),
        "one device: {out}"
    );
    let (status, out, err) =
        server.run_cli(&["user", "passwd", "bob", "--password-stdin"], "new\n");
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("1 device(s) must log in again"), "{out}");
    device.set_endpoint(&server.restart());
    assert_eq!(device.sync().unwrap_err().kind, "AUTH");
    device.login("bob", "new", &server.endpoint()).unwrap();
}

#[test]
fn health_and_index_pages() {
    let server = server();
    let (status, body) = http_get(&server.endpoint(), "/health");
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, body) = http_get(&server.endpoint(), "/");
    assert_eq!(status, 200);
    assert!(body.contains("ankisyncd"), "{body}");
    assert!(
        body.contains(&server.endpoint()),
        "the page names the URL to enter: {body}"
    );
    assert_eq!(http_get(&server.endpoint(), "/nope").0, 404);
    assert_eq!(http_get(&server.endpoint(), "/sync/meta").0, 405);
}

#[test]
fn bad_configuration_stops_startup_with_the_key_named() {
    let mut server = Server::start(ServerOptions::default());
    server.stop();
    for (var, value, key) in [
        ("ANKISYNCD_PORT", "http", "port"),
        ("ANKISYNCD_NO_SUCH_KEY", "1", "no_such_key"),
        ("SYNC_USER1", "missing-colon", "SYNC_USER1"),
    ] {
        let (status, _, stderr) = server.run_cli_with_env(&[], "", &[(var, value)]);
        assert!(!status.success(), "{var}={value} must stop startup");
        assert!(stderr.contains(key), "{var}: {stderr}");
    }
}
