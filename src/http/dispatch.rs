//! One request, start to finish: route it, decode its envelope, authenticate it, hand it to
//! the method's handler (through the user's actor for anything that touches a user's data),
//! encode the answer, and write the request's one log line and its metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ankisyncd_actors::SupervisorHandle;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::envelope::{self, Envelope, EnvelopeError, ResponseBody, SyncRequest};
use super::error::{plain, ApiError};
use super::metered::Metered;
use super::pages;
use super::router::{route, Route};
use super::{collection, msync};
use crate::app::App;
use crate::auth::{hash_host_key, StoreDirectory, UserRef};
use crate::fullsync;
use crate::metrics::{Readings, SyncKind, CONTENT_TYPE};
use crate::protocol::{parse_json, HostKeyRequest, MediaMethod, MetaRequest, Method, SyncMethod};
use crate::store::HostKeyHash;
use crate::sync::{self, Step};

/// What the request's log line and metrics say besides method, status and timing, and which
/// device sent it.
#[derive(Default)]
pub(super) struct Context {
    pub(super) user: Option<UserRef>,
    pub(super) client: String,
    /// Set once the request's host key resolved.
    device: Option<HostKeyHash>,
    /// The sync this request completes, once its response has been sent.
    pub(super) completes: Option<Completes>,
}

pub(super) struct Completes {
    pub kind: SyncKind,
    /// How long the sync took, when not just this request (a normal sync's `finish`).
    pub took: Option<Duration>,
}

pub(crate) async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let path = request.uri().path().to_string();
    let route = route(request.method(), &path, &app.path_prefix);
    let bytes_in = Arc::new(AtomicU64::new(0));
    let mut context = Context::default();

    let result = match &route {
        Route::Health => Ok(boxed(plain(StatusCode::OK, ""))),
        Route::Index => index(&app, request.headers()).await,
        Route::Metrics if app.metrics_page => metrics(&app).await,
        Route::Metrics | Route::NotFound => Err(ApiError::NotFound(path.clone())),
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
            if let Some(header) = parts.headers.get(envelope::ANKI_SYNC_HEADER) {
                for field in envelope::unknown_header_fields(header) {
                    let label =
                        format!("{} ({} header)", method.label(), envelope::ANKI_SYNC_HEADER);
                    app.compat.unknown_field(&label, &field, "");
                }
            }
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

    if let Err(ApiError::Envelope(EnvelopeError::UnsupportedVersion(version))) = &result {
        app.compat.sync_version(*version, &context.client);
    }
    let response = result.unwrap_or_else(|e| boxed(e.into_response(context.user.as_ref())));
    if let Some(device) = context.device {
        app.activity
            .record(device, &context.client, crate::clock::now_secs());
    }
    log_request(&route, &path, &context, &response, &bytes_in, started);
    metered(&app, &route, context, response, &bytes_in, started)
}

/// Count the request in the metrics, and its response's bytes as they go out; a response
/// that completes a sync counts it once its last byte is sent.
fn metered(
    app: &Arc<App>,
    route: &Route,
    context: Context,
    response: Response<ResponseBody>,
    bytes_in: &AtomicU64,
    started: Instant,
) -> Response<ResponseBody> {
    let method = metric_label(route);
    let status = response.status();
    app.metrics.request(
        &method,
        status.as_u16(),
        started.elapsed(),
        bytes_in.load(Ordering::Relaxed),
    );
    let on_end =
        context
            .completes
            .filter(|_| status.is_success())
            .map(|Completes { kind, took }| {
                let app = app.clone();
                Box::new(move || {
                    app.metrics
                        .sync(kind, took.unwrap_or_else(|| started.elapsed()))
                }) as Box<dyn FnOnce() + Send>
            });
    let sent = app.metrics.sent(&method);
    let content_length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    response.map(|body| Metered::new(body, content_length, sent, on_end).boxed_unsync())
}

/// The `method` label of a request: protocol methods by name, other routes by a fixed word,
/// so that stray paths cannot grow the metrics.
fn metric_label(route: &Route) -> String {
    match route {
        Route::Api(m) => m.label(),
        Route::MediaBeginQuery => Method::Media(MediaMethod::Begin).label(),
        Route::Index => "index".into(),
        Route::Health => "health".into(),
        Route::Metrics => "metrics".into(),
        Route::NotFound => "not_found".into(),
        Route::MethodNotAllowed => "method_not_allowed".into(),
    }
}

async fn index(app: &App, headers: &http::HeaderMap) -> Result<Response<ResponseBody>, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            // A proxy chain lists one value per hop; the first is what the visitor used.
            .and_then(|v| v.split(',').next())
            .map(str::trim)
    };
    let listen = app.listen_address();
    let host = header("x-forwarded-host")
        .or_else(|| header(header::HOST.as_str()))
        .filter(|h| pages::plausible_host(h))
        .unwrap_or(&listen);
    let scheme = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => app.scheme(),
    };
    let users = user_names(app).await?.len();
    let page = pages::Index {
        scheme,
        host,
        prefix: &app.path_prefix,
        uptime: app.uptime(),
        users,
    }
    .render();
    Ok(boxed(plain(StatusCode::OK, &page)))
}

async fn metrics(app: &App) -> Result<Response<ResponseBody>, ApiError> {
    let user_names = user_names(app).await?;
    let readings = Readings {
        actors: vec![
            ("collection", app.users.active_users().await),
            ("media", app.media.active_users().await),
        ],
        sessions: app.sessions.count(),
        users: user_names.len(),
        now_secs: crate::clock::now_secs(),
        user_names,
    };
    let mut response = plain(StatusCode::OK, &app.metrics.render(&readings));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    Ok(boxed(response))
}

async fn user_names(app: &App) -> Result<Vec<String>, ApiError> {
    let store = app.store.clone();
    let names = tokio::task::spawn_blocking(move || store.user_names())
        .await
        .map_err(|e| sync::SyncError::Internal(format!("listing users: {e}")))?
        .map_err(sync::SyncError::from)?;
    Ok(names)
}

/// Parse a request's JSON body. A field this server does not know is ignored, with one
/// warning naming it (a newer client may add fields; it should still sync).
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    app: &App,
    method: Method,
    request: &SyncRequest,
) -> Result<T, ApiError> {
    let (value, unknown) = parse_json(&request.body).map_err(ApiError::BadJson)?;
    for field in unknown {
        app.compat
            .unknown_field(&method.label(), &field, &request.client_version);
    }
    Ok(value)
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
            let login: HostKeyRequest = parse(app, method, &request)?;
            context.user = None;
            let name = login.user.clone();
            let reply = sync::host_key(
                app.store.clone(),
                &app.limiter,
                peer.ip(),
                request.client_version.clone(),
                login,
                crate::clock::now_secs(),
            )
            .await?;
            app.compat
                .login(&name, &request.client_version, request.sync_version);
            json(&reply)?
        }
        Method::Sync(SyncMethod::Meta) => {
            let user = authenticate(app, &app.users, &request.host_key, context).await?;
            let meta: MetaRequest = parse(app, method, &request)?;
            if context.client.is_empty() {
                context.client = meta.client_version.clone();
            }
            app.compat.client_version(&meta.client_version);
            app.compat
                .sync_version(meta.sync_version, &meta.client_version);
            let store = app.store.clone();
            let body = request.body.len();
            let reply = collection::run_step(app, &user, body, Step::Meta, move |state| {
                sync::meta(&store, state, &meta, crate::clock::now_millis())
            })
            .await?;
            app.metrics.synced(&user.name, crate::clock::now_secs());
            reply
        }
        Method::Sync(SyncMethod::Download) => {
            let user = authenticate(app, &app.users, &request.host_key, context).await?;
            let (store, scratch) = (app.store.clone(), app.scratch.clone());
            let schema = fullsync::DownloadSchema::for_sync_version(request.sync_version);
            let download = app
                .users
                .run(&user, move |state| {
                    state.discard_session();
                    fullsync::prepare_download(&store, &scratch, user.id, schema)
                })
                .await??;
            context.completes = Some(Completes {
                kind: SyncKind::full_download,
                took: None,
            });
            return Ok(envelope::encode_precompressed_file(
                &request.envelope,
                download.file,
                download.len,
                download.compressed,
            )?);
        }
        Method::Sync(method) => {
            collection::pause_point("before", method).await;
            let user = authenticate(app, &app.users, &request.host_key, context).await?;
            collection::crash_point("before", method);
            let reply = collection::normal_sync(app, &user, method, &request, context).await?;
            collection::crash_point("after", method);
            if method == SyncMethod::Finish {
                app.scratch.drop_downloads(user.id);
            }
            reply
        }
        Method::Media(method) => {
            let user = authenticate(app, &app.media, &request.host_key, context).await?;
            return msync::media_sync(app, &user, method, request).await;
        }
    };
    Ok(boxed(envelope::encode_ok(&request.envelope, body)?))
}

/// A request whose body is a file (a full upload, a media zip), received into memory or a
/// scratch file.
pub(super) struct ReceivedFile {
    pub request: SyncRequest,
    /// The decompressed payload, or how many bytes of it are in `file`.
    pub body: envelope::Received,
    pub file: fullsync::ScratchFile,
    pub user: UserRef,
}

/// Why a file body was not received: it passed a size limit, in this envelope.
pub(super) struct OverLimit {
    pub envelope: Envelope,
    pub error: EnvelopeError,
}

/// Receive a file body: a modern client's key is in its header, so a stranger is refused
/// before a byte reaches disk; then the body is streamed (decompressed) into memory, up to
/// `memory_cap` bytes, or else a scratch file, and a legacy client, whose key is in the body,
/// is authenticated after it. Every user lookup goes through the same directory, so either
/// supervisor's handle would do.
pub(super) async fn receive_file<B>(
    app: &App,
    headers: &http::HeaderMap,
    body: B,
    memory_cap: usize,
    context: &mut Context,
) -> Result<Result<ReceivedFile, OverLimit>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let envelope = if let Some((key, envelope)) = envelope::header_host_key(headers)? {
        authenticate(app, &app.users, &key, context).await?;
        envelope
    } else {
        Envelope::Legacy
    };
    let file = app.scratch.upload_file();
    let decoded =
        envelope::decode_post_to_file(headers, body, &app.limits, file.path(), memory_cap).await;
    let (request, received) = match decoded {
        Ok(decoded) => decoded,
        Err(
            error @ (EnvelopeError::TooLarge { .. } | EnvelopeError::DecompressedTooLarge { .. }),
        ) => return Ok(Err(OverLimit { envelope, error })),
        Err(e) => return Err(e.into()),
    };
    context.client = request.client_version.clone();
    let user = match context.user.clone() {
        Some(user) => user,
        None => authenticate(app, &app.users, &request.host_key, context).await?,
    };
    Ok(Ok(ReceivedFile {
        request,
        body: received,
        file,
        user,
    }))
}

/// Resolve a host key through `supervisor`'s directory (every user lookup goes through the
/// same one), noting the user for the log line and the device for `user devices`. The
/// lookup is one point read, done inline; after a disk fault it would first reopen (and
/// perhaps repair) the file, so then it goes to the blocking pool.
async fn authenticate<S: Send + 'static>(
    app: &App,
    supervisor: &SupervisorHandle<StoreDirectory, S>,
    host_key: &str,
    context: &mut Context,
) -> Result<UserRef, ApiError> {
    let user = if app.store.is_healthy() {
        supervisor.resolve(host_key)?
    } else {
        let (supervisor, key) = (supervisor.clone(), host_key.to_owned());
        tokio::task::spawn_blocking(move || supervisor.resolve(&key))
            .await
            .map_err(|e| sync::SyncError::Internal(format!("resolving a host key: {e}")))??
    };
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
    if matches!(route, Route::Health | Route::Metrics) {
        tracing::debug!(%method, status, "request");
    } else {
        tracing::info!(%method, user, client, status, bytes_in, bytes_out, ms = format_args!("{ms:.1}"), "request");
    }
}
