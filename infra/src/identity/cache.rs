//! Tokens already verified. A client sends the same bearer token on every request, and
//! checking its signature and claims again each time was the largest single cost of a
//! payload read (12% of `keyledger up`'s CPU under 64 readers, `perf`). Keystone's
//! middleware and Vault's token store cache the same way.
//!
//! What makes a hit as good as a verification:
//! - it is keyed by the SHA-256 of the token's exact bytes, so another token (one
//!   changed byte) never hits, and the cache holds no bearer token;
//! - only a token that verified is cached, and errors always come from a full check;
//! - a hit checks the time claims again as the full check does: `exp` against the
//!   caller's clock, `nbf` against the system clock with the same leeway (a clock
//!   stepped back makes a cached token not valid yet again);
//! - a [`super::Verifier`]'s keys and rules never change while it lives (nothing
//!   reloads them), and every method that changes what it accepts starts an empty
//!   cache, so an entry is always a token this verifier would accept again.

use std::time::Duration;

use domain::principal::Principal;
use domain::timestamp::Timestamp;
use moka::sync::Cache;
use sha2::{Digest as _, Sha256};

/// The most the cache holds, in bytes of principals (each entry weighs its names plus
/// [`ENTRY_WEIGHT`]): about 10,000 tokens of ordinary size. Entries are weighed, not
/// counted, since an identity provider's token may name many roles.
const CAPACITY_BYTES: u64 = 4 * 1024 * 1024;

/// What an entry costs beyond its names: digest, expiry, the cache's own bookkeeping.
const ENTRY_WEIGHT: usize = 256;

/// The longest a token stays cached whatever its expiry (a bound on idle entries).
const TIME_TO_LIVE: Duration = Duration::from_secs(300);

/// The seconds by which `nbf` may be ahead of the system clock: jsonwebtoken's leeway,
/// which [`super::Check`] keeps.
pub(super) const LEEWAY_SECS: u64 = 60;

/// A token's cache key: its SHA-256.
pub(super) type TokenDigest = [u8; 32];

/// What a verified token stands for, and the time claims a hit checks again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verified {
    /// Its principal.
    pub principal: Principal,
    /// Its `exp` (Unix seconds).
    pub exp: i64,
    /// Its `nbf` (Unix seconds), if it has one.
    pub nbf: Option<u64>,
}

impl Verified {
    /// Whether the time claims still hold: `exp` after `now`, `nbf` (if any) not
    /// beyond the system clock plus the leeway, as jsonwebtoken checks it.
    fn valid_at(&self, now: Timestamp) -> bool {
        now.unix_millis() / 1000 < self.exp
            && self.nbf.is_none_or(|nbf| {
                nbf <= jsonwebtoken::get_current_timestamp().saturating_add(LEEWAY_SECS)
            })
    }

    fn weight(&self) -> u32 {
        let p = &self.principal;
        let names = p.user.as_str().len()
            + p.project.as_str().len()
            + p.roles.iter().map(|r| r.as_str().len()).sum::<usize>()
            + p.service.as_ref().map_or(0, |s| s.as_str().len());
        u32::try_from(names.saturating_add(ENTRY_WEIGHT)).unwrap_or(u32::MAX)
    }
}

/// Verified tokens by their digests.
#[derive(Clone)]
pub(super) struct TokenCache(Cache<TokenDigest, Verified>);

impl Default for TokenCache {
    fn default() -> Self {
        Self(
            Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|_, v: &Verified| v.weight())
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

    /// The token with `digest`, if it verified before and its time claims hold at
    /// `now`.
    pub(super) fn get(&self, digest: &TokenDigest, now: Timestamp) -> Option<Verified> {
        self.0.get(digest).filter(|v| v.valid_at(now))
    }

    /// Remembers a token that verified.
    pub(super) fn insert(&self, digest: TokenDigest, verified: &Verified) {
        self.0.insert(digest, verified.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ids::{ProjectId, UserId};

    fn verified(nbf: Option<u64>) -> Verified {
        Verified {
            principal: Principal {
                user: UserId::parse("alice").unwrap(),
                project: ProjectId::parse("p1").unwrap(),
                roles: vec![],
                service: None,
            },
            exp: 2_000_000_000,
            nbf,
        }
    }

    #[test]
    fn a_hit_checks_nbf_against_the_system_clock_as_verification_does() {
        let now = Timestamp::from_unix_millis(1_000_000_000_000).unwrap();
        let system = jsonwebtoken::get_current_timestamp();
        assert!(verified(None).valid_at(now));
        assert!(verified(Some(system)).valid_at(now));
        assert!(verified(Some(system + LEEWAY_SECS - 1)).valid_at(now));
        // As after the system clock stepped back: not valid yet.
        assert!(!verified(Some(system + LEEWAY_SECS + 120)).valid_at(now));
        // At or past exp, by the caller's clock.
        let at_exp = Timestamp::from_unix_millis(2_000_000_000_000).unwrap();
        assert!(!verified(None).valid_at(at_exp));
    }
}
