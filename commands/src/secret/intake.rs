//! Turns wire requests into domain commands: every string is parsed into its domain
//! type here, and a payload is sealed here, so nothing past this point sees an
//! unchecked value or a plaintext.

use domain::Rejection;

use domain::ids::{CommandId, KeyId, ProjectId, SecretId, ServiceName, VersionId};
use domain::principal::Principal;
use domain::secret::acl::AclChange;
use domain::secret::consumer::SecretConsumer;
use domain::secret::fields::{
    Algorithm, Attributes, BitLength, Description, Expiration, MetadataKey, MetadataValue, Mode,
    SecretName, SecretType, TagKey, parse_metadata, parse_tags,
};
use domain::secret::payload::{PayloadLimit, Plaintext, SealedPayload};
use domain::secret::rotation::{HandlerName, RotationRules};
use domain::secret::version::{ClientToken, Stage};
use domain::secret::{CreateSecret, DeleteMode, Presence, PutValue, Rotate, SecretCommand};
use domain::timestamp::Timestamp;
use uuid::Uuid;

use crate::shared::request::{acl_change, command_id};
use infra::envelope::{CryptoError, Envelope, Fingerprints, WrappedKey};
use infra::protocol::{
    CreateSecretRequest, DeleteAclRequest, DeleteMetadatumRequest, DeleteSecretRequest,
    MoveStageRequest, PutPayloadRequest, PutValueRequest, RemoveTagsRequest,
    ReplaceMetadataRequest, RotateRequest, SecretConsumerRequest, SecretRequest, SetAclRequest,
    SetDescriptionRequest, SetMetadatumRequest, SetTagsRequest,
};

/// A command ready for the decider.
#[derive(Debug)]
pub(crate) struct Intake {
    /// The idempotency key.
    pub command_id: CommandId,
    /// The project that owns the secret.
    pub project: ProjectId,
    /// The secret addressed.
    pub secret: SecretId,
    /// The command.
    pub command: SecretCommand,
    /// The data key to store before the commit, when the command carries a payload.
    pub data_key: Option<DataKey>,
    /// A create's first version, as its request names it (its client request token's,
    /// else its command id's), with a payload or without: what tells a retried create
    /// from another request under the same command id. `None` for other commands.
    pub first_version: Option<VersionId>,
}

/// A fresh data key, wrapped, waiting to be stored in the key store.
#[derive(Debug)]
pub(crate) struct DataKey {
    /// Its id, named by the sealed payload.
    pub id: KeyId,
    /// The key, wrapped by the KEK.
    pub wrapped: WrappedKey,
    /// The payload's fingerprints under every KEK version held, to tell a retry from
    /// another write by comparing with a stored key, whichever KEK stored it.
    pub fingerprints: Fingerprints,
}

impl DataKey {
    /// Seals `plaintext` as version `version_id` of `secret` under a fresh data key.
    pub fn seal(
        envelope: &Envelope,
        plaintext: &Plaintext,
        project: &ProjectId,
        secret: SecretId,
        version_id: VersionId,
    ) -> Result<(SealedPayload, Self), Rejection> {
        let id = KeyId::from_uuid(Uuid::new_v4());
        let (sealed, wrapped) = envelope
            .seal(plaintext, project, secret, version_id, id)
            .map_err(|e| match e {
                // The KEK's provider, or this node's lack of the current KEK: no fault
                // of the request's, and one that passes.
                CryptoError::Kek(_) => Rejection::unavailable(e.to_string()),
                _ => Rejection::internal(e.to_string()),
            })?;
        let fingerprints = envelope.fingerprints(plaintext, project, secret, version_id);
        Ok((
            sealed,
            Self {
                id,
                wrapped,
                fingerprints,
            },
        ))
    }

    /// Whether `stored` holds the same payload this key seals (a retried write); an
    /// error when that can no longer be told (the KEK that fingerprinted it is retired).
    pub fn same_payload_as(
        &self,
        command_id: &CommandId,
        stored: Option<&WrappedKey>,
    ) -> Result<bool, Rejection> {
        let Some(stored) = stored else {
            return Ok(false);
        };
        self.fingerprints.compare(stored).ok_or_else(|| {
            Rejection::conflict(format!(
                "command_id (Idempotency-Key) {command_id} was first sent before a KEK rotation \
                 whose old KEK has been retired since: whether this retry carries the same \
                 payload can no longer be told; send a new key"
            ))
        })
    }
}

/// What intake needs besides the request.
pub(crate) struct IntakeContext<'a> {
    /// The caller.
    pub principal: &'a Principal,
    /// The current time.
    pub now: Timestamp,
    /// The payload size limit.
    pub limit: PayloadLimit,
    /// Seals payloads.
    pub envelope: &'a Envelope,
}

fn opt<T>(
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, Rejection>,
) -> Result<Option<T>, Rejection> {
    value.map(parse).transpose()
}

impl IntakeContext<'_> {
    /// The project a command addresses: the one named, or the token's.
    fn project(&self, given: Option<&str>) -> Result<ProjectId, Rejection> {
        given.map_or_else(|| Ok(self.principal.project.clone()), ProjectId::parse)
    }

    /// Seals a payload under a fresh data key, as version `version_id` of `secret`.
    fn seal(
        &self,
        plaintext: &Plaintext,
        project: &ProjectId,
        secret: SecretId,
        version_id: VersionId,
    ) -> Result<(SealedPayload, DataKey), Rejection> {
        DataKey::seal(self.envelope, plaintext, project, secret, version_id)
    }

    /// `secret.create`.
    /// The project and name a create keeps unique (`unique_name`), which the caller
    /// turns into the id of the name's current incarnation; `None` for other creates.
    pub fn unique_name(
        &self,
        req: &CreateSecretRequest,
    ) -> Result<Option<(ProjectId, SecretName)>, Rejection> {
        if req.unique_name != Some(true) {
            return Ok(None);
        }
        let project = self.project(req.project.as_deref())?;
        let name = opt(req.name.as_deref(), SecretName::parse)?
            .filter(|n| !n.as_str().is_empty())
            .ok_or_else(|| {
                Rejection::invalid(
                    "unique_name needs a name: name the secret, or leave unique_name out",
                )
            })?;
        Ok(Some((project, name)))
    }

    /// `secret.create`: the secret gets the id `unique` (a name's incarnation) when
    /// given, else one derived from the command id.
    pub fn create(
        &self,
        req: &CreateSecretRequest,
        unique: Option<SecretId>,
    ) -> Result<Intake, Rejection> {
        let command_id = command_id(req.command_id.as_deref())?;
        let project = self.project(req.project.as_deref())?;
        let secret = unique.unwrap_or_else(|| SecretId::for_create(&project, &command_id));
        let attributes = Attributes {
            name: opt(req.name.as_deref(), SecretName::parse)?,
            secret_type: opt(req.secret_type.as_deref(), SecretType::parse)?.unwrap_or_default(),
            algorithm: opt(req.algorithm.as_deref(), Algorithm::parse)?,
            bit_length: req.bit_length.map(BitLength::parse).transpose()?,
            mode: opt(req.mode.as_deref(), Mode::parse)?,
            expiration: opt(req.expiration.as_deref(), |s| {
                Expiration::parse(s, self.now)
            })?,
            metadata: parse_metadata(
                req.metadata
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )?,
            description: opt(req.description.as_deref(), Description::parse)?.flatten(),
        };
        let plaintext = Plaintext::parse_fields(
            req.payload.as_ref().map(|p| p.expose()),
            req.payload_content_type.as_deref(),
            req.payload_content_encoding.as_deref(),
            self.limit,
        )?;
        let first_version = match &req.client_request_token {
            Some(t) => ClientToken::parse(t)?.version_id(secret),
            None => ClientToken::version_for_command(secret, &command_id),
        };
        let (payload, data_key) = match plaintext {
            Some(p) => {
                let (sealed, key) = self.seal(&p, &project, secret, first_version)?;
                (Some(sealed), Some(key))
            }
            None => (None, None),
        };
        Ok(Intake {
            command_id,
            project,
            secret,
            command: SecretCommand::Create(Box::new(CreateSecret {
                attributes,
                payload,
                owning_service: opt(req.owning_service.as_deref(), ServiceName::parse)?,
                tags: parse_tags(
                    req.tags
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                )?,
            })),
            data_key,
            first_version: Some(first_version),
        })
    }

    /// `secret.payload.put`.
    pub(crate) fn put_payload(&self, req: &PutPayloadRequest) -> Result<Intake, Rejection> {
        let command_id = command_id(req.command_id.as_deref())?;
        let project = self.project(req.project.as_deref())?;
        let secret = SecretId::parse(&req.id)?;
        let plaintext = Plaintext::parse_fields(
            Some(req.payload.expose()),
            req.payload_content_type.as_deref(),
            req.payload_content_encoding.as_deref(),
            self.limit,
        )?
        .ok_or_else(|| Rejection::invalid("payload is required"))?;
        let (sealed, data_key) = self.seal(
            &plaintext,
            &project,
            secret,
            ClientToken::version_for_command(secret, &command_id),
        )?;
        Ok(Intake {
            command_id,
            project,
            secret,
            command: SecretCommand::PutPayload(sealed),
            data_key: Some(data_key),
            first_version: None,
        })
    }

    /// `secret.metadata.set`.
    pub(crate) fn set_metadatum(&self, req: &SetMetadatumRequest) -> Result<Intake, Rejection> {
        Ok(Intake {
            command_id: command_id(req.command_id.as_deref())?,
            project: self.project(req.project.as_deref())?,
            secret: SecretId::parse(&req.id)?,
            command: SecretCommand::SetMetadatum {
                key: MetadataKey::parse(&req.key)?,
                value: MetadataValue::parse(&req.value)?,
                presence: match req.must_exist {
                    None => Presence::Any,
                    Some(true) => Presence::Present,
                    Some(false) => Presence::Absent,
                },
            },
            data_key: None,
            first_version: None,
        })
    }

    /// A command on an existing secret that carries no payload.
    fn on_secret(
        &self,
        command_id_given: Option<&str>,
        project: Option<&str>,
        id: &str,
        command: SecretCommand,
    ) -> Result<Intake, Rejection> {
        Ok(Intake {
            command_id: command_id(command_id_given)?,
            project: self.project(project)?,
            secret: SecretId::parse(id)?,
            command,
            data_key: None,
            first_version: None,
        })
    }

    /// `secret.value.put`.
    pub fn put_value(&self, req: &PutValueRequest) -> Result<Intake, Rejection> {
        let command_id = command_id(req.command_id.as_deref())?;
        let project = self.project(req.project.as_deref())?;
        let secret = SecretId::parse(&req.id)?;
        let version = match &req.client_request_token {
            Some(t) => ClientToken::parse(t)?.version_id(secret),
            None => ClientToken::version_for_command(secret, &command_id),
        };
        let stages = req
            .stages
            .as_ref()
            .map(|s| s.iter().map(|s| Stage::parse(s)).collect::<Result<_, _>>())
            .transpose()?;
        let plaintext = Plaintext::parse_fields(
            Some(req.payload.expose()),
            req.payload_content_type.as_deref(),
            req.payload_content_encoding.as_deref(),
            self.limit,
        )?
        .ok_or_else(|| Rejection::invalid("payload is required"))?;
        let (payload, data_key) = self.seal(&plaintext, &project, secret, version)?;
        Ok(Intake {
            command_id,
            project,
            secret,
            command: SecretCommand::PutValue(Box::new(PutValue { payload, stages })),
            data_key: Some(data_key),
            first_version: None,
        })
    }

    /// `secret.stage.move`.
    pub fn move_stage(&self, req: &MoveStageRequest) -> Result<Intake, Rejection> {
        let version = |v: &Option<String>| v.as_deref().map(VersionId::parse).transpose();
        let command = SecretCommand::MoveStage {
            stage: Stage::parse(&req.stage)?,
            to: version(&req.move_to)?,
            from: version(&req.remove_from)?,
        };
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            command,
        )
    }

    /// `secret.metadata.delete`.
    pub(crate) fn delete_metadatum(
        &self,
        req: &DeleteMetadatumRequest,
    ) -> Result<Intake, Rejection> {
        let command = SecretCommand::DeleteMetadatum(MetadataKey::parse(&req.key)?);
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            command,
        )
    }

    /// `secret.metadata.replace`.
    pub(crate) fn replace_metadata(
        &self,
        req: &ReplaceMetadataRequest,
    ) -> Result<Intake, Rejection> {
        let metadata = parse_metadata(req.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let command = SecretCommand::ReplaceMetadata(metadata);
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            command,
        )
    }

    /// `secret.tags.set`.
    pub fn set_tags(&self, req: &SetTagsRequest) -> Result<Intake, Rejection> {
        let tags = parse_tags(req.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::SetTags(tags),
        )
    }

    /// `secret.tags.remove`.
    pub(crate) fn remove_tags(&self, req: &RemoveTagsRequest) -> Result<Intake, Rejection> {
        let keys = req
            .keys
            .iter()
            .map(|k| TagKey::to_remove(k))
            .collect::<Result<_, _>>()?;
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::RemoveTags(keys),
        )
    }

    /// `secret.delete`: after a recovery window, or at once with `force`.
    pub fn delete(&self, req: &DeleteSecretRequest) -> Result<Intake, Rejection> {
        let window = match (req.recovery_window_days, req.recovery_window.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(Rejection::invalid(
                    "give recovery_window_days or recovery_window, not both",
                ));
            }
            (Some(days), None) => Some(std::time::Duration::from_secs(
                days.checked_mul(86_400).ok_or_else(|| {
                    Rejection::invalid(format!(
                        "recovery_window_days {days} is out of range; a recovery window is a \
                         few days or weeks (the command service's --recovery-window-min and \
                         --recovery-window-max bound it: 7 to 30 days unless configured)"
                    ))
                })?,
            )),
            (None, Some(text)) => Some(humantime::parse_duration(text).map_err(|e| {
                Rejection::invalid(format!(
                    "recovery_window {text:?} is not a duration ({e}); write e.g. \"7d\" or \"30 days\""
                ))
            })?),
            (None, None) => None,
        };
        let mode = match (req.force.unwrap_or(false), window) {
            (true, Some(_)) => {
                return Err(Rejection::invalid(
                    "force deletes at once, without a recovery window; give one or the other",
                ));
            }
            (true, None) => DeleteMode::Now,
            (false, window) => DeleteMode::After(window),
        };
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::Delete {
                mode,
                ignore_consumers: req.ignore_consumers.unwrap_or(false),
            },
        )
    }

    /// `secret.consumer.register` and `secret.consumer.remove`.
    pub fn consumer(
        &self,
        req: &SecretConsumerRequest,
        register: bool,
    ) -> Result<Intake, Rejection> {
        let consumer = SecretConsumer::parse(&req.service, &req.resource_type, &req.resource_id)?;
        let command = if register {
            SecretCommand::RegisterConsumer(consumer)
        } else {
            SecretCommand::RemoveConsumer(consumer)
        };
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            command,
        )
    }

    /// `secret.restore`.
    pub fn restore(&self, req: &SecretRequest) -> Result<Intake, Rejection> {
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::Restore,
        )
    }

    /// `secret.rotate`.
    pub fn rotate(&self, req: &RotateRequest) -> Result<Intake, Rejection> {
        let command_id = command_id(req.command_id.as_deref())?;
        let secret = SecretId::parse(&req.id)?;
        let version = match &req.client_request_token {
            Some(t) => ClientToken::parse(t)?.version_id(secret),
            None => ClientToken::version_for_command(secret, &command_id),
        };
        let rules = match (
            &req.automatically_after_days,
            &req.schedule_expression,
            &req.duration,
        ) {
            (None, None, None) => None,
            (days, expression, duration) => Some(RotationRules::parse(
                *days,
                expression.as_deref(),
                duration.as_deref(),
            )?),
        };
        let command = SecretCommand::Rotate(Box::new(Rotate {
            handler: opt(req.handler.as_deref(), HandlerName::parse)?,
            rules,
            immediately: req.rotate_immediately.unwrap_or(true),
            version,
        }));
        Ok(Intake {
            command_id,
            project: self.project(req.project.as_deref())?,
            secret,
            command,
            data_key: None,
            first_version: None,
        })
    }

    /// `secret.description.set`.
    pub fn set_description(&self, req: &SetDescriptionRequest) -> Result<Intake, Rejection> {
        let description = opt(req.description.as_deref(), Description::parse)?.flatten();
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::SetDescription(description),
        )
    }

    /// `secret.rotation.cancel`.
    pub fn cancel_rotation(&self, req: &SecretRequest) -> Result<Intake, Rejection> {
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::CancelRotation,
        )
    }

    /// `secret.expire`.
    pub fn expire(&self, req: &SecretRequest) -> Result<Intake, Rejection> {
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::Expire,
        )
    }

    /// `secret.acl.set`.
    pub fn set_acl(&self, req: &SetAclRequest) -> Result<Intake, Rejection> {
        let change = acl_change(req)?;
        Ok(Intake {
            command_id: command_id(req.command_id.as_deref())?,
            project: self.project(req.project.as_deref())?,
            secret: SecretId::parse(&req.id)?,
            command: SecretCommand::SetAcl(change),
            data_key: None,
            first_version: None,
        })
    }

    /// `secret.acl.delete`.
    pub(crate) fn delete_acl(&self, req: &DeleteAclRequest) -> Result<Intake, Rejection> {
        self.on_secret(
            req.command_id.as_deref(),
            req.project.as_deref(),
            &req.id,
            SecretCommand::SetAcl(AclChange::Reset),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ErrorCode;
    use domain::ids::{Role, UserId};
    use domain::secret::acl::{HourWindow, MAX_ACL_USERS};

    fn with_context<T>(f: impl FnOnce(&IntakeContext<'_>) -> T) -> T {
        let envelope = Envelope::new(&[7; 32]);
        let principal = Principal {
            user: UserId::parse("alice").unwrap(),
            project: ProjectId::parse("p1").unwrap(),
            roles: vec![Role::parse("creator").unwrap()],
            service: None,
        };
        let ctx = IntakeContext {
            principal: &principal,
            now: Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap(),
            limit: PayloadLimit::default(),
            envelope: &envelope,
        };
        f(&ctx)
    }

    fn acl_request(mode: Option<&str>, read: serde_json::Value) -> SetAclRequest {
        serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000001", "mode": mode, "read": read,
        }))
        .unwrap()
    }

    fn refused(mode: Option<&str>, read: serde_json::Value) -> String {
        let err = with_context(|c| c.set_acl(&acl_request(mode, read))).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        err.message
    }

    #[test]
    fn acl_requests_become_replace_or_merge_in_the_named_project() {
        let intake = with_context(|c| {
            c.set_acl(&acl_request(
                Some("merge"),
                serde_json::json!({"users": ["bob"], "conditions": {"utc_hours": [22, 6]}}),
            ))
        })
        .unwrap();
        assert_eq!(intake.project.as_str(), "p1");
        let SecretCommand::SetAcl(AclChange::Merge(patch)) = intake.command else {
            panic!("a merge: {:?}", intake.command)
        };
        assert_eq!(patch.project_access, None);
        assert_eq!(patch.users, Some([UserId::parse("bob").unwrap()].into()));
        assert_eq!(
            patch.conditions.and_then(|c| c.utc_hours),
            Some(HourWindow::parse(22, 6).unwrap())
        );
    }

    #[test]
    fn bad_acl_requests_say_what_to_fix() {
        assert_eq!(
            refused(Some("append"), serde_json::json!({})),
            "mode \"append\" is not valid: use replace (Barbican PUT) or merge (PATCH)"
        );
        assert!(
            refused(None, serde_json::json!({"conditions": {"weekdays": []}}))
                .contains("leave it out to allow every day")
        );
        assert!(
            refused(
                None,
                serde_json::json!({"conditions": {"source_cidrs": []}})
            )
            .contains("leave it out to allow every network")
        );
        assert!(
            refused(
                None,
                serde_json::json!({"conditions": {"weekdays": ["funday"]}})
            )
            .contains("weekday \"funday\" is not valid")
        );
        assert!(
            refused(
                None,
                serde_json::json!({"conditions": {"utc_hours": [9, 25]}})
            )
            .contains("utc_hours end 25 is not an hour")
        );
        let many: Vec<String> = (0..=MAX_ACL_USERS).map(|i| format!("u{i}")).collect();
        assert!(
            refused(None, serde_json::json!({ "users": many })).contains("at most 256 are allowed")
        );
    }

    fn delete(body: serde_json::Value) -> Result<SecretCommand, Rejection> {
        let mut body = body;
        body["id"] = "00000000-0000-0000-0000-000000000001".into();
        let req: DeleteSecretRequest = serde_json::from_value(body).unwrap();
        with_context(|c| c.delete(&req)).map(|i| i.command)
    }

    #[test]
    fn deletions_take_a_window_in_days_or_as_a_duration_or_are_forced() {
        use std::time::Duration;
        let day = Duration::from_secs(86_400);
        assert_eq!(
            delete(serde_json::json!({})).unwrap(),
            SecretCommand::Delete {
                mode: DeleteMode::After(None),
                ignore_consumers: false,
            }
        );
        assert_eq!(
            delete(serde_json::json!({"recovery_window_days": 7})).unwrap(),
            SecretCommand::Delete {
                mode: DeleteMode::After(Some(7 * day)),
                ignore_consumers: false,
            }
        );
        assert_eq!(
            delete(serde_json::json!({"recovery_window": "2d"})).unwrap(),
            SecretCommand::Delete {
                mode: DeleteMode::After(Some(2 * day)),
                ignore_consumers: false,
            }
        );
        assert_eq!(
            delete(serde_json::json!({"force": true})).unwrap(),
            SecretCommand::Delete {
                mode: DeleteMode::Now,
                ignore_consumers: false,
            }
        );
        for (body, says) in [
            (
                serde_json::json!({"force": true, "recovery_window_days": 7}),
                "one or the other",
            ),
            (
                serde_json::json!({"recovery_window_days": 7, "recovery_window": "7d"}),
                "not both",
            ),
            (
                serde_json::json!({"recovery_window": "soon"}),
                "is not a duration",
            ),
            (
                serde_json::json!({"recovery_window_days": i64::MAX}),
                "recovery_window_days 9223372036854775807 is out of range",
            ),
        ] {
            let err = delete(body).unwrap_err();
            assert!(err.message.contains(says), "{}", err.message);
        }
    }

    #[test]
    fn a_client_request_token_names_the_version_and_a_retry_seals_the_same_fingerprint() {
        let req = |token: &str, payload: &str| -> PutValueRequest {
            serde_json::from_value(serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000001",
                "payload": payload,
                "payload_content_type": "text/plain",
                "client_request_token": token,
            }))
            .unwrap()
        };
        let token = "t".repeat(40);
        let put = |payload: &str| {
            let intake = with_context(|c| c.put_value(&req(&token, payload))).unwrap();
            let SecretCommand::PutValue(p) = intake.command else {
                panic!("a put")
            };
            (
                p.payload.version_id,
                intake.data_key.unwrap().wrapped.fingerprint,
            )
        };
        let (v1, f1) = put("same");
        let (v2, f2) = put("same");
        let (v3, f3) = put("different");
        assert_eq!((v1, &f1), (v2, &f2));
        assert_eq!(v1, v3);
        assert_ne!(f1, f3);
        let err = with_context(|c| c.put_value(&req("short", "x"))).unwrap_err();
        assert!(err.message.contains("32 to 64"), "{}", err.message);
    }
}
