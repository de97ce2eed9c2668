//! `RotateSecret` and `CancelRotateSecret`, and the rotation fields of
//! `DescribeSecret`: rotation runs on NATS handlers (`keyledger.rotate.<handler>`)
//! where AWS invokes a Lambda function, and `RotationLambdaARN` names the handler.

use axum::response::Response;
use domain::policy::Action;
use domain::secret::arn::account_of;
use domain::subject::command;
use infra::protocol::{RotateRequest, SecretRequest};
use projections::read::SecretRow;
use serde::{Deserialize, Serialize};

use super::error::AwsError;
use super::resolve::resolve;
use super::secrets::{arn, live_row, name_of, secret_id, secret_row};
use super::shapes::{SecretDescription, SecretIdInput, WriteOutput};
use super::{AwsCaller, output, write};
use crate::state::AppState;

/// AWS's `RotationRules`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationRulesShape {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatically_after_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
}

/// `RotateSecret`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotateSecretInput {
    pub secret_id: Option<String>,
    pub client_request_token: Option<String>,
    #[serde(rename = "RotationLambdaARN")]
    pub rotation_lambda_arn: Option<String>,
    pub rotation_rules: Option<RotationRulesShape>,
    pub rotate_immediately: Option<bool>,
}

/// `RotateSecret`: names the handler and schedule, and (unless `RotateImmediately` is
/// false) starts a rotation now; keyledger's runner then asks the handler for each
/// step. The answer's `VersionId` is the version the rotation makes.
pub async fn rotate(
    state: &AppState,
    caller: &AwsCaller,
    input: RotateSecretInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let row = live_row(state, caller, id, Action::UpdateSecret).await?;
    if let Some(RotationRulesShape {
        automatically_after_days: None,
        schedule_expression: None,
        ..
    }) = &input.rotation_rules
    {
        return Err(AwsError::invalid(
            "RotationRules needs AutomaticallyAfterDays (1 to 1000) or a ScheduleExpression \
             such as rate(30 days); leave RotationRules out to keep the schedule",
        ));
    }
    let rules = input.rotation_rules.unwrap_or_default();
    let request = RotateRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
        handler: input.rotation_lambda_arn,
        automatically_after_days: rules.automatically_after_days,
        schedule_expression: rules.schedule_expression,
        duration: rules.duration,
        rotate_immediately: input.rotate_immediately,
        client_request_token: input.client_request_token,
    };
    let accepted = write(state, caller, command::SECRET_ROTATE, &request).await?;
    output(&WriteOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
        version_id: accepted.version_id,
        version_stages: None,
    })
}

/// `CancelRotateSecret`: rotation off, a run under way stopped. As AWS does, the
/// answer's `VersionId` is the version the stopped run left with AWSPENDING, to be
/// cleared with `UpdateSecretVersionStage` (or left for the next rotation to take).
pub async fn cancel(
    state: &AppState,
    caller: &AwsCaller,
    input: SecretIdInput,
) -> Result<Response, AwsError> {
    let id = resolve(state, caller, &secret_id(input.secret_id)?).await?;
    let row = secret_row(state, caller, id, Action::UpdateSecret).await?;
    let left = row
        .rotation
        .as_ref()
        .and_then(|r| r.run.as_ref())
        .map(|run| run.version.to_string());
    let request = SecretRequest {
        command_id: None,
        project: Some(row.project.to_string()),
        id: id.to_string(),
    };
    write(state, caller, command::SECRET_ROTATION_CANCEL, &request).await?;
    output(&WriteOutput {
        arn: arn(caller, &row),
        name: name_of(&row),
        version_id: left,
        version_stages: None,
    })
}

/// The rotation members of a description.
pub fn describe_rotation(caller: &AwsCaller, row: &SecretRow, d: &mut SecretDescription) {
    let Some(r) = &row.rotation else {
        return;
    };
    d.rotation_enabled = r.enabled;
    d.rotation_lambda_arn = Some(format!(
        "arn:aws:lambda:{}:{}:function:{}",
        caller.region,
        account_of(&row.project),
        r.handler
    ));
    d.rotation_rules = r.rules.as_ref().map(|rules| RotationRulesShape {
        automatically_after_days: rules.automatically_after_days.map(i64::from),
        duration: rules.duration.clone(),
        schedule_expression: rules.schedule_expression.clone(),
    });
    d.last_rotated_date = r.last_rotated.map(seconds);
    d.next_rotation_date = r.next.filter(|_| r.enabled).map(seconds);
}

fn seconds(t: domain::timestamp::Timestamp) -> f64 {
    t.unix_millis() as f64 / 1000.0
}
