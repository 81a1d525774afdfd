//! One request, start to finish: route it, decode its envelope, authenticate it, hand it to
//! the method's handler (through the user's actor for anything that touches a user's data),
//! encode the answer, and write the request's one log line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::envelope::{self, Envelope, EnvelopeError, ResponseBody, SyncRequest};
use super::error::{plain, ApiError};
use super::pages;
use super::router::{route, Route};
use crate::app::App;
use crate::auth::UserRef;
use crate::fullsync::{self, UploadReply};
use crate::media;
use crate::protocol::{
    parse_json, ApplyChangesRequest, ApplyChunkRequest, ApplyGravesRequest, HostKeyRequest,
    MediaMethod, MetaRequest, Method, SanityCheckRequest, StartRequest, SyncMethod,
};
use crate::store::Store;
use crate::sync;

/// What the request's log line says besides method, status and timing.
#[derive(Default)]
struct Context {
    user: Option<UserRef>,
    client: String,
}

pub(crate) async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let path = request.uri().path().to_string();
    let route = route(request.method(), &path);
    let bytes_in = Arc::new(AtomicU64::new(0));
    let mut context = Context::default();

    let result = match &route {
        Route::Health => Ok(boxed(plain(StatusCode::OK, ""))),
        Route::Index => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            let page = pages::index(host, &app.listen_address(), app.uptime());
            Ok(boxed(plain(StatusCode::OK, &page)))
        }
        Route::NotFound => Err(ApiError::NotFound(path.clone())),
        Route::MethodNotAllowed => Err(ApiError::MethodNotAllowed),
        Route::MediaBeginQuery => match envelope::decode_media_begin_query(request.uri().query()) {
            Ok(decoded) => {
                context.client = decoded.client_version.clone();
                let begin = Method::Media(MediaMethod::Begin);
                api(&app, begin, decoded, peer, &mut context).await
            }
            Err(e) => Err(e.into()),
        },
        Route::Api(method) => {
            let (parts, body) = request.into_parts();
            let counter = bytes_in.clone();
            let body = body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                frame
            });
            if *method == Method::Sync(SyncMethod::Upload) {
                upload(&app, &parts.headers, body, &mut context).await
            } else if *method == Method::Media(MediaMethod::UploadChanges) {
                media_upload(&app, &parts.headers, body, &mut context).await
            } else {
                match envelope::decode_post(&parts.headers, body, &app.limits).await {
                    Ok(decoded) => {
                        context.client = decoded.client_version.clone();
                        api(&app, *method, decoded, peer, &mut context).await
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    };

    let response = result.unwrap_or_else(|e| boxed(e.into_response(context.user.as_ref())));
    log_request(&route, &path, &context, &response, &bytes_in, started);
    response
}

async fn api(
    app: &App,
    method: Method,
    request: SyncRequest,
    peer: SocketAddr,
    context: &mut Context,
) -> Result<Response<ResponseBody>, ApiError> {
    let body = match method {
        Method::Sync(SyncMethod::HostKey) => {
            let login: HostKeyRequest = parse_json(&request.body).map_err(ApiError::BadJson)?;
            context.user = None;
            let reply = sync::host_key(
                app.store.clone(),
                &app.limiter,
                peer.ip(),
                request.client_version.clone(),
                login,
                crate::clock::now_secs(),
            )
            .await?;
            json(&reply)?
        }
        Method::Sync(SyncMethod::Meta) => {
            let user = app.users.resolve(&request.host_key).await?;
            context.user = Some(user.clone());
            let meta: MetaRequest = parse_json(&request.body).map_err(ApiError::BadJson)?;
            if context.client.is_empty() {
                context.client = meta.client_version.clone();
            }
            let store = app.store.clone();
            let reply = app
                .users
                .run(&user, move |state| {
                    sync::meta(&store, state, &meta, crate::clock::now_millis())
                })
                .await??;
            json(&reply)?
        }
        Method::Sync(SyncMethod::Download) => {
            let user = app.users.resolve(&request.host_key).await?;
            context.user = Some(user.clone());
            let (store, scratch) = (app.store.clone(), app.scratch.clone());
            let download = app
                .users
                .run(&user, move |state| {
                    state.discard_session();
                    fullsync::prepare_download(&store, &scratch, user.id)
                })
                .await??;
            return Ok(envelope::encode_precompressed_file(
                &request.envelope,
                download.file,
                download.len,
                download.compressed,
            )?);
        }
        Method::Sync(method) => {
            let user = app.users.resolve(&request.host_key).await?;
            context.user = Some(user.clone());
            test_hooks::crash_point("before", method);
            let reply = normal_sync(app, &user, method, &request).await?;
            test_hooks::crash_point("after", method);
            if method == SyncMethod::Finish {
                app.scratch.drop_downloads(user.id);
            }
            reply
        }
        Method::Media(method) => {
            let user = app.media.resolve(&request.host_key).await?;
            context.user = Some(user.clone());
            return media_sync(app, &user, method, request).await;
        }
    };
    Ok(boxed(envelope::encode_ok(&request.envelope, body)?))
}

/// The steps of a normal sync: each runs on the user's actor with the user's state.
async fn normal_sync(
    app: &App,
    user: &UserRef,
    method: SyncMethod,
    request: &SyncRequest,
) -> Result<Bytes, ApiError> {
    let store = app.store.clone();
    let key = request.session_key.clone();
    let body = &request.body;
    match method {
        SyncMethod::Start => {
            let start: StartRequest = parse_json(body).map_err(ApiError::BadJson)?;
            let memory_rows = app.stage_memory_rows;
            run_json(app, user, move |state| {
                sync::start(&store, state, &key, start, memory_rows)
            })
            .await
        }
        SyncMethod::ApplyGraves => {
            let graves: ApplyGravesRequest = parse_json(body).map_err(ApiError::BadJson)?;
            run_json(app, user, move |state| {
                sync::apply_graves(&store, state, &key, graves)
            })
            .await
        }
        SyncMethod::ApplyChanges => {
            let changes: ApplyChangesRequest = parse_json(body).map_err(ApiError::BadJson)?;
            run_json(app, user, move |state| {
                sync::apply_changes(&store, state, &key, changes)
            })
            .await
        }
        SyncMethod::Chunk => {
            run_json(app, user, move |state| sync::chunk(&store, state, &key)).await
        }
        SyncMethod::ApplyChunk => {
            let chunk: ApplyChunkRequest = parse_json(body).map_err(ApiError::BadJson)?;
            run_json(app, user, move |state| {
                sync::apply_chunk(&store, state, &key, chunk)
            })
            .await
        }
        SyncMethod::SanityCheck2 => {
            let check: SanityCheckRequest = parse_json(body).map_err(ApiError::BadJson)?;
            run_json(app, user, move |state| {
                sync::sanity_check(&store, state, &key, check)
            })
            .await
        }
        SyncMethod::Finish => {
            run_json(app, user, move |state| {
                sync::finish(&store, state, &key, crate::clock::now_millis())
            })
            .await
        }
        SyncMethod::Abort => run_json(app, user, move |state| sync::abort(&store, state)).await,
        // Served elsewhere in this module.
        SyncMethod::HostKey | SyncMethod::Meta | SyncMethod::Upload | SyncMethod::Download => Err(
            sync::SyncError::Internal(format!("{} routed to normal sync", method.name())).into(),
        ),
    }
}

async fn run_json<T: serde::Serialize + Send + 'static>(
    app: &App,
    user: &UserRef,
    job: impl FnOnce(&mut sync::UserState) -> Result<T, sync::SyncError> + Send + 'static,
) -> Result<Bytes, ApiError> {
    let reply = app.users.run(user, job).await??;
    json(&reply)
}

/// A media method other than `uploadChanges`, on the user's media actor (never behind the
/// user's collection sync).
async fn media_sync(
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
                None => parse_json(&request.body).map_err(ApiError::BadJson)?,
            };
            let key = request.host_key.clone();
            run_media_json(app, user, move |state| {
                media::begin(&store, state, &begin, key)
            })
            .await?
        }
        MediaMethod::MediaChanges => {
            media_json(app, user, &request.body, media::media_changes).await?
        }
        MediaMethod::MediaSanity => {
            media_json(app, user, &request.body, media::media_sanity).await?
        }
        MediaMethod::DownloadFiles => {
            let files: media::DownloadFilesRequest =
                parse_json(&request.body).map_err(ApiError::BadJson)?;
            let scratch = app.scratch.build_file(user.id);
            let path = scratch.path().to_path_buf();
            let zip = app
                .media
                .run(user, move |state| {
                    media::download_files(&store, state, &files, &path)
                })
                .await??;
            // The open file outlives its name: the guard unlinks it, the stream reads on.
            drop(scratch);
            return Ok(envelope::encode_file(&request.envelope, zip.file, zip.len)?);
        }
        MediaMethod::UploadChanges => {
            return Err(sync::SyncError::Internal("uploadChanges routed as JSON".into()).into())
        }
    };
    Ok(boxed(envelope::encode_ok(&request.envelope, body)?))
}

/// A media method whose request is JSON and whose reply is the JSON envelope.
async fn media_json<R, T>(
    app: &App,
    user: &UserRef,
    body: &Bytes,
    handler: fn(&Store, &media::MediaState, &R) -> Result<T, media::MediaError>,
) -> Result<Bytes, ApiError>
where
    R: serde::de::DeserializeOwned + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    let request: R = parse_json(body).map_err(ApiError::BadJson)?;
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

/// `uploadChanges`: the zip goes straight into a scratch file, then the user's media actor
/// checks it and takes it in, all or nothing.
async fn media_upload<B>(
    app: &App,
    headers: &http::HeaderMap,
    body: B,
    context: &mut Context,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A modern client's key is in the header: refuse a stranger before a byte reaches disk.
    if let Some(key) = envelope::header_host_key(headers)? {
        context.user = Some(app.media.resolve(&key).await?);
    }
    let file = app.scratch.upload_file();
    let (request, _) =
        envelope::decode_post_to_file(headers, body, &app.limits, file.path()).await?;
    context.client = request.client_version.clone();
    let user = match context.user.clone() {
        Some(user) => user,
        None => app.media.resolve(&request.host_key).await?,
    };
    context.user = Some(user.clone());
    let (store, path) = (app.store.clone(), file.path().to_path_buf());
    let reply = app
        .media
        .run(&user, move |state| {
            media::upload_changes(&store, state, &path)
        })
        .await??;
    drop(file);
    Ok(boxed(envelope::encode_ok(
        &request.envelope,
        json(&reply)?,
    )?))
}

/// `upload`: the body goes straight into a scratch file (never into memory), then the user's
/// actor checks it and takes it in. Every outcome the client should show is HTTP 200 with
/// the official text (protocol.md §4.10).
async fn upload<B>(
    app: &App,
    headers: &http::HeaderMap,
    body: B,
    context: &mut Context,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A modern client's key is in the header: refuse a stranger before a byte reaches disk.
    let envelope = if let Some(key) = envelope::header_host_key(headers)? {
        context.user = Some(app.users.resolve(&key).await?);
        Envelope::Modern
    } else {
        Envelope::Legacy
    };
    let file = app.scratch.upload_file();
    let (request, bytes) =
        match envelope::decode_post_to_file(headers, body, &app.limits, file.path()).await {
            Ok(decoded) => decoded,
            Err(EnvelopeError::TooLarge { .. } | EnvelopeError::DecompressedTooLarge { .. }) => {
                let text = UploadReply::TooLarge.text();
                tracing::warn!(
                    user = context.user.as_ref().map(|u| &*u.name),
                    "full upload refused: {text}"
                );
                return Ok(boxed(envelope::encode_ok(
                    &envelope,
                    Bytes::from_static(text.as_bytes()),
                )?));
            }
            Err(e) => return Err(e.into()),
        };
    context.client = request.client_version.clone();
    let user = match context.user.clone() {
        Some(user) => user,
        None => app.users.resolve(&request.host_key).await?,
    };
    context.user = Some(user.clone());
    // The official server refuses a body of the cap or more (protocol.md §1.5).
    let reply = if bytes >= app.limits.max_decompressed {
        UploadReply::TooLarge
    } else {
        let (store, path, keep) = (
            app.store.clone(),
            file.path().to_path_buf(),
            app.keep_generations,
        );
        app.users
            .run(&user, move |state| {
                state.discard_session();
                fullsync::receive_upload(&store, user.id, &path, keep, crate::clock::now_millis())
            })
            .await??
    };
    drop(file);
    if reply == UploadReply::Ok {
        app.scratch.drop_downloads(user.id);
        app.janitor.notify_one();
        prebuild_download(app, user);
    }
    let text = Bytes::from_static(reply.text().as_bytes());
    Ok(boxed(envelope::encode_ok(&request.envelope, text)?))
}

/// Lets the end-to-end tests kill the server at a chosen step of a sync (as a power cut
/// would) to prove a sync is all or nothing. Debug builds only; release binaries have no
/// such knob.
mod test_hooks {
    use crate::protocol::SyncMethod;

    #[cfg(debug_assertions)]
    pub(super) fn crash_point(when: &str, method: SyncMethod) {
        // e.g. TEST_ANKISYNCD_CRASH=after:finish
        if std::env::var("TEST_ANKISYNCD_CRASH").ok().as_deref()
            == Some(&format!("{when}:{}", method.name()))
        {
            tracing::warn!("test crash point {when}:{} reached", method.name());
            std::process::abort();
        }
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn crash_point(_when: &str, _method: SyncMethod) {}
}

/// After a full upload, the user's other devices come for a full download: build it now, in
/// the user's actor (queued after nothing but this user's requests), so they find it ready
/// instead of waiting for the build (benches/README.md, first download).
fn prebuild_download(app: &App, user: UserRef) {
    let (users, store, scratch) = (app.users.clone(), app.store.clone(), app.scratch.clone());
    tokio::spawn(async move {
        let built = users
            .run(&user, move |_state| {
                fullsync::prepare_download(&store, &scratch, user.id).map(|_| ())
            })
            .await;
        match built {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("preparing the download after an upload: {e}"),
            Err(e) => tracing::debug!("download not prepared: {e}"),
        }
    });
}

fn boxed(response: Response<Full<Bytes>>) -> Response<ResponseBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

fn json<T: serde::Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::Sync(sync::SyncError::Internal(format!("encoding reply: {e}"))))
}

fn log_request(
    route: &Route,
    path: &str,
    context: &Context,
    response: &Response<ResponseBody>,
    bytes_in: &AtomicU64,
    started: Instant,
) {
    use http_body::Body as _;
    let method = match route {
        Route::Api(m) => m.label(),
        _ => path.to_string(),
    };
    let status = response.status().as_u16();
    // A streamed download has no length yet; its uncompressed size is what it carries.
    let bytes_out = response.body().size_hint().exact().unwrap_or_else(|| {
        response
            .headers()
            .get(envelope::ORIGINAL_SIZE_HEADER)
            .or_else(|| response.headers().get(header::CONTENT_LENGTH))
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0)
    });
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let user = context.user.as_ref().map_or("-", |u| &u.name);
    let client = if context.client.is_empty() {
        "-"
    } else {
        context.client.as_str()
    };
    let bytes_in = bytes_in.load(Ordering::Relaxed);
    if matches!(route, Route::Health) {
        tracing::debug!(%method, status, "request");
    } else {
        tracing::info!(%method, user, client, status, bytes_in, bytes_out, ms = format_args!("{ms:.1}"), "request");
    }
}
