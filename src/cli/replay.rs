//! Folding the log into the state of secrets, containers and orders, for
//! `keyledger audit state`: the same `evolve` functions the write side uses.

use std::collections::BTreeMap;

use domain::access_key::{AccessKeyEvent, AccessKeyState};
use domain::container::{ContainerEvent, ContainerState};
use domain::order::{OrderEvent, OrderState};
use domain::policy::{self, Action, acl_roles, creator_roles, shared_roles, unshared_roles};
use domain::roles::{ProjectRole, either};
use domain::secret::{SecretEvent, SecretState};
use domain::subject::AggregateKind;
use domain::timestamp::Timestamp;
use serde::Deserialize;

use super::state_view::{
    AccessKeyView, ByRole, ConsumerView, ContainerView, Gone, LiveContainer, LiveReaders,
    LiveSecret, Named, OrderView, PlacedOrder, ReadableBy, Readers, Rule, SecretView, State,
    VersionView,
};

/// The roles each rule of the access policy names, in words, read from the policy
/// itself so that what an auditor is told is what the policy decides.
struct RoleWords {
    /// Who reads the payload of a secret shared with the project.
    payload: String,
    /// Who reads only the metadata of a secret shared with the project.
    metadata_only: String,
    /// Who reads nothing of the project's through project access.
    nothing: String,
    /// With which roles a secret's creator reads it whatever its ACL says.
    creator: String,
    /// With which roles a user on the ACL reads the payload.
    on_acl: String,
}

impl RoleWords {
    fn of_policy() -> Self {
        let payload = shared_roles(Action::ReadPayload, policy::Kind::Secret);
        let metadata_only: Vec<ProjectRole> =
            shared_roles(Action::ReadSecret, policy::Kind::Secret)
                .into_iter()
                .filter(|r| !payload.contains(r))
                .collect();
        Self {
            payload: either(&payload),
            metadata_only: either(&metadata_only),
            nothing: either(&unshared_roles(policy::Kind::Secret)),
            creator: either(&creator_roles(Action::ReadPayload, policy::Kind::Secret)),
            on_acl: either(&acl_roles(Action::ReadPayload)),
        }
    }
}

/// The aggregates replayed so far, by (project, id).
#[derive(Default)]
pub struct Replay {
    secrets: BTreeMap<(String, String), SecretState>,
    containers: BTreeMap<(String, String), ContainerState>,
    orders: BTreeMap<(String, String), OrderState>,
    access_keys: BTreeMap<(String, String), AccessKeyState>,
    /// Commits applied.
    pub commits: u64,
}

#[derive(Deserialize)]
struct Kind {
    aggregate: KindOf,
    at: Timestamp,
}

#[derive(Deserialize)]
struct KindOf {
    kind: AggregateKind,
}

impl Replay {
    /// Applies the message at `seq` on `subject` if `trust` takes it for its
    /// aggregate's next commit, unless it is after `until`; `Ok(false)` once past it.
    /// Foreign messages are skipped.
    pub fn apply(
        &mut self,
        seq: u64,
        subject: &str,
        bytes: &[u8],
        until: Option<Timestamp>,
        trust: &mut super::trust::Trust,
    ) -> Result<bool, domain::chain::Broken> {
        let Ok(kind) = serde_json::from_slice::<Kind>(bytes) else {
            // Not even shaped like a commit: foreign, and said so by `trust`.
            let _ = trust.next::<domain::audit::RawEvent>(seq, subject, bytes)?;
            return Ok(true);
        };
        if until.is_some_and(|t| kind.at > t) {
            return Ok(false);
        }
        match kind.aggregate.kind {
            AggregateKind::Secret => {
                let Some(c) = trust.next::<SecretEvent>(seq, subject, bytes)? else {
                    return Ok(true);
                };
                let key = (
                    c.body.aggregate.project.to_string(),
                    c.body.aggregate.id.to_string(),
                );
                let state = self.secrets.remove(&key).unwrap_or_default();
                self.secrets.insert(
                    key,
                    c.body.events.iter().fold(state, domain::secret::evolve),
                );
            }
            AggregateKind::Container => {
                let Some(c) = trust.next::<ContainerEvent>(seq, subject, bytes)? else {
                    return Ok(true);
                };
                let key = (
                    c.body.aggregate.project.to_string(),
                    c.body.aggregate.id.to_string(),
                );
                let state = self.containers.remove(&key).unwrap_or_default();
                self.containers.insert(
                    key,
                    c.body.events.iter().fold(state, domain::container::evolve),
                );
            }
            AggregateKind::Order => {
                let Some(c) = trust.next::<OrderEvent>(seq, subject, bytes)? else {
                    return Ok(true);
                };
                let key = (
                    c.body.aggregate.project.to_string(),
                    c.body.aggregate.id.to_string(),
                );
                let state = self.orders.remove(&key).unwrap_or_default();
                self.orders
                    .insert(key, c.body.events.iter().fold(state, domain::order::evolve));
            }
            AggregateKind::AccessKey => {
                let Some(c) = trust.next::<AccessKeyEvent>(seq, subject, bytes)? else {
                    return Ok(true);
                };
                let key = (
                    c.body.aggregate.project.to_string(),
                    c.body.aggregate.id.to_string(),
                );
                let state = self.access_keys.remove(&key).unwrap_or_default();
                self.access_keys.insert(
                    key,
                    c.body.events.iter().fold(state, domain::access_key::evolve),
                );
            }
            // Quotas hold no secret state: checked and counted only.
            AggregateKind::Quota => {
                if trust
                    .next::<domain::quota::QuotaEvent>(seq, subject, bytes)?
                    .is_none()
                {
                    return Ok(true);
                }
            }
            // The KEK keyring holds no secret state: checked and counted only.
            AggregateKind::Kek => {
                if trust
                    .next::<domain::keyring::KeyringEvent>(seq, subject, bytes)?
                    .is_none()
                {
                    return Ok(true);
                }
            }
        }
        self.commits += 1;
        Ok(true)
    }

    /// Everything replayed.
    pub fn state(&self) -> State<'_> {
        let gone = Gone::new;
        let secrets = self
            .secrets
            .iter()
            .map(|((project, id), s)| match s {
                SecretState::Live(s) => SecretView::Live(LiveSecret {
                    acl: &s.acl,
                    consumers: &s.consumers,
                    creator: s.creator.as_str(),
                    expiration: s.attributes.expiration.map(|e| e.at().to_rfc3339()),
                    id,
                    metadata: s
                        .attributes
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    name: s.attributes.name.as_ref().map(|n| n.as_str()),
                    owning_service: s.owning_service.as_ref().map(|x| x.as_str()),
                    project,
                    purge_at: s.purge_at.map(|t| t.to_rfc3339()),
                    secret_type: s.attributes.secret_type.as_str(),
                    status: if s.purge_at.is_some() {
                        "scheduled for deletion"
                    } else {
                        "live"
                    },
                    versions: s
                        .versions
                        .iter()
                        .map(|v| VersionView {
                            stages: s.stages_of(v.id).iter().map(|st| st.as_str()).collect(),
                            version_id: v.id.to_string(),
                        })
                        .collect(),
                }),
                SecretState::Deleted => SecretView::Gone(gone(project, id, "deleted", None)),
                SecretState::Expired(at) => {
                    SecretView::Gone(gone(project, id, "expired", Some(at.to_rfc3339())))
                }
                SecretState::Absent => SecretView::Gone(gone(project, id, "absent", None)),
            })
            .collect();
        let containers = self
            .containers
            .iter()
            .map(|((project, id), c)| match c {
                ContainerState::Live(c) => ContainerView::Live(LiveContainer {
                    acl: &c.acl,
                    consumers: c
                        .consumers
                        .iter()
                        .map(|k| ConsumerView {
                            url: &k.url,
                            name: &k.name,
                        })
                        .collect(),
                    creator: c.creator.as_str(),
                    id,
                    project,
                    secret_refs: &c.refs,
                    status: "live",
                    kind: c.kind.as_str(),
                }),
                _ => ContainerView::Gone(gone(project, id, "deleted", None)),
            })
            .collect();
        let orders = self
            .orders
            .iter()
            .map(|((project, id), o)| match o {
                OrderState::Placed(o) => OrderView::Placed(PlacedOrder {
                    creator: o.creator.as_str(),
                    error: &o.failed,
                    id,
                    project,
                    status: o.status.as_str(),
                    kind: o.order_type.as_str(),
                }),
                _ => OrderView::Gone(gone(project, id, "deleted", None)),
            })
            .collect();
        let access_keys = self
            .access_keys
            .iter()
            .map(|((project, id), k)| {
                let key = match k {
                    AccessKeyState::Active(key) | AccessKeyState::Revoked { key, .. } => Some(key),
                    AccessKeyState::Absent => None,
                };
                AccessKeyView {
                    access_key_id: id,
                    creator: key.map(|k| k.creator.as_str()),
                    project,
                    roles: key
                        .map_or_else(Vec::new, |k| k.roles.iter().map(|r| r.as_str()).collect()),
                    service: key.and_then(|k| k.service.as_ref().map(|s| s.as_str())),
                    status: k.to_string(),
                    user: key.map(|k| k.user.as_str()),
                }
            })
            .collect();
        State {
            access_keys,
            commits: self.commits,
            containers,
            orders,
            secrets,
        }
    }

    /// The secrets live (not expired) at `at`: (project, id, state).
    fn live_at(
        &self,
        at: Option<Timestamp>,
    ) -> impl Iterator<Item = (&str, &str, &domain::secret::Secret)> {
        self.secrets
            .iter()
            .filter_map(move |((project, id), state)| match state {
                SecretState::Live(s)
                    if !s
                        .attributes
                        .expiration
                        .zip(at)
                        .is_some_and(|(e, at)| e.has_passed(at)) =>
                {
                    Some((project.as_str(), id.as_str(), &**s))
                }
                _ => None,
            })
    }

    /// What `user` could read in the replayed state: the secrets that name them (as
    /// creator or on the ACL), and what each project role would have given them.
    /// Roles come from the identity provider's tokens, not the log, so those are
    /// stated per role rather than decided.
    pub fn readable_by<'a>(&'a self, user: &'a str, at: Option<Timestamp>) -> ReadableBy<'a> {
        let words = RoleWords::of_policy();
        let mut named = Vec::new();
        let mut by_project: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
        for (project, id, s) in self.live_at(at) {
            let entry = by_project.entry(project).or_default();
            entry.0.push(id);
            if s.acl.project_access {
                entry.1.push(id);
            }
            let name = s.attributes.name.as_ref().map(|n| n.as_str());
            if s.creator.as_str() == user {
                named.push(Named {
                    conditions: None,
                    name,
                    project,
                    secret: id,
                    why: "its creator: metadata and payload".to_owned(),
                });
            }
            if s.acl.users.iter().any(|u| u.as_str() == user) {
                named.push(Named {
                    conditions: Some(&s.acl.conditions),
                    name,
                    project,
                    secret: id,
                    why: format!(
                        "on its ACL: metadata with any role; the payload with role {}",
                        words.on_acl
                    ),
                });
            }
        }
        let by_role = by_project
            .into_iter()
            .map(|(project, (all, shared))| ByRole {
                roles: BTreeMap::from([
                    ("as admin".to_owned(), all),
                    (format!("as {}", words.payload), shared.clone()),
                    (
                        format!("as {} (metadata only)", words.metadata_only),
                        shared,
                    ),
                    (format!("as {}", words.nothing), Vec::new()),
                ]),
                project,
            })
            .collect();
        ReadableBy {
            by_role,
            named,
            note: "roles come from tokens, not the log: by_role lists what each role in a \
                   project would have given",
            user,
        }
    }

    /// Who could read secret `id` in the replayed state, and by which rule.
    pub fn readers<'a>(&'a self, id: &'a str, at: Option<Timestamp>) -> Option<Readers<'a>> {
        let ((project, _), state) = self.secrets.iter().find(|((_, i), _)| i == id)?;
        let nobody = |why: String| Readers::Nobody {
            project,
            readers: [],
            secret: id,
            why,
        };
        let SecretState::Live(s) = state else {
            return Some(nobody(
                "the secret was deleted or had expired: nobody could read it".to_owned(),
            ));
        };
        if let (Some(exp), Some(at)) = (s.attributes.expiration, at)
            && exp.has_passed(at)
        {
            return Some(nobody(format!(
                "the secret had expired at {}: nobody could read it",
                exp.at()
            )));
        }
        let words = RoleWords::of_policy();
        let rule = |who: String, reads: String, conditions| Rule {
            conditions,
            reads,
            who,
        };
        let both = || "metadata and payload".to_owned();
        let conditions = Some(&s.acl.conditions);
        let mut rules = vec![
            rule(format!("admins of project {project}"), both(), None),
            rule(
                format!("{} (its creator, with role {})", s.creator, words.creator),
                both(),
                None,
            ),
        ];
        if s.acl.project_access {
            rules.push(rule(
                format!("users of project {project} with role {}", words.payload),
                both(),
                conditions,
            ));
            rules.push(rule(
                format!(
                    "users of project {project} with role {}",
                    words.metadata_only
                ),
                "metadata".to_owned(),
                conditions,
            ));
        }
        for user in &s.acl.users {
            rules.push(rule(
                format!("{user} (on the ACL, any project)"),
                format!("metadata; the payload with role {}", words.on_acl),
                conditions,
            ));
        }
        Some(Readers::Live(LiveReaders {
            expiration: s.attributes.expiration.map(|e| e.at().to_rfc3339()),
            private: !s.acl.project_access,
            project,
            readers: rules,
            scheduled_for_deletion: s.purge_at.map(|t| t.to_rfc3339()),
            secret: id,
        }))
    }
}
