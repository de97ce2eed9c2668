//! The inputs and outputs of the operations keyledger serves, with botocore's member
//! names (`service-2.json` of `secretsmanager/2017-10-17`). Inputs ignore members
//! they do not know; outputs leave out what is absent, as AWS does.

use std::collections::BTreeMap;

use domain::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// A tag as AWS writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Its key.
    pub key: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// Tags as AWS lists them, from keyledger's map.
pub fn tags_of(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// An RFC 3339 time of the read model as AWS's epoch seconds.
pub fn epoch(rfc3339: &str) -> Option<f64> {
    Timestamp::parse_iso8601("time", rfc3339)
        .ok()
        .map(|t| t.unix_millis() as f64 / 1000.0)
}

/// Staging labels as AWS names them (`AWSCURRENT`, …), from the read model's names.
pub fn aws_labels(stages: &[String]) -> Vec<String> {
    stages
        .iter()
        .map(|s| {
            domain::secret::version::Stage::parse(s)
                .map_or_else(|_| s.clone(), |s| s.aws_name().to_owned())
        })
        .collect()
}

/// `CreateSecret`'s input.
// No Debug: it holds a secret value.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSecretInput {
    pub name: Option<String>,
    pub client_request_token: Option<String>,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub secret_binary: Option<String>,
    pub secret_string: Option<String>,
    pub tags: Option<Vec<Tag>>,
    pub add_replica_regions: Option<serde_json::Value>,
    #[serde(rename = "Type")]
    pub secret_kind: Option<String>,
}

/// `CreateSecret`'s and `PutSecretValue`'s output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WriteOutput {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_stages: Option<Vec<String>>,
}

/// An input naming one secret (`DescribeSecret`, `RestoreSecret`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretIdInput {
    pub secret_id: Option<String>,
}

/// `DescribeSecret`'s output, and one entry of `ListSecrets`' (which calls the map
/// of versions `SecretVersionsToStages`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretDescription {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_changed_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_ids_to_stages: Option<BTreeMap<String, Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_versions_to_stages: Option<BTreeMap<String, Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owning_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub rotation_enabled: bool,
    #[serde(rename = "RotationLambdaARN", skip_serializing_if = "Option::is_none")]
    pub rotation_lambda_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_rules: Option<super::rotation::RotationRulesShape>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<f64>,
}

/// A `ListSecrets` filter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub key: Option<String>,
    pub values: Option<Vec<String>>,
}

/// `ListSecrets`' input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretsInput {
    pub include_planned_deletion: Option<bool>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub filters: Option<Vec<Filter>>,
    pub sort_order: Option<String>,
    pub sort_by: Option<String>,
}

/// `ListSecrets`' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretsOutput {
    pub secret_list: Vec<SecretDescription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteSecret`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSecretInput {
    pub secret_id: Option<String>,
    pub recovery_window_in_days: Option<i64>,
    pub force_delete_without_recovery: Option<bool>,
}

/// `DeleteSecret`'s output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSecretOutput {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub deletion_date: f64,
}

/// `RestoreSecret`'s output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NamedOutput {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
}

/// `GetSecretValue`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSecretValueInput {
    pub secret_id: Option<String>,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
}

/// `GetSecretValue`'s output.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSecretValueOutput {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub version_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_binary: Option<String>,
    pub version_stages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<f64>,
}

/// `PutSecretValue`'s input.
// No Debug: it holds a secret value.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutSecretValueInput {
    pub secret_id: Option<String>,
    pub client_request_token: Option<String>,
    pub secret_binary: Option<String>,
    pub secret_string: Option<String>,
    pub version_stages: Option<Vec<String>>,
    pub rotation_token: Option<String>,
}

/// `UpdateSecret`'s input.
// No Debug: it holds a secret value.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateSecretInput {
    pub secret_id: Option<String>,
    pub client_request_token: Option<String>,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub secret_binary: Option<String>,
    pub secret_string: Option<String>,
    #[serde(rename = "Type")]
    pub secret_kind: Option<String>,
}

/// `BatchGetSecretValue`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchGetSecretValueInput {
    pub secret_id_list: Option<Vec<String>>,
    pub filters: Option<Vec<Filter>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// One failure of `BatchGetSecretValue`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchError {
    pub secret_id: String,
    pub error_code: &'static str,
    pub message: String,
}

/// `BatchGetSecretValue`'s output.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchGetSecretValueOutput {
    pub secret_values: Vec<GetSecretValueOutput>,
    pub errors: Vec<BatchError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `ListSecretVersionIds`' input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretVersionIdsInput {
    pub secret_id: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub include_deprecated: Option<bool>,
}

/// One version in `ListSecretVersionIds`' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionEntry {
    pub version_id: String,
    pub version_stages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<f64>,
}

/// `ListSecretVersionIds`' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretVersionIdsOutput {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub versions: Vec<VersionEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `UpdateSecretVersionStage`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateSecretVersionStageInput {
    pub secret_id: Option<String>,
    pub version_stage: Option<String>,
    pub remove_from_version_id: Option<String>,
    pub move_to_version_id: Option<String>,
}

/// `TagResource`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceInput {
    pub secret_id: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

/// `UntagResource`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceInput {
    pub secret_id: Option<String>,
    pub tag_keys: Option<Vec<String>>,
}

/// `GetRandomPassword`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRandomPasswordInput {
    pub password_length: Option<i64>,
    pub exclude_characters: Option<String>,
    pub exclude_numbers: Option<bool>,
    pub exclude_punctuation: Option<bool>,
    pub exclude_uppercase: Option<bool>,
    pub exclude_lowercase: Option<bool>,
    pub include_space: Option<bool>,
    pub require_each_included_type: Option<bool>,
}

/// `GetRandomPassword`'s output.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRandomPasswordOutput {
    pub random_password: String,
}
