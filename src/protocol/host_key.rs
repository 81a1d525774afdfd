//! `hostKey`: log in with user name and password, receive the key later requests carry.

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub(crate) struct HostKeyRequest {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "p")]
    pub password: String,
}

// The password must never reach a log line through Debug.
impl std::fmt::Debug for HostKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKeyRequest")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct HostKeyResponse {
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let r: HostKeyRequest = serde_json::from_str(r#"{"u":"me","p":"pw"}"#).unwrap();
        assert_eq!((r.user.as_str(), r.password.as_str()), ("me", "pw"));
        assert!(!format!("{r:?}").contains("pw"));
        let out = serde_json::to_string(&HostKeyResponse { key: "k".into() }).unwrap();
        assert_eq!(out, r#"{"key":"k"}"#);
        assert!(serde_json::from_str::<HostKeyRequest>(r#"{"u":"me"}"#).is_err());
    }
}
