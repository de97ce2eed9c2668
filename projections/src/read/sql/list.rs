//! A listing of secrets: Barbican's filters and sort keys as SQL.

use futures::TryStreamExt;
use sqlx::QueryBuilder;

use super::secrets::{checkpoint, secret_columns, secret_row};
use super::{Db, Reads};
use crate::read::{ListFilter, ListScope, Page, SecretRow};

impl Reads<'_> {
    /// The secrets of `scope` that pass `filter` and `keep`, one page of them, and the
    /// sequence they reflect.
    pub(crate) async fn list_secrets(
        &self,
        scope: ListScope<'_>,
        filter: &ListFilter,
        now_ms: i64,
        keep: impl Fn(&SecretRow) -> bool,
    ) -> Result<(Page, u64), sqlx::Error> {
        let mut conn = self.0.acquire().await?;
        let mut tx = super::begin(&mut conn).await?;
        let seq = checkpoint(&mut tx).await?;
        let mut q: QueryBuilder<Db> = QueryBuilder::new(format!("SELECT {} ", secret_columns()));
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
        if filter.include_pending_deletion {
            // A recovery window that has ended is a deletion, whether or not the
            // scheduler's purge has landed yet.
            q.push(
                " AND (s.status = 'active' OR (s.status = 'pending_deletion' \
                 AND s.purge_at_ms > ",
            )
            .push_bind(now_ms)
            .push("))");
        } else {
            q.push(" AND s.status = 'active'");
        }
        q.push(" AND (s.expiration_ms IS NULL OR s.expiration_ms > ")
            .push_bind(now_ms)
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
            // NULLs first going up, as SQLite orders them by default (PostgreSQL's
            // default is the other way round).
            q.push(format!(
                "{} {}, ",
                key.sql(),
                if *desc { "DESC NULLS LAST" } else { "ASC NULLS FIRST" }
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
        Ok((
            Page {
                secrets: page,
                total,
            },
            seq,
        ))
    }
}
