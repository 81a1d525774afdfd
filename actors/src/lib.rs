//! The ractor layer of ankisyncd: one supervisor per kind of per-user work, one actor
//! per live user. It owns message passing, lifetimes and the per-user write lock, and
//! is generic over the work it serializes. It must never know about Anki, collections or
//! the database schema: domain code hands it plain closures and a [`Directory`], and never
//! imports ractor itself.

mod directory;
mod error;
mod handle;
mod job;
mod supervisor;
mod user;

#[cfg(test)]
mod tests;

pub use directory::Directory;
pub use error::ActorError;
pub use handle::{SupervisorConfig, SupervisorHandle};
