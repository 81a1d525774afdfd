//! Tests of the invariants the public API promises, driven through
//! [`SupervisorHandle`] only; the Anki-free state and directory here are stand-ins.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{ActorError, Directory, SupervisorConfig, SupervisorHandle};

const LIMIT: Duration = Duration::from_secs(10);
const PANICKY_KEY: u32 = 666;

#[derive(Debug, thiserror::Error)]
#[error("directory is broken")]
struct Broken;

struct TestDirectory {
    users: HashMap<String, u32>,
}

impl Directory for TestDirectory {
    type Key = u32;
    type Error = Broken;

    fn resolve(&self, credential: &str) -> Result<Option<u32>, Broken> {
        match credential {
            "broken" => Err(Broken),
            _ => Ok(self.users.get(credential).copied()),
        }
    }
}

#[derive(Default)]
struct Counters {
    inits: AtomicUsize,
    drops: AtomicUsize,
}

/// A user's state that reports its birth and death.
struct Tracked {
    value: u64,
    log: Vec<u32>,
    counters: Arc<Counters>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.counters.drops.fetch_add(1, Ordering::SeqCst);
    }
}

type Handle = SupervisorHandle<TestDirectory, Tracked>;

async fn start(idle_timeout: Duration) -> (Handle, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let for_init = Arc::clone(&counters);
    let directory = TestDirectory {
        users: HashMap::from([("alice-key".to_owned(), 1), ("bob-key".to_owned(), 2)]),
    };
    let handle = SupervisorHandle::start(
        Arc::new(directory),
        move |key: &u32| {
            assert_ne!(*key, PANICKY_KEY, "init refuses this key");
            for_init.inits.fetch_add(1, Ordering::SeqCst);
            Tracked {
                value: 0,
                log: Vec::new(),
                counters: Arc::clone(&for_init),
            }
        },
        SupervisorConfig {
            idle_timeout,
            name: "test".to_owned(),
        },
    )
    .await
    .expect("supervisor starts");
    (handle, counters)
}

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("test step timed out")
}

/// Poll `condition` until it holds (bounded by `LIMIT`).
async fn eventually<F: Future<Output = bool>>(mut condition: impl FnMut() -> F) {
    bounded(async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_different_users_run_in_parallel_off_the_runtime() {
    let (handle, _) = start(LONG).await;
    // Six users on two workers: on the workers this takes >= 600 ms, serially 1200 ms.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for key in 0..6u32 {
        let handle = handle.clone();
        tasks.spawn(async move {
            handle
                .run(&key, |_| std::thread::sleep(Duration::from_millis(200)))
                .await
        });
    }
    bounded(async {
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("job");
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(450), "took {elapsed:?}");
    assert_eq!(handle.active_users().await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_user_never_overlap() {
    let (handle, counters) = start(LONG).await;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (handle, in_flight, most) = (handle.clone(), in_flight.clone(), most.clone());
        tasks.spawn(async move {
            handle
                .run(&1, move |state| {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    state.value += 1;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                })
                .await
        });
    }
    bounded(async {
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("job");
        }
    })
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 1);
    let total = bounded(handle.run(&1, |state| state.value))
        .await
        .expect("job");
    assert_eq!(total, 8);
    assert_eq!(counters.inits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_from_one_caller_run_in_submission_order_on_one_state() {
    let (handle, counters) = start(LONG).await;
    for i in 0..20u32 {
        // Inline and blocking-pool jobs share one queue and one state.
        let job = move |state: &mut Tracked| state.log.push(i);
        let ran = if i % 3 == 0 {
            bounded(handle.run_inline(&1, job)).await
        } else {
            bounded(handle.run(&1, job)).await
        };
        ran.expect("job");
    }
    let log = bounded(handle.run(&1, |state| state.log.clone()))
        .await
        .expect("job");
    assert_eq!(log, (0..20).collect::<Vec<_>>());
    assert_eq!(counters.inits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_actor_retires_drops_its_state_and_respawns_fresh() {
    // Long enough that the actor is still there when counted right after a job.
    let (handle, counters) = start(Duration::from_millis(300)).await;
    bounded(handle.run(&1, |state| state.value = 42))
        .await
        .expect("job");
    assert_eq!(handle.active_users().await, 1);
    eventually(|| async { handle.active_users().await == 0 }).await;
    assert_eq!(counters.drops.load(Ordering::SeqCst), 1);

    let value = bounded(handle.run(&1, |state| state.value))
        .await
        .expect("job");
    assert_eq!(value, 0, "a fresh state, not the retired one");
    assert_eq!(counters.inits.load(Ordering::SeqCst), 2);
    assert_eq!(handle.active_users().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_actor_does_not_retire() {
    // Generous margins: gaps between jobs must stay far below the timeout even on a
    // loaded machine.
    let (handle, counters) = start(Duration::from_millis(250)).await;
    // One long job spans the idle timeout; the actor must not count it as idleness.
    bounded(handle.run(&1, |_| std::thread::sleep(Duration::from_millis(400))))
        .await
        .expect("job");
    for _ in 0..10 {
        bounded(handle.run(&1, |state| state.value += 1))
            .await
            .expect("job");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters.inits.load(Ordering::SeqCst), 1);
    assert_eq!(counters.drops.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_retirement_never_loses_or_duplicates_a_job() {
    // A 1 ms idle timeout makes actors retire between almost every pair of jobs, so
    // submissions keep racing retirements.
    let (handle, counters) = start(Duration::from_millis(1)).await;
    let executed = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..16u32 {
        let (handle, executed) = (handle.clone(), executed.clone());
        tasks.spawn(async move {
            let key = caller % 4;
            let mut ok = 0usize;
            for i in 0..25u32 {
                let executed = executed.clone();
                handle
                    .run(&key, move |state| {
                        executed.fetch_add(1, Ordering::SeqCst);
                        state.value += 1;
                    })
                    .await
                    .expect("no job is lost to retirement");
                ok += 1;
                let pause = u64::from((caller * 7 + i * 13) % 5);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            ok
        });
    }
    let ok = bounded(async {
        let mut ok = 0;
        while let Some(result) = tasks.join_next().await {
            ok += result.expect("task");
        }
        ok
    })
    .await;
    assert_eq!(ok, 16 * 25);
    assert_eq!(
        executed.load(Ordering::SeqCst),
        ok,
        "each job ran exactly once"
    );
    assert!(
        counters.inits.load(Ordering::SeqCst) > 4,
        "actors did retire during the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_user_racing_jobs_runs_each_job_at_most_once() {
    let (handle, _) = start(LONG).await;
    let executed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let stopper = {
        let (handle, done) = (handle.clone(), done.clone());
        tokio::spawn(async move {
            let mut stops = 0usize;
            while !done.load(Ordering::SeqCst) {
                handle.stop_user(&1).await;
                stops += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stops
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (handle, executed) = (handle.clone(), executed.clone());
        tasks.spawn(async move {
            let mut ok = 0usize;
            for _ in 0..25 {
                let executed = executed.clone();
                let result = handle
                    .run(&1, move |_| {
                        executed.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(300));
                    })
                    .await;
                match result {
                    Ok(()) => ok += 1,
                    Err(ActorError::Unavailable) => {}
                    Err(other) => panic!("unexpected error {other:?}"),
                }
            }
            ok
        });
    }
    let ok = bounded(async {
        let mut ok = 0;
        while let Some(result) = tasks.join_next().await {
            ok += result.expect("task");
        }
        ok
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let stops = bounded(stopper).await.expect("stopper");
    assert!(stops > 1);
    assert!(ok > 0, "most jobs get through");
    assert_eq!(
        executed.load(Ordering::SeqCst),
        ok,
        "a job ran if and only if run returned Ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_job_discards_only_that_users_state() {
    let (handle, counters) = start(LONG).await;
    bounded(handle.run(&1, |state| state.value = 42))
        .await
        .expect("job");
    bounded(handle.run(&2, |state| state.value = 7))
        .await
        .expect("job");

    let result = bounded(handle.run(&1, |_| -> () { panic!("job blew up") })).await;
    assert!(matches!(result, Err(ActorError::JobPanicked)), "{result:?}");
    assert_eq!(
        counters.drops.load(Ordering::SeqCst),
        1,
        "panicked state dropped"
    );

    let fresh = bounded(handle.run(&1, |state| state.value))
        .await
        .expect("job");
    assert_eq!(fresh, 0, "the next job gets a fresh state");
    let other = bounded(handle.run(&2, |state| state.value))
        .await
        .expect("job");
    assert_eq!(other, 7, "other users are untouched");
    assert_eq!(counters.inits.load(Ordering::SeqCst), 3);
    assert_eq!(handle.active_users().await, 2);
}

/// On a one-thread runtime, a job on the runtime's thread is one that ran inline.
#[tokio::test(flavor = "current_thread")]
async fn inline_jobs_run_on_the_actors_task_once_the_state_exists() {
    let (handle, counters) = start(LONG).await;
    let runtime = std::thread::current().id();
    let here = || std::thread::current().id();
    // Building the state may read the database: the blocking pool, even for an inline job.
    let first = bounded(handle.run_inline(&1, move |state| {
        state.value = 1;
        here()
    }))
    .await
    .expect("job");
    assert_ne!(
        first, runtime,
        "the first job builds the state off the runtime"
    );
    let second = bounded(handle.run_inline(&1, move |state| {
        state.value += 1;
        (here(), state.value)
    }))
    .await
    .expect("job");
    assert_eq!(second, (runtime, 2), "inline, on the same state");
    let blocking = bounded(handle.run(&1, move |_| here())).await.expect("job");
    assert_ne!(blocking, runtime, "`run` stays on the blocking pool");
    assert_eq!(counters.inits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_inline_job_discards_the_state() {
    let (handle, counters) = start(LONG).await;
    bounded(handle.run_inline(&1, |state| state.value = 42))
        .await
        .expect("job");
    let result = bounded(handle.run_inline(&1, |_| -> () { panic!("inline job blew up") })).await;
    assert!(matches!(result, Err(ActorError::JobPanicked)), "{result:?}");
    assert_eq!(counters.drops.load(Ordering::SeqCst), 1, "state dropped");
    let fresh = bounded(handle.run_inline(&1, |state| state.value))
        .await
        .expect("job");
    assert_eq!(fresh, 0, "the next job gets a fresh state");
    assert_eq!(counters.inits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_init_reports_job_panicked_and_spares_the_supervisor() {
    let (handle, _) = start(LONG).await;
    let ran = Arc::new(AtomicBool::new(false));
    let ran_in_job = ran.clone();
    let result = bounded(handle.run(&PANICKY_KEY, move |_| {
        ran_in_job.store(true, Ordering::SeqCst)
    }))
    .await;
    assert!(matches!(result, Err(ActorError::JobPanicked)), "{result:?}");
    assert!(!ran.load(Ordering::SeqCst));
    bounded(handle.run(&1, |state| state.value += 1))
        .await
        .expect("other users still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_user_waits_for_the_job_in_progress_then_drops_state() {
    let (handle, counters) = start(LONG).await;
    bounded(handle.stop_user(&9)).await; // unknown user: nothing to wait for

    let started = Arc::new(AtomicBool::new(false));
    let job = {
        let (handle, started) = (handle.clone(), started.clone());
        tokio::spawn(async move {
            handle
                .run(&1, move |state| {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    state.value = 1;
                    "finished"
                })
                .await
        })
    };
    eventually(|| async { started.load(Ordering::SeqCst) }).await;
    bounded(handle.stop_user(&1)).await;
    assert_eq!(counters.drops.load(Ordering::SeqCst), 1);
    assert_eq!(handle.active_users().await, 0);
    let result = bounded(job).await.expect("task");
    assert_eq!(result.expect("the job in progress completes"), "finished");

    let value = bounded(handle.run(&1, |state| state.value))
        .await
        .expect("job");
    assert_eq!(value, 0, "a later job starts from fresh state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_jobs_in_flight_and_refuses_later_jobs() {
    let (handle, counters) = start(LONG).await;
    bounded(handle.run(&2, |state| state.value = 1))
        .await
        .expect("job");
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let job = {
        let (handle, started, finished) = (handle.clone(), started.clone(), finished.clone());
        tokio::spawn(async move {
            handle
                .run(&1, move |_| {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    finished.store(true, Ordering::SeqCst);
                })
                .await
        })
    };
    eventually(|| async { started.load(Ordering::SeqCst) }).await;
    bounded(handle.shutdown()).await;
    assert!(
        finished.load(Ordering::SeqCst),
        "shutdown waited for the job"
    );
    bounded(job)
        .await
        .expect("task")
        .expect("job in flight completed");
    assert_eq!(
        counters.drops.load(Ordering::SeqCst),
        2,
        "every state dropped"
    );

    let later = bounded(handle.run(&1, |_| ())).await;
    assert!(matches!(later, Err(ActorError::ShuttingDown)), "{later:?}");
    bounded(handle.shutdown()).await; // idempotent
    assert_eq!(handle.active_users().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_shuts_down() {
    let (handle, counters) = start(LONG).await;
    bounded(handle.run(&1, |_| ())).await.expect("job");
    drop(handle);
    eventually(|| async { counters.drops.load(Ordering::SeqCst) == 1 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_maps_directory_answers() {
    let (handle, _) = start(LONG).await;
    assert_eq!(handle.resolve("bob-key").expect("known"), 2);
    let unknown = handle.resolve("nobody");
    assert!(
        matches!(unknown, Err(ActorError::UnknownCredential)),
        "{unknown:?}"
    );
    let broken = handle.resolve("broken");
    assert!(
        matches!(broken, Err(ActorError::Directory(Broken))),
        "{broken:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_supervisors_coexist_with_the_same_keys() {
    let (collection, _) = start(LONG).await;
    let (media, _) = start(LONG).await;
    bounded(collection.run(&1, |state| state.value = 1))
        .await
        .expect("job");
    let value = bounded(media.run(&1, |state| state.value))
        .await
        .expect("job");
    assert_eq!(value, 0, "separate supervisors keep separate states");
    bounded(collection.shutdown()).await;
    bounded(media.run(&1, |_| ()))
        .await
        .expect("media unaffected");
}
