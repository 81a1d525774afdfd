//! Media-sync benchmark: the official sync server against ours, driven by the real client.
//!
//! `cargo bench --bench media_sync` runs, for each server (`python -m anki.syncserver` from
//! the pinned client venv, then `ankisyncd` as built by the bench profile) and each data set,
//! one fresh server on loopback and two devices: A writes the files into its media folder
//! and uploads them (one `sync_media`, timed), then B, a new device, downloads them all (one
//! `sync_media`, timed) and must end with byte-identical files.
//!
//! Data sets: "mixed", the 2,000 files of 1–50 KB plus 20 of 1–5 MB, and "large",
//! 5 files of 30 MB, which shows whether the server's memory grows with the size of a file.
//! For each transfer: wall time, files/s, MB/s, the server's CPU time and its peak RSS
//! (`VmHWM`, reset before each transfer through `clear_refs`).
//!
//! Rounds (`MEDIA_SYNC_ROUNDS`, default 3) alternate the servers; each metric is the median
//! of its rounds. Prints one Markdown table for `benches/README.md` and the targets.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{cpu_secs, median_of, reset_peak_rss, rounds, status_mb, BenchServer};

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use support::{ClientVersion, Device, OfficialServer, Server, ServerOptions, SyncServer};

const USER: &str = "bench";
const PASSWORD: &str = "bench";
const DEVICE_TIMEOUT: Duration = Duration::from_secs(600);
const MB: f64 = 1e6;

#[derive(Clone, Copy, Debug, Default)]
struct Transfer {
    wall: f64,
    server_cpu: f64,
    /// CPU of the device's Python process (which holds the client's Rust backend): when it
    /// is close to `wall`, the client, not the server, sets the pace.
    client_cpu: f64,
    server_peak_mb: f64,
}

fn timed(pid: u32, client_pid: u32, op: impl FnOnce()) -> Transfer {
    reset_peak_rss(pid);
    let (cpu, client_cpu) = (cpu_secs(pid), cpu_secs(client_pid));
    let started = Instant::now();
    op();
    Transfer {
        wall: started.elapsed().as_secs_f64(),
        server_cpu: cpu_secs(pid) - cpu,
        client_cpu: cpu_secs(client_pid) - client_cpu,
        server_peak_mb: status_mb(pid, "VmHWM"),
    }
}

struct DataSet {
    name: &'static str,
    /// (name, size, seed)
    files: Vec<(String, usize, u64)>,
}

impl DataSet {
    fn bytes(&self) -> f64 {
        self.files.iter().map(|(_, size, _)| *size as f64).sum()
    }
}

/// Sizes spread evenly over `[low, high]` by a fixed stride, so every run has the same files.
fn spread(i: usize, low: usize, high: usize) -> usize {
    low + (i * 7919) % (high - low + 1)
}

fn data_sets() -> Vec<DataSet> {
    let mut mixed: Vec<(String, usize, u64)> = (0..2000)
        .map(|i| (format!("small {i}.jpg"), spread(i, 1_000, 50_000), i as u64))
        .collect();
    mixed.extend((0..20).map(|i| {
        let size = spread(i, 1_000_000, 5_000_000);
        (format!("big {i}.mp3"), size, 10_000 + i as u64)
    }));
    let large = (0..5)
        .map(|i| (format!("huge {i}.mp4"), 30_000_000, 20_000 + i as u64))
        .collect();
    vec![
        DataSet {
            name: "mixed",
            files: mixed,
        },
        DataSet {
            name: "large",
            files: large,
        },
    ]
}

fn device(server: &impl SyncServer) -> Device {
    let mut device = Device::new(ClientVersion::Current);
    device.set_timeout(DEVICE_TIMEOUT);
    device.login(USER, PASSWORD, &server.endpoint()).unwrap();
    device
}

fn run(server: &mut impl BenchServer, data: &DataSet) -> (Transfer, Transfer) {
    let pid = server.pid();
    let mut a = device(server);
    let specs: Vec<(&str, usize, u64)> = data
        .files
        .iter()
        .map(|(n, s, d)| (n.as_str(), *s, *d))
        .collect();
    a.write_media(&specs);
    let upload = timed(pid, a.pid(), || a.sync_media().unwrap());
    let mut b = device(server);
    let download = timed(pid, b.pid(), || b.sync_media().unwrap());
    let (on_a, on_b) = (a.media_files(), b.media_files());
    assert_eq!(on_a.len(), data.files.len(), "{}: files on A", data.name);
    assert!(on_a == on_b, "{}: B's files differ from A's", data.name);
    server.stop();
    (upload, download)
}

fn median_transfer(runs: &[Transfer]) -> Transfer {
    Transfer {
        wall: median_of(runs.iter().map(|t| t.wall).collect()),
        server_cpu: median_of(runs.iter().map(|t| t.server_cpu).collect()),
        client_cpu: median_of(runs.iter().map(|t| t.client_cpu).collect()),
        server_peak_mb: median_of(runs.iter().map(|t| t.server_peak_mb).collect()),
    }
}

/// Per data set and direction: (official, ours), each the median over rounds.
type Results = Vec<(String, [(Transfer, Transfer); 2])>;

fn table(data_sets: &[DataSet], results: &Results) -> String {
    let mut out = String::new();
    writeln!(out, "| metric | official | ours | ratio (ours/official) |").unwrap();
    writeln!(out, "|---|---:|---:|---:|").unwrap();
    for (data, (name, directions)) in data_sets.iter().zip(results) {
        let (files, mb) = (data.files.len() as f64, data.bytes() / MB);
        for (direction, (official, ours)) in ["upload", "download"].iter().zip(directions) {
            let mut row = |metric: &str, o: f64, u: f64| {
                writeln!(
                    out,
                    "| {name} {direction}: {metric} | {o:.2} | {u:.2} | {:.2}× |",
                    u / o
                )
                .unwrap();
            };
            row("wall (s)", official.wall, ours.wall);
            row("files/s", files / official.wall, files / ours.wall);
            row("MB/s", mb / official.wall, mb / ours.wall);
            row("server CPU (s)", official.server_cpu, ours.server_cpu);
            row("client CPU (s)", official.client_cpu, ours.client_cpu);
            row(
                "server peak RSS (MB)",
                official.server_peak_mb,
                ours.server_peak_mb,
            );
        }
    }
    out
}

fn main() {
    let data_sets = data_sets();
    for data in &data_sets {
        eprintln!(
            "{}: {} files, {:.1} MB",
            data.name,
            data.files.len(),
            data.bytes() / MB
        );
    }
    let options = ServerOptions::with_user(USER, PASSWORD);
    let rounds = rounds("MEDIA_SYNC_ROUNDS");
    let mut official: Vec<Vec<(Transfer, Transfer)>> = vec![Vec::new(); data_sets.len()];
    let mut ours: Vec<Vec<(Transfer, Transfer)>> = vec![Vec::new(); data_sets.len()];
    for round in 1..=rounds {
        for (i, data) in data_sets.iter().enumerate() {
            eprintln!("round {round}/{rounds}: official server, {} ...", data.name);
            official[i].push(run(&mut OfficialServer::start(options.clone()), data));
            eprintln!("round {round}/{rounds}: ankisyncd, {} ...", data.name);
            ours[i].push(run(&mut Server::start(options.clone()), data));
        }
    }
    let results: Results = data_sets
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let pick = |runs: &[(Transfer, Transfer)], up: bool| {
                let picked: Vec<Transfer> =
                    runs.iter().map(|(u, d)| if up { *u } else { *d }).collect();
                median_transfer(&picked)
            };
            (
                data.name.to_string(),
                [
                    (pick(&official[i], true), pick(&ours[i], true)),
                    (pick(&official[i], false), pick(&ours[i], false)),
                ],
            )
        })
        .collect();
    println!("Medians of {rounds} rounds.\n");
    println!("{}", table(&data_sets, &results));
    println!("Targets:");
    for (name, directions) in &results {
        for (direction, (o, u)) in ["upload", "download"].iter().zip(directions) {
            let speedup = o.wall / u.wall;
            let verdict = if speedup >= 2.0 { "met" } else { "MISSED" };
            println!("- {name} {direction} throughput, ours/official: {speedup:.2}× (target ≥ 2×) — {verdict}");
        }
    }
    if let [(_, mixed), (_, large)] = &results[..] {
        let peak = |d: &[(Transfer, Transfer); 2]| d[0].1.server_peak_mb.max(d[1].1.server_peak_mb);
        let growth = peak(large) / peak(mixed);
        let verdict = if growth <= 1.2 { "met" } else { "MISSED" };
        println!("- our peak RSS, 30 MB files over ≤5 MB files: {growth:.2}× (target ≤ 1.2×, flat) — {verdict}");
    }
}
