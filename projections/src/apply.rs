//! Folds one commit into the SQL rows of the secrets read model.

use domain::commit::Commit;
use domain::secret::SecretEvent;
use sqlx::SqliteConnection;

/// The checkpoint row of this projection.
pub const PROJECTION: &str = "secrets";

fn to_i64(n: u64) -> i64 {
    // Stream sequences and versions stay far below 2^63.
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Applies the commit stored at `seq`. A commit this build cannot read is recorded in
/// `skipped_commits` (and logged) instead of stopping the projection.
pub async fn apply(conn: &mut SqliteConnection, seq: u64, bytes: &[u8]) -> Result<(), sqlx::Error> {
    let commit = match Commit::<SecretEvent>::from_slice(bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(seq, error = %e, "skipping a commit the projection cannot read");
            sqlx::query("INSERT OR REPLACE INTO skipped_commits (seq, reason) VALUES (?, ?)")
                .bind(to_i64(seq))
                .bind(e.to_string())
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
    };
    let project = commit.body.aggregate.project.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    for event in &commit.body.events {
        match event {
            SecretEvent::Created(e) => {
                let a = &e.attributes;
                sqlx::query(
                    "INSERT INTO secrets (project, id, name, secret_type, algorithm, bit_length, \
                     mode, expiration, expiration_ms, creator, created, created_ms, updated, \
                     content_type, version, seq) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?) \
                     ON CONFLICT (project, id) DO NOTHING",
                )
                .bind(project)
                .bind(id)
                .bind(a.name.as_ref().map(|n| n.as_str()))
                .bind(a.secret_type.as_str())
                .bind(a.algorithm.as_ref().map(|a| a.as_str()))
                .bind(a.bit_length.map(|b| i64::from(b.get())))
                .bind(a.mode.as_ref().map(|m| m.as_str()))
                .bind(a.expiration.map(|x| x.at().to_rfc3339()))
                .bind(a.expiration.map(|x| x.at().unix_millis()))
                .bind(e.creator.as_str())
                .bind(at.to_rfc3339())
                .bind(at.unix_millis())
                .bind(at.to_rfc3339())
                .bind(to_i64(commit.body.version))
                .bind(to_i64(seq))
                .execute(&mut *conn)
                .await?;
                for (key, value) in &a.metadata {
                    upsert_metadatum(conn, project, id, key.as_str(), value.as_str()).await?;
                }
            }
            SecretEvent::PayloadStored(e) => {
                let p = &e.payload;
                sqlx::query(
                    "INSERT OR REPLACE INTO secret_payloads (project, secret_id, version_id, \
                     key_id, content_type, nonce, ciphertext, created) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(project)
                .bind(id)
                .bind(p.version_id.to_string())
                .bind(p.key_id.to_string())
                .bind(p.content_type.as_str())
                .bind(&p.nonce)
                .bind(&p.ciphertext)
                .bind(at.to_rfc3339())
                .execute(&mut *conn)
                .await?;
                sqlx::query("UPDATE secrets SET content_type = ? WHERE project = ? AND id = ?")
                    .bind(p.content_type.as_str())
                    .bind(project)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            SecretEvent::MetadatumSet(e) => {
                upsert_metadatum(conn, project, id, e.key.as_str(), e.value.as_str()).await?;
            }
            SecretEvent::AclSet(e) => {
                let acl =
                    serde_json::to_string(&e.read).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                sqlx::query(
                    "UPDATE secrets SET project_access = ?, acl = ? WHERE project = ? AND id = ?",
                )
                .bind(e.read.project_access)
                .bind(acl)
                .bind(project)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                sqlx::query("DELETE FROM secret_acl_users WHERE project = ? AND secret_id = ?")
                    .bind(project)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                for user in &e.read.users {
                    sqlx::query(
                        "INSERT INTO secret_acl_users (project, secret_id, user_id) \
                         VALUES (?, ?, ?)",
                    )
                    .bind(project)
                    .bind(id)
                    .bind(user.as_str())
                    .execute(&mut *conn)
                    .await?;
                }
            }
            SecretEvent::Deleted(_) => {
                for table in [
                    "DELETE FROM secret_acl_users WHERE project = ? AND secret_id = ?",
                    "DELETE FROM secret_payloads WHERE project = ? AND secret_id = ?",
                    "DELETE FROM secret_metadata WHERE project = ? AND secret_id = ?",
                    "DELETE FROM secrets WHERE project = ? AND id = ?",
                ] {
                    sqlx::query(table)
                        .bind(project)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
    }
    sqlx::query(
        "UPDATE secrets SET updated = ?, version = ?, seq = ? WHERE project = ? AND id = ?",
    )
    .bind(at.to_rfc3339())
    .bind(to_i64(commit.body.version))
    .bind(to_i64(seq))
    .bind(project)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_metadatum(
    conn: &mut SqliteConnection,
    project: &str,
    id: &str,
    key: &str,
    value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO secret_metadata (project, secret_id, key, value) VALUES (?, ?, ?, ?) \
         ON CONFLICT (project, secret_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(project)
    .bind(id)
    .bind(key)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records that everything up to `seq` is applied. Runs in the batch's transaction.
pub async fn set_checkpoint(conn: &mut SqliteConnection, seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkpoints (projection, seq) VALUES (?, ?) \
         ON CONFLICT (projection) DO UPDATE SET seq = excluded.seq",
    )
    .bind(PROJECTION)
    .bind(to_i64(seq))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The sequence the projection has applied (0: nothing yet).
pub async fn checkpoint(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM checkpoints WHERE projection = ?")
        .bind(PROJECTION)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}
