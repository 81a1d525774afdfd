//! The collection-sync methods over HTTP: the steps of a normal sync on the user's actor,
//! and `upload`, whose body is streamed to a scratch file before the actor takes it in. Also
//! the debug-build crash points the end-to-end tests use.

use bytes::Bytes;
use http::Response;

use super::dispatch::{
    boxed, json, parse, receive_file, Completes, Context, OverLimit, ReceivedFile,
};
use super::envelope::{self, ResponseBody, SyncRequest};
use super::error::ApiError;
use crate::app::App;
use crate::auth::{hash_host_key, UserRef};
use crate::fullsync::{self, UploadReply};
use crate::metrics::SyncKind;
use crate::protocol::{
    ApplyChangesRequest, ApplyChunkRequest, ApplyGravesRequest, Method, SanityCheckRequest,
    StartRequest, SyncMethod,
};
use crate::sync::{self, Step};

pub(in crate::http) use test_hooks::{crash_point, pause_point};

/// The steps of a normal sync: each runs on the user's actor with the user's state.
pub(super) async fn normal_sync(
    app: &App,
    user: &UserRef,
    method: SyncMethod,
    request: &SyncRequest,
    context: &mut Context,
) -> Result<Bytes, ApiError> {
    let store = app.store.clone();
    let key = request.session_key.clone();
    let parse_as = Method::Sync(method);
    let body = request.body.len();
    match method {
        SyncMethod::Start => {
            let start: StartRequest = parse(app, parse_as, request)?;
            let memory_rows = app.stage_memory_rows;
            let device = hash_host_key(&request.host_key);
            let step = Step::Start {
                since: start.min_usn,
            };
            run_step(app, user, body, step, move |state| {
                sync::start(&store, state, &key, device, start, memory_rows)
            })
            .await
        }
        SyncMethod::ApplyGraves => {
            let graves: ApplyGravesRequest = parse(app, parse_as, request)?;
            let rows = graves.chunk.notes.len() + graves.chunk.cards.len();
            run_step(app, user, body, Step::Stage { rows }, move |state| {
                sync::apply_graves(&store, state, &key, graves)
            })
            .await
        }
        SyncMethod::ApplyChanges => {
            let changes: ApplyChangesRequest = parse(app, parse_as, request)?;
            run_step(app, user, body, Step::Changes, move |state| {
                sync::apply_changes(&store, state, &key, changes)
            })
            .await
        }
        SyncMethod::Chunk => {
            run_step(app, user, body, Step::Chunk, move |state| {
                sync::chunk(&store, state, &key)
            })
            .await
        }
        SyncMethod::ApplyChunk => {
            let chunk: ApplyChunkRequest = parse(app, parse_as, request)?;
            let rows = chunk.chunk.notes.len() + chunk.chunk.cards.len() + chunk.chunk.revlog.len();
            run_step(app, user, body, Step::Stage { rows }, move |state| {
                sync::apply_chunk(&store, state, &key, chunk)
            })
            .await
        }
        SyncMethod::SanityCheck2 => {
            let check: SanityCheckRequest = parse(app, parse_as, request)?;
            run_step(app, user, body, Step::SanityCheck, move |state| {
                sync::sanity_check(&store, state, &key, check)
            })
            .await
        }
        SyncMethod::Finish => {
            let quota = app.quota.collection;
            let finished = app
                .users
                .run(user, move |state| {
                    sync::finish(&store, state, &key, quota, crate::clock::now_millis())
                })
                .await??;
            context.completes = Some(Completes {
                kind: SyncKind::normal,
                took: Some(finished.took),
            });
            json(&finished.modified_ms)
        }
        SyncMethod::Abort => {
            run_step(app, user, body, Step::Abort, move |state| {
                sync::abort(&store, state)
            })
            .await
        }
        // Served elsewhere in this module.
        SyncMethod::HostKey | SyncMethod::Meta | SyncMethod::Upload | SyncMethod::Download => Err(
            sync::SyncError::Internal(format!("{} routed to normal sync", method.name())).into(),
        ),
    }
}

/// Request bodies up to this size (decompressed) may be handled inline; a larger one is
/// work enough for the blocking pool whatever the step.
const LIGHT_BODY: usize = 64 * 1024;

/// What an inline attempt hands back: the step's result, or the step itself, unrun,
/// because it turned out heavy for this user's state.
enum Attempt<T, F> {
    Ran(T),
    Heavy(F),
}

/// Run a step on the user's actor and encode its reply: inline when its request `body` is
/// small, the store healthy and the step light for the user's state ([`sync::is_light`]),
/// otherwise on the blocking pool. A light step runs in the job that judged it, so nothing
/// of the user's comes between the judgement and the step; a heavy one is submitted again,
/// unrun, to the blocking pool.
pub(super) async fn run_step<T, F>(
    app: &App,
    user: &UserRef,
    body: usize,
    step: Step,
    job: F,
) -> Result<Bytes, ApiError>
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce(&mut sync::UserState) -> Result<T, sync::SyncError> + Send + 'static,
{
    let job = if body <= LIGHT_BODY && app.store.is_healthy() {
        let store = app.store.clone();
        let attempt = app
            .users
            .run_inline(user, move |state| {
                if sync::is_light(&store, state, step) {
                    Attempt::Ran(job(state))
                } else {
                    Attempt::Heavy(job)
                }
            })
            .await?;
        match attempt {
            Attempt::Ran(reply) => return json(&reply?),
            Attempt::Heavy(job) => job,
        }
    } else {
        job
    };
    let reply = app.users.run(user, job).await??;
    json(&reply)
}

/// `upload`: the body goes straight into a scratch file (never into memory), then the user's
/// actor checks it and takes it in. Every outcome the client should show is HTTP 200 with
/// the official text (protocol.md §4.10).
pub(super) async fn upload<B>(
    app: &App,
    headers: &http::HeaderMap,
    body: B,
    context: &mut Context,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A collection must be a file for SQLite to open: nothing is kept in memory.
    let ReceivedFile {
        request,
        body: received,
        file,
        user,
    } = match receive_file(app, headers, body, 0, context).await? {
        Ok(received) => received,
        Err(OverLimit { envelope, .. }) => {
            let text = UploadReply::TooLarge.text();
            tracing::warn!(
                user = context.user.as_ref().map(|u| &*u.name),
                "full upload refused: {text}"
            );
            let text = Bytes::from(text);
            return Ok(boxed(envelope::encode_ok(&envelope, text)?));
        }
    };
    // The official server refuses a body of the cap or more (protocol.md §1.5).
    let reply = if received.len() >= app.limits.max_decompressed {
        UploadReply::TooLarge
    } else {
        let (store, path, keep, quota) = (
            app.store.clone(),
            file.path().to_path_buf(),
            app.keep_generations,
            app.quota.collection,
        );
        app.users
            .run(&user, move |state| {
                state.discard_session();
                let now = crate::clock::now_millis();
                fullsync::receive_upload(&store, user.id, &path, keep, quota, now)
            })
            .await??
    };
    drop(file);
    if reply == UploadReply::Ok {
        context.completes = Some(Completes {
            kind: SyncKind::full_upload,
            took: None,
        });
        app.scratch.drop_downloads(user.id);
        app.janitor.notify_one();
        // The other devices are most likely clients of the uploader's kind.
        let schema = fullsync::DownloadSchema::for_sync_version(request.sync_version);
        prebuild_download(app, user, schema);
    }
    Ok(boxed(envelope::encode_ok(
        &request.envelope,
        Bytes::from(reply.text()),
    )?))
}

/// Lets the end-to-end tests kill the server at a chosen step of a sync (as a power cut
/// would) to prove a sync is all or nothing, or hold a step until they have changed something
/// under it (a user removed mid-sync). Debug builds only; release binaries have no such knob.
mod test_hooks {
    use crate::protocol::SyncMethod;

    #[cfg(debug_assertions)]
    fn at(var: &str, when: &str, method: SyncMethod) -> bool {
        std::env::var(var).ok().as_deref() == Some(&format!("{when}:{}", method.name()))
    }

    #[cfg(debug_assertions)]
    pub(in crate::http) fn crash_point(when: &str, method: SyncMethod) {
        // e.g. TEST_ANKISYNCD_CRASH=after:finish
        if at("TEST_ANKISYNCD_CRASH", when, method) {
            tracing::warn!("test crash point {when}:{} reached", method.name());
            std::process::abort();
        }
    }

    /// e.g. TEST_ANKISYNCD_PAUSE=before:finish with TEST_ANKISYNCD_RESUME_FILE=PATH: the
    /// request waits (up to a minute) until PATH exists, before its host key is resolved.
    #[cfg(debug_assertions)]
    pub(in crate::http) async fn pause_point(when: &str, method: SyncMethod) {
        let Some(resume) = std::env::var_os("TEST_ANKISYNCD_RESUME_FILE") else {
            return;
        };
        if !at("TEST_ANKISYNCD_PAUSE", when, method) {
            return;
        }
        let resume = std::path::PathBuf::from(resume);
        tracing::warn!("test pause point {when}:{} reached", method.name());
        for _ in 0..1200 {
            if resume.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!("test pause point {when}:{} passed", method.name());
    }

    #[cfg(not(debug_assertions))]
    pub(in crate::http) fn crash_point(_when: &str, _method: SyncMethod) {}

    #[cfg(not(debug_assertions))]
    pub(in crate::http) async fn pause_point(_when: &str, _method: SyncMethod) {}
}

/// After a full upload, the user's other devices come for a full download: build it now, in
/// the user's actor (queued after nothing but this user's requests), so they find it ready
/// instead of waiting for the build (benches/README.md, first download).
fn prebuild_download(app: &App, user: UserRef, schema: fullsync::DownloadSchema) {
    let (users, store, scratch) = (app.users.clone(), app.store.clone(), app.scratch.clone());
    tokio::spawn(async move {
        let built = users
            .run(&user, move |_state| {
                crate::bulk::run("download", || {
                    fullsync::prepare_download(&store, &scratch, user.id, schema).map(|_| ())
                })
            })
            .await;
        match built {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("preparing the download after an upload: {e}"),
            Err(e) => tracing::debug!("download not prepared: {e}"),
        }
    });
}
