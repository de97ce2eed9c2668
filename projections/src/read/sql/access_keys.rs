//! Access keys: a project's listing, and one by id, without the sealed secret; and
//! the keys with an id, with it, for verifying a signature.

use domain::access_key::AccessKeyId;
use domain::ids::{KeyId, ProjectId, UserId, VersionId};
use sqlx::Row;

use super::secrets::{applied_seq, checkpoint, parsed};
use crate::read::error::bad_column;
use super::{DbRow, Reads};
use crate::read::{AccessKeyRow, SealedAccessKey};

const COLUMNS: &str = "project, access_key_id, user_id, roles, service, status, creator, \
                       created, revoked";

fn access_key_row(r: &DbRow) -> Result<AccessKeyRow, sqlx::Error> {
    let roles: String = r.try_get("roles")?;
    Ok(AccessKeyRow {
        project: parsed(r, "project", ProjectId::parse)?,
        access_key_id: parsed(r, "access_key_id", AccessKeyId::parse)?,
        user: parsed(r, "user_id", UserId::parse)?,
        roles: serde_json::from_str(&roles).map_err(|e| bad_column("roles", e))?,
        service: r.try_get("service")?,
        status: r.try_get("status")?,
        creator: parsed(r, "creator", UserId::parse)?,
        created: r.try_get("created")?,
        revoked: r.try_get("revoked")?,
    })
}

impl Reads<'_> {
    /// The access keys of `project`, only `user`'s when given.
    pub(crate) async fn access_keys(
        &self,
        project: &ProjectId,
        user: Option<&UserId>,
    ) -> Result<(Vec<AccessKeyRow>, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM access_keys WHERE project = $1 \
             AND ($2 IS NULL OR user_id = $2) ORDER BY created_ms, access_key_id"
        )))
        .bind(project.as_str())
        .bind(user.map(UserId::as_str))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(access_key_row)
        .collect::<Result<_, _>>()?;
        tx.commit().await?;
        Ok((rows, seq))
    }

    /// One access key of `project`.
    pub(crate) async fn access_key(
        &self,
        project: &ProjectId,
        id: &AccessKeyId,
    ) -> Result<(Option<AccessKeyRow>, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM access_keys WHERE project = $1 AND access_key_id = $2"
        )))
        .bind(project.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| access_key_row(&r))
        .transpose()?;
        tx.commit().await?;
        Ok((row, seq))
    }
}

impl Reads<'_> {
    /// Every project's access key with the id `id`, with its sealed secret. One
    /// statement, the checkpoint left-joined to the keys, so that "no such key" too is
    /// of the snapshot whose sequence it reports: every signed request runs it.
    pub(crate) async fn sealed_access_keys(
        &self,
        id: &AccessKeyId,
    ) -> Result<(Vec<SealedAccessKey>, u64), sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT cp.seq AS applied_seq, {COLUMNS}, key_id, version_id, nonce, ciphertext \
             FROM checkpoints cp LEFT JOIN access_keys ON access_key_id = $1 \
             WHERE cp.projection = $2 ORDER BY project"
        )))
        .bind(id.as_str())
        .bind(crate::apply::PROJECTION)
        .fetch_all(&mut *self.0.acquire().await?)
        .await?;
        // No row: the read model has applied nothing yet.
        let seq = rows.first().map(applied_seq).transpose()?.unwrap_or(0);
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.try_get::<Option<String>, _>("access_key_id")?.is_none() {
                // The checkpoint alone: no key has the id.
                continue;
            }
            keys.push(SealedAccessKey {
                key: access_key_row(r)?,
                key_id: parsed(r, "key_id", KeyId::parse)?,
                version_id: parsed(r, "version_id", VersionId::parse)?,
                nonce: r.try_get("nonce")?,
                ciphertext: r.try_get("ciphertext")?,
            });
        }
        Ok((keys, seq))
    }
}
