//! What `keyledger audit state` prints: the replayed state of every aggregate, what a
//! user could read, and who could read a secret. Fields are declared in the order
//! they are printed (alphabetical, as the output has always been).

use std::collections::{BTreeMap, BTreeSet};

use domain::container::SecretRef;
use domain::order::OrderFailed;
use domain::secret::acl::{Acl, Conditions};
use domain::secret::consumer::SecretConsumer;
use serde::Serialize;

/// Everything replayed.
#[derive(Serialize)]
pub struct State<'a> {
    /// Left out when the log has none, so outputs from before access keys read alike.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_keys: Vec<AccessKeyView<'a>>,
    pub commits: u64,
    pub containers: Vec<ContainerView<'a>>,
    pub orders: Vec<OrderView<'a>>,
    pub secrets: Vec<SecretView<'a>>,
}

/// A secret, live or not.
#[derive(Serialize)]
#[serde(untagged)]
pub enum SecretView<'a> {
    Live(LiveSecret<'a>),
    Gone(Gone<'a>),
}

/// A secret that exists (possibly scheduled for deletion).
#[derive(Serialize)]
pub struct LiveSecret<'a> {
    pub acl: &'a Acl,
    pub consumers: &'a BTreeSet<SecretConsumer>,
    pub creator: &'a str,
    pub expiration: Option<String>,
    pub id: &'a str,
    pub metadata: BTreeMap<&'a str, &'a str>,
    pub name: Option<&'a str>,
    pub owning_service: Option<&'a str>,
    pub project: &'a str,
    pub purge_at: Option<String>,
    pub secret_type: &'a str,
    pub status: &'static str,
    pub versions: Vec<VersionView<'a>>,
}

/// One stored payload of a secret, and its stages.
#[derive(Serialize)]
pub struct VersionView<'a> {
    pub stages: Vec<&'a str>,
    pub version_id: String,
}

/// An aggregate that no longer exists (or never did), and why.
#[derive(Serialize)]
pub struct Gone<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
    pub id: &'a str,
    pub project: &'a str,
    pub status: &'static str,
}

impl<'a> Gone<'a> {
    /// Aggregate `id` of `project` in `status`.
    pub fn new(
        project: &'a str,
        id: &'a str,
        status: &'static str,
        expired_at: Option<String>,
    ) -> Self {
        Self {
            expired_at,
            id,
            project,
            status,
        }
    }
}

/// A container, live or deleted.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ContainerView<'a> {
    Live(LiveContainer<'a>),
    Gone(Gone<'a>),
}

/// A live container.
#[derive(Serialize)]
pub struct LiveContainer<'a> {
    pub acl: &'a Acl,
    pub consumers: Vec<ConsumerView<'a>>,
    pub creator: &'a str,
    pub id: &'a str,
    pub project: &'a str,
    pub secret_refs: &'a [SecretRef],
    pub status: &'static str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// A container's consumer, as Barbican names its fields.
#[derive(Serialize)]
pub struct ConsumerView<'a> {
    #[serde(rename = "URL")]
    pub url: &'a str,
    pub name: &'a str,
}

/// An order, placed or deleted.
#[derive(Serialize)]
#[serde(untagged)]
pub enum OrderView<'a> {
    Placed(PlacedOrder<'a>),
    Gone(Gone<'a>),
}

/// A placed order.
#[derive(Serialize)]
pub struct PlacedOrder<'a> {
    pub creator: &'a str,
    pub error: &'a Option<OrderFailed>,
    pub id: &'a str,
    pub project: &'a str,
    pub status: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// An access key: whom it stands for, never its secret.
#[derive(Serialize)]
pub struct AccessKeyView<'a> {
    pub access_key_id: &'a str,
    pub creator: Option<&'a str>,
    pub project: &'a str,
    pub roles: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
    pub status: String,
    pub user: Option<&'a str>,
}

/// What a user could read (`audit state --readable-by`).
#[derive(Serialize)]
pub struct ReadableBy<'a> {
    pub by_role: Vec<ByRole<'a>>,
    pub named: Vec<Named<'a>>,
    pub note: &'static str,
    pub user: &'a str,
}

/// A secret that names the user, as creator or on its ACL.
#[derive(Serialize)]
pub struct Named<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<&'a Conditions>,
    pub name: Option<&'a str>,
    pub project: &'a str,
    pub secret: &'a str,
    pub why: String,
}

/// What each project role would have given, in one project: `as <roles>` → the
/// secrets.
#[derive(Serialize)]
pub struct ByRole<'a> {
    // Printed first: every `as …` key sorts before `project`.
    #[serde(flatten)]
    pub roles: BTreeMap<String, Vec<&'a str>>,
    pub project: &'a str,
}

/// Who could read a secret (`audit state --readers`).
#[derive(Serialize)]
#[serde(untagged)]
pub enum Readers<'a> {
    /// It existed: by which rule each could.
    Live(LiveReaders<'a>),
    /// Nobody could, and why.
    Nobody {
        project: &'a str,
        readers: [(); 0],
        secret: &'a str,
        why: String,
    },
}

/// Who could read a live secret.
#[derive(Serialize)]
pub struct LiveReaders<'a> {
    pub expiration: Option<String>,
    pub private: bool,
    pub project: &'a str,
    pub readers: Vec<Rule<'a>>,
    pub scheduled_for_deletion: Option<String>,
    pub secret: &'a str,
}

/// One rule that lets someone read a secret.
#[derive(Serialize)]
pub struct Rule<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<&'a Conditions>,
    pub reads: String,
    pub who: String,
}
