//! Folds a container's commit into the SQL rows of the read model.

use domain::commit::Commit;
use domain::container::{ContainerEvent, SecretRef};
use sqlx::SqliteConnection;

use super::{AclTables, run_each, set_acl, to_i64};

/// Applies a container's commit stored at `seq`.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    seq: u64,
    commit: &Commit<ContainerEvent>,
) -> Result<(), sqlx::Error> {
    let project = commit.body.aggregate.project.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    for event in &commit.body.events {
        match event {
            ContainerEvent::Created(e) => {
                sqlx::query(
                    "INSERT INTO containers (project, id, name, container_type, creator, created, \
                     created_ms, updated, version, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (project, id) DO NOTHING",
                )
                .bind(project)
                .bind(id)
                .bind(e.name.as_ref().map(|n| n.as_str()))
                .bind(e.kind.as_str())
                .bind(e.creator.as_str())
                .bind(at.to_rfc3339())
                .bind(at.unix_millis())
                .bind(at.to_rfc3339())
                .bind(to_i64(commit.body.version))
                .bind(to_i64(seq))
                .execute(&mut *conn)
                .await?;
                for r in &e.secret_refs {
                    add_ref(conn, project, id, r).await?;
                }
            }
            ContainerEvent::SecretAdded(e) => add_ref(conn, project, id, &e.secret_ref).await?,
            ContainerEvent::SecretRemoved(e) => {
                sqlx::query(
                    "DELETE FROM container_secrets WHERE project = ? AND container_id = ? \
                     AND name = ? AND secret_id = ?",
                )
                .bind(project)
                .bind(id)
                .bind(e.name.as_str())
                .bind(e.secret_id.to_string())
                .execute(&mut *conn)
                .await?;
            }
            ContainerEvent::ConsumerRegistered(e) => {
                sqlx::query(
                    "INSERT OR IGNORE INTO container_consumers (project, container_id, name, url, \
                     created) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(project)
                .bind(id)
                .bind(&e.name)
                .bind(&e.url)
                .bind(at.to_rfc3339())
                .execute(&mut *conn)
                .await?;
            }
            ContainerEvent::ConsumerRemoved(e) => {
                sqlx::query(
                    "DELETE FROM container_consumers WHERE project = ? AND container_id = ? \
                     AND name = ? AND url = ?",
                )
                .bind(project)
                .bind(id)
                .bind(&e.name)
                .bind(&e.url)
                .execute(&mut *conn)
                .await?;
            }
            ContainerEvent::AclSet(e) => {
                let tables = AclTables {
                    rows: "containers",
                    users: "container_acl_users",
                    key: "container_id",
                };
                let set = (!commit.body.command.ends_with(".acl.delete")).then_some(at);
                set_acl(conn, tables, project, id, &e.read, set).await?;
            }
            ContainerEvent::Deleted(_) => {
                run_each(
                    conn,
                    &[
                        "DELETE FROM container_secrets WHERE project = ? AND container_id = ?",
                        "DELETE FROM container_consumers WHERE project = ? AND container_id = ?",
                        "DELETE FROM container_acl_users WHERE project = ? AND container_id = ?",
                        "DELETE FROM containers WHERE project = ? AND id = ?",
                    ],
                    project,
                    id,
                )
                .await?;
            }
        }
    }
    sqlx::query(
        "UPDATE containers SET updated = ?, version = ?, seq = ? WHERE project = ? AND id = ?",
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

async fn add_ref(
    conn: &mut SqliteConnection,
    project: &str,
    id: &str,
    r: &SecretRef,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO container_secrets (project, container_id, position, name, \
         secret_project, secret_id) VALUES (?1, ?2, (SELECT COUNT(*) FROM container_secrets \
         WHERE project = ?1 AND container_id = ?2), ?3, ?4, ?5)",
    )
    .bind(project)
    .bind(id)
    .bind(r.name.as_str())
    .bind(r.project.as_str())
    .bind(r.secret_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
