//! A secret's stable reference, `krn:keyledger:<project>:secret:<name>-<suffix>`.
//!
//! The suffix is six characters hashed from the secret's id, so the reference
//! never changes and needs no storage. Look-ups compare a reference whole, never by
//! prefix: a name that itself ends in `-` and six characters can never make a partial
//! reference resolve to another secret (the pitfall AWS documents for partial ARNs).

use sha2::{Digest as _, Sha256};

use crate::ids::{ProjectId, SecretId};
use crate::secret::fields::SecretName;

/// The prefix of every reference.
pub const PREFIX: &str = "krn:keyledger:";

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The six-character suffix of a secret's reference.
pub fn suffix(id: SecretId) -> String {
    let digest = Sha256::digest(format!("keyledger/reference/v1\0{id}").as_bytes());
    digest
        .iter()
        .take(6)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The reference of a secret. A secret without a name uses its id as the name part.
pub fn reference(project: &ProjectId, name: Option<&SecretName>, id: SecretId) -> String {
    // An empty name (Barbican allows one) reads like no name.
    let name = name
        .filter(|n| !n.as_str().is_empty())
        .map_or_else(|| id.to_string(), |n| n.as_str().to_owned());
    format!("{PREFIX}{project}:secret:{name}-{}", suffix(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn references_are_stable_and_name_the_project() {
        let p = ProjectId::parse("p1").unwrap();
        let id = SecretId::from_uuid(Uuid::from_u128(42));
        let name = SecretName::parse("db/password").unwrap();
        let r = reference(&p, Some(&name), id);
        assert_eq!(r, reference(&p, Some(&name), id));
        assert!(r.starts_with("krn:keyledger:p1:secret:db/password-"), "{r}");
        assert_eq!(r.len(), "krn:keyledger:p1:secret:db/password-".len() + 6);
        let other = SecretId::from_uuid(Uuid::from_u128(43));
        assert_ne!(suffix(id), suffix(other));
    }
}
