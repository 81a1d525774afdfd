//! A job in transit. It owns the type erasure of a caller's closure and the envelope
//! that carries it, whose one promise is: a job leaves its envelope either to be run
//! (exactly once), to be refused with a reason, or — if the envelope is dropped
//! anywhere on the way — back to its caller for a retry. It must never run a job or
//! decide where one goes.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use tokio::sync::oneshot;

use crate::error::Failure;

/// A caller's closure with its reply channel, erased over the result type so that
/// actors only need to know the state type `S`.
pub(crate) trait Job<S>: Send {
    /// Run against `state`, catching a panic. A result goes straight to the caller; a
    /// panic comes back to the actor, which discards the state before reporting it.
    fn run(self: Box<Self>, state: &mut S) -> Result<(), Panicked>;

    /// Tell the caller the job will not run.
    fn fail(self: Box<Self>, why: Failure);
}

pub(crate) type BoxedJob<S> = Box<dyn Job<S>>;

/// A job that panicked, whose caller has not been told yet.
pub(crate) struct Panicked {
    message: String,
    tell_caller: Box<dyn FnOnce() + Send>,
}

impl Panicked {
    /// Tell the caller its job panicked; returns the panic message for the log.
    pub(crate) fn report(self) -> String {
        (self.tell_caller)();
        self.message
    }
}

/// What the caller awaits once its job has left the envelope.
pub(crate) type Reply<R> = oneshot::Receiver<Result<R, Failure>>;

struct TypedJob<F, R> {
    f: F,
    reply: oneshot::Sender<Result<R, Failure>>,
}

impl<S, F, R> Job<S> for TypedJob<F, R>
where
    F: FnOnce(&mut S) -> R + Send,
    R: Send + 'static,
{
    fn run(self: Box<Self>, state: &mut S) -> Result<(), Panicked> {
        let TypedJob { f, reply } = *self;
        // The state is discarded after a panic, so observing it half-updated is impossible.
        match catch_unwind(AssertUnwindSafe(|| f(state))) {
            Ok(value) => {
                // The caller may have given up waiting; the job still ran exactly once.
                let _ = reply.send(Ok(value));
                Ok(())
            }
            Err(payload) => Err(Panicked {
                message: panic_message(payload.as_ref()),
                tell_caller: Box::new(move || {
                    let _ = reply.send(Err(Failure::Panicked));
                }),
            }),
        }
    }

    fn fail(self: Box<Self>, why: Failure) {
        let _ = self.reply.send(Err(why));
    }
}

/// Erase `f`, returning the job and the channel its result will arrive on.
pub(crate) fn erase<S, F, R>(f: F) -> (BoxedJob<S>, Reply<R>)
where
    S: 'static,
    F: FnOnce(&mut S) -> R + Send + 'static,
    R: Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    (Box::new(TypedJob { f, reply }), rx)
}

/// Where a user actor runs a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On tokio's blocking pool: anything that may block (a durable commit, file I/O) or
    /// run long.
    BlockingPool,
    /// On the actor's own task, an async worker: only for jobs that finish in microseconds
    /// and never block, where the hop to the blocking pool and back (two context switches)
    /// would cost more than the job.
    Inline,
}

/// Carries one job through the supervisor to a user actor.
pub(crate) struct Envelope<S> {
    job: Option<BoxedJob<S>>,
    bounce: Option<oneshot::Sender<BoxedJob<S>>>,
    placement: Placement,
}

impl<S> Envelope<S> {
    /// Seal `job`; if the envelope is dropped with the job still inside, the job
    /// arrives on the returned receiver. If the job leaves it (taken or refused), the
    /// receiver reports closed instead.
    pub(crate) fn seal(
        job: BoxedJob<S>,
        placement: Placement,
    ) -> (Self, oneshot::Receiver<BoxedJob<S>>) {
        let (bounce, rx) = oneshot::channel();
        let envelope = Envelope {
            job: Some(job),
            bounce: Some(bounce),
            placement,
        };
        (envelope, rx)
    }

    pub(crate) fn placement(&self) -> Placement {
        self.placement
    }

    /// Take the job out to run it. From here on it can no longer bounce.
    pub(crate) fn open(mut self) -> Option<BoxedJob<S>> {
        self.job.take()
    }

    /// Refuse the job: the caller gets `why`, the job never runs.
    pub(crate) fn refuse(mut self, why: Failure) {
        if let Some(job) = self.job.take() {
            job.fail(why);
        }
    }
}

impl<S> Drop for Envelope<S> {
    fn drop(&mut self) {
        // Lost in transit (a mailbox dropped by a stopping actor, a failed send):
        // hand the job back untouched so the caller can resubmit it.
        if let (Some(job), Some(bounce)) = (self.job.take(), self.bounce.take()) {
            let _ = bounce.send(job);
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_envelope_bounces_the_job_unrun() {
        let (job, mut reply) = erase(|s: &mut u32| {
            *s += 1;
            *s
        });
        let (envelope, mut bounce) = Envelope::seal(job, Placement::BlockingPool);
        drop(envelope);
        let job = bounce.try_recv().expect("job bounced");
        assert!(reply.try_recv().is_err(), "nothing was run");
        let mut state = 41;
        assert!(job.run(&mut state).is_ok());
        assert_eq!(reply.try_recv().expect("result"), Ok(42));
    }

    #[test]
    fn opened_envelope_does_not_bounce() {
        let (job, _reply) = erase(|_: &mut ()| ());
        let (envelope, mut bounce) = Envelope::seal(job, Placement::BlockingPool);
        let job = envelope.open();
        assert!(job.is_some());
        assert!(matches!(
            bounce.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn refused_envelope_reports_the_reason() {
        let (job, mut reply) = erase(|_: &mut ()| ());
        let (envelope, mut bounce) = Envelope::seal(job, Placement::BlockingPool);
        envelope.refuse(Failure::ShuttingDown);
        assert!(bounce.try_recv().is_err());
        assert_eq!(reply.try_recv().expect("reply"), Err(Failure::ShuttingDown));
    }

    #[test]
    fn panicking_job_tells_its_caller_only_when_reported() {
        let (job, mut reply) = erase(|_: &mut ()| -> () { panic!("boom") });
        let Err(panicked) = job.run(&mut ()) else {
            panic!("the job panicked")
        };
        assert!(matches!(
            reply.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!(panicked.report(), "boom");
        assert_eq!(reply.try_recv().expect("reply"), Err(Failure::Panicked));
    }
}
