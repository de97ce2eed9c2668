//! A listing of secrets: Barbican's filters and sort keys as SQL.

use futures::TryStreamExt;
use sqlx::QueryBuilder;

use sqlx::Row as _;

use super::secrets::{checkpoint, secret_columns, secret_row};
use super::{Db, DbRow, Reads};
use crate::read::{KeyValue, Position, SortKey};
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
        debug_assert!(
            filter.after.is_none() || filter.sort.len() <= 1,
            "paging by position takes at most one sort key"
        );
        let first_key = filter.sort.first().copied();
        let mut q: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {}, s.created_ms AS page_created, {} AS page_key ",
            secret_columns(),
            first_key.map_or("NULL", |(key, _)| key.sql())
        ));
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
        if let Some(after) = &filter.after {
            q.push(" AND ");
            push_after(&mut q, first_key, after);
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
        let mut last = None;
        while let Some(r) = rows.try_next().await? {
            let row = secret_row(&r)?;
            if !keep(&row) {
                continue;
            }
            if (first..end).contains(&total) {
                last = Some(position(&r, first_key.map(|(key, _)| key), &row)?);
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
                last,
            },
            seq,
        ))
    }
}

/// The position of the listed row `r` (`row`, read from it).
fn position(r: &DbRow, key: Option<SortKey>, row: &SecretRow) -> Result<Position, sqlx::Error> {
    let key = match key {
        None => None,
        Some(k) if k.is_integer() => r.try_get::<Option<i64>, _>("page_key")?.map(KeyValue::Integer),
        Some(_) => r.try_get::<Option<String>, _>("page_key")?.map(KeyValue::Text),
    };
    Ok(Position {
        key,
        created_ms: r.try_get("page_created")?,
        id: row.id.to_string(),
    })
}

/// The condition of rows after `after` in the order `ORDER BY` gives (the first sort
/// key, NULLs first going up and last going down, then `created_ms` and `id` going
/// up), compared by the database itself so that its collation decides both.
fn push_after(q: &mut QueryBuilder<Db>, first: Option<(SortKey, bool)>, after: &Position) {
    let ties = |q: &mut QueryBuilder<Db>| {
        q.push("(s.created_ms > ")
            .push_bind(after.created_ms)
            .push(" OR (s.created_ms = ")
            .push_bind(after.created_ms)
            .push(" AND s.id > ")
            .push_bind(after.id.clone())
            .push("))");
    };
    let value = |q: &mut QueryBuilder<Db>, v: &KeyValue| match v {
        KeyValue::Integer(n) => {
            q.push_bind(*n);
        }
        KeyValue::Text(t) => {
            q.push_bind(t.clone());
        }
    };
    let Some((key, desc)) = first else {
        ties(q);
        return;
    };
    let k = key.sql();
    match (&after.key, desc) {
        // Going up from a NULL: the other NULLs after it, then every value.
        (None, false) => {
            q.push(format!("({k} IS NOT NULL OR ({k} IS NULL AND "));
            ties(q);
            q.push("))");
        }
        // Going down, NULLs come last: only the NULLs after it.
        (None, true) => {
            q.push(format!("({k} IS NULL AND "));
            ties(q);
            q.push(")");
        }
        (Some(v), desc) => {
            q.push(format!("({k}{}", if desc { " < " } else { " > " }));
            value(q, v);
            q.push(format!(" OR ({k} = "));
            value(q, v);
            q.push(" AND ");
            ties(q);
            q.push(")");
            if desc {
                q.push(format!(" OR {k} IS NULL"));
            }
            q.push(")");
        }
    }
}
