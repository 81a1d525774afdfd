//! The one place where errors become HTTP responses. Status codes follow the official server
//! because clients act on them (protocol.md §4.12): 403 logs the user out, 409 says "another
//! device is syncing", 400 asks for Check Database, 501 on `meta` says "update Anki". Error
//! bodies are plain text, never compressed; internal details stay in the log.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

use super::envelope::EnvelopeError;
use crate::auth::UserRef;
use crate::fullsync::FullSyncError;
use crate::media::MediaError;
use crate::store::{disk_advice, is_disk_fault, StoreError};
use crate::sync::SyncError;

/// What a client is told when the server's disk failed under its request. Current clients
/// show their own "server error, try again later" for any 5xx; the text is for others.
const DISK_FAULT_TEXT: &str = "the server cannot store data right now (its disk is full or not \
     writable); nothing of this request was kept. Try again later.";

pub(crate) type ActorError = ankisyncd_actors::ActorError<StoreError>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Actor(#[from] ActorError),
    #[error(transparent)]
    FullSync(#[from] FullSyncError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("{0}")]
    BadJson(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The disk fault behind this error, worded for the operator (what failed, what to fix):
    /// the client can only try again once it is fixed.
    fn disk_fault(&self) -> Option<String> {
        let io = |what: &dyn std::fmt::Display, e: &std::io::Error| {
            is_disk_fault(e).then(|| format!("{what}: {e} ({})", disk_advice(e.kind())))
        };
        match self {
            ApiError::Sync(SyncError::Store(e))
            | ApiError::FullSync(FullSyncError::Store(e))
            | ApiError::Media(MediaError::Store(e))
            | ApiError::Actor(ActorError::Directory(e)) => e.is_disk().then(|| e.to_string()),
            ApiError::Envelope(EnvelopeError::Storage { path, source }) => {
                io(&format_args!("scratch file {}", path.display()), source)
            }
            ApiError::FullSync(FullSyncError::Scratch { path, source }) => {
                io(&format_args!("scratch file {path}"), source)
            }
            ApiError::Media(MediaError::Scratch(source)) => io(&"media scratch file", source),
            ApiError::FullSync(FullSyncError::Build(rusqlite::Error::SqliteFailure(e, _)))
                if e.code == rusqlite::ErrorCode::DiskFull =>
            {
                Some(format!(
                    "building a download in the scratch folder: {e} ({})",
                    disk_advice(std::io::ErrorKind::StorageFull)
                ))
            }
            _ => None,
        }
    }

    fn status(&self) -> StatusCode {
        if self.disk_fault().is_some() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match self {
            ApiError::Envelope(e) => e.status(),
            ApiError::Sync(e) => match e {
                SyncError::AuthFailed => StatusCode::FORBIDDEN,
                SyncError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                SyncError::ClientTooOld(_) => StatusCode::NOT_IMPLEMENTED,
                SyncError::BadRequest(_) => StatusCode::BAD_REQUEST,
                SyncError::Conflict(_) => StatusCode::CONFLICT,
                // Clients show "payload too large" for it; `meta` explains at the next sync.
                SyncError::OverQuota(_) => StatusCode::PAYLOAD_TOO_LARGE,
                SyncError::Store(_) | SyncError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Actor(e) => match e {
                ActorError::UnknownCredential => StatusCode::FORBIDDEN,
                ActorError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::FullSync(e) => match e {
                FullSyncError::UnknownUser => StatusCode::FORBIDDEN,
                FullSyncError::Corrupt(_) | FullSyncError::NothingToDownload => {
                    StatusCode::BAD_REQUEST
                }
                FullSyncError::OverQuota(_) => StatusCode::PAYLOAD_TOO_LARGE,
                FullSyncError::Scratch { .. }
                | FullSyncError::Build(_)
                | FullSyncError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Media(e) => match e {
                MediaError::UnknownUser => StatusCode::FORBIDDEN,
                MediaError::BadRequest(_) | MediaError::BadUpload(_) => StatusCode::BAD_REQUEST,
                // The client can only give up on the whole batch, as with the official server.
                MediaError::NotOnServer(_) => StatusCode::CONFLICT,
                MediaError::Scratch(_) | MediaError::Zip(_) | MediaError::Store(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            ApiError::BadJson(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Build the response; `user` is only for the log line of a server-side failure.
    pub(crate) fn into_response(self, user: Option<&UserRef>) -> Response<Full<Bytes>> {
        let status = self.status();
        let text = if let Some(fault) = self.disk_fault() {
            tracing::error!(
                user = user.map(|u| &*u.name),
                "request failed, nothing of it kept: {fault}"
            );
            DISK_FAULT_TEXT.to_string()
        } else if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(user = user.map(|u| &*u.name), "request failed: {self}");
            "internal server error; the server log has the details".to_string()
        } else {
            self.to_string()
        };
        let mut builder = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if let ApiError::Sync(SyncError::RateLimited { retry_after_secs }) = &self {
            builder = builder.header(header::RETRY_AFTER, retry_after_secs.to_string());
        }
        builder
            .body(Full::new(Bytes::from(text)))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, ""))
    }
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_official_server() {
        let cases: Vec<(ApiError, u16)> = vec![
            (SyncError::AuthFailed.into(), 403),
            (ActorError::UnknownCredential.into(), 403),
            (SyncError::ClientTooOld(5).into(), 501),
            (SyncError::BadRequest("x".into()).into(), 400),
            (SyncError::Conflict("no active sync").into(), 409),
            (SyncError::OverQuota("over".into()).into(), 413),
            (ApiError::BadJson("x".into()), 400),
            (
                SyncError::RateLimited {
                    retry_after_secs: 3,
                }
                .into(),
                429,
            ),
            (SyncError::Internal("secret detail".into()).into(), 500),
            (ActorError::ShuttingDown.into(), 503),
            (ApiError::NotFound("/x".into()), 404),
            (MediaError::UnknownUser.into(), 403),
            (
                MediaError::BadUpload(crate::media::BadUpload::NoMeta).into(),
                400,
            ),
            (MediaError::BadRequest("x".into()).into(), 400),
            (MediaError::NotOnServer("a.jpg".into()).into(), 409),
        ];
        for (err, code) in cases {
            let r = err.into_response(None);
            assert_eq!(r.status().as_u16(), code);
        }
        let r = ApiError::from(SyncError::Internal("secret detail".into())).into_response(None);
        let body = format!("{:?}", r.body());
        assert!(!body.contains("secret detail"));
    }

    #[test]
    fn a_disk_fault_is_a_503_that_says_try_later() {
        use crate::store::DiskFault;
        use std::io::{Error, ErrorKind};
        let full = StoreError::Disk(DiskFault::new(&Error::from(ErrorKind::StorageFull)));
        let scratch = |kind| EnvelopeError::storage(std::path::Path::new("/x/upload"), kind);
        let cases: Vec<(ApiError, u16)> = vec![
            (SyncError::Store(full).into(), 503),
            (
                scratch(Error::from(ErrorKind::ReadOnlyFilesystem)).into(),
                503,
            ),
            (
                MediaError::Scratch(Error::from(ErrorKind::QuotaExceeded)).into(),
                503,
            ),
            (ActorError::Directory(StoreError::Interrupted).into(), 503),
            // Not the disk: an internal fault as before.
            (scratch(Error::from(ErrorKind::NotFound)).into(), 500),
        ];
        for (err, code) in cases {
            let described = err.to_string();
            let r = err.into_response(None);
            assert_eq!(r.status().as_u16(), code, "{described}");
            let body = format!("{:?}", r.body());
            assert_eq!(body.contains("Try again later"), code == 503, "{body}");
            assert!(!body.contains("/x/upload"), "{body}");
        }
    }
}
