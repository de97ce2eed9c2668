//! Request parsing every command shares: the JSON body, the command id, and ACLs
//! (secrets and containers have the same).

use std::collections::BTreeSet;

use domain::Rejection;
use domain::ids::{CommandId, UserId};
use domain::secret::acl::{AclChange, AclPatch, Conditions, HourWindow, MAX_ACL_USERS, Weekday};
use infra::protocol::{AclOperationRequest, ConditionsRequest, SetAclRequest};
use serde::de::DeserializeOwned;
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
