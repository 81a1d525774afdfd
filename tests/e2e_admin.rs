//! Live user management, proved with the official client: `ankisyncd user …` on a running
//! server goes through its admin socket, and what it changes holds at the devices' very next
//! request (a removal in the middle of a sync applies nothing of that sync); the users file
//! is applied at startup and on SIGHUP, and leaves other users alone.

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::thread;

use support::{ChangesRequired, ClientVersion, Device, Server, ServerOptions, SyncFailure};
use tempfile::TempDir;

/// Runs `ankisyncd ARGS` on the server's database and returns its output; it must succeed.
fn cli(server: &Server, args: &[&str], stdin: &str) -> String {
    let (status, out, err) = server.run_cli(args, stdin);
    assert!(status.success(), "ankisyncd {args:?} failed:\n{out}{err}");
    out
}

/// `ankisyncd ARGS` must fail; returns its error output.
fn cli_err(server: &Server, args: &[&str], stdin: &str) -> String {
    let (status, out, err) = server.run_cli(args, stdin);
    assert!(!status.success(), "ankisyncd {args:?} succeeded:\n{out}");
    err
}

fn add_user(server: &Server, name: &str, password: &str) {
    let out = cli(
        server,
        &["user", "add", name, "--password-stdin"],
        &format!("{password}\n"),
    );
    assert_eq!(out, format!("user {name} added\n"));
}

/// The line of `user list` for `name`, split into its columns.
fn listed(list: &str, name: &str) -> String {
    list.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not listed:\n{list}"))
        .to_string()
}

/// The id `user devices` shows for a device: the start of the hash of its host key.
fn device_id(device: &mut Device) -> String {
    blake3::hash(device.host_key().as_bytes()).to_hex()[..12].to_string()
}

fn expect_auth(result: Result<impl std::fmt::Debug, SyncFailure>) {
    let failure = result.expect_err("the device must be logged out");
    assert_eq!(failure.kind, "AUTH", "{failure}");
}

#[test]
fn a_user_added_live_logs_in_without_a_restart() {
    let mut server = Server::start(ServerOptions::default());
    add_user(&server, "bob", "s3cret");
    let err = cli_err(&server, &["user", "add", "bob", "--password-stdin"], "x\n");
    assert!(err.contains("already exists"), "{err}");

    let mut device = Device::new(ClientVersion::Current);
    device.login("bob", "s3cret", &server.endpoint()).unwrap();
    device.add_notes(2, "live");
    assert_eq!(device.sync().unwrap().required, ChangesRequired::FullUpload);
    device.full_upload().unwrap();

    let list = cli(&server, &["user", "list"], "");
    let bob = listed(&list, "bob");
    let columns: Vec<&str> = bob.split_whitespace().collect();
    assert_eq!(columns[2], "1", "one device: {list}");
    assert!(bob.contains(" UTC "), "a last sync time: {list}");
    assert!(bob.contains("command"), "{list}");
    assert_ne!(columns.last(), Some(&"-"), "the client's version: {list}");
    let devices = cli(&server, &["user", "devices", "bob"], "");
    assert!(devices.contains(&device_id(&mut device)), "{devices}");
    assert!(
        !devices.contains(&device.host_key()),
        "never the key itself: {devices}"
    );

    // The activity outlives the server, and a stopped server's file answers the same.
    server.stop();
    let after = cli(&server, &["user", "list"], "");
    assert_eq!(listed(&after, "bob"), bob);
}

#[test]
fn the_admin_socket_is_private_and_lives_as_long_as_the_server() {
    let mut server = Server::start(ServerOptions::default());
    let socket = server.socket_path();
    let meta = fs::symlink_metadata(&socket).expect("the socket exists while serving");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    server.stop();
    assert!(!socket.exists(), "removed at shutdown");

    // A crash leaves it behind; commands then use the file, and the next start replaces it.
    server.restart();
    server.kill();
    assert!(socket.exists());
    add_user(&server, "carol", "pw");
    let endpoint = server.restart();
    assert_eq!(
        fs::symlink_metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = cli(&server, &["user", "list"], "");
    listed(&list, "carol");
    let mut device = Device::new(ClientVersion::Current);
    device.login("carol", "pw", &endpoint).unwrap();

    // A running server whose socket is gone: the command says so rather than touch the file.
    fs::remove_file(&socket).unwrap();
    let err = cli_err(&server, &["user", "list"], "");
    assert!(err.contains("does not answer"), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
}

#[test]
fn a_password_changed_live_logs_out_every_device_of_that_user_only() {
    let mut options = ServerOptions::with_user("user", "pass");
    options.users.push(("other".into(), "pass".into()));
    let server = Server::start(options);
    let endpoint = server.endpoint();
    let mut a = Device::new(ClientVersion::Current);
    let mut b = Device::new(ClientVersion::Legacy);
    let mut other = Device::new(ClientVersion::Current);
    a.login("user", "pass", &endpoint).unwrap();
    b.login("user", "pass", &endpoint).unwrap();
    other.login("other", "pass", &endpoint).unwrap();

    let out = cli(
        &server,
        &["user", "passwd", "user", "--password-stdin"],
        "changed\n",
    );
    assert!(out.contains("2 device(s) must log in again"), "{out}");
    expect_auth(a.sync());
    expect_auth(b.sync());
    other.sync().unwrap();
    expect_auth(a.login("user", "pass", &endpoint));
    a.login("user", "changed", &endpoint).unwrap();
    a.sync().unwrap();
}

#[test]
fn revoking_one_device_stops_exactly_that_device() {
    let server = Server::start(ServerOptions::with_user("user", "pass"));
    let endpoint = server.endpoint();
    let mut a = Device::new(ClientVersion::Current);
    let mut b = Device::new(ClientVersion::Current);
    a.login("user", "pass", &endpoint).unwrap();
    a.add_notes(3, "a");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    b.login("user", "pass", &endpoint).unwrap();
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();

    let (a_id, b_id) = (device_id(&mut a), device_id(&mut b));
    let devices = cli(&server, &["user", "devices", "user"], "");
    assert_eq!(
        devices.lines().count(),
        3,
        "a header and two devices:\n{devices}"
    );
    assert!(
        devices.contains(&a_id) && devices.contains(&b_id),
        "{devices}"
    );

    let out = cli(&server, &["user", "revoke", "user", "--device", &a_id], "");
    assert!(out.contains("1 device(s) of user logged out"), "{out}");
    expect_auth(a.sync());
    b.add_notes(1, "b");
    assert_eq!(b.sync().unwrap().required, ChangesRequired::NoChanges);
    let devices = cli(&server, &["user", "devices", "user"], "");
    assert!(
        !devices.contains(&a_id) && devices.contains(&b_id),
        "{devices}"
    );
    let err = cli_err(&server, &["user", "revoke", "user", "--device", &a_id], "");
    assert!(err.contains("has no device"), "{err}");

    let out = cli(&server, &["user", "revoke", "user"], "");
    assert!(out.contains("1 device(s) of user logged out"), "{out}");
    expect_auth(b.sync());
}

/// A server that holds every `finish` until `resume` exists, with a small in-memory stage
/// so a large sync also waits in the database's staging table.
fn pausing_server(resume: &Path) -> Server {
    Server::start(ServerOptions {
        users: Vec::new(),
        extra_env: vec![
            ("TEST_ANKISYNCD_PAUSE".into(), "before:finish".into()),
            (
                "TEST_ANKISYNCD_RESUME_FILE".into(),
                resume.display().to_string(),
            ),
            ("ANKISYNCD_STAGE_MEMORY_ROWS".into(), "100".into()),
        ],
        ..ServerOptions::default()
    })
}

/// `device` syncs 300 new notes; while the server holds its `finish`, `meanwhile` runs;
/// then the server lets the finish go. Returns how the device's sync ended.
fn sync_paused_at_finish(
    server: &Server,
    resume: &Path,
    device: &mut Device,
    meanwhile: impl FnOnce(),
) -> Result<support::SyncOutcome, SyncFailure> {
    device.add_notes(300, "mid-sync");
    thread::scope(|scope| {
        let syncing = scope.spawn(|| device.sync());
        server.wait_for_log("test pause point before:finish reached", 1);
        meanwhile();
        fs::write(resume, "").unwrap();
        syncing.join().expect("the syncing thread")
    })
}

#[test]
fn a_user_removed_mid_sync_gets_403_and_nothing_of_the_sync_is_applied() {
    let resume_dir = TempDir::new().unwrap();
    let resume = resume_dir.path().join("resume");
    let mut server = pausing_server(&resume);
    add_user(&server, "user", "pass");
    let mut a = Device::new(ClientVersion::Current);
    a.login("user", "pass", &server.endpoint()).unwrap();
    a.add_rich_content("base");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();

    let result = sync_paused_at_finish(&server, &resume, &mut a, || {
        let out = cli(&server, &["user", "remove", "user"], "");
        assert_eq!(out, "user user removed\n");
    });
    expect_auth(result);

    // The name, added again, is a new and empty account: nothing of the old one or of the
    // interrupted sync came back.
    add_user(&server, "user", "again");
    let mut fresh = Device::new(ClientVersion::Current);
    fresh.login("user", "again", &server.endpoint()).unwrap();
    assert_eq!(fresh.sync().unwrap().required, ChangesRequired::NoChanges);
    a.login("user", "again", &server.endpoint()).unwrap();
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);

    // And the rows the sync had staged in the database went with it.
    server.stop();
    let store = ankisyncd::store::Store::open(server.db_path()).unwrap();
    let snapshot = store.snapshot().unwrap();
    assert!(snapshot.collection(1).unwrap().is_none());
    assert_eq!(snapshot.staged_rows(1).unwrap().len(), 0);
}

#[test]
fn a_device_revoked_mid_sync_gets_403_and_its_sync_is_discarded() {
    let resume_dir = TempDir::new().unwrap();
    let resume = resume_dir.path().join("resume");
    let server = pausing_server(&resume);
    add_user(&server, "user", "pass");
    let endpoint = server.endpoint();
    let mut a = Device::new(ClientVersion::Current);
    let mut b = Device::new(ClientVersion::Current);
    a.login("user", "pass", &endpoint).unwrap();
    a.add_rich_content("base");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    b.login("user", "pass", &endpoint).unwrap();
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    let before = b.note_count();

    let a_id = device_id(&mut a);
    let result = sync_paused_at_finish(&server, &resume, &mut a, || {
        cli(&server, &["user", "revoke", "user", "--device", &a_id], "");
    });
    expect_auth(result);
    b.sync().unwrap();
    assert_eq!(
        b.note_count(),
        before,
        "nothing of the revoked device's sync"
    );

    // Logged in again, the device sends its changes anew, and both converge.
    a.login("user", "pass", &endpoint).unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    assert_eq!(b.note_count(), before + 300);
    assert_eq!(a.dump(), b.dump());
}

#[test]
fn the_users_file_is_applied_at_startup_and_on_sighup() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("users");
    let hash = |password: &str| ankisyncd::auth::hash_password(password).unwrap();
    fs::write(
        &file,
        format!("# from the vault\n\nalice:{}\n", hash("a-pw")),
    )
    .unwrap();
    let mut options = ServerOptions::with_user("envuser", "pw");
    options.extra_env = vec![("ANKISYNCD_USERS_FILE".into(), file.display().to_string())];
    let mut server = Server::start(options);
    let endpoint = server.endpoint();
    add_user(&server, "carol", "c-pw");
    let mut alice = Device::new(ClientVersion::Current);
    alice.login("alice", "a-pw", &endpoint).unwrap();
    alice.sync().unwrap();
    let list = cli(&server, &["user", "list"], "");
    for (name, source) in [("alice", "file"), ("carol", "command"), ("envuser", "env")] {
        assert!(listed(&list, name).contains(source), "{name}: {list}");
    }
    // The file would undo a change made behind its back.
    let err = cli_err(
        &server,
        &["user", "passwd", "alice", "--password-stdin"],
        "x\n",
    );
    assert!(err.contains("managed by the users file"), "{err}");

    // Alice leaves, bob arrives; a line naming carol does not take her over.
    fs::write(
        &file,
        format!("bob:{}\ncarol:{}\n", hash("b-pw"), hash("not-hers")),
    )
    .unwrap();
    server.hangup();
    server.wait_for_log("users file applied", 2);
    expect_auth(alice.sync());
    expect_auth(alice.login("alice", "a-pw", &endpoint));
    let mut bob = Device::new(ClientVersion::Current);
    bob.login("bob", "b-pw", &endpoint).unwrap();
    let mut carol = Device::new(ClientVersion::Current);
    carol.login("carol", "c-pw", &endpoint).unwrap();
    assert!(
        server
            .log()
            .contains("line 2: user carol was created by `ankisyncd user add`"),
        "{}",
        server.log()
    );

    // A file with a bad line changes nothing, and the log names the line.
    fs::write(&file, format!("bob:{}\nbroken\n", hash("b-pw"))).unwrap();
    server.hangup();
    server.wait_for_log("users left as they were", 1);
    assert!(server.log().contains("line 2: expected name:hash"));
    bob.sync().unwrap();

    // At startup, the same file stops the server.
    server.stop();
    let (status, _, err) = server.run_cli_with_env(
        &[],
        "",
        &[("ANKISYNCD_USERS_FILE", &file.display().to_string())],
    );
    assert!(!status.success());
    assert!(err.contains("line 2: expected name:hash"), "{err}");
}
