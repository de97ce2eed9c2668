//! NATS auth callout: who may connect to keyledger's NATS as a client, and with what
//! rights, decided from the same bearer token the commands carry.
//!
//! A client connects with its keyledger token as the NATS token (or as the password,
//! with any user name). nats-server asks this service (on `$SYS.REQ.USER.AUTH`, as the
//! `auth` user); the token is verified like any other, and the connection is admitted
//! to the `CLIENTS` account as that principal, with exactly two rights:
//!
//! - publish `keyledger.cmd.>` (the commands, which the command service takes inside
//!   `CLIENTS` as the user `intake`; each still carries its own token, and is answered
//!   only inside that token's principal's inbox space), and
//! - subscribe to its own inbox space, [`inbox_prefix`]`.>`: the principal's replies,
//!   and nobody else's. Clients set this as their inbox prefix.
//!
//! A connection without a valid token is refused. The answer is a NATS user JWT signed
//! with the callout's account key (an nkey kept in a file, like the other keys); see
//! ADR-26 (NATS authorization callouts) and nats-io/jwt for the claim formats.

use std::path::Path;

use async_nats::Client;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use domain::ids::{ProjectId, UserId};
use domain::timestamp::Timestamp;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::identity::Verifier;
use crate::keyfile::{self, KeyFileError};

/// Refused connection attempts logged a second, at most: each is one line, and a
/// client can make them as fast as it connects.
static REFUSALS_LOGGED: crate::log_budget::LogBudget =
    crate::log_budget::LogBudget::new(10, std::time::Duration::from_secs(1));

/// The subject nats-server sends authorization requests on.
pub(crate) const CALLOUT_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// The account admitted clients are placed in.
pub(crate) const CLIENTS_ACCOUNT: &str = "CLIENTS";
/// The subjects an admitted client may publish: commands only.
pub(crate) const CLIENT_PUBLISH: &str = "keyledger.cmd.>";

/// The inbox prefix of `user` in `project`: the only subjects that principal's NATS
/// connections may subscribe to (`<prefix>.>`). `_INBOX_` and the first 32 hex digits
/// of SHA-256 of `<project>\n<user>`. Set it as the client's inbox prefix (nats-py
/// `inbox_prefix=`, async-nats `custom_inbox_prefix`, Go `nats.CustomInboxPrefix`);
/// `keyledger whoami` prints it.
pub fn inbox_prefix(project: &ProjectId, user: &UserId) -> String {
    let digest = Sha256::digest(format!("{project}\n{user}").as_bytes());
    format!("_INBOX_{}", &hex::encode(digest)[..32])
}

/// The inbox prefix for connections made with `token`, read from its claims without
/// verifying it (the server's callout verifies; this only picks the inbox it will
/// allow). `None` if the token is not a JWT with `sub` and `project`.
pub fn token_inbox_prefix(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
        project: String,
    }
    let claims = B64URL.decode(token.split('.').nth(1)?).ok()?;
    let claims: Claims = serde_json::from_slice(&claims).ok()?;
    Some(inbox_prefix(
        &ProjectId::parse(&claims.project).ok()?,
        &UserId::parse(&claims.sub).ok()?,
    ))
}

/// Why the callout could not run.
#[derive(Debug, thiserror::Error)]
pub enum NatsAuthError {
    /// The issuer key file.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The issuer key file does not hold an account seed.
    #[error(
        "{0} does not hold a NATS account seed (SA…); restore it or remove it to make a new one"
    )]
    BadSeed(String),
    /// NATS failed.
    #[error("NATS auth callout: {0}")]
    Nats(String),
}

/// The account key the callout signs user JWTs with; its public key goes into the
/// nats-server configuration (`auth_callout.issuer`).
pub struct CalloutIssuer {
    key: nkeys::KeyPair,
}

impl std::fmt::Debug for CalloutIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CalloutIssuer({})", self.key.public_key())
    }
}

impl CalloutIssuer {
    /// Loads the account seed at `path`, creating one (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, NatsAuthError> {
        let raw = keyfile::load_or_create(path, 32)?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw);
        let key = nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::Account, seed)
            .map_err(|_| NatsAuthError::BadSeed(path.display().to_string()));
        zeroize::Zeroize::zeroize(&mut seed);
        Ok(Self { key: key? })
    }

    /// The public account key (`A…`), for `auth_callout.issuer`.
    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// A JWT of `claims` (with `iss`, `iat` and `jti` filled in) signed by this key.
    fn sign(&self, mut claims: serde_json::Value, now: Timestamp) -> Result<String, NatsAuthError> {
        let mut jti = [0u8; 16];
        keyfile::random_bytes(&mut jti);
        if let Some(map) = claims.as_object_mut() {
            map.insert("iss".into(), self.public_key().into());
            map.insert("iat".into(), (now.unix_millis() / 1000).into());
            map.insert("jti".into(), hex::encode(jti).into());
        }
        let header = B64URL.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let body = B64URL.encode(claims.to_string());
        let signing_input = format!("{header}.{body}");
        let signature = self
            .key
            .sign(signing_input.as_bytes())
            .map_err(|e| NatsAuthError::Nats(format!("signing a user JWT: {e}")))?;
        Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
    }
}

/// What the callout reads of nats-server's authorization request.
#[derive(Deserialize)]
struct Request {
    nats: RequestBody,
}

#[derive(Deserialize)]
struct RequestBody {
    server_id: ServerId,
    user_nkey: String,
    #[serde(default)]
    connect_opts: ConnectOpts,
}

#[derive(Deserialize)]
struct ServerId {
    id: String,
}

#[derive(Deserialize, Default)]
struct ConnectOpts {
    #[serde(default)]
    auth_token: Option<String>,
    #[serde(default)]
    pass: Option<String>,
}

/// The authorization callout service.
pub struct AuthCallout {
    /// A connection as the callout user (`auth_users` in the server config).
    pub client: Client,
    /// Signs the answers.
    pub issuer: CalloutIssuer,
    /// Verifies the tokens clients connect with.
    pub verifier: Verifier,
    /// The clock tokens are checked against.
    pub clock: Clock,
}

impl AuthCallout {
    /// Answers authorization requests until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), NatsAuthError> {
        let nats = |e: &dyn std::fmt::Display| NatsAuthError::Nats(e.to_string());
        let mut requests = self
            .client
            .subscribe(CALLOUT_SUBJECT)
            .await
            .map_err(|e| nats(&e))?;
        loop {
            let request = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                r = requests.next() => r.ok_or_else(|| nats(&"the subscription ended"))?,
            };
            let Some(reply) = request.reply else {
                continue;
            };
            match self.answer(&request.payload) {
                Ok(answer) => {
                    if let Err(e) = self.client.publish(reply, answer.into()).await {
                        tracing::warn!(error = %e, "NATS auth callout: answering failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "NATS auth callout: a request was unreadable"),
            }
        }
    }

    /// The signed answer to one authorization request (a JWT).
    fn answer(&self, request: &[u8]) -> Result<String, NatsAuthError> {
        let request = parse_request(request)?;
        let now = (self.clock)();
        let token = request
            .connect_opts
            .auth_token
            .as_deref()
            .or(request.connect_opts.pass.as_deref())
            .filter(|t| !t.is_empty());
        let verdict = match token {
            None => Err(
                "keyledger: connect with your keyledger token as the NATS token (or password)"
                    .to_owned(),
            ),
            Some(token) => self
                .verifier
                .verify_until(token, now)
                .map_err(|r| format!("keyledger: {}", r.message)),
        };
        let mut response = json!({
            "sub": request.user_nkey,
            "aud": request.server_id.id,
            "nats": {"type": "authorization_response", "version": 2},
        });
        match verdict {
            // The connection ends when the token does (nats-server disconnects it at
            // the user JWT's `exp`): it holds standing reads (change notifications),
            // and a new token may carry fewer roles.
            Ok((principal, expires)) => {
                // Its replies, and the change notifications of the kinds it may list.
                let mut subscribe = vec![format!(
                    "{}.>",
                    inbox_prefix(&principal.project, &principal.user)
                )];
                subscribe.extend(change_subjects(&principal));
                let user = json!({
                    "sub": request.user_nkey,
                    "aud": CLIENTS_ACCOUNT,
                    "exp": expires,
                    "name": format!("{}@{}", principal.user, principal.project),
                    "nats": {
                        "pub": {"allow": [CLIENT_PUBLISH]},
                        "sub": {"allow": subscribe},
                        "subs": -1, "data": -1, "payload": -1,
                        "type": "user", "version": 2,
                    },
                });
                tracing::debug!(user = %principal.user, project = %principal.project, "NATS client admitted");
                response["nats"]["jwt"] = self.issuer.sign(user, now)?.into();
            }
            Err(reason) => {
                // Each refused connection attempt would be a line: bounded.
                if let Some(earlier) = REFUSALS_LOGGED.take() {
                    tracing::info!(reason, earlier_not_logged = earlier, "NATS client refused");
                }
                response["nats"]["error"] = reason.into();
            }
        }
        self.issuer.sign(response, now)
    }
}

/// The change notifications `principal` may subscribe to: those of each kind its roles
/// list in its project (the relay announces only objects every such lister may see).
fn change_subjects(principal: &domain::principal::Principal) -> Vec<String> {
    use domain::policy::{Action, lists};
    use domain::subject::{AggregateKind, changes_filter};
    [
        (AggregateKind::Secret, Action::ListSecrets),
        (AggregateKind::Container, Action::ListContainers),
        (AggregateKind::Order, Action::ListOrders),
    ]
    .into_iter()
    .filter(|(_, list)| lists(principal, *list))
    .map(|(kind, _)| changes_filter(&principal.project, kind))
    .collect()
}

/// Reads the claims of nats-server's request JWT. The request arrives on a subject
/// only the server publishes to (in the callout's own account), so its signature adds
/// nothing the transport does not already give.
fn parse_request(jwt: &[u8]) -> Result<RequestBody, NatsAuthError> {
    let bad = |why: &str| NatsAuthError::Nats(format!("an authorization request {why}"));
    let text = std::str::from_utf8(jwt).map_err(|_| bad("is not text"))?;
    let claims = text.split('.').nth(1).ok_or_else(|| bad("is not a JWT"))?;
    let claims = B64URL
        .decode(claims.trim_end_matches('='))
        .map_err(|_| bad("has claims that are not base64url"))?;
    serde_json::from_slice::<Request>(&claims)
        .map(|r| r.nats)
        .map_err(|e| bad(&format!("does not parse: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbox_prefix_is_per_principal_and_subject_safe() {
        let p = |s| ProjectId::parse(s).unwrap();
        let u = |s| UserId::parse(s).unwrap();
        let alice = inbox_prefix(&p("p1"), &u("alice@example.com"));
        assert_eq!(alice.len(), "_INBOX_".len() + 32);
        assert!(!alice.contains(['.', '*', '>', ' ']));
        assert_ne!(alice, inbox_prefix(&p("p2"), &u("alice@example.com")));
        assert_ne!(alice, inbox_prefix(&p("p1"), &u("bob")));
        assert_eq!(alice, inbox_prefix(&p("p1"), &u("alice@example.com")));
    }
}
