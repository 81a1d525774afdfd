//! The request/response envelope codec of the sync protocol. It owns the translation between
//! bytes on the wire and envelopes: the modern form (`anki-sync` JSON header plus a zstd
//! body, answered with a zstd body and `anki-original-size`), the legacy multipart form
//! (optionally gzip-compressed `data`, answered with plain bytes) and the query-string form
//! of `GET /msync/begin`. It must never know anything about collections, users, sessions or
//! which method is being called, and it must never buffer more than `Limits` allows: the
//! compressed size is checked while the body is being read and decompression stops one byte
//! past the cap, so a hostile client can cost at most `max_body` compressed plus
//! `max_decompressed` decompressed bytes per request.

mod legacy;
mod modern;
mod query;
mod stream;
mod zstd_ctx;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Read;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

pub(crate) use modern::unknown_header_fields;
pub(crate) use query::decode_media_begin_query;
pub(crate) use stream::{
    decode_post_to_file, encode_file, encode_packed, encode_precompressed_file, pack, Packed,
    Received,
};

/// The body type of every response: small replies are one buffer, full downloads a stream.
pub(crate) type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Name of the request header that marks the modern (v11) envelope.
pub(crate) const ANKI_SYNC_HEADER: &str = "anki-sync";
/// Response header carrying the uncompressed length of a modern response body.
pub(crate) const ORIGINAL_SIZE_HEADER: &str = "anki-original-size";
pub(crate) const MIN_SYNC_VERSION: u8 = 8;
pub(crate) const MAX_SYNC_VERSION: u8 = 11;
/// Legacy requests do not say which version they speak, so they are all taken to be v10
/// (spec §1.1): plain responses and schema-11 full downloads.
pub(crate) const LEGACY_SYNC_VERSION: u8 = 10;
/// The first version whose responses are zstd-compressed (spec §1.1).
const ZSTD_SYNC_VERSION: u8 = 11;

const MIB: u64 = 1024 * 1024;
const KIB: u64 = 1024;

/// Byte budgets for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Compressed bytes read from the wire; exceeding it is `TooLarge` (HTTP 413).
    pub max_body: u64,
    /// Bytes a request body may decompress to; exceeding it is `DecompressedTooLarge`.
    pub max_decompressed: u64,
}

impl Limits {
    /// Limits derived the way the official server derives them from
    /// `MAX_SYNC_PAYLOAD_MEGS` (spec §1.5): the body cap is that many MiB and the
    /// decompressed cap three times as much.
    pub fn from_payload_megs(megs: u64) -> Self {
        let max_body = megs.saturating_mul(MIB);
        Limits {
            max_body,
            max_decompressed: max_body.saturating_mul(3),
        }
    }
}

/// Tests use the official server's default `MAX_SYNC_PAYLOAD_MEGS` (100).
#[cfg(test)]
impl Default for Limits {
    fn default() -> Self {
        Limits::from_payload_megs(100)
    }
}

/// How the response to a request is encoded. It follows the request's envelope, except that
/// the official server answers a request with an `anki-sync` header declaring a version below
/// 11 in plain bytes, as it does every legacy request (spec §1.1: zstd ⇔ v ≥ 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// zstd body with `anki-original-size`: `anki-sync` requests of version 11.
    Modern,
    /// Plain bytes: multipart (+gzip) requests, `GET /msync/begin`, and `anki-sync` requests
    /// of versions 8–10.
    Legacy,
}

impl Envelope {
    /// The response form for a request with an `anki-sync` header of version `v`.
    fn for_header_version(v: u8) -> Envelope {
        if v >= ZSTD_SYNC_VERSION {
            Envelope::Modern
        } else {
            Envelope::Legacy
        }
    }
}

/// A request with its envelope removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub envelope: Envelope,
    /// From the header for modern requests; always 10 for legacy ones.
    pub sync_version: u8,
    pub host_key: String,
    /// May be empty: legacy clients omit it on some calls.
    pub session_key: String,
    /// Informational (logs); empty when a legacy client did not send `v`.
    pub client_version: String,
    /// The decompressed payload. Legacy requests without `data` get `{}`; a modern request
    /// with an empty body keeps it empty.
    pub body: Bytes,
    /// The multipart `v` field (or the `v` query parameter of `GET /msync/begin`). On
    /// `msync/begin` the caller replaces the body with `{"v": <this>}` (spec §2).
    pub legacy_media_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("bad anki-sync header: {0}")]
    BadHeader(String),
    #[error(
        "unsupported sync version {0} (this server speaks {MIN_SYNC_VERSION}..={MAX_SYNC_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("request has no anki-sync header and is not multipart/form-data with a boundary")]
    NotMultipart,
    #[error("malformed multipart body: {0}")]
    BadMultipart(String),
    #[error("invalid gzip data: {0}")]
    Gzip(String),
    #[error("decoding zstd body: {0}")]
    Zstd(String),
    #[error("request body exceeds {}", Size(*.limit))]
    TooLarge { limit: u64 },
    #[error("decompressed request body exceeds {}", Size(*.limit))]
    DecompressedTooLarge { limit: u64 },
    #[error("bad query string: {0}")]
    BadQuery(String),
    #[error("reading request body: {0}")]
    Body(String),
    #[error("encoding response: {0}")]
    Encode(String),
    /// The server could not write or read its scratch file (disk full, permissions).
    #[error("scratch file {}: {source}", path.display())]
    Storage {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl EnvelopeError {
    pub(crate) fn storage(path: &std::path::Path, source: std::io::Error) -> EnvelopeError {
        EnvelopeError::Storage {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The HTTP status to answer with. Clients show 400 as "check database" and 413 as a
    /// network error (spec §4.12); a transport failure is the client's side, hence 400.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            EnvelopeError::BadHeader(_)
            | EnvelopeError::UnsupportedVersion(_)
            | EnvelopeError::NotMultipart
            | EnvelopeError::BadMultipart(_)
            | EnvelopeError::Gzip(_)
            | EnvelopeError::Zstd(_)
            | EnvelopeError::BadQuery(_)
            | EnvelopeError::Body(_) => StatusCode::BAD_REQUEST,
            EnvelopeError::TooLarge { .. } | EnvelopeError::DecompressedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            EnvelopeError::Encode(_) | EnvelopeError::Storage { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Renders a byte count the way a person would write a configured limit.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => write!(f, "1 byte"),
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// Decodes a POST body. The envelope is chosen by the presence of the `anki-sync` header,
/// never by version (spec §1.2, §6.3).
pub async fn decode_post<B>(
    headers: &HeaderMap,
    body: B,
    limits: &Limits,
) -> Result<SyncRequest, EnvelopeError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(value) = headers.get(ANKI_SYNC_HEADER) {
        let header = modern::parse_header(value)?;
        reject_declared_oversize(headers, &body, limits)?;
        let compressed = read_body(body, limits).await?;
        let body = modern::decompress(compressed, limits).await?;
        return Ok(SyncRequest {
            envelope: Envelope::for_header_version(header.v),
            sync_version: header.v,
            host_key: header.k,
            session_key: header.s,
            client_version: header.c,
            body,
            legacy_media_version: None,
        });
    }
    let boundary = multipart_boundary(headers)?;
    reject_declared_oversize(headers, &body, limits)?;
    legacy::decode_multipart(boundary, body, limits).await
}

/// The boundary of a `multipart/form-data` request: without one, the request is in neither
/// envelope.
fn multipart_boundary(headers: &HeaderMap) -> Result<String, EnvelopeError> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|content_type| multer::parse_boundary(content_type).ok())
        .ok_or(EnvelopeError::NotMultipart)
}

/// The host key of a request with an `anki-sync` header and the form its response takes,
/// read from the header without touching the body, so an upload from a stranger is refused
/// before it is stored. `None` for multipart requests.
pub(crate) fn header_host_key(
    headers: &HeaderMap,
) -> Result<Option<(String, Envelope)>, EnvelopeError> {
    headers
        .get(ANKI_SYNC_HEADER)
        .map(|value| {
            modern::parse_header(value)
                .map(|header| (header.k, Envelope::for_header_version(header.v)))
        })
        .transpose()
}

/// Encodes a successful response body in the request's envelope.
pub fn encode_ok(envelope: &Envelope, body: Bytes) -> Result<Response<Full<Bytes>>, EnvelopeError> {
    let response = match envelope {
        Envelope::Modern => {
            let original_size = original_size_header(body.len())?;
            let compressed = zstd_ctx::compress(&body, zstd::DEFAULT_COMPRESSION_LEVEL)
                .map_err(|e| EnvelopeError::Encode(format!("zstd: {e}")))?;
            Response::builder()
                .status(StatusCode::OK)
                .header(ORIGINAL_SIZE_HEADER, original_size)
                .body(Full::new(Bytes::from(compressed)))
        }
        Envelope::Legacy => Response::builder()
            .status(StatusCode::OK)
            .body(Full::new(body)),
    };
    response.map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// The client parses `anki-original-size` as a u32 and refuses the response otherwise
/// (spec §1.3), so a larger body cannot be sent at all.
fn original_size_header(len: usize) -> Result<HeaderValue, EnvelopeError> {
    let len = u32::try_from(len).map_err(|_| {
        EnvelopeError::Encode(format!(
            "response of {len} bytes is too large for anki-original-size (u32)"
        ))
    })?;
    Ok(HeaderValue::from(len))
}

/// Fails before reading anything when the client already announced too much, so an
/// oversized upload is not even partly buffered.
fn reject_declared_oversize<B: http_body::Body>(
    headers: &HeaderMap,
    body: &B,
    limits: &Limits,
) -> Result<(), EnvelopeError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    let too_large = |n: u64| n > limits.max_body;
    if declared.is_some_and(too_large) || too_large(body.size_hint().lower()) {
        return Err(EnvelopeError::TooLarge {
            limit: limits.max_body,
        });
    }
    Ok(())
}

/// Reads the whole body, failing as soon as it passes `max_body`: chunked bodies have no
/// length to check up front.
async fn read_body<B>(mut body: B, limits: &Limits) -> Result<Bytes, EnvelopeError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| EnvelopeError::Body(e.into().to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len() as u64);
        if total > limits.max_body {
            return Err(EnvelopeError::TooLarge {
                limit: limits.max_body,
            });
        }
        // A body that arrives in one frame (the common case) is kept without copying.
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            None => rest.extend_from_slice(&data),
            Some(previous) => {
                rest.extend_from_slice(&previous);
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Zstd,
    Gzip,
}

impl Codec {
    fn error(self, message: String) -> EnvelopeError {
        match self {
            Codec::Zstd => EnvelopeError::Zstd(message),
            Codec::Gzip => EnvelopeError::Gzip(message),
        }
    }
}

/// Bodies up to this many compressed bytes are inflated on the request's own thread, with
/// output capped at [`INLINE_OUTPUT`]: a small sync step's body is a few KiB, and a hop to
/// the blocking pool and back costs more than inflating it (two context switches).
const INLINE_INPUT: usize = 64 * 1024;
/// What inline inflation may produce before the body goes to the blocking pool instead, so
/// that a small body that inflates hugely (up to `max_decompressed`) never stalls an async
/// worker for long.
const INLINE_OUTPUT: u64 = 1024 * 1024;

/// Decompresses a body: small ones inline, the rest (or one that inflates past
/// [`INLINE_OUTPUT`]) on the blocking pool, since inflating up to `max_decompressed`
/// (300 MiB by default) takes long enough to stall every other connection on an async
/// worker.
async fn decompress(codec: Codec, input: Bytes, limit: u64) -> Result<Bytes, EnvelopeError> {
    if input.len() <= INLINE_INPUT {
        match decompress_blocking(codec, &input, limit.min(INLINE_OUTPUT)) {
            Err(EnvelopeError::DecompressedTooLarge { .. }) if limit > INLINE_OUTPUT => {}
            done => return done,
        }
    }
    let task = tokio::task::spawn_blocking(move || decompress_blocking(codec, &input, limit));
    match task.await {
        Ok(result) => result,
        // A panic inside the decoder is a bug; surface it exactly as inline code would.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(EnvelopeError::Body(format!("decompression cancelled: {e}"))),
    }
}

fn decompress_blocking(codec: Codec, input: &[u8], limit: u64) -> Result<Bytes, EnvelopeError> {
    let result = match codec {
        Codec::Zstd => zstd_ctx::decompress_capped(input, limit).map(|out| out.map(Bytes::from)),
        Codec::Gzip => read_capped(flate2::read::MultiGzDecoder::new(input), limit),
    };
    match result {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(EnvelopeError::DecompressedTooLarge { limit }),
        Err(e) => Err(codec.error(e.to_string())),
    }
}

/// Reads at most `limit + 1` bytes so that a bomb costs one byte more than the cap and no
/// more; `None` means the cap was exceeded.
fn read_capped(reader: impl Read, limit: u64) -> std::io::Result<Option<Bytes>> {
    let mut out = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Ok(None);
    }
    Ok(Some(Bytes::from(out)))
}

/// Uncompressed payloads obey the decompressed cap too, so the caller sees one limit
/// whatever the client chose to compress.
fn check_plain_size(body: &Bytes, limits: &Limits) -> Result<(), EnvelopeError> {
    if body.len() as u64 > limits.max_decompressed {
        return Err(EnvelopeError::DecompressedTooLarge {
            limit: limits.max_decompressed,
        });
    }
    Ok(())
}
