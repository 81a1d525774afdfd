//! What each admin request does to the database: the same code whether a running server got
//! it through its socket or the command line opened a stopped server's file. What a running
//! server must then do in memory is returned as an [`Aftermath`] (a stopped server has
//! nothing in memory to fix). Blocking: runs on the blocking pool in the server.

use std::path::{Path, PathBuf};

use super::protocol::{DeviceInfo, Reply, Request, UserInfo};
use crate::auth::{check_phc, validate_user_name, PasswordError, UserRef};
use crate::store::{
    DeviceSummary, HostKeyHash, RestoreOutcome, Store, StoreError, UserSource, UserSummary,
};

/// Hex characters of a device id as `user devices` shows it: 48 bits, plenty to tell one
/// user's devices apart.
pub const DEVICE_ID_LEN: usize = 12;
/// Shortest prefix `user revoke --device` accepts, so a slip of the finger cannot match.
const MIN_DEVICE_ID_LEN: usize = 6;

/// What a request runs against.
pub struct Context<'a> {
    pub store: &'a Store,
    /// The users file the server (or the command's configuration) names, whose users
    /// `passwd` and `remove` leave to it.
    pub users_file: Option<&'a Path>,
    pub now_ms: i64,
}

pub struct Outcome {
    pub reply: Reply,
    pub aftermath: Aftermath,
}

/// What a running server must do after the database changed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aftermath {
    Nothing,
    /// Every device of the user was logged out, or the user removed: their in-memory state
    /// goes, and with it any sync in progress and its staged rows.
    UserStopped {
        user: UserRef,
        removed: bool,
    },
    /// One device was logged out: a sync it started goes.
    DeviceRevoked {
        user: UserRef,
        device: HostKeyHash,
    },
    /// The user's live collection was replaced: syncs in progress and prepared downloads go.
    CollectionReplaced {
        user: UserRef,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadName(String),
    #[error("the password hash is not usable: {0}")]
    BadHash(#[source] PasswordError),
    #[error("user {0} already exists; use `ankisyncd user passwd {0}` to change the password")]
    Exists(String),
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error(
        "user {name} is managed by the users file {}: change or remove the line there, \
         then reload the server (SIGHUP)",
        file.display()
    )]
    ManagedByFile { name: String, file: PathBuf },
    #[error(
        "a device id is {MIN_DEVICE_ID_LEN} to 64 hex characters, as `ankisyncd user devices \
         {name}` shows them"
    )]
    BadDeviceId { name: String },
    #[error("{name} has no device {id} (see `ankisyncd user devices {name}`)")]
    NoSuchDevice { name: String, id: String },
    #[error("{id} matches {count} devices of {name}: give more of the id")]
    AmbiguousDevice {
        name: String,
        id: String,
        count: usize,
    },
    #[error(
        "{0} has no previous collection to restore (keep_generations keeps one per full upload)"
    )]
    NothingToRestore(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backup(#[from] crate::store::BackupError),
}

pub fn execute(cx: &Context<'_>, request: Request) -> Result<Outcome, AdminError> {
    let store = cx.store;
    let done = |reply| Outcome {
        reply,
        aftermath: Aftermath::Nothing,
    };
    Ok(match request {
        Request::AddUser {
            name,
            password_hash,
        } => {
            validate_user_name(&name).map_err(AdminError::BadName)?;
            check_phc(&password_hash).map_err(AdminError::BadHash)?;
            store
                .create_user(&name, &password_hash, UserSource::Command, cx.now_ms)?
                .ok_or_else(|| AdminError::Exists(name.clone()))?;
            done(Reply::UserAdded { name })
        }
        Request::SetPassword {
            name,
            password_hash,
        } => {
            check_phc(&password_hash).map_err(AdminError::BadHash)?;
            refuse_file_managed(cx, &name)?;
            let out = store
                .change_password(&name, &password_hash)?
                .ok_or_else(|| AdminError::NoSuchUser(name.clone()))?;
            Outcome {
                aftermath: Aftermath::UserStopped {
                    user: UserRef::new(out.id, &name),
                    removed: false,
                },
                reply: Reply::PasswordChanged {
                    name,
                    devices_logged_out: out.devices,
                },
            }
        }
        Request::RemoveUser { name } => {
            refuse_file_managed(cx, &name)?;
            let id = store
                .remove_user(&name)?
                .ok_or_else(|| AdminError::NoSuchUser(name.clone()))?;
            Outcome {
                aftermath: Aftermath::UserStopped {
                    user: UserRef::new(id, &name),
                    removed: true,
                },
                reply: Reply::UserRemoved { name },
            }
        }
        Request::ListUsers => done(Reply::Users {
            users: store.list_users()?.into_iter().map(user_info).collect(),
        }),
        Request::ListDevices { name } => {
            let (_, devices) = store
                .user_devices(&name)?
                .ok_or_else(|| AdminError::NoSuchUser(name.clone()))?;
            done(Reply::Devices {
                name,
                devices: devices.iter().map(device_info).collect(),
            })
        }
        Request::Revoke { name, device: None } => {
            let out = store
                .revoke_devices(&name)?
                .ok_or_else(|| AdminError::NoSuchUser(name.clone()))?;
            Outcome {
                aftermath: Aftermath::UserStopped {
                    user: UserRef::new(out.id, &name),
                    removed: false,
                },
                reply: Reply::Revoked {
                    name,
                    devices: out.devices,
                },
            }
        }
        Request::Revoke {
            name,
            device: Some(id),
        } => {
            let (user_id, devices) = store
                .user_devices(&name)?
                .ok_or_else(|| AdminError::NoSuchUser(name.clone()))?;
            let hash = find_device(&name, &id, &devices)?;
            if !store.revoke_device(user_id, &hash)? {
                // Logged out by someone else in the meantime.
                return Err(AdminError::NoSuchDevice { name, id });
            }
            Outcome {
                aftermath: Aftermath::DeviceRevoked {
                    user: UserRef::new(user_id, &name),
                    device: hash,
                },
                reply: Reply::Revoked { name, devices: 1 },
            }
        }
        Request::Backup { out } => {
            let report = crate::store::backup_to(store, &out)?;
            done(Reply::BackupWritten {
                path: report.path,
                bytes: report.bytes,
                elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
                users: report.users,
                rows: report.rows,
            })
        }
        Request::RestorePrevious { name } => match store.restore_previous(&name, cx.now_ms)? {
            RestoreOutcome::NoSuchUser => return Err(AdminError::NoSuchUser(name)),
            RestoreOutcome::NothingToRestore => return Err(AdminError::NothingToRestore(name)),
            RestoreOutcome::Restored { .. } => {
                let id = store
                    .user(&name)?
                    .map(|record| record.id)
                    .ok_or_else(|| AdminError::NoSuchUser(name.clone()))?;
                Outcome {
                    aftermath: Aftermath::CollectionReplaced {
                        user: UserRef::new(id, &name),
                    },
                    reply: Reply::Restored { name },
                }
            }
        },
    })
}

/// The users file would undo a change made behind its back at the next reload.
fn refuse_file_managed(cx: &Context<'_>, name: &str) -> Result<(), AdminError> {
    let Some(file) = cx.users_file else {
        return Ok(());
    };
    match cx.store.user(name)? {
        Some(record) if record.source == UserSource::UsersFile => Err(AdminError::ManagedByFile {
            name: name.to_string(),
            file: file.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

fn find_device(name: &str, id: &str, devices: &[DeviceSummary]) -> Result<HostKeyHash, AdminError> {
    let wanted = id.to_ascii_lowercase();
    if !(MIN_DEVICE_ID_LEN..=64).contains(&wanted.len())
        || !wanted.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Err(AdminError::BadDeviceId {
            name: name.to_string(),
        });
    }
    let matching: Vec<&DeviceSummary> = devices
        .iter()
        .filter(|d| hex::encode(d.hash).starts_with(&wanted))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.hash),
        [] => Err(AdminError::NoSuchDevice {
            name: name.to_string(),
            id: id.to_string(),
        }),
        many => Err(AdminError::AmbiguousDevice {
            name: name.to_string(),
            id: id.to_string(),
            count: many.len(),
        }),
    }
}

fn user_info(user: UserSummary) -> UserInfo {
    UserInfo {
        name: user.name,
        id: user.id,
        created: user.created,
        source: match user.source {
            UserSource::Command => "command",
            UserSource::Environment => "env",
            UserSource::UsersFile => "file",
        }
        .to_string(),
        devices: user.devices,
        last_seen: user.last_seen,
        client_versions: user.client_versions,
    }
}

fn device_info(device: &DeviceSummary) -> DeviceInfo {
    let mut id = hex::encode(device.hash);
    id.truncate(DEVICE_ID_LEN);
    DeviceInfo {
        id,
        first_seen: device.created,
        last_seen: device.last_seen,
        client_version: device.client_version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_password;
    use crate::store::{temp_store, HostKeyRecord};

    fn run(store: &Store, file: Option<&Path>, request: Request) -> Result<Outcome, AdminError> {
        execute(
            &Context {
                store,
                users_file: file,
                now_ms: 1_000,
            },
            request,
        )
    }

    fn add(name: &str) -> Request {
        Request::AddUser {
            name: name.into(),
            password_hash: hash_password("pw").unwrap(),
        }
    }

    fn key(store: &Store, user_id: u64, first: u8) -> HostKeyHash {
        let mut hash = [first; 32];
        hash[31] = 0;
        let record = HostKeyRecord {
            user_id,
            created: 7,
            client_version: "26.9.3".into(),
            last_seen: 9,
        };
        store.add_host_key(&hash, &record).unwrap();
        hash
    }

    #[test]
    fn add_checks_the_name_the_hash_and_that_the_user_is_new() {
        let (_dir, store) = temp_store();
        let out = run(&store, None, add("bob")).unwrap();
        assert_eq!(out.reply, Reply::UserAdded { name: "bob".into() });
        assert_eq!(out.aftermath, Aftermath::Nothing);
        let err = run(&store, None, add("bob")).err().unwrap();
        assert!(matches!(err, AdminError::Exists(_)), "{err}");
        let err = run(&store, None, add("a:b")).err().unwrap();
        assert!(matches!(err, AdminError::BadName(_)), "{err}");
        let plain = Request::AddUser {
            name: "eve".into(),
            password_hash: "hunter2".into(),
        };
        let err = run(&store, None, plain).err().unwrap();
        assert!(matches!(err, AdminError::BadHash(_)), "{err}");
        assert_eq!(store.list_users().unwrap().len(), 1);
    }

    #[test]
    fn revoking_one_device_names_it_by_a_prefix_of_its_hash() {
        let (_dir, store) = temp_store();
        run(&store, None, add("bob")).unwrap();
        let a = key(&store, 1, 0xab);
        let b = key(&store, 1, 0xac);
        let Reply::Devices { devices, .. } =
            run(&store, None, Request::ListDevices { name: "bob".into() })
                .unwrap()
                .reply
        else {
            panic!("not a device list")
        };
        let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["abababababab", "acacacacacac"]);
        assert_eq!((devices[0].first_seen, devices[0].last_seen), (7, 9));

        let revoke = |id: &str| Request::Revoke {
            name: "bob".into(),
            device: Some(id.into()),
        };
        for (id, wrong) in [
            ("ab", "short"),
            ("abxyzw", "not hex"),
            ("ffffff", "unknown"),
        ] {
            assert!(run(&store, None, revoke(id)).is_err(), "{wrong}");
        }
        let out = run(&store, None, revoke("ABABAB")).unwrap();
        assert_eq!(
            out.aftermath,
            Aftermath::DeviceRevoked {
                user: UserRef::new(1, "bob"),
                device: a,
            }
        );
        assert!(store.resolve_host_key(&a).unwrap().is_none());
        assert!(store.resolve_host_key(&b).unwrap().is_some());
    }

    #[test]
    fn two_devices_sharing_a_prefix_need_more_of_it() {
        let (_dir, store) = temp_store();
        run(&store, None, add("bob")).unwrap();
        let mut one = [0x11u8; 32];
        one[5] = 1;
        let mut two = [0x11u8; 32];
        two[5] = 2;
        let record = HostKeyRecord {
            user_id: 1,
            created: 1,
            client_version: String::new(),
            last_seen: 1,
        };
        store.add_host_key(&one, &record).unwrap();
        store.add_host_key(&two, &record).unwrap();
        let revoke = |id: &str| Request::Revoke {
            name: "bob".into(),
            device: Some(id.into()),
        };
        let err = run(&store, None, revoke("1111111111")).err().unwrap();
        assert!(matches!(err, AdminError::AmbiguousDevice { count: 2, .. }));
        run(&store, None, revoke("111111111102")).unwrap();
        assert!(store.resolve_host_key(&one).unwrap().is_some());
    }

    #[test]
    fn the_users_file_keeps_its_users_to_itself() {
        let (_dir, store) = temp_store();
        let phc = hash_password("pw").unwrap();
        store
            .set_source_users(UserSource::UsersFile, &[("f".into(), phc.clone())], 0)
            .unwrap();
        let file = Path::new("/etc/ankisyncd/users");
        let passwd = Request::SetPassword {
            name: "f".into(),
            password_hash: phc.clone(),
        };
        let err = run(&store, Some(file), passwd.clone()).err().unwrap();
        assert!(err.to_string().contains("/etc/ankisyncd/users"), "{err}");
        let remove = Request::RemoveUser { name: "f".into() };
        assert!(run(&store, Some(file), remove.clone()).is_err());
        // Without a users file configured, nothing would undo the change.
        run(&store, None, passwd).unwrap();
        let out = run(&store, None, remove).unwrap();
        assert_eq!(
            out.aftermath,
            Aftermath::UserStopped {
                user: UserRef::new(1, "f"),
                removed: true
            }
        );
    }

    #[test]
    fn listing_users_reports_source_devices_and_activity() {
        let (_dir, store) = temp_store();
        run(&store, None, add("bob")).unwrap();
        key(&store, 1, 1);
        let Reply::Users { users } = run(&store, None, Request::ListUsers).unwrap().reply else {
            panic!("not a user list")
        };
        assert_eq!(users.len(), 1);
        assert_eq!(
            (
                users[0].source.as_str(),
                users[0].devices,
                users[0].last_seen
            ),
            ("command", 1, Some(9))
        );
        assert_eq!(users[0].client_versions, ["26.9.3"]);
    }
}
