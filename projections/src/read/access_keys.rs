//! Reads of access keys: a project's keys, or one of them, never with the sealed
//! secret: listing a key shows whom it stands for, not what signs with it. Only
//! signature verification reads the sealed secret ([`ReadModel::sealed_access_keys`]).

use domain::access_key::AccessKeyId;
use domain::ids::{KeyId, ProjectId, UserId, VersionId};

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

/// An access key with its sealed secret, for verifying a signature made with it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedAccessKey {
    /// The key.
    pub key: AccessKeyRow,
    /// The data key its secret is sealed under.
    pub key_id: KeyId,
    /// The version id bound into the seal.
    pub version_id: VersionId,
    /// GCM nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAccessKey")
            .field("key", &self.key)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ReadModel {
    /// The access keys with the id `id`, in any project, with their sealed secrets:
    /// usually one (ids are unique per project; a signature decides among several).
    ///
    /// Beside a projector in this process, from the [`ReadCache`](super::ReadCache)
    /// when it holds them: every signed AWS request reads them, and the projector
    /// forgets them all once any access key changes, before readers see that change's
    /// sequence. An id without keys is read from SQL each time.
    pub async fn sealed_access_keys(
        &self,
        id: &AccessKeyId,
    ) -> Result<Snapshot<Vec<SealedAccessKey>>, ReadError> {
        let Some(cache) = &self.cache else {
            return self
                .fresh(async { on_pool!(&self.pool, sealed_access_keys(id)) })
                .await;
        };
        // Read before the cache, as for payloads: an entry answered then reflects every
        // commit up to this sequence.
        let applied = self.applied();
        if let Some(keys) = cache.access_keys(id) {
            return Ok(Snapshot {
                value: keys,
                seq: applied,
            });
        }
        let read = self
            .fresh(async { on_pool!(&self.pool, sealed_access_keys(id)) })
            .await?;
        cache.insert_access_keys(id.clone(), read.value.clone(), read.seq);
        Ok(read)
    }

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
