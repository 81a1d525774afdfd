//! `meta`: the client asks for the collection's state and decides between nothing to do, a
//! normal sync and a full sync.

use serde::{Deserialize, Serialize};

/// Sync protocol versions this server speaks (protocol.md §1.1).
pub(crate) const MIN_SYNC_VERSION: i64 = 8;
pub(crate) const MAX_SYNC_VERSION: i64 = 11;

#[derive(Debug, Deserialize)]
pub(crate) struct MetaRequest {
    /// Sync version. Wider than u8 so that an absurd value gets the "client too old" reply
    /// rather than a parse error.
    #[serde(rename = "v", default)]
    pub sync_version: i64,
    /// Client version string, for logs.
    #[serde(rename = "cv", default)]
    pub client_version: String,
}

/// All nine keys, spelled as clients require (note `hostNum` and `media_usn`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct MetaResponse {
    #[serde(rename = "mod")]
    pub modified_ms: i64,
    #[serde(rename = "scm")]
    pub schema_ms: i64,
    pub usn: i32,
    /// Server time in seconds: clients refuse to sync if it is off by more than 5 minutes.
    #[serde(rename = "ts")]
    pub server_time_secs: i64,
    pub msg: String,
    #[serde(rename = "cont")]
    pub should_continue: bool,
    #[serde(rename = "hostNum")]
    pub host_number: u32,
    pub empty: bool,
    pub media_usn: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let r: MetaRequest = serde_json::from_str(r#"{"v":11,"cv":"anki,26.09"}"#).unwrap();
        assert_eq!(r.sync_version, 11);
        let r: MetaRequest = serde_json::from_str(r#"{"v":300}"#).unwrap();
        assert_eq!(r.sync_version, 300);
        let out = MetaResponse {
            modified_ms: 1,
            schema_ms: 2,
            usn: 3,
            server_time_secs: 4,
            msg: String::new(),
            should_continue: true,
            host_number: 0,
            empty: true,
            media_usn: 5,
        };
        let v: serde_json::Value = serde_json::to_value(&out).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "cont",
                "empty",
                "hostNum",
                "media_usn",
                "mod",
                "msg",
                "scm",
                "ts",
                "usn"
            ]
        );
    }
}
