//! `mediaChanges`: the files changed after the client's last media usn, oldest change first,
//! at most [`CHANGES_PER_CALL`] per call. The client continues from the last usn it got and
//! stops at an empty list, so the order is what makes paging work (protocol.md §5.3).

use serde::{Deserialize, Serialize, Serializer};

use super::{JsonResult, MediaError, MediaState};
use crate::store::{MediaChange, Store};

/// Most changes in one reply, as on the official server.
pub(crate) const CHANGES_PER_CALL: usize = 1000;

#[derive(Debug, Deserialize)]
pub(crate) struct MediaChangesRequest {
    #[serde(rename = "lastUsn")]
    pub last_usn: i32,
}

/// `[name, usn, sha1]`: sha1 is lowercase hex, or `""` for a deleted file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChangeEntry(pub MediaChange);

impl Serialize for ChangeEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sha1 = self.0.sha1.map(hex::encode).unwrap_or_default();
        (&self.0.name, self.0.usn, sha1).serialize(serializer)
    }
}

pub(crate) fn media_changes(
    store: &Store,
    state: &MediaState,
    request: &MediaChangesRequest,
) -> Result<JsonResult<Vec<ChangeEntry>>, MediaError> {
    let changes = store.media_changes(state.user.id, request.last_usn, CHANGES_PER_CALL)?;
    Ok(JsonResult::ok(
        changes.into_iter().map(ChangeEntry).collect(),
    ))
}
