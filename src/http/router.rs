//! Which handler a method and path go to. Paths are matched after collapsing repeated
//! slashes and dropping a trailing one, so `//sync/meta/` reaches `meta` as it does on the
//! official server's router.

use crate::protocol::{MediaMethod, Method, SyncMethod};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Index,
    Health,
    /// A protocol method sent as POST.
    Api(Method),
    /// `GET /msync/begin?k=..&v=..`, used by some older clients.
    MediaBeginQuery,
    NotFound,
    MethodNotAllowed,
}

pub(crate) fn route(method: &http::Method, path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == http::Method::GET || method == http::Method::HEAD;
    let post = method == http::Method::POST;
    let only = |ok: bool, route: Route| if ok { route } else { Route::MethodNotAllowed };
    match segments.as_slice() {
        [] => only(get, Route::Index),
        ["health"] => only(get, Route::Health),
        ["sync", name] => match SyncMethod::from_name(name) {
            Some(m) => only(post, Route::Api(Method::Sync(m))),
            None => Route::NotFound,
        },
        ["msync", name] => match MediaMethod::from_name(name) {
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

    #[test]
    fn routes() {
        assert_eq!(route(&M::GET, "/"), Route::Index);
        assert_eq!(route(&M::GET, "/health"), Route::Health);
        assert_eq!(
            route(&M::POST, "/sync/meta"),
            Route::Api(Method::Sync(SyncMethod::Meta))
        );
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
        assert_eq!(route(&M::GET, "/sync/meta"), Route::MethodNotAllowed);
        assert_eq!(route(&M::POST, "/health"), Route::MethodNotAllowed);
        assert_eq!(
            route(&M::GET, "/msync/mediaChanges"),
            Route::MethodNotAllowed
        );
    }
}
