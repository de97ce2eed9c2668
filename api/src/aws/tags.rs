//! TagResource and UntagResource: a secret's tags, the same tags Barbican's API shows
//! under `/v1/secrets/{id}/tags`.

use axum::response::Response;
use domain::policy::Action;
use domain::subject::command;
use infra::protocol::{RemoveTagsRequest, SetTagsRequest};

use super::error::AwsError;
use super::resolve::resolve;
use super::secrets::{live_row, secret_id};
use super::shapes::{TagResourceInput, UntagResourceInput};
use super::{AwsCaller, output};
use crate::state::AppState;

/// The empty output of both operations.
#[derive(serde::Serialize)]
struct Empty {}

/// `TagResource`: sets the tags given (others stay).
pub async fn tag(
    state: &AppState,
    caller: &AwsCaller,
    input: TagResourceInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let tags = input
        .tags
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AwsError::invalid("Tags is required: give at least one {Key, Value}"))?;
    let row = live_row(state, caller, id, Action::UpdateSecret).await?;
    let request = SetTagsRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
        tags: super::secrets::tag_map(tags)?,
    };
    super::write(state, caller, command::SECRET_TAGS_SET, &request).await?;
    output(&Empty {})
}

/// `UntagResource`: removes the tags with the keys given (missing ones are no error).
pub async fn untag(
    state: &AppState,
    caller: &AwsCaller,
    input: UntagResourceInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let keys = input
        .tag_keys
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AwsError::invalid("TagKeys is required: give at least one key"))?;
    let row = live_row(state, caller, id, Action::UpdateSecret).await?;
    let request = RemoveTagsRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
        keys,
    };
    super::write(state, caller, command::SECRET_TAGS_REMOVE, &request).await?;
    output(&Empty {})
}
