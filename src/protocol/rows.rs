//! Chunks of notes, cards and reviews (`chunk`, `applyChunk`) and the positional JSON arrays
//! each row travels as. Numbers are read leniently (old clients send some as floats or
//! strings); rows are written exactly as the official server writes them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{CardRow, NoteRow, RevlogRow, SortField};

/// Rows per chunk, counted across the three kinds (the official CHUNK_SIZE).
pub(crate) const CHUNK_SIZE: usize = 250;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub done: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revlog: Vec<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApplyChunkRequest {
    pub chunk: Chunk,
}

/// An integer from a JSON number (floats truncated) or a numeric string.
pub(crate) fn lenient_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn int(row: &[Value], index: usize, what: &str) -> Result<i64, String> {
    row.get(index)
        .and_then(lenient_i64)
        .ok_or_else(|| format!("{what}: column {index} is not a number"))
}

fn text(row: &[Value], index: usize, what: &str) -> Result<String, String> {
    match row.get(index) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Ok(String::new()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!("{what}: column {index} is not text: {other}")),
    }
}

fn usn(row: &[Value], index: usize, what: &str) -> Result<i32, String> {
    let value = int(row, index, what)?;
    i32::try_from(value).map_err(|_| format!("{what}: usn {value} out of range"))
}

fn expect_len(row: &[Value], len: usize, what: &str) -> Result<(), String> {
    if row.len() < len {
        return Err(format!("{what}: {} columns, expected {len}", row.len()));
    }
    Ok(())
}

pub(crate) fn parse_note(row: &[Value]) -> Result<(i64, NoteRow), String> {
    expect_len(row, 11, "note")?;
    Ok((
        int(row, 0, "note")?,
        NoteRow {
            guid: text(row, 1, "note")?,
            mid: int(row, 2, "note")?,
            modified: int(row, 3, "note")?,
            usn: usn(row, 4, "note")?,
            tags: text(row, 5, "note")?,
            fields: text(row, 6, "note")?,
            // Sent empty; the receiver computes them from the notetype.
            sort_field: SortField::Text(String::new()),
            checksum: 0,
            flags: int(row, 9, "note").unwrap_or(0),
            data: text(row, 10, "note")?,
        },
    ))
}

pub(crate) fn parse_card(row: &[Value]) -> Result<(i64, CardRow), String> {
    expect_len(row, 18, "card")?;
    let i = |index| int(row, index, "card");
    Ok((
        i(0)?,
        CardRow {
            nid: i(1)?,
            did: i(2)?,
            ord: i(3)?,
            modified: i(4)?,
            usn: usn(row, 5, "card")?,
            ctype: i(6)?,
            queue: i(7)?,
            due: i(8)?,
            ivl: i(9)?,
            factor: i(10)?,
            reps: i(11)?,
            lapses: i(12)?,
            left: i(13)?,
            odue: i(14)?,
            odid: i(15)?,
            flags: i(16)?,
            data: text(row, 17, "card")?,
        },
    ))
}

pub(crate) fn parse_revlog(row: &[Value]) -> Result<(i64, RevlogRow), String> {
    expect_len(row, 9, "revlog")?;
    let i = |index| int(row, index, "revlog");
    Ok((
        i(0)?,
        RevlogRow {
            cid: i(1)?,
            usn: usn(row, 2, "revlog")?,
            ease: i(3)?,
            ivl: i(4)?,
            last_ivl: i(5)?,
            factor: i(6)?,
            time: i(7)?,
            rtype: i(8)?,
        },
    ))
}

/// `sfld` and `csum` go out empty and `flags`/`data` as stored, as the official sender does.
pub(crate) fn note_json(id: i64, n: &NoteRow) -> Vec<Value> {
    vec![
        id.into(),
        n.guid.clone().into(),
        n.mid.into(),
        n.modified.into(),
        n.usn.into(),
        n.tags.clone().into(),
        n.fields.clone().into(),
        "".into(),
        "".into(),
        n.flags.into(),
        n.data.clone().into(),
    ]
}

pub(crate) fn card_json(id: i64, c: &CardRow) -> Vec<Value> {
    vec![
        id.into(),
        c.nid.into(),
        c.did.into(),
        c.ord.into(),
        c.modified.into(),
        c.usn.into(),
        c.ctype.into(),
        c.queue.into(),
        c.due.into(),
        c.ivl.into(),
        c.factor.into(),
        c.reps.into(),
        c.lapses.into(),
        c.left.into(),
        c.odue.into(),
        c.odid.into(),
        c.flags.into(),
        c.data.clone().into(),
    ]
}

pub(crate) fn revlog_json(id: i64, r: &RevlogRow) -> Vec<Value> {
    vec![
        id.into(),
        r.cid.into(),
        r.usn.into(),
        r.ease.into(),
        r.ivl.into(),
        r.last_ivl.into(),
        r.factor.into(),
        r.time.into(),
        r.rtype.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_accept_floats_and_strings() {
        let card = serde_json::json!([
            1,
            2,
            3,
            0,
            1700000000.0,
            5,
            2,
            2,
            "123",
            10,
            2500,
            5,
            1,
            1001,
            0,
            0,
            0,
            ""
        ]);
        let (id, c) = parse_card(card.as_array().unwrap()).unwrap();
        assert_eq!((id, c.modified, c.due), (1, 1_700_000_000, 123));
        assert_eq!(card_json(id, &c)[8], serde_json::json!(123));
        let note = serde_json::json!([9, "g", 1, 2, 3, " a ", "x\u{1f}y", "", "", 0, ""]);
        let (id, n) = parse_note(note.as_array().unwrap()).unwrap();
        assert_eq!(note_json(id, &n), note.as_array().unwrap().clone());
        let review = serde_json::json!([1, 2, 3, 3, -600.0, 1, 2500, 6200, 1]);
        let (id, r) = parse_revlog(review.as_array().unwrap()).unwrap();
        assert_eq!(revlog_json(id, &r)[4], serde_json::json!(-600));
        assert!(parse_card(&[]).is_err());
        assert!(parse_note(serde_json::json!([1, 2]).as_array().unwrap()).is_err());
        let chunk: Chunk = serde_json::from_str(r#"{"done":true}"#).unwrap();
        assert!(chunk.done && chunk.cards.is_empty());
        assert_eq!(
            serde_json::to_string(&Chunk {
                done: true,
                ..Default::default()
            })
            .unwrap(),
            r#"{"done":true}"#
        );
    }
}
