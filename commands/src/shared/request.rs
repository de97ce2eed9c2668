//! Request parsing every command shares: the JSON body, the command id, the digest
//! that tells a retry from another request reusing its command id, and ACLs (secrets
//! and containers have the same).

use std::collections::BTreeSet;

use domain::Rejection;
use domain::commit::Digest;
use domain::ids::{CommandId, UserId};
use domain::secret::acl::{AclChange, AclPatch, Conditions, HourWindow, MAX_ACL_USERS, Weekday};
use infra::protocol::{AclOperationRequest, ConditionsRequest, SetAclRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// Parses a command's JSON body, naming the command in the error.
pub(crate) fn parse_body<T: DeserializeOwned>(name: &str, body: &[u8]) -> Result<T, Rejection> {
    if !infra::objects::is_object(body) {
        return Err(Rejection::invalid(format!(
            "the body is not a valid {name} request: send a JSON object ({{...}}). See \
             docs/protocol.md, section Command protocol"
        )));
    }
    domain::json_text::from_untrusted(body).map_err(|e| {
        Rejection::invalid(format!(
            "the body is not a valid {name} request: {e}. See docs/protocol.md, section \
             Command protocol"
        ))
    })
}

/// The command id given, or a fresh one ([`CommandId::generated`], so that a create's
/// secret id starts with its time).
pub(crate) fn command_id(given: Option<&str>) -> Result<CommandId, Rejection> {
    given.map_or_else(
        || Ok(CommandId::generated(Uuid::now_v7())),
        CommandId::parse,
    )
}

/// What a request asked for, as a digest kept with its commit: a command id sent again
/// with another request is refused, not answered as though the first request were
/// retried (which would report a change that was never made).
///
/// It is the SHA-256 of the body's canonical JSON without `command_id` (the key itself)
/// and without `payload`: a payload is sealed under a fresh data key, and a retry's is
/// compared by the fingerprints kept next to that key instead (`SecretHandler`), so no
/// digest of a payload reaches the log. What is left is what the commit's events say
/// in the clear, so the digest needs no key. Canonical JSON makes it independent of
/// member order and whitespace; a member given in one request and left to its default
/// in the other counts as another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestDigest(Digest);

impl RequestDigest {
    /// The digest of `body`, a JSON object (`None` if it is not one: such a body never
    /// reaches a commit).
    pub(crate) fn of(body: &[u8]) -> Option<Self> {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let canonical = domain::canonical::object_to_vec_without(&map, &["command_id", "payload"]);
        Some(Self(Digest(Sha256::digest(canonical).into())))
    }

    /// Lower-case hex, as stored in a commit's message header.
    pub fn to_hex(self) -> String {
        self.0.to_hex()
    }

    /// The digest written by [`RequestDigest::to_hex`] (`None` for anything else).
    pub fn from_hex(hex: &str) -> Option<Self> {
        Digest::from_hex(hex).map(Self)
    }
}

pub(crate) fn acl_patch(read: &AclOperationRequest) -> Result<AclPatch, Rejection> {
    let users = read
        .users
        .as_ref()
        .map(|users| {
            if users.len() > MAX_ACL_USERS {
                return Err(Rejection::invalid(format!(
                    "read.users lists {} users; at most {MAX_ACL_USERS} are allowed",
                    users.len()
                )));
            }
            users
                .iter()
                .map(|u| UserId::parse(u))
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .transpose()?;
    Ok(AclPatch {
        project_access: read.project_access,
        users,
        conditions: read.conditions.as_ref().map(conditions).transpose()?,
    })
}

/// The ACL change a `*.acl.set` request asks for.
pub(crate) fn acl_change(req: &SetAclRequest) -> Result<AclChange, Rejection> {
    let patch = acl_patch(&req.read)?;
    match req.mode.as_deref() {
        None | Some("replace") => Ok(AclChange::Replace(patch)),
        Some("merge") => Ok(AclChange::Merge(patch)),
        Some(other) => Err(Rejection::invalid(format!(
            "mode {other:?} is not valid: use replace (Barbican PUT) or merge (PATCH)"
        ))),
    }
}

fn conditions(c: &ConditionsRequest) -> Result<Conditions, Rejection> {
    let weekdays = c
        .weekdays
        .as_ref()
        .map(|days| {
            let days = days
                .iter()
                .map(|d| Weekday::parse(d))
                .collect::<Result<BTreeSet<_>, _>>()?;
            if days.is_empty() {
                return Err(Rejection::invalid(
                    "weekdays is empty, which would allow no day at all; leave it out to allow \
                     every day",
                ));
            }
            Ok(days)
        })
        .transpose()?;
    if c.source_cidrs.as_ref().is_some_and(Vec::is_empty) {
        return Err(Rejection::invalid(
            "source_cidrs is empty, which would allow no network at all; leave it out to \
             allow every network",
        ));
    }
    Ok(Conditions {
        source_cidrs: Conditions::parse_cidrs(c.source_cidrs.iter().flatten().map(String::as_str))?,
        utc_hours: c
            .utc_hours
            .map(|(from, to)| HourWindow::parse(from, to))
            .transpose()?,
        weekdays,
    })
}

#[cfg(test)]
mod tests {
    use super::RequestDigest;

    fn digest(body: &str) -> RequestDigest {
        RequestDigest::of(body.as_bytes()).expect("a JSON object")
    }

    #[test]
    fn a_request_digest_ignores_order_spacing_the_command_id_and_the_payload() {
        let first = digest(r#"{"command_id":"c1","id":"s","key":"k","value":"v","payload":"one"}"#);
        assert_eq!(
            digest(
                r#"{ "payload": "two", "value": "v", "key": "k", "id": "s", "command_id": "c2" }"#
            ),
            first
        );
        assert_eq!(digest(r#"{"id":"s","key":"k","value":"v"}"#), first);
    }

    #[test]
    fn a_request_digest_tells_other_values_and_members_apart() {
        let first = digest(r#"{"id":"s","key":"k","value":"v"}"#);
        for other in [
            r#"{"id":"s","key":"k","value":"w"}"#,
            r#"{"id":"s","key":"k","value":"v","presence":"new"}"#,
            r#"{"id":"s","key":"k","value":["v"]}"#,
            r#"{"id":"s","key":"k"}"#,
        ] {
            assert_ne!(digest(other), first, "{other}");
        }
    }

    #[test]
    fn a_request_digest_round_trips_through_its_header_text() {
        let d = digest(r#"{"id":"s"}"#);
        assert_eq!(RequestDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(RequestDigest::from_hex("not hex"), None);
        assert_eq!(RequestDigest::of(b"[1,2]"), None);
        assert_eq!(RequestDigest::of(b"{"), None);
    }
}
