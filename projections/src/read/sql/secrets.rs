//! A secret's rows: the queries, and the decoding of their columns.

use std::collections::{BTreeMap, BTreeSet};

use domain::ids::{KeyId, ProjectId, SecretId, ServiceName, UserId, VersionId};
use domain::secret::acl::Acl;
use domain::secret::payload::ContentType;
use domain::timestamp::Timestamp;
use sqlx::Row;

use super::{Conn, DbRow, Dialect, DIALECT, Reads};
use crate::read::error::bad_column;
use crate::read::{
    AclTimes, Candidate, Entry, Found, Labelled, Named, PayloadRow, SecretConsumerRow, SecretRow, VersionPage, VersionRow,
    VersionSelector,
};

/// The sequence the projection has applied (0: nothing yet), read in the caller's
/// transaction so it matches the rows read beside it.
pub(crate) async fn checkpoint(conn: &mut Conn) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM checkpoints WHERE projection = $1")
        .bind(crate::apply::PROJECTION)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// The checkpoint a statement read beside its rows, as `applied_seq` (0: nothing yet).
pub(crate) fn applied_seq(r: &DbRow) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = r.try_get("applied_seq")?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// The stages on a version of `secret_payloads p`, as a JSON array (NULL or `[]` when
/// none): a custom label may hold any visible character, a comma too.
const STAGES: &str = match DIALECT {
    Dialect::Sqlite => {
        "(SELECT json_group_array(g.stage) FROM secret_stages g \
         WHERE g.project = p.project AND g.secret_id = p.secret_id \
         AND g.version_id = p.version_id) AS stages"
    }
    Dialect::Postgres => {
        "(SELECT json_agg(g.stage)::text FROM secret_stages g \
         WHERE g.project = p.project AND g.secret_id = p.secret_id \
         AND g.version_id = p.version_id) AS stages"
    }
};

/// The columns of a [`VersionRow`], from `secret_payloads p`.
fn version_columns() -> String {
    format!("p.version_id, p.content_type, p.created, {STAGES}")
}

fn version_row(r: &DbRow) -> Result<VersionRow, sqlx::Error> {
    Ok(VersionRow {
        version_id: r.try_get("version_id")?,
        content_type: r.try_get("content_type")?,
        created: r.try_get("created")?,
        stages: stages_of(r)?,
    })
}

/// The [`STAGES`] column, as a sorted list (the same order on both dialects, whatever
/// PostgreSQL's collation).
fn stages_of(r: &DbRow) -> Result<Vec<String>, sqlx::Error> {
    let text: Option<String> = r.try_get("stages")?;
    let mut stages: Vec<String> = serde_json::from_str(text.as_deref().unwrap_or("[]"))
        .map_err(|e| bad_column("stages", e))?;
    stages.sort();
    Ok(stages)
}

/// The columns of a [`SecretRow`], from `secrets s`: its consumers as a JSON array of
/// `[service, resource_type, resource_id, created]` (NULL or `[]` when none).
pub(crate) fn secret_columns() -> String {
    let consumers = match DIALECT {
        Dialect::Sqlite => {
            "(SELECT json_group_array(json_array(c.service, c.resource_type, \
             c.resource_id, c.created)) FROM secret_consumers c \
             WHERE c.project = s.project AND c.secret_id = s.id) AS consumers"
        }
        Dialect::Postgres => {
            "(SELECT json_agg(json_build_array(c.service, c.resource_type, \
             c.resource_id, c.created))::text FROM secret_consumers c \
             WHERE c.project = s.project AND c.secret_id = s.id) AS consumers"
        }
    };
    format!(
        "s.project, s.id, s.name, s.secret_type, s.algorithm, s.bit_length, s.mode, \
         s.expiration, s.creator, s.created, s.updated, s.content_type, s.version, s.acl, \
         s.expiration_ms, s.owning_service, s.reference, s.purge_at, s.tags, \
         s.version_count, s.status, s.purge_at_ms, s.acl_created, s.acl_updated, s.rotation, \
         s.description, {consumers}"
    )
}

/// The ACL times of a row's `acl_created` and `acl_updated` columns.
pub(crate) fn acl_times_of(r: &DbRow) -> Result<Option<AclTimes>, sqlx::Error> {
    let created: Option<String> = r.try_get("acl_created")?;
    let updated: Option<String> = r.try_get("acl_updated")?;
    Ok(created.map(|created| AclTimes {
        updated: updated.unwrap_or_else(|| created.clone()),
        created,
    }))
}

fn consumers_of(r: &DbRow) -> Result<Vec<SecretConsumerRow>, sqlx::Error> {
    let text: Option<String> = r.try_get("consumers")?;
    let mut rows: Vec<(String, String, String, String)> =
        serde_json::from_str(text.as_deref().unwrap_or("[]"))
            .map_err(|e| bad_column("consumers", e))?;
    rows.sort();
    Ok(rows
        .into_iter()
        .map(
            |(service, resource_type, resource_id, created)| SecretConsumerRow {
                service,
                resource_type,
                resource_id,
                created,
            },
        )
        .collect())
}

/// The ACL in a row's `acl` column (NULL: the default).
pub(crate) fn acl_of(r: &DbRow) -> Result<Acl, sqlx::Error> {
    let acl: Option<String> = r.try_get("acl")?;
    match acl {
        None => Ok(Acl::default()),
        // A row whose ACL does not parse is refused rather than read as the default,
        // which could widen access.
        Some(json) => serde_json::from_str(&json).map_err(|e| bad_column("acl", e)),
    }
}

/// A text column parsed into the domain type the projector wrote it from; one that
/// does not parse is a corrupt row, never a default.
pub(crate) fn parsed<T, E>(
    r: &DbRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, sqlx::Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.try_get(column)?;
    parse(&text).map_err(|e| bad_column(column, e))
}

/// [`parsed`] for a nullable column.
fn parsed_opt<T, E>(
    r: &DbRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, sqlx::Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = r.try_get(column)?;
    text.map(|t| parse(&t).map_err(|e| bad_column(column, e)))
        .transpose()
}

pub(crate) fn secret_row(r: &DbRow) -> Result<SecretRow, sqlx::Error> {
    let acl = acl_of(r)?;
    Ok(SecretRow {
        project: parsed(r, "project", ProjectId::parse)?,
        id: parsed(r, "id", SecretId::parse)?,
        name: r.try_get("name")?,
        secret_type: r.try_get("secret_type")?,
        algorithm: r.try_get("algorithm")?,
        bit_length: r.try_get("bit_length")?,
        mode: r.try_get("mode")?,
        expiration: r.try_get("expiration")?,
        creator: parsed(r, "creator", UserId::parse)?,
        created: r.try_get("created")?,
        updated: r.try_get("updated")?,
        content_type: parsed_opt(r, "content_type", ContentType::parse)?,
        version: r.try_get("version")?,
        acl,
        owning_service: parsed_opt(r, "owning_service", ServiceName::parse)?,
        reference: r.try_get("reference")?,
        purge_at: r.try_get("purge_at")?,
        tags: serde_json::from_str(&r.try_get::<String, _>("tags")?)
            .map_err(|e| bad_column("tags", e))?,
        version_count: r.try_get("version_count")?,
        acl_set: acl_times_of(r)?,
        consumers: consumers_of(r)?,
        rotation: parsed_opt(r, "rotation", |t| serde_json::from_str(t))?,
        description: r.try_get("description")?,
    })
}

/// The lookup behind every read of one secret and its access check: the checkpoint
/// and the secret's row (none: every column NULL) in one statement, so one snapshot
/// with no transaction around it. On SQLite each statement is a round trip to the
/// connection's thread, and read apart the four statements (`BEGIN`, the checkpoint,
/// the row, `COMMIT`) cost a PutSecretValue, which reads a secret twice, a sixth of
/// its CPU.
pub(crate) fn fetch_secret_sql() -> String {
    format!(
        "SELECT cp.seq AS applied_seq, {} FROM checkpoints cp \
         LEFT JOIN secrets s ON s.id = $1 WHERE cp.projection = $2",
        secret_columns()
    )
}

/// A secret's row and the sequence it reflects, read in one statement; `None` when
/// the read model has no checkpoint (it has applied nothing).
async fn fetch_secret(
    conn: &mut Conn,
    id: SecretId,
) -> Result<Option<(Option<Found>, u64)>, sqlx::Error> {
    let Some(r) = sqlx::query(sqlx::AssertSqlSafe(fetch_secret_sql()))
        .bind(id.to_string())
        .bind(crate::apply::PROJECTION)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let seq = applied_seq(&r)?;
    let absent = r.try_get::<Option<String>, _>("id")?.is_none();
    if absent {
        return Ok(Some((None, seq)));
    }
    let found = (
        secret_row(&r)?,
        r.try_get("expiration_ms")?,
        r.try_get("status")?,
    );
    Ok(Some((Some(found), seq)))
}

impl Reads<'_> {
    /// The sequence applied.
    pub(crate) async fn checkpoint(&self) -> Result<u64, sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        checkpoint(&mut conn).await
    }

    /// The sequences between `from` and `to` (inclusive) the projector skipped.
    pub(crate) async fn skipped_between(
        &self,
        from: u64,
        to: u64,
    ) -> Result<BTreeSet<u64>, sqlx::Error> {
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM skipped_commits WHERE seq BETWEEN $1 AND $2")
                .bind(i64::try_from(from).unwrap_or(i64::MAX))
                .bind(i64::try_from(to).unwrap_or(i64::MAX))
                .fetch_all(&mut *self.0.acquire().await?)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect())
    }

    /// One secret's row, and the sequence it reflects.
    pub(crate) async fn secret(&self, id: SecretId) -> Result<(Option<Found>, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        // No checkpoint: nothing applied, so no secret.
        Ok(fetch_secret(&mut conn, id).await?.unwrap_or((None, 0)))
    }

    /// A secret's row and, if `visible` finds it so, `details` read in the same
    /// transaction.
    async fn with_secret<T>(
        &self,
        id: SecretId,
        visible: impl FnOnce(&Found) -> bool,
        details: impl AsyncFnOnce(&mut Conn, &SecretRow) -> Result<T, sqlx::Error>,
    ) -> Result<(Option<(Found, Option<T>)>, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let (row, seq) = fetch_secret(&mut tx, id).await?.unwrap_or((None, 0));
        let found = match row {
            Some(row) if visible(&row) => {
                let more = details(&mut tx, &row.0).await?;
                Some((row, Some(more)))
            }
            Some(row) => Some((row, None)),
            None => None,
        };
        tx.commit().await?;
        Ok((found, seq))
    }

    /// A secret's row with the sealed payload of one version, and the sequence they
    /// reflect.
    ///
    /// The hot path of every payload read, so it is one statement: the checkpoint,
    /// the secret's row and the payload's, read in one snapshot (on SQLite each further
    /// statement is a round trip to the connection's thread).
    pub(crate) async fn version(
        &self,
        id: SecretId,
        which: VersionSelector<'_>,
    ) -> Result<(Option<Entry>, u64), sqlx::Error> {
        let (condition, value) = match which {
            VersionSelector::Id(v) => ("p.version_id = $3", v),
            VersionSelector::Stage(s) => (
                "p.version_id = (SELECT g.version_id FROM secret_stages g WHERE \
                 g.project = s.project AND g.secret_id = s.id AND g.stage = $3)",
                s,
            ),
        };
        let mut conn = self.0.acquire().await?;
        // From the checkpoint, as `fetch_secret_sql`: an absent secret is answered with
        // the sequence of the same snapshot (a second statement could see a later one,
        // and report "missing" at the sequence of the create it missed).
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {}, cp.seq AS applied_seq, \
             p.version_id AS p_version_id, p.key_id AS p_key_id, \
             p.content_type AS p_content_type, p.nonce AS p_nonce, \
             p.ciphertext AS p_ciphertext, p.created AS p_created, {STAGES} \
             FROM checkpoints cp LEFT JOIN secrets s ON s.id = $2 \
             LEFT JOIN secret_payloads p ON p.project = s.project \
             AND p.secret_id = s.id AND {condition} WHERE cp.projection = $1",
            secret_columns()
        )))
        .bind(crate::apply::PROJECTION)
        .bind(id.to_string())
        .bind(value)
        .fetch_optional(&mut *conn)
        .await?;
        // No checkpoint: nothing applied, so no secret.
        let Some(r) = row else {
            return Ok((None, 0));
        };
        let seq = applied_seq(&r)?;
        if r.try_get::<Option<String>, _>("id")?.is_none() {
            return Ok((None, seq));
        }
        let version: Option<String> = r.try_get("p_version_id")?;
        let payload = match version {
            None => None,
            Some(_) => {
                Some(PayloadRow {
                    version_id: parsed(&r, "p_version_id", VersionId::parse)?,
                    key_id: parsed(&r, "p_key_id", KeyId::parse)?,
                    content_type: parsed(&r, "p_content_type", ContentType::parse)?,
                    nonce: r.try_get("p_nonce")?,
                    ciphertext: r.try_get("p_ciphertext")?,
                    created: r.try_get("p_created")?,
                    stages: stages_of(&r)?,
                })
            }
        };
        let entry = Entry {
            row: secret_row(&r)?,
            expiration_ms: r.try_get("expiration_ms")?,
            status: r.try_get("status")?,
            payload,
        };
        Ok((Some(entry), seq))
    }

    /// A secret with one page of its versions, oldest first, and how many it has.
    pub(crate) async fn versions(
        &self,
        id: SecretId,
        visible: impl FnOnce(&Found) -> bool,
        (limit, offset): (u32, u32),
    ) -> Result<(Option<(Found, Option<VersionPage>)>, u64), sqlx::Error> {
        self.with_secret(id, visible, async |conn, secret| {
            let total: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM secret_payloads WHERE project = $1 AND secret_id = $2",
            )
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM secret_payloads p WHERE p.project = $1 AND \
                 p.secret_id = $2 ORDER BY p.created_ms, p.version_id LIMIT $3 OFFSET $4",
                version_columns()
            )))
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&mut *conn)
            .await?;
            Ok(VersionPage {
                versions: rows.iter().map(version_row).collect::<Result<_, _>>()?,
                total: u64::try_from(total).unwrap_or_default(),
            })
        })
        .await
    }

    /// A secret with every version that carries a staging label, oldest first. A
    /// page of all versions would miss the newest (the labelled ones, usually) of a
    /// secret with more versions than a page holds.
    pub(crate) async fn labelled_versions(
        &self,
        id: SecretId,
        visible: impl FnOnce(&Found) -> bool,
    ) -> Result<(Option<(Found, Option<Labelled>)>, u64), sqlx::Error> {
        self.with_secret(id, visible, async |conn, secret| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM secret_payloads p WHERE p.project = $1 AND \
                 p.secret_id = $2 AND p.version_id IN (SELECT g.version_id FROM \
                 secret_stages g WHERE g.project = $1 AND g.secret_id = $2) \
                 ORDER BY p.created_ms, p.version_id",
                version_columns()
            )))
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
            let stored = rows.iter().map(version_row).collect::<Result<_, _>>()?;
            let valueless = sqlx::query(
                "SELECT g.version_id, g.stage FROM secret_stages g WHERE g.project = $1 AND \
                 g.secret_id = $2 AND NOT EXISTS (SELECT 1 FROM secret_payloads p WHERE \
                 p.project = $1 AND p.secret_id = $2 AND p.version_id = g.version_id) \
                 ORDER BY g.version_id, g.stage",
            )
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
            Ok(Labelled { stored, valueless })
        })
        .await
    }

    /// A secret with one of its versions, by id or by stage.
    pub(crate) async fn find_version(
        &self,
        id: SecretId,
        visible: impl FnOnce(&Found) -> bool,
        which: VersionSelector<'_>,
    ) -> Result<(Option<(Found, Option<Option<VersionRow>>)>, u64), sqlx::Error> {
        self.with_secret(id, visible, async |conn, secret| {
            let (condition, value) = match which {
                VersionSelector::Id(v) => ("p.version_id = $3", v),
                VersionSelector::Stage(s) => (
                    "p.version_id = (SELECT g.version_id FROM secret_stages g WHERE \
                         g.project = $1 AND g.secret_id = $2 AND g.stage = $3)",
                    s,
                ),
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM secret_payloads p WHERE p.project = $1 AND \
                 p.secret_id = $2 AND {condition}",
                version_columns()
            )))
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .bind(value)
            .fetch_optional(conn)
            .await?
            .as_ref()
            .map(version_row)
            .transpose()
        })
        .await
    }

    /// A secret with its metadata.
    pub(crate) async fn metadata(
        &self,
        id: SecretId,
        visible: impl FnOnce(&Found) -> bool,
    ) -> Result<(Option<(Found, Option<BTreeMap<String, String>>)>, u64), sqlx::Error> {
        self.with_secret(id, visible, async |conn, secret| {
            Ok(sqlx::query_as::<_, (String, String)>(
                "SELECT key, value FROM secret_metadata WHERE project = $1 AND secret_id = $2 \
                 ORDER BY key",
            )
            .bind(secret.project.as_str())
            .bind(id.to_string())
            .fetch_all(conn)
            .await?
            .into_iter()
            .collect())
        })
        .await
    }

    /// The live secrets of `project` named `name`.
    pub(crate) async fn by_name(
        &self,
        project: &ProjectId,
        name: &str,
        now: Timestamp,
    ) -> Result<Vec<Candidate>, sqlx::Error> {
        let (named, _) = self.named(project, name, now, "s.status = 'active'").await?;
        Ok(named.into_iter().map(|n| n.candidate).collect())
    }

    /// The secrets of `project` named `name`, live or scheduled for deletion, each with
    /// its expiry, and the sequence they reflect (0 when there are none).
    pub(crate) async fn by_name_any(
        &self,
        project: &ProjectId,
        name: &str,
        now: Timestamp,
    ) -> Result<(Vec<Named>, u64), sqlx::Error> {
        self.named(project, name, now, "s.status IN ('active', 'pending_deletion')")
            .await
    }

    /// The unexpired secrets of `project` named `name` whose status passes `status`,
    /// oldest first, with the checkpoint read beside them (0 when none is found). On
    /// SQLite the name index is named: without statistics its planner walks all of
    /// the project's secrets by primary key (or in creation order, for the ORDER BY)
    /// rather than look the name up, so every look-up by name read every secret of the
    /// project.
    async fn named(
        &self,
        project: &ProjectId,
        name: &str,
        now: Timestamp,
        status: &'static str,
    ) -> Result<(Vec<Named>, u64), sqlx::Error> {
        let by_name = match DIALECT {
            Dialect::Sqlite => "INDEXED BY secrets_by_name",
            Dialect::Postgres => "",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.id, s.reference, s.expiration_ms, \
             (SELECT c.seq FROM checkpoints c WHERE c.projection = $4) AS applied_seq \
             FROM secrets s {by_name} WHERE s.project = $1 \
             AND s.name = $2 AND {status} \
             AND (s.expiration_ms IS NULL OR s.expiration_ms > $3) ORDER BY s.created_ms, s.id"
        )))
        .bind(project.as_str())
        .bind(name)
        .bind(now.unix_millis())
        .bind(crate::apply::PROJECTION)
        .fetch_all(&mut *self.0.acquire().await?)
        .await?;
        let seq = rows.first().map(applied_seq).transpose()?.unwrap_or(0);
        let named = rows
            .iter()
            .map(|r| {
                Ok(Named {
                    candidate: Candidate {
                        id: r.try_get("id")?,
                        reference: r.try_get("reference")?,
                    },
                    expiration_ms: r.try_get("expiration_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((named, seq))
    }

    /// The secrets whose reference is exactly `reference`.
    pub(crate) async fn by_reference(&self, reference: &str) -> Result<Vec<Candidate>, sqlx::Error> {
        sqlx::query_as::<_, (String, String)>(
            "SELECT s.id, s.reference FROM secrets s WHERE s.reference = $1 ORDER BY s.id",
        )
        .bind(reference)
        .fetch_all(&mut *self.0.acquire().await?)
        .await
        .map(candidates)
    }
}

fn candidates(rows: Vec<(String, String)>) -> Vec<Candidate> {
    rows.into_iter()
        .map(|(id, reference)| Candidate { id, reference })
        .collect()
}
