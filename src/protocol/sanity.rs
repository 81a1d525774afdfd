//! `sanityCheck2`: both sides' counts after the sync's changes, compared.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub(crate) struct SanityCheckRequest {
    pub client: Value,
}

/// `[[new, learn, review], cards, notes, revlog, graves, notetypes, decks, deck configs]`.
/// Due counts and graves are not compared (the official server zeroes them on both sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct SanityCounts(
    pub [u32; 3],
    pub u64,
    pub u64,
    pub u64,
    pub u64,
    pub u64,
    pub u64,
    pub u64,
);

impl SanityCounts {
    /// Read the client's counts leniently; anything unreadable makes the check fail.
    pub(crate) fn from_client(value: &Value) -> Option<SanityCounts> {
        let items = value.as_array()?;
        if items.len() < 8 {
            return None;
        }
        let n = |i: usize| {
            items[i]
                .as_u64()
                .or_else(|| items[i].as_f64().map(|f| f as u64))
        };
        Some(SanityCounts(
            [0, 0, 0],
            n(1)?,
            n(2)?,
            n(3)?,
            0,
            n(5)?,
            n(6)?,
            n(7)?,
        ))
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct SanityCheckResponse {
    pub status: &'static str,
    #[serde(rename = "c")]
    pub client: Option<SanityCounts>,
    #[serde(rename = "s")]
    pub server: Option<SanityCounts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ignore_due_and_graves() {
        let c = SanityCounts::from_client(&serde_json::json!([[1, 2, 3], 10, 5, 7, 99, 2, 3, 1]))
            .unwrap();
        assert_eq!(c, SanityCounts([0, 0, 0], 10, 5, 7, 0, 2, 3, 1));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            "[[0,0,0],10,5,7,0,2,3,1]"
        );
        assert!(SanityCounts::from_client(&serde_json::json!([1, 2])).is_none());
    }
}
