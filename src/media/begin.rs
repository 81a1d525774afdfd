//! `begin`: the media usn, and the key for later requests. There are no media sessions any
//! more: `sk` is the host key itself, which legacy clients send back as `sk` and which is
//! then authenticated like any host key (protocol.md §5.2).

use serde::{Deserialize, Serialize};

use super::{JsonResult, MediaError, MediaState};
use crate::store::Store;

#[derive(Debug, Deserialize)]
pub(crate) struct BeginRequest {
    /// The client version; legacy clients send it as the multipart field or query
    /// parameter `v`, which the caller substitutes here.
    #[serde(rename = "v", default)]
    pub client_version: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct BeginResponse {
    pub usn: i32,
    pub sk: String,
}

pub(crate) fn begin(
    store: &Store,
    state: &MediaState,
    request: &BeginRequest,
    host_key: String,
) -> Result<JsonResult<BeginResponse>, MediaError> {
    if request.client_version.is_empty() {
        return Err(MediaError::BadRequest("missing client version".into()));
    }
    let status = store
        .media_status(state.user.id)?
        .ok_or(MediaError::UnknownUser)?;
    Ok(JsonResult::ok(BeginResponse {
        usn: status.last_usn,
        sk: host_key,
    }))
}
