//! Certificate authorities behind one trait. Built in: the local CA, whose key lives in
//! the key store (sealed under the KEK like every data key) and whose certificate is
//! public (`GET /v1/cas/local`).

use std::time::Duration;

use domain::ids::{KeyId, ProjectId, SecretId, VersionId};
use domain::order::{DistinguishedName, KeySpec};
use domain::secret::payload::{ContentType, PayloadLimit, Plaintext};
use domain::timestamp::Timestamp;
use futures::future::BoxFuture;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use uuid::Uuid;

use infra::envelope::Envelope;
use infra::keystore::{KeyStore, KeyStoreError};

/// What a CA is asked to certify.
pub struct IssueRequest<'a> {
    /// The subject.
    pub subject: &'a DistinguishedName,
    /// DNS names.
    pub subject_alt_names: &'a [String],
    /// How long the certificate is valid.
    pub validity_days: u32,
    /// `digital_signature`, `key_encipherment`, `server_auth`, `client_auth`.
    pub key_usage: &'a [String],
    /// The key pair's kind.
    pub key: KeySpec,
    /// The key pair (only its public half is certified).
    pub key_pair: &'a KeyPair,
    /// Now.
    pub now: Timestamp,
}

/// A certificate and the chain up to (and including) the CA's certificate.
pub struct Issued {
    /// The certificate, PEM.
    pub certificate: String,
    /// The CA certificates, PEM, issuer first.
    pub chain: String,
}

/// Why a CA did not issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The request is one the CA refuses (an HTTP status and why).
    #[error("{reason}")]
    Rejected {
        /// 400 for a bad request.
        status: u16,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The CA could not be reached or failed; retrying may work.
    #[error("{0}")]
    Unavailable(String),
}

/// A certificate authority.
pub trait CertificateAuthority: Send + Sync {
    /// Its name, as orders name it in `meta.ca`.
    fn name(&self) -> &str;
    /// Issues a certificate.
    fn issue<'a>(&'a self, request: IssueRequest<'a>) -> BoxFuture<'a, Result<Issued, CaError>>;
}

use infra::keystore::{LOCAL_CA_ENTRY, LocalCaEntry as Stored};

/// The local CA's subject.
const LOCAL_CA_NAME: &str = "keyledger local CA";

/// keyledger's own CA. `reachable: false` makes it answer as an unreachable CA would,
/// so the failure path can be shown and tested.
pub struct LocalCa {
    keys: KeyStore,
    envelope: std::sync::Arc<Envelope>,
    reachable: bool,
    /// The CA's key (PEM) and certificate, once loaded: the key store is read once.
    loaded: tokio::sync::OnceCell<(zeroize::Zeroizing<String>, String)>,
}

fn sealing_ids() -> (ProjectId, SecretId, VersionId, KeyId) {
    // Fixed ids bind the CA key's ciphertext to this one use (they enter the AAD).
    (
        ProjectId::parse("keyledger-ca").unwrap_or_else(|_| unreachable!("a valid project id")),
        SecretId::from_uuid(Uuid::from_u128(0xca)),
        VersionId::from_uuid(Uuid::from_u128(0xca)),
        KeyId::from_uuid(Uuid::from_u128(0xca)),
    )
}

/// The local CA's key-store entry `bytes` with its data key wrapped again by the
/// current KEK; `None` if it already is.
pub fn rewrapped_entry(
    envelope: &Envelope,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, infra::envelope::CryptoError> {
    let tampered = || infra::envelope::CryptoError::Kek(format!("{LOCAL_CA_ENTRY} is malformed"));
    let mut stored: Stored = serde_json::from_slice(bytes).map_err(|_| tampered())?;
    let (project, secret, _, key) = sealing_ids();
    let Some(wrapped) = envelope.rewrap(&stored.wrapped, &project, secret, key)? else {
        return Ok(None);
    };
    stored.wrapped = wrapped;
    serde_json::to_vec(&stored)
        .map(Some)
        .map_err(|_| tampered())
}

fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| CaError::Unavailable(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, LOCAL_CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl LocalCa {
    /// The local CA over `keys`.
    pub fn new(keys: KeyStore, envelope: std::sync::Arc<Envelope>, reachable: bool) -> Self {
        Self {
            keys,
            envelope,
            reachable,
            loaded: tokio::sync::OnceCell::new(),
        }
    }

    /// The CA's key and certificate, from memory after the first use.
    async fn ca(&self, now: Timestamp) -> Result<(KeyPair, String), CaError> {
        let (pem, certificate) = self
            .loaded
            .get_or_try_init(|| async {
                let (key, certificate) = self.load_or_create(now).await?;
                Ok::<_, CaError>((zeroize::Zeroizing::new(key.serialize_pem()), certificate))
            })
            .await?;
        let key = KeyPair::from_pem(pem).map_err(|e| CaError::Unavailable(e.to_string()))?;
        Ok((key, certificate.clone()))
    }

    /// The CA's key and certificate, created on first use (one wins if two workers race).
    async fn load_or_create(&self, now: Timestamp) -> Result<(KeyPair, String), CaError> {
        let unavailable = |e: &dyn std::fmt::Display| CaError::Unavailable(e.to_string());
        let (project, secret, version, key_id) = sealing_ids();
        if let Some(bytes) = self
            .keys
            .get_blob(LOCAL_CA_ENTRY)
            .await
            .map_err(|e| unavailable(&e))?
        {
            let stored: Stored = serde_json::from_slice(&bytes).map_err(|_| tampered())?;
            let pem = self
                .envelope
                .open(&stored.key, &stored.wrapped, &project, secret)
                .map_err(|_| tampered())?;
            use secrecy::ExposeSecret;
            let pem = std::str::from_utf8(pem.expose_secret()).map_err(|e| unavailable(&e))?;
            let key = KeyPair::from_pem(pem).map_err(|e| unavailable(&e))?;
            return Ok((key, stored.certificate));
        }
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| unavailable(&e))?;
        let mut params = ca_params()?;
        params.not_before = now.as_offset();
        params.not_after = now
            .plus(Duration::from_secs(10 * 365 * 86_400))
            .unwrap_or(now)
            .as_offset();
        let certificate = params.self_signed(&key).map_err(|e| unavailable(&e))?.pem();
        let plaintext = Plaintext::from_bytes(
            key.serialize_pem().into_bytes(),
            ContentType::TextPlain,
            PayloadLimit::default(),
        )
        .map_err(|e| unavailable(&e))?;
        let (sealed, wrapped) = self
            .envelope
            .seal(&plaintext, &project, secret, version, key_id)
            .map_err(|e| unavailable(&e))?;
        let stored = Stored {
            key: sealed,
            wrapped,
            certificate: certificate.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| unavailable(&e))?;
        if !self
            .keys
            .create_blob(LOCAL_CA_ENTRY, bytes)
            .await
            .map_err(|e| unavailable(&e))?
        {
            // Another worker created it first: use that one.
            return Box::pin(self.load_or_create(now)).await;
        }
        Ok((key, certificate))
    }
}

fn subject(dn: &DistinguishedName) -> rcgen::DistinguishedName {
    let mut out = rcgen::DistinguishedName::new();
    for (key, value) in &dn.0 {
        let kind = match key.as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            _ => DnType::CountryName,
        };
        out.push(kind, value.as_str());
    }
    out
}

impl CertificateAuthority for LocalCa {
    fn name(&self) -> &str {
        "local"
    }

    fn issue<'a>(&'a self, request: IssueRequest<'a>) -> BoxFuture<'a, Result<Issued, CaError>> {
        Box::pin(async move {
            if !self.reachable {
                return Err(CaError::Unavailable(
                    "connection refused (the local CA is configured unreachable)".into(),
                ));
            }
            let mut usages = Vec::new();
            let mut extended = Vec::new();
            for usage in request.key_usage {
                match usage.as_str() {
                    "digital_signature" => usages.push(KeyUsagePurpose::DigitalSignature),
                    "key_encipherment" => usages.push(KeyUsagePurpose::KeyEncipherment),
                    "server_auth" => extended.push(ExtendedKeyUsagePurpose::ServerAuth),
                    "client_auth" => extended.push(ExtendedKeyUsagePurpose::ClientAuth),
                    other => {
                        return Err(CaError::Rejected {
                            status: 400,
                            reason: format!(
                                "key_usage {other:?} is not supported by the CA local; use \
                                 digital_signature, key_encipherment, server_auth or client_auth"
                            ),
                        });
                    }
                }
            }
            if !(1..=825).contains(&request.validity_days) {
                return Err(CaError::Rejected {
                    status: 400,
                    reason: format!(
                        "validity_days {} is not supported by the CA local; use 1 to 825",
                        request.validity_days
                    ),
                });
            }
            let (ca_key, ca_pem) = self.ca(request.now).await?;
            let ca = ca_params()?
                .self_signed(&ca_key)
                .map_err(|e| CaError::Unavailable(e.to_string()))?;
            let mut params = CertificateParams::new(Vec::<String>::new())
                .map_err(|e| CaError::Unavailable(e.to_string()))?;
            params.distinguished_name = subject(request.subject);
            for name in request.subject_alt_names {
                let dns = name.clone().try_into().map_err(|_| CaError::Rejected {
                    status: 400,
                    reason: format!("subject_alt_names {name:?} is not a DNS name"),
                })?;
                params.subject_alt_names.push(SanType::DnsName(dns));
            }
            params.not_before = request.now.as_offset();
            params.not_after = request
                .now
                .plus(Duration::from_secs(
                    u64::from(request.validity_days) * 86_400,
                ))
                .unwrap_or(request.now)
                .as_offset();
            params.key_usages = if usages.is_empty() {
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ]
            } else {
                usages
            };
            params.extended_key_usages = if extended.is_empty() {
                vec![ExtendedKeyUsagePurpose::ServerAuth]
            } else {
                extended
            };
            let cert = params
                .signed_by(request.key_pair, &ca, &ca_key)
                .map_err(|e| CaError::Unavailable(format!("signing failed: {e}")))?;
            Ok(Issued {
                certificate: cert.pem(),
                chain: ca_pem,
            })
        })
    }
}

/// The local CA's entry in the key store does not open: a refusal retrying cannot
/// change.
fn tampered() -> CaError {
    tracing::error!("the local CA's key store entry does not open: tampered with");
    CaError::Rejected {
        status: 500,
        reason: KeyStoreError::Tampered(format!("the local CA ({LOCAL_CA_ENTRY})")).to_string(),
    }
}
