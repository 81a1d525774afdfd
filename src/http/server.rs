//! Accepting connections and shutting down. Each connection is served by hyper (HTTP/1.1,
//! which is what every Anki client speaks) on its own task; shutdown stops accepting, lets
//! requests in progress finish within a grace period, then returns.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::dispatch;
use crate::app::App;

/// How long requests in progress may run on after a shutdown signal. A full upload that needs
/// longer is cut: the client retries it, and nothing half-written is ever committed.
const GRACE: Duration = Duration::from_secs(30);
/// A client that has not sent its headers by then holds a connection for nothing.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Replies end with a small final chunk; without NODELAY it waits for the client's
        // delayed ACK, about 20 ms per request (benches/README.md, media sync).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(dispatch::handle(app, request, peer).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; waiting for requests in progress");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => {
            tracing::warn!("requests still running after {GRACE:?}; closing them");
        }
    }
}
