//! The inputs of the micro-benchmarks, all deterministic: the generated collection (made once
//! by the real client's `tests/client/make_dataset.py`, as for the full-sync bench), a sync
//! request body cut from its rows, that body in both request envelopes, and a media upload
//! zip as current clients build it.

use std::fs;
use std::io::{Cursor, Write};
use std::path::PathBuf;

use bytes::Bytes;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::support::{make_dataset, target_dir};

/// Notes of the generated collection (two cards and five revlog rows each, as
/// `make_dataset.py` makes them): 40,000 rows, a file of about 5 MB.
pub const NOTES: usize = 5_000;
/// The full-sync bench's seed, so both benches share the cached files' naming.
const SEED: u64 = 1;
/// Rows in one `applyChunk`: the most a client sends at once (protocol.md §4.5).
const CHUNK_ROWS: usize = 250;
const HOST_KEY: &str = "0123456789abcdef0123456789abcdef01234567";
const SESSION_KEY: &str = "bench-session";
const BOUNDARY: &str = "------------------------bench7f3a9c";
/// Files in the media upload: what one zip of a current client holds at most with room for
/// `_meta` (25 changes per zip, protocol.md §5.4): 4 large files spanning several 256 KiB
/// blob chunks, and 20 small ones below one chunk.
const LARGE_FILES: usize = 4;
const LARGE_FILE_BYTES: usize = 1024 * 1024;
const SMALL_FILES: usize = 20;
const SMALL_FILE_BYTES: usize = 48 * 1024;

/// The generated collection of [`NOTES`] notes, kept under `target/bench-data/`.
pub fn collection() -> PathBuf {
    let dir = target_dir().join("bench-data");
    fs::create_dir_all(&dir).expect("create target/bench-data");
    let path = dir.join(format!("notes-{NOTES}-seed-{SEED}-anki-26.9.3.anki2"));
    if !path.exists() {
        // Written beside and renamed: an interrupted run leaves no half file under the name.
        let partial = dir.join(format!("notes-{NOTES}-seed-{SEED}.partial"));
        let summary = make_dataset(&partial, NOTES, SEED);
        eprintln!("generated {}: {summary}", path.display());
        fs::rename(&partial, &path).expect("move the dataset into place");
    }
    path
}

/// An `applyChunk` request body (protocol.md §4.6) of [`CHUNK_ROWS`] rows of the collection,
/// split between revlog, notes and cards as the sender's round robin splits them.
pub fn apply_chunk_body() -> Bytes {
    let conn = Connection::open_with_flags(collection(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the generated collection");
    let third = CHUNK_ROWS / 3;
    let revlog = rows(
        &conn,
        "SELECT id, cid, usn, ease, ivl, lastIvl, factor, time, type FROM revlog ORDER BY id",
        CHUNK_ROWS - 2 * third,
    );
    // `sfld` and `csum` travel as empty strings; the receiver computes them.
    let notes = rows(
        &conn,
        "SELECT id, guid, mid, mod, usn, tags, flds, '', '', flags, data FROM notes ORDER BY id",
        third,
    );
    let cards = rows(
        &conn,
        "SELECT id, nid, did, ord, mod, usn, type, queue, due, ivl, factor, reps, lapses, left, \
         odue, odid, flags, data FROM cards ORDER BY id",
        third,
    );
    let body = json!({"chunk": {"done": false, "revlog": revlog, "cards": cards, "notes": notes}});
    Bytes::from(serde_json::to_vec(&body).expect("serialise the chunk"))
}

fn rows(conn: &Connection, sql: &str, limit: usize) -> Vec<Value> {
    let mut statement = conn
        .prepare(&format!("{sql} LIMIT {limit}"))
        .expect("prepare");
    let columns = statement.column_count();
    let mut out = Vec::with_capacity(limit);
    let mut found = statement.query([]).expect("query");
    while let Some(row) = found.next().expect("read a row") {
        let values = (0..columns)
            .map(|i| match row.get_ref(i).expect("column") {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => n.into(),
                ValueRef::Real(f) => f.into(),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    String::from_utf8_lossy(t).into_owned().into()
                }
            })
            .collect();
        out.push(Value::Array(values));
    }
    assert_eq!(out.len(), limit, "the collection is too small for a chunk");
    out
}

/// A v11 request: the `anki-sync` header and the zstd-compressed body.
pub fn modern_request(body: &[u8]) -> (HeaderMap, Bytes) {
    let header = json!({"v": 11, "k": HOST_KEY, "c": "26.9.3,bench,linux", "s": SESSION_KEY});
    let mut headers = HeaderMap::new();
    headers.insert(
        "anki-sync",
        HeaderValue::from_str(&header.to_string()).expect("header value"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let compressed =
        zstd::bulk::compress(body, zstd::DEFAULT_COMPRESSION_LEVEL).expect("zstd compress");
    (headers, Bytes::from(compressed))
}

/// A legacy request: `multipart/form-data` with the compression flag, the keys and the
/// gzip-compressed `data` part (protocol.md §1.4).
pub fn legacy_request(body: &[u8]) -> (HeaderMap, Bytes) {
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(body).expect("gzip");
    let data = gzip.finish().expect("gzip");
    let mut out = Vec::with_capacity(data.len() + 512);
    for (name, value) in [("c", "1"), ("k", HOST_KEY), ("s", SESSION_KEY)] {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"data\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&data);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}"))
            .expect("header value"),
    );
    (headers, Bytes::from(out))
}

/// A media upload zip (`_meta` plus one stored entry per file, as current clients send
/// them) and the number of file bytes in it. The bytes are pseudo-random, so they do not
/// compress, like the images and sounds that make up most media.
pub fn media_zip() -> (Vec<u8>, u64) {
    let mut random = SplitMix(SEED);
    let sizes = std::iter::repeat_n(LARGE_FILE_BYTES, LARGE_FILES)
        .chain(std::iter::repeat_n(SMALL_FILE_BYTES, SMALL_FILES));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let mut meta = Vec::new();
    let mut total = 0u64;
    for (i, size) in sizes.enumerate() {
        let entry = i.to_string();
        zip.start_file(entry.as_str(), stored).expect("zip entry");
        zip.write_all(&random.bytes(size)).expect("zip write");
        meta.push(json!([format!("bench-{i:02}.jpg"), entry]));
        total += size as u64;
    }
    zip.start_file("_meta", stored).expect("zip entry");
    zip.write_all(Value::Array(meta).to_string().as_bytes())
        .expect("zip write");
    let bytes = zip.finish().expect("finish the zip").into_inner();
    (bytes, total)
}

/// splitmix64: a fixed sequence for a fixed seed, whatever `rand` version is installed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}
