//! Folds a secret's commit into the SQL rows of the read model.

use super::sql::{ApplyError, Sql, params};
use domain::commit::Commit;
use domain::ids::SecretId;
use domain::secret::reference::reference;
use domain::secret::rotation::Rotation;
use domain::secret::version::Stage;
use domain::secret::{PayloadStored, SecretCreated, SecretEvent, evolve_rotation};
use domain::timestamp::Timestamp;

use super::{AclTables, Changed, json, run, run_each, set_acl, to_i64};

/// Applies a secret's commit stored at `seq` on `subject`.
pub(super) fn apply(
    conn: &mut dyn Sql,
    touched: &mut LastTouch,
    changed: &mut Changed,
    subject: &str,
    seq: u64,
    commit: &Commit<SecretEvent>,
) -> Result<(), ApplyError> {
    // A create (the secret, then its first payload if it has one: all that deciding a
    // create emits) is written as the rows it leaves, each inserted once and never
    // updated in the same commit: on PostgreSQL a batch of creates is then a few
    // multi-row INSERTs (`super::pending`). Any other commit goes event by event. (The
    // row cannot exist yet: a create is only decided, and only applied, on an absent
    // secret, so `ON CONFLICT DO NOTHING` never skips a row that later updates would
    // have changed.)
    let create = match commit.body.events.as_slice() {
        [SecretEvent::Created(e)] => Some((e, None)),
        [SecretEvent::Created(e), SecretEvent::PayloadStored(p)] => Some((e, Some(p))),
        _ => None,
    }
    // Only version 1 is a create, so no touch of this secret can be pending; were one,
    // the event-by-event path keeps the row as its last commit leaves it.
    .filter(|_| !touched.holds(subject));
    if let Some((created, payload)) = create {
        let (project, id) = (
            commit.body.aggregate.project.as_str(),
            commit.body.aggregate.id.as_str(),
        );
        let current = payload
            .filter(|p| p.stages.contains(&Stage::Current))
            .map(|p| p.payload.content_type.as_str());
        insert_secret(conn, seq, commit, created, payload.is_some(), current)?;
        named(changed, commit, created);
        if let Some(p) = payload {
            let version = insert_payload(conn, project, id, p, commit.body.at)?;
            for stage in &p.stages {
                put_stage(conn, project, id, stage.as_str(), &version)?;
            }
        }
        return Ok(());
    }
    apply_events(conn, seq, commit)?;
    for event in &commit.body.events {
        match event {
            SecretEvent::Created(e) => named(changed, commit, e),
            SecretEvent::Expired(_) | SecretEvent::Deleted(_) => changed.removed = true,
            _ => {}
        }
    }
    touched.set(conn, subject, seq, commit)
}

/// Notes the name a secret was created under, if it has one.
fn named(changed: &mut Changed, commit: &Commit<SecretEvent>, e: &SecretCreated) {
    if let Some(name) = &e.attributes.name {
        changed.names.push((
            commit.body.aggregate.project.clone(),
            name.as_str().to_owned(),
        ));
    }
}

/// Applies a secret's commit stored at `seq` one event at a time, all but the row's
/// `updated`, `version` and `seq` ([`LastTouch`]).
fn apply_events(
    conn: &mut dyn Sql,
    seq: u64,
    commit: &Commit<SecretEvent>,
) -> Result<(), ApplyError> {
    let project = commit.body.aggregate.project.as_str();
    let id = commit.body.aggregate.id.as_str();
    let at = commit.body.at;
    for event in &commit.body.events {
        match event {
            SecretEvent::Created(e) => insert_secret(conn, seq, commit, e, false, None)?,
            SecretEvent::PayloadStored(e) => {
                let version = insert_payload(conn, project, id, e, at)?;
                run(
                    conn,
                    "UPDATE secrets SET version_count = version_count + 1 \
                     WHERE project = ?1 AND id = ?2",
                    params![project, id],
                )?;
                for stage in &e.stages {
                    set_stage(conn, project, id, stage.as_str(), Some(&version))?;
                }
            }
            SecretEvent::StageMoved(e) => {
                let version = e.version.map(|v| v.to_string());
                set_stage(conn, project, id, e.stage.as_str(), version.as_deref())?;
            }
            SecretEvent::VersionsDestroyed(e) => {
                for v in &e.versions {
                    let v = v.to_string();
                    for sql in [
                        "DELETE FROM secret_payloads WHERE project = ?1 AND secret_id = ?2 \
                         AND version_id = ?3",
                        "DELETE FROM secret_stages WHERE project = ?1 AND secret_id = ?2 \
                         AND version_id = ?3",
                    ] {
                        run(conn, sql, params![project, id, v])?;
                    }
                }
                run(
                    conn,
                    "UPDATE secrets SET version_count = version_count - ?1 \
                     WHERE project = ?2 AND id = ?3",
                    params![
                        i64::try_from(e.versions.len()).unwrap_or(i64::MAX),
                        project,
                        id
                    ],
                )?;
            }
            SecretEvent::MetadatumDeleted(e) => run(
                conn,
                "DELETE FROM secret_metadata WHERE project = ?1 AND secret_id = ?2 AND key = ?3",
                params![project, id, e.key.as_str()],
            )?,
            SecretEvent::TagsSet(_) | SecretEvent::TagsRemoved(_) => {
                let row = conn.query_row(
                    "SELECT tags FROM secrets WHERE project = ?1 AND id = ?2",
                    params![project, id],
                )?;
                let tags = row
                    .as_deref()
                    .and_then(|r| r.first())
                    .and_then(|v| v.text().map(str::to_owned));
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
                run(
                    conn,
                    "UPDATE secrets SET tags = ?1 WHERE project = ?2 AND id = ?3",
                    params![json(&tags)?, project, id],
                )?;
            }
            SecretEvent::ConsumerRegistered(e) => {
                let c = &e.consumer;
                run(
                    conn,
                    "INSERT INTO secret_consumers (project, secret_id, service, \
                     resource_type, resource_id, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT DO NOTHING",
                    params![
                        project,
                        id,
                        c.service,
                        c.resource_type,
                        c.resource_id,
                        at.to_rfc3339()
                    ],
                )?;
            }
            SecretEvent::ConsumerRemoved(e) => {
                let c = &e.consumer;
                run(
                    conn,
                    "DELETE FROM secret_consumers WHERE project = ?1 AND secret_id = ?2 AND \
                     service = ?3 AND resource_type = ?4 AND resource_id = ?5",
                    params![project, id, c.service, c.resource_type, c.resource_id],
                )?;
            }
            SecretEvent::RotationConfigured(_)
            | SecretEvent::RotationStarted(_)
            | SecretEvent::RotationStepSucceeded(_)
            | SecretEvent::RotationStepFailed(_)
            | SecretEvent::RotationSucceeded(_)
            | SecretEvent::RotationCancelled(_) => apply_rotation(conn, project, id, event)?,
            SecretEvent::DescriptionSet(e) => run(
                conn,
                "UPDATE secrets SET description = ?1 WHERE project = ?2 AND id = ?3",
                params![e.description.as_ref().map(|d| d.as_str()), project, id],
            )?,
            SecretEvent::DeletionScheduled(e) => run(
                conn,
                "UPDATE secrets SET status = 'pending_deletion', purge_at = ?1, \
                 purge_at_ms = ?2 WHERE project = ?3 AND id = ?4",
                params![
                    e.purge_at.to_rfc3339(),
                    e.purge_at.unix_millis(),
                    project,
                    id
                ],
            )?,
            SecretEvent::Restored(_) => run(
                conn,
                "UPDATE secrets SET status = 'active', purge_at = NULL, purge_at_ms = NULL \
                 WHERE project = ?1 AND id = ?2",
                params![project, id],
            )?,
            SecretEvent::Expired(_) => {
                // The row stays, so reads can say when the secret expired; its sealed
                // payloads go, their keys being destroyed.
                run_each(
                    conn,
                    &[
                        "DELETE FROM secret_payloads WHERE project = ?1 AND secret_id = ?2",
                        "DELETE FROM secret_stages WHERE project = ?1 AND secret_id = ?2",
                        "DELETE FROM secret_acl_users WHERE project = ?1 AND secret_id = ?2",
                        "UPDATE secrets SET status = 'expired', version_count = 0, \
                         purge_at = NULL, purge_at_ms = NULL WHERE project = ?1 AND id = ?2",
                    ],
                    project,
                    id,
                )?;
            }
            SecretEvent::MetadatumSet(e) => {
                upsert_metadatum(conn, project, id, e.key.as_str(), e.value.as_str())?;
            }
            SecretEvent::AclSet(e) => set_acl(conn, AclTables::SECRETS, commit, &e.read)?,
            SecretEvent::Deleted(_) => run_each(
                conn,
                &[
                    "DELETE FROM secret_acl_users WHERE project = ?1 AND secret_id = ?2",
                    "DELETE FROM secret_payloads WHERE project = ?1 AND secret_id = ?2",
                    "DELETE FROM secret_metadata WHERE project = ?1 AND secret_id = ?2",
                    "DELETE FROM secret_stages WHERE project = ?1 AND secret_id = ?2",
                    "DELETE FROM secret_consumers WHERE project = ?1 AND secret_id = ?2",
                    "DELETE FROM secrets WHERE project = ?1 AND id = ?2",
                ],
                project,
                id,
            )?,
        }
    }
    Ok(())
}

/// The `updated`, `version` and `seq` a secret's row takes from the last of a run of
/// its commits, written once after the run rather than after each commit: a batch
/// applies an aggregate's commits together (`super::apply_batch`), and in a rebuild,
/// where most commits set a metadatum, this was every other statement. No statement
/// of the fold reads these columns, and readers see the batch only once it commits.
#[derive(Debug, Default)]
pub(super) struct LastTouch(Option<Touch>);

#[derive(Debug)]
struct Touch {
    subject: String,
    project: String,
    id: String,
    at: Timestamp,
    version: u64,
    seq: u64,
}

impl LastTouch {
    /// `commit`, stored at `seq` on `subject`, is the last applied to its secret: the
    /// run of another secret's commits before it is over, and its row written.
    fn set(
        &mut self,
        conn: &mut dyn Sql,
        subject: &str,
        seq: u64,
        commit: &Commit<SecretEvent>,
    ) -> Result<(), ApplyError> {
        let (at, version) = (commit.body.at, commit.body.version);
        if let Some(touch) = self.0.as_mut().filter(|t| t.subject == subject) {
            (touch.at, touch.version, touch.seq) = (at, version, seq);
            return Ok(());
        }
        if self.0.is_some() {
            self.write(conn)?;
            conn.aggregate(Some(subject));
        }
        self.0 = Some(Touch {
            subject: subject.to_owned(),
            project: commit.body.aggregate.project.as_str().to_owned(),
            id: commit.body.aggregate.id.as_str().to_owned(),
            at,
            version,
            seq,
        });
        Ok(())
    }

    /// Whether a touch is pending for the secret on `subject`.
    fn holds(&self, subject: &str) -> bool {
        self.0.as_ref().is_some_and(|t| t.subject == subject)
    }

    /// Writes the row of the secret whose run of commits this holds, if any.
    pub(super) fn write(&mut self, conn: &mut dyn Sql) -> Result<(), ApplyError> {
        let Some(t) = self.0.take() else {
            return Ok(());
        };
        // On PostgreSQL, in the secret's own lane of the batch (`super::pending`).
        conn.aggregate(Some(&t.subject));
        run(
            conn,
            "UPDATE secrets SET updated = ?1, updated_ms = ?2, version = ?3, seq = ?4 \
             WHERE project = ?5 AND id = ?6",
            params![
                t.at.to_rfc3339(),
                t.at.unix_millis(),
                to_i64(t.version),
                to_i64(t.seq),
                t.project,
                t.id
            ],
        )
    }
}

/// Inserts the row of a created secret, as of its commit: with one payload version
/// (`has_payload`) or none, and the media type of its current version, if any.
fn insert_secret(
    conn: &mut dyn Sql,
    seq: u64,
    commit: &Commit<SecretEvent>,
    e: &SecretCreated,
    has_payload: bool,
    content_type: Option<&str>,
) -> Result<(), ApplyError> {
    let project_id = &commit.body.aggregate.project;
    let (project, id) = (project_id.as_str(), commit.body.aggregate.id.as_str());
    let at = commit.body.at;
    let a = &e.attributes;
    let reference = SecretId::parse(id)
        .map(|sid| reference(project_id, a.name.as_ref(), sid))
        .unwrap_or_default();
    run(
        conn,
        "INSERT INTO secrets (project, id, name, secret_type, algorithm, bit_length, mode, \
         expiration, expiration_ms, creator, created, created_ms, updated, updated_ms, \
         content_type, version, seq, owning_service, reference, tags, version_count, \
         description) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?11, ?12, ?13, ?14, ?15, \
         ?16, ?17, ?18, ?19, ?20) \
         ON CONFLICT (project, id) DO NOTHING",
        params![
            project,
            id,
            a.name.as_ref().map(|n| n.as_str()),
            a.secret_type.as_str(),
            a.algorithm.as_ref().map(|a| a.as_str()),
            a.bit_length.map(|b| i64::from(b.get())),
            a.mode.as_ref().map(|m| m.as_str()),
            a.expiration.map(|x| x.at().to_rfc3339()),
            a.expiration.map(|x| x.at().unix_millis()),
            e.creator.as_str(),
            at.to_rfc3339(),
            at.unix_millis(),
            content_type,
            to_i64(commit.body.version),
            to_i64(seq),
            e.owning_service.as_ref().map(|s| s.as_str()),
            reference,
            json(&e.tags)?,
            i64::from(has_payload),
            a.description.as_ref().map(|d| d.as_str()),
        ],
    )?;
    for (key, value) in &a.metadata {
        upsert_metadatum(conn, project, id, key.as_str(), value.as_str())?;
    }
    Ok(())
}

/// Inserts a stored payload version's row; its version id.
fn insert_payload(
    conn: &mut dyn Sql,
    project: &str,
    id: &str,
    e: &PayloadStored,
    at: Timestamp,
) -> Result<String, ApplyError> {
    let p = &e.payload;
    let created = e.created.unwrap_or(at);
    let version = p.version_id.to_string();
    run(
        conn,
        "INSERT INTO secret_payloads (project, secret_id, version_id, key_id, \
         content_type, nonce, ciphertext, created, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (project, secret_id, version_id) DO UPDATE SET \
         key_id = excluded.key_id, content_type = excluded.content_type, \
         nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
         created = excluded.created, created_ms = excluded.created_ms",
        params![
            project,
            id,
            version,
            p.key_id.to_string(),
            p.content_type.as_str(),
            p.nonce,
            p.ciphertext,
            created.to_rfc3339(),
            created.unix_millis(),
        ],
    )?;
    Ok(version)
}

/// Puts `stage` on `version` (and nothing else: see [`set_stage`]).
fn put_stage(
    conn: &mut dyn Sql,
    project: &str,
    id: &str,
    stage: &str,
    version: &str,
) -> Result<(), ApplyError> {
    run(
        conn,
        "INSERT INTO secret_stages (project, secret_id, stage, version_id) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (project, secret_id, stage) \
         DO UPDATE SET version_id = excluded.version_id",
        params![project, id, stage, version],
    )
}

/// Puts `stage` on `version`, or (`None`) on no version, and keeps the secret's media
/// type that of its current version.
/// Folds a rotation event into the secret's `rotation` column (the domain's own fold)
/// and `rotation_due_ms`, and moves AWSPENDING as the domain does.
fn apply_rotation(
    conn: &mut dyn Sql,
    project: &str,
    id: &str,
    event: &SecretEvent,
) -> Result<(), ApplyError> {
    let row = conn.query_row(
        "SELECT rotation FROM secrets WHERE project = ?1 AND id = ?2",
        params![project, id],
    )?;
    let stored = row
        .as_deref()
        .and_then(|r| r.first())
        .and_then(|v| v.text().map(str::to_owned));
    let rotation = stored
        .map(|t| serde_json::from_str::<Rotation>(&t))
        .transpose()
        .map_err(|e| ApplyError::Corrupt(format!("secret {id}: rotation column: {e}")))?;
    let rotation = evolve_rotation(rotation, event);
    let secret = SecretId::parse(id)
        .map_err(|e| ApplyError::Corrupt(format!("secret {id}: {}", e.message)))?;
    let due = rotation
        .as_ref()
        .and_then(|r| r.due(secret))
        .map(|t| t.unix_millis());
    let text = rotation.as_ref().map(json).transpose()?;
    run(
        conn,
        "UPDATE secrets SET rotation = ?1, rotation_due_ms = ?2 WHERE project = ?3 AND id = ?4",
        params![text, due, project, id],
    )?;
    match event {
        SecretEvent::RotationStarted(e) => {
            put_stage(conn, project, id, "pending", &e.version.to_string())?;
        }
        SecretEvent::RotationSucceeded(e) => run(
            conn,
            "DELETE FROM secret_stages WHERE project = ?1 AND secret_id = ?2 AND stage = ?3 \
             AND version_id = ?4",
            params![project, id, "pending", e.version.to_string()],
        )?,
        _ => {}
    }
    Ok(())
}

fn set_stage(
    conn: &mut dyn Sql,
    project: &str,
    id: &str,
    stage: &str,
    version: Option<&str>,
) -> Result<(), ApplyError> {
    match version {
        Some(v) => put_stage(conn, project, id, stage, v)?,
        None => run(
            conn,
            "DELETE FROM secret_stages WHERE project = ?1 AND secret_id = ?2 AND stage = ?3",
            params![project, id, stage],
        )?,
    }
    if stage == "current" {
        // Barbican shows the current version's media type on the secret.
        run(
            conn,
            "UPDATE secrets SET content_type = (SELECT p.content_type FROM secret_payloads p \
             WHERE p.project = ?1 AND p.secret_id = ?2 AND p.version_id = ?3) \
             WHERE project = ?1 AND id = ?2",
            params![project, id, version],
        )?;
    }
    Ok(())
}

fn upsert_metadatum(
    conn: &mut dyn Sql,
    project: &str,
    id: &str,
    key: &str,
    value: &str,
) -> Result<(), ApplyError> {
    run(
        conn,
        "INSERT INTO secret_metadata (project, secret_id, key, value) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (project, secret_id, key) DO UPDATE SET value = excluded.value",
        params![project, id, key, value],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::sql::Value;
    use domain::commit::{AggregateRef, CommitKey, EventCodec, NewCommit};
    use domain::ids::{CommandId, ProjectId};
    use domain::subject::AggregateKind;

    fn event(json: &str) -> SecretEvent {
        SecretEvent::decode(serde_json::from_str(json).unwrap()).unwrap()
    }

    fn create(events: Vec<SecretEvent>) -> Commit<SecretEvent> {
        let id = SecretId::parse("00000000-0000-0000-0000-000000000001").unwrap();
        NewCommit {
            id: CommandId::parse("create-1").unwrap(),
            aggregate: AggregateRef {
                kind: AggregateKind::Secret,
                project: ProjectId::parse("p").unwrap(),
                id: id.into(),
            },
            version: 1,
            command: "secret.create".into(),
            actor: serde_json::from_value(serde_json::json!({"system": "scheduler"})).unwrap(),
            at: Timestamp::from_unix_millis(1_795_000_000_000).unwrap(),
            events,
        }
        .seal(None, &CommitKey::new([1; 32]))
    }

    /// Every row of the secret's tables after `write` on a fresh read model.
    fn rows_after(write: impl FnOnce(&mut dyn Sql)) -> Vec<Vec<Value<'static>>> {
        crate::apply::testing::rows_after(
            &[
                "secrets",
                "secret_payloads",
                "secret_stages",
                "secret_metadata",
            ],
            write,
        )
    }

    /// A create is written as the rows it leaves at once; applied event by event, the
    /// same commit leaves the same rows.
    #[test]
    fn a_create_leaves_the_rows_its_events_leave() {
        let created = event(include_str!(
            "../../../domain/tests/golden/secret.created.v2.json"
        ));
        let stored = event(include_str!(
            "../../../domain/tests/golden/secret.payload_stored.v2.json"
        ));
        let SecretEvent::PayloadStored(mut pending) = stored.clone() else {
            panic!("a payload event")
        };
        pending.stages = [Stage::Pending].into();
        for events in [
            vec![created.clone()],
            vec![created.clone(), stored.clone()],
            vec![created.clone(), SecretEvent::PayloadStored(pending)],
        ] {
            let commit = create(events);
            let subject = commit.body.aggregate.subject();
            let at_once = rows_after(|conn| {
                let mut touched = LastTouch::default();
                let mut changed = Changed::default();
                apply(conn, &mut touched, &mut changed, &subject, 7, &commit).unwrap();
                assert_eq!(changed.names.len(), 1, "{changed:?}");
                touched.write(conn).unwrap();
            });
            let one_by_one = rows_after(|conn| {
                apply_events(conn, 7, &commit).unwrap();
                let mut touched = LastTouch::default();
                touched.set(conn, &subject, 7, &commit).unwrap();
                touched.write(conn).unwrap();
            });
            assert!(at_once.len() >= 2, "{at_once:?}");
            assert_eq!(at_once, one_by_one, "{:?}", commit.body.events);
        }
    }
}
