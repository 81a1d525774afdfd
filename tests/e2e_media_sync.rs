//! Media sync against the running server: real clients moving files between devices, and the
//! protocol spoken by hand (the legacy multipart form, which answers in plain bytes) for what
//! clients never send: bad zips, strangers' keys, unknown files.

mod support;

use std::io::{Cursor, Read, Write};

use ankisyncd::store::{BlobStats, Store};
use serde_json::{json, Value};
use support::{
    http_request, multipart, post_multipart, post_multipart_raw, ClientVersion, Device, Server,
    ServerOptions,
};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// A legacy request: `sk` carries the key as legacy media clients send it; `data` is sent
/// uncompressed (`c=0`).
fn legacy(server: &Server, path: &str, key: &str, data: &[u8]) -> (u16, Vec<u8>) {
    post_multipart_raw(
        &server.endpoint(),
        path,
        &multipart(&[("c", b"0"), ("sk", key.as_bytes()), ("data", data)]),
    )
}

fn legacy_json(server: &Server, path: &str, key: &str, data: &[u8]) -> (u16, Value) {
    let (status, body) = legacy(server, path, key, data);
    let text = String::from_utf8_lossy(&body).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn login(server: &Server, user: &str) -> String {
    let credentials = json!({"u": user, "p": "pass"}).to_string();
    let (status, body) = post_multipart(
        &server.endpoint(),
        "/sync/hostKey",
        &multipart(&[("c", b"0"), ("data", credentials.as_bytes())]),
    );
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    reply["key"].as_str().unwrap().to_string()
}

/// An upload zip as clients build it: adds get entries "0", "1", …; deletions only a
/// `_meta` line.
fn upload_zip(changes: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut meta = Vec::new();
    for (i, (name, data)) in changes.iter().enumerate() {
        match data {
            Some(data) => {
                zip.start_file(i.to_string(), stored).unwrap();
                zip.write_all(data).unwrap();
                meta.push(json!([name, i.to_string()]));
            }
            None => meta.push(json!([name, null])),
        }
    }
    zip.start_file("_meta", stored).unwrap();
    zip.write_all(json!(meta).to_string().as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

fn unzip(bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    let mut meta = String::new();
    archive
        .by_name("_meta")
        .unwrap()
        .read_to_string(&mut meta)
        .unwrap();
    let meta: serde_json::Map<String, Value> = serde_json::from_str(&meta).unwrap();
    let mut files = Vec::new();
    for i in 0..meta.len() {
        let mut data = Vec::new();
        archive
            .by_name(&i.to_string())
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        files.push((meta[&i.to_string()].as_str().unwrap().to_string(), data));
    }
    files
}

#[test]
fn the_media_protocol_by_hand_and_every_bad_input_refused() {
    let mut options = ServerOptions::with_user("user", "pass");
    options.users.push(("other".into(), "pass".into()));
    let server = Server::start(options);
    let key = login(&server, "user");
    let endpoint = server.endpoint();

    // begin: GET with query parameters, or POST with the version as a form field.
    let (status, body) = http_request(
        &endpoint,
        "GET",
        &format!("/msync/begin?k={key}&v=2.1.49"),
        &[],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let begin: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(begin, json!({"data": {"usn": 0, "sk": key}, "err": ""}));
    let (status, body) = post_multipart(
        &endpoint,
        "/msync/begin",
        &multipart(&[("k", key.as_bytes()), ("v", b"anki,2.1.49")]),
    );
    assert_eq!(
        (status, body.contains(r#""err":"""#)),
        (200, true),
        "{body}"
    );
    let (status, _) = legacy_json(&server, "/msync/begin", &key, b"{}");
    assert_eq!(status, 400, "a begin without a client version");

    // A stranger's key is refused everywhere with 403, before anything is read or stored.
    let (status, _) = http_request(&endpoint, "GET", "/msync/begin?k=nobody&v=x", &[], b"");
    assert_eq!(status, 403);
    for (path, data) in [
        ("/msync/begin", &br#"{"v":"x"}"#[..]),
        ("/msync/mediaChanges", br#"{"lastUsn":0}"#),
        (
            "/msync/uploadChanges",
            &upload_zip(&[("a.jpg", Some(b"a"))]),
        ),
        ("/msync/downloadFiles", br#"{"files":[]}"#),
        ("/msync/mediaSanity", br#"{"local":0}"#),
    ] {
        assert_eq!(legacy(&server, path, "not-a-key", data).0, 403, "{path}");
    }

    // A good upload, then the changes, the files and the sanity check.
    let zip = upload_zip(&[
        ("cat.jpg", Some(b"meow")),
        ("dog.png", Some(b"woof")),
        ("old.mp3", None),
    ]);
    let (status, reply) = legacy_json(&server, "/msync/uploadChanges", &key, &zip);
    assert_eq!((status, reply), (200, json!({"data": [3, 2], "err": ""})));
    let (_, changes) = legacy_json(&server, "/msync/mediaChanges", &key, br#"{"lastUsn":0}"#);
    assert_eq!(
        changes,
        json!({"data": [
            ["cat.jpg", 1, "7d5c2a2d6136fbf166211d5183bf66214a247f31"],
            ["dog.png", 2, "e8fe9d44419089eddd53c15b06ab24dcfeb20d70"]
        ], "err": ""}),
    );
    let (status, zip) = legacy(
        &server,
        "/msync/downloadFiles",
        &key,
        br#"{"files":["dog.png","cat.jpg"]}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        unzip(zip),
        vec![
            ("dog.png".into(), b"woof".to_vec()),
            ("cat.jpg".into(), b"meow".to_vec())
        ]
    );
    let (_, sanity) = legacy_json(&server, "/msync/mediaSanity", &key, br#"{"local":2}"#);
    assert_eq!(sanity, json!({"data": "OK", "err": ""}));
    let (_, sanity) = legacy_json(&server, "/msync/mediaSanity", &key, br#"{"local":3}"#);
    assert_eq!(sanity, json!({"data": "mediaSanity", "err": ""}));

    // Files the server does not have: 409; too many names: 400.
    for files in [json!(["nope.jpg"]), json!(["cat.jpg", "old.mp3"])] {
        let request = json!({ "files": files }).to_string();
        let (status, _) = legacy(&server, "/msync/downloadFiles", &key, request.as_bytes());
        assert_eq!(status, 409, "{files}");
    }
    let many: Vec<String> = (0..26).map(|i| format!("{i}.jpg")).collect();
    let request = json!({ "files": many }).to_string();
    assert_eq!(
        legacy(&server, "/msync/downloadFiles", &key, request.as_bytes()).0,
        400
    );

    // Bad uploads: each a clear 400, and the media usn (the proof that nothing was stored)
    // stays at 2.
    let mut truncated = upload_zip(&[("new.jpg", Some(&[5u8; 4000]))]);
    truncated.truncate(truncated.len() - 30);
    let mut bomb = ZipWriter::new(Cursor::new(Vec::new()));
    bomb.start_file(
        "0",
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated),
    )
    .unwrap();
    bomb.write_all(&vec![0u8; 32 * 1024 * 1024]).unwrap();
    bomb.start_file("_meta", SimpleFileOptions::default())
        .unwrap();
    bomb.write_all(br#"[["zeros.bin","0"]]"#).unwrap();
    let bomb = bomb.finish().unwrap().into_inner();
    let decomposed = "cafe\u{301}.jpg";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "slash",
            upload_zip(&[("ok.jpg", Some(b"1")), ("a/b.jpg", Some(b"2"))]),
            "path separator",
        ),
        (
            "backslash",
            upload_zip(&[("a\\b.jpg", Some(b"2"))]),
            "path separator",
        ),
        (
            "dot dot",
            upload_zip(&[("..", Some(b"2"))]),
            "directory name",
        ),
        ("nul", upload_zip(&[("a\0.jpg", Some(b"2"))]), "NUL"),
        (
            "long",
            upload_zip(&[(&"x".repeat(256), Some(b"2"))]),
            "255 bytes",
        ),
        ("decomposed", upload_zip(&[(decomposed, Some(b"2"))]), "NFC"),
        ("empty file", upload_zip(&[("e.jpg", Some(b""))]), "empty"),
        ("truncated", truncated, "not a readable zip"),
        ("bomb", bomb, "zip bomb"),
        (
            "not a zip",
            b"PK but not really".to_vec(),
            "not a readable zip",
        ),
    ];
    for (what, zip, message) in cases {
        let (status, body) = legacy(&server, "/msync/uploadChanges", &key, &zip);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains(message), "{what}: {body}");
    }
    let (_, begin) = legacy_json(&server, "/msync/begin", &key, br#"{"v":"x"}"#);
    assert_eq!(begin["data"]["usn"], 2, "a refused upload changed nothing");

    // Another user sees none of it.
    let other = login(&server, "other");
    let (_, changes) = legacy_json(&server, "/msync/mediaChanges", &other, br#"{"lastUsn":0}"#);
    assert_eq!(changes, json!({"data": [], "err": ""}));
    assert_eq!(
        legacy(
            &server,
            "/msync/downloadFiles",
            &other,
            br#"{"files":["cat.jpg"]}"#
        )
        .0,
        409
    );
}

/// What device A puts in its media folder: 300 small files, 5 of 1–5 MB, and names with
/// non-ASCII characters, one of them decomposed (the client stores it as NFC). Each is
/// (name, size, seed); distinct seeds make distinct contents.
fn media_set() -> Vec<(String, usize, u64)> {
    let mut files: Vec<(String, usize, u64)> = (0..300)
        .map(|i| (format!("small {i}.txt"), 100 + i * 7, i as u64))
        .collect();
    for i in 0..5 {
        files.push((
            format!("big {i}.bin"),
            (i + 1) * 1_000_000 + i * 4321,
            1000 + i as u64,
        ));
    }
    for (i, name) in [
        "日本語.png",
        "Ελληνικά.jpg",
        "emoji 🎉.gif",
        "cafe\u{301}.mp3",
    ]
    .into_iter()
    .enumerate()
    {
        files.push((name.to_string(), 2000 + i, 2000 + i as u64));
    }
    files
}

fn blob_stats(server: &mut Server) -> BlobStats {
    server.stop();
    let store = Store::open(server.db_path()).expect("open the stopped server's database");
    store.blob_stats().expect("blob stats")
}

#[test]
fn media_travels_between_devices_byte_for_byte_and_is_stored_once() {
    let mut options = ServerOptions::with_user("user", "pass");
    options.users.push(("other".into(), "pass".into()));
    let mut server = Server::start(options);
    let mut a = Device::new(ClientVersion::Current);
    let mut b = Device::new(ClientVersion::Current);
    a.login("user", "pass", &server.endpoint()).unwrap();
    b.login("user", "pass", &server.endpoint()).unwrap();

    let files = media_set();
    let specs: Vec<(&str, usize, u64)> =
        files.iter().map(|(n, s, d)| (n.as_str(), *s, *d)).collect();
    let stored = a.write_media(&specs);
    assert!(
        stored.contains(&"café.mp3".to_string()),
        "the client stores NFC: {stored:?}"
    );
    a.sync_media().unwrap();
    b.sync_media().unwrap();
    let on_a = a.media_files();
    assert_eq!(on_a.len(), files.len());
    assert_eq!(b.media_files(), on_a, "B has byte-identical files");
    assert!(on_a.contains_key("café.mp3"));

    b.trash_media(&["small 7.txt", "big 2.bin"]);
    b.sync_media().unwrap();
    a.sync_media().unwrap();
    let on_a = a.media_files();
    assert_eq!(on_a.len(), files.len() - 2);
    assert!(!on_a.contains_key("small 7.txt") && !on_a.contains_key("big 2.bin"));
    assert_eq!(b.media_files(), on_a);
    // Both clients finished with mediaSanity and got "OK" (otherwise they reset and log it).
    let log = server.log();
    assert!(log.contains("msync/mediaSanity"));
    assert!(!log.contains("media sanity check failed"), "{log}");

    // Every file is one blob; the deleted ones were freed.
    let first = blob_stats(&mut server);
    assert_eq!(first.blobs as usize, files.len() - 2);
    let expected_bytes: u64 = on_a.values().map(|(size, _)| size).sum();
    assert_eq!(first.bytes, expected_bytes);

    // A second user uploading the same files adds no blob and no byte.
    let endpoint = server.restart();
    let mut c = Device::new(ClientVersion::Current);
    c.login("other", "pass", &endpoint).unwrap();
    let same: Vec<(&str, usize, u64)> = specs
        .iter()
        .filter(|(name, _, _)| *name != "small 7.txt" && *name != "big 2.bin")
        .copied()
        .collect();
    c.write_media(&same);
    c.sync_media().unwrap();
    assert_eq!(c.media_files(), on_a);
    let second = blob_stats(&mut server);
    assert_eq!(second, first);
}

#[test]
fn a_legacy_client_syncs_media_with_a_current_one() {
    let server = Server::start(ServerOptions::with_user("user", "pass"));
    let mut current = Device::new(ClientVersion::Current);
    let mut old = Device::new(ClientVersion::Legacy);
    current.login("user", "pass", &server.endpoint()).unwrap();
    old.login("user", "pass", &server.endpoint()).unwrap();
    let new_files: Vec<(String, usize, u64)> = (0..20)
        .map(|i| (format!("new {i}.jpg"), 500 + i, i as u64))
        .collect();
    let new_files: Vec<(&str, usize, u64)> = new_files
        .iter()
        .map(|(n, s, d)| (n.as_str(), *s, *d))
        .collect();
    current.write_media(&new_files);
    current.sync_media().unwrap();
    old.write_media(&[("from 2.1.49.png", 3000, 99), ("ünïcödé.mp3", 10, 98)]);
    old.sync_media().unwrap();
    current.sync_media().unwrap();
    let files = current.media_files();
    assert_eq!(files.len(), 22);
    assert_eq!(old.media_files(), files);
}
