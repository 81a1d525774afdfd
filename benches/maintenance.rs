//! Maintenance benchmark: backup, check and compact of the database holding the 100k-note
//! collection, as an operator runs them.
//!
//! `cargo bench --bench maintenance` starts our server (as built by the bench profile) on
//! 127.0.0.1, and device A, running the official client 26.9.3, opens the generated 100k-note
//! collection and uploads it. Then, each round:
//!
//! 1. **online backup**: the server is restarted with `[backup]` pointing at an empty folder,
//!    so it takes a scheduled backup at once; its log line gives the time;
//! 2. **offline backup**: the server is stopped and `ankisyncd backup OUT` runs (wall time
//!    from here, the command's own start-up included);
//! 3. **check**: `ankisyncd check` on the stopped server's file (redb's integrity check,
//!    then every invariant);
//! 4. **compact**: `ankisyncd compact` on a copy of the file.
//!
//! Prints one Markdown table of medians (`MAINTENANCE_ROUNDS`, default 3) for
//! `benches/README.md`. There is no official counterpart: the official server keeps one
//! SQLite file per user and has no such commands.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::loadgen::dataset;
use common::{median_of, rounds};
use support::{ChangesRequired, ClientVersion, Device, Server, ServerOptions};

const NOTES: usize = 100_000;
const DEVICE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the server may take to write its backup after a start.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(300);

struct Round {
    online_secs: f64,
    offline_secs: f64,
    backup_mb: f64,
    check_secs: f64,
    compact_secs: f64,
    compacted_mb: f64,
}

fn mb(path: &Path) -> f64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len() as f64
        / 1e6
}

/// Runs the CLI on `database`, panicking on failure; returns its wall time and output.
fn timed_cli(database: &Path, args: &[&str]) -> (f64, String) {
    let started = Instant::now();
    let dir = database.parent().expect("database folder");
    let (status, stdout, stderr) = support::run_cli_on(database, dir, args, "", &[]);
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "ankisyncd {args:?}: {stdout}{stderr}");
    (secs, stdout)
}

/// The `secs=` field of the server's "scheduled backup written" line.
fn online_backup_secs(server: &Server) -> Option<f64> {
    let log = server.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("scheduled backup written to"))?;
    let secs = line.split("secs=").nth(1)?.split_whitespace().next()?;
    secs.parse().ok()
}

fn round(server: &mut Server, work: &Path) -> Round {
    let backups = work.join("scheduled");
    fs::create_dir_all(&backups).expect("backup folder");
    server.options_mut().extra_env =
        vec![("ANKISYNCD_BACKUP_DIR".into(), backups.display().to_string())];
    server.restart();
    let deadline = Instant::now() + BACKUP_TIMEOUT;
    let online_secs = loop {
        if let Some(secs) = online_backup_secs(server) {
            break secs;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled backup: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    server.stop();
    server.options_mut().extra_env.clear();
    fs::remove_dir_all(&backups).expect("remove the scheduled backup");

    let out = work.join("offline.redb");
    let (offline_secs, _) = timed_cli(server.db_path(), &["backup", &out.display().to_string()]);
    let backup_mb = mb(&out);
    let (check_secs, report) = timed_cli(server.db_path(), &["check"]);
    assert!(report.contains("no problems found"), "{report}");
    let copy = work.join("compacted.redb");
    fs::copy(server.db_path(), &copy).expect("copy for compact");
    let (compact_secs, _) = timed_cli(&copy, &["compact"]);
    let compacted_mb = mb(&copy);
    fs::remove_file(&out).expect("remove the backup");
    fs::remove_file(&copy).expect("remove the copy");
    Round {
        online_secs,
        offline_secs,
        backup_mb,
        check_secs,
        compact_secs,
        compacted_mb,
    }
}

fn main() {
    let rounds = rounds("MAINTENANCE_ROUNDS");
    let collection = dataset(NOTES);
    let mut server = Server::start(ServerOptions::with_user("bench", "bench"));
    let mut a = Device::new(ClientVersion::Current);
    a.set_timeout(DEVICE_TIMEOUT);
    a.login("bench", "bench", &server.endpoint()).unwrap();
    assert_eq!(a.open_dataset(&collection), NOTES);
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    drop(a);
    let work = tempfile::tempdir().expect("work folder");
    let runs: Vec<Round> = (0..rounds)
        .map(|_| round(&mut server, work.path()))
        .collect();
    let database_mb = mb(server.db_path());
    let median = |f: fn(&Round) -> f64| median_of(runs.iter().map(f).collect());

    println!(
        "\n100k-note collection ({:.1} MB as an .anki2 file), {rounds} round(s), medians\n",
        mb(&collection)
    );
    println!("| metric | value |\n|---|---:|");
    println!("| database file (MB) | {database_mb:.1} |");
    println!(
        "| online backup, scheduled, no load (s) | {:.2} |",
        median(|r| r.online_secs)
    );
    println!(
        "| offline backup, `ankisyncd backup` (s) | {:.2} |",
        median(|r| r.offline_secs)
    );
    println!("| backup file (MB) | {:.1} |", median(|r| r.backup_mb));
    println!(
        "| `ankisyncd check` (s) | {:.2} |",
        median(|r| r.check_secs)
    );
    println!(
        "| `ankisyncd compact` (s) | {:.2} |",
        median(|r| r.compact_secs)
    );
    println!(
        "| file after compact (MB) | {:.1} |",
        median(|r| r.compacted_mb)
    );
}
