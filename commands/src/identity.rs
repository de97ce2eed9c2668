//! Bearer tokens: JWTs verified on every command and every HTTP request. The principal
//! (user, project, roles) comes from the verified token, never from a request body.
//!
//! For development keyledger signs its own tokens with an HS256 key kept in the data
//! directory (`token-hs256.key`, mode 0600). Tokens carry `sub` (the user), `project`,
//! `roles`, `exp`, `iat`, `iss` (`keyledger-dev`) and `aud` (`keyledger`).

use std::path::Path;
use std::time::Duration;

use domain::Rejection;
use domain::ids::{ProjectId, Role, UserId};
use domain::principal::Principal;
use domain::timestamp::Timestamp;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keyfile::{self, KeyFileError};

/// File name of the development token-signing key inside the data directory.
pub const TOKEN_KEY_FILE: &str = "token-hs256.key";
/// Issuer of development tokens.
pub const DEV_ISSUER: &str = "keyledger-dev";
/// Audience every token must name.
pub const AUDIENCE: &str = "keyledger";

/// The claims of a keyledger token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The project the token is scoped to.
    pub project: String,
    /// Roles in that project.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    #[serde(default)]
    pub iat: Option<i64>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

/// Verifies tokens and turns them into principals.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(HS256)")
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
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[DEV_ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Expiry is checked by `verify` against the caller's clock, so that the message
    // can say when the token expired.
    validation.validate_exp = false;
    (
        Issuer {
            key: EncodingKey::from_secret(secret),
        },
        Verifier {
            key: DecodingKey::from_secret(secret),
            validation,
        },
    )
}

impl Issuer {
    /// A token for `principal`, valid for `ttl` from `now`.
    pub fn issue(&self, principal: &Principal, ttl: Duration, now: Timestamp) -> String {
        let iat = now.unix_millis() / 1000;
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: principal.user.to_string(),
            project: principal.project.to_string(),
            roles: principal.roles.iter().map(ToString::to_string).collect(),
            exp: iat.saturating_add(ttl),
            iat: Some(iat),
            iss: DEV_ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        // HS256 signing with an in-memory secret and plain claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key).unwrap_or_default()
    }
}

const HOW_TO_GET_ONE: &str = "create one with `keyledger token issue`";

impl Verifier {
    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_authorization(
        &self,
        header: Option<&str>,
        now: Timestamp,
    ) -> Result<Principal, Rejection> {
        let Some(header) = header else {
            return Err(Rejection::unauthorized(format!(
                "no token: send the header `Authorization: Bearer <token>`; {HOW_TO_GET_ONE}"
            )));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Rejection::unauthorized(
                    "the Authorization header must have the form `Bearer <token>`",
                )
            })?;
        self.verify(token.trim(), now)
    }

    /// Verifies a bare token.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Principal, Rejection> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| self.explain(token, e.kind()))?;
        let claims = data.claims;
        if now.unix_millis() / 1000 >= claims.exp {
            let at = Timestamp::from_unix_millis(claims.exp.saturating_mul(1000))
                .map_or_else(|| claims.exp.to_string(), |t| t.to_rfc3339());
            return Err(Rejection::unauthorized(format!(
                "token expired at {at}; request a new one ({HOW_TO_GET_ONE})"
            )));
        }
        let bad_claim = |name: &str, r: Rejection| {
            Rejection::unauthorized(format!("token claim {name} is not valid: {}", r.message))
        };
        Ok(Principal {
            user: UserId::parse(&claims.sub).map_err(|r| bad_claim("sub", r))?,
            project: ProjectId::parse(&claims.project).map_err(|r| bad_claim("project", r))?,
            roles: claims
                .roles
                .iter()
                .map(|r| Role::parse(r))
                .collect::<Result<_, _>>()
                .map_err(|r| bad_claim("roles", r))?,
        })
    }

    fn explain(&self, token: &str, kind: &ErrorKind) -> Rejection {
        let reason = match kind {
            ErrorKind::InvalidSignature => {
                "its signature does not verify: it was not issued by this keyledger, or it was \
                 altered"
                    .to_owned()
            }
            ErrorKind::InvalidAlgorithm => {
                let alg = jsonwebtoken::decode_header(token)
                    .map(|h| format!("{:?}", h.alg))
                    .unwrap_or_else(|_| "unknown".into());
                format!("its algorithm {alg} is not accepted; tokens are signed with HS256")
            }
            ErrorKind::InvalidIssuer => {
                format!("its issuer is not trusted (expected {DEV_ISSUER})")
            }
            ErrorKind::InvalidAudience => format!("its audience is not {AUDIENCE}"),
            ErrorKind::MissingRequiredClaim(c) => format!("it lacks the required claim {c}"),
            ErrorKind::InvalidClaimFormat(c) => format!("its claim {c} has the wrong type"),
            ErrorKind::ImmatureSignature => "it is not valid yet (nbf is in the future)".into(),
            _ => "it is not a well-formed JWT".into(),
        };
        Rejection::unauthorized(format!("token rejected: {reason}; {HOW_TO_GET_ONE}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ErrorCode;

    fn now() -> Timestamp {
        Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap()
    }

    fn alice() -> Principal {
        Principal {
            user: UserId::parse("alice").unwrap(),
            project: ProjectId::parse("p1").unwrap(),
            roles: vec![Role::parse("admin").unwrap()],
        }
    }

    #[test]
    fn issued_tokens_verify_to_the_same_principal() {
        let (issuer, verifier) = dev_keys_from_secret(&[1; 32]);
        let token = issuer.issue(&alice(), Duration::from_secs(60), now());
        let header = format!("Bearer {token}");
        assert_eq!(
            verifier.verify_authorization(Some(&header), now()),
            Ok(alice())
        );
    }

    #[test]
    fn an_expired_token_says_when() {
        let (issuer, verifier) = dev_keys_from_secret(&[1; 32]);
        let token = issuer.issue(&alice(), Duration::from_secs(60), now());
        let later = Timestamp::parse_iso8601("t", "2026-11-22T10:01:00Z").unwrap();
        let err = verifier.verify(&token, later).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
        assert_eq!(
            err.message,
            "token expired at 2026-11-22T10:01:00Z; request a new one (create one with \
             `keyledger token issue`)"
        );
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let (issuer, _) = dev_keys_from_secret(&[1; 32]);
        let (_, verifier) = dev_keys_from_secret(&[2; 32]);
        let token = issuer.issue(&alice(), Duration::from_secs(60), now());
        let err = verifier.verify(&token, now()).unwrap_err();
        assert!(
            err.message.contains("signature does not verify"),
            "{}",
            err.message
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let (_, verifier) = dev_keys_from_secret(&[1; 32]);
        // {"alg":"none","typ":"JWT"} . {"sub":"alice","project":"p1","exp":9999999999,...} .
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let claims = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"alice","project":"p1","roles":["admin"],"exp":9999999999,"iss":"keyledger-dev","aud":"keyledger"}"#,
        );
        let err = verifier
            .verify(&format!("{header}.{claims}."), now())
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn missing_and_malformed_headers_say_what_to_send() {
        let (_, verifier) = dev_keys_from_secret(&[1; 32]);
        let err = verifier.verify_authorization(None, now()).unwrap_err();
        assert!(err.message.contains("Authorization: Bearer <token>"));
        let err = verifier
            .verify_authorization(Some("Basic abc"), now())
            .unwrap_err();
        assert!(err.message.contains("`Bearer <token>`"));
        let err = verifier
            .verify_authorization(Some("Bearer nope"), now())
            .unwrap_err();
        assert!(
            err.message.contains("not a well-formed JWT"),
            "{}",
            err.message
        );
    }
}
