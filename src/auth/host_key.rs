//! Host keys: the token a client receives at login and sends with every later request.
//! Random 128-bit values (not derived from the password as the official server does), so a
//! key can be revoked alone and a leaked database does not reveal them: only blake3 hashes are
//! stored.

use rand::RngCore;

use crate::store::HostKeyHash;

pub fn new_host_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash_host_key(key: &str) -> HostKeyHash {
    *blake3::hash(key.as_bytes()).as_bytes()
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
}
