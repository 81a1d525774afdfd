//! Accepting connections and shutting down. Each connection is served by hyper (HTTP/1.1,
//! which is what every Anki client speaks) on its own task, after a TLS handshake when
//! built-in HTTPS is on; shutdown stops accepting, lets requests in progress finish within
//! a grace period, then returns.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::{Read, Write};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::{ProtocolVersion, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::dispatch;
use crate::app::App;

/// How long requests in progress may run on after a shutdown signal. A full upload that needs
/// longer is cut: the client retries it, and nothing half-written is ever committed.
const GRACE: Duration = Duration::from_secs(30);
/// A client that has not sent its headers (or finished its TLS handshake) by then holds a
/// connection for nothing.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve until `shutdown` resolves; `tls` makes every connection HTTPS.
pub(crate) async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
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
        let (app, acceptor, watcher) = (app.clone(), acceptor.clone(), graceful.watcher());
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(app, TokioIo::new(stream), peer, watcher).await,
                Some(acceptor) => handshake(app, &acceptor, stream, peer, watcher).await,
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

async fn handshake(
    app: Arc<App>,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
) {
    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let version = match tls.get_ref().1.protocol_version() {
                Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
                Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
                _ => "other",
            };
            tracing::debug!(%peer, version, "TLS handshake");
            app.metrics.tls_handshake(version);
            serve_connection(app, TokioIo::new(tls), peer, watcher).await;
        }
        // Scanners and clients that do not trust the certificate end here.
        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn serve_connection<I>(app: Arc<App>, io: I, peer: SocketAddr, watcher: Watcher)
where
    I: Read + Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(dispatch::handle(app, request, peer).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, "connection ended with an error: {e}");
    }
}
