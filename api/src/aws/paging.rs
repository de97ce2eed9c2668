//! Paging as AWS's listings do it: `MaxResults` and an opaque `NextToken`. A token
//! holds where the next page starts (a listing of secrets: the position of the last
//! row shown, so that secrets deleted, restored or created meanwhile neither skip nor
//! repeat others; a secret's versions: an offset) and a fingerprint of the request it
//! belongs to, so a token sent with other filters is refused rather than misread.

use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use projections::read::{KeyValue, Position, SortKey};

use super::error::{AwsError, Code};

/// `MaxResults`, 1 to `max` (`max` when absent).
pub fn max_results(given: Option<i64>, max: i64) -> Result<u32, AwsError> {
    let n = given.unwrap_or(max);
    if !(1..=max).contains(&n) {
        return Err(AwsError::invalid(format!(
            "MaxResults must be between 1 and {max} (it is {n})"
        )));
    }
    Ok(u32::try_from(n).unwrap_or(1))
}

/// A fingerprint of what a listing was asked for.
pub fn fingerprint(request: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.hash(&mut h);
    h.finish()
}

/// A position token's content.
#[derive(serde::Serialize, serde::Deserialize)]
struct After {
    /// The listing's fingerprint, in hex.
    f: String,
    /// Where the last page ended.
    p: Position,
}

/// The token of the page after `position` in the listing with `fingerprint`.
pub fn after_token(position: Position, fingerprint: u64) -> String {
    let after = After {
        f: format!("{fingerprint:016x}"),
        p: position,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&after).unwrap_or_default())
}

/// The position a `NextToken` of [`after_token`] names (`None` without one), if it
/// belongs to this listing, sorted by `key`: its sort value must be of the key's type
/// (a forged one would be compared with a column of another type).
pub fn after(
    token: Option<&str>,
    fingerprint: u64,
    key: SortKey,
) -> Result<Option<Position>, AwsError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let after: After = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(not_handed_out)?;
    // PostgreSQL takes no NUL in a text, and an id is a secret's.
    let typed = match &after.p.key {
        None => true,
        Some(KeyValue::Integer(_)) => key.is_integer(),
        Some(KeyValue::Text(t)) => !key.is_integer() && !t.contains('\0'),
    };
    let id = domain::ids::SecretId::parse(&after.p.id).is_ok();
    if after.f != format!("{fingerprint:016x}") || !typed || !id {
        return Err(not_handed_out());
    }
    Ok(Some(after.p))
}

fn not_handed_out() -> AwsError {
    AwsError::new(
        Code::InvalidNextToken,
        "NextToken is not one this listing handed out; send the same request with the \
         NextToken of the previous page, or start without one",
    )
}

/// The token of the page at `offset` of the listing with `fingerprint`.
pub fn token(offset: u32, fingerprint: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{offset}:{fingerprint:016x}"))
}

/// The offset a `NextToken` names (0 without one), if it belongs to this listing.
pub fn offset(token: Option<&str>, fingerprint: u64) -> Result<u32, AwsError> {
    let Some(token) = token else {
        return Ok(0);
    };
    let bad = not_handed_out;
    let text = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (offset, print) = text.split_once(':').ok_or_else(bad)?;
    if print != format!("{fingerprint:016x}") {
        return Err(bad());
    }
    offset.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_only_for_its_own_listing() {
        let print = fingerprint(&("name", 3));
        assert_eq!(offset(Some(&token(40, print)), print).unwrap(), 40);
        assert_eq!(offset(None, print).unwrap(), 0);
        let other = fingerprint(&("name", 4));
        for bad in [
            token(40, other),
            "bm9wZQ".into(),
            "!!".into(),
            String::new(),
        ] {
            let e = offset(Some(&bad), print).unwrap_err();
            assert_eq!(e.code, Code::InvalidNextToken, "{bad}");
        }
    }

    #[test]
    fn a_position_token_reads_back_only_for_its_own_listing() {
        let print = fingerprint(&("name", 3));
        let position = Position {
            key: Some(KeyValue::Text("db/a:b".into())),
            created_ms: 1_700_000_000_000,
            id: "0b4f9c8e-4d52-4a7e-9a55-3f1b2c7d8e90".into(),
        };
        let handed_out = after_token(position.clone(), print);
        assert_eq!(
            after(Some(&handed_out), print, SortKey::Name).unwrap(),
            Some(position.clone())
        );
        assert_eq!(after(None, print, SortKey::Name).unwrap(), None);
        // A text where the listing sorts by a time, a NUL PostgreSQL cannot take, an
        // id no secret has: forged, never compared.
        let e = after(Some(&handed_out), print, SortKey::Created).unwrap_err();
        assert_eq!(e.code, Code::InvalidNextToken);
        for forged in [
            Position {
                key: Some(KeyValue::Text("a\0b".into())),
                ..position.clone()
            },
            Position {
                id: "x\0".into(),
                ..position.clone()
            },
        ] {
            let e = after(Some(&after_token(forged, print)), print, SortKey::Name).unwrap_err();
            assert_eq!(e.code, Code::InvalidNextToken);
        }
        let other = fingerprint(&("name", 4));
        for bad in [
            after_token(
                Position {
                    key: None,
                    created_ms: 0,
                    id: String::new(),
                },
                other,
            ),
            token(40, print),
            "bm9wZQ".into(),
            "!!".into(),
        ] {
            let e = after(Some(&bad), print, SortKey::Name).unwrap_err();
            assert_eq!(e.code, Code::InvalidNextToken, "{bad}");
        }
    }

    #[test]
    fn max_results_is_bounded() {
        assert_eq!(max_results(None, 100).unwrap(), 100);
        assert_eq!(max_results(Some(1), 20).unwrap(), 1);
        for bad in [0, -1, 101, i64::MAX] {
            assert!(max_results(Some(bad), 100).is_err(), "{bad}");
        }
    }
}
