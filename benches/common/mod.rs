//! What the load benchmarks share: the servers as processes to measure, readings of a
//! process from `/proc` (CPU time, resident memory, its peak), medians over rounds, the
//! rounds setting, and the generated collections. Each benchmark declares `mod support;`
//! (the test harness) before this.

// Each benchmark compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

use crate::support::{http_get, make_dataset, target_dir, OfficialServer, Server, SyncServer};

/// The seed of the generated collections: same seed, same rows, so runs on different days
/// compare like with like.
pub const SEED: u64 = 1;

/// A server as a benchmark needs it: the scenario interface plus its process.
pub trait BenchServer: SyncServer {
    fn pid(&self) -> u32;
    fn log(&self) -> String;
    fn stop(&mut self);
    /// The `/metrics` page, for servers that have one.
    fn metrics(&self) -> Option<String>;
}

/// The value of one series on a `/metrics` page (0 when absent).
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

impl BenchServer for Server {
    fn pid(&self) -> u32 {
        Server::pid(self)
    }
    fn log(&self) -> String {
        Server::log(self)
    }
    fn stop(&mut self) {
        Server::stop(self);
    }
    fn metrics(&self) -> Option<String> {
        // A build from before /metrics (TEST_ANKISYNCD_BIN) answers 404.
        let (status, page) = http_get(&self.endpoint(), "/metrics");
        (status == 200).then_some(page)
    }
}

impl BenchServer for OfficialServer {
    fn pid(&self) -> u32 {
        OfficialServer::pid(self)
    }
    fn log(&self) -> String {
        OfficialServer::log(self)
    }
    fn stop(&mut self) {
        OfficialServer::stop(self);
    }
    fn metrics(&self) -> Option<String> {
        None
    }
}

/// The generated collection of `notes` notes, made once and kept under
/// `target/bench-data/` (it depends on the size, the seed and the client that made it).
pub fn dataset(notes: usize) -> PathBuf {
    let dir = target_dir().join("bench-data");
    fs::create_dir_all(&dir).expect("create target/bench-data");
    let path = dir.join(format!("notes-{notes}-seed-{SEED}-anki-26.9.3.anki2"));
    if !path.exists() {
        // Written beside and renamed, so an interrupted run leaves no half file behind
        // under the final name.
        let partial = dir.join(format!("notes-{notes}-seed-{SEED}.partial"));
        let summary = make_dataset(&partial, notes, SEED);
        eprintln!("generated {}: {summary}", path.display());
        fs::rename(&partial, &path).expect("move the dataset into place");
    }
    path
}

/// User + system CPU seconds of process `pid`, all its threads included.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name (field 2) is in parentheses and may contain spaces: count fields
    // from the last ')'. After it come state (field 3) ... utime (14) and stime (15).
    let rest = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> f64 { fields[i].parse::<u64>().expect("clock ticks") as f64 };
    // SAFETY: sysconf only reads a system constant.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_sec
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in MB.
pub fn status_mb(pid: u32, key: &str) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad {key} line: {line}"));
    kb / 1000.0
}

/// Resets the process's `VmHWM` to its current RSS (`clear_refs` value 5, Linux ≥ 4.0), so
/// that the next reading is the peak of one operation rather than of the process's life.
pub fn reset_peak_rss(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

pub fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Rounds to run, from the environment variable `var` (default 3).
pub fn rounds(var: &str) -> usize {
    match std::env::var(var) {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{var} must be a positive number: {n:?}")),
        Err(_) => 3,
    }
}
