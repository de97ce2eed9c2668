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
/// The client certificate keyledger's components present to a managed nats-server
/// that verifies clients.
pub const CLIENT_CERT: &str = "client.pem";
/// Its private key.
pub const CLIENT_KEY: &str = "client.key";

const CA_NAME: &str = "keyledger development CA";
/// A development CA lives ten years; the certificates it signs one.
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;

/// The development TLS files under `data_dir` for a server listening on `addr`, made
/// when missing: returns the files to serve and the CA file clients trust. The same
/// certificate serves the HTTP API and the managed nats-server.
pub fn ensure(data_dir: &Path, addr: SocketAddr) -> Result<(infra::tls::ServerFiles, PathBuf)> {
    let dir = data_dir.join(TLS_DIR);
    let (ca_key, ca_cert) = ensure_ca(&dir)?;
    let (cert, key) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    let ip = addr.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    issue(
        &ca_key,
        (&cert, &key),
        names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    Ok((
        infra::tls::ServerFiles {
            cert,
            key,
            client_ca: None,
            require_client_cert: false,
        },
        ca_cert,
    ))
}

/// The client certificate keyledger's own components present to a managed
/// nats-server that verifies clients, made when missing.
pub fn ensure_client(data_dir: &Path) -> Result<infra::tls::ClientIdentityFiles> {
    let dir = data_dir.join(TLS_DIR);
    let (ca_key, _) = ensure_ca(&dir)?;
    let (cert, key) = (dir.join(CLIENT_CERT), dir.join(CLIENT_KEY));
    issue(
        &ca_key,
        (&cert, &key),
        vec!["keyledger".to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok(infra::tls::ClientIdentityFiles { cert, key })
}

/// The CA's key and certificate file in `dir`, made when missing. A new CA removes
/// the certificates of an old one, which would not chain to it.
fn ensure_ca(dir: &Path) -> Result<(KeyPair, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if ca_cert.exists() != ca_key.exists() {
        let (there, missing) = if ca_cert.exists() {
            (&ca_cert, &ca_key)
        } else {
            (&ca_key, &ca_cert)
        };
        anyhow::bail!(
            "{} is there without {}: keyledger overwrites no CA it did not make whole. To \
             serve your own certificate, give --tls-cert and --tls-key; to have a new \
             development CA made, remove {}",
            there.display(),
            missing.display(),
            there.display()
        );
    }
    if ca_cert.exists() && ca_key.exists() {
        let pem = std::fs::read_to_string(&ca_key)
            .with_context(|| format!("reading {}", ca_key.display()))?;
        let key = KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a key", ca_key.display()))?;
        return Ok((key, ca_cert));
    }
    let key = KeyPair::generate()?;
    let cert = ca_params(OffsetDateTime::now_utc())?.self_signed(&key)?;
    write_private(&ca_key, &key.serialize_pem())?;
    std::fs::write(&ca_cert, cert.pem())
        .with_context(|| format!("writing {}", ca_cert.display()))?;
    for stale in [SERVER_CERT, CLIENT_CERT] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    Ok((key, ca_cert))
}

/// Writes a certificate for `names` with `usage`, signed by the CA, and its key, unless
/// both files exist.
fn issue(
    ca_key: &KeyPair,
    (cert_file, key_file): (&Path, &Path),
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<()> {
    if cert_file.exists() && key_file.exists() {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    // The CA again from its key and name: the same subject and key identifier, so what
    // it signs chains to the ca.pem clients already trust.
    let issuer = ca_params(now)?.self_signed(ca_key)?;
    let common_name = names[0].clone();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(LEAF_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer, ca_key)?;
    write_private(key_file, &key.serialize_pem())?;
    std::fs::write(cert_file, cert.pem())
        .with_context(|| format!("writing {}", cert_file.display()))
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
    // A file that was there keeps its mode through open(2): set it.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
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
