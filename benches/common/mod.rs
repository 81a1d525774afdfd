//! What the load benchmarks share: the servers as processes to measure, readings of a
//! process from `/proc` (CPU time, resident memory, its peak) and of their data on disk,
//! medians and percentiles, the rounds setting, and the generated datasets and
//! protocol-level load generator (`loadgen`, also used by `tests/e2e_loadgen.rs`). Each
//! benchmark declares `mod support;` (the test harness) before this.

// Each benchmark compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

#[path = "../../tests/support/loadgen.rs"]
pub mod loadgen;

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{http_get, OfficialServer, Server, SyncServer};

/// The seed of the generated collections: same seed, same rows, so runs on different days
/// compare like with like.
pub const SEED: u64 = 1;

/// A server as a benchmark needs it: the scenario interface plus its process.
pub trait BenchServer: SyncServer {
    fn pid(&self) -> u32;
    fn log(&self) -> String;
    fn stop(&mut self);
    /// Bytes of the server's stored data: our database file; the official server's data
    /// folder (collections, media databases).
    fn data_bytes(&self) -> u64;
    /// Bytes of files kept beside the data that can be rebuilt from it: our scratch folder
    /// (prepared full downloads). The official server keeps none.
    fn cache_bytes(&self) -> u64;
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
    fn data_bytes(&self) -> u64 {
        fs::metadata(self.db_path()).map_or(0, |m| m.len())
    }
    fn cache_bytes(&self) -> u64 {
        let mut scratch = self.db_path().as_os_str().to_owned();
        scratch.push(".scratch");
        tree_bytes(&PathBuf::from(scratch))
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
    fn data_bytes(&self) -> u64 {
        tree_bytes(&self.data_dir())
    }
    fn cache_bytes(&self) -> u64 {
        0
    }
}

/// Total size of the files under `path` (0 if it does not exist).
pub fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| tree_bytes(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
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

/// The value at fraction `p` (0..=1) of `sorted` by the nearest-rank method: the smallest
/// value with at least that fraction of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every number.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Rounds to run, from the environment variable `var` (default 3).
pub fn rounds(var: &str) -> usize {
    positive_env(var, 3) as usize
}

/// A positive number from the environment variable `var`, or `default` when it is unset.
pub fn positive_env(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{var} must be a positive number: {n:?}")),
        Err(_) => default,
    }
}

/// Says which build of our server runs: the harness starts `TEST_ANKISYNCD_BIN` instead of
/// this crate's binary when it is set.
pub fn announce_our_server() {
    match std::env::var_os("TEST_ANKISYNCD_BIN") {
        Some(other) => eprintln!(
            "our server: {} (TEST_ANKISYNCD_BIN)",
            other.to_string_lossy()
        ),
        None => eprintln!("our server: {}", env!("CARGO_BIN_EXE_ankisyncd")),
    }
}
