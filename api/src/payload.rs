//! Payloads over HTTP: Barbican's `PUT /v1/secrets/{id}` (the second step of a
//! two-step create) and `GET /v1/secrets/{id}/payload`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use domain::ids::{KeyId, ProjectId, SecretId, VersionId};
use domain::policy::Action;
use domain::secret::payload::{ContentType, SealedPayload};
use domain::subject::command;
use infra::envelope::WrappedKey;
use infra::protocol::{PayloadField, PutPayloadRequest};
use secrecy::{ExposeSecret, SecretSlice};

use crate::access::resolve;
use crate::access::{change_target, not_found, readable};
use crate::access_log::AccessRecord;
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::negotiate::{Served, payload_type};
use crate::openapi::{AcceptPayload, MinSeq, SecretPath};
use crate::state::AppState;
use projections::read::Lookup;
use projections::read::{PayloadRow, SecretRow, WithPayload};

/// Response header naming the version a payload belongs to.
pub const VERSION_ID: &str = "x-keyledger-version-id";

fn unsupported(content_type: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type {content_type:?} is not supported for a payload; send it as \
             text/plain or application/octet-stream"
        ),
    )
}

/// `PUT /v1/secrets/{id}`: stores the payload of a secret created without one. The
/// body is the payload itself; `Content-Type` says its type (required) and
/// `Content-Encoding: base64` says an octet-stream body is base64 text.
#[utoipa::path(
    put,
    path = "/v1/secrets/{id}",
    tag = "secrets",
    params(SecretPath,
        ("Content-Encoding" = Option<String>, Header, pattern = "^[ \t]*([Bb][Aa][Ss][Ee]64)?[ \t]*$", description = "`base64` when an `application/octet-stream` body is base64 text")),
    request_body(description = "The payload itself", content(
        (infra::schemas::PayloadBody = "text/plain"),
        (infra::schemas::PayloadBody = "application/octet-stream"),
    )),
    responses((status = 204, description = "Stored")),
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let (id, project) = change_target(&state, &caller, &id).await?;
    // As Barbican: who may not change the secret learns that first, whatever the
    // body (the command checks again, on the log).
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    if !matches!(lookup.value, Lookup::Missing) {
        readable(
            &state,
            &caller,
            Action::UpdateSecret,
            id,
            lookup.value,
            |r| r,
        )?;
    }
    // As Barbican: the type must be named (415 otherwise).
    let Some(content_type) = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"))
    else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a payload needs a Content-Type: text/plain or application/octet-stream",
        ));
    };
    let parsed = ContentType::parse(content_type).map_err(|_| unsupported(content_type))?;
    // An empty header is no header, as for every optional header.
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| {
            v.to_str()
                .unwrap_or("(not text)")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty());
    let as_text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            ApiError::bad_request(
                "the body is not UTF-8 text; send binary payloads as \
                 application/octet-stream",
            )
        })
    };
    let (payload, encoding) = match (parsed, encoding.as_deref()) {
        (ContentType::OctetStream, None) => (B64.encode(&body), Some("base64".to_owned())),
        (_, encoding) => (as_text(&body)?, encoding.map(str::to_owned)),
    };
    let request = PutPayloadRequest {
        command_id: None,
        project,
        id: id.to_string(),
        payload: PayloadField::from(payload),
        payload_content_type: Some(parsed.as_str().to_owned()),
        payload_content_encoding: encoding,
    };
    let accepted = write(&state, command::SECRET_PAYLOAD_PUT, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

/// `GET /v1/secrets/{id}/payload`: the decrypted payload of the current version, in
/// its stored type or as `application/octet-stream`, as the `Accept` header asks; 406
/// otherwise.
#[utoipa::path(
    get,
    path = "/v1/secrets/{id}/payload",
    tag = "secrets",
    params(SecretPath, MinSeq, AcceptPayload),
    responses((status = 200, description = "The payload of the current version", content(
        (String = "text/plain"),
        (String = "application/octet-stream"),
    ), headers(("X-Keyledger-Version-Id" = String, description = "The version served")))),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = resolve(&state, &caller, &id).await?;
    let lookup = state.read.get_payload(id, (state.clock)()).await?;
    let held = readable_payload(&state, &caller, id, lookup.value, WithPayload::secret).await?;
    let Some(row) = held.payload() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "secret {id} has no payload yet (no version is current); store one with PUT \
                 /v1/secrets/{id} (or the secret.payload.put command)"
            ),
        ));
    };
    let response = open(&state, &caller, id, held.secret(), row, &headers).await?;
    Ok(with_seq(response, lookup.seq))
}

/// Decrypts a stored payload and answers with it, as `headers` ask.
pub async fn open(
    state: &AppState,
    caller: &Caller,
    id: SecretId,
    secret: &SecretRow,
    row: &PayloadRow,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let stored = row.content_type;
    let accept = crate::negotiate::accept(headers)?;
    let ask_for = match stored {
        ContentType::TextPlain => "text/plain or application/octet-stream",
        ContentType::OctetStream => "application/octet-stream (or text/plain, for UTF-8 text)",
    };
    let Some(served) = payload_type(accept, stored) else {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("the payload of secret {id} is {stored}; request it with Accept: {ask_for}"),
        ));
    };
    let version_id = row.version_id;
    let plaintext = decrypt(state, caller, id, secret, row).await?;
    let as_text = match served {
        Served::Stored => stored == ContentType::TextPlain,
        Served::Octets => false,
        Served::TextIfUtf8 => {
            if std::str::from_utf8(plaintext.expose_secret()).is_err() {
                return Err(ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    format!(
                        "the payload of secret {id} is binary, not UTF-8 text; request it with \
                         Accept: application/octet-stream"
                    ),
                ));
            }
            true
        }
    };
    let mut response = plaintext.expose_secret().to_vec().into_response();
    let content_type = if as_text {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&version_id.to_string()) {
        h.insert(VERSION_ID, v);
    }
    Ok(response)
}

/// The access record of a payload read by `caller`: allowed (with the version) or
/// denied (with the reason).
fn access_record(
    state: &AppState,
    caller: &Caller,
    id: SecretId,
    version: Option<VersionId>,
    denied: Option<&str>,
) -> AccessRecord {
    let who = &caller.principal;
    AccessRecord {
        at: (state.clock)().to_rfc3339(),
        user: who.user.to_string(),
        project: who.project.to_string(),
        service: who.service.as_ref().map(ToString::to_string),
        access_key: caller.access_key.as_ref().map(ToString::to_string),
        secret: id.to_string(),
        version: version.map(|v| v.to_string()),
        source: caller.source.map(|s| s.to_string()),
        allowed: denied.is_none(),
        reason: denied.map(str::to_owned),
    }
}

/// [`readable`] for reading a payload: a denial is recorded in the access log too.
pub async fn readable_payload<T>(
    state: &AppState,
    caller: &Caller,
    id: SecretId,
    lookup: Lookup<T>,
    row: impl Fn(&T) -> &SecretRow,
) -> Result<T, ApiError> {
    let result = readable(state, caller, Action::ReadPayload, id, lookup, row);
    if let Err(denied) = &result
        && denied.status() == StatusCode::FORBIDDEN
    {
        count_read(caller, "denied");
        let record = access_record(state, caller, id, None, Some(denied.description()));
        // The read is refused either way; a lost record of a refusal is logged. (Boxed:
        // inline, this rare wait would enlarge every payload read's future.)
        if Box::pin(state.access_log.record(record)).await.is_err() {
            tracing::error!(secret = %id, "the record of a refused payload read was not stored");
        }
    }
    result
}

/// Counts a payload read, `allowed` (its access record stored) or `denied`.
fn count_read(caller: &Caller, outcome: &'static str) {
    let mut labels = vec![metrics::Label::from_static_parts("outcome", outcome)];
    labels.extend(infra::metrics::project_label(
        caller.principal.project.as_str(),
    ));
    metrics::counter!(infra::metrics::PAYLOAD_READS, labels).increment(1);
}

/// What the log says of a data key the key store did not return.
#[derive(Debug, PartialEq, Eq)]
enum KeyFate {
    /// A commit came after the one the read model showed: a deletion or an expiry
    /// may have destroyed the key (any later commit is taken so, unread).
    Destroyed,
    /// The secret's last commit is still the one the read model showed: no commit
    /// destroyed it.
    Kept,
    /// The log did not say: no answer, or one from a replica behind the read model.
    Unknown,
}

/// The fate of secret `id`'s data key, by the secret's last commit as the event
/// stream's leader has it, against the `version` the read model showed. Not a direct
/// get: a lagging replica would answer with an older commit, or none.
async fn key_fate(state: &AppState, project: &ProjectId, id: SecretId, version: i64) -> KeyFate {
    let subject = domain::subject::aggregate_subject(
        project,
        domain::subject::AggregateKind::Secret,
        &id.into(),
    );
    let last = async {
        let stream = state
            .js
            .get_stream_no_info(&state.config.stream)
            .await
            .ok()?;
        let message = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .ok()?;
        domain::commit::Commit::<domain::audit::RawEvent>::open(&message.payload, &state.commit_key)
            .ok()
            .map(|commit| commit.body.version)
    };
    fate_by(
        tokio::time::timeout(LOOK_TIMEOUT, last)
            .await
            .ok()
            .flatten(),
        version,
    )
}

/// The fate of a data key by the version of its secret's last commit, if the log
/// answered with one that opens, against the `shown` version of the read model.
fn fate_by(last: Option<u64>, shown: i64) -> KeyFate {
    let Some(last) = last else {
        return KeyFate::Unknown;
    };
    match i64::try_from(last).map(|v| v.cmp(&shown)) {
        Ok(std::cmp::Ordering::Equal) => KeyFate::Kept,
        Ok(std::cmp::Ordering::Less) => KeyFate::Unknown,
        Ok(std::cmp::Ordering::Greater) | Err(_) => KeyFate::Destroyed,
    }
}

/// The budget for looking again for a data key the key store did not return, before
/// it is called tampered with: the looks come 50 ms apart, then twice as far each
/// time, the last about 6.4 s on. A node that hung and resumes still takes itself for
/// the leader it was, for a moment, and answers without the keys (and commits)
/// written meanwhile; a replica catching up does too.
const MISSING_KEY_RECHECK: Duration = Duration::from_secs(10);

/// How long one look (at the key store, or at the log) may take: one sent to a hung
/// node would otherwise wait for the NATS request timeout.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// The data key `key` of secret `id`, which the key store did not return. A commit
/// after the one the read model showed (a deletion, an expiry) explains it: not
/// found. Otherwise it is looked for again; still missing, it was tampered with when
/// the log says no commit came after, and the answer is "retry" when the log did not
/// say. A key found again is served only while the secret is still at the version
/// the read model showed.
async fn missing_key(
    state: &AppState,
    caller: &Caller,
    secret: &SecretRow,
    id: SecretId,
    key: KeyId,
) -> Result<WrappedKey, ApiError> {
    let (project, version) = (&secret.project, secret.version);
    let retry = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}; retry shortly"),
        )
        .retry_after(1)
    };
    let mut retries = infra::nats::Retries::within(MISSING_KEY_RECHECK);
    loop {
        let fate = key_fate(state, project, id, version).await;
        if fate == KeyFate::Destroyed {
            // The secret or version went after the read model answered.
            return Err(not_found(caller, id));
        }
        if !retries.pause().await {
            if fate == KeyFate::Unknown {
                tracing::warn!(secret = %id, %key, "a data key is missing, and the log did not say whether a commit destroyed it");
                return Err(retry(format!(
                    "the data key {key} of secret {id} was not found, and the log did not say \
                     whether a commit destroyed it (a NATS node may be catching up)"
                )));
            }
            tracing::error!(secret = %id, %key, "a data key is missing from the key store though no commit destroyed it: tampered with");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the data key {key} of secret {id} is missing from the key store, though \
                     no commit destroyed it: the key store was tampered with; restore it \
                     from a backup"
                ),
            ));
        }
        let found = tokio::time::timeout(LOOK_TIMEOUT, state.wrapped_keys.get(project, id, key));
        if let Ok(found) = found.await
            && let Some(wrapped) = found.map_err(domain::Rejection::from)?
        {
            // A commit meanwhile (a deletion destroys the key after its commit, and a
            // lagging replica may still hold it) is not decided on here.
            if key_fate(state, project, id, version).await != KeyFate::Kept {
                return Err(retry(format!(
                    "secret {id} changed while its data key was looked for"
                )));
            }
            tracing::warn!(secret = %id, %key, "a data key missing at first was found on a later look: a NATS node answered without it");
            return Ok(wrapped);
        }
    }
}

/// Decrypts a stored payload (the caller has been authorized to read it).
pub async fn decrypt(
    state: &AppState,
    caller: &Caller,
    id: SecretId,
    secret: &SecretRow,
    row: &PayloadRow,
) -> Result<SecretSlice<u8>, ApiError> {
    let project = &secret.project;
    // Recorded before the payload is opened: no record, no payload.
    state
        .access_log
        .record(access_record(state, caller, id, Some(row.version_id), None))
        .await?;
    count_read(caller, "allowed");
    let sealed = SealedPayload {
        version_id: row.version_id,
        key_id: row.key_id,
        content_type: row.content_type,
        nonce: row.nonce.clone(),
        ciphertext: row.ciphertext.clone(),
    };
    let wrapped = match state
        .wrapped_keys
        .get(project, id, sealed.key_id)
        .await
        .map_err(domain::Rejection::from)?
    {
        Some(wrapped) => wrapped,
        // Boxed, as a rare path: inline, its future would enlarge every read's.
        None => Box::pin(missing_key(state, caller, secret, id, sealed.key_id)).await?,
    };
    state
        .envelope
        .open(&sealed, &wrapped, project, id)
        .map_err(|e| {
            state.wrapped_keys.forget(project, id);
            tracing::error!(secret = %id, error = %e, "a payload did not open");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::{KeyFate, fate_by};

    #[test]
    fn a_missing_keys_fate_is_told_only_by_a_commit_at_or_after_the_shown_version() {
        // A later commit (a deletion, an expiry) explains the missing key.
        assert_eq!(fate_by(Some(8), 7), KeyFate::Destroyed);
        assert_eq!(fate_by(Some(u64::MAX), 7), KeyFate::Destroyed);
        // The commit the read model showed is still the last: nothing destroyed it.
        assert_eq!(fate_by(Some(7), 7), KeyFate::Kept);
        // A replica behind the read model, or no answer: the log did not say.
        assert_eq!(fate_by(Some(6), 7), KeyFate::Unknown);
        assert_eq!(fate_by(None, 7), KeyFate::Unknown);
    }
}
