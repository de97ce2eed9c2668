//! TLS material read from PEM files, and the rustls configurations keyledger's HTTP
//! server and its clients build from it. ring is the crypto provider, as async-nats
//! uses it: one provider in the process, installed as rustls's default by
//! [`install_provider`] before any client is built (reqwest asks rustls for the default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be used. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM of the kind wanted.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to give instead.
        problem: String,
    },
    /// rustls refused the material (a key that does not match its certificate, an
    /// unsupported key type, a CA file with no usable certificate).
    #[error("{what}: {source}")]
    Refused {
        /// Which material.
        what: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// ring, as rustls's crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process's default provider, once; later calls do nothing.
/// Every process that builds an HTTP client calls it first.
pub fn install_provider() {
    // Already installed (by an earlier call) is the outcome wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of a PEM file, in order (a chain: leaf first).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let problem = |problem: String| TlsError::File {
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| problem(format!("cannot read PEM certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(format!("not a PEM certificate file ({})", pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(problem(
            "holds no certificate: give a PEM file with `-----BEGIN CERTIFICATE-----` blocks"
                .into(),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1). The error never quotes it.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        problem: format!(
            "no private key read ({}): give a PEM file with a `-----BEGIN PRIVATE KEY-----` \
             (or RSA/EC PRIVATE KEY) block",
            pem_problem(&e)
        ),
    })
}

/// A PEM file's problem, without the file's contents (a key's bytes must not reach a
/// message, and a certificate's are noise in one).
fn pem_problem(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "none found".into(),
        Error::MissingSectionEnd { .. } => "a section has no END line: cut short?".into(),
        _ => "malformed PEM".into(),
    }
}

/// The certificates of a CA file, as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|source| TlsError::Refused {
            what: format!("CA file {}", path.display()),
            source,
        })?;
    }
    Ok(roots)
}

/// The system's trust anchors (what a CA-signed deployment needs no file for).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "reading a system CA certificate failed");
    }
    roots.add_parsable_certificates(found.certs);
    roots
}

/// A client certificate and its key, for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentityFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl ClientIdentityFiles {
    /// The pair, when both files are given.
    pub fn pair(cert: Option<&Path>, key: Option<&Path>) -> Option<Self> {
        Some(Self {
            cert: cert?.to_owned(),
            key: key?.to_owned(),
        })
    }
}

/// rustls's refusal of a certificate `cert` with its key `key` (`what` names its use).
fn refused_pair<'a>(
    what: &'a str,
    cert: &'a Path,
    key: &'a Path,
) -> impl FnOnce(rustls::Error) -> TlsError + 'a {
    move |source| TlsError::Refused {
        what: format!("{what} {} with key {}", cert.display(), key.display()),
        source,
    }
}

/// A client configuration trusting `ca` (or, without one, the system's CAs), with an
/// optional client certificate. It offers HTTP/1.1 only, as keyledger speaks it.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<&ClientIdentityFiles>,
) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(path) => roots(path)?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Refused {
            what: "TLS versions".into(),
            source,
        })?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(files) => builder
            .with_client_auth_cert(certificates(&files.cert)?, private_key(&files.key)?)
            .map_err(refused_pair("client certificate", &files.cert, &files.key))?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The files of an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CAs whose client certificates are accepted (mutual TLS); `None`: no client
    /// certificates are asked for.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse clients without a certificate (otherwise they may
    /// still authenticate with a token).
    pub require_client_cert: bool,
}

/// The server configuration of `files`: HTTP/1.1 by ALPN, client certificates
/// verified against `client_ca` when one is given.
pub fn server_config(files: &ServerFiles) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Refused {
            what: "TLS versions".into(),
            source,
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsError::File {
                path: ca.clone(),
                problem: format!("cannot verify client certificates with it: {e}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)
        .map_err(refused_pair("certificate", &files.cert, &files.key))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if files.client_ca.is_some() {
        // A resumed session skips the handshake's certificate checks (an expired
        // certificate, a CA since removed): with client certificates, every connection
        // is a full handshake.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_pem_is_named_with_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let e = certificates(&path).unwrap_err().to_string();
        assert!(
            e.contains("cert.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = private_key(&path).unwrap_err().to_string();
        assert!(e.contains("BEGIN PRIVATE KEY"), "{e}");
        let missing = certificates(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.pem"), "{missing}");
    }

    #[test]
    fn a_key_error_never_quotes_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = private_key(&path).unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
}
