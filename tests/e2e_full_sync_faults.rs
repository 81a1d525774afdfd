//! Full uploads that must not change anything: bodies that are not collections, damaged or
//! oversized ones, a client that hangs up, a server killed in the middle of taking one in.
//! Each time the previous collection stays, byte for byte as devices see it, and the server
//! keeps serving. Also: `user restore-previous` undoes a replacing upload.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{
    http_get, http_request_raw, make_dataset, multipart, post_multipart, ChangesRequired,
    ClientVersion, Device, Server, ServerOptions,
};

const CORRUPT: &str = "Your upload was corrupt. Please use Check Database, or restore from backup.";
const TOO_LARGE: &str = "collection exceeds size limit";
fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A server whose one user has uploaded a collection from device A.
fn server_with_collection(extra_env: &[(&str, &str)]) -> (Server, Device) {
    let mut options = ServerOptions::with_user("user", "pass");
    options.extra_env = extra_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let server = Server::start(options);
    let mut a = Device::new(ClientVersion::Current);
    a.login("user", "pass", &server.endpoint()).unwrap();
    a.add_rich_content("before");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    (server, a)
}

/// The collection is still A's: A has nothing to do, and a new device downloads A's rows.
fn assert_collection_untouched(server: &Server, a: &mut Device) {
    assert_eq!(a.sync().unwrap().required, ChangesRequired::NoChanges);
    let mut b = Device::new(ClientVersion::Current);
    b.login("user", "pass", &server.endpoint()).unwrap();
    assert_eq!(b.sync().unwrap().required, ChangesRequired::FullDownload);
    b.full_download().unwrap();
    assert_eq!(a.dump(), b.dump());
}

fn scratch_uploads(server: &Server) -> Vec<String> {
    let mut dir = server.db_path().as_os_str().to_os_string();
    dir.push(".scratch");
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("upload"))
                .collect()
        })
        .unwrap_or_default()
}

fn host_key(server: &Server) -> String {
    let body = multipart(&[("c", b"0"), ("data", br#"{"u":"user","p":"pass"}"#)]);
    let (status, reply) = post_multipart(&server.endpoint(), "/sync/hostKey", &body);
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    reply["key"].as_str().unwrap().to_string()
}

/// A v11 upload of `collection` (zstd-compressed here); returns the status and the reply
/// text, decompressed as the client would.
fn modern_upload(server: &Server, key: &str, collection: &[u8]) -> (u16, String) {
    let compressed = zstd::encode_all(collection, 1).unwrap();
    modern_upload_compressed(server, key, &compressed)
}

fn modern_upload_compressed(server: &Server, key: &str, body: &[u8]) -> (u16, String) {
    let (status, text) = v11_post(server, "/sync/upload", key, body);
    (status, String::from_utf8_lossy(&text).into_owned())
}

/// POST an already compressed `body` in the v11 envelope; a 200 reply comes back
/// decompressed.
fn v11_post(server: &Server, path: &str, key: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let header = format!(r#"{{"v":11,"k":"{key}","c":"test","s":"s"}}"#);
    let (status, reply) = http_request_raw(
        &server.endpoint(),
        "POST",
        path,
        &[("anki-sync", &header)],
        body,
    );
    let reply = if status == 200 {
        zstd::decode_all(reply.as_slice()).expect("a v11 reply is zstd")
    } else {
        reply
    };
    (status, reply)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A copy of a fixture collection changed with SQL, as a hand-made bad upload.
fn altered(fixture_name: &str, sql: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.anki2");
    std::fs::write(&path, fixture(fixture_name)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    std::fs::read(&path).unwrap()
}

#[test]
fn bad_uploads_are_refused_with_the_official_text_and_change_nothing() {
    let (server, mut a) = server_with_collection(&[("ANKISYNCD_MAX_PAYLOAD_MEGS", "1")]);
    let key = host_key(&server);
    let good = fixture("rich.v11.anki2");
    let mut damaged = good.clone();
    // Garbage over the b-tree pages past the header: SQLite opens it, the check fails.
    for byte in &mut damaged[4096 * 2..4096 * 6] {
        *byte = 0x5a;
    }
    let not_anki = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE shopping (item text); INSERT INTO shopping VALUES ('milk');",
        )
        .unwrap();
        drop(conn);
        std::fs::read(&path).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not SQLite", b"this is not a database".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("damaged pages", damaged),
        ("a SQLite file that is not a collection", not_anki),
        ("schema version 5", altered("rich.v11.anki2", "UPDATE col SET ver = 5")),
        ("schema version 16", altered("rich.v11.anki2", "UPDATE col SET ver = 16")),
        ("no revlog table", altered("rich.v11.anki2", "DROP TABLE revlog")),
        ("two col rows", altered("rich.v11.anki2", "INSERT INTO col SELECT 2, crt, mod, scm, ver, dty, usn, ls, conf, models, decks, dconf, tags FROM col")),
        ("models not JSON", altered("rich.v11.anki2", "UPDATE col SET models = '{not json'")),
    ];
    for (name, body) in cases {
        let (status, reply) = modern_upload(&server, &key, &body);
        assert_eq!((status, reply.as_str()), (200, CORRUPT), "{name}");
    }

    // Over the limits (1 MiB on the wire, 3 MiB decompressed): the size-limit text.
    let incompressible: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (status, reply) = modern_upload_compressed(&server, &key, &incompressible);
    assert_eq!(
        (status, reply.as_str()),
        (200, TOO_LARGE),
        "over the wire limit"
    );
    let (status, reply) = modern_upload(&server, &key, &vec![0u8; 8 * 1024 * 1024]);
    assert_eq!((status, reply.as_str()), (200, TOO_LARGE), "zstd bomb");
    let bomb = gzip(&vec![0u8; 8 * 1024 * 1024]);
    let (status, reply) = post_multipart(
        &server.endpoint(),
        "/sync/upload",
        &multipart(&[("k", key.as_bytes()), ("c", b"1"), ("data", &bomb)]),
    );
    assert_eq!(
        (status, reply.as_str()),
        (200, TOO_LARGE),
        "gzip bomb (legacy envelope)"
    );
    let (status, reply) = post_multipart(
        &server.endpoint(),
        "/sync/upload",
        &multipart(&[("k", key.as_bytes()), ("c", b"0"), ("data", b"junk")]),
    );
    assert_eq!(
        (status, reply.as_str()),
        (200, CORRUPT),
        "legacy envelope, not SQLite"
    );

    // A stranger's upload is refused before anything is stored.
    let (status, _) = modern_upload(&server, "not-a-key", &good);
    assert_eq!(status, 403);

    assert!(
        scratch_uploads(&server).is_empty(),
        "{:?}",
        scratch_uploads(&server)
    );
    assert_collection_untouched(&server, &mut a);
    assert!(!server.log().contains("panicked"));
}

#[test]
fn a_client_hanging_up_mid_upload_changes_nothing() {
    let (server, mut a) = server_with_collection(&[]);
    let key = host_key(&server);
    let partial = zstd::encode_all(&fixture("rich.anki2")[..], 1).unwrap();
    // Announce far more than is sent, then hang up: the server sees the body end early.
    let authority = server
        .endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    let head = format!(
        "POST /sync/upload HTTP/1.1\r\nHost: {authority}\r\nanki-sync: {{\"v\":11,\"k\":\"{key}\",\"c\":\"test\",\"s\":\"up\"}}\r\nContent-Length: {}\r\n\r\n",
        partial.len() * 4
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&partial[..partial.len() / 2]).unwrap();
    drop(stream);
    // The server must first have given up on the body (its request line says 400), or an
    // empty scratch folder would prove nothing: the upload might not have begun.
    let gave_up = || {
        server
            .log()
            .lines()
            .any(|line| line.contains("method=sync/upload") && line.contains("status=400"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(gave_up() && scratch_uploads(&server).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        gave_up(),
        "the server refused the cut-off body:\n{}",
        server.log()
    );
    assert!(
        scratch_uploads(&server).is_empty(),
        "the partial upload is removed"
    );
    assert_eq!(http_get(&server.endpoint(), "/health").0, 200);
    assert_collection_untouched(&server, &mut a);
}

#[test]
fn a_server_killed_mid_ingest_restarts_with_the_previous_collection() {
    let (mut server, mut a) = server_with_collection(&[("TEST_ANKISYNCD_INGEST_PAUSE_MS", "400")]);
    let key = host_key(&server);
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("big.anki2");
    make_dataset(&dataset, 5_000, 7);
    let body = zstd::encode_all(&std::fs::read(&dataset).unwrap()[..], 1).unwrap();
    let endpoint = server.endpoint();
    let header = format!(r#"{{"v":11,"k":"{key}","c":"test","s":"up"}}"#);
    // Only what the server logs from here on is about this upload.
    let before = server.log().len();
    let upload = std::thread::spawn(move || {
        // The connection dies with the server; whatever this returns is not the point.
        let _ = std::panic::catch_unwind(|| {
            http_request_raw(
                &endpoint,
                "POST",
                "/sync/upload",
                &[("anki-sync", &header)],
                &body,
            )
        });
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.log()[before..].contains("upload batch written") {
        assert!(
            Instant::now() < deadline,
            "no batch written:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    upload.join().unwrap();
    let after = server.log()[before..].to_string();
    assert!(
        !after.contains("full upload stored"),
        "killed too late:\n{after}"
    );

    let endpoint = server.restart();
    a.set_endpoint(&endpoint);
    assert!(
        server
            .log()
            .contains("discarded full uploads interrupted by the last shutdown"),
        "{}",
        server.log()
    );
    assert!(
        scratch_uploads(&server).is_empty(),
        "scratch emptied at startup"
    );
    assert_collection_untouched(&server, &mut a);
}

#[test]
fn restore_previous_undoes_a_replacing_upload() {
    let (mut server, mut a) = server_with_collection(&[]);
    let mut c = Device::new(ClientVersion::Current);
    c.login("user", "pass", &server.endpoint()).unwrap();
    c.add_notes(3, "mistake");
    assert_eq!(c.sync().unwrap().required, ChangesRequired::FullSync);
    c.full_upload().unwrap();

    server.stop();
    let (status, out, err) = server.run_cli(&["user", "restore-previous", "user"], "");
    assert!(status.success(), "{out}{err}");
    let (status, _, err) = server.run_cli(&["user", "restore-previous", "nobody"], "");
    assert!(!status.success() && err.contains("no user"), "{err}");
    let endpoint = server.restart();
    a.set_endpoint(&endpoint);
    assert_collection_untouched(&server, &mut a);
    c.set_endpoint(&endpoint);
    assert_eq!(
        c.sync().unwrap().required,
        ChangesRequired::FullSync,
        "the mistaken device must full-sync"
    );
}

/// The `ver` of a downloaded collection file.
fn schema_of(file: &[u8]) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("down.anki2");
    std::fs::write(&path, file).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.query_row("SELECT ver FROM col", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn downloads_come_in_the_schema_the_clients_sync_version_reads() {
    let (server, _a) = server_with_collection(&[]);
    let key = host_key(&server);
    // v11: schema 18, as the official server sends it (protocol.md §1), zstd-compressed.
    let v11_download = || {
        let body = zstd::encode_all(&b"{}"[..], 1).unwrap();
        let (status, file) = v11_post(&server, "/sync/download", &key, &body);
        assert_eq!(status, 200);
        schema_of(&file)
    };
    assert_eq!(v11_download(), 18);
    // Legacy (multipart, v10 and older): schema 11, plain; twice, so the second comes from
    // the cache, which keeps both layouts of one collection version.
    for _ in 0..2 {
        let body = multipart(&[("k", key.as_bytes()), ("c", b"0"), ("data", b"{}")]);
        let (status, reply) =
            support::post_multipart_raw(&server.endpoint(), "/sync/download", &body);
        assert_eq!(status, 200);
        assert_eq!(schema_of(&reply), 11);
    }
    assert_eq!(v11_download(), 18);
    // The second legacy and the last v11 download at least were served from the cache.
    assert!(server.log().matches("full download from the cache").count() >= 2);
}
