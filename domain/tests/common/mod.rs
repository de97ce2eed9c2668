//! Builders the property tests share.

use domain::ids::{KeyId, VersionId};
use domain::secret::payload::{ContentType, SealedPayload};
use uuid::Uuid;

/// A sealed payload whose ids are derived from `n`, so distinct `n` give distinct keys.
pub fn sealed(n: u32) -> SealedPayload {
    SealedPayload {
        version_id: VersionId::from_uuid(Uuid::from_u128(u128::from(n))),
        key_id: KeyId::from_uuid(Uuid::from_u128(u128::from(n) << 64)),
        content_type: ContentType::OctetStream,
        nonce: vec![0; 12],
        ciphertext: vec![n as u8; 17],
    }
}
