//! The caller of a request, from a verified bearer token in `Authorization: Bearer` or
//! Barbican's `X-Auth-Token`.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use domain::Rejection;
use domain::access_key::AccessKeyId;
use domain::principal::Principal;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tls::ClientCertificate;

/// Barbican's token header.
pub const X_AUTH_TOKEN: &str = "x-auth-token";

/// A verified caller, and what its writes forward with the command so the command
/// service verifies the caller again itself.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who is calling.
    pub principal: Principal,
    /// What its commands carry.
    pub credential: Credential,
    /// The client's address (the TCP peer), which ACL conditions test.
    pub source: Option<IpAddr>,
    /// The access key a SigV4 request was signed with; `None` for a bearer token.
    pub access_key: Option<AccessKeyId>,
}

/// What a caller's commands carry.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The bearer token the caller sent.
    Bearer(String),
    /// A delegation token keyledger mints as each command is sent, for a caller it
    /// verified otherwise (a SigV4 signature, a client certificate); only the delegated
    /// command subjects accept it. Minted per command, not per request: most requests
    /// (reads) send none, and minting one cost 2.7% of a GetSecretValue's CPU.
    Delegated,
}

impl Caller {
    /// Whether its commands go to the delegated command subjects.
    pub fn delegated(&self) -> bool {
        matches!(self.credential, Credential::Delegated)
    }

    /// The token a command of this caller carries, minted now if it is delegated
    /// (valid for [`infra::identity::delegation::DELEGATION_TTL`]).
    pub fn command_token(&self, state: &AppState) -> Cow<'_, str> {
        match &self.credential {
            Credential::Bearer(token) => Cow::Borrowed(token),
            Credential::Delegated => {
                Cow::Owned(state.aws.delegation.mint(&self.principal, (state.clock)()))
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let text = |name: &str| -> Result<Option<String>, ApiError> {
            // Two copies of a credential header: a proxy that vetted one must not see
            // the other used, whichever of them this server would take.
            if parts.headers.get_all(name).iter().nth(1).is_some() {
                return Err(Rejection::unauthorized(format!(
                    "the request carries the {name} header more than once; send one token"
                ))
                .into());
            }
            parts
                .headers
                .get(name)
                .map(|v| {
                    v.to_str().map(str::to_owned).map_err(|_| {
                        Rejection::unauthorized(format!("the {name} header is not valid text"))
                            .into()
                    })
                })
                .transpose()
        };
        let authorization = match (text(AUTHORIZATION.as_str())?, text(X_AUTH_TOKEN)?) {
            // Two different tokens: a proxy that vetted one must not see the other used.
            (Some(a), Some(token))
                if a.split_once(' ').map(|(_, t)| t.trim()) != Some(token.trim()) =>
            {
                return Err(Rejection::unauthorized(
                    "the request carries two different tokens (Authorization and \
                     X-Auth-Token); send one of them",
                )
                .into());
            }
            (Some(a), _) => Some(a),
            (None, Some(token)) => Some(format!("Bearer {}", token.trim())),
            (None, None) => None,
        };
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        // No token, and a client certificate the handshake verified: the principal the
        // operator mapped it to, acting with a delegation token as an AWS caller does.
        if authorization.is_none()
            && let (Some(map), Some(ClientCertificate(der))) = (
                state.config.client_principals.as_deref(),
                parts.extensions.get::<ClientCertificate>(),
            )
        {
            let now = (state.clock)().unix_millis() / 1000;
            let principal = map.principal_of(der, now)?;
            return Ok(Self {
                principal,
                credential: Credential::Delegated,
                source,
                access_key: None,
            });
        }
        let principal = state
            .verifier
            .verify_authorization(authorization.as_deref(), (state.clock)())
            .map_err(|r| {
                if authorization.is_none() {
                    Rejection::unauthorized(
                        "no token: send `Authorization: Bearer <token>` or `X-Auth-Token: \
                         <token>`; create one with `keyledger token issue` or get one from your \
                         identity provider",
                    )
                } else {
                    r
                }
            })?;
        let token = authorization
            .as_deref()
            .and_then(|a| a.split_once(' ').map(|(_, t)| t.trim().to_owned()))
            .unwrap_or_default();
        Ok(Self {
            principal,
            credential: Credential::Bearer(token),
            source,
            access_key: None,
        })
    }
}
