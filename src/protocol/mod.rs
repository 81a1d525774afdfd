//! The typed requests and responses of every protocol method (serde), and the method names
//! as they appear in URLs. No I/O here: `http` turns bytes into these types, `sync` and
//! `media` act on them.

mod host_key;
mod meta;

pub(crate) use host_key::{HostKeyRequest, HostKeyResponse};
pub(crate) use meta::{MetaRequest, MetaResponse, MAX_SYNC_VERSION, MIN_SYNC_VERSION};

/// Collection-sync methods (`/sync/<name>`), spelled exactly as clients send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncMethod {
    HostKey,
    Meta,
    Start,
    ApplyGraves,
    ApplyChanges,
    Chunk,
    ApplyChunk,
    SanityCheck2,
    Finish,
    Abort,
    Upload,
    Download,
}

/// Media-sync methods (`/msync/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaMethod {
    Begin,
    MediaChanges,
    UploadChanges,
    DownloadFiles,
    MediaSanity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Sync(SyncMethod),
    Media(MediaMethod),
}

impl SyncMethod {
    const ALL: [(SyncMethod, &'static str); 12] = [
        (SyncMethod::HostKey, "hostKey"),
        (SyncMethod::Meta, "meta"),
        (SyncMethod::Start, "start"),
        (SyncMethod::ApplyGraves, "applyGraves"),
        (SyncMethod::ApplyChanges, "applyChanges"),
        (SyncMethod::Chunk, "chunk"),
        (SyncMethod::ApplyChunk, "applyChunk"),
        (SyncMethod::SanityCheck2, "sanityCheck2"),
        (SyncMethod::Finish, "finish"),
        (SyncMethod::Abort, "abort"),
        (SyncMethod::Upload, "upload"),
        (SyncMethod::Download, "download"),
    ];

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(m, _)| *m)
    }

    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("?", |(_, n)| n)
    }
}

impl MediaMethod {
    const ALL: [(MediaMethod, &'static str); 5] = [
        (MediaMethod::Begin, "begin"),
        (MediaMethod::MediaChanges, "mediaChanges"),
        (MediaMethod::UploadChanges, "uploadChanges"),
        (MediaMethod::DownloadFiles, "downloadFiles"),
        (MediaMethod::MediaSanity, "mediaSanity"),
    ];

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(m, _)| *m)
    }

    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("?", |(_, n)| n)
    }
}

impl Method {
    /// `sync/meta`, `msync/begin`: how the method appears in logs.
    pub(crate) fn label(self) -> String {
        match self {
            Method::Sync(m) => format!("sync/{}", m.name()),
            Method::Media(m) => format!("msync/{}", m.name()),
        }
    }
}

/// Parse a JSON request body into its typed request; the error text is what a client sees.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip_and_are_exact() {
        for (m, name) in SyncMethod::ALL {
            assert_eq!(SyncMethod::from_name(name), Some(m));
            assert_eq!(m.name(), name);
        }
        for (m, name) in MediaMethod::ALL {
            assert_eq!(MediaMethod::from_name(name), Some(m));
            assert_eq!(m.name(), name);
        }
        assert_eq!(SyncMethod::from_name("Meta"), None);
        assert_eq!(SyncMethod::from_name("sanityCheck"), None);
        assert_eq!(MediaMethod::from_name("begin/"), None);
    }
}
