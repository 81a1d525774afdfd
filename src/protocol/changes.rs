//! `applyChanges`: notetypes, decks, deck configs, tags, and (from the newer side) the
//! collection config and creation time, as legacy JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
pub(crate) struct ApplyChangesRequest {
    pub changes: Changes,
}

/// A notetype, deck or deck config as legacy JSON.
pub(crate) type JsonObject = Map<String, Value>;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Changes {
    #[serde(rename = "models", default)]
    pub notetypes: Vec<JsonObject>,
    /// `[decks, deck configs]`: a two-element array on the wire.
    #[serde(rename = "decks", default)]
    pub decks_and_configs: (Vec<JsonObject>, Vec<JsonObject>),
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(rename = "conf", default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
    #[serde(rename = "crt", default, skip_serializing_if = "Option::is_none")]
    pub created_secs: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let c: Changes =
            serde_json::from_str(r#"{"models":[],"decks":[[{"id":1}],[]],"tags":["a"]}"#).unwrap();
        assert_eq!(c.decks_and_configs.0.len(), 1);
        assert!(c.config.is_none());
        let out = serde_json::to_string(&Changes::default()).unwrap();
        assert_eq!(out, r#"{"models":[],"decks":[[],[]],"tags":[]}"#);
    }
}
