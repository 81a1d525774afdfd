//! `ankisyncd healthcheck`: asks the server configured here for `GET <path_prefix>/health`
//! and succeeds on 200, so a container image needs no curl. It connects to the configured
//! port on this machine (loopback when the server listens on every address), over TLS when
//! `[tls]` is set.
//!
//! Over TLS the server's certificate is not checked against any authority: the probe only
//! asks whether this machine's server answers, sends no secret, and must not fail because
//! the certificate names the public host name rather than 127.0.0.1. The handshake itself
//! is verified (the server proves it holds the certificate's key).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::config::Config;

/// Connecting and the whole exchange: a healthy server answers in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: {source}")]
    Exchange {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{addr} answered {status:?} instead of 200")]
    Unhealthy { addr: SocketAddr, status: String },
    #[error("{addr} did not answer in HTTP (does it serve HTTPS? then set [tls] here too)")]
    NotHttp { addr: SocketAddr },
}

/// Succeeds when the server answered 200.
pub fn check(config: &Config) -> Result<(), HealthError> {
    let host = match config.host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(host, config.port);
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|source| HealthError::Connect { addr, source })?;
    let exchange = |source| HealthError::Exchange { addr, source };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(exchange)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(exchange)?;
    let request = format!(
        "GET {}/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        config.path_prefix
    );
    let response = if config.tls.enabled() {
        let connection =
            ClientConnection::new(client_config()?, ServerName::IpAddress(host.into()))?;
        exchange_over(StreamOwned::new(connection, stream), &request).map_err(exchange)?
    } else {
        exchange_over(stream, &request).map_err(exchange)?
    };
    let status_line = response.lines().next().unwrap_or_default();
    if !status_line.starts_with("HTTP/") {
        return Err(HealthError::NotHttp { addr });
    }
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(HealthError::Unhealthy {
            addr,
            status: status_line.to_string(),
        })
    }
}

/// Send the request; return the start of the answer (the status line is all we read).
fn exchange_over(mut stream: impl Read + Write, request: &str) -> std::io::Result<String> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut head = [0u8; 256];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match stream.read(&mut head[len..])? {
            0 => break,
            n => len += n,
        }
    }
    Ok(String::from_utf8_lossy(&head[..len]).into_owned())
}

fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts whatever certificate the local server presents (see the module comment), but
/// still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
