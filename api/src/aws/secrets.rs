//! CreateSecret, DescribeSecret, ListSecrets, DeleteSecret and RestoreSecret: the
//! secret as a whole, through the same read model, policy and commands as Barbican's
//! API.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use domain::ids::SecretId;
use domain::policy::{Action, Target, authorize};
use domain::secret::fields::SecretName;
use domain::subject::command;
use domain::timestamp::Timestamp;
use infra::protocol::{CreateSecretRequest, DeleteSecretRequest, SecretRequest};
use projections::read::{ListFilter, ListScope, Lookup, SecretRow, SortKey};

use super::error::{AwsError, Code};
use super::resolve::{arn_of, resolve};
use super::shapes::{
    CreateSecretInput, DeleteSecretInput, DeleteSecretOutput, Filter, ListSecretsInput,
    ListSecretsOutput, NamedOutput, SecretDescription, SecretIdInput, WriteOutput, aws_labels,
    epoch, tags_of,
};
use super::values::payload_fields;
use super::{AwsCaller, output, paging};
use crate::access;
use crate::state::AppState;

/// The recovery window a `DeletionDate` assumes when none was asked for and the read
/// model did not show the deletion before the write's wait for it ran out: the
/// command service's default window, unless its `--recovery-window` says otherwise
/// (then that answer is off by the difference; DescribeSecret shows the true one).
const DEFAULT_RECOVERY_DAYS: u64 = 30;

/// The `SecretId` member, which every operation on one secret requires.
pub fn secret_id(given: Option<String>) -> Result<String, AwsError> {
    let given = given
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AwsError::invalid("SecretId is required: give the secret's name or ARN"))?;
    // AWS's bound; no name or ARN of keyledger's is near it.
    let length = given.chars().count();
    if length > MAX_SECRET_ID {
        return Err(AwsError::invalid(format!(
            "SecretId is {length} characters long; at most {MAX_SECRET_ID} are allowed: give \
             the secret's name or ARN"
        )));
    }
    Ok(given)
}

/// The longest `SecretId` AWS takes.
const MAX_SECRET_ID: usize = 2048;

/// The ARN of the secret in `row`, in the caller's region.
pub fn arn(caller: &AwsCaller, row: &SecretRow) -> String {
    arn_of(&caller.region, &row.project, &row.reference)
}

/// The name AWS shows for the secret in `row` (its id when it has none).
pub fn name_of(row: &SecretRow) -> String {
    row.name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| row.id.to_string())
}

/// AWS's answer for an operation other than describing, listing, deleting or
/// restoring, on a secret in its recovery window.
pub fn marked_for_deletion(row: &SecretRow, now: Timestamp) -> AwsError {
    if let Some(at) = row.window_ended_at(now) {
        // The window is over: gone, as for the command service (its purge may lag).
        return domain::secret::scheduled_for_deletion(row.id, at, now).into();
    }
    AwsError::new(
        Code::InvalidRequest,
        format!(
            "{} It is deleted on {}; restore it with RestoreSecret first",
            super::error::MARKED_FOR_DELETION,
            row.purge_at
                .as_deref()
                .unwrap_or("the end of its recovery window")
        ),
    )
}

/// The secret `input` names, as the read model holds it, if the caller may do `action`
/// on it; one in its recovery window too. An expired or missing secret is not found,
/// nor one whose recovery window has ended.
pub async fn secret_row(
    state: &AppState,
    caller: &AwsCaller,
    id: SecretId,
    action: Action,
) -> Result<SecretRow, AwsError> {
    let lookup = state.read.get_secret(id, (state.clock)()).await?;
    match lookup.value {
        Lookup::Found(row) => {
            access::check(state, &caller.caller, action, &row)?;
            Ok(row)
        }
        Lookup::PendingDeletion(row) => {
            access::check(state, &caller.caller, action, &row)?;
            let now = (state.clock)();
            if row.recovery_window_ended(now) {
                // Deleted, for describing and listing too, before its purge lands.
                return Err(marked_for_deletion(&row, now));
            }
            Ok(*row)
        }
        Lookup::Expired(row) => {
            access::check(state, &caller.caller, action, &row)?;
            Err(AwsError::not_found(format!(
                "It expired at {}.",
                row.expiration.as_deref().unwrap_or("an earlier time")
            )))
        }
        Lookup::Missing => Err(AwsError::not_found(format!(
            "No secret {id} in project {}.",
            caller.caller.principal.project
        ))),
    }
}

/// [`secret_row`] for operations a secret in its recovery window refuses (all but
/// describing, listing, deleting and restoring it).
pub async fn live_row(
    state: &AppState,
    caller: &AwsCaller,
    id: SecretId,
    action: Action,
) -> Result<SecretRow, AwsError> {
    let row = secret_row(state, caller, id, action).await?;
    if row.purge_at.is_some() {
        return Err(marked_for_deletion(&row, (state.clock)()));
    }
    Ok(row)
}

/// AWS's rule for names: letters, digits and `/_+=.@-`. keyledger's own limit of 255
/// characters applies (AWS allows 512).
fn aws_name(name: &str) -> Result<SecretName, AwsError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(AwsError::invalid(format!(
            "Name {name:?} is not valid: use 1 to 255 ASCII letters, digits and the characters \
             /_+=.@-"
        )));
    }
    SecretName::parse(name).map_err(|r| AwsError::invalid(r.message))
}

/// Checks a `Description` as AWS bounds it (2,048 characters).
pub fn description(given: Option<&str>) -> Result<(), AwsError> {
    given
        .map(domain::secret::fields::Description::parse)
        .transpose()
        .map(|_| ())
        .map_err(|r| AwsError::invalid(r.message))
}

/// `CreateSecret`: a secret whose name is unique in the project, as in AWS (also
/// against one in its recovery window), with its first value if one is given.
pub async fn create(
    state: &AppState,
    caller: &AwsCaller,
    input: CreateSecretInput,
) -> Result<Response, AwsError> {
    let name = aws_name(input.name.as_deref().unwrap_or_default())?;
    description(input.description.as_deref())?;
    if let Some(kms) = input.kms_key_id.as_deref()
        && kms != "alias/aws/secretsmanager"
    {
        return Err(AwsError::invalid(format!(
            "KmsKeyId {kms:?} is not supported: keyledger seals every secret under its own key \
             encryption key (see docs/aws.md); leave KmsKeyId out"
        )));
    }
    if input.add_replica_regions.is_some() {
        return Err(AwsError::new(
            Code::InvalidRequest,
            "AddReplicaRegions: keyledger does not replicate secrets to regions; its NATS cluster \
             replicates every secret",
        ));
    }
    if input.secret_kind.is_some() {
        return Err(AwsError::invalid(
            "Type is not supported by keyledger; leave it out",
        ));
    }
    let project = caller.caller.principal.project.clone();
    let now = (state.clock)();
    // A secret of the same name that Barbican's API created (whose id is no
    // incarnation of the name) holds the name too: AWS's names are unique.
    for taken in state.read.by_name_any(&project, name.as_str(), now).await? {
        let Ok(id) = SecretId::parse(&taken.id) else {
            continue;
        };
        if id.incarnation_of(&project, name.as_str()).is_none() {
            // Told apart as for a holder AWS's API created (below).
            return Err(match state.read.get_secret(id, now).await?.value {
                Lookup::PendingDeletion(row) if access::may_read(state, &caller.caller, &row) => {
                    scheduled_for_deletion(caller, &project, &row, now)
                }
                _ => exists(&name),
            });
        }
    }
    let (payload, content_type, encoding) =
        match payload_fields(input.secret_string, input.secret_binary)? {
            Some((p, t, e)) => (Some(p), Some(t), e),
            None => (None, None, None),
        };
    let tags = input.tags.map(tag_map).transpose()?;
    let token = input.client_request_token;
    // Checked here too: without a value, no version takes the token to check it.
    if let Some(t) = token.as_deref()
        && domain::secret::version::ClientToken::parse(t).is_err()
    {
        return Err(AwsError::invalid(format!(
            "ClientRequestToken must be 32 to 64 printable ASCII characters without spaces \
             (a UUID works); got {} characters",
            t.chars().count()
        )));
    }
    let has_token = token.is_some();
    // The command id follows the token, so a retried create is answered with the
    // secret the first attempt made.
    let command_id = token.as_deref().map(|t| {
        let key = format!("aws-create/{project}/{}/{t}", name.as_str());
        uuid::Uuid::new_v5(&AWS_CREATE_NAMESPACE, key.as_bytes()).to_string()
    });
    let request = CreateSecretRequest {
        command_id,
        name: Some(name.as_str().to_owned()),
        payload,
        payload_content_type: content_type,
        payload_content_encoding: encoding,
        tags,
        unique_name: Some(true),
        client_request_token: token,
        description: input.description,
        ..Default::default()
    };
    match super::write(state, caller, command::SECRET_CREATE, &request).await {
        Ok(accepted) => {
            let id = SecretId::parse(&accepted.id)?;
            // A create retried with its token is answered with what the first attempt
            // made; if that secret has been deleted since, its ARN is no answer.
            // Only a read model that has applied the create can tell (a write answers
            // once it shows it, or after its wait for that ran out). A first attempt
            // (the SDKs send a token with every create) made the secret it answers,
            // whatever a concurrent deletion did since.
            if accepted.replayed {
                let now = state.read.get_secret(id, (state.clock)()).await?;
                if now.seq >= accepted.seq {
                    match now.value {
                        Lookup::PendingDeletion(row) => {
                            let now = (state.clock)();
                            if row.recovery_window_ended(now) {
                                return Err(made_and_deleted(&name));
                            }
                            return Err(scheduled_for_deletion(caller, &project, &row, now));
                        }
                        Lookup::Missing => return Err(made_and_deleted(&name)),
                        Lookup::Found(_) | Lookup::Expired(_) => {}
                    }
                }
            }
            output(&WriteOutput {
                arn: domain::secret::arn::arn(&caller.region, &project, Some(&name), id),
                name: name.as_str().to_owned(),
                version_id: accepted.version_id,
                version_stages: None,
            })
        }
        Err(e) if e.status() == StatusCode::CONFLICT => {
            // Taken: by a live secret, or one in its recovery window (told apart only
            // to a caller who may read it).
            let now = (state.clock)();
            let holders = state.read.by_name_any(&project, name.as_str(), now).await?;
            for taken in &holders {
                if let Ok(id) = SecretId::parse(&taken.id)
                    && let Lookup::PendingDeletion(row) =
                        state.read.get_secret(id, now).await?.value
                    && access::may_read(state, &caller.caller, &row)
                {
                    return Err(scheduled_for_deletion(caller, &project, &row, now));
                }
            }
            // The command service's words name keyledger's ids, not the ARN AWS's
            // callers know: what they say is told in AWS's terms. The token's create
            // asked for other values (a read model that does not show the secret yet
            // included).
            if e.code()
                .is_some_and(|code| domain::error::is_other_create(code, e.description()))
            {
                return Err(AwsError::new(
                    Code::ResourceExists,
                    format!(
                        "The operation failed because the secret {} already exists. This \
                         ClientRequestToken was used for it with another value or other \
                         parameters; send a new token for a new secret.",
                        name.as_str()
                    ),
                ));
            }
            // Nothing the read model shows holds the name: say what the command service
            // refused (a command id in use, which follows the token; too many
            // incarnations of the name); else the holder is one the read model does not
            // show yet.
            if holders.is_empty() {
                // The token's command id was taken minutes ago by a create of the name
                // whose secret is deleted now (JetStream still remembers the id; after
                // its duplicate window the same request creates a new secret, as AWS's
                // does).
                if has_token
                    && e.code().is_some_and(|code| {
                        domain::error::is_command_id_taken(code, e.description())
                    })
                {
                    return Err(made_and_deleted(&name));
                }
                if e.code().is_some_and(|code| {
                    domain::error::is_incarnations_exhausted(code, e.description())
                }) {
                    return Err(AwsError::new(
                        Code::ResourceExists,
                        format!(
                            "The create of {} was refused: {}",
                            name.as_str(),
                            e.description()
                        ),
                    ));
                }
            }
            Err(AwsError::new(
                Code::ResourceExists,
                format!(
                    "The operation failed because the secret {} already exists.",
                    name.as_str()
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// A create refused because a secret of its name waits out its recovery window, or
/// its window has ended and the scheduler's purge, which frees the name, has not yet
/// landed.
fn scheduled_for_deletion(
    caller: &AwsCaller,
    project: &domain::ids::ProjectId,
    row: &SecretRow,
    now: Timestamp,
) -> AwsError {
    let arn = arn_of(&caller.region, project, &row.reference);
    if let Some(end) = row.window_ended_at(now) {
        return AwsError::new(
            Code::InvalidRequest,
            format!(
                "You can't create this secret yet: a secret with this name ({arn}) was \
                 deleted at the end of its recovery window, {end}, and its name is freed \
                 once keyledger's scheduler purges it, within its interval (5 s by \
                 default). Retry the create then"
            ),
        );
    }
    AwsError::new(
        Code::InvalidRequest,
        format!(
            "You can't create this secret because a secret with this name is already \
             scheduled for deletion. Restore it with RestoreSecret, or wait until it is \
             deleted ({arn})"
        ),
    )
}

/// A create retried with the token of one whose secret has been deleted since.
fn made_and_deleted(name: &SecretName) -> AwsError {
    AwsError::new(
        Code::InvalidRequest,
        format!(
            "A create of {} with this ClientRequestToken was made, and its secret has been \
             deleted since; to create the secret again, send a new ClientRequestToken",
            name.as_str()
        ),
    )
}

/// AWS's tags as keyledger's map; a key given twice is refused, not decided by order.
pub fn tag_map(tags: Vec<super::shapes::Tag>) -> Result<BTreeMap<String, String>, AwsError> {
    let mut map = BTreeMap::new();
    for tag in tags {
        if map.contains_key(&tag.key) {
            return Err(AwsError::invalid(format!(
                "tag key {:?} is given twice; give each key once",
                tag.key
            )));
        }
        map.insert(tag.key, tag.value);
    }
    Ok(map)
}

/// The namespace of the command ids of AWS creates with a client request token.
const AWS_CREATE_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b65_796c_6564_6765_7200_0000_0000_00a3);

fn exists(name: &SecretName) -> AwsError {
    AwsError::new(
        Code::ResourceExists,
        format!(
            "The operation failed because the secret {} already exists. AWS's names are \
             unique in a project; choose another name",
            name.as_str()
        ),
    )
}

/// The versions of a secret that carry a staging label, with AWS's label names.
async fn labelled_versions(
    state: &AppState,
    id: SecretId,
) -> Result<Option<BTreeMap<String, Vec<String>>>, AwsError> {
    let lookup = state.read.labelled_versions(id, (state.clock)()).await?;
    let Lookup::Found((_, labelled)) = lookup.value else {
        return Ok(None);
    };
    let mut map: BTreeMap<String, Vec<String>> = labelled
        .stored
        .into_iter()
        .map(|v| {
            let labels = aws_labels(&v.stages);
            (v.version_id, labels)
        })
        .collect();
    // A label on a version without a value is still the secret's: AWSPENDING on a
    // rotation's version before its handler stores one, or left there by a cancelled
    // rotation (as AWS leaves it). It blocks moving the label, so it is shown.
    for (version, stage) in labelled.valueless {
        let labels = map.entry(version).or_default();
        labels.extend(aws_labels(&[stage]));
        labels.sort();
    }
    Ok(Some(map))
}

fn describe_row(caller: &AwsCaller, row: &SecretRow) -> SecretDescription {
    let mut d = SecretDescription {
        arn: arn(caller, row),
        name: name_of(row),
        last_changed_date: epoch(&row.updated),
        deleted_date: row.purge_at.as_deref().and_then(epoch),
        tags: tags_of(&row.tags),
        version_ids_to_stages: None,
        secret_versions_to_stages: None,
        owning_service: row.owning_service.as_ref().map(ToString::to_string),
        created_date: epoch(&row.created),
        description: row.description.clone(),
        rotation_enabled: false,
        rotation_lambda_arn: None,
        rotation_rules: None,
        last_rotated_date: None,
        next_rotation_date: None,
    };
    super::rotation::describe_rotation(caller, row, &mut d);
    d
}

/// `DescribeSecret`: one secret's metadata, also in its recovery window.
pub async fn describe(
    state: &AppState,
    caller: &AwsCaller,
    input: SecretIdInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let row = secret_row(state, caller, id, Action::ReadSecret).await?;
    let mut description = describe_row(caller, &row);
    description.version_ids_to_stages = labelled_versions(state, id).await?;
    output(&description)
}

/// `RestoreSecret`: cancels a scheduled deletion.
pub async fn restore(
    state: &AppState,
    caller: &AwsCaller,
    input: SecretIdInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let row = secret_row(state, caller, id, Action::DeleteSecret).await?;
    let request = SecretRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
    };
    super::write(state, caller, command::SECRET_RESTORE, &request).await?;
    output(&NamedOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
    })
}

/// `DeleteSecret`: schedules the deletion (within the command service's bounds, 7 to
/// 30 days unless configured; its default window when none is given), or deletes at
/// once with `ForceDeleteWithoutRecovery`, which also succeeds for a missing secret.
pub async fn delete(
    state: &AppState,
    caller: &AwsCaller,
    input: DeleteSecretInput,
) -> Result<Response, AwsError> {
    let given = secret_id(input.secret_id)?;
    let force = input.force_delete_without_recovery.unwrap_or(false);
    if force && input.recovery_window_in_days.is_some() {
        return Err(AwsError::invalid(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        ));
    }
    // The window's bounds and default are the command service's (its
    // --recovery-window-min, -max and --recovery-window; 7, 30 and 30 days by
    // default), which refuses a window out of them saying which they are.
    let days = match input.recovery_window_in_days {
        // A count of days too large to be a duration is out of any bounds alike.
        Some(d) if d < 1 || d.checked_mul(86_400).is_none() => {
            return Err(AwsError::invalid(format!(
                "The RecoveryWindowInDays value {d} is out of range: give a number of days \
                 within keyledger's configured bounds (7 to 30 days by default)"
            )));
        }
        given => given.map(i64::unsigned_abs),
    };
    let now = (state.clock)();
    let id = match resolve(state, caller, &given).await {
        Ok(id) => id,
        Err(e) if force && e.code == Code::ResourceNotFound && !other_account(caller, &given) => {
            return forced_of_missing(state, caller, given, now).await;
        }
        Err(e) => return Err(e),
    };
    let row = match secret_row(state, caller, id, Action::DeleteSecret).await {
        Ok(row) => row,
        // Not found to AWS, after the caller's access was checked on it: deleted
        // already (its recovery window over, its purge not landed yet), which a forced
        // deletion answers as for a missing secret; or expired, whose keys a forced
        // deletion destroys at once.
        Err(e) if force && e.code == Code::ResourceNotFound => {
            match state.read.get_secret(id, now).await?.value {
                Lookup::Expired(row) => *row,
                Lookup::PendingDeletion(row) => {
                    let deleted = row.recovery_window_end().unwrap_or(now);
                    return output(&DeleteSecretOutput {
                        arn: arn(caller, &row),
                        name: name_of(&row),
                        deletion_date: deleted.unix_millis() as f64 / 1000.0,
                    });
                }
                Lookup::Found(_) | Lookup::Missing => {
                    return forced_of_missing(state, caller, given, now).await;
                }
            }
        }
        Err(e) => return Err(e),
    };
    let request = DeleteSecretRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
        recovery_window_days: days.filter(|_| !force),
        recovery_window: None,
        force: force.then_some(true),
        ignore_consumers: None,
    };
    match super::write(state, caller, command::SECRET_DELETE, &request).await {
        Ok(_) => {}
        // Deleted by another request since the look above: as for a missing secret,
        // a forced deletion succeeds (concurrent ones all do).
        Err(e) if force && e.status() == axum::http::StatusCode::NOT_FOUND => {}
        Err(e) => return Err(e.into()),
    }
    let deletion = if force {
        now.unix_millis()
    } else {
        // The end of the window the command service chose, as the read model shows
        // it once the write answers; should that wait have run out, the window asked
        // for (or the default one).
        let shown = match state.read.get_secret(id, (state.clock)()).await?.value {
            Lookup::PendingDeletion(row) => row.recovery_window_end(),
            _ => None,
        };
        shown.map_or_else(
            || {
                let days = days.unwrap_or(DEFAULT_RECOVERY_DAYS);
                now.unix_millis().saturating_add(
                    i64::try_from(days)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(86_400_000),
                )
            },
            |end| end.unix_millis(),
        )
    };
    output(&DeleteSecretOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
        deletion_date: deletion as f64 / 1000.0,
    })
}

/// AWS: a forced deletion of a missing secret succeeds, for a caller who may delete
/// secrets of the project, and for a name or ARN of it. Not for what no secret could
/// be named (refused, saying why), nor for a live secret's keyledger id, which AWS's
/// API does not take for a named secret: confirming a deletion that did not happen
/// would mislead a caller mixing the two APIs.
async fn forced_of_missing(
    state: &AppState,
    caller: &AwsCaller,
    given: String,
    now: Timestamp,
) -> Result<Response, AwsError> {
    let name = match domain::secret::arn::SecretInput::parse(&given)? {
        domain::secret::arn::SecretInput::Name(name) => name,
        domain::secret::arn::SecretInput::Arn { rest, .. } => rest,
    };
    if aws_name(name).is_err() {
        return Err(AwsError::invalid(
            "SecretId is no name AWS's API accepts, so no secret it could delete has it: a \
             name (or an ARN's) is 1 to 255 ASCII letters, digits and the characters \
             /_+=.@-",
        ));
    }
    let who = &caller.caller.principal;
    let by_id = match SecretId::parse(&given) {
        Ok(id) => match state.read.get_secret(id, now).await?.value {
            Lookup::Found(row) => Some(row),
            Lookup::PendingDeletion(row) if !row.recovery_window_ended(now) => Some(*row),
            _ => None,
        },
        Err(_) => None,
    };
    if let Some(row) = by_id
        && row.project == who.project
        && row.name.as_deref().is_some_and(|n| !n.is_empty())
        && access::may_read(state, &caller.caller, &row)
    {
        return Err(AwsError::invalid(format!(
            "SecretId {given} is the keyledger id of a secret that has a name: AWS's API \
             names it by its name or ARN ({}); nothing was deleted",
            arn(caller, &row)
        )));
    }
    authorize(
        who,
        Action::DeleteSecret,
        Target::Project {
            project: &who.project,
            secret: Some(SecretId::for_name(&who.project, &given, 0).into()),
        },
        access::env(state, &caller.caller),
    )
    .map_err(crate::error::ApiError::from)?;
    output(&DeleteSecretOutput {
        arn: given.clone(),
        name: given,
        deletion_date: now.unix_millis() as f64 / 1000.0,
    })
}

/// Whether `given` is an ARN of another account than the caller's.
fn other_account(caller: &AwsCaller, given: &str) -> bool {
    matches!(
        domain::secret::arn::SecretInput::parse(given),
        Ok(domain::secret::arn::SecretInput::Arn { account, .. })
            if account != domain::secret::arn::account_of(&caller.caller.principal.project)
    )
}

/// The largest page of `ListSecrets`, and its default.
const MAX_RESULTS: i64 = 100;

/// One filter value, parsed: negated when it starts with `!`; for `all`, its words in
/// lowercase (split once per request, not per row).
struct Value<'a> {
    negated: bool,
    text: &'a str,
    words: Vec<String>,
}

/// One filter, parsed: its key and values.
struct Parsed<'a> {
    key: &'a str,
    values: Vec<Value<'a>>,
}

/// AWS's bounds: 10 filters, 10 values each, 512 characters a value; and keyledger's
/// own on the words of `all` filters, which every row is matched against.
const MAX_FILTERS: usize = 10;
const MAX_VALUES: usize = 10;
const MAX_VALUE_CHARS: usize = 512;
const MAX_ALL_WORDS: usize = 64;

fn parse_filters(filters: &[Filter]) -> Result<Vec<Parsed<'_>>, AwsError> {
    const KEYS: [&str; 7] = [
        "description",
        "name",
        "tag-key",
        "tag-value",
        "primary-region",
        "owning-service",
        "all",
    ];
    if filters.len() > MAX_FILTERS {
        return Err(AwsError::invalid(format!(
            "Filters holds {} filters; give at most {MAX_FILTERS}",
            filters.len()
        )));
    }
    let mut words = 0;
    filters
        .iter()
        .map(|f| {
            let key = f.key.as_deref().unwrap_or_default();
            if !KEYS.contains(&key) {
                return Err(AwsError::invalid(format!(
                    "filter key {key:?} is not valid; use one of {}",
                    KEYS.join(", ")
                )));
            }
            let values = f.values.as_deref().unwrap_or_default();
            if values.is_empty() || values.len() > MAX_VALUES {
                return Err(AwsError::invalid(format!(
                    "filter {key} needs 1 to {MAX_VALUES} values (it has {})",
                    values.len()
                )));
            }
            let values = values
                .iter()
                .map(|v| {
                    if v.chars().count() > MAX_VALUE_CHARS {
                        return Err(AwsError::invalid(format!(
                            "a value of filter {key} is longer than {MAX_VALUE_CHARS} characters"
                        )));
                    }
                    let (negated, text) = match v.strip_prefix('!') {
                        Some(rest) => (true, rest),
                        None => (false, v.as_str()),
                    };
                    let split: Vec<String> = if key == "all" {
                        text.split_whitespace().map(str::to_lowercase).collect()
                    } else {
                        Vec::new()
                    };
                    words += split.len();
                    if words > MAX_ALL_WORDS {
                        return Err(AwsError::invalid(format!(
                            "the all filters hold more than {MAX_ALL_WORDS} words; give fewer"
                        )));
                    }
                    Ok(Value {
                        negated,
                        text,
                        words: split,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Parsed { key, values })
        })
        .collect()
}

/// Whether `row` passes one filter: any of its values matches (a negated value
/// matches what does not match it). Prefix matches, case-sensitive except for
/// `description` and `all`, as AWS documents them.
fn passes(row: &SecretRow, filter: &Parsed<'_>) -> bool {
    let name = name_of(row);
    let service = row.owning_service.as_ref().map(ToString::to_string);
    let mut attributes: Option<Vec<String>> = None;
    filter.values.iter().any(|value| {
        let text = value.text;
        let hit = match filter.key {
            "name" => name.starts_with(text),
            "tag-key" => row.tags.keys().any(|k| k.starts_with(text)),
            "tag-value" => row.tags.values().any(|v| v.starts_with(text)),
            "owning-service" => service.as_deref().is_some_and(|s| s.starts_with(text)),
            "description" => row
                .description
                .as_deref()
                .is_some_and(|d| d.to_lowercase().starts_with(&text.to_lowercase())),
            // keyledger keeps no primary regions: every secret is in every region.
            "primary-region" => false,
            _ => {
                let attributes = attributes.get_or_insert_with(|| {
                    std::iter::once(name.as_str())
                        .chain(row.tags.keys().map(String::as_str))
                        .chain(row.tags.values().map(String::as_str))
                        .chain(service.as_deref())
                        .chain(row.description.as_deref())
                        .map(str::to_lowercase)
                        .collect()
                });
                value
                    .words
                    .iter()
                    .all(|w| attributes.iter().any(|a| a.starts_with(w.as_str())))
            }
        };
        hit != value.negated
    })
}

/// A listing of the caller's secrets as `ListSecrets` and `BatchGetSecretValue` ask
/// for it.
pub struct Listing<'a> {
    /// Filters, each of which a secret must pass.
    pub filters: &'a [Filter],
    /// `SortBy`.
    pub sort_by: Option<&'a str>,
    /// `SortOrder`.
    pub sort_order: Option<&'a str>,
    /// `IncludePlannedDeletion`.
    pub include_pending_deletion: bool,
    /// Page size.
    pub limit: u32,
    /// `NextToken`.
    pub next_token: Option<&'a str>,
}

/// One page of a listing, and the token of the next.
pub async fn list_rows(
    state: &AppState,
    caller: &AwsCaller,
    listing: Listing<'_>,
) -> Result<(Vec<SecretRow>, Option<String>), AwsError> {
    let parsed = parse_filters(listing.filters)?;
    let key = match listing.sort_by.unwrap_or("created-date") {
        "created-date" => SortKey::Created,
        "last-changed-date" => SortKey::Updated,
        "name" => SortKey::Name,
        other => {
            return Err(AwsError::invalid(format!(
                "SortBy {other:?} is not supported; sort by created-date, last-changed-date or \
                 name (keyledger does not track last-accessed-date)"
            )));
        }
    };
    let desc = match listing.sort_order.unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        other => {
            return Err(AwsError::invalid(format!(
                "SortOrder {other:?} is not asc or desc"
            )));
        }
    };
    let values: Vec<(&str, Vec<(bool, &str)>)> = parsed
        .iter()
        .map(|f| {
            (
                f.key,
                f.values.iter().map(|v| (v.negated, v.text)).collect(),
            )
        })
        .collect();
    // MaxResults may change from page to page, as AWS allows.
    let fingerprint = paging::fingerprint(&(
        values,
        listing.sort_by,
        listing.sort_order,
        listing.include_pending_deletion,
    ));
    let after = paging::after(listing.next_token, fingerprint, key)?;
    let who = &caller.caller.principal;
    authorize(
        who,
        Action::ListSecrets,
        Target::Project {
            project: &who.project,
            secret: None,
        },
        access::env(state, &caller.caller),
    )
    .map_err(crate::error::ApiError::from)?;
    let scope = ListScope::Project {
        project: &who.project,
        user: &who.user,
        admin: who.is_admin(),
    };
    let filter = ListFilter {
        sort: vec![(key, desc)],
        limit: listing.limit,
        after,
        include_pending_deletion: listing.include_pending_deletion,
        ..Default::default()
    };
    let _listing = state.costly.listings.start(&caller.caller).await?;
    let page = state
        .read
        .list_secrets(scope, &filter, (state.clock)(), |row| {
            access::may_read(state, &caller.caller, row) && parsed.iter().all(|f| passes(row, f))
        })
        .await?
        .value;
    let more = page.total > page.secrets.len() as u64;
    let token = page
        .last
        .filter(|_| more)
        .map(|last| paging::after_token(last, fingerprint));
    Ok((page.secrets, token))
}

/// `ListSecrets`: the secrets of the caller's project it may read, filtered, sorted
/// and paged.
pub async fn list(
    state: &AppState,
    caller: &AwsCaller,
    input: ListSecretsInput,
) -> Result<Response, AwsError> {
    let filters = input.filters.unwrap_or_default();
    let listing = Listing {
        filters: &filters,
        sort_by: input.sort_by.as_deref(),
        sort_order: input.sort_order.as_deref(),
        include_pending_deletion: input.include_planned_deletion.unwrap_or(false),
        limit: paging::max_results(input.max_results, MAX_RESULTS)?,
        next_token: input.next_token.as_deref(),
    };
    let (rows, next_token) = list_rows(state, caller, listing).await?;
    let mut secret_list = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut entry = describe_row(caller, row);
        // As AWS lists them: each secret's labelled versions (one read-model lookup
        // each, at most MAX_RESULTS a page).
        entry.secret_versions_to_stages = labelled_versions(state, row.id).await?;
        secret_list.push(entry);
    }
    output(&ListSecretsOutput {
        secret_list,
        next_token,
    })
}
