//! Micro-benchmarks: the library's hot paths in-process, without a server or a client, so a
//! change to one of them shows here before it drowns in the load benchmarks' noise.
//!
//! `cargo bench --bench micro` (a filter narrows it: `cargo bench --bench micro -- media`).
//! Groups, each with a throughput so a figure can be set beside the physical limit:
//!
//! - `envelope`: decoding an `applyChunk` request (250 rows) from the v11 envelope (`anki-sync`
//!   header + zstd) and from the legacy one (multipart + gzip), and encoding the same bytes
//!   as a reply in each (bytes of the JSON body);
//! - `zstd`: the generated collection file compressed at level 1 (full downloads) and 3
//!   (replies), and decompressed (bytes of the file);
//! - `fullsync`: a full upload's check and ingest into a fresh database, one 10,000-row batch
//!   insert alone (the upload's batch size), and building the download file from a database
//!   holding the collection (rows: notes + cards + revlog);
//! - `media`: checking and hashing an upload zip of 24 files (5 MB), storing them as 256 KiB
//!   blob chunks in a fresh database (one durable commit), and reading them back (bytes of
//!   the files).
//!
//! The collection is generated once by the real client (`tests/client/make_dataset.py`,
//! 5,000 notes) and cached under `target/bench-data/`; everything else is derived from it or
//! from a fixed seed. Databases live in temporary directories under `target/bench-tmp/`, on the same
//! disk as a server's, and are removed afterwards.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "micro/data.rs"]
mod data;

use std::hint::black_box;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ankisyncd::fullsync::{prepare_download, receive_upload, DownloadSchema, Scratch, UploadReply};
use ankisyncd::http::envelope::{decode_post, encode_ok, Envelope, Limits};
use ankisyncd::media::UploadZip;
use ankisyncd::store::{
    CollectionRecord, MediaApplied, MediaUpdate, RowBatch, RowKind, Store, UserUpsert,
};
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use http_body_util::Full;
use tempfile::TempDir;

const USER: &str = "bench";
/// Stored as the user's password hash; nothing in these benchmarks logs in.
const PASSWORD_HASH: &str = "not-a-hash";
const NOW_MS: i64 = 1_700_000_000_000;
/// The official server's default `MAX_SYNC_PAYLOAD_MEGS`.
const PAYLOAD_MEGS: u64 = 100;
/// Rows per write transaction of a full upload (`BATCH_ROWS` in src/fullsync/upload.rs).
const BATCH_ROWS: usize = 10_000;

/// A fresh database in a temporary directory under `target/`, with one user.
struct Database {
    _dir: TempDir,
    store: Store,
    user_id: u64,
}

impl Database {
    fn new() -> Database {
        let dir = temp_dir();
        let store = Store::open(&dir.path().join("bench.redb")).expect("open the store");
        let user_id = match store.set_user(USER, PASSWORD_HASH, NOW_MS) {
            Ok(UserUpsert::Created { id }) => id,
            other => panic!("creating the user in a new database: {other:?}"),
        };
        Database {
            _dir: dir,
            store,
            user_id,
        }
    }

    fn path(&self) -> &Path {
        self.store.path()
    }

    /// Full upload of the collection file at `path`; returns the collection record it left.
    fn upload(&self, path: &Path) -> CollectionRecord {
        let reply =
            receive_upload(&self.store, self.user_id, path, 1, None, NOW_MS).expect("upload");
        assert_eq!(
            reply,
            UploadReply::Ok,
            "the generated collection was refused"
        );
        self.record()
    }

    fn record(&self) -> CollectionRecord {
        self.store
            .snapshot()
            .expect("snapshot")
            .collection(self.user_id)
            .expect("read the collection")
            .expect("the user has a collection")
    }
}

/// A temporary directory under `target/bench-tmp/`, removed when dropped.
fn temp_dir() -> TempDir {
    let parent = support::target_dir().join("bench-tmp");
    std::fs::create_dir_all(&parent).expect("create target/bench-tmp");
    tempfile::tempdir_in(&parent).expect("temporary directory")
}

fn rows(record: &CollectionRecord) -> u64 {
    record.counts.notes + record.counts.cards + record.counts.revlog
}

/// The generated collection copied into a temporary directory: the upload opens it
/// read-write, and SQLite's sidecar files belong there rather than beside the cached copy.
fn upload_file() -> (TempDir, PathBuf) {
    let dir = temp_dir();
    let path = dir.path().join("upload.anki2");
    std::fs::copy(data::collection(), &path).expect("copy the collection");
    (dir, path)
}

fn envelope(c: &mut Criterion) {
    let body = data::apply_chunk_body();
    let limits = Limits::from_payload_megs(PAYLOAD_MEGS);
    // The server decompresses on tokio's blocking pool; so does this runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for (name, (headers, wire)) in [
        ("decode modern (zstd)", data::modern_request(&body)),
        (
            "decode legacy (multipart + gzip)",
            data::legacy_request(&body),
        ),
    ] {
        let decoded = runtime
            .block_on(decode_post(&headers, Full::new(wire.clone()), &limits))
            .expect("decode");
        assert_eq!(decoded.body, body, "{name}: the body did not survive");
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(decode_post(&headers, Full::new(wire.clone()), &limits))
                    .expect("decode")
            })
        });
    }
    for (name, kind) in [
        ("encode modern (zstd)", Envelope::Modern),
        ("encode legacy (plain)", Envelope::Legacy),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| encode_ok(&kind, black_box(body.clone())).expect("encode"))
        });
    }
    group.finish();
}

fn zstd(c: &mut Criterion) {
    let file = Bytes::from(std::fs::read(data::collection()).expect("read the collection"));
    let mut group = c.benchmark_group("zstd");
    group.throughput(Throughput::Bytes(file.len() as u64));
    for level in [1, 3] {
        group.bench_function(format!("compress level {level}"), |b| {
            b.iter(|| zstd::bulk::compress(black_box(&file), level).expect("compress"))
        });
    }
    let compressed = zstd::bulk::compress(&file, 1).expect("compress");
    group.bench_function("decompress level 1", |b| {
        b.iter(|| zstd::bulk::decompress(black_box(&compressed), file.len()).expect("decompress"))
    });
    group.finish();
}

fn fullsync(c: &mut Criterion) {
    let (_upload_dir, upload) = upload_file();
    let loaded = Database::new();
    let record = loaded.upload(&upload);
    let mut group = c.benchmark_group("fullsync");
    slow(&mut group);

    group.throughput(Throughput::Elements(rows(&record)));
    group.bench_function("upload: check + ingest", |b| {
        b.iter_batched_ref(
            Database::new,
            |fresh| {
                receive_upload(&fresh.store, fresh.user_id, &upload, 1, None, NOW_MS)
                    .expect("upload")
            },
            BatchSize::PerIteration,
        )
    });

    let batch = first_batch(&loaded.store, &record);
    let batch_rows = batch.notes.len() + batch.cards.len() + batch.revlog.len();
    group.throughput(Throughput::Elements(batch_rows as u64));
    group.bench_function("redb batch insert (10,000 rows)", |b| {
        b.iter_batched_ref(
            || {
                let fresh = Database::new();
                let generation = fresh
                    .store
                    .begin_generation(fresh.user_id, 0, NOW_MS)
                    .expect("begin a generation");
                (fresh, generation)
            },
            |(fresh, generation)| {
                fresh
                    .store
                    .write_batch(generation.id, &batch)
                    .expect("write")
            },
            BatchSize::PerIteration,
        )
    });

    let scratch = Scratch::open(loaded.path()).expect("scratch directory");
    group.throughput(Throughput::Elements(rows(&record)));
    for (name, schema) in [
        (
            "download: build + compress (schema 18, v11)",
            DownloadSchema::V18,
        ),
        (
            "download: build + compress (schema 11, legacy)",
            DownloadSchema::V11,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                // Without this the second call would be served from the cache.
                || scratch.drop_downloads(loaded.user_id),
                |()| {
                    prepare_download(&loaded.store, &scratch, loaded.user_id, schema)
                        .expect("download")
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The first batch an upload writes after the objects: notes, then cards, in id order, each
/// with its changes-index entry when its usn is not below the collection's.
fn first_batch(store: &Store, record: &CollectionRecord) -> RowBatch {
    let snapshot = store.snapshot().expect("snapshot");
    let mut batch = RowBatch::default();
    for entry in snapshot.notes(record.generation).expect("notes") {
        if batch.notes.len() == BATCH_ROWS {
            break;
        }
        let (id, note) = entry.expect("note");
        if note.usn >= record.usn {
            batch.changes.push((note.usn, RowKind::Note as u8, id));
        }
        batch.notes.push((id, note));
    }
    for entry in snapshot.cards(record.generation).expect("cards") {
        if batch.notes.len() + batch.cards.len() == BATCH_ROWS {
            break;
        }
        let (id, card) = entry.expect("card");
        if card.usn >= record.usn {
            batch.changes.push((card.usn, RowKind::Card as u8, id));
        }
        batch.cards.push((id, card));
    }
    assert_eq!(
        batch.notes.len() + batch.cards.len(),
        BATCH_ROWS,
        "the collection is too small for a whole batch"
    );
    batch
}

fn media(c: &mut Criterion) {
    let (zip, file_bytes) = data::media_zip();
    let open = || UploadZip::open(Cursor::new(zip.as_slice())).expect("open the zip");
    let updates: Vec<MediaUpdate> = open().check().expect("the zip is valid");
    let mut group = c.benchmark_group("media");
    group.throughput(Throughput::Bytes(file_bytes));

    group.bench_function("upload zip: check + sha1 + blake3", |b| {
        b.iter(|| open().check().expect("check"))
    });

    slow(&mut group);

    group.bench_function("blob store: 256 KiB chunks, one durable commit", |b| {
        b.iter_batched_ref(
            || (Database::new(), open()),
            |(fresh, zip)| {
                let applied = fresh
                    .store
                    .apply_media_updates(fresh.user_id, &updates, zip, None)
                    .expect("store");
                assert!(matches!(applied, MediaApplied::Done(_)), "the user exists");
            },
            BatchSize::PerIteration,
        )
    });

    let loaded = Database::new();
    let applied = loaded
        .store
        .apply_media_updates(loaded.user_id, &updates, &mut open(), None)
        .expect("store");
    assert!(matches!(applied, MediaApplied::Done(_)), "the user exists");
    let blobs: Vec<[u8; 32]> = updates
        .iter()
        .filter_map(|update| update.content.map(|content| content.blake3))
        .collect();
    fast(&mut group);
    group.bench_function("blob read", |b| {
        b.iter(|| {
            let snapshot = loaded.store.media_snapshot().expect("snapshot");
            let mut read = 0u64;
            for blob in &blobs {
                let mut reader = snapshot.blob_reader(blob).expect("blob");
                read += io::copy(&mut reader, &mut io::sink()).expect("read");
            }
            assert_eq!(read, file_bytes);
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // Few samples over a short time, so the whole run takes a few minutes on two shared
    // cores; `slow` stretches it for the benchmarks of a tenth of a second per iteration.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(FAST_TIME)
}

const FAST_TIME: Duration = Duration::from_secs(4);
const SLOW_TIME: Duration = Duration::from_secs(8);

/// For benchmarks whose one iteration takes tens of milliseconds or more (with an untimed
/// setup each): the same number of iterations in every sample, and time enough for ten.
fn slow(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(SLOW_TIME);
}

fn fast(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sampling_mode(SamplingMode::Auto)
        .measurement_time(FAST_TIME);
}

criterion_group! {
    name = micro;
    config = config();
    targets = envelope, zstd, fullsync, media
}
criterion_main!(micro);
