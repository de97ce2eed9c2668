//! Reads of access keys: a project's keys, or one of them. Never the sealed secret:
//! listing a key shows whom it stands for, not what signs with it.

use domain::access_key::AccessKeyId;
use domain::ids::{ProjectId, UserId};

use super::{ReadModel, Snapshot, on_pool};
use crate::read::ReadError;

/// An access key as the read model holds it, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRow {
    /// The project it acts in.
    pub project: ProjectId,
    /// Its id.
    pub access_key_id: AccessKeyId,
    /// The user it acts as.
    pub user: UserId,
    /// Its roles.
    pub roles: Vec<String>,
    /// The service it acts as.
    pub service: Option<String>,
    /// `active` or `revoked`.
    pub status: String,
    /// Who created it.
    pub creator: UserId,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 revocation time.
    pub revoked: Option<String>,
}

impl ReadModel {
    /// The access keys of `project` (only `user`'s when given), oldest first.
    pub async fn list_access_keys(
        &self,
        project: &ProjectId,
        user: Option<&UserId>,
    ) -> Result<Snapshot<Vec<AccessKeyRow>>, ReadError> {
        self.fresh(async { on_pool!(&self.pool, access_keys(project, user)) })
            .await
    }

    /// One access key of `project`.
    pub async fn get_access_key(
        &self,
        project: &ProjectId,
        id: &AccessKeyId,
    ) -> Result<Snapshot<Option<AccessKeyRow>>, ReadError> {
        self.fresh(async { on_pool!(&self.pool, access_key(project, id)) })
            .await
    }
}
