//! The AccessKey aggregate: an AWS-style key pair (access key id, secret access key)
//! that stands for one principal of one project, so SigV4-signed requests can act as
//! that principal. The secret access key is sealed like a payload: the log and the
//! read model hold only its ciphertext, and revoking a key destroys its data key.

mod decide;
mod event;

use std::fmt;

use serde::Serialize;
use uuid::Uuid;

pub use decide::{
    AccessKey, AccessKeyCommand, AccessKeyState, Context, CreateAccessKey, authorize, decide,
    evolve,
};
pub use event::{AccessKeyCreated, AccessKeyEvent, AccessKeyRevoked};

#[cfg(test)]
mod tests;

use crate::Rejection;
use crate::ids::{AggregateId, ProjectId, SecretId, VersionId};

/// An access key id, e.g. `AKLGQ3V7M2XK4PJ8ZT6N`: 16 to 64 ASCII letters and digits
/// (IAM's ids are 16 to 128; keyledger's aggregate ids stop at 64).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AccessKeyId(String);

/// The prefix of the ids keyledger generates, as AWS's start with `AKIA`.
pub const GENERATED_PREFIX: &str = "AKLG";

/// Bytes of randomness in a generated id: 80 bits, 16 base32 characters.
pub const GENERATED_RANDOM_BYTES: usize = 10;

impl AccessKeyId {
    /// Shortest accepted id.
    pub const MIN_LEN: usize = 16;
    /// Longest accepted id.
    pub const MAX_LEN: usize = AggregateId::MAX_LEN;

    /// Parses an id.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len())
            || !s.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            // The value is not repeated: a secret access key given in its place would be.
            return Err(Rejection::invalid(format!(
                "the access key id given ({} characters) is not valid: use {} to {} ASCII \
                 letters and digits (an AWS_ACCESS_KEY_ID, not its secret)",
                s.chars().count(),
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id keyledger generates from `random` bytes: [`GENERATED_PREFIX`] and their
    /// base32 (RFC 4648 alphabet, upper case, as AWS's ids look).
    pub fn generated(random: [u8; GENERATED_RANDOM_BYTES]) -> Self {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut id = String::from(GENERATED_PREFIX);
        let bits = random
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        for i in (0..16).rev() {
            id.push(char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]));
        }
        Self(id)
    }

    /// The aggregate id of its commits' subject.
    pub fn aggregate_id(&self) -> AggregateId {
        // Letters and digits only, at most AggregateId::MAX_LEN: always a valid id.
        AggregateId::parse(&self.0).unwrap_or_else(|_| unreachable!("checked by parse"))
    }
}
parsed_string!(AccessKeyId);

/// The namespace of the ids an access key's secret is sealed under.
const SEALING_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_796c_6564_6765_7200_0000_0000_00a1);

/// The secret id and version id an access key's secret is sealed under: bound into
/// the ciphertext's AAD and naming its data key in the key store. Derived from the
/// project and the access key id, in a namespace of their own, so the ciphertext
/// opens only as this key's secret and never as any secret's payload.
pub fn sealing_ids(project: &ProjectId, id: &AccessKeyId) -> (SecretId, VersionId) {
    let name = format!("access-key/{project}/{id}");
    let uuid = Uuid::new_v5(&SEALING_NAMESPACE, name.as_bytes());
    (SecretId::from_uuid(uuid), VersionId::from_uuid(uuid))
}

/// Shortest accepted secret access key (IAM's bound).
pub const MIN_SECRET_LEN: usize = 16;
/// Longest accepted secret access key.
pub const MAX_SECRET_LEN: usize = 128;

/// Checks a secret access key given for import: 16 to 128 printable ASCII characters
/// without spaces. The message never repeats the value.
pub fn check_secret(secret: &[u8]) -> Result<(), Rejection> {
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len())
        || !secret.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(Rejection::invalid(format!(
            "the secret access key is not valid: use {MIN_SECRET_LEN} to {MAX_SECRET_LEN} \
             printable ASCII characters without spaces (given: {} bytes)",
            secret.len()
        )));
    }
    Ok(())
}

impl fmt::Display for AccessKeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Absent => "absent",
            Self::Active(_) => "active",
            Self::Revoked { .. } => "revoked",
        })
    }
}
