//! Listings: Barbican's filters and sort keys, paged after the read policy has
//! filtered each row.

use crate::read::ReadError;
use domain::ids::{ProjectId, UserId};
use domain::timestamp::Timestamp;
use futures::TryStreamExt;
use sqlx::{QueryBuilder, Sqlite};

use super::checkpoint;
use super::{ReadModel, SECRET_COLUMNS, SecretRow, Snapshot, secret_row};

/// Which secrets a listing considers, before the policy filters each row.
#[derive(Debug, Clone)]
pub enum ListScope<'a> {
    /// A project's secrets. Unless the caller is a project admin, only rows the
    /// caller could possibly read are considered: non-private ones, the caller's own,
    /// and those listing the caller.
    Project {
        /// The project.
        project: &'a ProjectId,
        /// The caller.
        user: &'a UserId,
        /// Whether the caller is an admin of the project.
        admin: bool,
    },
    /// Secrets whose ACL lists the user, in any project (Barbican's `acl_only=true`).
    SharedWith(&'a UserId),
}

/// A comparison of a time column with an instant (Barbican's `gt:`, `gte:`, `lt:`,
/// `lte:` prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
    /// `=` (no prefix).
    Eq,
}

impl Compare {
    fn sql(self) -> &'static str {
        match self {
            Self::Gt => " > ",
            Self::Gte => " >= ",
            Self::Lt => " < ",
            Self::Lte => " <= ",
            Self::Eq => " = ",
        }
    }
}

/// A time column a listing can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// `created`.
    Created,
    /// `updated`.
    Updated,
    /// `expiration`.
    Expiration,
}

impl TimeColumn {
    fn sql(self) -> &'static str {
        match self {
            Self::Created => "s.created_ms",
            Self::Updated => "s.updated_ms",
            Self::Expiration => "s.expiration_ms",
        }
    }
}

/// A sort key of a listing (Barbican's `sort=<key>:<asc|desc>,…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Creation time.
    Created,
    /// Time of the last change.
    Updated,
    /// Expiration.
    Expiration,
    /// Name.
    Name,
    /// Algorithm.
    Algorithm,
    /// Mode.
    Mode,
    /// Bit length.
    BitLength,
    /// Secret type.
    SecretType,
}

impl SortKey {
    fn sql(self) -> &'static str {
        match self {
            Self::Created => "s.created_ms",
            Self::Updated => "s.updated_ms",
            Self::Expiration => "s.expiration_ms",
            Self::Name => "s.name",
            Self::Algorithm => "s.algorithm",
            Self::Mode => "s.mode",
            Self::BitLength => "s.bit_length",
            Self::SecretType => "s.secret_type",
        }
    }
}

/// Filters, sorting and paging of a secret listing (Barbican's query parameters).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Exact name.
    pub name: Option<String>,
    /// Exact secret type.
    pub secret_type: Option<String>,
    /// Exact algorithm (`alg`).
    pub algorithm: Option<String>,
    /// Exact mode.
    pub mode: Option<String>,
    /// Exact bit length (`bits`).
    pub bit_length: Option<i64>,
    /// Time ranges, all of which must hold.
    pub times: Vec<(TimeColumn, Compare, i64)>,
    /// Sort keys with `true` for descending; oldest first when empty.
    pub sort: Vec<(SortKey, bool)>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// A page of secrets and the total matching the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page.
    pub secrets: Vec<SecretRow>,
    /// All rows matching the filter.
    pub total: u64,
}

impl ReadModel {
    /// One page of the live secrets in `scope` that `keep` admits, in the filter's
    /// order (oldest first by default). `keep` is the caller's read policy, applied to
    /// every row before paging, so `total` and the pages count only what the caller
    /// may see.
    pub async fn list_secrets(
        &self,
        scope: ListScope<'_>,
        filter: &ListFilter,
        now: Timestamp,
        keep: impl Fn(&SecretRow) -> bool,
    ) -> Result<Snapshot<Page>, ReadError> {
        let mut tx = self.pool.begin().await?;
        let seq = checkpoint(&mut tx).await?;
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {SECRET_COLUMNS} "));
        match scope {
            ListScope::Project {
                project,
                user,
                admin,
            } => {
                q.push("FROM secrets s WHERE s.project = ")
                    .push_bind(project.as_str().to_owned());
                if !admin {
                    q.push(" AND (s.project_access = 1 OR s.creator = ")
                        .push_bind(user.as_str().to_owned())
                        .push(
                            " OR EXISTS (SELECT 1 FROM secret_acl_users u WHERE \
                             u.project = s.project AND u.secret_id = s.id AND u.user_id = ",
                        )
                        .push_bind(user.as_str().to_owned())
                        .push("))");
                }
            }
            ListScope::SharedWith(user) => {
                q.push(
                    "FROM secret_acl_users u JOIN secrets s ON s.project = u.project \
                     AND s.id = u.secret_id WHERE u.user_id = ",
                )
                .push_bind(user.as_str().to_owned());
            }
        }
        q.push(" AND s.status = 'active' AND (s.expiration_ms IS NULL OR s.expiration_ms > ")
            .push_bind(now.unix_millis())
            .push(")");
        let exact = [
            ("s.name", filter.name.clone()),
            ("s.secret_type", filter.secret_type.clone()),
            ("s.algorithm", filter.algorithm.clone()),
            ("s.mode", filter.mode.clone()),
        ];
        for (column, value) in exact {
            if let Some(value) = value {
                q.push(format!(" AND {column} = ")).push_bind(value);
            }
        }
        if let Some(bits) = filter.bit_length {
            q.push(" AND s.bit_length = ").push_bind(bits);
        }
        for (column, op, ms) in &filter.times {
            q.push(format!(" AND {}{}", column.sql(), op.sql()))
                .push_bind(*ms);
        }
        q.push(" ORDER BY ");
        for (key, desc) in &filter.sort {
            q.push(format!(
                "{} {}, ",
                key.sql(),
                if *desc { "DESC" } else { "ASC" }
            ));
        }
        q.push("s.created_ms, s.id");
        let mut rows = q.build().fetch(&mut *tx);
        let (first, end) = (
            u64::from(filter.offset),
            u64::from(filter.offset) + u64::from(filter.limit),
        );
        let mut page = Vec::new();
        let mut total = 0u64;
        while let Some(r) = rows.try_next().await? {
            let row = secret_row(&r)?;
            if !keep(&row) {
                continue;
            }
            if (first..end).contains(&total) {
                page.push(row);
            }
            total += 1;
        }
        drop(rows);
        tx.commit().await?;
        Ok(Snapshot {
            value: Page {
                secrets: page,
                total,
            },
            seq,
        })
    }
}
