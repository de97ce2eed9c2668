//! Development tokens: keyledger signs its own HS256 tokens with a key kept in the
//! data directory (`token-hs256.key`, mode 0600). They carry `sub` (the user),
//! `project`, `roles`, an optional `service`, `exp`, `iat`, `iss` (`keyledger-dev`)
//! and `aud` (`keyledger`). A production deployment trusts its identity provider
//! instead and turns these off (see [`super::Verifier::without_dev_tokens`]).

use std::path::Path;
use std::time::Duration;

use domain::principal::Principal;
use domain::timestamp::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;

use super::{AUDIENCE, Verifier};
use crate::keyfile::{self, KeyFileError};

/// File name of the development token-signing key inside the data directory.
pub const TOKEN_KEY_FILE: &str = "token-hs256.key";
/// Issuer of development tokens.
pub(crate) const DEV_ISSUER: &str = "keyledger-dev";

/// The claims keyledger signs into its own tokens.
#[derive(Serialize)]
pub(crate) struct IssuedClaims<'a> {
    sub: &'a str,
    project: &'a str,
    roles: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    exp: i64,
    iat: i64,
    iss: &'a str,
    aud: &'a str,
}

impl<'a> IssuedClaims<'a> {
    /// The claims of a token for `principal` from `iat` to `exp` (Unix seconds).
    pub(crate) fn of(principal: &'a Principal, iat: i64, exp: i64, iss: &'a str) -> Self {
        Self {
            sub: principal.user.as_str(),
            project: principal.project.as_str(),
            roles: principal.roles.iter().map(|r| r.as_str()).collect(),
            service: principal.service.as_ref().map(|s| s.as_str()),
            exp,
            iat,
            iss,
            aud: AUDIENCE,
        }
    }
}

/// Signs development tokens.
#[derive(Clone)]
pub struct Issuer {
    key: EncodingKey,
}

/// Loads (or creates) the development signing key and returns its issuer and verifier.
pub fn dev_keys(path: &Path) -> Result<(Issuer, Verifier), KeyFileError> {
    let secret = keyfile::load_or_create(path, 32)?;
    Ok(dev_keys_from_secret(&secret))
}

/// The issuer and verifier for an HS256 secret.
pub fn dev_keys_from_secret(secret: &[u8]) -> (Issuer, Verifier) {
    (
        Issuer {
            key: EncodingKey::from_secret(secret),
        },
        Verifier::development(DecodingKey::from_secret(secret)),
    )
}

impl Issuer {
    /// A token for `principal`, valid for `ttl` from `now`.
    pub fn issue(&self, principal: &Principal, ttl: Duration, now: Timestamp) -> String {
        let iat = now.unix_millis() / 1000;
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = IssuedClaims::of(principal, iat, iat.saturating_add(ttl), DEV_ISSUER);
        // HS256 signing with an in-memory secret and plain claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key).unwrap_or_default()
    }
}
