//! The supervisor actor: it owns the map from user key to user actor, and is the only
//! place that spawns, retires or stops user actors. Every job passes through it on its
//! way to a user actor, so spawning, forwarding and retiring are decided in one order:
//! a job is never forwarded to an actor that has been told to stop, and a key never has
//! two actors at once (a successor is spawned only after its predecessor has exited and
//! dropped its state). It must never run a job or block on one.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent,
};

use crate::error::Failure;
use crate::job::Envelope;
use crate::user::{Init, UserActor, UserMsg};

/// The bounds of [`crate::Directory::Key`], named once.
pub(crate) trait UserKey: Clone + Eq + Hash + Debug + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Debug + Send + Sync + 'static> UserKey for T {}

pub(crate) enum SupervisorMsg<K, S> {
    Submit {
        key: K,
        envelope: Envelope<S>,
    },
    /// A user actor has had no job for the idle timeout, having taken `received` jobs.
    Idle {
        key: K,
        actor: ActorId,
        received: u64,
    },
    StopUser {
        key: K,
        reply: RpcReplyPort<()>,
    },
    ActiveUsers(RpcReplyPort<usize>),
    /// `None` when sent by the last handle being dropped: nobody waits.
    Shutdown(Option<RpcReplyPort<()>>),
}

pub(crate) struct SupervisorActor<K, S> {
    name: Arc<str>,
    idle_timeout: Duration,
    init: Init<K, S>,
}

impl<K, S> SupervisorActor<K, S> {
    pub(crate) fn new(name: Arc<str>, idle_timeout: Duration, init: Init<K, S>) -> Self {
        SupervisorActor {
            name,
            idle_timeout,
            init,
        }
    }
}

pub(crate) struct SupervisorState<K, S> {
    users: HashMap<K, Entry<S>>,
    /// Supervision events name actors, not keys.
    keys: HashMap<ActorId, K>,
    shutting_down: bool,
    shutdown_waiters: Vec<RpcReplyPort<()>>,
}

struct Entry<S> {
    actor: ActorRef<UserMsg<S>>,
    /// Jobs sent to `actor`; equal to what it has received means its mailbox holds none.
    forwarded: u64,
    phase: Phase<S>,
    stop_waiters: Vec<RpcReplyPort<()>>,
}

enum Phase<S> {
    Live,
    /// The actor was told to stop (or is dying); jobs for the key wait here for its
    /// exit, then go to a fresh actor.
    Stopping {
        why: &'static str,
        pending: VecDeque<Envelope<S>>,
    },
}

impl<S: Send + 'static> Entry<S> {
    fn stop(&mut self, why: &'static str) {
        if let Phase::Live = self.phase {
            self.phase = Phase::Stopping {
                why,
                pending: VecDeque::new(),
            };
            // A job in progress finishes first; jobs still queued in its mailbox are
            // dropped and bounce back to their callers, who resubmit them.
            self.actor.stop(None);
        }
    }

    fn forward(&mut self, envelope: Envelope<S>) {
        match &mut self.phase {
            Phase::Stopping { pending, .. } => pending.push_back(envelope),
            Phase::Live => match self.actor.send_message(UserMsg::Run(envelope)) {
                Ok(()) => self.forwarded += 1,
                // The actor died without being told to (a bug path): its exit event is on
                // its way, so park the job until then.
                Err(MessagingErr::SendErr(UserMsg::Run(envelope))) => {
                    self.phase = Phase::Stopping {
                        why: "died",
                        pending: VecDeque::from([envelope]),
                    };
                }
                // The envelope was dropped inside the error and bounced to its caller.
                Err(_) => {}
            },
        }
    }
}

impl<K: UserKey, S: Send + 'static> SupervisorActor<K, S> {
    async fn spawn_user<'a>(
        &self,
        myself: &ActorRef<SupervisorMsg<K, S>>,
        key: K,
        state: &'a mut SupervisorState<K, S>,
    ) -> Result<&'a mut Entry<S>, String> {
        let handler = UserActor {
            key: key.clone(),
            init: Arc::clone(&self.init),
            supervisor: myself.clone(),
            idle_timeout: self.idle_timeout,
            name: Arc::clone(&self.name),
        };
        // Unnamed: names are global in ractor, and two supervisors may share keys.
        let (actor, _join) = Actor::spawn_linked(None, handler, (), myself.get_cell())
            .await
            .map_err(|err| err.to_string())?;
        tracing::debug!(supervisor = %self.name, key = ?key, "user actor spawned");
        state.keys.insert(actor.get_id(), key.clone());
        let entry = state.users.entry(key).insert_entry(Entry {
            actor,
            forwarded: 0,
            phase: Phase::Live,
            stop_waiters: Vec::new(),
        });
        Ok(entry.into_mut())
    }

    async fn submit(
        &self,
        myself: &ActorRef<SupervisorMsg<K, S>>,
        key: K,
        envelope: Envelope<S>,
        state: &mut SupervisorState<K, S>,
    ) {
        if state.shutting_down {
            envelope.refuse(Failure::ShuttingDown);
            return;
        }
        if let Some(entry) = state.users.get_mut(&key) {
            entry.forward(envelope);
            return;
        }
        match self.spawn_user(myself, key, state).await {
            Ok(entry) => entry.forward(envelope),
            Err(why) => envelope.refuse(Failure::Spawn(why)),
        }
    }

    async fn exited(
        &self,
        myself: &ActorRef<SupervisorMsg<K, S>>,
        id: ActorId,
        failure: Option<String>,
        state: &mut SupervisorState<K, S>,
    ) {
        let Some(key) = state.keys.remove(&id) else {
            return;
        };
        let Some(entry) = state.users.remove(&key) else {
            return;
        };
        let (why, pending) = match entry.phase {
            Phase::Live => ("died", VecDeque::new()),
            Phase::Stopping { why, pending } => (why, pending),
        };
        match failure {
            Some(error) => {
                tracing::warn!(supervisor = %self.name, key = ?key, error = %error, "user actor failed")
            }
            None => tracing::debug!(supervisor = %self.name, key = ?key, why, "user actor retired"),
        }
        for waiter in entry.stop_waiters {
            let _ = waiter.send(());
        }
        if !pending.is_empty() {
            if state.shutting_down {
                pending
                    .into_iter()
                    .for_each(|envelope| envelope.refuse(Failure::ShuttingDown));
            } else {
                match self.spawn_user(myself, key, state).await {
                    Ok(entry) => pending
                        .into_iter()
                        .for_each(|envelope| entry.forward(envelope)),
                    Err(why) => pending
                        .into_iter()
                        .for_each(|envelope| envelope.refuse(Failure::Spawn(why.clone()))),
                }
            }
        }
        finish_shutdown_if_done(myself, state);
    }
}

fn finish_shutdown_if_done<K, S>(
    myself: &ActorRef<SupervisorMsg<K, S>>,
    state: &mut SupervisorState<K, S>,
) {
    if state.shutting_down && state.users.is_empty() {
        for waiter in state.shutdown_waiters.drain(..) {
            let _ = waiter.send(());
        }
        // Drain rather than stop: messages already queued get their answer
        // (`ShuttingDown`), later sends fail at once.
        let _ = myself.drain();
    }
}

impl<K: UserKey, S: Send + 'static> Actor for SupervisorActor<K, S> {
    type Msg = SupervisorMsg<K, S>;
    type State = SupervisorState<K, S>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            users: HashMap::new(),
            keys: HashMap::new(),
            shutting_down: false,
            shutdown_waiters: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Submit { key, envelope } => {
                self.submit(&myself, key, envelope, state).await
            }
            SupervisorMsg::Idle {
                key,
                actor,
                received,
            } => {
                if let Some(entry) = state.users.get_mut(&key) {
                    // Retire only if no job was forwarded since the actor took its last
                    // one: then its mailbox is empty and stopping it loses nothing.
                    if entry.actor.get_id() == actor && entry.forwarded == received {
                        entry.stop("idle");
                    }
                }
            }
            SupervisorMsg::StopUser { key, reply } => match state.users.get_mut(&key) {
                Some(entry) => {
                    entry.stop_waiters.push(reply);
                    entry.stop("stopped");
                }
                None => {
                    let _ = reply.send(());
                }
            },
            SupervisorMsg::ActiveUsers(reply) => {
                let _ = reply.send(state.users.len());
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutdown_waiters.extend(reply);
                if !state.shutting_down {
                    state.shutting_down = true;
                    for entry in state.users.values_mut() {
                        entry.stop("shutdown");
                        if let Phase::Stopping { pending, .. } = &mut entry.phase {
                            pending
                                .drain(..)
                                .for_each(|envelope| envelope.refuse(Failure::ShuttingDown));
                        }
                    }
                }
                finish_shutdown_if_done(&myself, state);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Overridden because the default stops the supervisor when any child exits.
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                self.exited(&myself, cell.get_id(), None, state).await
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                self.exited(&myself, cell.get_id(), Some(error.to_string()), state)
                    .await
            }
            _ => {}
        }
        Ok(())
    }
}
