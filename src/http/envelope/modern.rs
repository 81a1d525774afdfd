//! The v11 envelope: `anki-sync` JSON header and zstd body.

use bytes::Bytes;
use http::HeaderValue;
use serde::Deserialize;

use super::{Codec, EnvelopeError, Limits, MAX_SYNC_VERSION, MIN_SYNC_VERSION};

/// The `anki-sync` header. Unknown fields are tolerated so that a future client adding one
/// is not locked out.
#[derive(Debug, Deserialize)]
pub(super) struct SyncHeader {
    pub(super) v: u8,
    pub(super) k: String,
    pub(super) c: String,
    pub(super) s: String,
}

pub(super) fn parse_header(value: &HeaderValue) -> Result<SyncHeader, EnvelopeError> {
    // serde would also accept `[v, k, c, s]` for a struct; clients send an object, and
    // anything else is not the documented header.
    if !is_json_object(value) {
        return Err(EnvelopeError::BadHeader("expected a JSON object".into()));
    }
    // Parsing the raw bytes rather than `to_str()` accepts UTF-8 in the client version
    // string, which `to_str()` would reject as non-ASCII.
    let header: SyncHeader = serde_json::from_slice(value.as_bytes())
        .map_err(|e| EnvelopeError::BadHeader(without_position(&e)))?;
    if !(MIN_SYNC_VERSION..=MAX_SYNC_VERSION).contains(&header.v) {
        return Err(EnvelopeError::UnsupportedVersion(header.v));
    }
    Ok(header)
}

fn is_json_object(value: &HeaderValue) -> bool {
    value.as_bytes().trim_ascii_start().first() == Some(&b'{')
}

/// Keys of an `anki-sync` header this server does not read (for a warning: a newer client
/// may add some). Empty when the header is absent or not a JSON object.
pub(crate) fn unknown_header_fields(value: &HeaderValue) -> Vec<String> {
    const KNOWN: [&str; 4] = ["v", "k", "c", "s"];
    if !is_json_object(value) {
        return Vec::new();
    }
    // Only the keys: every request carries this header, and its values are read (once)
    // by `parse_header`.
    type Keys = std::collections::BTreeMap<String, serde::de::IgnoredAny>;
    match serde_json::from_slice::<Keys>(value.as_bytes()) {
        Ok(keys) => keys
            .into_keys()
            .filter(|k| !KNOWN.contains(&k.as_str()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// serde_json appends "at line 1 column N", which means nothing to someone reading a
/// one-line header in a log.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message,
    }
}

pub(super) async fn decompress(compressed: Bytes, limits: &Limits) -> Result<Bytes, EnvelopeError> {
    // Clients always send a frame, but an empty body is not corrupt either; the caller
    // decides what an empty payload means for its method.
    if compressed.is_empty() {
        return Ok(Bytes::new());
    }
    super::decompress(Codec::Zstd, compressed, limits.max_decompressed).await
}
