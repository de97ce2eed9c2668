//! Tokens already verified. A client sends the same bearer token on every request, and
//! checking its signature and claims again each time was the largest single cost of a
//! payload read (12% of `keyledger up`'s CPU under 64 readers, `perf`). Keystone's
//! middleware and Vault's token store cache the same way.
//!
//! What makes a hit as good as a verification:
//! - it is keyed by the SHA-256 of the token's exact bytes, so another token (one
//!   changed byte) never hits, and the cache holds no bearer token;
//! - only a token that verified is cached, and errors always come from a full check;
//! - an entry serves only before the token's `exp`, checked against the caller's clock
//!   at every hit;
//! - a [`super::Verifier`]'s keys and rules never change while it lives (nothing
//!   reloads them), and every method that changes what it accepts starts an empty
//!   cache, so an entry is always a token this verifier would accept again (`nbf` is
//!   checked against the system clock, which only moves forward past it).

use std::time::Duration;

use domain::principal::Principal;
use domain::timestamp::Timestamp;
use moka::sync::Cache;
use sha2::{Digest as _, Sha256};

/// Most tokens held: about 300 bytes each, a few MiB at most.
const CAPACITY: u64 = 10_000;

/// The longest a token stays cached whatever its expiry (a bound on idle entries).
const TIME_TO_LIVE: Duration = Duration::from_secs(300);

/// A token's cache key: its SHA-256.
pub(super) type TokenDigest = [u8; 32];

/// Verified tokens' principals and expiries (Unix seconds), by the tokens' digests.
#[derive(Clone)]
pub(super) struct TokenCache(Cache<TokenDigest, (Principal, i64)>);

impl Default for TokenCache {
    fn default() -> Self {
        Self(
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TIME_TO_LIVE)
                .build(),
        )
    }
}

impl TokenCache {
    /// The key `token` is cached under.
    pub(super) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The principal and expiry of the token with `digest`, if it verified before and
    /// has not expired at `now`.
    pub(super) fn get(&self, digest: &TokenDigest, now: Timestamp) -> Option<(Principal, i64)> {
        self.0
            .get(digest)
            .filter(|(_, exp)| now.unix_millis() / 1000 < *exp)
    }

    /// Remembers a token that verified.
    pub(super) fn insert(&self, digest: TokenDigest, verified: &(Principal, i64)) {
        self.0.insert(digest, verified.clone());
    }
}
