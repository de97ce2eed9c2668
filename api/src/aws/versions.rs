//! ListSecretVersionIds and UpdateSecretVersionStage: a secret's versions and where
//! its staging labels are, read from and written to the same versions and stages as
//! Barbican's `/v1/secrets/{id}/versions` and `/stages`.

use axum::response::Response;
use domain::ids::SecretId;
use domain::policy::Action;
use domain::subject::command;
use infra::protocol::MoveStageRequest;
use projections::read::{Lookup, VersionRow, VersionSelector};

use super::error::{AwsError, Code};
use super::resolve::resolve;
use super::secrets::{arn, live_row, name_of, secret_id};
use super::shapes::{
    ListSecretVersionIdsInput, ListSecretVersionIdsOutput, NamedOutput,
    UpdateSecretVersionStageInput, VersionEntry, aws_labels, epoch,
};
use super::values::{stage, version_id};
use super::{AwsCaller, output, paging};
use crate::state::AppState;

/// Every version of secret `id` the read model holds, oldest first.
async fn all_versions(state: &AppState, id: SecretId) -> Result<Vec<VersionRow>, AwsError> {
    let page = crate::paging::MAX_LIMIT;
    let mut versions = Vec::new();
    loop {
        let offset = u32::try_from(versions.len()).unwrap_or(u32::MAX);
        let lookup = state
            .read
            .list_versions(id, (state.clock)(), (page, offset))
            .await?;
        let Lookup::Found((_, found)) = lookup.value else {
            return Ok(versions);
        };
        let shown = found.versions.len();
        versions.extend(found.versions);
        if shown == 0 || versions.len() as u64 >= found.total {
            return Ok(versions);
        }
    }
}

/// `ListSecretVersionIds`: the versions with a label, or all of them with
/// `IncludeDeprecated`, paged.
pub async fn list(
    state: &AppState,
    caller: &AwsCaller,
    input: ListSecretVersionIdsInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let row = live_row(state, caller, id, Action::ReadSecret).await?;
    let deprecated = input.include_deprecated.unwrap_or(false);
    let limit = paging::max_results(input.max_results, 100)?;
    let fingerprint = paging::fingerprint(&(id.to_string(), deprecated, limit));
    let offset = paging::offset(input.next_token.as_deref(), fingerprint)?;
    let versions: Vec<VersionRow> = all_versions(state, id)
        .await?
        .into_iter()
        .filter(|v| deprecated || !v.stages.is_empty())
        .collect();
    let total = versions.len();
    let page: Vec<VersionEntry> = versions
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|v| VersionEntry {
            version_stages: aws_labels(&v.stages),
            created_date: epoch(&v.created),
            version_id: v.version_id,
        })
        .collect();
    let next = offset as usize + page.len();
    output(&ListSecretVersionIdsOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
        versions: page,
        next_token: (next < total).then(|| paging::token(next as u32, fingerprint)),
    })
}

/// `UpdateSecretVersionStage`: moves a label to a version, or takes it off one. As in
/// AWS, a label that sits on another version is only moved when the request names
/// that version in `RemoveFromVersionId`.
pub async fn update_stage(
    state: &AppState,
    caller: &AwsCaller,
    input: UpdateSecretVersionStageInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let label_name = input
        .version_stage
        .ok_or_else(|| AwsError::invalid("VersionStage is required"))?;
    let label = stage(&label_name)?;
    let to = input
        .move_to_version_id
        .as_deref()
        .map(|v| version_id(id, v))
        .transpose()?;
    let from = input
        .remove_from_version_id
        .as_deref()
        .map(|v| version_id(id, v))
        .transpose()?;
    let row = live_row(state, caller, id, Action::UpdateSecret).await?;
    let holder = state
        .read
        .find_version(id, VersionSelector::Stage(label.as_str()), (state.clock)())
        .await?;
    if let Lookup::Found((_, Some(on))) = holder.value
        && from.is_none()
        && to.is_some_and(|to| to.to_string() != on.version_id)
    {
        return Err(AwsError::invalid(format!(
            "The parameter RemoveFromVersionId can't be empty. Staging label {} is currently \
             attached to version {}, so you must explicitly reference that version in \
             RemoveFromVersionId.",
            label.aws_name(),
            on.version_id
        )));
    }
    let request = MoveStageRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
        stage: label.as_str().to_owned(),
        move_to: to.map(|v| v.to_string()),
        remove_from: from.map(|v| v.to_string()),
    };
    super::write(state, caller, command::SECRET_STAGE_MOVE, &request)
        .await
        .map_err(|e| {
            // The label is not where the request said (a conflict): AWS calls that
            // invalid. A secret marked for deletion meanwhile stays AWS's invalid
            // request.
            let conflict = e.status() == axum::http::StatusCode::CONFLICT;
            let e = AwsError::from(e);
            if conflict && e.code == Code::InvalidRequest {
                AwsError::invalid(e.message)
            } else {
                e
            }
        })?;
    output(&NamedOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
    })
}
