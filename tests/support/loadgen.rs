//! A protocol-level sync client for load: it speaks sync v11 itself (protocol.md §1.3, §3,
//! §4), so one process can drive hundreds of users at a cost far below the official
//! client's, and the server, not the client, is what a load benchmark measures.
//!
//! It behaves like one device of the official client, with the state that client keeps:
//! the collection's usn, modification and schema times, and which notes were edited since
//! the last sync. A full upload sends a generated collection prepared as the client
//! prepares one (graves cleared, pending usns zeroed, usn stepped, schema time bumped); a
//! small sync edits notes read from that file and sends them through every step of a normal
//! sync (`meta` → `start` → `applyChanges` → `chunk` → `applyChunk` → `sanityCheck2` →
//! `finish`), sending the collection config and creation time when the device is newer, as
//! the client does.
//!
//! The generator is the only device of its user, so the server never has anything to send
//! back: any server change, any usn it did not expect, a status other than 200, a missing
//! `anki-original-size` or a sanity check other than "ok" is an error. It never papers over
//! a misbehaving server. `tests/e2e_loadgen.rs` checks it against the real client (what it
//! writes, the official client downloads); `benches/load.rs` uses it for the load runs.
//!
//! Compiled by the tests and benchmarks that include it (`#[path]`), beside
//! `tests/support/mod.rs`, whose dataset maker it uses.

// Each including crate uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection as Sqlite, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::support::{make_dataset, target_dir};

/// Same seed, same rows: runs on different days compare like with like.
pub const DATASET_SEED: u64 = 1;
/// The sync version the generator speaks, as current clients do.
const SYNC_VERSION: u8 = 11;
/// The `c` of the `anki-sync` header and the `cv` of `meta`: informational for servers.
const CLIENT_VERSION: &str = "26.9.3,loadgen,linux";
const META_CLIENT_VERSION: &str = "anki,26.9.3 (loadgen),linux";
/// Rows per `applyChunk`, as the client sends them.
const CHUNK_ROWS: usize = 250;
/// zstd level of request bodies: the default of the client's encoder.
const ZSTD_LEVEL: i32 = 3;
/// Bound on one exchange of a normal-sync method.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on a full upload (a 100k-note collection on a busy machine).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// A kept-alive connection idle longer than this is replaced before the next request, as a
/// client's connection pool does: servers may close idle connections (the generator does
/// not retry a request on a connection the server closed; that would hide failures).
const IDLE_RECONNECT: Duration = Duration::from_secs(5);
/// Marks the generator's edit in a note's first field (the text before it is the dataset's).
const EDIT_MARK: &str = " [edit ";

// ---------------------------------------------------------------------------------------
// Datasets

/// The generated collection of `notes` notes (`tests/client/make_dataset.py`), made once
/// and kept under `target/bench-data/` (it depends on the size, the seed and the client that
/// made it). Shared by the benchmarks and the generator's own test.
pub fn dataset(notes: usize) -> PathBuf {
    let dir = target_dir().join("bench-data");
    fs::create_dir_all(&dir).expect("create target/bench-data");
    let path = dir.join(format!(
        "notes-{notes}-seed-{DATASET_SEED}-anki-26.9.3.anki2"
    ));
    if !path.exists() {
        // Written beside and renamed, so an interrupted run leaves no half file behind
        // under the final name (and concurrent makers of the same size both end whole).
        let partial = dir.join(format!(
            "notes-{notes}-seed-{DATASET_SEED}-{}.partial",
            std::process::id()
        ));
        let summary = make_dataset(&partial, notes, DATASET_SEED);
        eprintln!("generated {}: {summary}", path.display());
        fs::rename(&partial, &path).expect("move the dataset into place");
    }
    path
}

// ---------------------------------------------------------------------------------------
// Errors

/// Why a generator step failed. Every variant names the sync method it happened in.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{method}: connection: {source}")]
    Io {
        method: String,
        #[source]
        source: io::Error,
    },
    #[error("{method}: HTTP {status}: {body}")]
    Status {
        method: String,
        status: u16,
        body: String,
    },
    #[error("{method}: {what}")]
    Protocol { method: String, what: String },
}

fn protocol(method: &str, what: impl Into<String>) -> LoadError {
    LoadError::Protocol {
        method: method.to_string(),
        what: what.into(),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 with keep-alive, over std

/// One HTTP response as the generator needs it.
struct Response {
    status: u16,
    /// `anki-original-size`: mandatory on every successful v11 reply.
    original_size: Option<usize>,
    body: Vec<u8>,
}

/// A kept-alive connection to one server, reopened when the server closed it after a reply
/// or when it sat idle (see [`IDLE_RECONNECT`]).
struct Connection {
    address: SocketAddr,
    authority: String,
    open: Option<(BufReader<TcpStream>, Instant)>,
}

impl Connection {
    fn new(endpoint: &str) -> io::Result<Connection> {
        let authority = endpoint
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| io::Error::other(format!("not an http:// endpoint: {endpoint}")))?
            .to_string();
        let address = authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("no address for {authority}")))?;
        Ok(Connection {
            address,
            authority,
            open: None,
        })
    }

    fn stream(&mut self, timeout: Duration) -> io::Result<&mut BufReader<TcpStream>> {
        if self
            .open
            .as_ref()
            .is_some_and(|(_, used)| used.elapsed() > IDLE_RECONNECT)
        {
            self.open = None;
        }
        if self.open.is_none() {
            let stream = TcpStream::connect_timeout(&self.address, timeout)?;
            // As the client's HTTP stack does: small requests go out at once.
            stream.set_nodelay(true)?;
            self.open = Some((BufReader::new(stream), Instant::now()));
        }
        let (reader, _) = self.open.as_mut().expect("just opened");
        reader.get_ref().set_read_timeout(Some(timeout))?;
        reader.get_ref().set_write_timeout(Some(timeout))?;
        Ok(reader)
    }

    /// POSTs `body` to `path` with the extra `headers`; any failure drops the connection.
    fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> io::Result<Response> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n",
            self.authority,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let result = self
            .stream(timeout)
            .and_then(|reader| exchange(reader, head.into_bytes(), body));
        match result {
            Ok((response, keep_alive)) => {
                match self.open.as_mut() {
                    Some((_, used)) if keep_alive => *used = Instant::now(),
                    _ => self.open = None,
                }
                Ok(response)
            }
            Err(e) => {
                self.open = None;
                Err(e)
            }
        }
    }
}

/// Sends one request and reads its response; also says whether the connection may be
/// used again.
fn exchange(
    reader: &mut BufReader<TcpStream>,
    mut request: Vec<u8>,
    body: &[u8],
) -> io::Result<(Response, bool)> {
    // One write for small requests: a server may act on the first segment it reads.
    if body.len() <= 64 * 1024 {
        request.extend_from_slice(body);
        reader.get_mut().write_all(&request)?;
    } else {
        reader.get_mut().write_all(&request)?;
        reader.get_mut().write_all(body)?;
    }
    read_response(reader)
}

fn bad_data(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete reply",
        ));
    }
    let text = String::from_utf8(line).map_err(|_| bad_data("reply head is not UTF-8"))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one response; also says whether the connection may be used again.
fn read_response(reader: &mut BufReader<TcpStream>) -> io::Result<(Response, bool)> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad_data(format!("bad status line {status_line:?}")))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut keep_alive = version == "HTTP/1.1";
    let mut original_size = None;
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad_data(format!("bad header line {line:?}")));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                content_length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| bad_data(format!("bad content-length {value:?}")))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
            "anki-original-size" => original_size = value.parse().ok(),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(length) = content_length {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        // Delimited by the end of the connection.
        keep_alive = false;
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    Ok((
        Response {
            status,
            original_size,
            body,
        },
        keep_alive,
    ))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad_data(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(bad_data("chunk not followed by CRLF"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The device's collection

/// A note as the client keeps it and sends it (protocol.md §4.5: `sfld`, `csum`, `flags`
/// and `data` go out empty or zero, whatever the device has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub id: i64,
    pub guid: String,
    pub mid: i64,
    /// Seconds.
    pub modified: i64,
    pub usn: i32,
    pub tags: String,
    pub fields: String,
}

/// Row counts as `sanityCheck2` compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub cards: u32,
    pub notes: u32,
    pub revlog: u32,
    pub notetypes: u32,
    pub decks: u32,
    pub deck_configs: u32,
}

/// One device's collection: the rows the generator edits and the bookkeeping the client
/// keeps between syncs.
#[derive(Clone, Debug)]
pub struct Collection {
    /// By id, as read from the uploaded file.
    pub notes: Vec<Note>,
    /// Indexes into `notes` edited since the last sync (the client's usn -1 rows).
    pending: BTreeSet<usize>,
    pub counts: Counts,
    /// The whole collection config, sent as `conf` when this device is newer.
    config: Map<String, Value>,
    /// Creation time (seconds), sent as `crt` with the config.
    created_secs: i64,
    /// The client's `col.usn`: the server's usn after the last sync, its `minUsn`.
    pub usn: i32,
    /// The client's `col.mod` (milliseconds).
    pub modified_ms: i64,
    /// The client's `col.scm` (milliseconds).
    pub schema_ms: i64,
}

impl Collection {
    /// Edits `count` notes as the editor does: the first field changes, the note's
    /// modification time becomes now and it waits for the next sync. Which notes depends
    /// only on `round` and `offset`, so users (distinct offsets) edit different notes.
    pub fn edit_notes(&mut self, count: usize, round: u64, offset: usize) {
        let now_ms = now_ms();
        let len = self.notes.len();
        for k in 0..count.min(len) {
            let index = (offset + round as usize * count + k) % len;
            let note = &mut self.notes[index];
            let mut fields: Vec<&str> = note.fields.split('\x1f').collect();
            let front = fields[0]
                .split(EDIT_MARK)
                .next()
                .unwrap_or_default()
                .to_string();
            let edited = format!("{front}{EDIT_MARK}{round}]");
            fields[0] = &edited;
            note.fields = fields.join("\x1f");
            note.modified = now_ms / 1000;
            note.usn = -1;
            self.pending.insert(index);
        }
        // The collection's modification time moves with every change; strictly, so that
        // `meta` can never mistake an edit for "no changes".
        self.modified_ms = now_ms.max(self.modified_ms + 1);
    }

    pub fn pending_notes(&self) -> usize {
        self.pending.len()
    }

    fn sanity_counts(&self) -> Value {
        let c = self.counts;
        // [[new, learn, review], cards, notes, revlog, graves, models, decks, dconf]; the
        // device has no graves (it deletes nothing, and the upload cleared them).
        json!([
            [0, 0, 0],
            c.cards,
            c.notes,
            c.revlog,
            0,
            c.notetypes,
            c.decks,
            c.deck_configs
        ])
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A collection file made ready for a full upload, compressed once so that many users can
/// upload it, and the state a device has right after uploading it.
pub struct PreparedUpload {
    /// The request body of `upload`: the file, zstd-compressed.
    pub body: Vec<u8>,
    /// Size of the file itself.
    pub file_bytes: u64,
    pub collection: Collection,
}

/// The client's collation for names (case-insensitive beyond ASCII), needed to write the
/// tables whose indexes use it.
fn register_unicase(db: &Sqlite) -> rusqlite::Result<()> {
    db.create_collation("unicase", |a, b| {
        unicase::UniCase::new(a).cmp(&unicase::UniCase::new(b))
    })
}

/// Copies `dataset` into `dir` and prepares it as the client does before a full upload:
/// graves cleared, pending usns (-1) set to 0, the collection usn stepped, the schema time
/// set to now and the last-sync time to it. Then reads what the device keeps.
pub fn prepare_upload(dataset: &Path, dir: &Path) -> PreparedUpload {
    let path = dir.join("upload.anki2");
    fs::copy(dataset, &path).unwrap_or_else(|e| panic!("copy {}: {e}", dataset.display()));
    let db = Sqlite::open(&path).expect("open the collection copy");
    register_unicase(&db).expect("register unicase");
    let now = now_ms();
    db.execute_batch(&format!(
        "BEGIN;
         DELETE FROM graves;
         UPDATE notes SET usn = 0 WHERE usn = -1;
         UPDATE cards SET usn = 0 WHERE usn = -1;
         UPDATE revlog SET usn = 0 WHERE usn = -1;
         UPDATE tags SET usn = 0 WHERE usn != 0;
         UPDATE decks SET usn = 0 WHERE usn != 0;
         UPDATE deck_config SET usn = 0 WHERE usn != 0;
         UPDATE notetypes SET usn = 0 WHERE usn != 0;
         UPDATE col SET usn = usn + 1, scm = {now}, ls = {now};
         COMMIT;
         PRAGMA journal_mode = DELETE;"
    ))
    .expect("prepare the collection for upload");
    let collection = read_collection(&db);
    drop(db);
    let raw = fs::read(&path).expect("read the prepared collection");
    let body = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compress");
    PreparedUpload {
        body,
        file_bytes: raw.len() as u64,
        collection,
    }
}

fn read_collection(db: &Sqlite) -> Collection {
    let count = |table: &str| -> u32 {
        db.query_row(&format!("SELECT count() FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
    };
    let counts = Counts {
        cards: count("cards"),
        notes: count("notes"),
        revlog: count("revlog"),
        notetypes: count("notetypes"),
        decks: count("decks"),
        deck_configs: count("deck_config"),
    };
    let mut statement = db
        .prepare("SELECT id, guid, mid, mod, usn, tags, flds FROM notes ORDER BY id")
        .expect("select notes");
    let notes: Vec<Note> = statement
        .query_map([], |row| {
            Ok(Note {
                id: row.get(0)?,
                guid: row.get(1)?,
                mid: row.get(2)?,
                modified: row.get(3)?,
                usn: row.get(4)?,
                tags: row.get(5)?,
                fields: row.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .expect("read notes");
    let mut statement = db
        .prepare("SELECT key, val FROM config")
        .expect("select config");
    let config: Map<String, Value> = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .expect("read config")
        .into_iter()
        .map(|(key, val)| {
            let value = serde_json::from_slice(&val)
                .unwrap_or_else(|e| panic!("config {key} is not JSON: {e}"));
            (key, value)
        })
        .collect();
    let (created_secs, modified_ms, schema_ms, usn) = db
        .query_row("SELECT crt, mod, scm, usn FROM col", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()
        .expect("read col")
        .expect("a col row");
    Collection {
        notes,
        pending: BTreeSet::new(),
        counts,
        config,
        created_secs,
        usn,
        modified_ms,
        schema_ms,
    }
}

// ---------------------------------------------------------------------------------------
// The protocol

/// `meta`'s reply, the fields the client decides with.
#[derive(Clone, Debug, Deserialize)]
pub struct Meta {
    #[serde(rename = "mod")]
    pub modified_ms: i64,
    #[serde(rename = "scm")]
    pub schema_ms: i64,
    pub usn: i32,
    #[serde(rename = "ts")]
    pub server_time_secs: i64,
    pub msg: String,
    pub cont: bool,
    pub empty: bool,
    pub media_usn: i32,
}

#[derive(Debug, Deserialize)]
struct Graves {
    #[serde(default)]
    cards: Vec<i64>,
    #[serde(default)]
    notes: Vec<i64>,
    #[serde(default)]
    decks: Vec<i64>,
}

#[derive(Debug, Deserialize)]
struct ServerChanges {
    #[serde(default)]
    models: Vec<Value>,
    decks: (Vec<Value>, Vec<Value>),
    #[serde(default)]
    tags: Vec<String>,
    conf: Option<Map<String, Value>>,
    crt: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct ServerChunk {
    #[serde(default)]
    done: bool,
    #[serde(default)]
    revlog: Vec<Value>,
    #[serde(default)]
    cards: Vec<Value>,
    #[serde(default)]
    notes: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct SanityReply {
    status: String,
    c: Option<Value>,
    s: Option<Value>,
}

/// One logged-in device of one user.
pub struct SyncClient {
    connection: Connection,
    host_key: String,
    /// Prefix of this device's session keys (alphanumeric).
    tag: String,
    /// Syncs begun; numbers the session keys.
    sessions: u64,
    session: String,
}

impl SyncClient {
    /// `hostKey`: logs in with the user's password, as the client does once per device.
    pub fn login(endpoint: &str, user: &str, password: &str) -> Result<SyncClient, LoadError> {
        let connection = Connection::new(endpoint).map_err(|source| LoadError::Io {
            method: "hostKey".into(),
            source,
        })?;
        let tag: String = user.chars().filter(char::is_ascii_alphanumeric).collect();
        let mut client = SyncClient {
            connection,
            host_key: String::new(),
            session: format!("{tag}0"),
            tag,
            sessions: 0,
        };
        #[derive(Deserialize)]
        struct HostKey {
            key: String,
        }
        let reply: HostKey = client.call_json("hostKey", &json!({"u": user, "p": password}))?;
        client.host_key = reply.key;
        Ok(client)
    }

    /// A new session key, as the client makes for each sync.
    fn new_session(&mut self) {
        self.sessions += 1;
        self.session = format!("{}s{}", self.tag, self.sessions);
    }

    /// One request: `body` (uncompressed) in the v11 envelope; the reply decompressed.
    fn call(
        &mut self,
        method: &str,
        body: &[u8],
        compressed: bool,
        timeout: Duration,
    ) -> Result<Vec<u8>, LoadError> {
        let header = json!({
            "v": SYNC_VERSION,
            "k": self.host_key,
            "c": CLIENT_VERSION,
            "s": self.session,
        })
        .to_string();
        let compressed_body;
        let body = if compressed {
            body
        } else {
            compressed_body =
                zstd::bulk::compress(body, ZSTD_LEVEL).map_err(|source| LoadError::Io {
                    method: method.to_string(),
                    source,
                })?;
            &compressed_body
        };
        let response = self
            .connection
            .post(
                &format!("/sync/{method}"),
                &[("anki-sync", &header)],
                body,
                timeout,
            )
            .map_err(|source| LoadError::Io {
                method: method.to_string(),
                source,
            })?;
        if response.status != 200 {
            return Err(LoadError::Status {
                method: method.to_string(),
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            });
        }
        let Some(original_size) = response.original_size else {
            return Err(protocol(method, "200 without anki-original-size"));
        };
        let decoded = zstd::stream::decode_all(response.body.as_slice())
            .map_err(|e| protocol(method, format!("reply is not zstd: {e}")))?;
        if decoded.len() != original_size {
            return Err(protocol(
                method,
                format!(
                    "anki-original-size {original_size}, but the body decompresses to {}",
                    decoded.len()
                ),
            ));
        }
        Ok(decoded)
    }

    fn call_json<T: serde::de::DeserializeOwned>(
        &mut self,
        method: &str,
        request: &Value,
    ) -> Result<T, LoadError> {
        let reply = self.call(
            method,
            request.to_string().as_bytes(),
            false,
            REQUEST_TIMEOUT,
        )?;
        serde_json::from_slice(&reply).map_err(|e| {
            protocol(
                method,
                format!(
                    "unexpected reply ({e}): {}",
                    String::from_utf8_lossy(&reply)
                ),
            )
        })
    }

    pub fn meta(&mut self) -> Result<Meta, LoadError> {
        let meta: Meta = self.call_json(
            "meta",
            &json!({"v": SYNC_VERSION, "cv": META_CLIENT_VERSION}),
        )?;
        if !meta.cont {
            return Err(protocol("meta", format!("server says stop: {}", meta.msg)));
        }
        // The client refuses to sync with a clock more than 5 minutes off.
        if (meta.server_time_secs - now_ms() / 1000).abs() > 300 {
            return Err(protocol("meta", "server clock is more than 300 s off"));
        }
        Ok(meta)
    }

    /// A one-way upload of `upload` (`meta`, then `upload`), after which the device holds
    /// `upload.collection`; `meta` must then report the uploaded collection.
    pub fn full_upload(&mut self, upload: &PreparedUpload) -> Result<Collection, LoadError> {
        self.new_session();
        self.meta()?;
        let reply = self.call("upload", &upload.body, true, UPLOAD_TIMEOUT)?;
        if reply != b"OK" {
            return Err(protocol(
                "upload",
                format!("refused: {}", String::from_utf8_lossy(&reply)),
            ));
        }
        let collection = upload.collection.clone();
        let meta = self.meta()?;
        if (meta.modified_ms, meta.schema_ms, meta.usn, meta.empty)
            != (
                collection.modified_ms,
                collection.schema_ms,
                collection.usn,
                collection.counts.cards == 0,
            )
        {
            return Err(protocol(
                "meta",
                format!(
                    "after the upload the server reports mod {} scm {} usn {} empty {}, \
                     the device has mod {} scm {} usn {}",
                    meta.modified_ms,
                    meta.schema_ms,
                    meta.usn,
                    meta.empty,
                    collection.modified_ms,
                    collection.schema_ms,
                    collection.usn
                ),
            ));
        }
        Ok(collection)
    }

    /// What a client does when nothing changed: one `meta`, which must say so.
    pub fn check_no_changes(&mut self, collection: &Collection) -> Result<(), LoadError> {
        self.new_session();
        let meta = self.meta()?;
        if meta.modified_ms != collection.modified_ms {
            return Err(protocol(
                "meta",
                format!(
                    "the device changed nothing, but the server reports mod {} (device {})",
                    meta.modified_ms, collection.modified_ms
                ),
            ));
        }
        Ok(())
    }

    /// One normal sync of the device's pending edits, every step as the client makes it.
    pub fn sync(&mut self, collection: &mut Collection) -> Result<(), LoadError> {
        self.new_session();
        let meta = self.meta()?;
        if meta.modified_ms == collection.modified_ms {
            return Err(protocol(
                "meta",
                "the device has edits, but the server reports its modification time",
            ));
        }
        if meta.schema_ms != collection.schema_ms {
            return Err(protocol(
                "meta",
                format!(
                    "the server asks for a full sync (scm {}, device {})",
                    meta.schema_ms, collection.schema_ms
                ),
            ));
        }
        // The generator is the user's only device: the server's usn is the one it left.
        if meta.usn != collection.usn {
            return Err(protocol(
                "meta",
                format!(
                    "server usn {} but the device's last sync left {}",
                    meta.usn, collection.usn
                ),
            ));
        }
        let server_usn = meta.usn;
        let local_is_newer = collection.modified_ms > meta.modified_ms;

        let graves: Graves = self.call_json(
            "start",
            &json!({"minUsn": collection.usn, "lnewer": local_is_newer, "graves": null}),
        )?;
        if !(graves.cards.is_empty() && graves.notes.is_empty() && graves.decks.is_empty()) {
            return Err(protocol("start", format!("unexpected graves: {graves:?}")));
        }
        // No deletions on this device: no applyGraves, as the client sends none.

        let mut changes = json!({"models": [], "decks": [[], []], "tags": []});
        if local_is_newer {
            changes["conf"] = Value::Object(collection.config.clone());
            changes["crt"] = json!(collection.created_secs);
        }
        let server: ServerChanges = self.call_json("applyChanges", &json!({"changes": changes}))?;
        let unexpected = !server.models.is_empty()
            || !server.decks.0.is_empty()
            || !server.decks.1.is_empty()
            || !server.tags.is_empty();
        if unexpected || (local_is_newer && (server.conf.is_some() || server.crt.is_some())) {
            return Err(protocol(
                "applyChanges",
                format!("unexpected server changes: {server:?}"),
            ));
        }
        if let Some(config) = server.conf {
            collection.config = config;
        }
        if let Some(created) = server.crt {
            collection.created_secs = created;
        }

        // Bounded: a server that never says done would otherwise keep the loop forever.
        let mut chunks = 0;
        loop {
            chunks += 1;
            if chunks > 1000 {
                return Err(protocol("chunk", "no `done` after 1000 chunks"));
            }
            let chunk: ServerChunk = self.call_json("chunk", &json!({}))?;
            if !(chunk.revlog.is_empty() && chunk.cards.is_empty() && chunk.notes.is_empty()) {
                return Err(protocol(
                    "chunk",
                    format!(
                        "unexpected server rows: {} revlog, {} cards, {} notes",
                        chunk.revlog.len(),
                        chunk.cards.len(),
                        chunk.notes.len()
                    ),
                ));
            }
            if chunk.done {
                break;
            }
        }

        // The client takes pending rows from the end of its list.
        let mut pending: Vec<usize> = collection.pending.iter().copied().collect();
        loop {
            let take = pending.len().min(CHUNK_ROWS);
            let batch = pending.split_off(pending.len() - take);
            let done = take < CHUNK_ROWS;
            let notes: Vec<Value> = batch
                .iter()
                .rev()
                .map(|&index| {
                    let note = &mut collection.notes[index];
                    note.usn = server_usn;
                    json!([
                        note.id,
                        note.guid,
                        note.mid,
                        note.modified,
                        note.usn,
                        note.tags,
                        note.fields,
                        "",
                        "",
                        0,
                        ""
                    ])
                })
                .collect();
            let mut chunk = json!({ "done": done });
            if !notes.is_empty() {
                chunk["notes"] = Value::Array(notes);
            }
            let reply: Value = self.call_json("applyChunk", &json!({ "chunk": chunk }))?;
            if !reply.is_null() {
                return Err(protocol(
                    "applyChunk",
                    format!("expected null, got {reply}"),
                ));
            }
            if done {
                break;
            }
        }

        let sanity: SanityReply = self.call_json(
            "sanityCheck2",
            &json!({"client": collection.sanity_counts()}),
        )?;
        if sanity.status != "ok" {
            return Err(protocol(
                "sanityCheck2",
                format!(
                    "status {:?}: client {:?}, server {:?}",
                    sanity.status, sanity.c, sanity.s
                ),
            ));
        }

        let modified_ms: i64 = self.call_json("finish", &json!({}))?;
        collection.pending.clear();
        collection.modified_ms = modified_ms;
        collection.usn = server_usn + 1;
        Ok(())
    }
}
