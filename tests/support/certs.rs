//! Certificates for tests of TLS: a CA made with rcgen, and the server and client
//! certificates it signs, written as PEM files.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use time::OffsetDateTime;

/// A CA that signs test certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// Its certificate (PEM).
    pub file: PathBuf,
}

impl Ca {
    /// A self-signed CA named `name`, its certificate written to `<dir>/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, cert.pem()).unwrap();
        Self { cert, key, file }
    }

    /// Writes a certificate for `names` (server or client) valid from `from` to
    /// `until` days from now, and its key, as `<stem>.pem` and `<stem>.key`.
    pub fn issue(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        client: bool,
        (from, until): (time::Duration, time::Duration),
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let now = OffsetDateTime::now_utc();
        params.not_before = now + from;
        params.not_after = now + until;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        // Only its owner may read a key file (keyledger and libpq refuse others').
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert_file, key_file)
    }
}

/// `n` days.
pub fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}
