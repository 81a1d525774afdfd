//! A server killed at any step of a normal sync (as by a power cut: the process aborts, no
//! cleanup) restarts with either the whole sync or none of it, and the devices converge on
//! their next syncs. The crash points are a debug-build test hook (`TEST_ANKISYNCD_CRASH`).

mod support;

use support::{uploaded_pair, ChangesRequired, ClientVersion, Device, Server, ServerOptions};

/// A and B share a collection; A adds notes and syncs into a server that dies at `point`.
/// Returns whether a fresh device found A's notes on the restarted server.
fn crash_during_sync(point: &str) -> bool {
    let mut server = Server::start(ServerOptions::with_user("user", "pass"));
    let (mut a, mut b) = uploaded_pair(&server, "user", "pass", "base");

    server.options_mut().extra_env = vec![("TEST_ANKISYNCD_CRASH".into(), point.into())];
    a.set_endpoint(&server.restart());
    let notes_before = a.note_count();
    a.add_notes(300, "during the crash");
    let failure = a.sync().expect_err("the server died mid-sync");
    assert!(
        server.log().contains("test crash point"),
        "{}",
        server.log()
    );
    assert!(!failure.kind.is_empty());

    server.options_mut().extra_env.clear();
    let endpoint = server.restart();
    // What the server holds now, seen by a device that has never synced.
    let mut fresh = Device::new(ClientVersion::Current);
    fresh.login("user", "pass", &endpoint).unwrap();
    assert_eq!(
        fresh.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    fresh.full_download().unwrap();
    let on_server = fresh.note_count();
    assert!(
        on_server == notes_before || on_server == notes_before + 300,
        "{point}: the server has {on_server} notes: a part of a sync ({notes_before} before, 300 sent)"
    );

    // The devices converge: A resends what the server lacks, B catches up.
    a.set_endpoint(&endpoint);
    b.set_endpoint(&endpoint);
    a.sync().unwrap();
    b.sync().unwrap();
    a.sync().unwrap();
    assert_eq!(a.note_count(), notes_before + 300);
    // After a crash that kept the sync, A resends rows the server already has; the server
    // keeps its copy (same content, stamped with the first sync's usn) while A stamps its
    // own with the retry's usn. The official server merges identically, so only the usn
    // bookkeeping of those rows may differ; every value a user sees must match.
    assert_eq!(
        a.dump().without_usns(),
        b.dump().without_usns(),
        "{point}: devices differ"
    );
    on_server == notes_before + 300
}

#[test]
fn killed_right_after_start_keeps_nothing_of_the_sync() {
    assert!(!crash_during_sync("after:start"));
}

#[test]
fn killed_before_the_clients_rows_arrive_keeps_nothing() {
    assert!(!crash_during_sync("before:applyChunk"));
}

#[test]
fn killed_before_finish_keeps_nothing() {
    assert!(!crash_during_sync("before:finish"));
}

#[test]
fn killed_right_after_finish_keeps_the_whole_sync() {
    assert!(crash_during_sync("after:finish"));
}
