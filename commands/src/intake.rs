//! Turns wire requests into domain commands: every string is parsed into its domain
//! type here, and a payload is sealed here, so nothing past this point sees an
//! unchecked value or a plaintext.

use domain::Rejection;
use domain::ids::{CommandId, KeyId, SecretId, VersionId};
use domain::principal::Principal;
use domain::secret::fields::{
    Algorithm, Attributes, BitLength, Expiration, MetadataKey, MetadataValue, Mode, SecretName,
    SecretType, parse_metadata,
};
use domain::secret::payload::{PayloadLimit, Plaintext, SealedPayload};
use domain::secret::{CreateSecret, SecretCommand};
use domain::timestamp::Timestamp;
use uuid::Uuid;

use crate::envelope::{Envelope, WrappedKey};
use crate::protocol::{
    CreateSecretRequest, DeleteSecretRequest, PutPayloadRequest, SetMetadatumRequest,
};

/// A command ready for the decider.
#[derive(Debug)]
pub struct Intake {
    /// The idempotency key.
    pub command_id: CommandId,
    /// The secret addressed.
    pub secret: SecretId,
    /// The command.
    pub command: SecretCommand,
    /// The data key to store before the commit, when the command carries a payload.
    pub data_key: Option<DataKey>,
}

/// A fresh data key, wrapped, waiting to be stored in the key store.
#[derive(Debug)]
pub struct DataKey {
    /// Its id, named by the sealed payload.
    pub id: KeyId,
    /// The key, wrapped by the KEK.
    pub wrapped: WrappedKey,
}

/// What intake needs besides the request.
pub struct IntakeContext<'a> {
    /// The caller.
    pub principal: &'a Principal,
    /// The current time.
    pub now: Timestamp,
    /// The payload size limit.
    pub limit: PayloadLimit,
    /// Seals payloads.
    pub envelope: &'a Envelope,
}

fn command_id(given: Option<&str>) -> Result<CommandId, Rejection> {
    given.map_or_else(
        || Ok(CommandId::from_uuid(Uuid::new_v4())),
        CommandId::parse,
    )
}

fn opt<T>(
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, Rejection>,
) -> Result<Option<T>, Rejection> {
    value.map(parse).transpose()
}

impl IntakeContext<'_> {
    /// Seals a payload under a fresh data key, as a new version of `secret`.
    fn seal(
        &self,
        plaintext: &Plaintext,
        secret: SecretId,
    ) -> Result<(SealedPayload, DataKey), Rejection> {
        let key_id = KeyId::from_uuid(Uuid::new_v4());
        let version_id = VersionId::from_uuid(Uuid::new_v4());
        let (sealed, wrapped) = self
            .envelope
            .seal(
                plaintext,
                &self.principal.project,
                secret,
                version_id,
                key_id,
            )
            .map_err(|e| Rejection::internal(e.to_string()))?;
        Ok((
            sealed,
            DataKey {
                id: key_id,
                wrapped,
            },
        ))
    }

    /// `secret.create`.
    pub fn create(&self, req: &CreateSecretRequest) -> Result<Intake, Rejection> {
        let command_id = command_id(req.command_id.as_deref())?;
        let secret = SecretId::for_create(&self.principal.project, &command_id);
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
        };
        let plaintext = Plaintext::parse_fields(
            req.payload.as_ref().map(|p| p.expose()),
            req.payload_content_type.as_deref(),
            req.payload_content_encoding.as_deref(),
            self.limit,
        )?;
        let (payload, data_key) = match plaintext {
            Some(p) => {
                let (sealed, key) = self.seal(&p, secret)?;
                (Some(sealed), Some(key))
            }
            None => (None, None),
        };
        Ok(Intake {
            command_id,
            secret,
            command: SecretCommand::Create(Box::new(CreateSecret {
                attributes,
                payload,
            })),
            data_key,
        })
    }

    /// `secret.payload.put`.
    pub fn put_payload(&self, req: &PutPayloadRequest) -> Result<Intake, Rejection> {
        let command_id = command_id(req.command_id.as_deref())?;
        let secret = SecretId::parse(&req.id)?;
        let plaintext = Plaintext::parse_fields(
            Some(req.payload.expose()),
            req.payload_content_type.as_deref(),
            req.payload_content_encoding.as_deref(),
            self.limit,
        )?
        .ok_or_else(|| Rejection::invalid("payload is required"))?;
        let (sealed, data_key) = self.seal(&plaintext, secret)?;
        Ok(Intake {
            command_id,
            secret,
            command: SecretCommand::PutPayload(sealed),
            data_key: Some(data_key),
        })
    }

    /// `secret.metadata.set`.
    pub fn set_metadatum(&self, req: &SetMetadatumRequest) -> Result<Intake, Rejection> {
        Ok(Intake {
            command_id: command_id(req.command_id.as_deref())?,
            secret: SecretId::parse(&req.id)?,
            command: SecretCommand::SetMetadatum {
                key: MetadataKey::parse(&req.key)?,
                value: MetadataValue::parse(&req.value)?,
            },
            data_key: None,
        })
    }

    /// `secret.delete`.
    pub fn delete(&self, req: &DeleteSecretRequest) -> Result<Intake, Rejection> {
        Ok(Intake {
            command_id: command_id(req.command_id.as_deref())?,
            secret: SecretId::parse(&req.id)?,
            command: SecretCommand::Delete,
            data_key: None,
        })
    }
}
