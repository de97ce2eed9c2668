//! Who signed an AWS request: its SigV4 signature verified under an access key that
//! keyledger manages, and the principal that key stands for.
//!
//! The access key is read from the read model on every request (beside the projector,
//! from its read cache, which the projector empties of access keys before it publishes
//! any change to one), so a revocation takes effect as soon as the read model shows
//! it; only the signing key derived for a day, region and service is cached (never
//! the secret access key). Writes go to the command service with a delegation token
//! for the key's principal, minted here.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use domain::access_key::{AccessKeyId, sealing_ids};
use domain::ids::{ProjectId, Role, ServiceName};
use domain::principal::Principal;
use domain::secret::payload::{ContentType, SealedPayload};
use infra::identity::delegation::Delegation;
use infra::identity::sigv4::{self, Authorization, SigV4Error};
use moka::sync::Cache;
use projections::read::SealedAccessKey;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::error::{AwsError, Code};
use crate::auth::{Caller, Credential};
use crate::state::AppState;

/// The service name AWS's clients sign Secrets Manager requests for.
pub const SERVICE: &str = "secretsmanager";

/// The headers a request must sign: without `x-amz-target` signed, the operation could
/// be swapped for another that takes the same body.
const REQUIRED: [&str; 3] = ["host", "x-amz-date", "x-amz-target"];

/// What a signing key is derived for: the project and id of its access key, the day
/// and the region (the service is always [`SERVICE`]).
type SigningScope = (ProjectId, String, String, String);

/// The keys AWS requests are verified and forwarded with.
#[derive(Clone)]
pub struct AwsKeys {
    pub(crate) delegation: Delegation,
    /// Sends writes on the delegated command subjects, which accept the delegation
    /// tokens minted here.
    pub(crate) commands: infra::client::CommandClient,
    /// Signing keys by (project, access key id, day, region): what a secret access key
    /// signs with on one day, for one region and this service.
    signing: Cache<SigningScope, Arc<Zeroizing<[u8; 32]>>>,
}

impl AwsKeys {
    /// Keys whose delegation tokens the command service holding `commit` accepts, sent
    /// with `commands` on its delegated subjects.
    pub fn new(
        commit: &domain::commit::CommitKey,
        commands: &infra::client::CommandClient,
    ) -> Self {
        Self {
            delegation: Delegation::from_commit_key(commit),
            commands: commands.delegated(),
            signing: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
        }
    }
}

/// A verified AWS caller.
#[derive(Debug, Clone)]
pub struct AwsCaller {
    /// The principal, whose writes carry a delegation token minted as each is sent.
    pub caller: Caller,
    /// The region the client signed for, which its ARNs name.
    pub region: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AwsError> {
    // A second copy would be a second claim the signature check never looked at.
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(AwsError::new(
            Code::IncompleteSignature,
            format!("the {name} header is sent more than once; send it once"),
        ));
    }
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                AwsError::new(
                    Code::IncompleteSignature,
                    format!("the {name} header is not ASCII text"),
                )
            })
        })
        .transpose()
}

fn sigv4_error(e: SigV4Error) -> AwsError {
    let code = match e {
        SigV4Error::Incomplete(_) => Code::IncompleteSignature,
        _ => Code::InvalidSignature,
    };
    let mut message = e.to_string();
    if matches!(e, SigV4Error::Mismatch) {
        message.push_str(
            " keyledger checks the signature with the secret access key it holds for this \
             access key id; a proxy that rewrites the Host header also breaks signatures",
        );
    }
    AwsError::new(code, message)
}

fn unrecognized(detail: impl std::fmt::Display) -> AwsError {
    AwsError::new(
        Code::UnrecognizedClient,
        format!("The security token included in the request is invalid. {detail}"),
    )
}

/// A request's signature as far as it can be checked before its body arrives: well
/// formed, in time, for this service, under an active access key.
pub struct Presented {
    authorization: Authorization,
    amz_date: String,
    id: AccessKeyId,
    live: Vec<SealedAccessKey>,
}

/// Checks what a request's headers say of its signature, before its body is read: a
/// caller without an active access key id holds no connection for a body's time.
pub async fn presented(
    state: &AppState,
    headers: &HeaderMap,
    query: &str,
) -> Result<Presented, AwsError> {
    if headers.contains_key("x-amz-security-token") {
        return Err(unrecognized(
            "keyledger issues no session tokens: unset AWS_SESSION_TOKEN and sign with a \
             long-term access key (`keyledger access-key create`)",
        ));
    }
    if query.split('&').any(|p| {
        p.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("X-Amz-Signature"))
    }) {
        return Err(AwsError::new(
            Code::IncompleteSignature,
            "keyledger does not accept signatures in the query string (presigned requests); \
             send the Authorization header",
        ));
    }
    let Some(value) = header(headers, "authorization")? else {
        return Err(AwsError::new(
            Code::MissingAuthenticationToken,
            "Missing Authentication Token. Sign requests with SigV4 (every AWS SDK and the aws \
             CLI do) using an access key from `keyledger access-key create`",
        ));
    };
    let authorization = Authorization::parse(value).map_err(sigv4_error)?;
    let amz_date = header(headers, "x-amz-date")?.ok_or_else(|| {
        AwsError::new(
            Code::IncompleteSignature,
            "the X-Amz-Date header is missing; sign with it, as every AWS SDK does",
        )
    })?;
    let now = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from((state.clock)().unix_millis()) * 1_000_000,
    )
    .map_err(|_| {
        AwsError::new(
            Code::InternalServiceError,
            "the server's clock is out of range",
        )
    })?;
    authorization
        .check(amz_date, now, SERVICE, &REQUIRED)
        .map_err(sigv4_error)?;
    let id = AccessKeyId::parse(&authorization.access_key_id).map_err(|_| {
        unrecognized(format!(
            "{:?} is not an access key id keyledger issues or imports (16 to 64 letters and \
             digits)",
            authorization.access_key_id
        ))
    })?;
    let keys = state.read.sealed_access_keys(&id).await?.value;
    let live: Vec<SealedAccessKey> = keys
        .into_iter()
        .filter(|k| k.key.status == "active")
        .collect();
    if live.is_empty() {
        // Unknown and revoked read alike: an unsigned caller learns nothing of the
        // ids keyledger holds.
        return Err(unrecognized(format!(
            "keyledger has no active access key {id} (unknown, or revoked); create one with \
             `keyledger access-key create`, or import yours with `keyledger access-key import`"
        )));
    }
    Ok(Presented {
        authorization,
        amz_date: amz_date.to_owned(),
        id,
        live,
    })
}

/// Verifies the SigV4 signature `presented` of a request to `path`?`query` with
/// `body`, and returns who signed it.
pub async fn authenticate(
    state: &AppState,
    presented: Presented,
    headers: &HeaderMap,
    (path, query): (&str, &str),
    body: &[u8],
    source: Option<IpAddr>,
) -> Result<AwsCaller, AwsError> {
    let Presented {
        authorization,
        amz_date,
        id,
        live,
    } = presented;
    let headers: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let request = sigv4::Request {
        method: "POST",
        path,
        query,
        headers: &headers,
        body,
    };
    let canonical = request
        .canonical(&authorization.signed_headers)
        .map_err(sigv4_error)?;
    let to_sign = sigv4::string_to_sign(&amz_date, &authorization.scope, &canonical);
    // Ids are unique per project only: the key whose secret verifies the signature is
    // the one that signed. Should two verify (the same pair imported into two
    // projects), which project is meant cannot be told: refused.
    let mut signer = None;
    for key in &live {
        let signing = signing_key(state, key, &authorization).await?;
        if authorization.verify(&to_sign, &signing).is_ok() {
            if signer.is_some() {
                return Err(unrecognized(format!(
                    "access key {id} with this secret is active in more than one project, so \
                     keyledger cannot tell which one a request acts in; revoke all but one \
                     (`keyledger access-key revoke {id}` with a token of each other project)"
                )));
            }
            signer = Some(key);
        }
    }
    let Some(key) = signer else {
        return Err(sigv4_error(SigV4Error::Mismatch));
    };
    let principal = principal_of(key)?;
    Ok(AwsCaller {
        caller: Caller {
            principal,
            credential: Credential::Delegated,
            source,
            access_key: Some(id),
        },
        region: authorization.scope.region.clone(),
    })
}

/// The signing key of `key` for the request's scope: cached, or derived from its
/// secret, opened for the purpose and dropped at once.
async fn signing_key(
    state: &AppState,
    key: &SealedAccessKey,
    authorization: &Authorization,
) -> Result<Arc<Zeroizing<[u8; 32]>>, AwsError> {
    let row = &key.key;
    let name = (
        row.project.clone(),
        row.access_key_id.as_str().to_owned(),
        authorization.scope.date.clone(),
        authorization.scope.region.clone(),
    );
    if let Some(held) = state.aws.signing.get(&name) {
        return Ok(held);
    }
    let (secret_id, _) = sealing_ids(&row.project, &row.access_key_id);
    let failed = |what: &str| {
        tracing::error!(access_key = %row.access_key_id, project = %row.project, "{what}");
        AwsError::new(
            Code::InternalServiceError,
            format!(
                "the secret of access key {} could not be opened ({what}); an operator checks \
                 the key store and the KEK",
                row.access_key_id
            ),
        )
    };
    let wrapped = state
        .wrapped_keys
        .get(&row.project, secret_id, key.key_id)
        .await
        .map_err(domain::Rejection::from)?
        .ok_or_else(|| failed("its data key is missing from the key store"))?;
    let sealed = SealedPayload {
        version_id: key.version_id,
        key_id: key.key_id,
        content_type: ContentType::TextPlain,
        nonce: key.nonce.clone(),
        ciphertext: key.ciphertext.clone(),
    };
    let secret = state
        .envelope
        .open(&sealed, &wrapped, &row.project, secret_id)
        .map_err(|_| failed("it did not open"))?;
    let signing = Arc::new(sigv4::signing_key(
        secret.expose_secret(),
        &authorization.scope,
    ));
    state.aws.signing.insert(name, signing.clone());
    Ok(signing)
}

/// The principal an access key stands for.
fn principal_of(key: &SealedAccessKey) -> Result<Principal, AwsError> {
    let row = &key.key;
    let corrupt = || {
        AwsError::new(
            Code::InternalServiceError,
            format!(
                "the read model's row of access key {} is not valid; an operator rebuilds it \
                 with `keyledger projections rebuild`",
                row.access_key_id
            ),
        )
    };
    Ok(Principal {
        user: row.user.clone(),
        project: row.project.clone(),
        roles: row
            .roles
            .iter()
            .map(|r| Role::parse(r))
            .collect::<Result<_, _>>()
            .map_err(|_| corrupt())?,
        service: row
            .service
            .as_deref()
            .map(ServiceName::parse)
            .transpose()
            .map_err(|_| corrupt())?,
    })
}
