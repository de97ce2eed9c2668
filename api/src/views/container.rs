//! Containers as Barbican shows them, and their consumers.

use std::borrow::Cow;

use projections::read::{ContainerConsumerRow, ContainerRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ACTIVE, Links, secret_ref, time};

/// A container's URL.
pub fn container_ref(base: &str, id: impl std::fmt::Display) -> String {
    format!("{base}/v1/containers/{id}")
}

/// A named reference to a secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContainerSecret {
    /// Its name in the container (`certificate`, `private_key`, … for typed ones).
    pub name: String,
    /// The secret's URL.
    pub secret_ref: String,
}

/// A consumer as a container lists it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsumerRef {
    /// The consumer's name.
    pub name: String,
    /// Where it uses the container.
    #[serde(rename = "URL")]
    pub url: String,
}

/// A container.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Container {
    /// Its URL.
    pub container_ref: String,
    /// Its name.
    pub name: Option<String>,
    /// generic, rsa or certificate.
    #[serde(rename = "type")]
    pub container_type: String,
    /// `ACTIVE`, or `ERROR` when a secret it references expired, was deleted or is
    /// scheduled for deletion (then `problems` says which and what to do).
    pub status: Cow<'static, str>,
    /// What is wrong with its references, each with what to do (only when the status
    /// is `ERROR`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// When it was created (UTC).
    pub created: String,
    /// When it last changed (UTC).
    pub updated: String,
    /// Who created it.
    pub creator_id: String,
    /// Its references.
    pub secret_refs: Vec<ContainerSecret>,
    /// Its consumers.
    pub consumers: Vec<ConsumerRef>,
}

/// What is wrong with a container's references, each with what to do.
pub fn problems(row: &ContainerRow, base: &str) -> Vec<String> {
    row.refs
        .iter()
        .filter_map(|r| {
            let problem = r.problem.as_ref()?;
            let url = secret_ref(base, r.secret_id);
            let what = if r.name.is_empty() {
                "referenced"
            } else {
                &r.name
            };
            Some(format!(
                "{what} secret {url} {problem}; store a renewed {} and create a new container",
                if r.name.is_empty() {
                    "secret".to_owned()
                } else {
                    r.name.replace('_', " ")
                }
            ))
        })
        .collect()
}

impl Container {
    /// `row` as shown.
    pub fn of(base: &str, row: &ContainerRow) -> Self {
        let problems = problems(row, base);
        Self {
            container_ref: container_ref(base, row.id),
            name: row.name.clone(),
            container_type: row.container_type.clone(),
            status: Cow::Borrowed(if problems.is_empty() { ACTIVE } else { "ERROR" }),
            problems,
            created: time(&row.created),
            updated: time(&row.updated),
            creator_id: row.creator.to_string(),
            secret_refs: row
                .refs
                .iter()
                .map(|r| ContainerSecret {
                    name: r.name.clone(),
                    secret_ref: secret_ref(base, r.secret_id),
                })
                .collect(),
            consumers: row
                .consumers
                .iter()
                .map(|c| ConsumerRef {
                    name: c.name.clone(),
                    url: c.url.clone(),
                })
                .collect(),
        }
    }
}

/// A page of containers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainerList {
    /// The page.
    pub containers: Vec<Container>,
    /// How many the caller may see in all.
    pub total: u64,
    /// Links to the pages around this one.
    #[serde(flatten)]
    pub links: Links,
}

/// A container's URL, as a create answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainerRefBody {
    /// The container's URL.
    pub container_ref: String,
}

/// A consumer of a container, as its consumer listing shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainerConsumer {
    /// Its name.
    pub name: String,
    /// Where it uses the container.
    #[serde(rename = "URL")]
    pub url: String,
    /// When it was registered (UTC).
    pub created: String,
    /// When it last changed (UTC): its registration.
    pub updated: String,
    /// Always `ACTIVE`.
    pub status: &'static str,
}

impl ContainerConsumer {
    /// A consumer row as shown.
    pub fn of(row: &ContainerConsumerRow) -> Self {
        Self {
            name: row.name.clone(),
            url: row.url.clone(),
            created: time(&row.created),
            updated: time(&row.created),
            status: ACTIVE,
        }
    }
}

/// A page of a container's consumers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainerConsumerList {
    /// The page.
    pub consumers: Vec<ContainerConsumer>,
    /// How many in all.
    pub total: u64,
    /// Links to the pages around this one.
    #[serde(flatten)]
    pub links: Links,
}
