//! Password hashes as PHC strings. New passwords get argon2id; verification also accepts
//! the PBKDF2 strings the official server uses with `PASSWORDS_HASHED`, so its users can
//! move over unchanged. Hashing is deliberately slow: call these on the blocking pool.

use argon2::Argon2;
use password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("not a PHC password hash string: {0}")]
    Malformed(String),
    #[error("unsupported password hash algorithm `{0}` (use argon2id or pbkdf2-sha256)")]
    Unsupported(String),
    #[error("cannot hash password: {0}")]
    Hash(String),
}

pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Check that a string is a PHC hash we can verify, for `PASSWORDS_HASHED` input.
pub fn check_phc(phc: &str) -> Result<(), PasswordError> {
    parse_supported(phc).map(|_| ())
}

/// Parse a PHC string whose algorithm we can verify.
fn parse_supported(phc: &str) -> Result<PasswordHash<'_>, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|e| PasswordError::Malformed(e.to_string()))?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" | "pbkdf2-sha256" | "pbkdf2-sha512" | "pbkdf2" => {
            Ok(parsed)
        }
        other => Err(PasswordError::Unsupported(other.to_string())),
    }
}

/// True if `password` matches `phc`. A malformed stored hash is an error, not a mismatch,
/// so it shows up in the log instead of as a mysterious failed login.
pub fn verify_password(password: &str, phc: &str) -> Result<bool, PasswordError> {
    let parsed = parse_supported(phc)?;
    let verifiers: [&dyn PasswordVerifier; 2] = [&Argon2::default(), &pbkdf2::Pbkdf2];
    Ok(parsed
        .verify_password(&verifiers, password.as_bytes())
        .is_ok())
}

/// A fixed hash to verify against when the user does not exist, so an unknown name costs
/// the same time as a wrong password and names cannot be probed by timing.
pub(crate) fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("decoy password").unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
             2GGa0PNWFmoZ0kbT3IFpwmnQW0xALfzvEy2XwJeTnLI"
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash_password("secret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("secret", &h).unwrap());
        assert!(!verify_password("Secret", &h).unwrap());
    }

    #[test]
    fn official_pbkdf2_hashes_verify() {
        // What the official server derives for the plain password "pass".
        let salt = SaltString::from_b64("tonuvYGpksNFQBlEmm3lxg").unwrap();
        let phc = pbkdf2::Pbkdf2
            .hash_password(b"pass", &salt)
            .unwrap()
            .to_string();
        assert!(phc.starts_with("$pbkdf2-sha256$"));
        assert!(verify_password("pass", &phc).unwrap());
        assert!(!verify_password("pas", &phc).unwrap());
    }

    #[test]
    fn garbage_hashes_are_errors() {
        assert!(verify_password("x", "not a hash").is_err());
        assert!(verify_password("x", "$md5$abc$def").is_err());
        assert!(check_phc("$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E").is_err());
    }

    #[test]
    fn decoy_is_verifiable() {
        assert!(!verify_password("anything", decoy_hash()).unwrap());
    }
}
