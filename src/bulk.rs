//! Bulk work (a full upload's ingest, a download prepared in advance) runs on a thread of
//! its own at a lower scheduling priority (nice 10), so that on a small machine the small
//! syncs of other users keep the CPU they need: on 2 cores an ingest took one core and the
//! other users' p99 doubled during a 100k-note upload (benches/README.md, head-of-line).
//! A thread of its own, because an unprivileged thread can lower its priority but not
//! raise it again, and the blocking pool reuses its threads for everything.

use std::sync::{Mutex, PoisonError};

/// How much lower than the server's own priority bulk work runs.
const NICENESS: libc::c_int = 10;

/// Run `work` on a new thread at a lower priority and wait for it; on the calling thread if
/// no thread can be started.
pub(crate) fn run<T: Send>(what: &str, work: impl FnOnce() -> T + Send) -> T {
    let slot = Mutex::new(Some(work));
    let take = || slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name(format!("bulk-{what}"))
            .spawn_scoped(scope, || {
                lower_priority();
                take().map(|work| work())
            });
        let done = match spawned {
            Ok(thread) => match thread.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => {
                tracing::debug!("no thread for {what} ({e}); running it here");
                None
            }
        };
        // The work runs exactly once: on the new thread, or here if none started.
        let done = done
            .or_else(|| take().map(|work| work()))
            .expect("bulk work taken by a thread that did not run it");
        give_back_freed_memory();
        done
    })
}

/// Bulk work allocates tens of MB in small pieces (SQLite's page caches, row batches) on
/// threads that then exit; glibc keeps what they freed in its heaps, resident. Trimming once
/// the work is done returns it (a millisecond or two).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_freed_memory() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own heaps, under
    // their locks; it is safe while other threads allocate.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_freed_memory() {}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority only read and set this thread's scheduling priority.
    let failed = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + NICENESS).min(19)) != 0
    };
    if failed {
        tracing::debug!("could not lower the priority of bulk work");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn niceness() -> libc::c_int {
        // SAFETY: reads this thread's priority.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn bulk_work_runs_lower_and_leaves_the_caller_as_it_was() {
        let before = niceness();
        let inside = run("test", niceness);
        assert_eq!(inside, (before + NICENESS).min(19));
        assert_eq!(niceness(), before, "the calling thread keeps its priority");
    }

    #[test]
    fn the_result_and_a_panic_come_back() {
        let borrowed = [1, 2, 3];
        assert_eq!(run("sum", || borrowed.iter().sum::<i32>()), 6);
        let panicked = std::panic::catch_unwind(|| run("boom", || panic!("bulk blew up")));
        assert!(panicked.is_err());
    }
}
