//! Keys of an identity provider, loaded from a JWKS file or PEM files. Each key is
//! pinned to one algorithm: EdDSA for Ed25519 keys, RS256 for RSA keys. A token is
//! checked with the algorithm of the key it names, never with the one its header
//! claims, so a public key can never be used as an HMAC secret.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Why the identity provider's keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A key file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file holds something keyledger does not accept.
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The configuration is incomplete.
    #[error("{0}")]
    Config(String),
}

/// Where an identity provider's keys come from and what its tokens must say.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    /// The `iss` the provider's tokens carry.
    pub issuer: Option<String>,
    /// The `aud` the provider's tokens must name.
    pub audience: String,
    /// A JWKS file (`{"keys": [...]}`), as the provider publishes it.
    pub jwks_file: Option<PathBuf>,
    /// PEM public keys, each with an optional key id (`kid`).
    pub public_keys: Vec<(Option<String>, PathBuf)>,
}

impl TrustConfig {
    /// Whether any provider key is configured.
    pub fn is_configured(&self) -> bool {
        self.jwks_file.is_some() || !self.public_keys.is_empty()
    }
}

/// One trusted key.
#[derive(Clone)]
pub(crate) struct TrustedKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The trusted keys of an identity provider and the claims its tokens must carry.
#[derive(Clone)]
pub struct IdentityProvider {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) keys: Vec<TrustedKey>,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TrustError> {
    std::fs::read(path).map_err(|source| TrustError::Read {
        path: path.to_owned(),
        source,
    })
}

impl IdentityProvider {
    /// Loads the keys `config` names.
    pub fn load(config: &TrustConfig) -> Result<Self, TrustError> {
        let issuer = config.issuer.clone().ok_or_else(|| {
            TrustError::Config(
                "identity-provider keys are configured but no issuer: pass --token-issuer \
                 with the `iss` your provider puts in its tokens"
                    .into(),
            )
        })?;
        let mut keys = Vec::new();
        if let Some(path) = &config.jwks_file {
            keys.extend(jwks(path, &read(path)?)?);
        }
        for (kid, path) in &config.public_keys {
            keys.push(pem(kid.clone(), path, &read(path)?)?);
        }
        if keys.is_empty() {
            return Err(TrustError::Config(
                "no identity-provider keys: the JWKS file lists none".into(),
            ));
        }
        Ok(Self {
            issuer,
            audience: config.audience.clone(),
            keys,
        })
    }

    /// The key a token names by `kid`; without a `kid`, the one key without an id.
    pub(crate) fn key(&self, kid: Option<&str>) -> Result<&TrustedKey, UnknownKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| match super::header_name(kid, 128, b"-_.+/=") {
                    Some(kid) => UnknownKey::NotTrusted(kid.to_owned()),
                    None => UnknownKey::NotTrustedUnnamed,
                }),
            None => {
                let unnamed: Vec<_> = self.keys.iter().filter(|k| k.kid.is_none()).collect();
                match unnamed.as_slice() {
                    [one] => Ok(one),
                    _ => Err(UnknownKey::NoKid),
                }
            }
        }
    }
}

/// Why no trusted key verifies a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnknownKey {
    /// The token names a key id no trusted key has.
    #[error(
        "its key id {0:?} is not among the trusted keys; if your identity provider rotated \
         its keys, update the JWKS file"
    )]
    NotTrusted(String),
    /// The same, for a key id that is no name (the sender's own text, not repeated).
    #[error(
        "its key id is not among the trusted keys (and not a key id's name); if your \
         identity provider rotated its keys, update the JWKS file"
    )]
    NotTrustedUnnamed,
    /// The token names no key id, and the trusted keys all have one.
    #[error(
        "it names no key id (kid), and the trusted keys all have one; the identity provider \
         must set kid"
    )]
    NoKid,
}

fn jwks(path: &Path, bytes: &[u8]) -> Result<Vec<TrustedKey>, TrustError> {
    let bad = |reason: String| TrustError::Key {
        path: path.to_owned(),
        reason,
    };
    // jsonwebtoken reads a key's unknown members into `Value`s (`domain::json_text`).
    let set: JwkSet = domain::json_text::from_untrusted(bytes)
        .map_err(|e| bad(format!("not a JWKS document ({{\"keys\": [...]}}): {e}")))?;
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone();
            let name = kid.as_deref().unwrap_or("(no kid)");
            let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
                    if p.curve == EllipticCurve::Ed25519 =>
                {
                    Algorithm::EdDSA
                }
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                _ => {
                    return Err(bad(format!(
                        "key {name} is neither an Ed25519 key for EdDSA nor an RSA key for \
                         RS256; keyledger accepts only those"
                    )));
                }
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| bad(format!("key {name} cannot be used: {e}")))?;
            Ok(TrustedKey { kid, alg, key })
        })
        .collect()
}

fn pem(kid: Option<String>, path: &Path, bytes: &[u8]) -> Result<TrustedKey, TrustError> {
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return Ok(TrustedKey {
            kid,
            alg: Algorithm::EdDSA,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok(TrustedKey {
            kid,
            alg: Algorithm::RS256,
            key,
        });
    }
    Err(TrustError::Key {
        path: path.to_owned(),
        reason: "not a PEM public key of type Ed25519 or RSA (BEGIN PUBLIC KEY)".into(),
    })
}
