//! The command protocol on NATS: request bodies, the `Authorization` header, replies.
//!
//! A command is a request on `keyledger.cmd.<name>` with a JSON body and the header
//! `Authorization: Bearer <token>`. Bodies follow Barbican's shapes; every command takes
//! an optional `command_id` (1–64 of `[A-Za-z0-9_-]`, e.g. a UUID): sending the same
//! command id again returns the first reply and writes nothing. The reply is
//! `{"ok":true,"seq":…,"id":…,"version":…}` or
//! `{"ok":false,"error":{"code":"…","message":"…"}}` with a stable code.

use std::collections::BTreeMap;
use std::fmt;

use domain::Rejection;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The NATS header carrying the bearer token.
pub const AUTHORIZATION: &str = "Authorization";

/// A payload on the wire: a JSON string, base64 for `application/octet-stream`.
/// `Debug` never shows it, and a value of the wrong JSON type is refused without
/// being echoed into the error.
pub struct PayloadField(pub SecretString);

impl fmt::Debug for PayloadField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayloadField([redacted])")
    }
}

impl PayloadField {
    /// The payload text.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for PayloadField {
    fn from(s: String) -> Self {
        Self(SecretString::from(s))
    }
}

impl Serialize for PayloadField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for PayloadField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Self::from(s)),
            _ => Err(serde::de::Error::custom(
                "payload must be a JSON string (base64-encoded for application/octet-stream)",
            )),
        }
    }
}

/// `keyledger.cmd.secret.create`: Barbican's `POST /v1/secrets` body.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecretRequest {
    /// Idempotency key; a fresh one is generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub command_id: Option<String>,
    /// The project to create it in; default (and the only one allowed): the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Name, up to 255 characters, none of them control, invisible formatting or line
    /// separator characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255, pattern = "keyledger:visible")]
    pub name: Option<String>,
    /// symmetric, public, private, passphrase, certificate or opaque (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(symmetric|public|private|passphrase|certificate|opaque)$")]
    pub secret_type: Option<String>,
    /// Informational algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = "keyledger:visible")]
    pub algorithm: Option<String>,
    /// 1 to 32767.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 32767)]
    pub bit_length: Option<i64>,
    /// Informational mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = "keyledger:visible")]
    pub mode: Option<String>,
    /// ISO-8601, in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expiration: Option<String>,
    /// The payload (optional: Barbican's two-step create stores it later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, min_length = 1)]
    pub payload: Option<PayloadField>,
    /// text/plain or application/octet-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[ \t]*(text/plain([ \t]*;[ \t]*charset=(utf-8|\"utf-8\"))?|application/octet-stream)[ \t]*$"
    )]
    pub payload_content_type: Option<String>,
    /// base64, for application/octet-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^base64$")]
    pub payload_content_encoding: Option<String>,
    /// User metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schemas::MetadataMap>)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The service that manages the secret; only it may change the secret. Must be the
    /// token's own service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owning_service: Option<String>,
    /// Tags (key to value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schemas::TagsMap>)]
    pub tags: Option<BTreeMap<String, String>>,
    /// `true`: no other live secret of the project (nor one scheduled for deletion)
    /// may have this name, as in AWS Secrets Manager; `name` is then required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<bool>,
    /// Names the first version, as for `secret.value.put`: a UUID is the version id
    /// itself (as in AWS), any other token names one derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 32, max_length = 64)]
    pub client_request_token: Option<String>,
    /// A description (up to 2,048 characters; AWS's `Description`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2048)]
    pub description: Option<String>,
}

/// `keyledger.cmd.secret.description.set`: set or clear a secret's description (AWS
/// `UpdateSecret` with `Description`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDescriptionRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The new description; empty or absent clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `keyledger.cmd.secret.value.put`: store a new version of a secret's value (AWS
/// `PutSecretValue`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutValueRequest {
    /// Idempotency key of the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The payload.
    pub payload: PayloadField,
    /// text/plain or application/octet-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_content_type: Option<String>,
    /// base64, for application/octet-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_content_encoding: Option<String>,
    /// 32–64 characters; the same token with the same payload returns the same
    /// version. Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
    /// Stages of the new version (`current`, `pending`); default `["current"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<String>>,
}

/// `keyledger.cmd.secret.stage.move`: move a stage between versions (AWS
/// `UpdateSecretVersionStage`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveStageRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// current, previous or pending (AWS names accepted).
    pub stage: String,
    /// The version to put the stage on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to: Option<String>,
    /// The version the stage is on now; required when it moves off a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_from: Option<String>,
}

/// `keyledger.cmd.secret.rotate`: configure a secret's rotation, start one, or both
/// (AWS `RotateSecret`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The rotation handler (the NATS service on `keyledger.rotate.<name>`), bare or
    /// as a Lambda function ARN; default: the one configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Rotate every 1 to 1000 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatically_after_days: Option<i64>,
    /// `rate(<n> hours)` or `rate(<n> days)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    /// The rotation window, `<n>h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Start a rotation now; default true (AWS's `RotateImmediately`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_immediately: Option<bool>,
    /// Names the version the rotation makes (32–64 characters); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
}

/// A command that names only a secret: `secret.restore`, `secret.expire`,
/// `secret.acl.delete`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
}

/// `keyledger.cmd.secret.metadata.delete`: remove one metadata key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMetadatumRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The key.
    pub key: String,
}

/// `keyledger.cmd.secret.metadata.replace`: replace all metadata.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceMetadataRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The new metadata.
    pub metadata: BTreeMap<String, String>,
}

/// `keyledger.cmd.secret.tags.set`: add or change tags.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTagsRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// Tags to set.
    pub tags: BTreeMap<String, String>,
}

/// `keyledger.cmd.secret.tags.remove`: remove tags.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveTagsRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// Keys to remove.
    pub keys: Vec<String>,
}

/// `keyledger.cmd.secret.payload.put`: store the payload of a secret created without
/// one (Barbican `PUT /v1/secrets/{id}`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutPayloadRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The payload.
    pub payload: PayloadField,
    /// text/plain or application/octet-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_content_type: Option<String>,
    /// base64, for application/octet-stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_content_encoding: Option<String>,
}

/// `keyledger.cmd.secret.metadata.set`: set one metadata key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMetadatumRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// `true`: the key must exist (Barbican `PUT /metadata/{key}`); `false`: it must
    /// not (`POST /metadata`); absent: either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_exist: Option<bool>,
}

/// `keyledger.cmd.secret.delete`: delete a secret after a recovery window, or at once
/// with `force` (destroying its keys).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteSecretRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The recovery window in days (AWS's `RecoveryWindowInDays`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window_days: Option<u64>,
    /// The recovery window as a duration, e.g. `"7d"` or `"90s"` (bounds are configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window: Option<String>,
    /// Delete at once and destroy the keys, without a recovery window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// Delete even though consumers are registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_consumers: Option<bool>,
}

/// `keyledger.cmd.secret.consumer.register` and `….remove`: Barbican's secret
/// consumers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConsumerRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// The service, e.g. `octavia`.
    pub service: String,
    /// The kind of resource, e.g. `listener`.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
}

/// Conditions on the grants of an ACL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionsRequest {
    /// Networks requests must come from, e.g. `["192.168.0.0/16"]` (at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub source_cidrs: Option<Vec<String>>,
    /// `[from, to]`: UTC hours during which reads are allowed, `to` not included
    /// (from 0 to 23, to 0 to 24; not the same hour, nor `[0, 24]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schemas::HourWindow>)]
    pub utc_hours: Option<(i64, i64)>,
    /// Days (UTC) on which reads are allowed: `mon` … `sun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::schemas::Weekday>>, min_items = 1)]
    pub weekdays: Option<Vec<String>>,
}

/// The ACL of one operation, in Barbican's shape (`{"users": [...],
/// "project-access": false}`), plus optional conditions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclOperationRequest {
    /// Whether project members may read as their roles allow (default true).
    #[serde(
        rename = "project-access",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub project_access: Option<bool>,
    /// Users who may read and decrypt, from any project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::schemas::UserId>>)]
    pub users: Option<Vec<String>>,
    /// Limits on the grants.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::objects::optional_object"
    )]
    pub conditions: Option<ConditionsRequest>,
}

/// `keyledger.cmd.secret.acl.set`: replace (Barbican `PUT`) or merge (`PATCH`) a
/// secret's ACL.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAclRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the secret; default: the token's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The secret's id.
    pub id: String,
    /// `replace` (default) or `merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The ACL of the `read` operation, the only one Barbican defines.
    #[serde(deserialize_with = "crate::objects::object")]
    pub read: AclOperationRequest,
}

/// `keyledger.cmd.secret.acl.delete`: reset a secret's ACL to the default.
pub type DeleteAclRequest = SecretRequest;

/// A named secret reference in a container request, as Barbican writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRefRequest {
    /// Its name in the container (`certificate`, `private_key`, …).
    pub name: String,
    /// The secret: its `secret_ref` URL or its id.
    pub secret_ref: String,
    /// The project that owns the secret; default: the container's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `keyledger.cmd.container.create`: Barbican's `POST /v1/containers` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainerRequest {
    /// Idempotency key; a fresh one is generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project to create it in; default: the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// generic, rsa or certificate.
    #[serde(rename = "type")]
    pub container_type: String,
    /// Its references.
    #[serde(default, deserialize_with = "crate::objects::objects")]
    pub secret_refs: Vec<SecretRefRequest>,
}

/// `keyledger.cmd.container.secret.add` and `….remove`: one reference of a generic
/// container.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSecretRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the container; default: the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The container's id.
    pub id: String,
    /// The reference's name.
    pub name: String,
    /// The secret: its `secret_ref` URL or its id.
    pub secret_ref: String,
    /// The project that owns the secret; default: the container's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_project: Option<String>,
}

/// `keyledger.cmd.container.consumer.register` and `….remove`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the container; default: the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The container's id.
    pub id: String,
    /// The consumer's name.
    pub name: String,
    /// Where it uses the container.
    #[serde(rename = "URL", alias = "url")]
    pub url: String,
}

/// `keyledger.cmd.container.delete`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteContainerRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the container; default: the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The container's id.
    pub id: String,
    /// Delete even though consumers are registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// `keyledger.cmd.access_key.create`: a key pair generated by the sender (the HTTP
/// API generates one for `POST /v1/access-keys`, which the CLI calls) or imported. The secret is sealed on arrival and never
/// returned.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessKeyRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project the key acts in; default: the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The access key id (16 to 64 ASCII letters and digits).
    pub access_key_id: String,
    /// The secret access key (16 to 128 printable ASCII characters).
    pub secret_access_key: PayloadField,
    /// The user the key acts as.
    pub user: String,
    /// The roles it carries.
    pub roles: Vec<String>,
    /// The service it acts as, for a workload's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `keyledger.cmd.access_key.revoke`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeAccessKeyRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project of the key; default: the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The access key id.
    pub access_key_id: String,
}

/// A project's limits, as Barbican's `project_quotas` document holds them: `-1`
/// unlimited, `0` none, `n` at most `n`; a resource not given is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaValues {
    /// Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<i64>,
    /// Orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<i64>,
    /// Containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<i64>,
    /// Consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<i64>,
    /// Certificate authorities (keyledger creates none; kept for Barbican's clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<i64>,
}

impl QuotaValues {
    /// The limits these name, each checked (a value below -1 is refused by name).
    pub fn limits(&self) -> Result<domain::quota::Limits, domain::Rejection> {
        use domain::quota::{Limit, Resource};
        [
            (Resource::Secrets, self.secrets),
            (Resource::Orders, self.orders),
            (Resource::Containers, self.containers),
            (Resource::Consumers, self.consumers),
            (Resource::Cas, self.cas),
        ]
        .into_iter()
        .filter_map(|(resource, value)| value.map(|v| Ok((resource, Limit::parse(v, resource)?))))
        .collect()
    }
}

/// `keyledger.cmd.quota.set` (the service admin only).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuotaRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project whose quotas these are.
    pub project: String,
    /// Its limits (replacing those set before).
    pub quotas: QuotaValues,
}

/// `keyledger.cmd.quota.delete` (the service admin only).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuotaRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project whose quotas are removed.
    pub project: String,
}

/// A JSON parse error's message without the values it quotes (serde_json's
/// `invalid type: string "…", expected …`, and the same for numbers and booleans):
/// for bodies that carry a secret, which a caller may put in the wrong field, or send
/// as a number. Field names and positions stay.
pub fn without_string_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at + "string".len()]);
        let quoted = &rest[at + "string \"".len()..];
        // The value ends where the message goes on: the last `", expected` (what
        // serde expected never holds one; the value may), else the last `"`.
        let end = quoted
            .rfind("\", expected")
            .or_else(|| quoted.rfind('"'))
            .map_or(quoted.len(), |e| e + 1);
        rest = &quoted[end..];
    }
    out.push_str(rest);
    for kind in ["integer `", "floating point `", "boolean `"] {
        let mut kept = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(kind) {
            kept.push_str(&rest[..at + kind.len() - 2]);
            let value = &rest[at + kind.len()..];
            rest = value.find('`').map_or("", |e| &value[e + 1..]);
        }
        kept.push_str(rest);
        out = kept;
    }
    out
}

/// An accepted command: where its commit landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedReply {
    /// Stream sequence of the commit; reads that must reflect this write ask for it.
    pub seq: u64,
    /// The aggregate's id (the new secret's id for a create).
    pub id: String,
    /// The aggregate's version after the commit.
    pub version: u64,
    /// The value version a command stored (or found stored, for a retried
    /// `client_request_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The staging labels `version_id` carries once the command is applied, as
    /// stored (`current`, `previous`, `pending` or a custom label), sorted: what AWS's
    /// PutSecretValue answers, without a read after the write. Absent when the
    /// version is not held (a rotation's, until its handler stores it; one retention
    /// destroyed), and from command services before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<String>>,
    /// Whether this answers a command applied before (a retry: the same command id, or
    /// a create the secret already reflects): nothing was written. Absent when false,
    /// and from command services before this field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

#[derive(Serialize, Deserialize)]
struct WireReply {
    ok: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    accepted: Option<AcceptedReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Rejection>,
}

/// The reply body for `result`.
pub fn encode_reply(result: &Result<AcceptedReply, Rejection>) -> Vec<u8> {
    let wire = match result {
        Ok(a) => WireReply {
            ok: true,
            accepted: Some(a.clone()),
            error: None,
        },
        Err(r) => WireReply {
            ok: false,
            accepted: None,
            error: Some(r.clone()),
        },
    };
    // A struct of strings and integers always serialises.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Why a reply body is not a reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MalformedReply {
    /// Not the reply's JSON shape.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Both or neither of `accepted` and `error`, or one that contradicts `ok`.
    #[error("reply is neither accepted nor rejected")]
    Neither,
}

/// Parses a reply body.
pub(crate) fn decode_reply(
    bytes: &[u8],
) -> Result<Result<AcceptedReply, Rejection>, MalformedReply> {
    let wire: WireReply = serde_json::from_slice(bytes)?;
    match (wire.ok, wire.accepted, wire.error) {
        (true, Some(a), _) => Ok(Ok(a)),
        (false, _, Some(e)) => Ok(Err(e)),
        _ => Err(MalformedReply::Neither),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ErrorCode;

    #[test]
    fn parse_errors_of_secret_bodies_quote_no_values() {
        let mut quoted = 0;
        for body in [
            r#"{"access_key_id": "AKLG0000000000000001", "user": "u", "roles": "s3cr\"et-VALUE", "secret_access_key": "x"}"#,
            r#"{"roles": "s3cr\", expected et-VALUE", "user": "u"}"#,
            r#"{"access_key_id": "AKLG0000000000000001", "user": "u", "roles": ["a"], "secret_access_key": "s3cr\"et-VALUE", "service": ["s3cr\"et-VALUE"]}"#,
        ] {
            let raw = serde_json::from_str::<CreateAccessKeyRequest>(body)
                .unwrap_err()
                .to_string();
            let said = without_string_values(&raw);
            assert!(!said.contains("et-VALUE"), "{said}");
            assert!(said.contains("line 1"), "{said}");
            quoted += usize::from(raw.contains("et-VALUE"));
        }
        assert!(quoted >= 2, "serde quotes the values this removes");
        assert_eq!(
            without_string_values(
                r#"invalid type: string "a", expected a sequence at line 1 column 9"#
            ),
            "invalid type: string, expected a sequence at line 1 column 9"
        );
        assert_eq!(
            without_string_values("unknown field `x`"),
            "unknown field `x`"
        );
        // A secret sent as a number or a boolean is not repeated either.
        for (body, value) in [
            (r#"{"roles": 987654321}"#, "987654321"),
            (r#"{"roles": 98765.4321}"#, "98765.4321"),
            (r#"{"roles": true}"#, "true"),
        ] {
            let raw = serde_json::from_str::<CreateAccessKeyRequest>(body)
                .unwrap_err()
                .to_string();
            assert!(raw.contains(value), "{raw}");
            let said = without_string_values(&raw);
            assert!(!said.contains(value), "{said}");
            assert!(said.contains("invalid type"), "{said}");
        }
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let ok = encode_reply(&Ok(AcceptedReply {
            seq: 7,
            id: "abc".into(),
            version: 1,
            version_id: None,
            stages: None,
            replayed: false,
        }));
        assert_eq!(
            String::from_utf8(ok.clone()).unwrap(),
            r#"{"ok":true,"seq":7,"id":"abc","version":1}"#
        );
        let err = encode_reply(&Err(Rejection::not_found("gone")));
        assert_eq!(
            String::from_utf8(err.clone()).unwrap(),
            r#"{"ok":false,"error":{"code":"not_found","message":"gone"}}"#
        );
        assert_eq!(decode_reply(&ok).unwrap().unwrap().seq, 7);
        assert_eq!(decode_reply(&ok).unwrap().unwrap().stages, None);
        assert_eq!(
            decode_reply(&err).unwrap().unwrap_err().code,
            ErrorCode::NotFound
        );
        let stored = encode_reply(&Ok(AcceptedReply {
            seq: 8,
            id: "abc".into(),
            version: 2,
            version_id: Some("v2".into()),
            stages: Some(vec!["blue".into(), "current".into()]),
            replayed: true,
        }));
        assert_eq!(
            String::from_utf8(stored.clone()).unwrap(),
            r#"{"ok":true,"seq":8,"id":"abc","version":2,"version_id":"v2","stages":["blue","current"],"replayed":true}"#
        );
        assert!(decode_reply(&stored).unwrap().unwrap().replayed);
        assert!(!decode_reply(&ok).unwrap().unwrap().replayed);
        assert_eq!(
            decode_reply(&stored).unwrap().unwrap().stages,
            Some(vec!["blue".to_owned(), "current".to_owned()])
        );
    }

    #[test]
    fn a_payload_of_the_wrong_type_is_not_echoed() {
        let err = serde_json::from_str::<CreateSecretRequest>(r#"{"payload": 123456789}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("123456789"), "{err}");
        assert!(err.contains("payload must be a JSON string"), "{err}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = serde_json::from_str::<CreateSecretRequest>(r#"{"bitlength": 256}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bitlength`"), "{err}");
    }

    #[test]
    fn debug_hides_the_payload() {
        let req = CreateSecretRequest {
            payload: Some(PayloadField::from("hunter2".to_owned())),
            ..Default::default()
        };
        assert!(!format!("{req:?}").contains("hunter2"));
    }
}

/// `keyledger.cmd.order.place`: Barbican's `POST /v1/orders` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// Idempotency key; a fresh one is generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// key, asymmetric or certificate.
    #[serde(rename = "type")]
    pub order_type: String,
    /// What to generate (see docs/lifecycle.md, Orders).
    #[serde(default)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// `keyledger.cmd.order.delete`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteOrderRequest {
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The project that owns the order; default: the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The order's id.
    pub id: String,
}
