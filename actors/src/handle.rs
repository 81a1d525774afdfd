//! The public face of a supervisor: a cheap, cloneable handle that domain code holds.
//! It owns the caller's side of a job's journey (submitting, resubmitting a bounced
//! job, waiting for the result) and credential lookups. It must never expose ractor
//! types, and never run job code itself.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};

use crate::directory::Directory;
use crate::error::ActorError;
use crate::job::{self, Envelope, Placement};
use crate::supervisor::{SupervisorActor, SupervisorMsg};
use crate::user::Init;

/// How many times a job may be handed back (its user's actor stopped with the job
/// still queued) before `run` gives up. Each hand-back needs a `stop_user` or a
/// shutdown to land on that very job, so this is never reached in normal operation.
const MAX_ATTEMPTS: usize = 8;

/// How a supervisor runs its users' actors.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// A user actor with no job for this long stops and drops its state.
    pub idle_timeout: Duration,
    /// Names the supervisor in logs, e.g. "collection" or "media".
    pub name: String,
}

/// A handle to a running supervisor. Clones share one supervisor; dropping the last
/// clone shuts it down gracefully in the background (as [`SupervisorHandle::shutdown`]
/// does, without waiting).
pub struct SupervisorHandle<D: Directory, S: Send + 'static> {
    inner: Arc<Inner<D, S>>,
}

struct Inner<D: Directory, S: Send + 'static> {
    directory: Arc<D>,
    actor: ActorRef<SupervisorMsg<D::Key, S>>,
}

impl<D: Directory, S: Send + 'static> Drop for Inner<D, S> {
    fn drop(&mut self) {
        // Without this, a forgotten supervisor and its users' states would live as long
        // as the runtime.
        let _ = self.actor.send_message(SupervisorMsg::Shutdown(None));
    }
}

impl<D: Directory, S: Send + 'static> Clone for SupervisorHandle<D, S> {
    fn clone(&self) -> Self {
        SupervisorHandle {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D: Directory, S: Send + 'static> std::fmt::Debug for SupervisorHandle<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorHandle")
            .field("actor", &self.inner.actor.get_id())
            .finish_non_exhaustive()
    }
}

impl<D: Directory, S: Send + 'static> SupervisorHandle<D, S> {
    /// Spawn the supervisor actor. `init` builds a fresh state for a user; it runs on
    /// the blocking pool, just before the first job of each user actor (and before the
    /// next job after one panicked).
    pub async fn start(
        directory: Arc<D>,
        init: impl Fn(&D::Key) -> S + Send + Sync + 'static,
        config: SupervisorConfig,
    ) -> Result<Self, ActorError<D::Error>> {
        let init: Init<D::Key, S> = Arc::new(init);
        let handler = SupervisorActor::new(config.name.into(), config.idle_timeout, init);
        let (actor, _join) = Actor::spawn(None, handler, ())
            .await
            .map_err(|err| ActorError::Spawn(err.to_string()))?;
        Ok(SupervisorHandle {
            inner: Arc::new(Inner { directory, actor }),
        })
    }

    /// Resolve a client credential to a user key through [`Directory::resolve`], on the
    /// calling thread: it is one point read, cheaper than a hop to the blocking pool and
    /// back. Unknown credentials give [`ActorError::UnknownCredential`].
    pub fn resolve(&self, credential: &str) -> Result<D::Key, ActorError<D::Error>> {
        match self.inner.directory.resolve(credential) {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(ActorError::UnknownCredential),
            Err(err) => Err(ActorError::Directory(err)),
        }
    }

    /// Run `job` on the user's actor (spawning it if needed), on the blocking pool, after
    /// that user's jobs submitted before it; returns the job's result. The job runs
    /// exactly once, or an error is returned and it never ran ([`ActorError::Interrupted`]
    /// excepted). Dropping the returned future does not cancel a job already submitted.
    pub async fn run<R: Send + 'static>(
        &self,
        key: &D::Key,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, ActorError<D::Error>> {
        self.submit(key, job, Placement::BlockingPool).await
    }

    /// As [`SupervisorHandle::run`], but the job runs on the actor's own task (an async
    /// worker) once the user's state exists: for jobs that take microseconds and never
    /// block (in-memory work and point reads), where the hop to the blocking pool and back
    /// would cost more than the job itself. Still one job at a time per user, in order with
    /// the user's other jobs.
    pub async fn run_inline<R: Send + 'static>(
        &self,
        key: &D::Key,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, ActorError<D::Error>> {
        self.submit(key, job, Placement::Inline).await
    }

    async fn submit<R: Send + 'static>(
        &self,
        key: &D::Key,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
        placement: Placement,
    ) -> Result<R, ActorError<D::Error>> {
        let (mut job, reply) = job::erase(job);
        for _ in 0..MAX_ATTEMPTS {
            let (envelope, bounced) = Envelope::seal(job, placement);
            let submit = SupervisorMsg::Submit {
                key: key.clone(),
                envelope,
            };
            if self.inner.actor.send_message(submit).is_err() {
                // The supervisor is draining or gone; the job is dropped unrun.
                return Err(ActorError::ShuttingDown);
            }
            match bounced.await {
                // Lost on the way (its actor stopped with it still queued): resubmit.
                Ok(returned) => job = returned,
                // It left its envelope: it was run or refused, and the reply says which.
                Err(_) => {
                    return match reply.await {
                        Ok(Ok(value)) => Ok(value),
                        Ok(Err(failure)) => Err(failure.into()),
                        Err(_) => Err(ActorError::Interrupted),
                    };
                }
            }
        }
        Err(ActorError::Unavailable)
    }

    /// Stop a user's actor now (user removed or revoked) and wait until its state is
    /// dropped, which happens after the job in progress, if any. Jobs still queued for
    /// that user are resubmitted and run on a fresh actor with fresh state: this does
    /// not fence the key, so stop sending jobs for a removed user first.
    pub async fn stop_user(&self, key: &D::Key) {
        let key = key.clone();
        // Failure means the supervisor is gone, and with it every user actor.
        let _ = self
            .inner
            .actor
            .call(|reply| SupervisorMsg::StopUser { key, reply }, None)
            .await;
    }

    /// Number of live user actors (retiring ones included until they have exited).
    pub async fn active_users(&self) -> usize {
        match self
            .inner
            .actor
            .call(SupervisorMsg::ActiveUsers, None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(count)) => count,
            _ => 0,
        }
    }

    /// Graceful shutdown: refuse new jobs with [`ActorError::ShuttingDown`], let jobs in
    /// progress finish, stop every user actor (dropping its state), then stop the
    /// supervisor. Jobs queued behind a job in progress are refused, not run.
    /// Idempotent; every caller returns once the supervisor has stopped.
    pub async fn shutdown(&self) {
        let _ = self
            .inner
            .actor
            .call(|reply| SupervisorMsg::Shutdown(Some(reply)), None)
            .await;
        self.inner.actor.wait(None).await.ok();
    }
}
