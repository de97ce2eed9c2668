//! GetSecretValue and PutSecretValue: a secret's values, read through the same policy
//! and access records as Barbican's payload reads, written as `secret.value.put`.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use domain::ids::{SecretId, VersionId};
use domain::policy::Action;
use domain::secret::payload::ContentType;
use domain::secret::version::{ClientToken, Stage};
use domain::subject::command;
use infra::protocol::{PayloadField, PutValueRequest};
use projections::read::{Lookup, VersionSelector};
use secrecy::ExposeSecret;

use super::error::{AwsError, Code};
use super::resolve::resolve;
use super::secrets::{arn, marked_for_deletion, name_of, secret_id, secret_row};
use super::shapes::{
    GetSecretValueInput, GetSecretValueOutput, PutSecretValueInput, WriteOutput, epoch,
};
use super::{AwsCaller, output};
use crate::consistency::write;
use crate::payload::{decrypt, readable_payload};
use crate::state::AppState;

/// A value as the command's payload fields: `SecretString` as text, `SecretBinary`
/// (base64 in the JSON) as octets. Exactly one of them, or neither.
pub fn payload_fields(
    string: Option<String>,
    binary: Option<String>,
) -> Result<Option<(PayloadField, String, Option<String>)>, AwsError> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(AwsError::invalid(
            "You can't specify both SecretString and SecretBinary; send one of them",
        )),
        (Some(text), None) => Ok(Some((
            PayloadField::from(text),
            ContentType::TextPlain.as_str().to_owned(),
            None,
        ))),
        (None, Some(binary)) => {
            if B64.decode(binary.as_bytes()).is_err() {
                return Err(AwsError::invalid(
                    "SecretBinary is not valid base64 (the SDKs encode the bytes you give them)",
                ));
            }
            Ok(Some((
                PayloadField::from(binary),
                ContentType::OctetStream.as_str().to_owned(),
                Some("base64".to_owned()),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// A built-in staging label from AWS's name (or keyledger's); custom labels are not
/// served yet.
fn stage(label: &str) -> Result<Stage, AwsError> {
    Stage::parse(label).map_err(|_| {
        AwsError::invalid(format!(
            "staging label {label:?} is not one keyledger serves yet: use AWSCURRENT, \
             AWSPREVIOUS or AWSPENDING (custom labels come in a later release)"
        ))
    })
}

/// A `VersionId` as keyledger stores it: a UUID is itself; another client request
/// token names the version derived from it, as when it was stored.
fn version_id(secret: SecretId, given: &str) -> Result<VersionId, AwsError> {
    ClientToken::parse(given)
        .map(|t| t.version_id(secret))
        .map_err(|_| {
            AwsError::invalid(format!(
                "VersionId {given:?} is not valid: give a version id from DescribeSecret or \
                 ListSecretVersionIds (32 to 64 characters)"
            ))
        })
}

/// `GetSecretValue`: the value of the version `AWSCURRENT` is on, or of the version or
/// label asked for. Every read is recorded, allowed or denied, as over Barbican's API.
pub async fn get(
    state: &AppState,
    caller: &AwsCaller,
    input: GetSecretValueInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let now = (state.clock)();
    let label = input.version_stage.as_deref().map(stage).transpose()?;
    let version = input
        .version_id
        .as_deref()
        .map(|v| version_id(id, v))
        .transpose()?;
    let version_text = version.map(|v| v.to_string());
    let which = match (&version_text, label) {
        (Some(v), _) => VersionSelector::Id(v),
        (None, Some(stage)) => VersionSelector::Stage(stage.as_str()),
        (None, None) => VersionSelector::Stage(Stage::Current.as_str()),
    };
    let lookup = if matches!(which, VersionSelector::Stage("current")) {
        state.read.get_payload(id, now).await?
    } else {
        state.read.get_version(id, which, now).await?
    };
    if let Lookup::PendingDeletion(row) = &lookup.value {
        secret_row(state, caller, id, Action::ReadPayload).await?;
        return Err(marked_for_deletion(row));
    }
    let (secret, payload) =
        readable_payload(state, &caller.caller, id, lookup.value, |(s, _)| s).await?;
    let missing = || {
        let what = match (&version_text, label) {
            (Some(v), _) => format!("version: {v}"),
            (None, Some(stage)) => format!("staging label: {}", stage.aws_name()),
            (None, None) => "staging label: AWSCURRENT".to_owned(),
        };
        AwsError::not_found(format!(
            "Secrets Manager can't find the specified secret value for {what}"
        ))
    };
    let Some(payload) = payload else {
        return Err(missing());
    };
    let found = state
        .read
        .find_version(
            id,
            VersionSelector::Id(&payload.version_id.to_string()),
            now,
        )
        .await?;
    let (created, stages) = match found.value {
        Lookup::Found((_, Some(v))) => (epoch(&v.created), v.stages),
        _ => (None, Vec::new()),
    };
    let labels: Vec<String> = stages
        .iter()
        .map(|s| Stage::parse(s).map_or_else(|_| s.clone(), |s| s.aws_name().to_owned()))
        .collect();
    if let (Some(_), Some(stage)) = (&version_text, label)
        && !labels.iter().any(|l| l == stage.aws_name())
    {
        return Err(AwsError::new(
            Code::InvalidRequest,
            format!(
                "You provided a VersionStage that is not associated to the provided VersionId. \
                 {} is not on version {}",
                stage.aws_name(),
                payload.version_id
            ),
        ));
    }
    let version = payload.version_id.to_string();
    let content_type = payload.content_type;
    let plaintext = decrypt(state, &caller.caller, id, &secret, payload).await?;
    let bytes = plaintext.expose_secret();
    let text = match content_type {
        ContentType::TextPlain => std::str::from_utf8(bytes).ok().map(str::to_owned),
        ContentType::OctetStream => None,
    };
    let binary = text.is_none().then(|| B64.encode(bytes));
    output(&GetSecretValueOutput {
        arn: arn(caller, &secret),
        name: name_of(&secret),
        version_id: version,
        secret_string: text,
        secret_binary: binary,
        version_stages: labels,
        created_date: created,
    })
}

/// `PutSecretValue`: a new version, `AWSCURRENT` unless other labels are named. The
/// same `ClientRequestToken` with the same value is the version already stored; with
/// another value it is refused.
pub async fn put(
    state: &AppState,
    caller: &AwsCaller,
    input: PutSecretValueInput,
) -> Result<Response, AwsError> {
    if input.rotation_token.is_some() {
        return Err(AwsError::invalid(
            "RotationToken is not supported: keyledger's rotation runs on NATS handlers; leave \
             it out",
        ));
    }
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let Some((payload, content_type, encoding)) =
        payload_fields(input.secret_string, input.secret_binary)?
    else {
        return Err(AwsError::invalid(
            "You must provide either SecretString or SecretBinary.",
        ));
    };
    let labels = input
        .version_stages
        .as_deref()
        .map(|labels| {
            labels
                .iter()
                .map(|l| stage(l))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let row = secret_row(state, caller, id, Action::UpdateSecret).await?;
    if row.purge_at.is_some() {
        return Err(marked_for_deletion(&row));
    }
    let token = input.client_request_token;
    let request = PutValueRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
        payload,
        payload_content_type: Some(content_type),
        payload_content_encoding: encoding,
        client_request_token: token.clone(),
        stages: labels
            .as_ref()
            .map(|l| l.iter().map(|s| s.as_str().to_owned()).collect()),
    };
    let accepted = match write(
        state,
        command::SECRET_VALUE_PUT,
        &caller.caller.token,
        &request,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(e) if e.status() == StatusCode::CONFLICT => {
            // The token's version exists with another value, or the secret is full.
            let reused = match token.as_deref().map(|t| version_id(id, t)) {
                Some(Ok(v)) => matches!(
                    state
                        .read
                        .find_version(id, VersionSelector::Id(&v.to_string()), (state.clock)())
                        .await?
                        .value,
                    Lookup::Found((_, Some(_)))
                ),
                _ => false,
            };
            let code = if reused {
                Code::ResourceExists
            } else {
                Code::LimitExceeded
            };
            return Err(AwsError::new(code, e.description()));
        }
        Err(e) => return Err(e.into()),
    };
    output(&WriteOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
        version_id: accepted.version_id,
        version_stages: Some(
            labels
                .unwrap_or_else(|| vec![Stage::Current])
                .iter()
                .map(|s| s.aws_name().to_owned())
                .collect(),
        ),
    })
}
