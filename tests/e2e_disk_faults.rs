//! The disk fails under the server: its files may not grow (the server's `RLIMIT_FSIZE`, as
//! `ulimit -f` sets it, makes every write past the limit fail with "File too large", the way
//! a full disk fails with "No space left on device"). The sync or upload that hits it fails
//! with the client's "server error" and changes nothing, the server keeps serving what it
//! has, the log says what to fix, and once the limit is lifted the next sync succeeds with
//! nothing lost.

mod support;

use support::{
    http_get, uploaded_pair, ChangesRequired, ClientVersion, Device, Server, ServerOptions,
};

/// What the current client shows for any 5xx (its own text; the body is not shown).
const SERVER_ERROR: &str = "AnkiWeb encountered a problem. Please try again in a few minutes.";

/// A server whose user has uploaded from A and downloaded to B.
fn two_devices() -> (Server, Device, Device) {
    let server = Server::start(ServerOptions::with_user("user", "pass"));
    let (a, b) = uploaded_pair(&server, "user", "pass", "before the fault");
    (server, a, b)
}

fn db_size(server: &Server) -> u64 {
    std::fs::metadata(server.db_path()).unwrap().len()
}

#[test]
fn a_sync_that_hits_a_full_disk_fails_cleanly_and_the_next_one_succeeds() {
    let (mut server, mut a, mut b) = two_devices();
    server.limit_file_size(Some(db_size(&server)));
    // The file may have room inside it; syncs go on until one needs it to grow (bounded).
    let mut failure = None;
    let mut synced = Vec::new();
    for round in 0..10 {
        a.add_notes_bulk(2_000, &format!("round {round}"));
        match a.sync() {
            Ok(_) => synced.push(round),
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    let failure = failure.expect("no sync needed the file to grow");
    assert_eq!(failure.message, SERVER_ERROR, "{failure}");
    let log = server.log();
    assert!(
        log.contains("request failed, nothing of it kept: database file: ")
            && log.contains("raise the limit; writes resume by themselves"),
        "{log}"
    );

    // Still serving, with everything before the failed sync: a new device downloads it.
    assert!(server.is_running());
    assert_eq!(http_get(&server.endpoint(), "/health").0, 200);
    let mut c = Device::new(ClientVersion::Current);
    c.login("user", "pass", &server.endpoint()).unwrap();
    assert_eq!(c.sync().unwrap().required, ChangesRequired::FullDownload);
    c.full_download().unwrap();
    assert_eq!(
        c.note_count(),
        a.note_count() - 2_000,
        "the server has every note but the failed sync's ({synced:?} went through)"
    );

    // Room again: A's next sync sends what failed, B gets it, nothing lost.
    server.limit_file_size(None);
    a.sync().unwrap();
    b.sync().unwrap();
    assert_eq!(b.note_count(), a.note_count());
    assert_eq!(a.dump().without_usns(), b.dump().without_usns());

    server.stop();
    let (status, stdout, stderr) = server.run_cli(&["check"], "");
    assert!(status.success(), "{stdout}{stderr}");
}

#[test]
fn a_full_upload_that_hits_the_limit_keeps_the_previous_collection() {
    let (server, mut a, mut b) = two_devices();
    let expected = b.dump();
    a.add_notes_bulk(20_000, "too big to store");
    a.force_full_sync();
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullSync);
    // The upload is several MiB; its scratch file may not grow past 1 MiB.
    server.limit_file_size(Some(1024 * 1024));
    let failure = a.full_upload().unwrap_err();
    assert_eq!(failure.message, SERVER_ERROR, "{failure}");
    assert!(server.log().contains("scratch file"), "{}", server.log());

    let mut c = Device::new(ClientVersion::Current);
    c.login("user", "pass", &server.endpoint()).unwrap();
    assert_eq!(c.sync().unwrap().required, ChangesRequired::FullDownload);
    c.full_download().unwrap();
    assert_eq!(c.dump(), expected, "the previous collection, untouched");

    server.limit_file_size(None);
    a.full_upload().unwrap();
    // B has a collection too: it must choose, and takes the server's.
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullSync);
    b.full_download().unwrap();
    assert_eq!(b.dump(), a.dump());
}
