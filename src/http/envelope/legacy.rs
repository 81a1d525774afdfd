//! The legacy envelope: `multipart/form-data` with an optionally gzip-compressed `data`
//! field (sync versions 8–10, spec §1.4).

use bytes::Bytes;
use http_body_util::BodyExt;

use super::{
    check_plain_size, decompress, Codec, Envelope, EnvelopeError, Limits, SyncRequest,
    LEGACY_SYNC_VERSION,
};

/// What legacy clients send in place of "no arguments".
const EMPTY_OBJECT: &[u8] = b"{}";

/// The recognised form fields; a repeated field keeps its last value.
#[derive(Debug, Default)]
struct Fields {
    compression: Option<String>,
    /// `k`, or `sk` as legacy media sync names it: one slot, as on the official server, so
    /// whichever of the two comes last is the key.
    host_key: Option<String>,
    s: Option<String>,
    v: Option<String>,
    data: Option<Bytes>,
}

pub(super) async fn decode_multipart<B>(
    boundary: String,
    body: B,
    limits: &Limits,
) -> Result<SyncRequest, EnvelopeError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // multer counts every byte it pulls from the body, including parts we skip, so this is
    // the compressed-size cap for the whole request.
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(limits.max_body));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut fields = Fields::default();
    while let Some(field) = multipart.next_field().await.map_err(multer_error)? {
        let slot = match field.name() {
            Some("c") => &mut fields.compression,
            Some("k" | "sk") => &mut fields.host_key,
            Some("s") => &mut fields.s,
            Some("v") => &mut fields.v,
            Some("data") => {
                fields.data = Some(field.bytes().await.map_err(multer_error)?);
                continue;
            }
            // Unknown parts are skipped (and still counted) by the next `next_field`.
            _ => continue,
        };
        *slot = Some(field.text().await.map_err(multer_error)?);
    }

    let body = match fields.data {
        Some(data) if !data.is_empty() => {
            // Any flag other than "0" means gzip; no flag at all means plain (spec §1.4).
            let gzipped = fields.compression.as_deref().is_some_and(|c| c != "0");
            if gzipped {
                decompress(Codec::Gzip, data, limits.max_decompressed).await?
            } else {
                check_plain_size(&data, limits)?;
                data
            }
        }
        _ => Bytes::from_static(EMPTY_OBJECT),
    };
    Ok(SyncRequest {
        envelope: Envelope::Legacy,
        sync_version: LEGACY_SYNC_VERSION,
        host_key: fields.host_key.unwrap_or_default(),
        session_key: fields.s.unwrap_or_default(),
        client_version: fields.v.clone().unwrap_or_default(),
        body,
        legacy_media_version: fields.v,
    })
}

fn multer_error(error: multer::Error) -> EnvelopeError {
    match error {
        multer::Error::StreamSizeExceeded { limit }
        | multer::Error::FieldSizeExceeded { limit, .. } => EnvelopeError::TooLarge { limit },
        multer::Error::StreamReadFailed(source) => EnvelopeError::Body(source.to_string()),
        other => EnvelopeError::BadMultipart(other.to_string()),
    }
}

/// Like `decode_multipart`, but the `data` part is written to `dest` as it arrives instead
/// of being kept in memory (full uploads). Fields may come in any order, so the raw part is
/// saved first and decompressed once the compression flag is known.
pub(super) async fn decode_multipart_to_file<B>(
    boundary: String,
    body: B,
    limits: &Limits,
    dest: &std::path::Path,
) -> Result<(SyncRequest, u64), EnvelopeError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use tokio::io::AsyncWriteExt;

    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(limits.max_body));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    // `<upload>.raw`: a sidecar name the upload's scratch guard removes with it.
    let raw = {
        let mut name = dest.as_os_str().to_os_string();
        name.push(".raw");
        std::path::PathBuf::from(name)
    };
    let mut fields = Fields::default();
    let mut saw_data = false;
    let mut storage_failure = None;
    let outcome: Result<(), EnvelopeError> = async {
        while let Some(mut field) = multipart.next_field().await.map_err(multer_error)? {
            let slot = match field.name() {
                Some("c") => &mut fields.compression,
                Some("k" | "sk") => &mut fields.host_key,
                Some("s") => &mut fields.s,
                Some("v") => &mut fields.v,
                Some("data") => {
                    let mut file = tokio::fs::File::create(&raw)
                        .await
                        .map_err(|e| EnvelopeError::storage(&raw, e))?;
                    // After a failed write the rest of the body is still read and dropped, so
                    // the client, still sending, gets the answer.
                    let mut failed = None;
                    while let Some(chunk) = field.chunk().await.map_err(multer_error)? {
                        if failed.is_none() {
                            failed = file.write_all(&chunk).await.err();
                        }
                    }
                    if failed.is_none() {
                        failed = file.flush().await.err();
                    }
                    storage_failure = failed.map(|e| EnvelopeError::storage(&raw, e));
                    saw_data = true;
                    continue;
                }
                _ => continue,
            };
            *slot = Some(field.text().await.map_err(multer_error)?);
        }
        storage_failure.map_or(Ok(()), Err)
    }
    .await;
    if let Err(e) = outcome {
        let _ = tokio::fs::remove_file(&raw).await;
        return Err(e);
    }
    let written = if saw_data {
        let gzipped = fields.compression.as_deref().is_some_and(|c| c != "0");
        super::stream::finish_legacy_file(raw, dest.to_path_buf(), gzipped, limits.max_decompressed)
            .await?
    } else {
        tokio::fs::write(dest, b"")
            .await
            .map_err(|e| EnvelopeError::storage(dest, e))?;
        0
    };
    let request = SyncRequest {
        envelope: Envelope::Legacy,
        sync_version: LEGACY_SYNC_VERSION,
        host_key: fields.host_key.unwrap_or_default(),
        session_key: fields.s.unwrap_or_default(),
        client_version: fields.v.clone().unwrap_or_default(),
        body: Bytes::new(),
        legacy_media_version: fields.v,
    };
    Ok((request, written))
}
