//! What depends on the sync version a client declares, spoken by hand against both servers.
//!
//! No client of sync versions 8 or 9 can be installed here: the `anki` package on PyPI starts
//! at 2.1.24, and every release from there to 2.1.56 speaks version 10 (versions 8 and 9 were
//! Anki 2.0.x to 2.1.21, never published there). So the requests such clients send are made by
//! hand, and each scenario runs twice, `official_*` against the official server (recording its
//! behaviour) and `ours_*` against `ankisyncd`:
//! - `meta` refuses (HTTP 200, `cont: false`, the official message) a version-8 client when
//!   the collection uses the v2 scheduler, and a version-8 or 9 client when it uses the v2
//!   timezone handling; outside 8..=11 it answers 501, and a `v` that is not a byte is a
//!   malformed request (400);
//! - a request with an `anki-sync` header declaring a version below 11 is answered in plain
//!   bytes, like every multipart request; version 11 in zstd.

mod support;

use std::io::Write;

use serde_json::{json, Value};
use support::{
    http_request_raw, multipart, post_multipart, post_multipart_raw, ChangesRequired,
    ClientVersion, Device, OfficialServer, Server, ServerOptions, SyncServer,
};

const USER: &str = "user";
const PASSWORD: &str = "pass";
const NO_V2_SCHEDULER: &str = "Your client does not support the v2 scheduler";
const NO_V2_TIMEZONE: &str = "Your client does not support the new timezone handling.";

fn ours() -> Server {
    Server::start(ServerOptions::with_user(USER, PASSWORD))
}

fn official() -> OfficialServer {
    OfficialServer::start(ServerOptions::with_user(USER, PASSWORD))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// `hostKey` as legacy clients send it: multipart, gzip-compressed `data`.
fn login(server: &impl SyncServer) -> String {
    let credentials = json!({"u": USER, "p": PASSWORD}).to_string();
    let (status, body) = post_multipart(
        &server.endpoint(),
        "/sync/hostKey",
        &multipart(&[("c", b"1"), ("data", &gzip(credentials.as_bytes()))]),
    );
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    reply["key"].as_str().unwrap().to_string()
}

/// How `meta` answers a multipart request with this body: the status, and for a 200 what
/// the client acts on first, `(cont, msg)`.
fn meta_with(server: &impl SyncServer, key: &str, body: &str) -> Answer {
    let (status, reply) = post_multipart(
        &server.endpoint(),
        "/sync/meta",
        &multipart(&[
            ("k", key.as_bytes()),
            ("s", b"session"),
            ("c", b"1"),
            ("data", &gzip(body.as_bytes())),
        ]),
    );
    if status != 200 {
        return (status, None);
    }
    let reply: Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let cont = reply["cont"].as_bool().expect("cont");
    let msg = reply["msg"].as_str().expect("msg").to_string();
    (status, Some((cont, msg)))
}

/// `(status, (cont, msg))` of a `meta` answer, as [`meta_with`] returns it.
type Answer = (u16, Option<(bool, String)>);

fn goes_on() -> Answer {
    (200, Some((true, String::new())))
}

fn refused(msg: &str) -> Answer {
    (200, Some((false, msg.to_string())))
}

/// Asserts how `meta` answers clients of sync versions 7 to 12: 7 and 12 are outside the
/// supported range (501), 10 and 11 go on, and 8 and 9 get `v8` and `v9`.
fn assert_meta_by_version(server: &impl SyncServer, key: &str, v8: Answer, v9: Answer) {
    let answers: Vec<Answer> = (7..=12)
        .map(|v| {
            let body = json!({"v": v, "cv": "ankidesktop,2.1.0,lin"}).to_string();
            meta_with(server, key, &body)
        })
        .collect();
    let unsupported = (501, None);
    let expected = [
        unsupported.clone(),
        v8,
        v9,
        goes_on(),
        goes_on(),
        unsupported,
    ];
    assert_eq!(answers, expected);
}

/// A normal sync of a device whose collection is newer than the server's, so that its whole
/// config replaces the server's; a note is added so that the collection counts as changed.
fn sync_config(device: &mut Device, key: &str, value: Value) {
    device.set_config(key, value);
    device.add_notes(1, key);
    let outcome = device.sync().unwrap();
    assert_eq!(outcome.required, ChangesRequired::NoChanges, "{outcome:?}");
}

/// Scenario 1: `meta` by sync version as the collection gains the v2 scheduler and the v2
/// timezone handling.
fn old_versions_are_told_what_they_cannot_sync(server: &mut impl SyncServer) {
    let key = login(server);
    // A new account: the official server's fresh collection uses the v2 scheduler.
    assert_meta_by_version(server, &key, refused(NO_V2_SCHEDULER), goes_on());
    // Malformed versions are malformed requests, not old clients.
    for body in [
        r#"{"v":300,"cv":"x"}"#,
        r#"{"v":-1,"cv":"x"}"#,
        r#"{"cv":"x"}"#,
        r#"{"v":"10","cv":"x"}"#,
    ] {
        assert_eq!(meta_with(server, &key, body), (400, None), "{body}");
    }

    // A legacy device uploads a collection with neither feature.
    let mut legacy = Device::new(ClientVersion::Legacy);
    legacy.login(USER, PASSWORD, &server.endpoint()).unwrap();
    legacy.set_config("schedVer", json!(1));
    legacy.set_config("creationOffset", Value::Null);
    legacy.add_notes(2, "v1");
    assert_eq!(legacy.sync().unwrap().required, ChangesRequired::FullUpload);
    legacy.full_upload().unwrap();
    assert_meta_by_version(server, &key, goes_on(), goes_on());

    // Features arriving by normal syncs.
    sync_config(&mut legacy, "schedVer", json!(2));
    assert_meta_by_version(server, &key, refused(NO_V2_SCHEDULER), goes_on());
    sync_config(&mut legacy, "creationOffset", json!(-120));
    let timezone = refused(NO_V2_TIMEZONE);
    assert_meta_by_version(server, &key, refused(NO_V2_SCHEDULER), timezone.clone());
    sync_config(&mut legacy, "schedVer", json!(1));
    assert_meta_by_version(server, &key, timezone.clone(), timezone.clone());

    // A collection made by a current client has both.
    let mut current = Device::new(ClientVersion::Current);
    current.login(USER, PASSWORD, &server.endpoint()).unwrap();
    current.add_notes(1, "current");
    assert_eq!(current.sync().unwrap().required, ChangesRequired::FullSync);
    current.full_upload().unwrap();
    assert_meta_by_version(server, &key, refused(NO_V2_SCHEDULER), timezone);
}

/// A zstd request with an `anki-sync` header of version `v`.
fn with_header(
    server: &impl SyncServer,
    path: &str,
    key: &str,
    v: u8,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let header = json!({"v": v, "k": key, "c": "test", "s": "session"}).to_string();
    http_request_raw(
        &server.endpoint(),
        "POST",
        path,
        &[("anki-sync", &header)],
        &zstd::encode_all(body, 3).unwrap(),
    )
}

/// An upload zip of one file, as clients build it.
fn media_zip(name: &str, data: &[u8]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("0", stored).unwrap();
    zip.write_all(data).unwrap();
    zip.start_file("_meta", stored).unwrap();
    zip.write_all(json!([[name, "0"]]).to_string().as_bytes())
        .unwrap();
    zip.finish().unwrap().into_inner()
}

/// Scenario 2: the header's version decides the form of the answer.
fn answers_below_version_11_are_plain(server: &mut impl SyncServer) {
    let key = login(server);
    let plain = |(status, body): (u16, Vec<u8>)| -> Value {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("not plain JSON ({e}): {:?}", String::from_utf8_lossy(&body))
        })
    };
    for v in [8, 9, 10] {
        let meta = plain(with_header(
            server,
            "/sync/meta",
            &key,
            v,
            br#"{"v":10,"cv":"x"}"#,
        ));
        assert_eq!(meta["cont"], true, "v{v}: {meta}");
        let begin = plain(with_header(
            server,
            "/msync/begin",
            &key,
            v,
            br#"{"v":"x"}"#,
        ));
        assert_eq!(begin["data"]["sk"], key, "v{v}: {begin}");
        // A media upload is received into a file: its answer follows the same rule.
        let zip = media_zip(&format!("v{v}.txt"), b"hello");
        let upload = plain(with_header(server, "/msync/uploadChanges", &key, v, &zip));
        assert_eq!(upload["data"][0], 1, "v{v}: {upload}");
    }
    let (status, body) = with_header(server, "/sync/meta", &key, 11, br#"{"v":11,"cv":"x"}"#);
    assert_eq!(status, 200);
    let meta: Value = serde_json::from_slice(&zstd::decode_all(&body[..]).unwrap()).unwrap();
    assert_eq!(meta["cont"], true, "{meta}");
    // The same upload as a multipart request: the plain answer legacy clients expect.
    let (status, body) = post_multipart_raw(
        &server.endpoint(),
        "/msync/mediaChanges",
        &multipart(&[("sk", key.as_bytes()), ("data", br#"{"lastUsn":0}"#)]),
    );
    assert_eq!(status, 200);
    let changes: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        changes["data"].as_array().map(Vec::len),
        Some(3),
        "{changes}"
    );
}

#[test]
fn official_old_versions_are_told_what_they_cannot_sync() {
    old_versions_are_told_what_they_cannot_sync(&mut official());
}

#[test]
fn ours_old_versions_are_told_what_they_cannot_sync() {
    old_versions_are_told_what_they_cannot_sync(&mut ours());
}

#[test]
fn official_answers_below_version_11_are_plain() {
    answers_below_version_11_are_plain(&mut official());
}

#[test]
fn ours_answers_below_version_11_are_plain() {
    answers_below_version_11_are_plain(&mut ours());
}
