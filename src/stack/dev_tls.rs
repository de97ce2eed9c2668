//! `keyledger up --tls`: a development CA and a server certificate it signed, under
//! `<data-dir>/tls/`, made when missing. For a laptop or a test rig: production
//! deployments bring their own certificate (`--tls-cert`, `--tls-key`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// The directory under the data directory.
pub const TLS_DIR: &str = "tls";
/// The CA's certificate: what clients trust (`--cacert`, `KEYLEDGER_CACERT`).
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key, kept to sign a new server certificate when that one is
/// deleted (to change its names, or once it expires).
pub const CA_KEY: &str = "ca.key";
/// The server's certificate.
pub const SERVER_CERT: &str = "server.pem";
/// The server's private key.
pub const SERVER_KEY: &str = "server.key";

const CA_NAME: &str = "keyledger development CA";
/// A development CA lives ten years; its server certificates one.
const CA_DAYS: i64 = 3650;
const SERVER_DAYS: i64 = 365;

/// The development TLS files under `data_dir` for a server listening on `addr`, made
/// when missing: returns the files to serve and the CA file clients trust.
pub fn ensure(data_dir: &Path, addr: SocketAddr) -> Result<(infra::tls::ServerFiles, PathBuf)> {
    let dir = data_dir.join(TLS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let (server_cert, server_key) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    let now = OffsetDateTime::now_utc();
    let ca_key_pair = if ca_cert.exists() && ca_key.exists() {
        let pem = std::fs::read_to_string(&ca_key)
            .with_context(|| format!("reading {}", ca_key.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("{} is not a key", ca_key.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params(now)?.self_signed(&key)?;
        write_private(&ca_key, &key.serialize_pem())?;
        std::fs::write(&ca_cert, cert.pem())
            .with_context(|| format!("writing {}", ca_cert.display()))?;
        // A new CA: a server certificate left from an old one would not chain to it.
        let _ = std::fs::remove_file(&server_cert);
        key
    };
    if !(server_cert.exists() && server_key.exists()) {
        // The CA again from its key and name: the same subject and key identifier, so
        // what it signs chains to the ca.pem clients already trust.
        let issuer = ca_params(now)?.self_signed(&ca_key_pair)?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        let ip = addr.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            names.push(ip.to_string());
        }
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "keyledger");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(SERVER_DAYS);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer, &ca_key_pair)?;
        write_private(&server_key, &key.serialize_pem())?;
        std::fs::write(&server_cert, cert.pem())
            .with_context(|| format!("writing {}", server_cert.display()))?;
    }
    Ok((
        infra::tls::ServerFiles {
            cert: server_cert,
            key: server_key,
            client_ca: None,
            require_client_cert: false,
        },
        ca_cert,
    ))
}

fn ca_params(now: OffsetDateTime) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(CA_DAYS);
    Ok(params)
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_made_once_and_a_new_server_certificate_chains_to_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:9311".parse().unwrap();
        let (files, ca) = ensure(dir.path(), addr).unwrap();
        let first_ca = std::fs::read(&ca).unwrap();
        let first_cert = std::fs::read(&files.cert).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&files.key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "the key is private");
        // Again: nothing changes.
        ensure(dir.path(), addr).unwrap();
        assert_eq!(std::fs::read(&files.cert).unwrap(), first_cert);
        // Without the server certificate: a new one, from the same CA.
        std::fs::remove_file(&files.cert).unwrap();
        ensure(dir.path(), addr).unwrap();
        assert_eq!(std::fs::read(&ca).unwrap(), first_ca);
        assert_ne!(std::fs::read(&files.cert).unwrap(), first_cert);
        let roots = infra::tls::roots(&ca).unwrap();
        let chain = infra::tls::certificates(&files.cert).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            infra::tls::provider(),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier as _;
        verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the new server certificate chains to the CA clients trust");
    }
}
