//! `start`: open a sync session; the reply is the server's deletions since the client's
//! last sync.

use serde::Deserialize;

use super::Graves;

#[derive(Debug, Deserialize)]
pub(crate) struct StartRequest {
    /// The server usn as of the client's last sync: server objects with a usn at least this
    /// are new to the client.
    #[serde(rename = "minUsn")]
    pub min_usn: i32,
    /// The client's collection is newer than the server's: its `conf`/`crt` win.
    #[serde(rename = "lnewer", default)]
    pub client_is_newer: bool,
    /// Old clients send their deletions here instead of through `applyGraves`.
    #[serde(default)]
    pub graves: Option<Graves>,
}
