//! Host keys: the token a client receives at login and sends with every later request.
//! Random 128-bit values (not derived from the password as the official server does), so a
//! key can be revoked alone and a leaked database does not reveal them: only blake3 hashes are
//! stored. The one exception is the official server's own derived key, which `import` may
//! accept so that devices coming from that server keep their login (README, "Logins").

use rand::RngCore;

use super::env_users::{EnvUser, Secret};
use crate::store::HostKeyHash;

pub fn new_host_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash_host_key(key: &str) -> HostKeyHash {
    *blake3::hash(key.as_bytes()).as_bytes()
}

/// The key the official server hands this user at every login: the hex SHA-1 of the
/// `SYNC_USERn` value as written (`name:password`, or `name:<hash>` with
/// `PASSWORDS_HASHED`). `import` accepts it so that devices coming from that server need not
/// log in again; unlike our keys it follows from the credentials.
pub fn official_host_key(user: &EnvUser) -> String {
    use sha1::{Digest, Sha1};
    let secret = match &user.secret {
        Secret::Plain(text) | Secret::Phc(text) => text,
    };
    hex::encode(Sha1::digest(format!("{}:{secret}", user.name).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_hex_and_hash_stably() {
        let a = new_host_key();
        let b = new_host_key();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(hash_host_key(&a), hash_host_key(&a));
        assert_ne!(hash_host_key(&a), hash_host_key(&b));
    }

    #[test]
    fn the_official_key_is_the_sha1_of_the_declaration() {
        let env = crate::config::env_map(&[("SYNC_USER1", "alice:pw")]);
        let users = super::super::env_users(&env).unwrap();
        // What the official server returned to a client logging in as alice:pw.
        assert_eq!(
            official_host_key(&users[0]),
            "579e7fa764f43a98d0fa5a30dcd5401f868bbe6d"
        );
    }
}
