//! Media sync against the running server: real clients moving files between devices, and the
//! protocol spoken by hand (the legacy multipart form, which answers in plain bytes) for what
//! clients never send: bad zips, strangers' keys, unknown files.
//!
//! The legacy client (2.1.49) has a media session of its own: it opens it with
//! `GET /msync/begin?k=<host key>&v=<client version>`, keeps the `sk` of the answer and sends
//! it back as the multipart field `sk` beside an uncompressed `data` part (no `c` field) on
//! every later media request. Scenarios with that client, and that session spoken by hand,
//! run twice: `official_*` against the official server, `ours_*` against `ankisyncd`.

mod support;

use std::io::{Cursor, Read, Write};

use ankisyncd::store::{BlobStats, Store};
use serde_json::{json, Value};
use support::{
    http_request_raw, multipart, post_multipart, post_multipart_raw, ClientVersion, Device,
    OfficialServer, Server, ServerOptions, SyncServer, MULTIPART_BOUNDARY,
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

/// What clients never send, refused with our own messages: bad zips and names. (The session
/// itself, spoken by hand, runs against both servers in `legacy_media_session`.)
#[test]
fn every_bad_upload_is_refused_and_changes_nothing() {
    let mut options = ServerOptions::with_user("user", "pass");
    options.users.push(("other".into(), "pass".into()));
    let server = Server::start(options);
    let key = login(&server, "user");

    let zip = upload_zip(&[("cat.jpg", Some(b"meow")), ("dog.png", Some(b"woof"))]);
    let (status, reply) = legacy_json(&server, "/msync/uploadChanges", &key, &zip);
    assert_eq!((status, reply), (200, json!({"data": [2, 2], "err": ""})));

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

// ---------------------------------------------------------------------------------------
// The legacy client, against both servers

fn media_device(version: ClientVersion, server: &impl SyncServer) -> Device {
    let mut device = Device::new(version);
    device.login("user", "pass", &server.endpoint()).unwrap();
    device
}

/// `(name, size, seed)` triples as `Device::write_media` takes them.
fn specs(files: &[(String, usize, u64)]) -> Vec<(&str, usize, u64)> {
    files.iter().map(|(n, s, d)| (n.as_str(), *s, *d)).collect()
}

/// Scenario 1: two legacy devices share media: 70 small files, 4 of about 1 MB and non-ASCII
/// names (one decomposed) go up in several zips of at most 25 files and come down in zips
/// cut by the 25-file and 2.5 MiB limits; deletions and later additions follow; a device
/// whose key the server does not know is told to log in again.
fn legacy_devices_share_media(server: &mut impl SyncServer) {
    let mut a = media_device(ClientVersion::Legacy, server);
    let mut b = media_device(ClientVersion::Legacy, server);
    let mut files: Vec<(String, usize, u64)> = (0..70)
        .map(|i| (format!("small {i}.txt"), 300 + i * 13, i as u64))
        .collect();
    for i in 0..4 {
        files.push((format!("big {i}.bin"), 1_000_000 + i * 777, 500 + i as u64));
    }
    for (i, name) in ["日本語.png", "Ελληνικά.jpg", "cafe\u{301}.mp3"]
        .into_iter()
        .enumerate()
    {
        files.push((name.to_string(), 1500 + i, 900 + i as u64));
    }
    let stored = a.write_media(&specs(&files));
    assert!(stored.contains(&"café.mp3".to_string()), "{stored:?}");
    a.sync_media().unwrap();
    b.sync_media().unwrap();
    let on_a = a.media_files();
    assert_eq!(on_a.len(), files.len());
    assert_eq!(b.media_files(), on_a, "B has byte-identical files");

    b.trash_media(&["small 3.txt", "big 1.bin", "日本語.png"]);
    b.sync_media().unwrap();
    a.write_media(&[("late.txt", 4321, 77)]);
    a.sync_media().unwrap();
    b.sync_media().unwrap();
    let on_a = a.media_files();
    assert_eq!(on_a.len(), files.len() - 3 + 1);
    assert!(!on_a.contains_key("small 3.txt") && !on_a.contains_key("big 1.bin"));
    assert!(!on_a.contains_key("日本語.png") && on_a.contains_key("late.txt"));
    assert_eq!(b.media_files(), on_a);

    let mut stranger = Device::new(ClientVersion::Legacy);
    stranger.set_endpoint(&server.endpoint());
    stranger.set_host_key("0123456789abcdef0123456789abcdef");
    stranger.write_media(&[("mine.txt", 10, 1)]);
    let failure = stranger.sync_media().unwrap_err();
    assert_eq!(failure.kind, "AUTH", "{failure}");
}

/// Scenario 2: a current and a legacy device of one user keep each other's media, additions
/// and deletions both ways.
fn legacy_and_current_share_media(server: &mut impl SyncServer) {
    let mut current = media_device(ClientVersion::Current, server);
    let mut legacy = media_device(ClientVersion::Legacy, server);
    let mut from_current: Vec<(String, usize, u64)> = (0..30)
        .map(|i| (format!("current {i}.jpg"), 500 + i * 31, i as u64))
        .collect();
    from_current.push(("current big.bin".into(), 2_000_000, 60));
    current.write_media(&specs(&from_current));
    current.sync_media().unwrap();
    legacy.write_media(&[
        ("from 2.1.49.png", 3000, 99),
        ("ünïcödé.mp3", 10, 98),
        ("legacy big.bin", 1_500_000, 97),
    ]);
    legacy.sync_media().unwrap();
    current.sync_media().unwrap();
    let files = current.media_files();
    assert_eq!(files.len(), 34);
    assert_eq!(legacy.media_files(), files);

    legacy.trash_media(&["current 0.jpg", "current big.bin"]);
    legacy.sync_media().unwrap();
    current.sync_media().unwrap();
    current.trash_media(&["from 2.1.49.png"]);
    current.sync_media().unwrap();
    legacy.sync_media().unwrap();
    let files = current.media_files();
    assert_eq!(files.len(), 31);
    for gone in ["current 0.jpg", "current big.bin", "from 2.1.49.png"] {
        assert!(!files.contains_key(gone), "{gone}");
    }
    assert_eq!(legacy.media_files(), files);
}

/// `hostKey` as 2.1.49 sends it: gzip-compressed `data` and `c=1`.
fn login_as_2_1_49(endpoint: &str) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"u":"user","p":"pass"}"#).unwrap();
    let (status, body) = post_multipart(
        endpoint,
        "/sync/hostKey",
        &multipart(&[("data", &gz.finish().unwrap()), ("c", b"1")]),
    );
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    reply["key"].as_str().unwrap().to_string()
}

/// A media request body exactly as 2.1.49 sends it: the uncompressed `data` part, named as a
/// file, then the session key `sk`; no compression flag.
fn as_2_1_49(sk: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"; \
         filename=\"data\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(
        format!(
            "\r\n--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name=\"sk\"\r\n\r\n\
             {sk}\r\n--{MULTIPART_BOUNDARY}--\r\n"
        )
        .as_bytes(),
    );
    body
}

/// The client version 2.1.49 puts in the query of `GET /msync/begin`, as it encodes it.
const LEGACY_BEGIN_VERSION: &str = "anki%2C2.1.49+%28dc80804a%29%2Clinux";

/// Scenario 3: the legacy media session spoken by hand, request for request as 2.1.49
/// speaks it (see the module doc), with the answers a legacy client relies on, byte for byte
/// where it parses them: `sk` is the host key; a key the server does not know is 403 wherever
/// it appears (the client's "log in again"); a `begin` without a client version is 400.
fn legacy_media_session(server: &mut impl SyncServer) {
    let endpoint = server.endpoint();
    let key = login_as_2_1_49(&endpoint);
    // Bodies with the key replaced: the official server derives it from the password, ours
    // is random.
    let text = |(status, body): (u16, Vec<u8>)| {
        (status, String::from_utf8_lossy(&body).replace(&key, "KEY"))
    };
    let get = |query: &str| {
        let path = format!("/msync/begin?{query}");
        text(http_request_raw(&endpoint, "GET", &path, &[], b""))
    };
    let post = |path: &str, sk: &str, data: &[u8]| {
        post_multipart_raw(&endpoint, path, &as_2_1_49(sk, data))
    };

    let begin = format!("k={key}&v={LEGACY_BEGIN_VERSION}");
    assert_eq!(
        get(&begin),
        (200, r#"{"data":{"usn":0,"sk":"KEY"},"err":""}"#.into())
    );
    for (query, status) in [
        (format!("k=0123456789abcdef&v={LEGACY_BEGIN_VERSION}"), 403),
        (format!("k=&v={LEGACY_BEGIN_VERSION}"), 403),
        (format!("k={key}&v="), 400),
        (format!("k={key}"), 400),
        (format!("v={LEGACY_BEGIN_VERSION}"), 400),
    ] {
        assert_eq!(get(&query).0, status, "GET /msync/begin?{query}");
    }

    // One session: upload, changes, download, sanity, with `sk` = what begin answered.
    let zip = upload_zip(&[
        ("cat.jpg", Some(b"meow")),
        ("dog.png", Some(b"woof")),
        ("never there.mp3", None),
    ]);
    assert_eq!(
        text(post("/msync/uploadChanges", &key, &zip)),
        (200, r#"{"data":[3,2],"err":""}"#.into())
    );
    assert_eq!(
        text(post("/msync/mediaChanges", &key, br#"{"lastUsn":0}"#)),
        (
            200,
            r#"{"data":[["cat.jpg",1,"7d5c2a2d6136fbf166211d5183bf66214a247f31"],["dog.png",2,"e8fe9d44419089eddd53c15b06ab24dcfeb20d70"]],"err":""}"#
                .into()
        )
    );
    let (status, zip) = post(
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
    assert_eq!(
        text(post("/msync/mediaSanity", &key, br#"{"local":2}"#)),
        (200, r#"{"data":"OK","err":""}"#.into())
    );
    assert_eq!(
        text(post("/msync/mediaSanity", &key, br#"{"local":1}"#)),
        (200, r#"{"data":"mediaSanity","err":""}"#.into())
    );

    // The next session: a deletion, reported with an empty sha1; the deleted file and
    // unknown ones cannot be downloaded; more than 25 names is a malformed request.
    assert_eq!(
        get(&begin),
        (200, r#"{"data":{"usn":2,"sk":"KEY"},"err":""}"#.into())
    );
    let zip = upload_zip(&[("cat.jpg", None)]);
    assert_eq!(
        text(post("/msync/uploadChanges", &key, &zip)),
        (200, r#"{"data":[1,3],"err":""}"#.into())
    );
    assert_eq!(
        text(post("/msync/mediaChanges", &key, br#"{"lastUsn":2}"#)),
        (200, r#"{"data":[["cat.jpg",3,""]],"err":""}"#.into())
    );
    for files in [json!(["cat.jpg"]), json!(["dog.png", "nope.jpg"])] {
        let request = json!({ "files": files }).to_string();
        let (status, _) = post("/msync/downloadFiles", &key, request.as_bytes());
        assert_eq!(status, 409, "{files}");
    }
    let many: Vec<String> = (0..26).map(|i| format!("{i}.jpg")).collect();
    let request = json!({ "files": many }).to_string();
    assert_eq!(
        post("/msync/downloadFiles", &key, request.as_bytes()).0,
        400
    );

    // A session key the server does not know, on every method: 403, nothing stored.
    let lone_zip = upload_zip(&[("intruder.jpg", Some(b"x"))]);
    for (path, data) in [
        ("/msync/begin", &br#"{"v":"x"}"#[..]),
        ("/msync/mediaChanges", br#"{"lastUsn":0}"#),
        ("/msync/uploadChanges", &lone_zip),
        ("/msync/downloadFiles", br#"{"files":["dog.png"]}"#),
        ("/msync/mediaSanity", br#"{"local":1}"#),
    ] {
        for sk in ["0123456789abcdef", ""] {
            assert_eq!(post(path, sk, data).0, 403, "{path} with sk {sk:?}");
        }
        let no_key = multipart(&[("data", data)]);
        assert_eq!(
            post_multipart_raw(&endpoint, path, &no_key).0,
            403,
            "{path} without a key"
        );
    }

    // `k` and `sk` are one field: the later one counts.
    let changes = br#"{"lastUsn":3}"#;
    assert_eq!(
        both_at(
            &endpoint,
            "/msync/mediaChanges",
            &[("k", b"nobody"), ("sk", key.as_bytes()), ("data", changes)]
        ),
        (200, r#"{"data":[],"err":""}"#.into())
    );
    assert_eq!(
        both_at(
            &endpoint,
            "/msync/mediaChanges",
            &[("sk", key.as_bytes()), ("k", b"nobody"), ("data", changes)]
        )
        .0,
        403
    );

    // Older clients: `begin` as a multipart POST with the version as a field, and media
    // JSON gzip-compressed (`c=1`).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{}").unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(
        both_at(
            &endpoint,
            "/msync/begin",
            &[
                ("k", key.as_bytes()),
                ("v", b"ankidesktop,2.1.15,lin:debian:10"),
                ("c", b"1"),
                ("data", &gz),
            ]
        ),
        (200, r#"{"data":{"usn":3,"sk":"KEY"},"err":""}"#.into())
    );
    assert_eq!(
        both_at(
            &endpoint,
            "/msync/begin",
            &[("sk", key.as_bytes()), ("data", b"{}")]
        )
        .0,
        400
    );
}

/// A multipart POST; the answer as text with `KEY` in place of the user's key, taken to be
/// the longest `k`/`sk` value among `fields`.
fn both_at(endpoint: &str, path: &str, fields: &[(&str, &[u8])]) -> (u16, String) {
    let key = fields
        .iter()
        .filter(|(name, _)| *name == "k" || *name == "sk")
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .max_by_key(String::len)
        .unwrap_or_default();
    let (status, body) = post_multipart_raw(endpoint, path, &multipart(fields));
    (status, String::from_utf8_lossy(&body).replace(&key, "KEY"))
}

fn official() -> OfficialServer {
    OfficialServer::start(ServerOptions::with_user("user", "pass"))
}

fn ours() -> Server {
    Server::start(ServerOptions::with_user("user", "pass"))
}

#[test]
fn official_legacy_devices_share_media() {
    legacy_devices_share_media(&mut official());
}

#[test]
fn ours_legacy_devices_share_media() {
    let mut server = ours();
    legacy_devices_share_media(&mut server);
    // What the two devices sent, from the request log: every session opened by a GET, the
    // 77 first files in four upload zips, and downloads cut by the 2.5 MiB limit too.
    let log = server.log();
    let requests = |method: &str| {
        log.lines()
            .filter(|line| line.contains(&format!("method={method} ")))
            .count()
    };
    assert_eq!(requests("msync/begin"), 0, "{log}");
    assert!(requests("/msync/begin") >= 5, "{log}");
    assert!(requests("msync/uploadChanges") >= 6, "{log}");
    assert!(requests("msync/downloadFiles") >= 5, "{log}");
}

#[test]
fn official_legacy_and_current_share_media() {
    legacy_and_current_share_media(&mut official());
}

#[test]
fn ours_legacy_and_current_share_media() {
    legacy_and_current_share_media(&mut ours());
}

#[test]
fn official_legacy_media_session() {
    legacy_media_session(&mut official());
}

#[test]
fn ours_legacy_media_session() {
    legacy_media_session(&mut ours());
}
