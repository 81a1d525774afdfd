//! The typed requests and responses of every protocol method (serde), and the method names
//! as they appear in URLs. No I/O here: `http` turns bytes into these types, `sync` and
//! `media` act on them.

mod changes;
mod graves;
mod host_key;
mod meta;
mod rows;
mod sanity;
mod start;

pub(crate) use changes::{ApplyChangesRequest, Changes};
pub(crate) use graves::{ApplyGravesRequest, Graves};
pub(crate) use host_key::{HostKeyRequest, HostKeyResponse};
pub(crate) use meta::{MetaRequest, MetaResponse, MAX_SYNC_VERSION, MIN_SYNC_VERSION};
pub(crate) use rows::{
    card_json, lenient_i64, note_json, parse_card, parse_note, parse_revlog, revlog_json,
    ApplyChunkRequest, Chunk, CHUNK_SIZE,
};
pub(crate) use sanity::{SanityCheckRequest, SanityCheckResponse, SanityCounts};
pub(crate) use start::StartRequest;

/// Declares a method enum with its wire names: `from_name` and `name` are exact inverses, so
/// a URL segment and a log label can never disagree.
macro_rules! methods {
    ($(#[$doc:meta])* $enum:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $enum {
            $($variant),+
        }

        impl $enum {
            #[cfg(test)]
            const ALL: &'static [($enum, &'static str)] = &[$(($enum::$variant, $name)),+];

            pub(crate) fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some($enum::$variant),)+
                    _ => None,
                }
            }

            pub(crate) fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)+
                }
            }
        }
    };
}

methods! {
    /// Collection-sync methods (`/sync/<name>`), spelled exactly as clients send them.
    SyncMethod {
        HostKey = "hostKey",
        Meta = "meta",
        Start = "start",
        ApplyGraves = "applyGraves",
        ApplyChanges = "applyChanges",
        Chunk = "chunk",
        ApplyChunk = "applyChunk",
        SanityCheck2 = "sanityCheck2",
        Finish = "finish",
        Abort = "abort",
        Upload = "upload",
        Download = "download",
    }
}

methods! {
    /// Media-sync methods (`/msync/<name>`).
    MediaMethod {
        Begin = "begin",
        MediaChanges = "mediaChanges",
        UploadChanges = "uploadChanges",
        DownloadFiles = "downloadFiles",
        MediaSanity = "mediaSanity",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Sync(SyncMethod),
    Media(MediaMethod),
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

/// Parse a JSON request body into its typed request, with the paths of the fields it has
/// that the type does not read (e.g. `changes.newThing`); the error text is what a client
/// sees.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<(T, Vec<String>), String> {
    let invalid = |e: serde_json::Error| format!("invalid request body: {e}");
    let mut unknown = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value =
        serde_ignored::deserialize(&mut deserializer, |path| unknown.push(path.to_string()))
            .map_err(invalid)?;
    deserializer.end().map_err(invalid)?;
    Ok((value, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_names_the_fields_it_ignores() {
        let (meta, unknown): (MetaRequest, _) =
            parse_json(br#"{"v": 11, "cv": "x", "future": 1, "more": {"a": 2}}"#).unwrap();
        assert_eq!((meta.sync_version, meta.client_version.as_str()), (11, "x"));
        assert_eq!(unknown, ["future", "more"]);
        let (_, unknown): (MetaRequest, _) = parse_json(br#"{"v": 11, "cv": "x"}"#).unwrap();
        assert!(unknown.is_empty());
        let err = parse_json::<MetaRequest>(br#"{"v": 11} x"#).unwrap_err();
        assert!(err.starts_with("invalid request body"), "{err}");
    }

    #[test]
    fn method_names_round_trip_and_are_exact() {
        for &(m, name) in SyncMethod::ALL {
            assert_eq!(SyncMethod::from_name(name), Some(m));
            assert_eq!(m.name(), name);
        }
        for &(m, name) in MediaMethod::ALL {
            assert_eq!(MediaMethod::from_name(name), Some(m));
            assert_eq!(m.name(), name);
        }
        assert_eq!(SyncMethod::ALL.len(), 12);
        assert_eq!(MediaMethod::ALL.len(), 5);
        assert_eq!(SyncMethod::from_name("Meta"), None);
        assert_eq!(SyncMethod::from_name("sanityCheck"), None);
        assert_eq!(MediaMethod::from_name("begin/"), None);
    }
}
