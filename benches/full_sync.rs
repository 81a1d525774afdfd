//! Full-sync benchmark: the official sync server against ours, driven by the real client.
//!
//! `cargo bench --bench full_sync` runs, for each server (`python -m anki.syncserver` from
//! the pinned client venv, then `ankisyncd` as built by the bench profile, i.e. release) and
//! each collection size (20k and 100k generated notes), one fresh server on loopback and
//! three devices:
//!
//! 1. A opens the generated collection and does a full upload;
//! 2. B, a new device, does a full download (our server builds the file);
//! 3. C, another new device, downloads again (our server serves the file it kept).
//!
//! Each operation is timed from here (wall), and the CPU time (user + system) of the server
//! process and of the client's process is read from `/proc` before and after it. The server's
//! resident memory is read right after startup (idle), as the peak of each operation
//! (`VmHWM`, reset before each through `clear_refs`), and once more at the end (what it
//! keeps). A fresh server per size keeps the peak of one size from hiding the next.
//! Downloads are checked against the upload (note and card counts), and our second download
//! must have come from the cache (our server's log says so).
//!
//! Every server and size runs `FULL_SYNC_ROUNDS` times (default 3), the servers alternating,
//! and each metric is the median of its rounds. `TEST_ANKISYNCD_BIN=path` benchmarks
//! another build of our server in place of this crate's (the harness reads it).
//!
//! Then, as a floor for what any server could do with the same bytes, the 100k collection
//! file is compressed with zstd and copied over a loopback TCP socket in this process.
//!
//! Prints one Markdown table (paste it into `benches/README.md`), the phase lines of our
//! server's log, and whether each target of the full-sync issue is met.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::loadgen::dataset;
use common::{
    announce_our_server, cpu_secs, load_average, median_of, metric, reset_peak_rss, rounds,
    status_mb, BenchServer,
};

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use support::{
    ChangesRequired, ClientVersion, Device, OfficialServer, Server, ServerOptions, SyncServer,
};

const USER: &str = "bench";
const PASSWORD: &str = "bench";
const SIZES: [usize; 2] = [20_000, 100_000];
/// The harness's 120 s per device command is tight for 100k notes against the official
/// server on a small machine; a hung transfer still fails, just later.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(600);
/// Repetitions of the in-process floor measurements; the best run is reported, as they are
/// short enough for one scheduler hiccup to double them.
const FLOOR_RUNS: usize = 3;
/// Bound on the loopback copy (a few hundred MB/s at the very least).
const COPY_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Measurements

/// One timed operation.
#[derive(Clone, Copy, Debug, Default)]
struct Op {
    wall: f64,
    server_cpu: f64,
    client_cpu: f64,
    /// The server's peak RSS during this operation (since the previous operation if the
    /// kernel refused to reset the mark, see [`reset_peak_rss`]).
    server_peak_mb: f64,
}

fn timed(server_pid: u32, client_pid: u32, op: impl FnOnce()) -> Op {
    reset_peak_rss(server_pid);
    let (server_before, client_before) = (cpu_secs(server_pid), cpu_secs(client_pid));
    let started = Instant::now();
    op();
    let wall = started.elapsed().as_secs_f64();
    Op {
        wall,
        server_cpu: cpu_secs(server_pid) - server_before,
        client_cpu: cpu_secs(client_pid) - client_before,
        server_peak_mb: status_mb(server_pid, "VmHWM"),
    }
}

/// Everything measured for one server and one size.
#[derive(Clone, Debug, Default)]
struct Run {
    upload: Op,
    download_first: Op,
    download_cached: Op,
    idle_rss_mb: f64,
    peak_rss_mb: f64,
    /// RSS after the three operations: what the server keeps, as opposed to what it needed
    /// only while working.
    end_rss_mb: f64,
    /// The server's log lines about full-sync phases and requests, for the breakdown.
    log_lines: Vec<String>,
}

fn device(server: &impl SyncServer) -> Device {
    let mut device = Device::new(ClientVersion::Current);
    device.set_timeout(DEVICE_TIMEOUT);
    device.login(USER, PASSWORD, &server.endpoint()).unwrap();
    device
}

/// A normal sync first, as the client does before it offers a one-way sync: not timed, but
/// it checks that the server asks for the expected direction.
fn expect_required(device: &mut Device, expected: ChangesRequired) {
    let required = device.sync().unwrap().required;
    assert_eq!(required, expected, "before a full sync");
}

fn downloaded_by_a_new_device(
    server: &impl BenchServer,
    expected: (usize, usize),
    what: &str,
) -> Op {
    let mut device = device(server);
    expect_required(&mut device, ChangesRequired::FullDownload);
    let client = device.pid();
    let op = timed(server.pid(), client, || device.full_download().unwrap());
    let got = (device.note_count(), device.card_count());
    assert_eq!(got, expected, "{what}: (notes, cards) after the download");
    op
}

fn run(server: &mut impl BenchServer, dataset: &Path, notes: usize) -> Run {
    let pid = server.pid();
    eprintln!("  server pid {pid}");
    let idle_rss_mb = status_mb(pid, "VmRSS");
    if !reset_peak_rss(pid) {
        eprintln!("  cannot reset VmHWM: per-operation peaks are cumulative");
    }

    let mut a = device(server);
    assert_eq!(a.open_dataset(dataset), notes);
    let expected = (notes, a.card_count());
    expect_required(&mut a, ChangesRequired::FullUpload);
    let client = a.pid();
    let upload = timed(pid, client, || a.full_upload().unwrap());

    let download_first = downloaded_by_a_new_device(server, expected, "first download");
    let download_cached = downloaded_by_a_new_device(server, expected, "second download");
    // With per-operation resets, the process-lifetime peak is the largest of the
    // operations' (plus the idle RSS); without them the last reading is that peak anyway.
    let peak_rss_mb = [upload, download_first, download_cached]
        .iter()
        .map(|op| op.server_peak_mb)
        .fold(idle_rss_mb.max(status_mb(pid, "VmHWM")), f64::max);
    let end_rss_mb = status_mb(pid, "VmRSS");
    if let Some(page) = server.metrics() {
        // The server's own count of what this run did: one upload, two downloads.
        for (series, expected) in [
            (r#"ankisyncd_full_syncs_total{direction="upload"}"#, 1.0),
            (r#"ankisyncd_full_syncs_total{direction="download"}"#, 2.0),
            (
                r#"ankisyncd_requests_total{method="sync/upload",status="200"}"#,
                1.0,
            ),
            (
                r#"ankisyncd_requests_total{method="sync/download",status="200"}"#,
                2.0,
            ),
            (
                r#"ankisyncd_requests_total{method="sync/hostKey",status="200"}"#,
                3.0,
            ),
        ] {
            assert_eq!(metric(&page, series), expected, "/metrics: {series}");
        }
        eprintln!(
            "  /metrics agrees: 1 upload, 2 downloads; {:.1} MB received for the upload, {:.1} MB sent for the downloads",
            metric(&page, r#"ankisyncd_received_bytes_total{method="sync/upload"}"#) / 1e6,
            metric(&page, r#"ankisyncd_sent_bytes_total{method="sync/download"}"#) / 1e6,
        );
    }
    let log_lines = server
        .log()
        .lines()
        .filter(|line| {
            [
                "full upload",
                "full download",
                "method=sync/upload",
                "method=sync/download",
            ]
            .iter()
            .any(|needle| line.contains(needle))
        })
        .map(str::to_owned)
        .collect();
    server.stop();
    Run {
        upload,
        download_first,
        download_cached,
        idle_rss_mb,
        peak_rss_mb,
        end_rss_mb,
        log_lines,
    }
}

// ---------------------------------------------------------------------------------------
// Floors: what the bytes alone cost, in this process

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best: Option<(f64, T)> = None;
    for _ in 0..runs {
        let started = Instant::now();
        let out = f();
        let secs = started.elapsed().as_secs_f64();
        if best.as_ref().is_none_or(|(b, _)| secs < *b) {
            best = Some((secs, out));
        }
    }
    best.expect("at least one run")
}

/// Seconds to send `bytes` through a loopback TCP connection to a thread that reads them.
fn loopback_copy(bytes: &[u8]) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    let started = Instant::now();
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(COPY_TIMEOUT))
            .expect("timeout");
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match stream.read(&mut buf).expect("read") {
                0 => return total,
                n => total += n,
            }
        }
    });
    let mut stream = TcpStream::connect_timeout(&address, COPY_TIMEOUT).expect("connect");
    stream
        .set_write_timeout(Some(COPY_TIMEOUT))
        .expect("timeout");
    stream.write_all(bytes).expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let received = reader.join().expect("reader thread");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(received, bytes.len());
    secs
}

struct Floors {
    mb: f64,
    rows: Vec<(String, f64)>,
}

fn floors(path: &Path) -> Floors {
    let bytes = fs::read(path).expect("read the dataset");
    let mb = bytes.len() as f64 / 1e6;
    let mut rows = Vec::new();
    let mut level1 = Vec::new();
    for level in [1, 3] {
        let (secs, compressed) = best_of(FLOOR_RUNS, || {
            zstd::bulk::compress(&bytes, level).expect("zstd compress")
        });
        rows.push((
            format!(
                "zstd level {level} compress ({:.1} MB → {:.1} MB)",
                mb,
                compressed.len() as f64 / 1e6
            ),
            secs,
        ));
        if level == 1 {
            level1 = compressed;
        }
    }
    // What a server receiving an upload must do at least once.
    let (secs, _) = best_of(FLOOR_RUNS, || {
        zstd::bulk::decompress(&level1, bytes.len()).expect("zstd decompress")
    });
    rows.push(("zstd level 1 decompress".to_string(), secs));
    let (secs, ()) = best_of(FLOOR_RUNS, || {
        loopback_copy(&bytes);
    });
    rows.push((format!("loopback TCP copy of {mb:.1} MB"), secs));
    let (secs, ()) = best_of(FLOOR_RUNS, || {
        loopback_copy(&level1);
    });
    rows.push((
        format!(
            "loopback TCP copy of the level-1 output ({:.1} MB)",
            level1.len() as f64 / 1e6
        ),
        secs,
    ));
    Floors { mb, rows }
}

// ---------------------------------------------------------------------------------------
// Report

fn size_label(notes: usize) -> String {
    format!("{}k", notes / 1000)
}

fn ratio(ours: f64, official: f64) -> f64 {
    if official > 0.0 {
        ours / official
    } else {
        f64::NAN
    }
}

fn table(sizes: &[(usize, Run, Run)], floors: &Floors) -> String {
    let mut out = String::new();
    writeln!(out, "| metric | official | ours | ratio (ours/official) |").unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for (notes, official, ours) in sizes {
        let label = size_label(*notes);
        let mut row = |metric: &str, unit: &str, official: f64, ours: f64| {
            let digits = if unit == "MB" { 1 } else { 2 };
            writeln!(
                out,
                "| {label} {metric} ({unit}) | {official:.digits$} | {ours:.digits$} | {:.2}× |",
                ratio(ours, official)
            )
            .unwrap();
        };
        for (name, o, u) in [
            ("upload", official.upload, ours.upload),
            (
                "download, first",
                official.download_first,
                ours.download_first,
            ),
            (
                "download, cached",
                official.download_cached,
                ours.download_cached,
            ),
        ] {
            row(&format!("{name}: wall"), "s", o.wall, u.wall);
            row(
                &format!("{name}: server CPU"),
                "s",
                o.server_cpu,
                u.server_cpu,
            );
            row(
                &format!("{name}: client CPU"),
                "s",
                o.client_cpu,
                u.client_cpu,
            );
        }
        for (name, o, u) in [
            ("upload", official.upload, ours.upload),
            (
                "download, first",
                official.download_first,
                ours.download_first,
            ),
            (
                "download, cached",
                official.download_cached,
                ours.download_cached,
            ),
        ] {
            row(
                &format!("{name}: server peak RSS"),
                "MB",
                o.server_peak_mb,
                u.server_peak_mb,
            );
        }
        row(
            "server peak RSS",
            "MB",
            official.peak_rss_mb,
            ours.peak_rss_mb,
        );
        row(
            "server idle RSS",
            "MB",
            official.idle_rss_mb,
            ours.idle_rss_mb,
        );
        row(
            "server RSS after the downloads",
            "MB",
            official.end_rss_mb,
            ours.end_rss_mb,
        );
    }
    writeln!(out).unwrap();
    writeln!(
        out,
        "| physical limit (100k collection file, {:.1} MB, in-process, best of {FLOOR_RUNS}) | s |",
        floors.mb
    )
    .unwrap();
    writeln!(out, "|---|---:|").unwrap();
    for (name, secs) in &floors.rows {
        writeln!(out, "| {name} | {secs:.3} |").unwrap();
    }
    out
}

fn targets(sizes: &[(usize, Run, Run)]) -> String {
    let mut out = String::new();
    let mut check = |what: String, value: f64, limit: f64| {
        let verdict = if value <= limit { "met" } else { "MISSED" };
        writeln!(
            out,
            "- {what}: {value:.2} (target ≤ {limit:.2}) — {verdict}"
        )
        .unwrap();
    };
    for (notes, official, ours) in sizes {
        let label = size_label(*notes);
        let r = |f: fn(&Run) -> f64| ratio(f(ours), f(official));
        check(
            format!("{label} upload wall, ours/official"),
            r(|run| run.upload.wall),
            0.75,
        );
        check(
            format!("{label} upload server CPU, ours/official"),
            r(|run| run.upload.server_cpu),
            0.5,
        );
        check(
            format!("{label} first download wall, ours/official"),
            r(|run| run.download_first.wall),
            1.0,
        );
        check(
            format!("{label} cached download wall, ours/official"),
            r(|run| run.download_cached.wall),
            0.8,
        );
        check(
            format!("{label} cached download server CPU, ours/official"),
            r(|run| run.download_cached.server_cpu),
            0.25,
        );
        check(
            format!("{label} our peak RSS (MB)"),
            ours.peak_rss_mb,
            100.0,
        );
    }
    let peaks: Vec<f64> = sizes.iter().map(|(_, _, ours)| ours.peak_rss_mb).collect();
    if let [small, large] = peaks[..] {
        check(
            "our peak RSS, 100k over 20k".to_string(),
            large / small,
            1.2,
        );
    }
    out
}

/// Each metric's median over `runs` (metric by metric, so the result need not be one of
/// the runs); the log lines are the last run's.
fn median(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| median_of(runs.iter().map(f).collect());
    let op = |f: fn(&Run) -> Op| Op {
        wall: median_of(runs.iter().map(|r| f(r).wall).collect()),
        server_cpu: median_of(runs.iter().map(|r| f(r).server_cpu).collect()),
        client_cpu: median_of(runs.iter().map(|r| f(r).client_cpu).collect()),
        server_peak_mb: median_of(runs.iter().map(|r| f(r).server_peak_mb).collect()),
    };
    Run {
        upload: op(|r| r.upload),
        download_first: op(|r| r.download_first),
        download_cached: op(|r| r.download_cached),
        idle_rss_mb: m(|r| r.idle_rss_mb),
        peak_rss_mb: m(|r| r.peak_rss_mb),
        end_rss_mb: m(|r| r.end_rss_mb),
        log_lines: runs.last().map(|r| r.log_lines.clone()).unwrap_or_default(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from other tooling means nothing
    // here, so every argument is ignored.
    announce_our_server();
    let datasets: Vec<(usize, PathBuf)> = SIZES.iter().map(|&n| (n, dataset(n))).collect();
    let options = ServerOptions::with_user(USER, PASSWORD);
    let rounds = rounds("FULL_SYNC_ROUNDS");
    eprintln!("load average before: {}", load_average());

    // Rounds alternate the servers, so that a slow spell of the machine (other jobs on it)
    // hits both rather than one.
    let mut official_runs: Vec<Vec<Run>> = vec![Vec::new(); datasets.len()];
    let mut our_runs: Vec<Vec<Run>> = vec![Vec::new(); datasets.len()];
    for round in 1..=rounds {
        for (i, (notes, path)) in datasets.iter().enumerate() {
            eprintln!("round {round}/{rounds}: official server, {notes} notes ...");
            let mut server = OfficialServer::start(options.clone());
            official_runs[i].push(run(&mut server, path, *notes));
        }
        for (i, (notes, path)) in datasets.iter().enumerate() {
            eprintln!("round {round}/{rounds}: ankisyncd, {notes} notes ...");
            let mut server = Server::start(options.clone());
            let result = run(&mut server, path, *notes);
            assert!(
                result
                    .log_lines
                    .iter()
                    .any(|line| line.contains("full download from the cache")),
                "the second download was not served from the cache:\n{}",
                result.log_lines.join("\n")
            );
            our_runs[i].push(result);
        }
    }
    eprintln!("physical limits ...");
    let floors = floors(&datasets.last().expect("a dataset").1);

    let sizes: Vec<(usize, Run, Run)> = datasets
        .iter()
        .zip(official_runs.iter().zip(&our_runs))
        .map(|((notes, _), (official, ours))| (*notes, median(official), median(ours)))
        .collect();
    println!("load average after: {}", load_average());
    println!("Medians of {rounds} rounds.\n");
    println!("{}", table(&sizes, &floors));
    println!("Our server's log, full-sync lines:");
    for (notes, _, ours) in &sizes {
        println!("- {}:", size_label(*notes));
        for line in &ours.log_lines {
            println!("    {line}");
        }
    }
    println!();
    println!("Targets:");
    print!("{}", targets(&sizes));
}
