//! `mediaSanity`: does the client hold as many files as the server? The answer is exactly
//! `"OK"` or `"mediaSanity"`; on the latter the client starts its media sync over
//! (protocol.md §5.6).

use serde::Deserialize;

use super::{JsonResult, MediaError, MediaState};
use crate::store::Store;

#[derive(Debug, Deserialize)]
pub(crate) struct MediaSanityRequest {
    pub local: u64,
}

pub(crate) fn media_sanity(
    store: &Store,
    state: &MediaState,
    request: &MediaSanityRequest,
) -> Result<JsonResult<&'static str>, MediaError> {
    let status = store
        .media_status(state.user.id)?
        .ok_or(MediaError::UnknownUser)?;
    let verdict = if status.files == request.local {
        "OK"
    } else {
        tracing::info!(
            user = %state.user.name,
            server = status.files,
            client = request.local,
            "media sanity check failed; the client will resync its media"
        );
        "mediaSanity"
    };
    Ok(JsonResult::ok(verdict))
}
