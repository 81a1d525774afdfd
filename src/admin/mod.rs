//! Live user management: the admin socket a running server listens on, and the requests
//! every `ankisyncd user …` command is made of. A command goes through the socket when a
//! server answers on it, and runs the very same [`execute`] on the file itself when no
//! server holds it; a running server then also fixes what it holds in memory (`live`).
//! The users file is applied here too, since a reload changes users the same way.

mod client;
mod execute;
mod live;
mod protocol;
mod socket;
mod users_file;

pub use client::{send, ClientError};
pub use execute::{execute, AdminError, Context};
pub use protocol::{Reply, Request};
pub use socket::{socket_path, SocketError};

pub(crate) use socket::AdminSocket;
pub(crate) use users_file::{apply_users_file, reload_users_file, ApplyError};
