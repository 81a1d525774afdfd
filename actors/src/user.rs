//! One user's actor: it owns that user's in-memory state `S` and is the user's write
//! lock, running one job at a time while holding its mailbox: on tokio's blocking pool, or
//! on its own task for a job its caller placed inline (microseconds, never blocking).
//! It also notices its own idleness and tells the supervisor, which alone decides to
//! retire it. It must never run a job on an async worker thread unless it was placed
//! inline, never run two jobs at once, and never stop itself (the supervisor must know
//! first, or a job could be forwarded to an actor that is already gone).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::error::Failure;
use crate::job::{panic_message, BoxedJob, Envelope, Placement};
use crate::supervisor::{SupervisorMsg, UserKey};

/// Builds a fresh state for a user.
pub(crate) type Init<K, S> = Arc<dyn Fn(&K) -> S + Send + Sync>;

/// Idle checks never fire faster than this, so a zero timeout cannot spin.
const MIN_CHECK_DELAY: Duration = Duration::from_millis(1);

pub(crate) enum UserMsg<S> {
    Run(Envelope<S>),
    IdleCheck,
}

pub(crate) struct UserActor<K, S> {
    pub(crate) key: K,
    pub(crate) init: Init<K, S>,
    pub(crate) supervisor: ActorRef<SupervisorMsg<K, S>>,
    pub(crate) idle_timeout: Duration,
    pub(crate) name: Arc<str>,
}

pub(crate) struct UserState<S> {
    /// `None` until the first job builds it, and again after a job panicked.
    state: Option<S>,
    /// `Run` messages taken off the mailbox; the supervisor compares it with what it
    /// forwarded to know the mailbox holds no job before retiring this actor.
    received: u64,
    last_done: Instant,
}

/// What the blocking task hands back to the actor.
struct Ran<S> {
    state: Option<S>,
    panic: Option<String>,
}

impl<K: UserKey, S: Send + 'static> UserActor<K, S> {
    fn arm_idle_check(&self, myself: &ActorRef<UserMsg<S>>, after: Duration) {
        // The timer task is detached: if the actor is gone by then, the send just fails.
        drop(myself.send_after(after.max(MIN_CHECK_DELAY), || UserMsg::IdleCheck));
    }

    /// Run a job the caller placed inline, on this task, when the state exists; building
    /// the state (which may read the database) and anything else go to the blocking pool.
    async fn run(&self, job: BoxedJob<S>, placement: Placement, user: &mut UserState<S>) {
        match (placement, user.state.as_mut()) {
            (Placement::Inline, Some(state)) => {
                if let Err(panicked) = job.run(state) {
                    // As on the blocking pool: discard the state, then tell the caller.
                    let state = user.state.take();
                    let _ = catch_unwind(AssertUnwindSafe(|| drop(state)));
                    self.report_panic(&panicked.report());
                }
            }
            _ => self.run_job(job, user).await,
        }
    }

    fn report_panic(&self, message: &str) {
        tracing::warn!(
            supervisor = %self.name,
            key = ?self.key,
            panic = %message,
            "job panicked; user state discarded"
        );
    }

    async fn run_job(&self, job: BoxedJob<S>, user: &mut UserState<S>) {
        let state = user.state.take();
        let init = Arc::clone(&self.init);
        let key = self.key.clone();
        // The job owns its reply channel, so its result reaches the caller even if this
        // actor were killed while awaiting; awaiting here is what holds the user's lock.
        let task = tokio::task::spawn_blocking(move || {
            let mut state = match state {
                Some(state) => state,
                None => match catch_unwind(AssertUnwindSafe(|| init(&key))) {
                    Ok(state) => state,
                    Err(payload) => {
                        job.fail(Failure::Panicked);
                        return Ran {
                            state: None,
                            panic: Some(format!("state init: {}", panic_message(payload.as_ref()))),
                        };
                    }
                },
            };
            match job.run(&mut state) {
                Ok(()) => Ran {
                    state: Some(state),
                    panic: None,
                },
                // A panicked job may have left the state half-updated: discard it here,
                // on the blocking pool, and only then tell the caller, so a caller that
                // sees `JobPanicked` knows the state is gone.
                Err(panicked) => {
                    let _ = catch_unwind(AssertUnwindSafe(|| drop(state)));
                    Ran {
                        state: None,
                        panic: Some(panicked.report()),
                    }
                }
            }
        });
        match task.await {
            Ok(ran) => {
                user.state = ran.state;
                if let Some(message) = ran.panic {
                    self.report_panic(&message);
                }
            }
            Err(err) => {
                // Only reachable if the runtime is shutting down (the task never ran) or a
                // panic escaped the guards above; either way the state is gone.
                user.state = None;
                tracing::warn!(supervisor = %self.name, key = ?self.key, error = %err, "job task failed");
            }
        }
    }
}

impl<K: UserKey, S: Send + 'static> Actor for UserActor<K, S> {
    type Msg = UserMsg<S>;
    type State = UserState<S>;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // One timer chain per actor: each check re-arms the next, so there is never more
        // than one pending, however many jobs run.
        self.arm_idle_check(&myself, self.idle_timeout);
        Ok(UserState {
            state: None,
            received: 0,
            last_done: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        user: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            UserMsg::Run(envelope) => {
                user.received += 1;
                let placement = envelope.placement();
                if let Some(job) = envelope.open() {
                    self.run(job, placement, user).await;
                }
                user.last_done = Instant::now();
            }
            UserMsg::IdleCheck => {
                let idle_for = user.last_done.elapsed();
                if idle_for >= self.idle_timeout {
                    // The supervisor may decline (a job is already on its way); keep checking.
                    let _ = self.supervisor.send_message(SupervisorMsg::Idle {
                        key: self.key.clone(),
                        actor: myself.get_id(),
                        received: user.received,
                    });
                    self.arm_idle_check(&myself, self.idle_timeout);
                } else {
                    self.arm_idle_check(&myself, self.idle_timeout - idle_for);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        user: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Dropping a state may close files or databases: do it on the blocking pool, and
        // before the supervisor hears of the exit, so a successor never coexists with it.
        if let Some(state) = user.state.take() {
            if let Err(err) = tokio::task::spawn_blocking(move || drop(state)).await {
                tracing::warn!(supervisor = %self.name, key = ?self.key, error = %err, "dropping user state failed");
            }
        }
        Ok(())
    }
}
