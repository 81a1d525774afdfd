//! The maintenance commands on the database file of a stopped server: `check [--repair]` and
//! `compact` (`backup` goes through the admin socket, see `cli`). Each opens the file
//! itself, fails with a clear message while a server holds it, and prints what it did.

use std::path::Path;
use std::time::Instant;

use crate::cli::CliError;
use crate::fullsync::scratch_leftovers;
use crate::store::{CheckReport, Store, StoreError};

/// Rows deleted per transaction when `compact` first deletes what waits for deletion.
const DELETE_BATCH: usize = 50_000;

pub(crate) fn check(database: &Path, repair: bool) -> Result<(), CliError> {
    let started = Instant::now();
    let mut store = open(database)?;
    let intact = store.check_integrity()?;
    if intact {
        println!("redb integrity: ok");
    } else {
        println!(
            "redb integrity: damage found and repaired; the file is back to its last intact \
             commit"
        );
    }
    let report = store.check()?;
    print_findings(&report);
    let leftovers = scratch_leftovers(database).map_err(|source| StoreError::Io {
        path: database.to_path_buf(),
        source,
    })?;
    for path in &leftovers {
        println!(
            "problem: scratch file {} left by an interrupted upload or build (the next start \
             removes it)",
            path.display()
        );
    }
    let problems = if repair {
        let repaired = store.repair()?;
        for change in &repaired.changes {
            println!("repaired: {change}");
        }
        for path in &leftovers {
            std::fs::remove_file(path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            println!("repaired: removed {}", path.display());
        }
        for finding in &repaired.remaining.findings {
            println!("still wrong: {finding}");
        }
        repaired.remaining.findings.len()
    } else {
        report.findings.len() + leftovers.len() + usize::from(!intact)
    };
    println!(
        "checked {} user(s), {} generation(s), {} rows in {:.1} s",
        report.users,
        report.generations,
        report.rows,
        started.elapsed().as_secs_f64()
    );
    if problems > 0 {
        if !repair && report.findings.iter().any(|f| f.repairable()) {
            println!("`ankisyncd check --repair` rebuilds what is derived data");
        }
        return Err(CliError::CheckFailed {
            path: database.to_path_buf(),
            problems,
        });
    }
    println!("no problems found");
    Ok(())
}

pub(crate) fn compact(database: &Path) -> Result<(), CliError> {
    let mut store = open(database)?;
    let deleted = store.delete_doomed_generations(DELETE_BATCH)?;
    store.clear_all_staged()?;
    let (before, after) = store.compact()?;
    println!(
        "{}: {} → {} ({} replaced or removed collection(s) deleted first)",
        database.display(),
        size(before),
        size(after),
        deleted
    );
    Ok(())
}

fn open(database: &Path) -> Result<Store, CliError> {
    Ok(Store::open_existing(database)?)
}

fn print_findings(report: &CheckReport) {
    for finding in &report.findings {
        println!("problem: {finding}");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
}

fn size(bytes: u64) -> String {
    format!(
        "{:.1} MiB ({bytes} bytes)",
        bytes as f64 / (1024.0 * 1024.0)
    )
}
