//! The errors this crate reports. It owns the public [`ActorError`] and the internal
//! [`Failure`] that travels back to a waiting caller without knowing the directory's
//! error type; it must never carry a job's result or a credential.

/// Why a supervisor call did not produce the job's (or the lookup's) result.
#[derive(Debug, thiserror::Error)]
pub enum ActorError<E> {
    /// The credential is not known to the directory.
    #[error("unknown credential")]
    UnknownCredential,
    /// The directory failed to look the credential up.
    #[error("directory lookup failed")]
    Directory(#[source] E),
    /// The job (or the state `init` run before it, or the directory lookup) panicked.
    /// The user's state was discarded; the next job starts from a fresh one.
    #[error("the job panicked")]
    JobPanicked,
    /// The supervisor is shutting down or gone; the job was not executed.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    /// The user's actor could not be spawned; the job was not executed.
    #[error("could not spawn the user actor: {0}")]
    Spawn(String),
    /// The job kept being handed back because its user's actor was stopped
    /// (`stop_user`) before it could start it, more times than the retry budget
    /// allows. The job was not executed.
    #[error("the user actor kept stopping before it could run the job")]
    Unavailable,
    /// The job was started but its result never came back (the runtime is going away).
    /// Whether it completed is unknown.
    #[error("the job was interrupted before it reported a result")]
    Interrupted,
}

/// A failure decided away from the caller, by someone who does not know `D::Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Panicked,
    ShuttingDown,
    Spawn(String),
}

impl<E> From<Failure> for ActorError<E> {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Panicked => ActorError::JobPanicked,
            Failure::ShuttingDown => ActorError::ShuttingDown,
            Failure::Spawn(why) => ActorError::Spawn(why),
        }
    }
}
