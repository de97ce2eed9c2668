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
use infra::protocol::{AcceptedReply, PayloadField, PutValueRequest, SetDescriptionRequest};
use projections::read::{Lookup, SecretRow, VersionSelector, WithPayload};
use secrecy::ExposeSecret;

use super::error::{AwsError, Code};
use super::resolve::resolve;
use super::secrets::{
    Listing, arn, list_rows, live_row, marked_for_deletion, name_of, secret_id, secret_row,
};
use super::shapes::{
    BatchError, BatchGetSecretValueInput, BatchGetSecretValueOutput, GetSecretValueInput,
    GetSecretValueOutput, PutSecretValueInput, UpdateSecretInput, WriteOutput, aws_labels, epoch,
};
use super::{AwsCaller, output, paging};
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

/// A staging label from AWS's name (or keyledger's) of a built-in one, or a custom
/// label.
pub fn stage(label: &str) -> Result<Stage, AwsError> {
    Stage::parse(label).map_err(|r| AwsError::invalid(r.message))
}

/// A `VersionId` as keyledger stores it: a UUID is itself; another client request
/// token names the version derived from it, as when it was stored.
pub fn version_id(secret: SecretId, given: &str) -> Result<VersionId, AwsError> {
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
    output(
        &value(
            state,
            caller,
            id,
            input.version_id.as_deref(),
            input.version_stage.as_deref(),
        )
        .await?,
    )
}

/// The value of secret `id` in the version named by id or label (`AWSCURRENT` when
/// neither is), read as `GetSecretValue` reads it.
pub async fn value(
    state: &AppState,
    caller: &AwsCaller,
    id: SecretId,
    version_id_input: Option<&str>,
    stage_input: Option<&str>,
) -> Result<GetSecretValueOutput, AwsError> {
    let now = (state.clock)();
    let label = stage_input.map(stage).transpose()?;
    let version = version_id_input.map(|v| version_id(id, v)).transpose()?;
    let version_text = version.map(|v| v.to_string());
    let which = match (&version_text, &label) {
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
        return Err(marked_for_deletion(row, now));
    }
    let held =
        readable_payload(state, &caller.caller, id, lookup.value, WithPayload::secret).await?;
    let secret = held.secret();
    let missing = || {
        let what = match (&version_text, &label) {
            (Some(v), _) => format!("version: {v}"),
            (None, Some(stage)) => format!("staging label: {}", stage.aws_name()),
            (None, None) => "staging label: AWSCURRENT".to_owned(),
        };
        AwsError::not_found(format!(
            "Secrets Manager can't find the specified secret value for {what}"
        ))
    };
    let Some(payload) = held.payload() else {
        return Err(missing());
    };
    // The version's stages and time come with its payload (one statement, or the read
    // cache).
    let created = epoch(&payload.created);
    let labels = aws_labels(&payload.stages);
    if let (Some(_), Some(stage)) = (&version_text, &label)
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
    let plaintext = decrypt(state, &caller.caller, id, secret, payload).await?;
    let bytes = plaintext.expose_secret();
    let text = match content_type {
        ContentType::TextPlain => std::str::from_utf8(bytes).ok().map(str::to_owned),
        ContentType::OctetStream => None,
    };
    let binary = text.is_none().then(|| B64.encode(bytes));
    Ok(GetSecretValueOutput {
        arn: arn(caller, secret),
        name: name_of(secret),
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
    let Some(value) = payload_fields(input.secret_string, input.secret_binary)? else {
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
    let row = live_row(state, caller, id, Action::UpdateSecret).await?;
    let stored = put_value(
        state,
        caller,
        &row,
        value,
        input.client_request_token,
        labels.as_deref(),
    )
    .await?;
    // The labels the version carries, as the command service left it: a replay
    // changes none (whatever labels it names), and a label named twice is on it once.
    // A command service of an earlier version answers without them, and none answers
    // them for a version it no longer holds: then they are read.
    let stages = match (stored.stages, &stored.version_id) {
        (Some(stages), _) => Some(aws_labels(&stages)),
        (None, Some(v)) => match state
            .read
            .get_version(id, VersionSelector::Id(v), (state.clock)())
            .await?
            .value
        {
            Lookup::Found(held) => held.payload().map(|found| aws_labels(&found.stages)),
            _ => None,
        },
        (None, None) => None,
    };
    let stages = stages.unwrap_or_else(|| {
        labels
            .unwrap_or_else(|| vec![Stage::Current])
            .iter()
            .map(|s| s.aws_name().to_owned())
            .collect()
    });
    output(&WriteOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
        version_id: stored.version_id,
        version_stages: Some(stages),
    })
}

/// Stores `value` as a new version of the live secret in `row` with `labels`
/// (`AWSCURRENT` when `None`); where the command landed, with the new version's id
/// and labels.
async fn put_value(
    state: &AppState,
    caller: &AwsCaller,
    row: &SecretRow,
    (payload, content_type, encoding): (PayloadField, String, Option<String>),
    token: Option<String>,
    labels: Option<&[Stage]>,
) -> Result<AcceptedReply, AwsError> {
    let id = row.id;
    let request = PutValueRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
        payload,
        payload_content_type: Some(content_type),
        payload_content_encoding: encoding,
        client_request_token: token.clone(),
        stages: labels.map(|l| l.iter().map(|s| s.as_str().to_owned()).collect()),
    };
    match super::write(state, caller, command::SECRET_VALUE_PUT, &request).await {
        Ok(accepted) => Ok(accepted),
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
            Err(AwsError::new(code, e.description()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `UpdateSecret`: the `Description` (an empty one clears it) and a new `AWSCURRENT`
/// value, each when given. keyledger seals under its own KEK, so a `KmsKeyId` other
/// than AWS's default is refused by name.
pub async fn update(
    state: &AppState,
    caller: &AwsCaller,
    input: UpdateSecretInput,
) -> Result<Response, AwsError> {
    super::secrets::description(input.description.as_deref())?;
    if let Some(kms) = input.kms_key_id.as_deref()
        && kms != "alias/aws/secretsmanager"
    {
        return Err(AwsError::invalid(format!(
            "KmsKeyId {kms:?} is not supported: keyledger seals every secret under its own key \
             encryption key; leave KmsKeyId out"
        )));
    }
    if input.secret_kind.is_some() {
        return Err(AwsError::invalid(
            "Type is not supported by keyledger; leave it out",
        ));
    }
    let value = payload_fields(input.secret_string, input.secret_binary)?;
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let row = live_row(state, caller, id, Action::UpdateSecret).await?;
    // The value first: it is what can be refused (a token already used for another
    // value), and a refused request must leave the description as it was. Should the
    // description's command fail after the value's, a retry with the same token finds
    // the value stored (a no-op) and sets the description.
    let version = match value {
        Some(value) => {
            put_value(state, caller, &row, value, input.client_request_token, None)
                .await?
                .version_id
        }
        None => None,
    };
    if let Some(text) = input.description {
        let request = SetDescriptionRequest {
            command_id: None,
            project: Some(row.project.to_string()),
            id: id.to_string(),
            description: Some(text),
        };
        super::write(state, caller, command::SECRET_DESCRIPTION_SET, &request).await?;
    }
    output(&WriteOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
        version_id: version,
        version_stages: None,
    })
}

/// The largest `BatchGetSecretValue` request and page.
const MAX_BATCH: i64 = 20;

/// `BatchGetSecretValue`: the current values of up to 20 secrets named in
/// `SecretIdList`, or of a page of the secrets `Filters` select. A secret that cannot
/// be read is an entry of `Errors`, not a failure of the whole request.
pub async fn batch_get(
    state: &AppState,
    caller: &AwsCaller,
    input: BatchGetSecretValueInput,
) -> Result<Response, AwsError> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let mut fetch = async |given: String, id: Result<SecretId, AwsError>| {
        let result = match id {
            Ok(id) => value(state, caller, id, None, None).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => values.push(v),
            Err(e) => errors.push(BatchError {
                secret_id: given,
                error_code: e.code.as_str(),
                message: e.message,
            }),
        }
    };
    let next_token = match (input.secret_id_list, input.filters) {
        (Some(ids), None) => {
            if input.max_results.is_some() || input.next_token.is_some() {
                return Err(AwsError::invalid(
                    "MaxResults and NextToken go with Filters, not with SecretIdList",
                ));
            }
            if ids.is_empty() || ids.len() > MAX_BATCH as usize {
                return Err(AwsError::invalid(format!(
                    "SecretIdList must name 1 to {MAX_BATCH} secrets (it names {})",
                    ids.len()
                )));
            }
            for given in ids {
                let id = resolve(state, caller, &given).await;
                fetch(given, id).await;
            }
            None
        }
        (None, Some(filters)) => {
            let listing = Listing {
                filters: &filters,
                sort_by: None,
                sort_order: None,
                include_pending_deletion: false,
                limit: paging::max_results(input.max_results, MAX_BATCH)?,
                next_token: input.next_token.as_deref(),
            };
            let (rows, next) = list_rows(state, caller, listing).await?;
            for row in rows {
                fetch(arn(caller, &row), Ok(row.id)).await;
            }
            next
        }
        _ => {
            return Err(AwsError::invalid(
                "give either SecretIdList or Filters, not both and not neither",
            ));
        }
    };
    output(&BatchGetSecretValueOutput {
        secret_values: values,
        errors,
        next_token,
    })
}
