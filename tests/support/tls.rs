//! TLS for the end-to-end tests: a throwaway certificate authority whose server
//! certificates name `localhost` and 127.0.0.1, and a small rustls client that can insist on
//! one protocol version and reports what the server presented.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned};
use tempfile::TempDir;

use super::{parse_http_response, HTTP_TIMEOUT};

/// A certificate authority made for one test; its files live as long as it does.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_file: PathBuf,
    dir: TempDir,
}

/// A server certificate and key, as PEM files.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate itself, to recognise it in a handshake.
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ankisyncd test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = TempDir::new().expect("CA directory");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write the CA certificate");
        TestCa {
            issuer: Issuer::new(params, key),
            ca_file,
            dir,
        }
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A new server certificate with a new key, written as `NAME.crt` and `NAME.key` in the
    /// CA's directory.
    pub fn issue(&self, name: &str) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let files = ServerCert {
            cert: self.dir.path().join(format!("{name}.crt")),
            key: self.dir.path().join(format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}

impl ServerCert {
    /// Makes `cert`/`key` the files at `paths`, each replaced by a rename (as renewal tools
    /// do), certificate first.
    pub fn install_as(&self, paths: &ServerCert) {
        for (from, to) in [(&self.cert, &paths.cert), (&self.key, &paths.key)] {
            let staged = to.with_extension("new");
            std::fs::copy(from, &staged).expect("stage a TLS file");
            std::fs::rename(&staged, to).expect("replace a TLS file");
        }
    }
}

/// What one HTTPS exchange saw.
pub struct HttpsReply {
    pub status: u16,
    pub body: String,
    /// `"TLSv1.2"` or `"TLSv1.3"`.
    pub version: &'static str,
    /// The certificate the server presented.
    pub cert_der: Vec<u8>,
}

/// `GET path` over HTTPS to 127.0.0.1:`port`, trusting only `ca_file`; `version` pins the
/// protocol (`rustls::version::TLS12` or `TLS13`), `None` offers both.
pub fn https_get(
    port: u16,
    path: &str,
    ca_file: &Path,
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> io::Result<HttpsReply> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let both = [&rustls::version::TLS13, &rustls::version::TLS12];
    let versions: Vec<_> = match version {
        Some(v) => vec![v],
        None => both.to_vec(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let connection = ClientConnection::new(Arc::new(config), ServerName::IpAddress(ip.into()))
        .map_err(io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&(ip, port).into(), HTTP_TIMEOUT)?;
    tcp.set_read_timeout(Some(HTTP_TIMEOUT))?;
    tcp.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut stream = StreamOwned::new(connection, tcp);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // The server closes without close_notify after `Connection: close`.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    let version = match stream.conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        _ => "other",
    };
    let cert_der = stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (status, body) = parse_http_response(&response)?;
    Ok(HttpsReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        version,
        cert_der,
    })
}
