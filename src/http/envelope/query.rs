//! The query-string form of `GET /msync/begin?k=..&v=..` used by some older clients
//! (spec §2).

use bytes::Bytes;

use super::{Envelope, EnvelopeError, SyncRequest, LEGACY_SYNC_VERSION};

/// Turns the query of `GET /msync/begin` into the request a `POST /msync/begin` would
/// have produced: legacy envelope (plain response) and body `{"v": "<v>"}`. Both `k` and
/// `v` are required (a begin without a client version is a 400, spec §4.12); other
/// parameters are ignored.
pub(crate) fn decode_media_begin_query(query: Option<&str>) -> Result<SyncRequest, EnvelopeError> {
    let mut k = None;
    let mut v = None;
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(raw_name)
            .map_err(|problem| EnvelopeError::BadQuery(format!("parameter name {problem}")))?;
        let slot = match name.as_str() {
            "k" => &mut k,
            "v" => &mut v,
            _ => continue,
        };
        if slot.is_some() {
            return Err(EnvelopeError::BadQuery(format!(
                "duplicate parameter `{name}`"
            )));
        }
        let value = decode_component(raw_value)
            .map_err(|problem| EnvelopeError::BadQuery(format!("parameter `{name}` {problem}")))?;
        *slot = Some(value);
    }
    let missing = |name: &str| EnvelopeError::BadQuery(format!("missing parameter `{name}`"));
    let host_key = k.ok_or_else(|| missing("k"))?;
    let version = v.ok_or_else(|| missing("v"))?;
    let body = serde_json::to_vec(&serde_json::json!({ "v": version }))
        .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
    Ok(SyncRequest {
        envelope: Envelope::Legacy,
        sync_version: LEGACY_SYNC_VERSION,
        host_key,
        session_key: String::new(),
        client_version: version.clone(),
        body: Bytes::from(body),
        // Set as well so the caller can treat GET and multipart begin the same way.
        legacy_media_version: Some(version),
    })
}

/// `application/x-www-form-urlencoded` decoding (what the clients' HTTP library produces):
/// `+` is a space and `%XX` a byte. Malformed escapes and non-UTF-8 results are rejected
/// rather than passed through, since no real client sends them.
fn decode_component(raw: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = bytes.next().and_then(hex_digit);
                let low = bytes.next().and_then(hex_digit);
                match (high, low) {
                    (Some(high), Some(low)) => out.push(high << 4 | low),
                    _ => return Err("has a malformed percent-escape"),
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| "is not valid UTF-8 once decoded")
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}
