//! An idle server's memory must not depend on how many users it created at startup. Each
//! `SYNC_USERn` password is hashed with argon2id, which takes 19 MiB for a moment; the
//! allocator must give that memory back (app.rs, `return_large_allocations`), or the idle
//! server keeps tens of MB it no longer uses (benches/README.md, "Load").

mod support;

use std::fs;

use support::{Server, ServerOptions};

/// Users created at startup in the larger server.
const USERS: usize = 20;
/// Allowed growth over the one-user server: far below one retained 19 MiB hash buffer, far
/// above what 20 user rows and their bookkeeping take.
const SLACK_MB: f64 = 8.0;

fn resident_mb(pid: u32) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap();
    kb / 1000.0
}

fn idle_resident_mb(users: usize) -> f64 {
    let options = ServerOptions {
        users: (0..users)
            .map(|i| (format!("user{i}"), format!("password {i}")))
            .collect(),
        ..ServerOptions::default()
    };
    let mut server = Server::start(options);
    let mb = resident_mb(server.pid());
    server.stop();
    mb
}

#[test]
fn hashing_many_startup_passwords_leaves_the_idle_server_no_bigger() {
    let one = idle_resident_mb(1);
    let many = idle_resident_mb(USERS);
    assert!(
        many < one + SLACK_MB,
        "idle RSS with {USERS} users: {many:.1} MB; with one: {one:.1} MB"
    );
}
