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
use crate::store::StoreError;
use crate::sync::SyncError;

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
    fn status(&self) -> StatusCode {
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
        let text = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
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
}
