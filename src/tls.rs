//! Built-in HTTPS: the certificate and key files (`[tls]`), the rustls server settings, and
//! reloading the files on SIGHUP. A reload swaps the certificate that NEW handshakes get;
//! connections already open keep theirs, so no sync in progress notices. A reload that
//! fails (a half-written file, a key that does not match) keeps the old certificate.
//!
//! TLS 1.2 and 1.3 are both offered: iOS and older Android clients need 1.2.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and key {key}: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS settings: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate new handshakes get, and where it came from.
pub(crate) struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Read both files now: a server with TLS configured does not start without them.
    pub(crate) fn load(files: &TlsFiles) -> Result<Arc<Certificates>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read_pair(files, &provider)?;
        Ok(Arc::new(Certificates {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Read the files again; on success new handshakes get the new certificate.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let key = Arc::new(read_pair(&self.files, &self.provider)?);
        // A poisoned lock only means a reader panicked; the value is a plain Arc.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The rustls settings of the listener: TLS 1.2 and 1.3, HTTP/1.1 by ALPN, the
    /// certificate from `self` at each handshake.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(test_hooks::protocol_versions())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE in the file".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bad = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(format!("no usable private key ({e})")))
}

/// Lets the end-to-end tests make the real client speak one TLS version: it offers both and
/// would always pick 1.3. Debug builds only.
mod test_hooks {
    use rustls::SupportedProtocolVersion;

    static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    #[cfg(debug_assertions)]
    pub(super) fn protocol_versions() -> &'static [&'static SupportedProtocolVersion] {
        static TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
        static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        // e.g. TEST_ANKISYNCD_TLS_VERSION=1.2
        match std::env::var("TEST_ANKISYNCD_TLS_VERSION").ok().as_deref() {
            Some("1.2") => TLS12,
            Some("1.3") => TLS13,
            _ => BOTH,
        }
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn protocol_versions() -> &'static [&'static SupportedProtocolVersion] {
        BOTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.cert.pem()).unwrap();
        std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_reload_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a");
        let certs = Certificates::load(&files).unwrap();
        let first = certs.current().cert[0].clone();

        let other = write_pair(dir.path(), "b");
        std::fs::copy(&other.cert, &files.cert).unwrap();
        std::fs::copy(&other.key, &files.key).unwrap();
        certs.reload().unwrap();
        let second = certs.current().cert[0].clone();
        assert_ne!(first, second);

        // A certificate whose key is still the old one: refused, the current pair stays.
        let third = write_pair(dir.path(), "c");
        std::fs::copy(&third.cert, &files.cert).unwrap();
        let err = certs.reload().unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        assert_eq!(certs.current().cert[0], second);

        std::fs::write(&files.cert, "not pem").unwrap();
        let err = certs.reload().unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        std::fs::remove_file(&files.key).unwrap();
        std::fs::copy(&third.cert, &files.cert).unwrap();
        let err = certs.reload().unwrap_err();
        assert!(err.to_string().contains("a.key"), "{err}");
        assert_eq!(certs.current().cert[0], second);
    }

    #[test]
    fn loading_names_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a");
        let missing = TlsFiles {
            cert: dir.path().join("missing.crt"),
            key: files.key.clone(),
        };
        let err = Certificates::load(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.crt"), "{err}");
        let swapped = TlsFiles {
            cert: files.key.clone(),
            key: files.cert.clone(),
        };
        let err = Certificates::load(&swapped).unwrap_err();
        assert!(err.to_string().contains("a.key"), "{err}");
    }
}
