//! Project quotas, as Barbican has them: how many secrets, orders, containers and
//! consumers a project may hold (`-1` unlimited, `0` none, `n` at most `n`), set per
//! project by an operator with Barbican's `key-manager:service-admin` role.
//!
//! Two aggregates per project carry them on the log:
//! - `keyledger.events.<project>.quota.limits`: the project's limits, each commit a
//!   [`QuotaEvent::Set`] (the whole set) or a [`QuotaEvent::Cleared`];
//! - `keyledger.events.<project>.quota.usage`: one [`QuotaEvent::Charged`] commit per
//!   object counted against a finite limit, written in one atomic batch with the
//!   commit that creates the object and expecting the subject's last sequence, so two
//!   creates that saw the same count cannot both land (see `commands/src/quota.rs`).
//!
//! The count itself is the read model's: objects that exist at the usage subject's
//! last sequence, so deleting one gives its place back without a commit of its own.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::commit::{AggregateRef, CommitError, EventCodec, decode_versioned, encode_versioned};
use crate::ids::{AggregateId, ProjectId, Role};
use crate::principal::Principal;
use crate::subject::AggregateKind;
use crate::{ErrorCode, Rejection};

/// The role that manages every project's quotas (Barbican's policy names it so).
pub const SERVICE_ADMIN: &str = "key-manager:service-admin";

/// The aggregate id of a project's limits.
pub const LIMITS_ID: &str = "limits";

/// The aggregate id of a project's charges.
pub const USAGE_ID: &str = "usage";

/// The aggregate holding `project`'s limits.
pub fn limits_aggregate(project: &ProjectId) -> AggregateRef {
    aggregate(project, LIMITS_ID)
}

/// The aggregate holding `project`'s charges.
pub fn usage_aggregate(project: &ProjectId) -> AggregateRef {
    aggregate(project, USAGE_ID)
}

fn aggregate(project: &ProjectId, id: &str) -> AggregateRef {
    AggregateRef {
        kind: AggregateKind::Quota,
        project: project.clone(),
        id: AggregateId::parse(id).unwrap_or_else(|_| unreachable!("a valid token")),
    }
}

/// Whether `principal` may read and change every project's quotas.
pub fn is_service_admin(principal: &Principal) -> bool {
    principal.roles.iter().any(|r| r.as_str() == SERVICE_ADMIN)
}

/// Whether `roles` name the service admin (for callers holding role names only).
pub fn names_service_admin(roles: &[Role]) -> bool {
    roles.iter().any(|r| r.as_str() == SERVICE_ADMIN)
}

/// What a quota limits, by Barbican's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Secrets that exist (active, pending deletion); an expired secret frees its place.
    Secrets,
    /// Orders.
    Orders,
    /// Containers.
    Containers,
    /// Consumers registered on the project's secrets and containers.
    Consumers,
    /// Certificate authorities. keyledger creates none on request, so nothing counts
    /// against it; it is kept so Barbican's clients read and write the same document.
    Cas,
}

impl Resource {
    /// Every resource, in Barbican's order.
    pub const ALL: [Self; 5] = [
        Self::Secrets,
        Self::Orders,
        Self::Containers,
        Self::Consumers,
        Self::Cas,
    ];

    /// Its name in Barbican's documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secrets => "secrets",
            Self::Orders => "orders",
            Self::Containers => "containers",
            Self::Consumers => "consumers",
            Self::Cas => "cas",
        }
    }

    /// The resource named `name`.
    pub fn parse(name: &str) -> Result<Self, Rejection> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| {
                Rejection::invalid(format!(
                    "{name:?} is not a quota: use secrets, orders, containers, consumers or cas"
                ))
            })
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One limit: `-1` unlimited, `0` none allowed, `n` at most `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Limit(i64);

impl Limit {
    /// No limit.
    pub const UNLIMITED: Self = Self(-1);

    /// Parses a limit given for `resource`.
    pub fn parse(value: i64, resource: Resource) -> Result<Self, Rejection> {
        if value < -1 {
            return Err(Rejection::invalid(format!(
                "the {resource} quota {value} is not valid: use -1 for unlimited, 0 to allow \
                 none, or the most the project may hold"
            )));
        }
        Ok(Self(value))
    }

    /// The most allowed, if limited.
    pub fn most(self) -> Option<u64> {
        u64::try_from(self.0).ok()
    }

    /// As Barbican writes it.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Limit {
    type Error = Rejection;

    fn try_from(value: i64) -> Result<Self, Rejection> {
        if value < -1 {
            return Err(Rejection::invalid(format!(
                "a quota is -1 or more, not {value}"
            )));
        }
        Ok(Self(value))
    }
}

impl From<Limit> for i64 {
    fn from(limit: Limit) -> Self {
        limit.0
    }
}

/// A project's configured limits; a resource without one is unlimited (Barbican's
/// default of `-1`).
pub type Limits = BTreeMap<Resource, Limit>;

/// The effective limit of `resource` under `limits`.
pub fn effective(limits: &Limits, resource: Resource) -> Limit {
    limits.get(&resource).copied().unwrap_or(Limit::UNLIMITED)
}

/// The project's limits were set (replacing any set before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSet {
    /// The limits configured; the others are unlimited.
    pub limits: Limits,
}

/// One object was counted against a finite limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaCharged {
    /// What it counts as.
    pub resource: Resource,
    /// The subject of the commit it was charged with.
    pub subject: String,
    /// How many the project held before it.
    pub used: u64,
    /// The limit it was held to.
    pub limit: u64,
}

/// Everything that can happen to a project's quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum QuotaEvent {
    /// See [`QuotaSet`].
    #[serde(rename = "quota.set")]
    Set(QuotaSet),
    /// The project's limits were removed: every resource is unlimited again.
    #[serde(rename = "quota.cleared")]
    Cleared,
    /// See [`QuotaCharged`].
    #[serde(rename = "quota.charged")]
    Charged(QuotaCharged),
}

impl QuotaEvent {
    /// The `type` member.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Set(_) => "quota.set",
            Self::Cleared => "quota.cleared",
            Self::Charged(_) => "quota.charged",
        }
    }

    /// The version this build writes for `type_name`; `None` for unknown types.
    pub fn current_version(type_name: &str) -> Option<u64> {
        match type_name {
            "quota.set" | "quota.cleared" | "quota.charged" => Some(1),
            _ => None,
        }
    }
}

impl EventCodec for QuotaEvent {
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

/// A project's quota aggregates as their commits leave them: the limits (on the
/// limits subject; the usage subject's charges change no state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaState {
    /// The configured limits.
    pub limits: Limits,
}

/// Folds one event.
pub fn evolve(mut state: QuotaState, event: &QuotaEvent) -> QuotaState {
    match event {
        QuotaEvent::Set(set) => state.limits = set.limits.clone(),
        QuotaEvent::Cleared => state.limits.clear(),
        QuotaEvent::Charged(_) => {}
    }
    state
}

/// A command on a project's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaCommand {
    /// Set the limits (those not named become unlimited).
    Set(Limits),
    /// Remove every limit.
    Clear,
}

impl QuotaCommand {
    /// Its command name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Set(_) => crate::subject::command::QUOTA_SET,
            Self::Clear => crate::subject::command::QUOTA_DELETE,
        }
    }
}

/// Only the service admin changes quotas: a project's own admin cannot raise its own.
pub fn authorize(principal: &Principal, project: &ProjectId) -> Result<(), Rejection> {
    if is_service_admin(principal) {
        return Ok(());
    }
    Err(Rejection::forbidden(format!(
        "only the role {SERVICE_ADMIN} may change quotas (of project {project}); a token with \
         that role is needed"
    )))
}

/// The events `command` makes on limits in `state`: none when it changes nothing.
pub fn decide(state: &QuotaState, command: &QuotaCommand) -> Vec<QuotaEvent> {
    match command {
        QuotaCommand::Set(limits) if *limits == state.limits && !limits.is_empty() => Vec::new(),
        QuotaCommand::Set(limits) if limits.is_empty() && state.limits.is_empty() => Vec::new(),
        QuotaCommand::Set(limits) => vec![QuotaEvent::Set(QuotaSet {
            limits: limits.clone(),
        })],
        QuotaCommand::Clear if state.limits.is_empty() => Vec::new(),
        QuotaCommand::Clear => vec![QuotaEvent::Cleared],
    }
}

/// Whether one more `resource` fits in `project` holding `used` under `limits`: the
/// charge to record with its commit (on `subject`), `None` when unlimited, or the
/// refusal (`quota_exceeded`) naming the quota, its limit and the count. A caller of
/// another project (one an ACL lets register a consumer) is told that the quota is
/// reached, not the project's numbers.
pub fn charge(
    limits: &Limits,
    project: &ProjectId,
    resource: Resource,
    used: u64,
    subject: &str,
    caller_project: &ProjectId,
) -> Result<Option<QuotaCharged>, Rejection> {
    let Some(most) = effective(limits, resource).most() else {
        return Ok(None);
    };
    if used >= most {
        if caller_project != project {
            return Err(Rejection::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "Quota reached for project {project}: its {resource} quota is full. Ask \
                     its owners to make room or have the limit raised"
                ),
            ));
        }
        let noun = if used == 1 {
            singular(resource)
        } else {
            resource.as_str()
        };
        return Err(Rejection::new(
            ErrorCode::QuotaExceeded,
            format!(
                "Quota reached for project {project}: the {resource} quota is {most}, and the \
                 project holds {used} {noun}. Delete some, or ask an operator to raise it (PUT \
                 /v1/project-quotas/{project})"
            ),
        ));
    }
    Ok(Some(QuotaCharged {
        resource,
        subject: subject.to_owned(),
        used,
        limit: most,
    }))
}

fn singular(resource: Resource) -> &'static str {
    match resource {
        Resource::Secrets => "secret",
        Resource::Orders => "order",
        Resource::Containers => "container",
        Resource::Consumers => "consumer",
        Resource::Cas => "ca",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;

    fn project() -> ProjectId {
        ProjectId::parse("p1").unwrap()
    }

    fn limits(pairs: &[(Resource, i64)]) -> Limits {
        pairs
            .iter()
            .map(|(r, v)| (*r, Limit::parse(*v, *r).unwrap()))
            .collect()
    }

    #[test]
    fn a_charge_fits_below_the_limit_and_is_refused_at_it_naming_limit_and_count() {
        let l = limits(&[(Resource::Secrets, 2), (Resource::Orders, 0)]);
        let p = project();
        let charged = charge(&l, &p, Resource::Secrets, 1, "s", &p).unwrap();
        assert_eq!(charged.map(|c| (c.used, c.limit)), Some((1, 2)));
        let refused = charge(&l, &p, Resource::Secrets, 2, "s", &p).unwrap_err();
        assert_eq!(refused.code, crate::ErrorCode::QuotaExceeded);
        assert!(
            refused.message.contains("secrets quota is 2")
                && refused.message.contains("holds 2 secrets"),
            "{}",
            refused.message
        );
        // Another project's caller learns that it is full, not the numbers.
        let other = ProjectId::parse("p2").unwrap();
        let told = charge(&l, &p, Resource::Secrets, 2, "s", &other).unwrap_err();
        assert!(!told.message.contains('2'), "{}", told.message);
        // 0 allows none; an unnamed resource is unlimited.
        assert!(charge(&l, &p, Resource::Orders, 0, "o", &p).is_err());
        assert_eq!(
            charge(&l, &p, Resource::Containers, 1_000_000, "c", &p).unwrap(),
            None
        );
    }

    #[test]
    fn limits_below_minus_one_are_refused_and_none_is_unlimited() {
        assert!(Limit::parse(-2, Resource::Secrets).is_err());
        assert_eq!(Limit::parse(-1, Resource::Secrets).unwrap().most(), None);
        assert_eq!(Limit::parse(0, Resource::Secrets).unwrap().most(), Some(0));
        assert!(serde_json::from_str::<Limit>("-5").is_err());
        assert_eq!(effective(&Limits::new(), Resource::Cas), Limit::UNLIMITED);
    }

    #[test]
    fn only_the_service_admin_sets_quotas_and_unchanged_limits_write_nothing() {
        let mut admin = Principal {
            user: UserId::parse("u").unwrap(),
            project: project(),
            roles: vec![Role::parse("admin").unwrap()],
            service: None,
        };
        assert!(authorize(&admin, &project()).is_err());
        admin.roles.push(Role::parse(SERVICE_ADMIN).unwrap());
        assert!(authorize(&admin, &project()).is_ok());

        let set = QuotaCommand::Set(limits(&[(Resource::Secrets, 3)]));
        let events = decide(&QuotaState::default(), &set);
        let state = events.iter().fold(QuotaState::default(), evolve);
        assert_eq!(effective(&state.limits, Resource::Secrets).most(), Some(3));
        assert!(decide(&state, &set).is_empty());
        let cleared = decide(&state, &QuotaCommand::Clear);
        assert_eq!(cleared, vec![QuotaEvent::Cleared]);
        let state = cleared.iter().fold(state, evolve);
        assert!(decide(&state, &QuotaCommand::Clear).is_empty());
        assert!(decide(&state, &QuotaCommand::Set(Limits::new())).is_empty());
    }

    #[test]
    fn events_round_trip_through_their_versioned_json() {
        for event in [
            QuotaEvent::Set(QuotaSet {
                limits: limits(&[(Resource::Secrets, 3), (Resource::Cas, -1)]),
            }),
            QuotaEvent::Cleared,
            QuotaEvent::Charged(QuotaCharged {
                resource: Resource::Consumers,
                subject: "keyledger.events.p1.secret.x".into(),
                used: 4,
                limit: 5,
            }),
        ] {
            assert_eq!(QuotaEvent::decode(event.encode()).unwrap(), event);
        }
        assert_eq!(
            limits_aggregate(&project()).subject(),
            "keyledger.events.p1.quota.limits"
        );
    }
}
