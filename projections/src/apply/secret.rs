//! Folds a secret's commit into the SQL rows of the read model.

use domain::commit::Commit;
use domain::ids::SecretId;
use domain::secret::SecretEvent;
use domain::secret::reference::reference;
use sqlx::SqliteConnection;

use super::{AclTables, json, run_each, set_acl, to_i64};

/// Applies a secret's commit stored at `seq`.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    seq: u64,
    commit: &Commit<SecretEvent>,
) -> Result<(), sqlx::Error> {
    let project_id = &commit.body.aggregate.project;
    let project = project_id.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    for event in &commit.body.events {
        match event {
            SecretEvent::Created(e) => {
                let a = &e.attributes;
                let reference = SecretId::parse(id)
                    .map(|sid| reference(project_id, a.name.as_ref(), sid))
                    .unwrap_or_default();
                let tags = json(&e.tags)?;
                sqlx::query(
                    "INSERT INTO secrets (project, id, name, secret_type, algorithm, bit_length, \
                     mode, expiration, expiration_ms, creator, created, created_ms, updated, \
                     content_type, version, seq, owning_service, reference, tags) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?) \
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
                .bind(e.owning_service.as_ref().map(|s| s.as_str()))
                .bind(reference)
                .bind(tags)
                .execute(&mut *conn)
                .await?;
                for (key, value) in &a.metadata {
                    upsert_metadatum(conn, project, id, key.as_str(), value.as_str()).await?;
                }
            }
            SecretEvent::PayloadStored(e) => {
                let p = &e.payload;
                let created = e.created.unwrap_or(at);
                sqlx::query(
                    "INSERT OR REPLACE INTO secret_payloads (project, secret_id, version_id, \
                     key_id, content_type, nonce, ciphertext, created, created_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(project)
                .bind(id)
                .bind(p.version_id.to_string())
                .bind(p.key_id.to_string())
                .bind(p.content_type.as_str())
                .bind(&p.nonce)
                .bind(&p.ciphertext)
                .bind(created.to_rfc3339())
                .bind(created.unix_millis())
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE secrets SET version_count = version_count + 1 \
                     WHERE project = ? AND id = ?",
                )
                .bind(project)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                for stage in &e.stages {
                    set_stage(
                        conn,
                        project,
                        id,
                        stage.as_str(),
                        Some(&p.version_id.to_string()),
                    )
                    .await?;
                }
            }
            SecretEvent::StageMoved(e) => {
                let version = e.version.map(|v| v.to_string());
                set_stage(conn, project, id, e.stage.as_str(), version.as_deref()).await?;
            }
            SecretEvent::VersionsDestroyed(e) => {
                for v in &e.versions {
                    let v = v.to_string();
                    for sql in [
                        "DELETE FROM secret_payloads WHERE project = ? AND secret_id = ? \
                         AND version_id = ?",
                        "DELETE FROM secret_stages WHERE project = ? AND secret_id = ? \
                         AND version_id = ?",
                    ] {
                        sqlx::query(sql)
                            .bind(project)
                            .bind(id)
                            .bind(&v)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                sqlx::query(
                    "UPDATE secrets SET version_count = version_count - ? \
                     WHERE project = ? AND id = ?",
                )
                .bind(i64::try_from(e.versions.len()).unwrap_or(i64::MAX))
                .bind(project)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            SecretEvent::MetadatumDeleted(e) => {
                sqlx::query(
                    "DELETE FROM secret_metadata WHERE project = ? AND secret_id = ? AND key = ?",
                )
                .bind(project)
                .bind(id)
                .bind(e.key.as_str())
                .execute(&mut *conn)
                .await?;
            }
            SecretEvent::TagsSet(_) | SecretEvent::TagsRemoved(_) => {
                let tags: Option<String> =
                    sqlx::query_scalar("SELECT tags FROM secrets WHERE project = ? AND id = ?")
                        .bind(project)
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                let mut tags: std::collections::BTreeMap<String, String> = tags
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                match event {
                    SecretEvent::TagsSet(e) => tags.extend(
                        e.tags
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned())),
                    ),
                    SecretEvent::TagsRemoved(e) => {
                        tags.retain(|k, _| !e.keys.iter().any(|r| r.as_str() == k));
                    }
                    _ => {}
                }
                sqlx::query("UPDATE secrets SET tags = ? WHERE project = ? AND id = ?")
                    .bind(json(&tags)?)
                    .bind(project)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            SecretEvent::ConsumerRegistered(e) | SecretEvent::ConsumerRemoved(e) => {
                let c = &e.consumer;
                if matches!(event, SecretEvent::ConsumerRegistered(_)) {
                    sqlx::query(
                        "INSERT OR IGNORE INTO secret_consumers (project, secret_id, service, \
                         resource_type, resource_id, created) VALUES (?, ?, ?, ?, ?, ?)",
                    )
                    .bind(project)
                    .bind(id)
                    .bind(&c.service)
                    .bind(&c.resource_type)
                    .bind(&c.resource_id)
                    .bind(at.to_rfc3339())
                    .execute(&mut *conn)
                    .await?;
                } else {
                    sqlx::query(
                        "DELETE FROM secret_consumers WHERE project = ? AND secret_id = ? AND \
                         service = ? AND resource_type = ? AND resource_id = ?",
                    )
                    .bind(project)
                    .bind(id)
                    .bind(&c.service)
                    .bind(&c.resource_type)
                    .bind(&c.resource_id)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            SecretEvent::DeletionScheduled(e) => {
                sqlx::query(
                    "UPDATE secrets SET status = 'pending_deletion', purge_at = ?, \
                     purge_at_ms = ? WHERE project = ? AND id = ?",
                )
                .bind(e.purge_at.to_rfc3339())
                .bind(e.purge_at.unix_millis())
                .bind(project)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            SecretEvent::Restored(_) => {
                sqlx::query(
                    "UPDATE secrets SET status = 'active', purge_at = NULL, purge_at_ms = NULL \
                     WHERE project = ? AND id = ?",
                )
                .bind(project)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
            SecretEvent::Expired(_) => {
                // The row stays, so reads can say when the secret expired; its sealed
                // payloads go, their keys being destroyed.
                run_each(
                    conn,
                    &[
                    "DELETE FROM secret_payloads WHERE project = ? AND secret_id = ?",
                    "DELETE FROM secret_stages WHERE project = ? AND secret_id = ?",
                    "DELETE FROM secret_acl_users WHERE project = ? AND secret_id = ?",
                    "UPDATE secrets SET status = 'expired', version_count = 0, purge_at = NULL, \
                     purge_at_ms = NULL WHERE project = ? AND id = ?",
                    ],
                    project,
                    id,
                )
                .await?;
            }
            SecretEvent::MetadatumSet(e) => {
                upsert_metadatum(conn, project, id, e.key.as_str(), e.value.as_str()).await?;
            }
            SecretEvent::AclSet(e) => {
                let tables = AclTables {
                    rows: "secrets",
                    users: "secret_acl_users",
                    key: "secret_id",
                };
                let set = (!commit.body.command.ends_with(".acl.delete")).then_some(at);
                set_acl(conn, tables, project, id, &e.read, set).await?;
            }
            SecretEvent::Deleted(_) => {
                run_each(
                    conn,
                    &[
                        "DELETE FROM secret_acl_users WHERE project = ? AND secret_id = ?",
                        "DELETE FROM secret_payloads WHERE project = ? AND secret_id = ?",
                        "DELETE FROM secret_metadata WHERE project = ? AND secret_id = ?",
                        "DELETE FROM secret_stages WHERE project = ? AND secret_id = ?",
                        "DELETE FROM secret_consumers WHERE project = ? AND secret_id = ?",
                        "DELETE FROM secrets WHERE project = ? AND id = ?",
                    ],
                    project,
                    id,
                )
                .await?;
            }
        }
    }
    sqlx::query(
        "UPDATE secrets SET updated = ?, updated_ms = ?, version = ?, seq = ? \
         WHERE project = ? AND id = ?",
    )
    .bind(at.to_rfc3339())
    .bind(at.unix_millis())
    .bind(to_i64(commit.body.version))
    .bind(to_i64(seq))
    .bind(project)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Puts `stage` on `version`, or (`None`) on no version.
async fn set_stage(
    conn: &mut SqliteConnection,
    project: &str,
    id: &str,
    stage: &str,
    version: Option<&str>,
) -> Result<(), sqlx::Error> {
    let query = match version {
        Some(v) => sqlx::query(
            "INSERT INTO secret_stages (project, secret_id, stage, version_id) VALUES (?, ?, ?, ?) \
             ON CONFLICT (project, secret_id, stage) DO UPDATE SET version_id = excluded.version_id",
        )
        .bind(project)
        .bind(id)
        .bind(stage)
        .bind(v.to_owned()),
        None => sqlx::query(
            "DELETE FROM secret_stages WHERE project = ? AND secret_id = ? AND stage = ?",
        )
        .bind(project)
        .bind(id)
        .bind(stage),
    };
    query.execute(&mut *conn).await?;
    if stage == "current" {
        // Barbican shows the current version's media type on the secret.
        sqlx::query(
            "UPDATE secrets SET content_type = (SELECT p.content_type FROM secret_payloads p \
             WHERE p.project = ?1 AND p.secret_id = ?2 AND p.version_id = ?3) \
             WHERE project = ?1 AND id = ?2",
        )
        .bind(project)
        .bind(id)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    }
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
