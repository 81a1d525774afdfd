//! Who may sync: password hashing and verification, host keys, users declared in the
//! environment or the users file, devices' latest activity, and the failed-login limiter.
//! Pure logic over `store`; no HTTP here.

mod activity;
mod directory;
mod env_users;
mod host_key;
mod password;
mod rate_limit;
mod users_file;

pub use activity::{flush_now, flush_periodically, DeviceActivity};
pub use directory::{StoreDirectory, UserRef};
pub use env_users::{apply_env_users, env_users, EnvUser, EnvUserError, EnvUserOutcome};
pub use host_key::{hash_host_key, new_host_key, official_host_key};
pub(crate) use password::decoy_hash;
pub use password::{check_phc, hash_password, verify_password, PasswordError};
pub use rate_limit::LoginLimiter;
pub use users_file::{read_users_file, FileUser, UsersFileError};

/// Reject names that cannot round-trip through `SYNC_USERn=name:pass` or would garble logs.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("user name must not be empty".into());
    }
    if name.len() > 255 {
        return Err("user name must be at most 255 bytes".into());
    }
    if name.contains(':') {
        return Err("user name must not contain ':'".into());
    }
    if name.chars().any(char::is_control) {
        return Err("user name must not contain control characters".into());
    }
    if name.trim() != name {
        return Err("user name must not start or end with whitespace".into());
    }
    Ok(())
}
