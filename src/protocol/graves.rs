//! Deletions as the protocol carries them: `start`'s reply and `applyGraves`' request.

use serde::{Deserialize, Deserializer, Serialize};

/// `{"cards": [ids], "notes": [ids], "decks": [ids]}`. Old clients send ids as numeric
/// strings, and may omit lists; both are accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Graves {
    #[serde(default, deserialize_with = "lenient_ids")]
    pub cards: Vec<i64>,
    #[serde(default, deserialize_with = "lenient_ids")]
    pub notes: Vec<i64>,
    #[serde(default, deserialize_with = "lenient_ids")]
    pub decks: Vec<i64>,
}

impl Graves {
    pub(crate) fn is_empty(&self) -> bool {
        self.cards.is_empty() && self.notes.is_empty() && self.decks.is_empty()
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApplyGravesRequest {
    pub chunk: Graves,
}

fn lenient_ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    let values: Option<Vec<serde_json::Value>> = Option::deserialize(deserializer)?;
    values
        .unwrap_or_default()
        .into_iter()
        .map(|value| {
            super::rows::lenient_i64(&value)
                .ok_or_else(|| serde::de::Error::custom(format!("not an id: {value}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_be_strings_and_lists_missing() {
        let g: Graves = serde_json::from_str(r#"{"cards":[1,"2"],"notes":null}"#).unwrap();
        assert_eq!(g.cards, [1, 2]);
        assert!(g.notes.is_empty() && g.decks.is_empty());
        assert!(serde_json::from_str::<Graves>(r#"{"cards":["x"]}"#).is_err());
    }
}
