//! Reads of containers: one by id, with its references (and what became of each
//! referenced secret) and consumers; and listings filtered by the read policy.

use crate::read::ReadError;
use domain::ids::{ContainerId, ProjectId, SecretId, UserId};
use domain::secret::acl::Acl;
use domain::timestamp::Timestamp;

use super::{AclTimes, ReadModel, Snapshot, on_pool};

/// A container as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    /// The project that owns it.
    pub project: ProjectId,
    /// The id.
    pub id: ContainerId,
    /// Name.
    pub name: Option<String>,
    /// generic, rsa or certificate.
    pub container_type: String,
    /// The creating user.
    pub creator: UserId,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 time of the last change.
    pub updated: String,
    /// Who may read it.
    pub acl: Acl,
    /// When its ACL was set, unless it is the default.
    pub acl_set: Option<AclTimes>,
    /// Its references, in order.
    pub refs: Vec<ContainerRefRow>,
    /// Its consumers.
    pub consumers: Vec<ContainerConsumerRow>,
}

/// A container's consumer: Barbican's `{name, URL}`, and when it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConsumerRow {
    /// Its name.
    pub name: String,
    /// Where it uses the container.
    pub url: String,
    /// RFC 3339 registration time.
    pub created: String,
}

/// One reference of a container, and what became of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRefRow {
    /// Its name in the container.
    pub name: String,
    /// The project owning the secret.
    pub secret_project: ProjectId,
    /// The secret.
    pub secret_id: SecretId,
    /// RFC 3339 expiration of the secret, if it has one.
    pub expiration: Option<String>,
    /// Why the secret cannot be used any more (expired, deleted, scheduled for
    /// deletion), if so.
    pub problem: Option<String>,
}

/// A page of containers and the total the caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPage {
    /// The page.
    pub containers: Vec<ContainerRow>,
    /// All the caller may see.
    pub total: u64,
}

impl ReadModel {
    /// One container, with its references and consumers.
    pub async fn get_container(
        &self,
        id: ContainerId,
        now: Timestamp,
    ) -> Result<Snapshot<Option<ContainerRow>>, ReadError> {
        self.fresh(async { on_pool!(&self.pool, container(id, now)) })
            .await
    }

    /// A page of a project's containers that `keep` (the caller's read policy)
    /// admits, oldest first.
    pub async fn list_containers(
        &self,
        project: &ProjectId,
        page: (u32, u32),
        now: Timestamp,
        keep: impl Fn(&ContainerRow) -> bool,
    ) -> Result<Snapshot<ContainerPage>, ReadError> {
        self.fresh(async { on_pool!(&self.pool, containers(project, page, now, keep)) })
            .await
    }
}
