//! Which handler a method and path go to. Clients build their URLs by appending
//! `sync/<method>` to whatever the user typed, so paths are matched leniently, as the
//! official server's router does and a bit more: repeated and trailing slashes are ignored,
//! the configured `path_prefix` may be present or not (a client given `http://host/anki`
//! without a trailing slash drops the `anki`), and a `sync/` or `msync/` the user typed into
//! the address (`http://host/sync/`) is tolerated before the real one.

use crate::protocol::{MediaMethod, Method, SyncMethod};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Index,
    Health,
    Metrics,
    /// A protocol method sent as POST.
    Api(Method),
    /// `GET /msync/begin?k=..&v=..`, used by some older clients.
    MediaBeginQuery,
    NotFound,
    MethodNotAllowed,
}

/// How many stray `sync`/`msync` segments may precede the real one: one is what a user who
/// typed the sync URL into the address produces; two covers a proxy that adds one more.
const MAX_STRAY_SEGMENTS: usize = 2;

/// `prefix` is the normalized `path_prefix` (`/anki`, or empty).
pub(crate) fn route(method: &http::Method, path: &str, prefix: &str) -> Route {
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let prefix: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    if !prefix.is_empty() && segments.starts_with(&prefix) {
        segments.drain(..prefix.len());
    }
    let get = method == http::Method::GET || method == http::Method::HEAD;
    let post = method == http::Method::POST;
    let only = |ok: bool, route: Route| if ok { route } else { Route::MethodNotAllowed };
    match segments.as_slice() {
        [] => only(get, Route::Index),
        ["health"] => only(get, Route::Health),
        ["metrics"] => only(get, Route::Metrics),
        [stray @ .., kind, name]
            if stray.len() <= MAX_STRAY_SEGMENTS
                && stray.iter().all(|s| matches!(*s, "sync" | "msync")) =>
        {
            api(kind, name, get, post)
        }
        _ => Route::NotFound,
    }
}

fn api(kind: &str, name: &str, get: bool, post: bool) -> Route {
    let only = |ok: bool, route: Route| if ok { route } else { Route::MethodNotAllowed };
    match kind {
        "sync" => match SyncMethod::from_name(name) {
            Some(m) => only(post, Route::Api(Method::Sync(m))),
            None => Route::NotFound,
        },
        "msync" => match MediaMethod::from_name(name) {
            Some(MediaMethod::Begin) if get => Route::MediaBeginQuery,
            Some(m) => only(post, Route::Api(Method::Media(m))),
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method as M;

    const META: Route = Route::Api(Method::Sync(SyncMethod::Meta));

    #[test]
    fn routes() {
        let route = |m: &M, p: &str| route(m, p, "");
        assert_eq!(route(&M::GET, "/"), Route::Index);
        assert_eq!(route(&M::GET, "/health"), Route::Health);
        assert_eq!(route(&M::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&M::POST, "/sync/meta"), META);
        assert_eq!(
            route(&M::POST, "//sync//sanityCheck2/"),
            Route::Api(Method::Sync(SyncMethod::SanityCheck2))
        );
        assert_eq!(
            route(&M::POST, "/msync/begin"),
            Route::Api(Method::Media(MediaMethod::Begin))
        );
        assert_eq!(route(&M::GET, "/msync/begin"), Route::MediaBeginQuery);
        assert_eq!(route(&M::POST, "/sync/nope"), Route::NotFound);
        assert_eq!(route(&M::POST, "/sync/meta/extra"), Route::NotFound);
        assert_eq!(route(&M::POST, "/other"), Route::NotFound);
        assert_eq!(route(&M::POST, "/other/sync/meta"), Route::NotFound);
        assert_eq!(route(&M::GET, "/sync/meta"), Route::MethodNotAllowed);
        assert_eq!(route(&M::POST, "/health"), Route::MethodNotAllowed);
        assert_eq!(route(&M::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(
            route(&M::GET, "/msync/mediaChanges"),
            Route::MethodNotAllowed
        );
    }

    #[test]
    fn the_url_shapes_clients_produce() {
        let route = |p: &str| route(&M::POST, p, "");
        // The user typed the sync URL (or the media URL) as the server address.
        assert_eq!(route("/sync/sync/meta"), META);
        assert_eq!(route("/sync//sync/meta/"), META);
        assert_eq!(
            route("/sync/msync/mediaChanges"),
            Route::Api(Method::Media(MediaMethod::MediaChanges))
        );
        assert_eq!(
            route("/msync/msync/begin"),
            Route::Api(Method::Media(MediaMethod::Begin))
        );
        assert_eq!(route("/sync/sync/sync/meta"), META);
        assert_eq!(route("/sync/sync/sync/sync/meta"), Route::NotFound);
        assert_eq!(route("/msync/meta"), Route::NotFound);
    }

    #[test]
    fn the_prefix_is_optional() {
        let route = |m: &M, p: &str| route(m, p, "/anki/x");
        assert_eq!(route(&M::POST, "/anki/x/sync/meta"), META);
        assert_eq!(route(&M::POST, "//anki//x/sync/sync/meta/"), META);
        assert_eq!(route(&M::POST, "/sync/meta"), META);
        assert_eq!(route(&M::GET, "/anki/x/"), Route::Index);
        assert_eq!(route(&M::GET, "/anki/x"), Route::Index);
        assert_eq!(route(&M::GET, "/anki/x/health"), Route::Health);
        assert_eq!(route(&M::GET, "/anki/x/metrics"), Route::Metrics);
        assert_eq!(route(&M::GET, "/anki/y/health"), Route::NotFound);
        assert_eq!(route(&M::POST, "/anki/sync/meta"), Route::NotFound);
    }
}
