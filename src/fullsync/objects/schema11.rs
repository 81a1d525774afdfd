//! Reads the legacy objects of a schema-11 collection, where they already are
//! legacy JSON: the `conf`, `models`, `decks`, `dconf` and `tags` columns of
//! the `col` row.
//!
//! Objects are passed through verbatim (only their container shape is
//! checked), because the sync protocol carries exactly these shapes and the
//! official server keeps unknown keys too. This module must never rewrite an
//! object's content or fill in defaults.

use rusqlite::types::ValueRef;
use serde_json::Value;

use super::{JsonObject, LegacyObjects, ObjectsError};

pub(super) fn read(conn: &rusqlite::Connection) -> Result<LegacyObjects, ObjectsError> {
    let columns = conn
        .query_row(
            "SELECT conf, models, decks, dconf, tags FROM col",
            [],
            |row| {
                let mut texts = Vec::with_capacity(5);
                for idx in 0..5 {
                    texts.push(text_of(row.get_ref(idx)?));
                }
                Ok(texts)
            },
        )
        .map_err(ObjectsError::sqlite("reading the col row"))?;
    let mut columns = columns.into_iter();
    let mut next = |name: &'static str| -> Result<JsonObject, ObjectsError> {
        let text = columns.next().flatten().ok_or(ObjectsError::LegacyJson {
            column: name,
            problem: "not UTF-8 text".into(),
        })?;
        parse_object(name, &text)
    };
    let conf = next("conf")?;
    let models = next("models")?;
    let decks = next("decks")?;
    let dconf = next("dconf")?;
    let tags = next("tags")?;

    let mut config: Vec<(String, Value)> = conf.into_iter().collect();
    config.sort_by(|a, b| a.0.cmp(&b.0));

    let mut tag_list = Vec::with_capacity(tags.len());
    for (name, usn) in tags {
        let usn = usn
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| ObjectsError::LegacyJson {
                column: "tags",
                problem: format!("tag {name:?}: usn {usn} is not a 32-bit integer"),
            })?;
        tag_list.push((name, usn));
    }

    Ok(LegacyObjects {
        notetypes: keyed_objects("models", models)?,
        decks: keyed_objects("decks", decks)?,
        deck_configs: keyed_objects("dconf", dconf)?,
        config,
        tags: tag_list,
    })
}

/// Old clients wrote these columns as text; a blob holding UTF-8 is accepted
/// as well since SQLite does not enforce declared types.
fn text_of(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            std::str::from_utf8(bytes).ok().map(str::to_owned)
        }
        _ => None,
    }
}

fn parse_object(column: &'static str, text: &str) -> Result<JsonObject, ObjectsError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ObjectsError::LegacyJson {
            column,
            problem: format!("expected a JSON object, found {}", kind_of(&other)),
        }),
        Err(err) => Err(ObjectsError::LegacyJson {
            column,
            problem: format!("invalid JSON: {err}"),
        }),
    }
}

/// The maps are keyed by the object id written as a decimal string.
fn keyed_objects(
    column: &'static str,
    map: JsonObject,
) -> Result<Vec<(i64, JsonObject)>, ObjectsError> {
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        let id: i64 = key.parse().map_err(|_| ObjectsError::LegacyJson {
            column,
            problem: format!("key {key:?} is not an integer id"),
        })?;
        match value {
            Value::Object(obj) => out.push((id, obj)),
            other => {
                return Err(ObjectsError::LegacyJson {
                    column,
                    problem: format!("{key}: expected a JSON object, found {}", kind_of(&other)),
                })
            }
        }
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
