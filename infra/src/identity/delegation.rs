//! Delegation tokens: how the HTTP API hands a principal it verified by other means
//! (an AWS SigV4 signature under an access key) to the command service, which
//! verifies every command's token itself.
//!
//! A delegation token is an HS256 JWT with header `kid: keyledger-api/v1`, issuer
//! `keyledger-api`, audience `keyledger`, valid for 60 seconds. Its key is derived
//! from the commit key, which every component that writes the log already holds: no
//! new file to distribute, and no new trust (whoever holds the commit key can already
//! write commits in anyone's name). The command service accepts these tokens only on
//! its delegated subjects (`keyledger.api.cmd.>`, [`super::Verifier::with_delegation`]),
//! which only keyledger's own NATS account may publish to; neither the HTTP API, nor
//! the NATS auth callout, nor the client command subjects accept them, so a client
//! that saw one could not use it.

use std::time::Duration;

use domain::commit::CommitKey;
use domain::principal::Principal;
use domain::timestamp::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

use super::dev::IssuedClaims;

/// The `kid` of delegation tokens.
pub const DELEGATION_KID: &str = "keyledger-api/v1";
/// The issuer of delegation tokens.
pub(crate) const DELEGATION_ISSUER: &str = "keyledger-api";
/// How long a delegation token is valid: one request and its retries.
pub const DELEGATION_TTL: Duration = Duration::from_secs(60);
/// Domain separation of the delegation key from commit authenticators.
const CONTEXT: &[u8] = b"keyledger/delegation-key/v1\0";

/// The HS256 key of delegation tokens, derived from the commit key.
pub(crate) fn delegation_secret(commit: &CommitKey) -> [u8; 32] {
    commit.mac_bytes(CONTEXT, b"").0
}

/// Mints delegation tokens.
#[derive(Clone)]
pub struct Delegation {
    key: EncodingKey,
}

impl std::fmt::Debug for Delegation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delegation(..)")
    }
}

impl Delegation {
    /// The minter whose tokens a command service with the same commit key accepts.
    pub fn from_commit_key(commit: &CommitKey) -> Self {
        Self {
            key: EncodingKey::from_secret(&delegation_secret(commit)),
        }
    }

    /// A token for `principal`, valid for [`DELEGATION_TTL`] from `now`.
    pub fn mint(&self, principal: &Principal, now: Timestamp) -> String {
        let iat = now.unix_millis() / 1000;
        let claims = IssuedClaims::of(
            principal,
            iat,
            iat.saturating_add(DELEGATION_TTL.as_secs().cast_signed()),
            DELEGATION_ISSUER,
        );
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(DELEGATION_KID.to_owned());
        // HS256 signing with an in-memory secret and plain claims cannot fail.
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap_or_default()
    }
}

/// The key a verifier checks delegation tokens with.
pub(crate) fn decoding_key(commit: &CommitKey) -> DecodingKey {
    DecodingKey::from_secret(&delegation_secret(commit))
}
