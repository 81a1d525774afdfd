//! One request, start to finish: route it, decode its envelope, authenticate it, hand it to
//! the method's handler (through the user's actor for anything that touches a user's data),
//! encode the answer, and write the request's one log line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ankisyncd_actors::SupervisorHandle;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::envelope::{self, Envelope, EnvelopeError, ResponseBody, SyncRequest};
use super::error::{plain, ApiError};
use super::pages;
use super::router::{route, Route};
use super::{collection, msync};
use crate::app::App;
use crate::auth::{hash_host_key, StoreDirectory, UserRef};
use crate::fullsync;
use crate::protocol::{parse_json, HostKeyRequest, MediaMethod, MetaRequest, Method, SyncMethod};
use crate::store::HostKeyHash;
use crate::sync;

/// What the request's log line says besides method, status and timing, and which device
/// sent it.
#[derive(Default)]
pub(super) struct Context {
    pub(super) user: Option<UserRef>,
    pub(super) client: String,
    /// Set once the request's host key resolved.
    device: Option<HostKeyHash>,
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
                collection::upload(&app, &parts.headers, body, &mut context).await
            } else if *method == Method::Media(MediaMethod::UploadChanges) {
                msync::media_upload(&app, &parts.headers, body, &mut context).await
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
    if let Some(device) = context.device {
        app.activity
            .record(device, &context.client, crate::clock::now_secs());
    }
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
            let user = authenticate(&app.users, &request.host_key, context).await?;
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
            let user = authenticate(&app.users, &request.host_key, context).await?;
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
            collection::pause_point("before", method).await;
            let user = authenticate(&app.users, &request.host_key, context).await?;
            collection::crash_point("before", method);
            let reply = collection::normal_sync(app, &user, method, &request).await?;
            collection::crash_point("after", method);
            if method == SyncMethod::Finish {
                app.scratch.drop_downloads(user.id);
            }
            reply
        }
        Method::Media(method) => {
            let user = authenticate(&app.media, &request.host_key, context).await?;
            return msync::media_sync(app, &user, method, request).await;
        }
    };
    Ok(boxed(envelope::encode_ok(&request.envelope, body)?))
}

/// A request whose body is a file (a full upload, a media zip), received into a scratch file.
pub(super) struct ReceivedFile {
    pub request: SyncRequest,
    /// Decompressed bytes written.
    pub bytes: u64,
    pub file: fullsync::ScratchFile,
    pub user: UserRef,
}

/// Why a file body was not received: it passed a size limit, in this envelope.
pub(super) struct OverLimit {
    pub envelope: Envelope,
    pub error: EnvelopeError,
}

/// Receive a file body: a modern client's key is in its header, so a stranger is refused
/// before a byte reaches disk; then the body is streamed (decompressed) into a scratch file,
/// and a legacy client, whose key is in the body, is authenticated after it. Every user lookup
/// goes through the same directory, so either supervisor's handle would do.
pub(super) async fn receive_file<B>(
    app: &App,
    headers: &http::HeaderMap,
    body: B,
    context: &mut Context,
) -> Result<Result<ReceivedFile, OverLimit>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let envelope = if let Some((key, envelope)) = envelope::header_host_key(headers)? {
        authenticate(&app.users, &key, context).await?;
        envelope
    } else {
        Envelope::Legacy
    };
    let file = app.scratch.upload_file();
    let (request, bytes) =
        match envelope::decode_post_to_file(headers, body, &app.limits, file.path()).await {
            Ok(decoded) => decoded,
            Err(
                error @ (EnvelopeError::TooLarge { .. }
                | EnvelopeError::DecompressedTooLarge { .. }),
            ) => return Ok(Err(OverLimit { envelope, error })),
            Err(e) => return Err(e.into()),
        };
    context.client = request.client_version.clone();
    let user = match context.user.clone() {
        Some(user) => user,
        None => authenticate(&app.users, &request.host_key, context).await?,
    };
    Ok(Ok(ReceivedFile {
        request,
        bytes,
        file,
        user,
    }))
}

/// Resolve a host key through `supervisor`'s directory (every user lookup goes through the
/// same one), noting the user for the log line and the device for `user devices`.
async fn authenticate<S: Send + 'static>(
    supervisor: &SupervisorHandle<StoreDirectory, S>,
    host_key: &str,
    context: &mut Context,
) -> Result<UserRef, ApiError> {
    let user = supervisor.resolve(host_key).await?;
    context.user = Some(user.clone());
    context.device = Some(hash_host_key(host_key));
    Ok(user)
}

pub(super) fn boxed(response: Response<Full<Bytes>>) -> Response<ResponseBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<Bytes, ApiError> {
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
