//! Moving between the official sync server and ankisyncd with real clients: devices that
//! synced with the official server carry on with ankisyncd after `import` (no full sync, no
//! changes, no new login when SYNC_USERn is given), and the official server started on an
//! `export` serves them the same way. Export → import → export gives the same bytes.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ankisyncd::store::Store;
use support::{
    ChangesRequired, ClientVersion, CollectionDump, Device, OfficialServer, Server, ServerOptions,
};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn user_env() -> [(&'static str, &'static str); 1] {
    [("SYNC_USER1", "alice:secret")]
}

fn options() -> ServerOptions {
    ServerOptions::with_user(USER, PASSWORD)
}

/// `ankisyncd ARGS…` on the stopped server's database; panics unless it succeeds.
fn cli_ok(server: &Server, args: &[&str], env: &[(&str, &str)]) -> String {
    let (status, stdout, stderr) = server.run_cli_with_env(args, "", env);
    assert!(status.success(), "{args:?} failed: {stderr}");
    stdout
}

/// `ankisyncd ARGS…` that must fail; returns its error output.
fn cli_err(server: &Server, args: &[&str], env: &[(&str, &str)]) -> String {
    let (status, stdout, stderr) = server.run_cli_with_env(args, "", env);
    assert!(!status.success(), "{args:?} succeeded: {stdout}");
    stderr
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("a UTF-8 path")
}

/// Every file under `dir`, by relative path, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The request lines of a server log that name `method` (e.g. `msync/mediaChanges`).
fn requests<'a>(log: &'a str, method: &str) -> Vec<&'a str> {
    let needle = format!("method={method} ");
    log.lines().filter(|l| l.contains(&needle)).collect()
}

/// What `meta` and `mediaChanges` report from our stopped server's database equals what the
/// official server keeps in `folder`: collection times and usn, each file's usn and SHA-1
/// (`""` once deleted), and the media usn.
fn assert_same_state_as_the_official_folder(ours: &Server, folder: &Path) {
    // Private copies: opening replays the logs the official server left.
    let copies = tempfile::tempdir().unwrap();
    for name in [
        "collection.anki2",
        "collection.anki2-wal",
        "media.db",
        "media.db-wal",
    ] {
        if folder.join(name).exists() {
            fs::copy(folder.join(name), copies.path().join(name)).unwrap();
        }
    }
    let col = rusqlite::Connection::open(copies.path().join("collection.anki2")).unwrap();
    let official: (i64, i64, i32, i64) = col
        .query_row("SELECT mod, scm, usn, ls FROM col", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    let media = rusqlite::Connection::open(copies.path().join("media.db")).unwrap();
    let official_media_usn: i32 = media
        .query_row("SELECT last_usn FROM meta", [], |r| r.get(0))
        .unwrap();
    let mut statement = media
        .prepare(
            "SELECT fname, usn, CASE WHEN size > 0 THEN lower(hex(csum)) ELSE '' END \
             FROM media ORDER BY usn",
        )
        .unwrap();
    let official_changes: Vec<(String, i32, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();

    let store = Store::open(ours.db_path()).unwrap();
    let user = store.user(USER).unwrap().unwrap();
    let record = store.collection(user.id).unwrap().unwrap();
    assert_eq!(
        (
            record.modified_ms,
            record.schema_ms,
            record.usn,
            record.last_sync_ms
        ),
        official
    );
    assert_eq!(record.media_usn, official_media_usn);
    let ours_changes: Vec<(String, i32, String)> = store
        .media_changes(user.id, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.usn, c.sha1.map(hex::encode).unwrap_or_default()))
        .collect();
    assert_eq!(ours_changes, official_changes);
    assert!(official_changes.iter().any(|(_, _, sha1)| sha1.is_empty()));
}

/// A device that never synced logs in with the password at `endpoint`, downloads the
/// collection and the media, and must then hold exactly `dump` and `media`.
fn a_new_device_gets(endpoint: &str, dump: &CollectionDump, media: &MediaFiles) {
    let mut device = Device::new(ClientVersion::Current);
    device.login(USER, PASSWORD, endpoint).unwrap();
    assert_eq!(
        device.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    device.full_download().unwrap();
    device.sync_media().unwrap();
    assert_eq!(&device.dump(), dump);
    assert_eq!(&device.media_files(), media);
}

/// A device's media folder: name → (size, SHA-1).
type MediaFiles = BTreeMap<String, (u64, String)>;

/// A phone and a laptop syncing with the official server: collection, media, edits and a
/// deletion, the laptop last syncing before the phone's latest changes. Returns them with
/// the media usn the official server reported last.
fn devices_on_the_official_server(official: &OfficialServer) -> (Device, Device, i32) {
    let endpoint = official.endpoint();
    let mut phone = Device::new(ClientVersion::Current);
    phone.login(USER, PASSWORD, &endpoint).unwrap();
    phone.add_rich_content("phone");
    phone.write_media(&[
        ("cat.jpg", 30_000, 1),
        ("dog.png", 5_000, 2),
        ("café.mp3", 70_000, 3),
    ]);
    assert_eq!(phone.sync().unwrap().required, ChangesRequired::FullUpload);
    phone.full_upload().unwrap();
    phone.sync_media().unwrap();

    let mut laptop = Device::new(ClientVersion::Current);
    laptop.login(USER, PASSWORD, &endpoint).unwrap();
    assert_eq!(
        laptop.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    laptop.full_download().unwrap();
    laptop.sync_media().unwrap();

    // Later changes only the phone has seen.
    let nid = phone.find_notes("deck:Languages::Spanish")[0];
    phone.edit_note(nid, "Meaning", "edited after the laptop synced");
    phone.add_notes(3, "late");
    phone.trash_media(&["dog.png"]);
    phone.write_media(&[("new.gif", 12_000, 4)]);
    phone.sync().unwrap();
    phone.sync_media().unwrap();
    let media_usn = phone.sync().unwrap().server_media_usn.unwrap();
    assert!(media_usn >= 5, "media usn {media_usn}");
    (phone, laptop, media_usn)
}

#[test]
fn devices_move_from_the_official_server_without_a_full_sync_or_a_new_login() {
    let mut official = OfficialServer::start(options());
    let (mut phone, mut laptop, media_usn) = devices_on_the_official_server(&official);
    let phone_dump = phone.dump();
    let phone_media = phone.media_files();
    // SIGTERM: the official server exits without closing its databases, leaving their logs.
    official.stop();

    let mut ours = Server::start(options());
    ours.stop();
    let report = cli_ok(&ours, &["import", path(&official.data_dir())], &user_env());
    assert!(report.contains("alice:"), "{report}");
    assert!(report.contains("devices keep their login"), "{report}");
    assert_same_state_as_the_official_folder(&ours, &official.data_dir().join(USER));
    let endpoint = ours.restart();

    // The phone was in step with the official server: nothing to do, nothing sent.
    phone.set_endpoint(&endpoint);
    let outcome = phone.sync().unwrap();
    assert_eq!(outcome.required, ChangesRequired::NoChanges);
    assert_eq!(outcome.server_media_usn, Some(media_usn));
    phone.sync_media().unwrap();
    let log = ours.log();
    assert!(requests(&log, "sync/start").is_empty(), "{log}");
    for method in [
        "mediaChanges",
        "uploadChanges",
        "downloadFiles",
        "mediaSanity",
    ] {
        assert!(
            requests(&log, &format!("msync/{method}")).is_empty(),
            "{log}"
        );
    }
    assert_eq!(phone.dump(), phone_dump);
    assert_eq!(phone.media_files(), phone_media);

    // The laptop last synced before the phone's late changes: a normal sync brings them.
    laptop.set_endpoint(&endpoint);
    let outcome = laptop.sync().unwrap();
    assert_eq!(outcome.required, ChangesRequired::NoChanges);
    assert_eq!(requests(&ours.log(), "sync/start").len(), 1);
    laptop.sync_media().unwrap();
    assert_eq!(laptop.dump(), phone_dump);
    assert_eq!(laptop.media_files(), phone_media);

    // A new device logs in with the same password and gets the same rows and bytes.
    a_new_device_gets(&endpoint, &phone_dump, &phone_media);
}

#[test]
fn import_waits_for_both_servers_refuses_to_overwrite_and_can_require_a_login() {
    let mut official = OfficialServer::start(ServerOptions::with_user("bob", "pw"));
    let mut device = Device::new(ClientVersion::Current);
    device.login("bob", "pw", &official.endpoint()).unwrap();
    device.add_notes(4, "bob");
    device.write_media(&[("a.png", 1_000, 9)]);
    device.sync().unwrap();
    device.full_upload().unwrap();
    device.sync_media().unwrap();
    let dump = device.dump();

    // No users yet: import creates bob from SYNC_USER1, as the official server had him.
    let mut ours = Server::start(ServerOptions::default());
    let base = official.data_dir();
    let env = [("SYNC_USER1", "bob:pw")];
    let err = cli_err(&ours, &["import", path(&base)], &env);
    assert!(err.contains("in use by another process"), "{err}");
    ours.stop();
    let err = cli_err(&ours, &["import", path(&base)], &env);
    assert!(
        err.contains("official sync server is still running"),
        "{err}"
    );
    official.stop();

    // A user must be known or declared.
    let err = cli_err(&ours, &["import-official", path(&base)], &[]);
    assert!(err.contains("user add"), "{err}");

    let report = cli_ok(&ours, &["import", path(&base), "--require-login"], &env);
    assert!(report.contains("bob (created)"), "{report}");
    let err = cli_err(&ours, &["import", path(&base)], &env);
    assert!(err.contains("--force"), "{err}");
    let report = cli_ok(
        &ours,
        &["import", path(&base), "--require-login", "--force"],
        &env,
    );
    assert!(report.contains("devices log in again"), "{report}");

    let endpoint = ours.restart();
    device.set_endpoint(&endpoint);
    let failure = device.sync().unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
    device.login("bob", "pw", &endpoint).unwrap();
    assert_eq!(device.sync().unwrap().required, ChangesRequired::NoChanges);
    assert_eq!(device.dump(), dump);
    assert!(requests(&ours.log(), "sync/start").is_empty());
}

#[test]
fn an_export_round_trips_byte_for_byte_and_the_official_server_serves_it() {
    let mut ours = Server::start(options());
    let mut phone = Device::new(ClientVersion::Current);
    phone.login(USER, PASSWORD, &ours.endpoint()).unwrap();
    phone.add_rich_content("ours");
    phone.write_media(&[("one.jpg", 40_000, 7), ("two.jpg", 3_000, 8)]);
    phone.sync().unwrap();
    phone.full_upload().unwrap();
    phone.sync_media().unwrap();
    phone.add_notes(2, "normal sync");
    phone.trash_media(&["two.jpg"]);
    phone.sync().unwrap();
    phone.sync_media().unwrap();
    let dump = phone.dump();
    let media = phone.media_files();
    ours.stop();

    let first = tempfile::tempdir().unwrap();
    cli_ok(&ours, &["export", path(first.path())], &[]);
    let err = cli_err(&ours, &["export-official", path(first.path())], &[]);
    assert!(err.contains("--force"), "{err}");

    let mut again = Server::start(options());
    again.stop();
    cli_ok(&again, &["import", path(first.path())], &[]);
    let second = tempfile::tempdir().unwrap();
    cli_ok(&again, &["export", path(second.path())], &[]);
    let (first_files, second_files) = (files_under(first.path()), files_under(second.path()));
    assert!(first_files.contains_key(Path::new("alice/collection.anki2")));
    assert!(first_files.contains_key(Path::new("alice/media.db")));
    assert!(first_files.contains_key(Path::new("alice/media/one.jpg")));
    assert!(!first_files.contains_key(Path::new("alice/media/two.jpg")));
    assert_eq!(
        first_files.keys().collect::<Vec<_>>(),
        second_files.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first_files {
        assert!(bytes == &second_files[name], "{} differs", name.display());
    }

    // Back to the official server, written straight into its data folder.
    let mut official = OfficialServer::start(options());
    official.stop();
    cli_ok(
        &ours,
        &["export", path(&official.data_dir()), "--force"],
        &[],
    );
    let endpoint = official.restart();
    // The official server knows only its own keys: the device logs in once.
    phone.login(USER, PASSWORD, &endpoint).unwrap();
    assert_eq!(phone.sync().unwrap().required, ChangesRequired::NoChanges);
    phone.sync_media().unwrap();
    assert_eq!(phone.dump(), dump);
    assert_eq!(phone.media_files(), media);

    a_new_device_gets(&endpoint, &dump, &media);
}
