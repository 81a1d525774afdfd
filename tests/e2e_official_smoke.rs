//! Proves the end-to-end harness against the official sync server: if these pass, a failure
//! of the same story against `ankisyncd` is the server's fault, not the harness's.

mod support;

use support::{http_get, ChangesRequired, ClientVersion, Device, OfficialServer, ServerOptions};

fn official_server() -> OfficialServer {
    OfficialServer::start(ServerOptions::with_user("user", "pass"))
}

#[test]
fn a_second_device_gets_what_the_first_uploaded_and_later_changes_flow_both_ways() {
    let server = official_server();
    assert_eq!(http_get(&server.endpoint(), "/health").0, 200);

    let mut a = Device::new(ClientVersion::Current);
    a.login("user", "pass", &server.endpoint()).unwrap();
    a.add_notes(5, "from A");
    // The server starts with an empty collection, so the client picks the direction itself.
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    assert_eq!(a.sync().unwrap().required, ChangesRequired::NoChanges);

    let mut b = Device::new(ClientVersion::Current);
    b.login("user", "pass", &server.endpoint()).unwrap();
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    assert_eq!(b.note_count(), 5);
    assert_eq!(b.card_count(), 5);
    assert_eq!(a.dump(), b.dump());

    // Incremental sync both ways. The client reports NO_CHANGES after a completed normal
    // sync, so the collections themselves are what shows that the notes travelled.
    b.add_notes(2, "from B");
    assert_eq!(b.sync().unwrap().required, ChangesRequired::NoChanges);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::NoChanges);
    assert_eq!(a.note_count(), 7);
    assert_eq!(a.dump(), b.dump());
}

#[test]
fn a_wrong_password_is_an_auth_failure() {
    let server = official_server();
    let mut device = Device::new(ClientVersion::Current);
    let failure = device
        .login("user", "wrong", &server.endpoint())
        .unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
    let failure = device
        .login("nobody", "pass", &server.endpoint())
        .unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
}

#[test]
fn the_host_key_keeps_working_after_the_official_server_restarts() {
    let mut server = official_server();
    let mut a = Device::new(ClientVersion::Current);
    a.login("user", "pass", &server.endpoint()).unwrap();
    let key = a.host_key();
    a.add_notes(3, "before restart");
    a.sync().unwrap();
    a.full_upload().unwrap();

    let endpoint = server.restart();
    a.set_endpoint(&endpoint);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::NoChanges);

    // A device that never logged in to this server process, holding only the stored key.
    let mut b = Device::new(ClientVersion::Current);
    b.set_endpoint(&endpoint);
    b.set_host_key(&key);
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    assert_eq!(a.dump(), b.dump());

    // The official server derives the key from the credentials, so a new login repeats it.
    b.login("user", "pass", &endpoint).unwrap();
    assert_eq!(b.host_key(), key);
}

#[test]
fn the_legacy_client_logs_in_and_uploads_for_a_current_client_to_download() {
    let server = official_server();
    let mut legacy = Device::new(ClientVersion::Legacy);
    let failure = legacy
        .login("user", "wrong", &server.endpoint())
        .unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
    legacy.login("user", "pass", &server.endpoint()).unwrap();
    legacy.add_notes(4, "legacy");
    assert_eq!(legacy.sync().unwrap().required, ChangesRequired::FullUpload);
    legacy.full_upload().unwrap();
    assert_eq!(legacy.sync().unwrap().required, ChangesRequired::NoChanges);

    let mut current = Device::new(ClientVersion::Current);
    current.login("user", "pass", &server.endpoint()).unwrap();
    assert_eq!(
        current.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    current.full_download().unwrap();
    // Rows, not the whole dump: the two client versions shape decks and notetypes
    // differently.
    assert_eq!(legacy.dump().notes, current.dump().notes);
    assert_eq!(legacy.dump().cards, current.dump().cards);

    // A host key the server does not know: the client's "log in again".
    legacy.set_host_key("0123456789abcdef0123456789abcdef");
    let failure = legacy.sync().unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
}
