//! The few operations the projection needs from a database, so that one fold writes
//! SQLite (rusqlite, synchronous: one hand-off per batch) and PostgreSQL (sqlx, from
//! the same blocking thread). The projection's SQL is written once, in the dialect both
//! accept (`?N` parameters, `ON CONFLICT` upserts); [`postgres_sql`] renumbers the
//! parameters for PostgreSQL.

use std::borrow::Cow;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Column, Row, TypeInfo};
use tokio::runtime::Handle;

pub use super::pending::Pending;

/// Why a write to the read model failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// SQLite failed.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed. (Not the error's source: its text is shown through
    /// `Described`, and sqlx's own, which a chain of causes would add, says "at line N".)
    #[error("{}", crate::pg_error::Described(.0))]
    Postgres(sqlx::Error),
    /// A value could not be encoded as JSON.
    #[error("encoding a column as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The read model holds a value the projector never writes.
    #[error("the read model is corrupt: {0}")]
    Corrupt(String),
    /// A thread opening a batch's commits panicked, or stopped before handing over
    /// every chunk it was dealt.
    #[error("a thread opening the batch's commits failed; the batch is retried")]
    OpenerStopped,
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Postgres(e)
    }
}

/// The type of a NULL parameter: PostgreSQL types every parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BIGINT`.
    Int,
    /// `TEXT`.
    Text,
    /// `BYTEA` / `BLOB`.
    Blob,
}

/// A parameter of a statement, or a column of a row read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// NULL of a type.
    Null(Kind),
    /// An integer (booleans are 0 and 1, as SQLite stores them).
    Int(i64),
    /// Text.
    Text(Cow<'a, str>),
    /// Bytes.
    Blob(Cow<'a, [u8]>),
}

impl Value<'_> {
    /// The integer, if this is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A Rust value as a statement parameter.
pub trait ToValue {
    /// The parameter.
    fn to_value(&self) -> Value<'_>;
}

/// A Rust type's SQL kind, for a NULL of it.
pub trait Typed {
    /// The kind.
    const KIND: Kind;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}
impl Typed for i64 {
    const KIND: Kind = Kind::Int;
}

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}
impl Typed for str {
    const KIND: Kind = Kind::Text;
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}
impl Typed for String {
    const KIND: Kind = Kind::Text;
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}
impl<T: Typed + ?Sized> Typed for &T {
    const KIND: Kind = T::KIND;
}

impl<T: ToValue + Typed> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        self.as_ref()
            .map_or(Value::Null(T::KIND), ToValue::to_value)
    }
}

/// The parameters of a statement: `params![a, b]`, each borrowed.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::apply::sql::ToValue::to_value(&$value)),*][..]
    };
}
pub(crate) use params;

/// A connection (in a transaction) the projection writes through.
pub trait Sql {
    /// Runs one statement.
    fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<(), ApplyError>;

    /// Runs a statement whose text is built at run time (a table name filled in).
    fn execute_dynamic(&mut self, sql: &str, params: &[Value<'_>]) -> Result<(), ApplyError>;

    /// The first row a query returns, if any.
    fn query_row(
        &mut self,
        sql: &'static str,
        params: &[Value<'_>],
    ) -> Result<Option<Vec<Value<'static>>>, ApplyError> {
        Ok(self.query_all(sql, params)?.into_iter().next())
    }

    /// Every row a query (built at run time) returns.
    fn query_all(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Vec<Vec<Value<'static>>>, ApplyError>;

    /// The writes that follow touch only the rows of the aggregate on `subject`
    /// (`None`: of no aggregate), so they may be reordered against other aggregates'
    /// writes ([`super::pending`]; SQLite runs each at once).
    fn aggregate(&mut self, subject: Option<&str>) {
        let _ = subject;
    }

    /// Tells readers in other processes, once the transaction commits, that the read
    /// model has applied `seq` (PostgreSQL: a NOTIFY on [`APPLIED_CHANNEL`]; SQLite
    /// readers poll the checkpoint).
    fn announce(&mut self, seq: u64) -> Result<(), ApplyError> {
        let _ = seq;
        Ok(())
    }
}

/// The PostgreSQL channel the projector NOTIFYs with each checkpoint it commits.
pub const APPLIED_CHANNEL: &str = "keyledger_applied";

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Null(_) => ValueRef::Null,
            Self::Int(i) => ValueRef::Integer(*i),
            Self::Text(t) => ValueRef::Text(t.as_bytes()),
            Self::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A SQLite connection (or transaction), with every statement prepared once.
pub struct Lite<'c>(pub &'c rusqlite::Connection);

impl Sql for Lite<'_> {
    fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<(), ApplyError> {
        self.execute_dynamic(sql, params)
    }

    fn execute_dynamic(&mut self, sql: &str, params: &[Value<'_>]) -> Result<(), ApplyError> {
        self.0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(())
    }

    fn query_all(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Vec<Vec<Value<'static>>>, ApplyError> {
        use rusqlite::types::ValueRef;
        let mut statement = self.0.prepare_cached(sql)?;
        let columns = statement.column_count();
        let rows = statement
            .query_map(rusqlite::params_from_iter(params), |r| {
                (0..columns)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => Value::Null(Kind::Text),
                            ValueRef::Integer(i) => Value::Int(i),
                            ValueRef::Real(f) => Value::Text(f.to_string().into()),
                            ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned().into())
                            }
                            ValueRef::Blob(b) => Value::Blob(b.to_vec().into()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// `sql` with its `?N` parameters written `$N`, as PostgreSQL wants them. The
/// projection's statements hold no `?` in a string literal.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// Most bytes of writes a [`Pg`] holds before sending them.
const PENDING_LIMIT: usize = 4 * 1024 * 1024;

/// A PostgreSQL connection (in a transaction) driven from a blocking thread.
///
/// Writes are not sent one by one: each is rendered with its parameters as literals
/// ([`postgres_literal`]) and queued in its aggregate's lane ([`Pending`]), and the
/// queue goes to PostgreSQL as one multi-statement simple query before any read, every
/// 4 MiB, and before the transaction commits ([`Pg::flush`]): one round trip per batch
/// instead of one per statement, with the rows of like INSERTs of many aggregates
/// joined into one statement. (Preparing each statement once and sending `EXECUTE`s
/// instead was slower by far: PostgreSQL's plan cache then keeps a plan chosen while
/// the tables were empty.) Reads are prepared statements with bound parameters.
pub struct Pg<'c> {
    /// The connection.
    pub conn: &'c mut PgConnection,
    /// The runtime whose reactor drives it.
    pub runtime: &'c Handle,
    /// Writes rendered and not sent yet.
    pub pending: &'c mut Pending,
}

impl Pg<'_> {
    fn bind<'q>(
        sql: &'q str,
        params: &'q [Value<'_>],
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in params {
            query = match p {
                Value::Null(Kind::Int) => query.bind(None::<i64>),
                Value::Null(Kind::Text) => query.bind(None::<String>),
                Value::Null(Kind::Blob) => query.bind(None::<Vec<u8>>),
                Value::Int(i) => query.bind(*i),
                Value::Text(t) => query.bind(t.as_ref()),
                Value::Blob(b) => query.bind(b.as_ref()),
            };
        }
        query
    }

    /// Queues a write.
    fn queue(&mut self, sql: &str, params: &[Value<'_>]) -> Result<(), ApplyError> {
        self.pending.push(sql, params)?;
        if self.pending.bytes() > PENDING_LIMIT {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the queued writes, in one round trip.
    pub fn flush(&mut self) -> Result<(), ApplyError> {
        let batch = self.pending.take();
        if batch.is_empty() {
            return Ok(());
        }
        self.runtime
            .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(batch)).execute(&mut *self.conn))?;
        Ok(())
    }
}

impl Sql for Pg<'_> {
    fn execute(&mut self, sql: &'static str, params: &[Value<'_>]) -> Result<(), ApplyError> {
        self.queue(sql, params)
    }

    fn execute_dynamic(&mut self, sql: &str, params: &[Value<'_>]) -> Result<(), ApplyError> {
        self.queue(sql, params)
    }

    fn query_all(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Vec<Vec<Value<'static>>>, ApplyError> {
        // A read sees every write before it.
        self.flush()?;
        let sql = postgres_sql(sql);
        let query = Self::bind(&sql, params);
        let rows = self.runtime.block_on(query.fetch_all(&mut *self.conn))?;
        rows.iter().map(owned).collect()
    }

    fn aggregate(&mut self, subject: Option<&str>) {
        self.pending.enter(subject);
    }

    fn announce(&mut self, seq: u64) -> Result<(), ApplyError> {
        self.queue(
            "SELECT pg_notify(?1, ?2)",
            &[
                Value::Text(APPLIED_CHANNEL.into()),
                Value::Text(seq.to_string().into()),
            ],
        )
    }
}

/// Appends `sql` to `out` with each `?N` replaced by [`postgres_literal`] of
/// `params[N - 1]`. The projection's statements hold no `?` in a string literal; a
/// parameter's text is never scanned again.
pub(super) fn render(sql: &str, params: &[Value<'_>], out: &mut String) -> Result<(), ApplyError> {
    let mut rest = sql;
    while let Some(at) = rest.find('?') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        let n: usize = rest[at + 1..at + 1 + digits]
            .parse()
            .map_err(|_| ApplyError::Corrupt(format!("a statement with a bare ?: {sql}")))?;
        let value = n
            .checked_sub(1)
            .and_then(|i| params.get(i))
            .ok_or_else(|| ApplyError::Corrupt(format!("no parameter {n} for {sql}")))?;
        postgres_literal(value, out);
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    Ok(())
}

/// `value` as a PostgreSQL literal of its type. Text is quoted with every `'` doubled,
/// which is all the quoting a literal needs while `standard_conforming_strings` is on
/// (the writer's session sets it; backslashes are then ordinary characters). A NUL,
/// which PostgreSQL text cannot hold and which would fail the batch again at every
/// retry, becomes U+FFFD (keyledger's own fields refuse control characters; only a
/// skipped message's reason could carry one). Numbers are parenthesized, so that a
/// negative one never makes `--` with a minus before it.
pub fn postgres_literal(value: &Value<'_>, out: &mut String) {
    use std::fmt::Write as _;
    match value {
        Value::Null(Kind::Int) => out.push_str("NULL::bigint"),
        Value::Null(Kind::Text) => out.push_str("NULL::text"),
        Value::Null(Kind::Blob) => out.push_str("NULL::bytea"),
        Value::Int(i) => {
            let _ = write!(out, "({i})::bigint");
        }
        Value::Text(t) => {
            out.push('\'');
            for c in t.chars() {
                match c {
                    '\'' => out.push_str("''"),
                    '\0' => out.push('\u{FFFD}'),
                    c => out.push(c),
                }
            }
            out.push_str("'::text");
        }
        Value::Blob(b) => {
            out.push_str("'\\x");
            for byte in b.iter() {
                let _ = write!(out, "{byte:02x}");
            }
            out.push_str("'::bytea");
        }
    }
}

/// A PostgreSQL row as [`Value`]s.
fn owned(row: &PgRow) -> Result<Vec<Value<'static>>, ApplyError> {
    (0..row.len())
        .map(|i| {
            let kind = row.column(i).type_info().name().to_owned();
            Ok(match kind.as_str() {
                "INT8" => row
                    .try_get::<Option<i64>, _>(i)?
                    .map_or(Value::Null(Kind::Int), Value::Int),
                "TEXT" | "VARCHAR" => row
                    .try_get::<Option<String>, _>(i)?
                    .map_or(Value::Null(Kind::Text), |t| Value::Text(t.into())),
                "BYTEA" => row
                    .try_get::<Option<Vec<u8>>, _>(i)?
                    .map_or(Value::Null(Kind::Blob), |b| Value::Blob(b.into())),
                other => {
                    return Err(ApplyError::Corrupt(format!(
                        "column {i} is of type {other}, which the projection never reads"
                    )));
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(sql: &str, params: &[Value<'_>]) -> String {
        let mut out = String::new();
        render(sql, params, &mut out).unwrap();
        out
    }

    #[test]
    fn writes_are_rendered_with_quoted_literals() {
        assert_eq!(
            rendered(
                "UPDATE t SET a = ?1, b = ?2, c = ?3 WHERE d = ?4 AND e - ?5 > 0 AND f = ?1",
                &[
                    Value::Text("it's ?2 \\ $$; --".into()),
                    Value::Null(Kind::Int),
                    Value::Blob(vec![0, 255].into()),
                    Value::Text("nul\0".into()),
                    Value::Int(-5),
                ]
            ),
            "UPDATE t SET a = 'it''s ?2 \\ $$; --'::text, b = NULL::bigint, \
             c = '\\x00ff'::bytea WHERE d = 'nul\u{FFFD}'::text AND e - (-5)::bigint > 0 \
             AND f = 'it''s ?2 \\ $$; --'::text"
        );
        let mut out = String::new();
        assert!(render("SELECT ?3", &[Value::Int(1)], &mut out).is_err());
    }

    #[test]
    fn parameters_are_renumbered_for_postgres() {
        assert_eq!(
            postgres_sql("UPDATE t SET a = ?1, b = COALESCE(b, ?12) WHERE c = ?1"),
            "UPDATE t SET a = $1, b = COALESCE(b, $12) WHERE c = $1"
        );
        assert_eq!(
            postgres_sql("SELECT '?' WHERE x = ?"),
            "SELECT '?' WHERE x = ?"
        );
    }
}
