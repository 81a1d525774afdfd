//! Load benchmark: many users' small syncs against the official sync server and ours.
//!
//! `cargo bench --bench load` runs every scenario below against the official server
//! (`python -m anki.syncserver` from the pinned client venv) and then against `ankisyncd`
//! as built by the bench profile, each on loopback, with the same deterministic data
//! (`tests/client/make_dataset.py`, cached under `target/bench-data/`).
//!
//! The load comes from a protocol-level generator (`tests/support/loadgen.rs`, checked
//! against the real client by `tests/e2e_loadgen.rs`): each simulated user logs in once,
//! full-uploads the 1k-note collection, and then makes small syncs, each carrying 20 edited
//! notes through every step of a normal sync. The official client itself drives one row
//! (`tests/client/device.py`), to show what a real client costs beside the server.
//!
//! Scenarios, per server (one server process for all but the on-disk one):
//! - **setup**: users log in and upload; idle RSS at start and after 100 users synced once;
//! - **N users** (1, 8, 32, 128), each in its own thread, syncing in a closed loop for
//!   `LOAD_SECS` seconds (default 15): syncs/s, latency percentiles of a whole sync, server
//!   and generator (this process) CPU per sync;
//! - **nothing changed**: the lone `meta` a client sends when nothing changed;
//! - **real client**: the official client makes 30 small syncs of 20 edits, then 30 with
//!   nothing changed: its CPU per sync beside the server's;
//! - **head-of-line**: 8 users' small syncs alone, then while another user full-uploads the
//!   100k-note collection (`LOAD_HOL_UPLOADS` times, default 2);
//! - **on disk**: a fresh server per size (1k, 20k, 100k notes), one upload each: how much
//!   the server's data grows against the size of the SQLite file.
//!
//! Before the servers run, two physical limits are measured in this process: one durable
//! page write (`fdatasync`) and the loopback round trips of one small sync. After the main
//! table, each server's own log gives request times by method (32 users; head-of-line), to
//! show which step of a sync waits.
//!
//! Every loop is bounded in time and count; every sync must succeed (the generator fails on
//! any error, conflict, unexpected server change or sanity mismatch, and the bench stops
//! with the server's log). Prints one Markdown table for `benches/README.md` and the
//! targets of the normal-sync and benchmark issues as met or missed.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::loadgen::{dataset, prepare_upload, Collection, LoadError, PreparedUpload, SyncClient};
use common::{
    announce_our_server, cpu_secs, load_average, median_of, metric, percentile, positive_env,
    reset_peak_rss, status_mb, BenchServer,
};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use support::{ChangesRequired, ClientVersion, Device, OfficialServer, Server, ServerOptions};
use tempfile::TempDir;

const USER_COUNTS: [usize; 4] = [1, 8, 32, 128];
/// Users who make small syncs (the largest of `USER_COUNTS`).
const LOOP_USERS: usize = 128;
/// Users counted for "RSS after N users synced once".
const RSS_USERS: usize = 100;
/// Notes edited per small sync.
const EDITS: usize = 20;
/// The collection every load user uploads.
const SMALL_NOTES: usize = 1_000;
/// The head-of-line upload.
const LARGE_NOTES: usize = 100_000;
/// The on-disk scenario's middle size.
const MEDIUM_NOTES: usize = 20_000;
/// Users syncing during the head-of-line scenario.
const HOL_USERS: usize = 8;
/// Bound on the number of syncs of one user in one loop, beside the time bound.
const MAX_SYNCS_PER_USER: usize = 100_000;
/// Threads that log users in and upload their collections during setup.
const SETUP_THREADS: usize = 4;
/// Real-client rounds: small syncs with edits, then syncs with nothing changed.
/// 30 rather than 10: CPU readings have the kernel's tick resolution (10 ms), and a small
/// sync costs either process a few milliseconds.
const CLIENT_SYNCS: usize = 30;
/// Lone `meta` requests of the nothing-changed scenario (or `NOTHING_SECS`, whichever first).
const NOTHING_METAS: usize = 1_000;
const NOTHING_SECS: u64 = 5;
/// The harness's 120 s per device command is tight for a full upload on a loaded machine.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on waiting for our server to finish preparing a download after an upload.
const CACHE_WAIT: Duration = Duration::from_secs(60);
/// Bound on waiting for the server to go quiet between scenarios.
const SETTLE_MAX: Duration = Duration::from_secs(60);
/// The machine's cores, for the share of CPU the load used.
fn cores() -> f64 {
    thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn user_name(i: usize) -> String {
    format!("user{i:03}")
}

fn password(i: usize) -> String {
    format!("pass-{i:03}")
}

const BIG_USER: &str = "big";
const BIG_PASSWORD: &str = "big-pass";
const CLIENT_USER: &str = "client";
const CLIENT_PASSWORD: &str = "client-pass";

/// Both servers log at their default level (`info`: one line per request); the test
/// harness asks ours for `debug`.
fn options(users: Vec<(String, String)>) -> ServerOptions {
    ServerOptions {
        users,
        extra_env: vec![
            ("ANKISYNCD_LOG_LEVEL".into(), "info".into()),
            ("RUST_LOG".into(), "info".into()),
        ],
        ..ServerOptions::default()
    }
}

/// The load users. With `hashed`, passwords go to the server as PBKDF2 hash strings
/// (`PASSWORDS_HASHED`, which both servers read).
fn load_options(hashed: bool) -> ServerOptions {
    let mut users: Vec<(String, String)> = (0..LOOP_USERS)
        .map(|i| (user_name(i), password(i)))
        .collect();
    users.push((BIG_USER.into(), BIG_PASSWORD.into()));
    users.push((CLIENT_USER.into(), CLIENT_PASSWORD.into()));
    if !hashed {
        return options(users);
    }
    let users = users
        .into_iter()
        .map(|(name, password)| (name, cheap_pbkdf2(&password)))
        .collect();
    let mut options = options(users);
    options
        .extra_env
        .push(("PASSWORDS_HASHED".into(), "1".into()));
    options
}

/// A PBKDF2 hash string of few rounds. The official server hashes plain `SYNC_USERn`
/// passwords at startup with many rounds: 130 of them take 12 s on an idle 2-core machine
/// and over the harness's 30 s startup bound on a busy one. Logins are not measured.
fn cheap_pbkdf2(password: &str) -> String {
    use password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::from_b64("bG9hZGJlbmNoc2FsdA").expect("a valid salt");
    let params = pbkdf2::Params {
        rounds: 1_000,
        output_length: 32,
    };
    pbkdf2::Pbkdf2
        .hash_password_customized(password.as_bytes(), None, None, params, &salt)
        .expect("pbkdf2 hash")
        .to_string()
}

/// How a server is run and what it does besides answering.
struct Kind {
    name: &'static str,
    /// Passwords as hash strings (see [`cheap_pbkdf2`]); otherwise plain.
    hashed_passwords: bool,
    /// Prepares a full download after each upload (ours).
    builds_download: bool,
}

/// Panics with the failure and the end of the server's log: the bench must never carry on
/// past a sync a real client would have reported as failed.
fn fail(server: &impl BenchServer, what: &str, error: &LoadError) -> ! {
    let log = server.log();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "{what}: {error}\n--- end of the server's log ---\n{}",
        tail.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Measurements

/// One simulated user: its connection and its device's collection.
struct Worker {
    index: usize,
    client: SyncClient,
    collection: Collection,
    round: u64,
}

impl Worker {
    fn edit_and_sync(&mut self) -> Result<(), LoadError> {
        // Users edit different notes (offsets 7 notes apart), and each round the next 20.
        self.collection
            .edit_notes(EDITS, self.round, self.index * 7);
        self.round += 1;
        self.client.sync(&mut self.collection)
    }
}

/// Waits (bounded) until the server stops using CPU, so that work it does after a reply
/// (ours prepares a download after each full upload) is not billed to the next scenario.
fn settle(pid: u32) {
    let deadline = Instant::now() + SETTLE_MAX;
    let mut last = cpu_secs(pid);
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
        let now = cpu_secs(pid);
        if now - last < 0.02 {
            return;
        }
        last = now;
    }
    eprintln!("  the server was still busy after {SETTLE_MAX:?}");
}

/// A closed loop of small syncs by some users.
#[derive(Clone, Debug, Default)]
struct LoopStats {
    syncs: usize,
    wall: f64,
    /// Latencies of whole syncs, seconds, sorted.
    latencies: Vec<f64>,
    server_cpu: f64,
    generator_cpu: f64,
    server_peak_mb: f64,
}

impl LoopStats {
    fn per_sec(&self) -> f64 {
        self.syncs as f64 / self.wall
    }
    fn p(&self, p: f64) -> f64 {
        percentile(&self.latencies, p) * 1000.0
    }
    fn server_ms_per_sync(&self) -> f64 {
        self.server_cpu / self.syncs as f64 * 1000.0
    }
    fn generator_ms_per_sync(&self) -> f64 {
        self.generator_cpu / self.syncs as f64 * 1000.0
    }
    /// Server plus generator CPU over the wall time, as a share of all cores.
    fn busy(&self) -> f64 {
        (self.server_cpu + self.generator_cpu) / self.wall / cores() * 100.0
    }
}

fn self_cpu() -> f64 {
    cpu_secs(std::process::id())
}

/// Each worker syncs in a loop until `stop` says so (checked before each sync), or it has
/// made `MAX_SYNCS_PER_USER`; returns each sync's start (seconds since `t0`) and latency.
fn sync_loop(
    server: &impl BenchServer,
    workers: &mut [Worker],
    t0: Instant,
    stop: &(dyn Fn() -> bool + Sync),
) -> (Vec<(f64, f64)>, LoopStats) {
    let pid = server.pid();
    reset_peak_rss(pid);
    let barrier = Barrier::new(workers.len() + 1);
    let (samples, stats) = thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|worker| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<Vec<(f64, f64)>, LoadError> {
                    barrier.wait();
                    let mut samples = Vec::new();
                    while !stop() && samples.len() < MAX_SYNCS_PER_USER {
                        let started = Instant::now();
                        worker.edit_and_sync()?;
                        samples.push((
                            started.duration_since(t0).as_secs_f64(),
                            started.elapsed().as_secs_f64(),
                        ));
                    }
                    Ok(samples)
                })
            })
            .collect();
        let (server_before, self_before) = (cpu_secs(pid), self_cpu());
        let started = Instant::now();
        barrier.wait();
        let mut samples = Vec::new();
        for handle in handles {
            match handle.join().expect("worker thread") {
                Ok(mine) => samples.extend(mine),
                Err(e) => fail(server, "small sync", &e),
            }
        }
        let stats = LoopStats {
            syncs: samples.len(),
            wall: started.elapsed().as_secs_f64(),
            latencies: Vec::new(),
            server_cpu: cpu_secs(pid) - server_before,
            generator_cpu: self_cpu() - self_before,
            server_peak_mb: status_mb(pid, "VmHWM"),
        };
        (samples, stats)
    });
    let mut latencies: Vec<f64> = samples.iter().map(|&(_, latency)| latency).collect();
    latencies.sort_by(f64::total_cmp);
    (samples, LoopStats { latencies, ..stats })
}

fn timed_loop(server: &impl BenchServer, workers: &mut [Worker], secs: u64) -> LoopStats {
    settle(server.pid());
    let before = server.metrics().map(|page| SyncCounts::from_page(&page));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let stats = sync_loop(server, workers, Instant::now(), &|| {
        Instant::now() >= deadline
    })
    .1;
    if let Some(before) = before {
        check_metrics(server, before, stats.syncs);
    }
    stats
}

/// What `/metrics` says about normal syncs: completed syncs and `finish` requests answered.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SyncCounts {
    syncs: f64,
    finishes: f64,
}

impl SyncCounts {
    fn from_page(page: &str) -> SyncCounts {
        SyncCounts {
            syncs: metric(
                page,
                r#"ankisyncd_sync_duration_seconds_count{kind="normal"}"#,
            ),
            finishes: metric(
                page,
                r#"ankisyncd_requests_total{method="sync/finish",status="200"}"#,
            ),
        }
    }
}

/// The server's own count of the loop's syncs must equal the generator's. A sync is counted
/// once its reply's last byte is sent, which can trail the generator's read of it by a moment:
/// polled, bounded.
fn check_metrics(server: &impl BenchServer, before: SyncCounts, syncs: usize) {
    let expected = syncs as f64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = server.metrics().unwrap_or_default();
        let now = SyncCounts::from_page(&page);
        let seen = SyncCounts {
            syncs: now.syncs - before.syncs,
            finishes: now.finishes - before.finishes,
        };
        if seen.syncs == expected && seen.finishes == expected {
            eprintln!("  /metrics agrees: {syncs} normal syncs, {syncs} finish requests");
            return;
        }
        if Instant::now() >= deadline {
            panic!("/metrics disagrees with the generator's {syncs} syncs: {seen:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Head-of-line: the workers' syncs alone, then while user `BIG_USER` full-uploads `large`
/// `uploads` times (only syncs that overlapped an upload count there).
#[derive(Clone, Debug, Default)]
struct HeadOfLine {
    idle: LoopStats,
    during: LoopStats,
    upload_walls: Vec<f64>,
    /// From the server's log, while the uploads ran.
    request_times: BTreeMap<String, Vec<f64>>,
}

fn head_of_line(
    server: &impl BenchServer,
    workers: &mut [Worker],
    large: &PreparedUpload,
    uploads: usize,
    idle_secs: u64,
) -> HeadOfLine {
    let idle = timed_loop(server, workers, idle_secs);
    let mut big = SyncClient::login(&server.endpoint(), BIG_USER, BIG_PASSWORD)
        .unwrap_or_else(|e| fail(server, "login of the uploader", &e));
    settle(server.pid());
    let mark = log_mark(server);
    let done = AtomicBool::new(false);
    // Bounds the loop even if the uploader hangs (it has its own timeout as well).
    let deadline = Instant::now() + Duration::from_secs(1200);
    let t0 = Instant::now();
    let (samples, stats, intervals) = thread::scope(|scope| {
        let (big, done) = (&mut big, &done);
        let uploader = scope.spawn(move || {
            let mut intervals = Vec::new();
            let mut result = Ok(());
            for _ in 0..uploads {
                let started = t0.elapsed().as_secs_f64();
                result = big.full_upload(large).map(drop);
                intervals.push((started, t0.elapsed().as_secs_f64()));
                if result.is_err() {
                    break;
                }
            }
            done.store(true, Ordering::SeqCst);
            result.map(|()| intervals)
        });
        let (samples, stats) = sync_loop(server, workers, t0, &|| {
            done.load(Ordering::SeqCst) || Instant::now() >= deadline
        });
        let intervals = uploader
            .join()
            .expect("uploader thread")
            .unwrap_or_else(|e| fail(server, "full upload of the large collection", &e));
        (samples, stats, intervals)
    });
    let mut overlapping: Vec<f64> = samples
        .iter()
        .filter(|&&(start, latency)| {
            intervals
                .iter()
                .any(|&(from, to)| start < to && start + latency > from)
        })
        .map(|&(_, latency)| latency)
        .collect();
    overlapping.sort_by(f64::total_cmp);
    HeadOfLine {
        idle,
        during: LoopStats {
            syncs: overlapping.len(),
            latencies: overlapping,
            ..stats
        },
        upload_walls: intervals.iter().map(|(from, to)| to - from).collect(),
        request_times: request_times(server, mark),
    }
}

/// Where each server's log is now, to read what it logged from here on.
fn log_mark(server: &impl BenchServer) -> usize {
    server.log().len()
}

/// Request times (ms) by sync method, from each request line the server logged since
/// `mark`: ours logs `method=sync/finish … ms=1.2`, the official server
/// `request{uri="/sync/finish"}: finished elap_ms=1` (whole milliseconds, colour codes
/// around the names).
fn request_times(server: &impl BenchServer, mark: usize) -> BTreeMap<String, Vec<f64>> {
    let log = server.log();
    let text = String::from_utf8_lossy(log.as_bytes().get(mark..).unwrap_or_default());
    let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines() {
        let line = strip_colours(line);
        let field = |name: &str| -> Option<String> {
            let start = line.find(name)? + name.len();
            let value = line[start..].split([' ', '}']).next()?;
            Some(value.trim_matches('"').to_string())
        };
        let (Some(path), Some(ms)) = (
            field(" method=").or_else(|| field("uri=")),
            field(" ms=").or_else(|| field(" elap_ms=")),
        ) else {
            continue;
        };
        let Ok(ms) = ms.parse::<f64>() else { continue };
        let method = path.rsplit('/').next().unwrap_or_default().to_string();
        times.entry(method).or_default().push(ms);
    }
    for values in times.values_mut() {
        values.sort_by(f64::total_cmp);
    }
    times
}

fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // An ANSI sequence: ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Setup: users log in, upload their collections and sync once

/// Logs in users `from..to` with `SETUP_THREADS` threads; each uploads `small` and makes
/// one small sync.
fn start_users(
    server: &impl BenchServer,
    small: &PreparedUpload,
    from: usize,
    to: usize,
) -> Vec<Worker> {
    let next = std::sync::atomic::AtomicUsize::new(from);
    let endpoint = server.endpoint();
    let mut workers: Vec<Worker> = thread::scope(|scope| {
        let handles: Vec<_> = (0..SETUP_THREADS)
            .map(|_| {
                let (next, endpoint) = (&next, &endpoint);
                scope.spawn(move || -> Result<Vec<Worker>, LoadError> {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        if index >= to {
                            return Ok(mine);
                        }
                        let mut client =
                            SyncClient::login(endpoint, &user_name(index), &password(index))?;
                        let collection = client.full_upload(small)?;
                        let mut worker = Worker {
                            index,
                            client,
                            collection,
                            round: 0,
                        };
                        worker.edit_and_sync()?;
                        mine.push(worker);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .expect("setup thread")
                    .unwrap_or_else(|e| fail(server, "setup of a user", &e))
            })
            .collect()
    });
    workers.sort_by_key(|worker| worker.index);
    workers
}

// ---------------------------------------------------------------------------------------
// Nothing changed, real client, on disk

/// `NOTHING_METAS` lone `meta` requests by one user whose device changed nothing.
fn nothing_changed(server: &impl BenchServer, worker: &mut Worker) -> LoopStats {
    let pid = server.pid();
    settle(pid);
    let deadline = Instant::now() + Duration::from_secs(NOTHING_SECS);
    let (server_before, self_before) = (cpu_secs(pid), self_cpu());
    let started = Instant::now();
    let mut latencies = Vec::new();
    while latencies.len() < NOTHING_METAS && Instant::now() < deadline {
        let t = Instant::now();
        if let Err(e) = worker.client.check_no_changes(&worker.collection) {
            fail(server, "nothing-changed meta", &e);
        }
        latencies.push(t.elapsed().as_secs_f64());
    }
    latencies.sort_by(f64::total_cmp);
    LoopStats {
        syncs: latencies.len(),
        wall: started.elapsed().as_secs_f64(),
        latencies,
        server_cpu: cpu_secs(pid) - server_before,
        generator_cpu: self_cpu() - self_before,
        server_peak_mb: status_mb(pid, "VmHWM"),
    }
}

/// One sync of the real client: wall time and the CPU of both processes.
#[derive(Clone, Copy, Debug, Default)]
struct ClientSync {
    wall: f64,
    client_cpu: f64,
    server_cpu: f64,
}

#[derive(Clone, Debug, Default)]
struct RealClient {
    edited: Vec<ClientSync>,
    nothing: Vec<ClientSync>,
}

fn median_ms(syncs: &[ClientSync], f: fn(&ClientSync) -> f64) -> f64 {
    median_of(syncs.iter().map(f).collect()) * 1000.0
}

/// CPU readings have the kernel's tick resolution (10 ms): per-sync figures are totals
/// over all the syncs, divided.
fn mean_ms(syncs: &[ClientSync], f: fn(&ClientSync) -> f64) -> f64 {
    syncs.iter().map(f).sum::<f64>() / syncs.len() as f64 * 1000.0
}

fn real_client_sync(server: &impl BenchServer, device: &mut Device) -> ClientSync {
    let (pid, client) = (server.pid(), device.pid());
    settle(pid);
    let (server_before, client_before) = (cpu_secs(pid), cpu_secs(client));
    let started = Instant::now();
    let outcome = device.sync();
    let wall = started.elapsed().as_secs_f64();
    match outcome {
        Ok(outcome) => assert_eq!(
            outcome.required,
            ChangesRequired::NoChanges,
            "the real client's sync did not complete"
        ),
        Err(e) => panic!(
            "the real client's sync failed: {e}\n--- server log ---\n{}",
            server.log()
        ),
    }
    ClientSync {
        wall,
        client_cpu: cpu_secs(client) - client_before,
        server_cpu: cpu_secs(pid) - server_before,
    }
}

/// The official client uploads the 1k collection, then makes `CLIENT_SYNCS` syncs of
/// `EDITS` edited notes each and `CLIENT_SYNCS` with nothing changed.
fn real_client(server: &impl BenchServer, dataset: &std::path::Path, notes: &[i64]) -> RealClient {
    let mut device = Device::new(ClientVersion::Current);
    device.set_timeout(DEVICE_TIMEOUT);
    device
        .login(CLIENT_USER, CLIENT_PASSWORD, &server.endpoint())
        .expect("real client login");
    assert_eq!(device.open_dataset(dataset), notes.len());
    let required = device.sync().expect("real client's first sync").required;
    assert_eq!(required, ChangesRequired::FullUpload);
    device.full_upload().expect("real client's full upload");
    let mut result = RealClient::default();
    for round in 0..CLIENT_SYNCS {
        for k in 0..EDITS {
            let nid = notes[(round * EDITS + k) % notes.len()];
            device.edit_note(nid, "Front", &format!("real client edit {round}.{k}"));
        }
        result.edited.push(real_client_sync(server, &mut device));
    }
    for _ in 0..CLIENT_SYNCS {
        result.nothing.push(real_client_sync(server, &mut device));
    }
    result
}

/// What one full upload of `notes` notes adds to a fresh server's data.
#[derive(Clone, Copy, Debug, Default)]
struct Disk {
    notes: usize,
    /// The fresh server's RSS before the upload, with its one user.
    idle_rss_mb: f64,
    file_bytes: u64,
    data_growth: u64,
    cache_bytes: u64,
}

fn on_disk<S: BenchServer>(
    start: &dyn Fn(ServerOptions) -> S,
    upload: &PreparedUpload,
    notes: usize,
    builds_download: bool,
) -> Disk {
    let (user, pass) = ("disk", "disk-pass");
    let mut server = start(options(vec![(user.into(), pass.into())]));
    let idle_rss_mb = status_mb(server.pid(), "VmRSS");
    let before = server.data_bytes();
    let mut client = SyncClient::login(&server.endpoint(), user, pass)
        .unwrap_or_else(|e| fail(&server, "login", &e));
    client
        .full_upload(upload)
        .unwrap_or_else(|e| fail(&server, "full upload", &e));
    if builds_download {
        // Our server prepares the download right after an upload; wait for it (bounded),
        // so that the cache is measured whole.
        let deadline = Instant::now() + CACHE_WAIT;
        while !server.log().contains("full download built") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
    }
    let disk = Disk {
        notes,
        idle_rss_mb,
        file_bytes: upload.file_bytes,
        data_growth: server.data_bytes().saturating_sub(before),
        cache_bytes: server.cache_bytes(),
    };
    server.stop();
    disk
}

// ---------------------------------------------------------------------------------------
// One server, every scenario

struct Data {
    small_path: std::path::PathBuf,
    small: PreparedUpload,
    medium: PreparedUpload,
    large: PreparedUpload,
}

impl Data {
    /// (notes, upload) for the on-disk scenario.
    fn disk(&self) -> [(usize, &PreparedUpload); 3] {
        [
            (SMALL_NOTES, &self.small),
            (MEDIUM_NOTES, &self.medium),
            (LARGE_NOTES, &self.large),
        ]
    }
}

struct Settings {
    loop_secs: u64,
    hol_uploads: usize,
    hol_idle_secs: u64,
}

#[derive(Clone, Debug, Default)]
struct ServerRun {
    idle_rss_mb: f64,
    rss_after_users_mb: f64,
    end_rss_mb: f64,
    loops: Vec<(usize, LoopStats)>,
    /// From the server's log, during the 32-user loop.
    request_times_32: BTreeMap<String, Vec<f64>>,
    nothing: LoopStats,
    client: RealClient,
    hol: HeadOfLine,
    disk: Vec<Disk>,
}

fn run<S: BenchServer>(
    kind: &Kind,
    start: &dyn Fn(ServerOptions) -> S,
    data: &Data,
    settings: &Settings,
) -> ServerRun {
    let name = kind.name;
    let mut result = ServerRun::default();
    eprintln!("{name}: starting with {} users ...", LOOP_USERS + 2);
    let mut server = start(load_options(kind.hashed_passwords));
    let pid = server.pid();
    result.idle_rss_mb = status_mb(pid, "VmRSS");

    eprintln!("{name}: {RSS_USERS} users log in, upload {SMALL_NOTES} notes and sync once ...");
    let mut workers = start_users(&server, &data.small, 0, RSS_USERS);
    result.rss_after_users_mb = status_mb(pid, "VmRSS");
    workers.extend(start_users(&server, &data.small, RSS_USERS, LOOP_USERS));

    for users in USER_COUNTS {
        eprintln!(
            "{name}: {users} users syncing for {} s ...",
            settings.loop_secs
        );
        let mark = log_mark(&server);
        let stats = timed_loop(&server, &mut workers[..users], settings.loop_secs);
        if users == 32 {
            result.request_times_32 = request_times(&server, mark);
        }
        eprintln!(
            "  {} syncs, {:.1}/s, p99 {:.1} ms",
            stats.syncs,
            stats.per_sec(),
            stats.p(0.99)
        );
        result.loops.push((users, stats));
    }

    eprintln!("{name}: nothing-changed meta ...");
    result.nothing = nothing_changed(&server, &mut workers[0]);

    eprintln!("{name}: the real client ...");
    let note_ids: Vec<i64> = data.small.collection.notes.iter().map(|n| n.id).collect();
    result.client = real_client(&server, &data.small_path, &note_ids);

    eprintln!(
        "{name}: head-of-line, {HOL_USERS} users, {} uploads of {LARGE_NOTES} notes ...",
        settings.hol_uploads
    );
    result.hol = head_of_line(
        &server,
        &mut workers[..HOL_USERS],
        &data.large,
        settings.hol_uploads,
        settings.hol_idle_secs,
    );
    result.end_rss_mb = status_mb(pid, "VmRSS");
    drop(workers);
    server.stop();

    for (notes, upload) in data.disk() {
        eprintln!("{name}: on disk, {notes} notes ...");
        result
            .disk
            .push(on_disk(start, upload, notes, kind.builds_download));
    }
    result
}

// ---------------------------------------------------------------------------------------
// Floors: what the machine allows any server, measured in this process

/// Repetitions of each floor measurement; the median is reported.
const FLOOR_RUNS: usize = 200;
/// Requests of one small sync (`meta` … `finish`) and a typical size of each, compressed.
const SYNC_REQUESTS: usize = 7;
const FLOOR_REQUEST_BYTES: usize = 600;
const FLOOR_REPLY_BYTES: usize = 150;
/// Bound on each floor socket operation.
const FLOOR_TIMEOUT: Duration = Duration::from_secs(10);

struct Floors {
    /// Writing one 4 KiB page at a random place in a 64 MiB file and `fdatasync`: what one
    /// durable commit costs at least.
    page_sync_ms: f64,
    /// `SYNC_REQUESTS` request/reply exchanges on one kept-alive loopback connection with
    /// no work behind them: the network part of one small sync.
    round_trips_ms: f64,
}

fn floors(dir: &std::path::Path) -> Floors {
    Floors {
        page_sync_ms: page_sync_floor(dir),
        round_trips_ms: round_trip_floor(),
    }
}

fn page_sync_floor(dir: &std::path::Path) -> f64 {
    use std::os::unix::fs::FileExt;
    const PAGES: u64 = 16 * 1024;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("page-sync-floor"))
        .expect("create the fsync floor file");
    file.set_len(PAGES * 4096)
        .expect("size the fsync floor file");
    file.sync_all().expect("sync the fsync floor file");
    let page = [7u8; 4096];
    let times: Vec<f64> = (0..FLOOR_RUNS as u64)
        .map(|i| {
            let started = Instant::now();
            file.write_all_at(&page, (i * 7919 % PAGES) * 4096)
                .expect("write a page");
            file.sync_data().expect("fdatasync");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    median_of(times)
}

fn round_trip_floor() -> f64 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    let echo = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(FLOOR_TIMEOUT))
            .expect("timeout");
        let mut request = [0u8; FLOOR_REQUEST_BYTES];
        let reply = [1u8; FLOOR_REPLY_BYTES];
        while stream.read_exact(&mut request).is_ok() {
            if stream.write_all(&reply).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect_timeout(&address, FLOOR_TIMEOUT).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(FLOOR_TIMEOUT))
        .expect("timeout");
    let request = [2u8; FLOOR_REQUEST_BYTES];
    let mut reply = [0u8; FLOOR_REPLY_BYTES];
    let times: Vec<f64> = (0..FLOOR_RUNS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..SYNC_REQUESTS {
                stream.write_all(&request).expect("write");
                stream.read_exact(&mut reply).expect("read");
            }
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    drop(stream);
    echo.join().expect("echo thread");
    median_of(times)
}

// ---------------------------------------------------------------------------------------
// Report

fn ratio(ours: f64, official: f64) -> f64 {
    if official > 0.0 {
        ours / official
    } else {
        f64::NAN
    }
}

struct Table(String);

impl Table {
    fn new() -> Table {
        let mut out = String::new();
        writeln!(out, "| metric | official | ours | ratio (ours/official) |").unwrap();
        writeln!(out, "|---|---:|---:|---:|").unwrap();
        Table(out)
    }

    fn row(&mut self, metric: &str, digits: usize, official: f64, ours: f64) {
        writeln!(
            self.0,
            "| {metric} | {official:.digits$} | {ours:.digits$} | {:.2}× |",
            ratio(ours, official)
        )
        .unwrap();
    }

    fn ours_only(&mut self, metric: &str, digits: usize, ours: f64) {
        writeln!(self.0, "| {metric} | — | {ours:.digits$} | — |").unwrap();
    }
}

const MB: f64 = 1e6;

fn table(official: &ServerRun, ours: &ServerRun) -> String {
    let mut t = Table::new();
    for ((users, o), (_, u)) in official.loops.iter().zip(&ours.loops) {
        let label = format!("{users} user{}", if *users == 1 { "" } else { "s" });
        t.row(&format!("{label}: syncs/s"), 1, o.per_sec(), u.per_sec());
        for (name, p) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            t.row(&format!("{label}: {name} sync (ms)"), 1, o.p(p), u.p(p));
        }
        t.row(
            &format!("{label}: server CPU per sync (ms)"),
            2,
            o.server_ms_per_sync(),
            u.server_ms_per_sync(),
        );
        t.row(
            &format!("{label}: generator CPU per sync (ms)"),
            2,
            o.generator_ms_per_sync(),
            u.generator_ms_per_sync(),
        );
        t.row(
            &format!(
                "{label}: CPU busy, server + generator (% of {} cores)",
                cores()
            ),
            0,
            o.busy(),
            u.busy(),
        );
        t.row(
            &format!("{label}: server peak RSS (MB)"),
            1,
            o.server_peak_mb,
            u.server_peak_mb,
        );
    }
    let (o, u) = (&official.nothing, &ours.nothing);
    t.row("nothing changed: p50 meta (ms)", 2, o.p(0.5), u.p(0.5));
    t.row("nothing changed: p99 meta (ms)", 2, o.p(0.99), u.p(0.99));
    t.row(
        "nothing changed: server CPU per meta (ms)",
        3,
        o.server_ms_per_sync(),
        u.server_ms_per_sync(),
    );
    let (o, u) = (&official.client, &ours.client);
    for (what, os, us) in [
        ("real client, 20 edits", &o.edited, &u.edited),
        ("real client, nothing changed", &o.nothing, &u.nothing),
    ] {
        t.row(
            &format!("{what}: sync wall, median (ms)"),
            1,
            median_ms(os, |s| s.wall),
            median_ms(us, |s| s.wall),
        );
        t.row(
            &format!("{what}: client CPU per sync (ms)"),
            1,
            mean_ms(os, |s| s.client_cpu),
            mean_ms(us, |s| s.client_cpu),
        );
        t.row(
            &format!("{what}: server CPU per sync (ms)"),
            1,
            mean_ms(os, |s| s.server_cpu),
            mean_ms(us, |s| s.server_cpu),
        );
    }
    let (o, u) = (&official.hol, &ours.hol);
    t.row(
        &format!("head-of-line: {HOL_USERS} users' p99, idle (ms)"),
        1,
        o.idle.p(0.99),
        u.idle.p(0.99),
    );
    t.row(
        &format!("head-of-line: {HOL_USERS} users' p99, during a {LARGE_NOTES}-note upload (ms)"),
        1,
        o.during.p(0.99),
        u.during.p(0.99),
    );
    t.row(
        "head-of-line: syncs overlapping the uploads",
        0,
        o.during.syncs as f64,
        u.during.syncs as f64,
    );
    t.row(
        "head-of-line: p99 during / p99 idle",
        2,
        ratio(o.during.p(0.99), o.idle.p(0.99)),
        ratio(u.during.p(0.99), u.idle.p(0.99)),
    );
    t.row(
        &format!("head-of-line: {LARGE_NOTES}-note upload wall, median (s)"),
        2,
        median_of(o.upload_walls.clone()),
        median_of(u.upload_walls.clone()),
    );
    if let (Some(o), Some(u)) = (official.disk.first(), ours.disk.first()) {
        t.row(
            "server RSS at start, 1 user (MB)",
            1,
            o.idle_rss_mb,
            u.idle_rss_mb,
        );
    }
    t.row(
        &format!("server RSS at start, {} users (MB)", LOOP_USERS + 2),
        1,
        official.idle_rss_mb,
        ours.idle_rss_mb,
    );
    t.row(
        &format!("server RSS after {RSS_USERS} users synced once (MB)"),
        1,
        official.rss_after_users_mb,
        ours.rss_after_users_mb,
    );
    t.row(
        "server RSS at the end (MB)",
        1,
        official.end_rss_mb,
        ours.end_rss_mb,
    );
    for (o, u) in official.disk.iter().zip(&ours.disk) {
        let label = format!("{}k", o.notes / 1000);
        t.row(
            &format!("{label}: SQLite file uploaded (MB)"),
            1,
            o.file_bytes as f64 / MB,
            u.file_bytes as f64 / MB,
        );
        t.row(
            &format!("{label}: data growth on disk (MB)"),
            1,
            o.data_growth as f64 / MB,
            u.data_growth as f64 / MB,
        );
        t.row(
            &format!("{label}: data growth / SQLite file"),
            2,
            o.data_growth as f64 / o.file_bytes as f64,
            u.data_growth as f64 / u.file_bytes as f64,
        );
        t.ours_only(
            &format!("{label}: prepared download kept in the scratch folder (MB)"),
            1,
            u.cache_bytes as f64 / MB,
        );
    }
    t.0
}

/// Per-method request times from the servers' logs: which step of a sync is slow.
fn method_table(
    official: &BTreeMap<String, Vec<f64>>,
    ours: &BTreeMap<String, Vec<f64>>,
) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "| method | official n | p50 | p99 | max (ms) | ours n | p50 | p99 | max (ms) |"
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    let methods: std::collections::BTreeSet<&String> = official.keys().chain(ours.keys()).collect();
    for method in methods {
        let cells = |times: Option<&Vec<f64>>| match times {
            Some(t) => format!(
                "{} | {:.1} | {:.1} | {:.1}",
                t.len(),
                percentile(t, 0.5),
                percentile(t, 0.99),
                t.last().copied().unwrap_or(f64::NAN)
            ),
            None => "0 | — | — | —".to_string(),
        };
        writeln!(
            out,
            "| {method} | {} | {} |",
            cells(official.get(method)),
            cells(ours.get(method))
        )
        .unwrap();
    }
    out
}

fn floor_table(floors: &Floors) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "| physical limit (in this process, median of {FLOOR_RUNS}) | ms |"
    )
    .unwrap();
    writeln!(out, "|---|---:|").unwrap();
    writeln!(
        out,
        "| write one 4 KiB page of a 64 MiB file + fdatasync (one durable commit) | {:.2} |",
        floors.page_sync_ms
    )
    .unwrap();
    writeln!(
        out,
        "| {SYNC_REQUESTS} loopback exchanges of {FLOOR_REQUEST_BYTES} / {FLOOR_REPLY_BYTES} bytes \
         (the network part of one small sync) | {:.2} |",
        floors.round_trips_ms
    )
    .unwrap();
    out
}

fn targets(official: &ServerRun, ours: &ServerRun) -> String {
    let mut out = String::new();
    let check = |out: &mut String, what: &str, value: f64, met: bool, limit: &str| {
        let verdict = if met { "met" } else { "MISSED" };
        writeln!(out, "- {what}: {value:.2} (target {limit}) — {verdict}").unwrap();
    };
    if let (Some((_, o)), Some((_, u))) = (
        official.loops.iter().find(|(n, _)| *n == 32),
        ours.loops.iter().find(|(n, _)| *n == 32),
    ) {
        let cpu = ratio(u.server_ms_per_sync(), o.server_ms_per_sync());
        check(
            &mut out,
            "32 users: server CPU per sync, ours/official",
            cpu,
            cpu <= 1.0 / 3.0,
            "≤ 0.33",
        );
        let p99 = ratio(u.p(0.99), o.p(0.99));
        check(
            &mut out,
            "32 users: p99 sync latency, ours/official",
            p99,
            p99 <= 1.0 / 3.0,
            "≤ 0.33",
        );
        let throughput = ratio(u.per_sec(), o.per_sec());
        check(
            &mut out,
            "32 users: syncs/s, ours/official",
            throughput,
            throughput >= 3.0,
            "≥ 3",
        );
        writeln!(
            out,
            "  (against ours the generator used {:.2} ms of CPU per sync beside the server's \
             {:.2} ms, with server + generator at {:.0} % of the {} cores: the generator's \
             share of the CPU bounds our throughput at {:.1}× its current value)",
            u.generator_ms_per_sync(),
            u.server_ms_per_sync(),
            u.busy(),
            cores(),
            (u.generator_ms_per_sync() + u.server_ms_per_sync()) / u.generator_ms_per_sync()
        )
        .unwrap();
    }
    let hol = ratio(ours.hol.during.p(0.99), ours.hol.idle.p(0.99));
    check(
        &mut out,
        "head-of-line: our p99 during the upload / idle",
        hol,
        hol <= 2.0,
        "≤ 2",
    );
    if let Some(one) = ours.disk.first() {
        check(
            &mut out,
            "our idle RSS at start, 1 user (MB)",
            one.idle_rss_mb,
            one.idle_rss_mb <= 10.0,
            "≤ 10",
        );
    }
    check(
        &mut out,
        &format!("our idle RSS at start, {} users (MB)", LOOP_USERS + 2),
        ours.idle_rss_mb,
        ours.idle_rss_mb <= 10.0,
        "≤ 10",
    );
    out
}

/// `LOAD_PROFILE=SECS`: only our server, 32 users syncing for SECS seconds, with the
/// server's PID printed first so a profiler can attach (`perf record -g -p PID`); no table.
fn profile(secs: u64) {
    let small = prepare_upload(
        &dataset(SMALL_NOTES),
        TempDir::new().expect("scratch").path(),
    );
    let server = Server::start(load_options(false));
    let mut workers = start_users(&server, &small, 0, 32);
    settle(server.pid());
    eprintln!(
        "PID {} — 32 users syncing for {secs} s starting in 3 s",
        server.pid()
    );
    thread::sleep(Duration::from_secs(3));
    let stats = timed_loop(&server, &mut workers, secs);
    eprintln!(
        "{} syncs, {:.1}/s, p99 {:.1} ms, server CPU per sync {:.2} ms, generator {:.2} ms",
        stats.syncs,
        stats.per_sec(),
        stats.p(0.99),
        stats.server_ms_per_sync(),
        stats.generator_ms_per_sync()
    );
}

/// `LOAD_PROFILE_HOL=UPLOADS`: only our server, the head-of-line scenario with UPLOADS
/// uploads of the large collection (PID printed first, as for `LOAD_PROFILE`); prints the
/// idle and during p99 and the request times of the steps that waited.
fn profile_head_of_line(uploads: usize) {
    let scratch = TempDir::new().expect("scratch");
    let small = prepare_upload(&dataset(SMALL_NOTES), scratch.path());
    let large_dir = scratch.path().join("large");
    std::fs::create_dir_all(&large_dir).expect("create a preparation directory");
    let large = prepare_upload(&dataset(LARGE_NOTES), &large_dir);
    let server = Server::start(load_options(false));
    let mut workers = start_users(&server, &small, 0, HOL_USERS);
    eprintln!("PID {} — head-of-line, {uploads} uploads", server.pid());
    let hol = head_of_line(&server, &mut workers, &large, uploads, 10);
    eprintln!(
        "idle p99 {:.1} ms, during p99 {:.1} ms ({:.2}x), upload walls {:?} s",
        hol.idle.p(0.99),
        hol.during.p(0.99),
        hol.during.p(0.99) / hol.idle.p(0.99),
        hol.upload_walls
    );
    eprintln!("{}", method_table(&BTreeMap::new(), &hol.request_times));
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments mean nothing here and are ignored.
    announce_our_server();
    if let Ok(secs) = std::env::var("LOAD_PROFILE") {
        profile(secs.parse().expect("LOAD_PROFILE is a number of seconds"));
        return;
    }
    if let Ok(uploads) = std::env::var("LOAD_PROFILE_HOL") {
        profile_head_of_line(
            uploads
                .parse()
                .expect("LOAD_PROFILE_HOL is a number of uploads"),
        );
        return;
    }
    let loop_secs = positive_env("LOAD_SECS", 15);
    let settings = Settings {
        loop_secs,
        hol_uploads: positive_env("LOAD_HOL_UPLOADS", 2) as usize,
        hol_idle_secs: loop_secs.min(10),
    };
    eprintln!("load average before: {}", load_average());

    let scratch = TempDir::new().expect("scratch directory");
    let prepare = |notes: usize| {
        let dir = scratch.path().join(notes.to_string());
        std::fs::create_dir_all(&dir).expect("create a preparation directory");
        eprintln!("preparing the {notes}-note upload ...");
        prepare_upload(&dataset(notes), &dir)
    };
    let small_path = dataset(SMALL_NOTES);
    let data = Data {
        small: prepare(SMALL_NOTES),
        medium: prepare(MEDIUM_NOTES),
        large: prepare(LARGE_NOTES),
        small_path,
    };

    eprintln!("physical limits ...");
    let floors = floors(scratch.path());

    let started = Instant::now();
    let official = run(
        &Kind {
            name: "official",
            hashed_passwords: true,
            builds_download: false,
        },
        &OfficialServer::start,
        &data,
        &settings,
    );
    // Plain passwords, as most setups give them: ours hashes them (argon2id) at startup.
    let ours = run(
        &Kind {
            name: "ankisyncd",
            hashed_passwords: false,
            builds_download: true,
        },
        &Server::start,
        &data,
        &settings,
    );

    println!("load average after: {}", load_average());
    println!(
        "One run per server, {} s per user count, {} minutes in all.\n",
        settings.loop_secs,
        (started.elapsed().as_secs_f64() / 60.0).round()
    );
    println!("{}", table(&official, &ours));
    println!("{}", floor_table(&floors));
    println!("Request times by method (server logs), 32 users syncing:\n");
    println!(
        "{}",
        method_table(&official.request_times_32, &ours.request_times_32)
    );
    println!("Request times by method (server logs), head-of-line, during the uploads:\n");
    println!(
        "{}",
        method_table(&official.hol.request_times, &ours.hol.request_times)
    );
    println!("Targets:");
    print!("{}", targets(&official, &ours));
}
