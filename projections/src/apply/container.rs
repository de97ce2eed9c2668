//! Folds a container's commit into the SQL rows of the read model.

use super::sql::{ApplyError, Sql, params};
use domain::commit::Commit;
use domain::container::{ContainerEvent, SecretRef};

use super::{AclTables, run, run_each, set_acl, to_i64};

/// Applies a container's commit stored at `seq`.
pub(super) fn apply(
    conn: &mut dyn Sql,
    seq: u64,
    commit: &Commit<ContainerEvent>,
) -> Result<(), ApplyError> {
    let project = commit.body.aggregate.project.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    for event in &commit.body.events {
        match event {
            ContainerEvent::Created(e) => {
                run(
                    conn,
                    "INSERT INTO containers (project, id, name, container_type, creator, created, \
                     created_ms, updated, version, seq) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9) \
                     ON CONFLICT (project, id) DO NOTHING",
                    params![
                        project,
                        id,
                        e.name.as_ref().map(|n| n.as_str()),
                        e.kind.as_str(),
                        e.creator.as_str(),
                        at.to_rfc3339(),
                        at.unix_millis(),
                        to_i64(commit.body.version),
                        to_i64(seq),
                    ],
                )?;
                for r in &e.secret_refs {
                    add_ref(conn, project, id, r)?;
                }
            }
            ContainerEvent::SecretAdded(e) => add_ref(conn, project, id, &e.secret_ref)?,
            ContainerEvent::SecretRemoved(e) => run(
                conn,
                "DELETE FROM container_secrets WHERE project = ?1 AND container_id = ?2 \
                 AND name = ?3 AND secret_id = ?4",
                params![project, id, e.name.as_str(), e.secret_id.to_string()],
            )?,
            ContainerEvent::ConsumerRegistered(e) => run(
                conn,
                "INSERT INTO container_consumers (project, container_id, name, url, \
                 created) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![project, id, e.name, e.url, at.to_rfc3339()],
            )?,
            ContainerEvent::ConsumerRemoved(e) => run(
                conn,
                "DELETE FROM container_consumers WHERE project = ?1 AND container_id = ?2 \
                 AND name = ?3 AND url = ?4",
                params![project, id, e.name, e.url],
            )?,
            ContainerEvent::AclSet(e) => set_acl(conn, AclTables::CONTAINERS, commit, &e.read)?,
            ContainerEvent::Deleted(_) => run_each(
                conn,
                &[
                    "DELETE FROM container_secrets WHERE project = ?1 AND container_id = ?2",
                    "DELETE FROM container_consumers WHERE project = ?1 AND container_id = ?2",
                    "DELETE FROM container_acl_users WHERE project = ?1 AND container_id = ?2",
                    "DELETE FROM containers WHERE project = ?1 AND id = ?2",
                ],
                project,
                id,
            )?,
        }
    }
    run(
        conn,
        "UPDATE containers SET updated = ?1, version = ?2, seq = ?3 WHERE project = ?4 AND id = ?5",
        params![
            at.to_rfc3339(),
            to_i64(commit.body.version),
            to_i64(seq),
            project,
            id
        ],
    )
}

fn add_ref(conn: &mut dyn Sql, project: &str, id: &str, r: &SecretRef) -> Result<(), ApplyError> {
    run(
        conn,
        "INSERT INTO container_secrets (project, container_id, position, name, \
         secret_project, secret_id) VALUES (?1, ?2, (SELECT COUNT(*) FROM container_secrets \
         WHERE project = ?1 AND container_id = ?2), ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        params![
            project,
            id,
            r.name.as_str(),
            r.project.as_str(),
            r.secret_id.to_string()
        ],
    )
}
