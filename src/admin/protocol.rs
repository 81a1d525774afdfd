//! The admin socket's messages: one JSON line in (a [`Request`]), one JSON line out (a
//! [`Response`]). The command line and the server are one binary, so these types are the
//! whole contract; a request the server does not know (it is older than the command) is
//! answered with an error saying so. Passwords never travel: the command hashes them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One thing to do. Adding a command is a variant here and an arm in `execute`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    AddUser {
        name: String,
        password_hash: String,
    },
    SetPassword {
        name: String,
        password_hash: String,
    },
    RemoveUser {
        name: String,
    },
    ListUsers,
    ListDevices {
        name: String,
    },
    /// `device` is an id from `ListDevices` (or a prefix of one naming a single device);
    /// `None` logs every device of the user out.
    Revoke {
        name: String,
        device: Option<String>,
    },
    RestorePrevious {
        name: String,
    },
    /// A consistent copy of the database at `out`, an absolute path (the server's working
    /// folder is not the command's).
    Backup {
        out: PathBuf,
    },
}

impl Request {
    /// What the server's log says about the request: never a password hash.
    pub fn describe(&self) -> String {
        match self {
            Request::AddUser { name, .. } => format!("user add {name}"),
            Request::SetPassword { name, .. } => format!("user passwd {name}"),
            Request::RemoveUser { name } => format!("user remove {name}"),
            Request::ListUsers => "user list".into(),
            Request::ListDevices { name } => format!("user devices {name}"),
            Request::Revoke { name, device: None } => format!("user revoke {name}"),
            Request::Revoke {
                name,
                device: Some(id),
            } => format!("user revoke {name} --device {id}"),
            Request::RestorePrevious { name } => format!("user restore-previous {name}"),
            Request::Backup { out } => format!("backup {}", out.display()),
        }
    }

    /// Whether the answer shows devices' activity, which a running server saves first.
    pub fn shows_activity(&self) -> bool {
        matches!(self, Request::ListUsers | Request::ListDevices { .. })
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    UserAdded {
        name: String,
    },
    PasswordChanged {
        name: String,
        devices_logged_out: usize,
    },
    UserRemoved {
        name: String,
    },
    Users {
        users: Vec<UserInfo>,
    },
    Devices {
        name: String,
        devices: Vec<DeviceInfo>,
    },
    Revoked {
        name: String,
        devices: usize,
    },
    Restored {
        name: String,
    },
    BackupWritten {
        path: PathBuf,
        bytes: u64,
        elapsed_ms: u64,
        users: u64,
        rows: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub id: u64,
    /// Unix seconds.
    pub created: i64,
    /// "command", "env" or "file": who manages the user.
    pub source: String,
    pub devices: usize,
    /// The latest request of any of the user's devices (Unix seconds), if any is logged in.
    pub last_seen: Option<i64>,
    pub client_versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// What `user revoke NAME --device ID` takes: the start of the stored hash of the
    /// device's host key (never the key).
    pub id: String,
    /// Unix seconds of the login.
    pub first_seen: i64,
    /// Unix seconds of the latest request.
    pub last_seen: i64,
    pub client_version: String,
}

/// The answer: what was done, or why not (a message for the operator).
pub type Response = Result<Reply, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_and_never_show_hashes() {
        let request = Request::AddUser {
            name: "bob".into(),
            password_hash: "$argon2id$secret".into(),
        };
        let line = serde_json::to_string(&request).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""command":"add_user""#), "{line}");
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);
        assert_eq!(format!("{request:?}"), "user add bob");
        let revoke = Request::Revoke {
            name: "bob".into(),
            device: Some("abc123".into()),
        };
        assert_eq!(revoke.describe(), "user revoke bob --device abc123");
    }

    #[test]
    fn responses_round_trip() {
        let ok: Response = Ok(Reply::Revoked {
            name: "bob".into(),
            devices: 2,
        });
        let line = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), ok);
        let refused: Response = Err("no user named bob".into());
        let line = serde_json::to_string(&refused).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), refused);
    }
}
