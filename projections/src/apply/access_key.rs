//! Folds an access key's commit into the SQL rows of the read model: its principal
//! and its sealed secret (never anything in the clear), and its revocation.

use super::sql::{ApplyError, Sql, params};
use domain::access_key::AccessKeyEvent;
use domain::commit::Commit;

use super::{json, run, to_i64};

/// Applies an access key's commit stored at `seq`.
pub(super) fn apply(
    conn: &mut dyn Sql,
    seq: u64,
    commit: &Commit<AccessKeyEvent>,
) -> Result<(), ApplyError> {
    let project = commit.body.aggregate.project.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    let version = to_i64(commit.body.version);
    for event in &commit.body.events {
        match event {
            AccessKeyEvent::Created(e) => run(
                conn,
                "INSERT INTO access_keys (project, access_key_id, user_id, roles, service, \
                 status, creator, created, created_ms, key_id, version_id, nonce, ciphertext, \
                 version, seq) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                 ON CONFLICT (project, access_key_id) DO NOTHING",
                params![
                    project,
                    id,
                    e.user.as_str(),
                    json(&e.roles)?,
                    e.service.as_ref().map(|s| s.as_str()),
                    e.creator.as_str(),
                    at.to_rfc3339(),
                    at.unix_millis(),
                    e.secret.key_id.to_string(),
                    e.secret.version_id.to_string(),
                    &e.secret.nonce,
                    &e.secret.ciphertext,
                    version,
                    to_i64(seq),
                ],
            )?,
            AccessKeyEvent::Revoked(_) => run(
                conn,
                "UPDATE access_keys SET status = 'revoked', revoked = ?1, version = ?2, \
                 seq = ?3 WHERE project = ?4 AND access_key_id = ?5",
                params![at.to_rfc3339(), version, to_i64(seq), project, id],
            )?,
        }
    }
    Ok(())
}
