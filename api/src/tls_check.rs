//! The TLS check: what a load balancer needs from a certificate container, answered
//! before the load balancer fails. Each finding says what is wrong and how to fix it.
//!
//! The check decrypts the container's certificate, private key and intermediates (the
//! caller must be allowed to read them), then looks at: references whose secret
//! expired or went; a missing private key; the certificate's validity window; whether
//! certificate and key belong together; whether the intermediates chain the
//! certificate to its issuer.

use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

/// One thing wrong, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// A stable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

impl Finding {
    fn new(code: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// The decrypted parts of a certificate container.
pub struct Parts<'a> {
    /// The certificate (PEM; the first certificate is the leaf).
    pub certificate: &'a [u8],
    /// The private key (PEM), if referenced.
    pub private_key: Option<&'a [u8]>,
    /// The intermediates (PEM bundle), if referenced.
    pub intermediates: Option<&'a [u8]>,
}

fn certificates(pem: &[u8]) -> Result<Vec<Pem>, x509_parser::error::PEMError> {
    let mut out = Vec::new();
    for item in Pem::iter_from_buffer(pem) {
        let item = item?;
        if item.label == "CERTIFICATE" {
            out.push(item);
        }
    }
    Ok(out)
}

fn time_of(t: x509_parser::time::ASN1Time) -> String {
    let at = t.to_datetime();
    domain::timestamp::Timestamp::saturating(at).to_rfc3339()
}

/// Why the check cannot read a private key.
#[derive(Debug, thiserror::Error)]
enum UnreadableKey {
    #[error("the private key is not PEM text")]
    NotText,
    #[error("the private key is encrypted with a passphrase, which this check cannot open")]
    Encrypted,
    #[error("the private key's public half cannot be encoded: {0}")]
    Encoding(p256::pkcs8::spki::Error),
    #[error("the private key is not an RSA, P-256 or P-384 key in PEM (PKCS#8, PKCS#1 or SEC1)")]
    UnknownKind,
}

/// The DER SubjectPublicKeyInfo of the public half of a PEM private key.
fn public_key_of(pem: &[u8]) -> Result<Vec<u8>, UnreadableKey> {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let text = std::str::from_utf8(pem).map_err(|_| UnreadableKey::NotText)?;
    if text.contains("ENCRYPTED PRIVATE KEY") {
        return Err(UnreadableKey::Encrypted);
    }
    let der = |r: Result<p256::pkcs8::Document, p256::pkcs8::spki::Error>| {
        r.map(|d| d.as_bytes().to_vec())
            .map_err(UnreadableKey::Encoding)
    };
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
        return der(rsa::RsaPublicKey::from(&k).to_public_key_der());
    }
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_pem(text) {
        return der(rsa::RsaPublicKey::from(&k).to_public_key_der());
    }
    if let Ok(k) =
        p256::SecretKey::from_pkcs8_pem(text).or_else(|_| p256::SecretKey::from_sec1_pem(text))
    {
        return der(k.public_key().to_public_key_der());
    }
    if let Ok(k) =
        p384::SecretKey::from_pkcs8_pem(text).or_else(|_| p384::SecretKey::from_sec1_pem(text))
    {
        return der(k.public_key().to_public_key_der());
    }
    Err(UnreadableKey::UnknownKind)
}

/// Checks the decrypted parts at `now` (Unix seconds).
pub fn check(parts: &Parts<'_>, now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    let pems = match certificates(parts.certificate) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) | Err(_) => {
            findings.push(Finding::new(
                "certificate_unreadable",
                "the certificate secret holds no PEM certificate",
                "store the certificate as PEM (-----BEGIN CERTIFICATE-----) and create a new \
                 container",
            ));
            return findings;
        }
    };
    let leaf = match pems[0].parse_x509() {
        Ok(c) => c,
        Err(e) => {
            findings.push(Finding::new(
                "certificate_unreadable",
                format!("the certificate does not parse: {e}"),
                "store a valid X.509 certificate and create a new container",
            ));
            return findings;
        }
    };
    validity(&leaf, now, &mut findings);
    match parts.private_key {
        None => findings.push(Finding::new(
            "private_key_missing",
            "the container has no private_key reference; a TLS endpoint needs the \
             certificate's private key",
            "create a certificate container that references the private key as private_key",
        )),
        Some(key) => match public_key_of(key) {
            Ok(spki) if spki == leaf.public_key().raw => {}
            Ok(_) => findings.push(Finding::new(
                "key_mismatch",
                format!(
                    "the certificate (subject {}) and the private key do not match: the key's \
                     public half is not the certificate's",
                    leaf.subject()
                ),
                "reference the private key the certificate was issued for, or issue a \
                 certificate for this key",
            )),
            Err(why) => findings.push(Finding::new(
                "private_key_unreadable",
                why.to_string(),
                "store the private key unencrypted as PEM (keyledger encrypts it at rest)",
            )),
        },
    }
    chain(&leaf, parts.intermediates, &mut findings);
    findings
}

fn validity(cert: &X509Certificate<'_>, now: i64, findings: &mut Vec<Finding>) {
    let v = cert.validity();
    if v.not_after.timestamp() < now {
        findings.push(Finding::new(
            "certificate_expired",
            format!("the certificate expired on {}", time_of(v.not_after)),
            "store a renewed certificate and create a new container",
        ));
    } else if v.not_before.timestamp() > now {
        findings.push(Finding::new(
            "certificate_not_yet_valid",
            format!(
                "the certificate is not valid until {}",
                time_of(v.not_before)
            ),
            "wait until then, or check the clock of the issuing CA",
        ));
    }
}

fn chain(leaf: &X509Certificate<'_>, intermediates: Option<&[u8]>, findings: &mut Vec<Finding>) {
    let self_issued = leaf.issuer() == leaf.subject();
    let pems = match intermediates.map(certificates) {
        None => Vec::new(),
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            findings.push(Finding::new(
                "intermediates_unreadable",
                format!("the intermediates secret is not a PEM bundle: {e}"),
                "store the intermediate certificates as PEM, issuer of the certificate first",
            ));
            return;
        }
    };
    let mut bundle = Vec::new();
    for pem in &pems {
        match pem.parse_x509() {
            Ok(c) => bundle.push(c),
            Err(e) => {
                findings.push(Finding::new(
                    "intermediates_unreadable",
                    format!("an intermediate certificate does not parse: {e}"),
                    "store valid X.509 intermediates as PEM",
                ));
                return;
            }
        }
    }
    if self_issued {
        return;
    }
    if bundle.is_empty() {
        findings.push(Finding::new(
            "intermediates_missing",
            format!(
                "the certificate was issued by {}, and the container has no intermediates",
                leaf.issuer()
            ),
            "add the issuing CA's certificate (and any above it, short of the root) as \
             intermediates",
        ));
        return;
    }
    // Walk up from the leaf: each certificate's issuer must be in the bundle and must
    // have signed it, until a certificate whose issuer is outside the bundle (a root
    // the client trusts).
    let mut current = leaf;
    for _ in 0..=bundle.len() {
        let Some(issuer) = bundle.iter().find(|c| c.subject() == current.issuer()) else {
            if std::ptr::eq(current, leaf) {
                findings.push(Finding::new(
                    "intermediates_not_chaining",
                    format!(
                        "no intermediate is the certificate's issuer ({}); the intermediates are \
                         {}",
                        leaf.issuer(),
                        bundle
                            .iter()
                            .map(|c| c.subject().to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    "add the certificate of the CA that issued it, and drop unrelated ones",
                ));
            }
            return;
        };
        if current.verify_signature(Some(issuer.public_key())).is_err() {
            findings.push(Finding::new(
                "intermediates_not_chaining",
                format!(
                    "{} names {} as its issuer, but that intermediate did not sign it",
                    current.subject(),
                    issuer.subject()
                ),
                "replace the intermediate with the one that actually issued the certificate",
            ));
            return;
        }
        if issuer.issuer() == issuer.subject() {
            return;
        }
        current = issuer;
    }
}
