//! Backups of the one database file, judged by what real clients download from a server
//! started on them: a copy of a stopped server's file, a backup written while eight users
//! sync, scheduled backups and their rotation. Also `check`: a corrupted count is found and
//! `--repair` rebuilds it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{
    run_cli_on, ChangesRequired, ClientVersion, CollectionDump, Device, Server, ServerOptions,
};

/// Everything a fresh device gets from the server at `endpoint`: the collection and the media.
fn download_everything(
    user: &str,
    endpoint: &str,
) -> (
    CollectionDump,
    std::collections::BTreeMap<String, (u64, String)>,
) {
    let mut device = Device::new(ClientVersion::Current);
    device.login(user, "pass", endpoint).unwrap();
    assert_eq!(
        device.sync().unwrap().required,
        ChangesRequired::FullDownload
    );
    device.full_download().unwrap();
    device.sync_media().unwrap();
    (device.dump(), device.media_files())
}

/// A server whose user "user" has uploaded a realistic collection from device A.
fn uploaded(options: ServerOptions) -> (Server, Device) {
    let server = Server::start(options);
    let mut a = Device::new(ClientVersion::Current);
    a.login("user", "pass", &server.endpoint()).unwrap();
    a.add_rich_content("a");
    assert_eq!(a.sync().unwrap().required, ChangesRequired::FullUpload);
    a.full_upload().unwrap();
    (server, a)
}

fn check(database: &Path, args: &[&str]) -> (bool, String) {
    let dir = database.parent().expect("database folder");
    let (status, stdout, stderr) = run_cli_on(database, dir, args, "", &[]);
    (status.success(), format!("{stdout}{stderr}"))
}

#[test]
fn a_copy_of_the_file_after_sigterm_is_the_live_state() {
    let (mut server, mut a) = uploaded(ServerOptions::with_user("user", "pass"));
    a.write_media(&[("one.jpg", 70_000, 1), ("two.ogg", 300, 2)]);
    a.sync_media().unwrap();
    for round in 0..3 {
        a.add_notes(20, &format!("round {round}"));
        a.answer_cards(5, 3, "Default");
        a.sync().unwrap();
    }
    let live = download_everything("user", &server.endpoint());
    assert_eq!(live.0.clone().without_usns(), a.dump().without_usns());

    server.stop();
    let copies = tempfile::tempdir().unwrap();
    let copy = copies.path().join("copy.redb");
    std::fs::copy(server.db_path(), &copy).unwrap();
    let (ok, report) = check(&copy, &["check"]);
    assert!(ok, "{report}");
    assert!(report.contains("no problems found"), "{report}");

    let restored = Server::start_from(&copy, ServerOptions::with_user("user", "pass"));
    assert_eq!(download_everything("user", &restored.endpoint()), live);
}

/// The `collections` table and its record type, to corrupt a count the way a bug or a bad
/// disk could, behind the server's back.
const COLLECTIONS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("collections");

fn add_to_note_count(database: &Path, user_id: u64, delta: u64) {
    use redb::ReadableTable;
    let db = redb::Database::open(database).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(COLLECTIONS).unwrap();
        let bytes = table.get(user_id).unwrap().unwrap().value().to_vec();
        let mut record: ankisyncd::store::CollectionRecord = rmp_serde::from_slice(&bytes).unwrap();
        record.counts.notes += delta;
        table
            .insert(
                user_id,
                rmp_serde::to_vec_named(&record).unwrap().as_slice(),
            )
            .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn check_finds_a_corrupted_count_and_repair_rebuilds_it() {
    let (mut server, mut a) = uploaded(ServerOptions::with_user("user", "pass"));
    a.add_notes(7, "synced");
    a.sync().unwrap();
    let notes = a.note_count();
    server.stop();

    add_to_note_count(server.db_path(), 1, 1);
    let (ok, report) = check(server.db_path(), &["check"]);
    assert!(!ok, "{report}");
    let expected = format!(
        "problem: user user: row counts in the collection record: expected notes {notes}, "
    );
    assert!(report.contains(&expected), "{report}");
    assert!(
        report.contains(&format!("found notes {}, ", notes + 1)),
        "{report}"
    );
    assert!(report.contains("error: 1 problem(s) found in "), "{report}");

    let (ok, report) = check(server.db_path(), &["check", "--repair"]);
    assert!(ok, "{report}");
    assert!(
        report.contains(
            "repaired: user user: row counts in the collection record: set to the row counts"
        ),
        "{report}"
    );
    let (ok, report) = check(server.db_path(), &["check"]);
    assert!(ok && report.contains("no problems found"), "{report}");

    // The sanity check at the end of a sync compares these counts: it passes again.
    a.set_endpoint(&server.restart());
    a.add_notes(1, "after the repair");
    a.sync().unwrap();
    assert_eq!(a.sync().unwrap().required, ChangesRequired::NoChanges);
    let (dump, _) = download_everything("user", &server.endpoint());
    assert_eq!(dump.without_usns(), a.dump().without_usns());
}

#[test]
fn the_backup_command_copies_a_running_servers_file_and_a_stopped_one() {
    let (mut server, mut a) = uploaded(ServerOptions::with_user("user", "pass"));
    let out = tempfile::tempdir().unwrap();

    // Running: the command asks the server, through its admin socket, for the copy.
    let live = out.path().join("live.redb");
    let target = live.to_str().unwrap();
    let (status, stdout, stderr) = server.run_cli(&["backup", target], "");
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!("backup written to {target}: 1 user(s)")),
        "{stdout}"
    );
    assert!(
        server.log().contains(&format!("admin: backup {target}")),
        "the server did the work"
    );
    a.add_notes(3, "after the live backup");
    a.sync().unwrap();
    let (after, _) = download_everything("user", &server.endpoint());

    // Stopped: the command opens the file itself.
    server.stop();
    let stopped = out.path().join("stopped.redb");
    let target = stopped.to_str().unwrap();
    let (status, stdout, stderr) = server.run_cli(&["backup", target], "");
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!("backup written to {target}: 1 user(s)")),
        "{stdout}"
    );

    let restored = Server::start_from(&stopped, ServerOptions::with_user("user", "pass"));
    let (dump, _) = download_everything("user", &restored.endpoint());
    assert_eq!(dump.without_usns(), a.dump().without_usns());
    drop(restored);
    let restored = Server::start_from(&live, ServerOptions::with_user("user", "pass"));
    let (dump, _) = download_everything("user", &restored.endpoint());
    assert_eq!(
        dump.notes.len() + 3,
        after.notes.len(),
        "the live backup has everything but the last sync"
    );
}

/// Every line of the log with `text`, in order.
fn log_lines(server: &Server, text: &str) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|line| line.contains(text))
        .map(str::to_string)
        .collect()
}

/// The path in "scheduled backup to PATH started".
fn started_path(line: &str) -> PathBuf {
    let rest = line
        .split("scheduled backup to ")
        .nth(1)
        .expect("a start line");
    PathBuf::from(rest.trim_end().trim_end_matches(" started"))
}

/// Waits (bounded) until `ready` holds, polling.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn backup_options(users: &[String], dir: &Path, interval: &str, keep: &str) -> ServerOptions {
    ServerOptions {
        users: users
            .iter()
            .map(|u| (u.clone(), "pass".to_string()))
            .collect(),
        extra_env: vec![
            ("ANKISYNCD_BACKUP_DIR".into(), dir.display().to_string()),
            ("ANKISYNCD_BACKUP_INTERVAL".into(), interval.into()),
            ("ANKISYNCD_BACKUP_KEEP".into(), keep.into()),
        ],
        ..ServerOptions::default()
    }
}

const USERS: usize = 8;
const NOTES_PER_SYNC: usize = 3;
/// Bound on each user's loop; the backup comes long before.
const MAX_SYNCS: usize = 60;
/// Syncs each user makes after the backup was written, so the restored server is behind.
const SYNCS_AFTER: usize = 2;

/// A dump as two devices of user `user` must agree on it. A download to the legacy client
/// carries the object fields current clients added since (null), as the official server's
/// does, while the uploading legacy device keeps its own JSON: there, notetypes, decks and
/// deck configs are compared by name.
fn comparable(dump: CollectionDump, user: usize) -> CollectionDump {
    let mut dump = dump.without_usns();
    if version_of(user) == ClientVersion::Legacy {
        for objects in [&mut dump.decks, &mut dump.notetypes, &mut dump.deck_configs] {
            objects
                .values_mut()
                .for_each(|v| *v = serde_json::Value::Null);
        }
    }
    dump
}

/// The last user syncs with the legacy client, the others with a current one.
fn version_of(user: usize) -> ClientVersion {
    if user == USERS - 1 {
        ClientVersion::Legacy
    } else {
        ClientVersion::Current
    }
}

fn prefix(user: usize, sync: usize) -> String {
    format!("u{user} s{sync}")
}

/// Notes of a user's sync number `sync` in a dump.
fn notes_of(dump: &CollectionDump, user: usize, sync: usize) -> usize {
    let start = format!("{} ", prefix(user, sync));
    dump.notes
        .iter()
        .filter(|n| n.flds.starts_with(&start))
        .count()
}

#[test]
fn a_backup_taken_while_eight_users_sync_has_every_finished_sync() {
    let names: Vec<String> = (0..USERS).map(|u| format!("user{u}")).collect();
    let backups = tempfile::tempdir().unwrap();
    let mut server = Server::start(backup_options(&names, backups.path(), "3s", "50"));
    let endpoint = server.endpoint();
    let completed: Arc<Vec<AtomicUsize>> =
        Arc::new((0..USERS).map(|_| AtomicUsize::new(0)).collect());
    let written = Arc::new(AtomicBool::new(false));

    let workers: Vec<_> = (0..USERS)
        .map(|u| {
            let (name, endpoint) = (names[u].clone(), endpoint.clone());
            let (completed, written) = (completed.clone(), written.clone());
            thread::spawn(move || {
                let mut device = Device::new(version_of(u));
                device.login(&name, "pass", &endpoint).unwrap();
                device.add_notes(5, &format!("u{u} base"));
                assert_eq!(device.sync().unwrap().required, ChangesRequired::FullUpload);
                device.full_upload().unwrap();
                let mut after = 0;
                for n in 1..=MAX_SYNCS {
                    device.add_notes(NOTES_PER_SYNC, &prefix(u, n));
                    device.sync().unwrap();
                    completed[u].store(n, Ordering::SeqCst);
                    if written.load(Ordering::SeqCst) {
                        after += 1;
                        if after == SYNCS_AFTER {
                            return device;
                        }
                    }
                }
                panic!("user {u}: no backup within {MAX_SYNCS} syncs");
            })
        })
        .collect();

    // The backup to judge is the first one that starts once every user syncs in a loop.
    wait_for("every user's second sync", Duration::from_secs(300), || {
        completed.iter().all(|c| c.load(Ordering::SeqCst) >= 2)
    });
    let earlier = log_lines(&server, "scheduled backup to ").len();
    // Counts read before a look at the log that finds no new backup started are syncs that
    // finished before the backup began.
    let mut finished_before: Vec<usize> = vec![0; USERS];
    let line = loop {
        let counts: Vec<usize> = completed.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        let started = log_lines(&server, "scheduled backup to ");
        if started.len() > earlier {
            break started[earlier].clone();
        }
        finished_before = counts;
        thread::sleep(Duration::from_millis(10));
    };
    let backup = started_path(&line);
    let done = format!("scheduled backup written to {}", backup.display());
    wait_for("the backup to be written", Duration::from_secs(120), || {
        !log_lines(&server, &done).is_empty()
    });
    written.store(true, Ordering::SeqCst);
    let mut devices: Vec<Device> = workers
        .into_iter()
        .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        .collect();
    assert!(
        finished_before.iter().all(|n| *n >= 2),
        "the backup began during the load: {finished_before:?}"
    );
    server.stop();

    let (ok, report) = check(&backup, &["check"]);
    assert!(ok, "{report}");
    let restored = Server::start_from(&backup, backup_options(&names, backups.path(), "1d", "50"));
    for (u, device) in devices.iter_mut().enumerate() {
        let mut fresh = Device::new(ClientVersion::Current);
        fresh
            .login(&names[u], "pass", &restored.endpoint())
            .unwrap();
        assert_eq!(
            fresh.sync().unwrap().required,
            ChangesRequired::FullDownload
        );
        fresh.full_download().unwrap();
        let dump = fresh.dump();
        let synced = completed[u].load(Ordering::SeqCst);
        for n in 1..=synced {
            let found = notes_of(&dump, u, n);
            if n <= finished_before[u] {
                assert_eq!(
                    found, NOTES_PER_SYNC,
                    "user {u}: sync {n} finished before the backup"
                );
            } else {
                assert!(
                    found == 0 || found == NOTES_PER_SYNC,
                    "user {u}: sync {n} is in the backup in part ({found} notes)"
                );
            }
        }
        assert!(
            notes_of(&dump, u, synced) == 0,
            "user {u}: syncs after the backup are not in it"
        );

        // The device is ahead of the restored server (its syncs after the backup are not
        // there): the sanity check at the end of its next sync finds the counts differ, and
        // the client refuses the sync, as with the official server. A one-way sync from the
        // device mends it: current clients ask for one by themselves, 2.1.49 tells the user
        // to force it in the preferences, which the user does.
        device.set_endpoint(&restored.endpoint());
        let refused = device.sync().expect_err("the counts differ");
        assert!(
            refused
                .message
                .starts_with("Please use the Check Database function"),
            "{refused}"
        );
        let required = match device.sync() {
            Ok(outcome) => outcome.required,
            Err(_) => {
                device.force_full_sync();
                device.sync().unwrap().required
            }
        };
        assert_eq!(required, ChangesRequired::FullSync, "user {u}");
        device.full_upload().unwrap();
        assert_eq!(fresh.sync().unwrap().required, ChangesRequired::FullSync);
        fresh.full_download().unwrap();
        assert!(
            comparable(fresh.dump(), u) == comparable(device.dump(), u),
            "user {u}: devices converge on the restored server"
        );
        assert_eq!(notes_of(&fresh.dump(), u, synced), NOTES_PER_SYNC);
    }
}

#[test]
fn scheduled_backups_rotate_and_each_is_complete() {
    let backups = tempfile::tempdir().unwrap();
    let names = vec!["user".to_string()];
    let (mut server, mut a) = uploaded(backup_options(&names, backups.path(), "1s", "2"));
    let uploaded = log_lines(&server, "scheduled backup written to ").len();
    // Three more, so the oldest were rotated away.
    wait_for(
        "three backups after the upload",
        Duration::from_secs(60),
        || log_lines(&server, "scheduled backup written to ").len() >= uploaded + 3,
    );
    server.stop();
    assert!(
        !log_lines(&server, "old backup ").is_empty(),
        "{}",
        server.log()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "keep = 2, nothing else left: {files:?}");
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("ankisyncd-") && name.ends_with(".redb"),
            "{name}"
        );
        let (ok, report) = check(file, &["check"]);
        assert!(ok, "{name}: {report}");
    }
    let newest = files.last().unwrap();
    let restored = Server::start_from(newest, ServerOptions::with_user("user", "pass"));
    let (dump, _) = download_everything("user", &restored.endpoint());
    assert_eq!(dump.without_usns(), a.dump().without_usns());
}
