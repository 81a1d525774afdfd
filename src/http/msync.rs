//! The media methods over HTTP (`/msync/…`): each runs on the user's MEDIA actor, never
//! behind the user's collection sync; `uploadChanges` receives its zip (into memory or a
//! scratch file) first.

use bytes::Bytes;
use http::Response;

use super::dispatch::{boxed, json, parse, receive_file, Context, OverLimit, ReceivedFile};
use super::envelope::{self, Received, ResponseBody, SyncRequest};
use super::error::ApiError;
use crate::app::App;
use crate::auth::UserRef;
use crate::media::{self, DownloadZip};
use crate::protocol::{MediaMethod, Method};
use crate::store::Store;
use crate::sync;

/// A media method other than `uploadChanges`, on the user's media actor (never behind the
/// user's collection sync).
pub(super) async fn media_sync(
    app: &App,
    user: &UserRef,
    method: MediaMethod,
    request: SyncRequest,
) -> Result<Response<ResponseBody>, ApiError> {
    let store = app.store.clone();
    let body = match method {
        MediaMethod::Begin => {
            // Legacy clients send the version as a form field or query parameter (spec §2).
            let begin = match request.legacy_media_version.clone() {
                Some(version) => media::BeginRequest {
                    client_version: version,
                },
                None => parse(app, Method::Media(method), &request)?,
            };
            let key = request.host_key.clone();
            run_media_json(app, user, move |state| {
                media::begin(&store, state, &begin, key)
            })
            .await?
        }
        MediaMethod::MediaChanges => {
            media_json(app, user, method, &request, media::media_changes).await?
        }
        MediaMethod::MediaSanity => {
            media_json(app, user, method, &request, media::media_sanity).await?
        }
        MediaMethod::DownloadFiles => {
            let files: media::DownloadFilesRequest = parse(app, Method::Media(method), &request)?;
            let scratch = app.scratch.build_file(user.id);
            let path = scratch.path().to_path_buf();
            let kind = request.envelope;
            let zip = app
                .media
                .run(user, move |state| -> Result<Zip, ApiError> {
                    Ok(match media::download_files(&store, state, &files, &path)? {
                        DownloadZip::Memory(bytes) => Zip::Packed(envelope::pack(&kind, bytes)?),
                        DownloadZip::File { file, len } => Zip::File(file, len),
                    })
                })
                .await??;
            // The open file outlives its name: the guard unlinks it, the stream reads on.
            drop(scratch);
            return Ok(match zip {
                Zip::Packed(packed) => envelope::encode_packed(packed)?,
                Zip::File(file, len) => envelope::encode_file(&request.envelope, file, len)?,
            });
        }
        MediaMethod::UploadChanges => {
            return Err(sync::SyncError::Internal("uploadChanges routed as JSON".into()).into())
        }
    };
    Ok(boxed(envelope::encode_ok(&request.envelope, body)?))
}

/// A built download: in memory and already packed for the envelope, or a file to stream.
enum Zip {
    Packed(envelope::Packed),
    File(std::fs::File, u64),
}

/// A media method whose request is JSON and whose reply is the JSON envelope.
async fn media_json<R, T>(
    app: &App,
    user: &UserRef,
    method: MediaMethod,
    request: &SyncRequest,
    handler: fn(&Store, &media::MediaState, &R) -> Result<T, media::MediaError>,
) -> Result<Bytes, ApiError>
where
    R: serde::de::DeserializeOwned + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    let request: R = parse(app, Method::Media(method), request)?;
    let store = app.store.clone();
    run_media_json(app, user, move |state| handler(&store, state, &request)).await
}

async fn run_media_json<T: serde::Serialize + Send + 'static>(
    app: &App,
    user: &UserRef,
    job: impl FnOnce(&mut media::MediaState) -> Result<T, media::MediaError> + Send + 'static,
) -> Result<Bytes, ApiError> {
    let reply = app.media.run(user, job).await??;
    json(&reply)
}

/// `uploadChanges`: the zip is decompressed into memory (most are a few MiB) or, past
/// [`media::ZIP_IN_MEMORY`], a scratch file; then the user's media actor checks it and
/// takes it in, all or nothing.
pub(super) async fn media_upload<B>(
    app: &App,
    headers: &http::HeaderMap,
    body: B,
    context: &mut Context,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let ReceivedFile {
        request,
        body: received,
        file,
        user,
    } = match receive_file(app, headers, body, media::ZIP_IN_MEMORY, context).await? {
        Ok(received) => received,
        Err(OverLimit { error, .. }) => return Err(error.into()),
    };
    let zip = match received {
        Received::Memory(bytes) => media::UploadSource::Memory(bytes),
        Received::File(_) => media::UploadSource::File(file.path().to_path_buf()),
    };
    let (store, quota) = (app.store.clone(), app.quota.media);
    let reply = app
        .media
        .run(&user, move |state| {
            media::upload_changes(&store, state, zip, quota)
        })
        .await??;
    drop(file);
    Ok(boxed(envelope::encode_ok(
        &request.envelope,
        json(&reply)?,
    )?))
}
