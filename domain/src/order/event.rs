//! Events of the Order aggregate and their versioned JSON form.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::commit::{CommitError, EventCodec, decode_versioned, encode_versioned};
use crate::ids::{ContainerId, SecretId, UserId};
use crate::order::OrderType;
use crate::secret::fields::Attributes;
use crate::secret::payload::SealedPayload;

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    /// What to generate.
    pub order_type: OrderType,
    /// Barbican's `meta`.
    pub meta: Map<String, Value>,
    /// Who placed it.
    pub creator: UserId,
}

/// One generated secret, sealed for the secret it will become.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    /// Its role: `secret`, `private_key`, `public_key`, `certificate`, `intermediates`.
    pub role: String,
    /// The secret it becomes.
    pub secret_id: SecretId,
    /// The secret's attributes.
    pub attributes: Attributes,
    /// The payload, sealed for that secret; its data key is in the key store.
    pub payload: SealedPayload,
}

/// The worker generated the material; from here on it is fixed, whatever happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialRecorded {
    /// The secrets to store.
    pub items: Vec<Material>,
}

/// The order is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCompleted {
    /// The secret (key orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<SecretId>,
    /// The container (asymmetric and certificate orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
}

/// The order failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFailed {
    /// An HTTP status, as Barbican reports it (400: the request; 503: the CA).
    pub error_status_code: u16,
    /// What went wrong and what to do.
    pub error_reason: String,
}

impl From<crate::Rejection> for OrderFailed {
    /// A refusal of what the order asks for, as the order's failure.
    fn from(refused: crate::Rejection) -> Self {
        Self {
            error_status_code: refused.code.http_status(),
            error_reason: refused.message,
        }
    }
}

/// Everything that can happen to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrderEvent {
    /// See [`OrderPlaced`].
    #[serde(rename = "order.placed")]
    Placed(OrderPlaced),
    /// See [`MaterialRecorded`].
    #[serde(rename = "order.material_recorded")]
    MaterialRecorded(MaterialRecorded),
    /// See [`OrderCompleted`].
    #[serde(rename = "order.completed")]
    Completed(OrderCompleted),
    /// See [`OrderFailed`].
    #[serde(rename = "order.failed")]
    Failed(OrderFailed),
    /// The order was deleted (the secrets it made stay).
    #[serde(rename = "order.deleted")]
    Deleted,
}

impl OrderEvent {
    /// The `type` member.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Placed(_) => "order.placed",
            Self::MaterialRecorded(_) => "order.material_recorded",
            Self::Completed(_) => "order.completed",
            Self::Failed(_) => "order.failed",
            Self::Deleted => "order.deleted",
        }
    }

    /// The version this build writes for `type_name`; `None` for unknown types.
    pub fn current_version(type_name: &str) -> Option<u64> {
        match type_name {
            "order.placed"
            | "order.material_recorded"
            | "order.completed"
            | "order.failed"
            | "order.deleted" => Some(1),
            _ => None,
        }
    }
}

impl EventCodec for OrderEvent {
    fn encode(&self) -> Value {
        encode_versioned(self, Self::current_version(self.type_name()))
    }

    fn decode(value: Value) -> Result<Self, CommitError> {
        // Every type is still at version 1: nothing to upcast.
        decode_versioned(value, Self::current_version, |t, v, _| {
            Err(CommitError::Event(format!("{t} v{v} has no upcaster")))
        })
    }
}
