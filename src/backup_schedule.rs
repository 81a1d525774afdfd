//! Scheduled backups of a running server (`[backup]` in the config): every `interval` a
//! backup (`store::backup_to`) goes into `dir` under a name that sorts by time
//! (`ankisyncd-YYYYMMDD-HHMMSS.redb`, UTC), then the oldest beyond `keep` are deleted. The
//! first one is due an interval after the newest already in `dir`, so restarts neither skip
//! nor repeat backups. A backup reads one snapshot on the blocking pool: syncs never wait
//! for it. A failure is logged with what to fix, and tried again an interval later.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::BackupConfig;
use crate::store::{backup_to, BackupReport, Store};

const PREFIX: &str = "ankisyncd-";
const SUFFIX: &str = ".redb";

/// Run the schedule until the runtime stops; returns at once when backups are off.
pub(crate) async fn run(store: Arc<Store>, config: BackupConfig) {
    let Some(dir) = config.enabled_dir().map(Path::to_path_buf) else {
        return;
    };
    let interval = config.interval.0;
    let mut delay = match prepare(&dir) {
        Ok(()) => next_delay(&dir, interval, SystemTime::now()),
        Err(e) => {
            tracing::error!("backup folder {}: {e}", dir.display());
            Duration::ZERO
        }
    };
    tracing::info!(
        "scheduled backups every {} into {} (keeping {}); next in {} s",
        config.interval,
        dir.display(),
        config.keep,
        delay.as_secs()
    );
    loop {
        tokio::time::sleep(delay).await;
        delay = interval;
        let out = dir.join(file_name(crate::clock::now_secs()));
        tracing::info!("scheduled backup to {} started", out.display());
        let (store, keep, folder) = (store.clone(), config.keep, dir.clone());
        // Backup and rotation are one blocking job: a shutdown waits for it, so the folder
        // never holds more than `keep` complete backups.
        let job = tokio::task::spawn_blocking(move || {
            let report = backup_to(&store, &out)?;
            Ok::<_, crate::store::BackupError>((report, rotate(&folder, keep)))
        });
        match job.await {
            Ok(Ok((report, rotated))) => {
                log_written(&report);
                match rotated {
                    Ok(removed) => {
                        for old in removed {
                            tracing::info!("old backup {} deleted", old.display());
                        }
                    }
                    Err(e) => tracing::error!(
                        "deleting old backups in {}: {e} ({})",
                        dir.display(),
                        crate::store::disk_advice(e.kind())
                    ),
                }
            }
            Ok(Err(e)) => tracing::error!(
                "scheduled backup failed: {e}; the next is tried in {}",
                config.interval
            ),
            Err(e) => tracing::error!("scheduled backup task failed: {e}"),
        }
    }
}

fn log_written(report: &BackupReport) {
    tracing::info!(
        users = report.users,
        rows = report.rows,
        megabytes = format_args!("{:.1}", report.bytes as f64 / (1024.0 * 1024.0)),
        secs = format_args!("{:.1}", report.elapsed.as_secs_f64()),
        "scheduled backup written to {}",
        report.path.display()
    );
}

/// Create the folder and remove what an interrupted backup left in it.
fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!(".{PREFIX}")) && name.ends_with(".partial") {
            std::fs::remove_file(entry.path())?;
            tracing::info!("removed {}, left by an interrupted backup", name);
        }
    }
    Ok(())
}

/// The name of a backup taken at `secs` (Unix time).
fn file_name(secs: i64) -> String {
    let t = crate::clock::civil(secs);
    format!(
        "{PREFIX}{:04}{:02}{:02}-{:02}{:02}{:02}{SUFFIX}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Whether `name` is one of ours; nothing else in the folder is ever deleted.
fn is_backup(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
    else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 15
        && bytes[8] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
}

/// The backups in `dir`, oldest first.
fn backups(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| is_backup(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// Delete the oldest backups beyond the newest `keep`; returns what was deleted.
fn rotate(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let all = backups(dir)?;
    let excess = all.len().saturating_sub(keep);
    let old: Vec<PathBuf> = all.into_iter().take(excess).collect();
    for path in &old {
        std::fs::remove_file(path)?;
    }
    Ok(old)
}

/// Time until the next backup: an interval after the newest one in `dir`, at once if there
/// is none (or it is older than an interval).
fn next_delay(dir: &Path, interval: Duration, now: SystemTime) -> Duration {
    let newest = backups(dir)
        .ok()
        .and_then(|all| all.last().cloned())
        .and_then(|path| std::fs::metadata(path).ok()?.modified().ok());
    match newest {
        Some(taken) => (taken + interval)
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
        None => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_only_ours_count() {
        assert_eq!(file_name(0), "ankisyncd-19700101-000000.redb");
        assert_eq!(file_name(1_700_000_000), "ankisyncd-20231114-221320.redb");
        assert!(is_backup(&file_name(1_700_000_000)));
        for other in [
            "ankisyncd.redb",
            "ankisyncd-2023.redb",
            "ankisyncd-20231114x221320.redb",
            ".ankisyncd-20231114-221320.redb.1-0.partial",
            "notes.txt",
        ] {
            assert!(!is_backup(other), "{other}");
        }
    }

    #[test]
    fn rotation_keeps_the_newest_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        for secs in [300, 100, 200, 400] {
            std::fs::write(dir.path().join(file_name(secs)), b"x").unwrap();
        }
        std::fs::write(dir.path().join("mine.redb"), b"x").unwrap();
        let removed = rotate(dir.path(), 2).unwrap();
        assert_eq!(
            removed,
            vec![
                dir.path().join(file_name(100)),
                dir.path().join(file_name(200))
            ]
        );
        let kept = backups(dir.path()).unwrap();
        assert_eq!(
            kept,
            vec![
                dir.path().join(file_name(300)),
                dir.path().join(file_name(400))
            ]
        );
        assert!(dir.path().join("mine.redb").exists());
        assert!(rotate(dir.path(), 2).unwrap().is_empty());
    }

    #[test]
    fn the_next_backup_is_due_an_interval_after_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let now = SystemTime::now();
        assert_eq!(next_delay(dir.path(), hour, now), Duration::ZERO);
        std::fs::write(dir.path().join(file_name(1)), b"x").unwrap();
        let written = std::fs::metadata(dir.path().join(file_name(1)))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(
            next_delay(dir.path(), hour, written + Duration::from_secs(600)),
            Duration::from_secs(3000)
        );
        assert_eq!(
            next_delay(dir.path(), hour, written + 2 * hour),
            Duration::ZERO
        );
    }

    #[test]
    fn leftovers_of_an_interrupted_backup_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir
            .path()
            .join(".ankisyncd-20231114-221320.redb.7-0.partial");
        std::fs::write(&partial, b"half").unwrap();
        std::fs::write(dir.path().join(".other.partial"), b"x").unwrap();
        prepare(dir.path()).unwrap();
        assert!(!partial.exists());
        assert!(dir.path().join(".other.partial").exists());
    }
}
