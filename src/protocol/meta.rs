//! `meta`: the client asks for the collection's state and decides between nothing to do, a
//! normal sync and a full sync.

use serde::{Deserialize, Serialize};

/// Sync protocol versions this server speaks (protocol.md §1.1).
pub(crate) const MIN_SYNC_VERSION: u8 = 8;
pub(crate) const MAX_SYNC_VERSION: u8 = 11;

#[derive(Debug, Deserialize)]
pub(crate) struct MetaRequest {
    /// Sync version. A byte, as on the official server: a missing or larger value is a
    /// malformed request (400), a byte outside 8..=11 "client too old" (501).
    #[serde(rename = "v")]
    pub sync_version: u8,
    /// Client version string, for logs. Optional here, though the official server requires
    /// it: it changes nothing, so a client that leaves it out is not turned away.
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
        let r: MetaRequest = serde_json::from_str(r#"{"v":7}"#).unwrap();
        assert_eq!((r.sync_version, r.client_version.as_str()), (7, ""));
        for bad in [
            r#"{"v":300}"#,
            r#"{"v":-1}"#,
            r#"{"cv":"x"}"#,
            r#"{"v":"11"}"#,
        ] {
            assert!(serde_json::from_str::<MetaRequest>(bad).is_err(), "{bad}");
        }
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
