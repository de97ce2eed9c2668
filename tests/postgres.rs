//! The PostgreSQL read model, on a real PostgreSQL server (Debian's `postgresql`,
//! started in a temporary directory): its migrations give the schema SQLite's give,
//! and every Barbican read answers on it exactly as on SQLite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::postgres_server::ManagedPostgres;
use projections::db::Pool;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;

use crate::support::{TestStack, read_model};

async fn postgres() -> ManagedPostgres {
    ManagedPostgres::start(keyledger::stack::free_port().unwrap())
        .await
        .expect("PostgreSQL starts (apt-get install postgresql)")
}

/// A column as both dialects can state it: table, name, type, NOT NULL, in the
/// primary key.
type ColumnShape = (String, String, &'static str, bool, bool);

async fn sqlite_schema(
    pool: &projections::db::SqliteReads,
) -> (BTreeSet<ColumnShape>, BTreeSet<String>) {
    let mut conn = pool.acquire().await.unwrap();
    let rows = sqlx::query(
        "SELECT m.name AS tbl, p.name AS col, p.type AS ty, p.\"notnull\" AS nn, p.pk AS pk \
         FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
         AND m.name NOT LIKE 'sqlite%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let columns = rows
        .iter()
        .map(|r| {
            let ty = match r.get::<String, _>("ty").as_str() {
                "INTEGER" => "integer",
                "TEXT" => "text",
                "BLOB" => "bytes",
                other => panic!("an unexpected SQLite type {other}"),
            };
            let pk = r.get::<i64, _>("pk") > 0;
            // A primary key is never NULL in PostgreSQL; SQLite states it only on
            // tables WITHOUT ROWID.
            let not_null = r.get::<i64, _>("nn") == 1 || pk;
            (r.get("tbl"), r.get("col"), ty, not_null, pk)
        })
        .collect();
    let indexes = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    (columns, indexes)
}

async fn postgres_schema(pool: &sqlx::PgPool) -> (BTreeSet<ColumnShape>, BTreeSet<String>) {
    let rows = sqlx::query(
        "SELECT c.table_name::text AS tbl, c.column_name::text AS col, \
         c.data_type::text AS ty, c.is_nullable = 'NO' AS nn, \
         EXISTS (SELECT 1 FROM information_schema.table_constraints t \
           JOIN information_schema.key_column_usage k \
           ON k.constraint_name = t.constraint_name AND k.table_name = t.table_name \
           WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_name = c.table_name \
           AND k.column_name = c.column_name) AS pk \
         FROM information_schema.columns c \
         WHERE c.table_schema = 'public' AND c.table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let columns = rows
        .iter()
        .map(|r| {
            let ty = match r.get::<String, _>("ty").as_str() {
                "bigint" => "integer",
                "text" => "text",
                "bytea" => "bytes",
                other => panic!("an unexpected PostgreSQL type {other}"),
            };
            (r.get("tbl"), r.get("col"), ty, r.get("nn"), r.get("pk"))
        })
        .collect();
    let indexes = sqlx::query_scalar::<_, String>(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
         AND indexname NOT LIKE '%\\_pkey'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    (columns, indexes)
}

/// The migrations of both dialects, run on real databases, give the same tables,
/// columns (type, NOT NULL, primary key) and indexes.
#[tokio::test]
async fn both_dialects_migrate_to_one_schema() {
    let pg = postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = projections::db::sqlite_url(&dir.path().join("rm.sqlite"));
    let Pool::Sqlite(sqlite) = projections::db::open(&sqlite_url, 1).await.unwrap() else {
        unreachable!("a sqlite:// URL")
    };
    let Pool::Postgres(postgres) = projections::db::open(&pg.url(), 1).await.unwrap() else {
        unreachable!("a postgres:// URL")
    };
    let (lite_columns, lite_indexes) = sqlite_schema(&sqlite).await;
    let (pg_columns, pg_indexes) = postgres_schema(&postgres).await;
    assert!(lite_columns.len() > 80, "{lite_columns:?}");
    let only = |a: &BTreeSet<ColumnShape>, b: &BTreeSet<ColumnShape>| {
        a.difference(b).cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        (
            only(&lite_columns, &pg_columns),
            only(&pg_columns, &lite_columns)
        ),
        (vec![], vec![]),
        "(only in SQLite, only in PostgreSQL)"
    );
    assert_eq!(lite_indexes, pg_indexes);
    // Opening again (as every replica does) finds the schema current.
    projections::db::open(&pg.url(), 1).await.unwrap();
}

/// Replaces what differs between two runs of one scenario (ids, times, hashes over
/// them, sequence numbers, the stack's address) by what it stands for; ids are
/// numbered in order of first sight.
#[derive(Default)]
struct Normalizer {
    seen: BTreeMap<String, String>,
}

impl Normalizer {
    fn text(&mut self, text: &str) -> String {
        // The stack's address, wherever it appears.
        let mut unaddressed = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("http://127.0.0.1:") {
            unaddressed.push_str(&rest[..at]);
            unaddressed.push_str("<api>");
            rest = rest[at + "http://127.0.0.1:".len()..]
                .trim_start_matches(|c: char| c.is_ascii_digit());
        }
        unaddressed.push_str(rest);
        let mut out = String::new();
        let mut rest = unaddressed.as_str();
        // UUIDs, numbered in order of first sight.
        while let Some(at) = find_uuid(rest) {
            out.push_str(&rest[..at]);
            let uuid = &rest[at..at + 36];
            let n = self.seen.len();
            out.push_str(
                self.seen
                    .entry(uuid.to_owned())
                    .or_insert_with(|| format!("<id{n}>")),
            );
            rest = &rest[at + 36..];
        }
        out.push_str(rest);
        out
    }

    fn value(&mut self, value: &Value) -> Value {
        match value {
            Value::String(s) if looks_like_time(s) => json!("<time>"),
            Value::String(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                json!("<hash>")
            }
            Value::String(s) => json!(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.value(v)).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| {
                        let v = match k.as_str() {
                            "seq" | "sequence" | "applied_seq" => json!("<seq>"),
                            _ => self.value(v),
                        };
                        (self.text(k), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn find_uuid(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    (0..bytes.len().saturating_sub(35)).find(|&i| {
        bytes[i..i + 36].iter().enumerate().all(|(j, b)| match j {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit() && !b.is_ascii_uppercase(),
        })
    })
}

/// RFC 3339, or Barbican's ISO 8601 without an offset (`2026-12-02T15:47:08.054731`).
fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() >= 19
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

/// One request of the scenario and its answer, normalized.
struct Run<'a> {
    t: &'a TestStack,
    admin: String,
    bob: String,
    normalizer: Normalizer,
    answers: Vec<String>,
    /// The sequence of the last write: every read waits for it.
    seq: u64,
}

impl Run<'_> {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self
            .t
            .http
            .request(method.clone(), self.t.url(path))
            .bearer_auth(token)
            // Barbican 1.1: secret consumers.
            .header("OpenStack-API-Version", "key-manager 1.1")
            .header("X-Keyledger-Min-Seq", self.seq.to_string());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        if let Some(seq) = response.headers().get("x-keyledger-seq")
            && method != Method::GET
        {
            self.seq = self.seq.max(seq.to_str().unwrap().parse().unwrap());
        }
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let shown = self.normalizer.value(&body);
        let path = self.normalizer.text(path);
        self.answers
            .push(format!("{method} {path} -> {status}: {shown}"));
        body
    }

    async fn get(&mut self, path: &str) -> Value {
        let token = self.admin.clone();
        self.send(Method::GET, path, &token, None).await
    }

    async fn write(&mut self, method: Method, path: &str, body: Value) -> Value {
        let token = self.admin.clone();
        self.send(method, path, &token, Some(body)).await
    }
}

/// The sequence of the last commit in the event stream.
async fn last_seq(t: &TestStack) -> u64 {
    let js = async_nats::jetstream::new(t.service_nats().await);
    js.get_stream("KEYLEDGER")
        .await
        .unwrap()
        .cached_info()
        .state
        .last_sequence
}

fn last_segment(url: &Value) -> String {
    url.as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

/// Writes through every kind of aggregate, then every read the Barbican API (and
/// keyledger's extensions) makes of the read model; returns each answer.
async fn scenario(t: &TestStack) -> Vec<String> {
    let mut run = Run {
        t,
        admin: t.token("alice", "p1"),
        bob: t.token_with("bob", "p1", &["observer"]),
        normalizer: Normalizer::default(),
        answers: Vec::new(),
        seq: 0,
    };
    let db = run
        .write(
            Method::POST,
            "/v1/secrets",
            json!({"name": "db", "payload": "first", "payload_content_type": "text/plain",
                   "algorithm": "aes", "bit_length": 256, "mode": "cbc"}),
        )
        .await;
    let db = last_segment(&db["secret_ref"]);
    run.write(
        Method::POST,
        "/v1/secrets",
        json!({"name": "api", "secret_type": "passphrase", "expiration": "2999-01-01T00:00:00Z"}),
    )
    .await;
    run.write(
        Method::POST,
        "/v1/secrets",
        json!({"payload": "AAEC", "payload_content_type": "application/octet-stream",
               "payload_content_encoding": "base64", "bit_length": 128}),
    )
    .await;
    let gone = run
        .write(
            Method::POST,
            "/v1/secrets",
            json!({"name": "o'gone\\?2", "payload": "x", "payload_content_type": "text/plain"}),
        )
        .await;
    let gone = last_segment(&gone["secret_ref"]);
    run.write(
        Method::PUT,
        &format!("/v1/secrets/{db}/metadata"),
        // Text that SQL quoting must carry intact.
        json!({"metadata": {"owner": "ops", "tier": "1",
                            "quoted": "it's \\ ?1 $$x$$ ';-- é 🔑"}}),
    )
    .await;
    run.write(
        Method::POST,
        &format!("/v1/secrets/{db}/versions"),
        json!({"payload": "second", "payload_content_type": "text/plain"}),
    )
    .await;
    run.write(
        Method::POST,
        &format!("/v1/secrets/{db}/consumers"),
        json!({"service": "image", "resource_type": "image", "resource_id": "img-1"}),
    )
    .await;
    run.write(
        Method::PUT,
        &format!("/v1/secrets/{db}/acl"),
        json!({"read": {"users": ["bob"], "project-access": false}}),
    )
    .await;
    let container = run
        .write(
            Method::POST,
            "/v1/containers",
            json!({"type": "generic", "name": "bundle", "secret_refs": [
                {"name": "db", "secret_ref": format!("{}/v1/secrets/{db}", t.url("")) },
                {"name": "gone", "secret_ref": format!("{}/v1/secrets/{gone}", t.url("")) }]}),
        )
        .await;
    let container = last_segment(&container["container_ref"]);
    run.write(
        Method::POST,
        &format!("/v1/containers/{container}/consumers"),
        json!({"name": "lb", "URL": "https://lb.example"}),
    )
    .await;
    for id in ["AKLGPOSTGRES00000001", "AKLGPOSTGRES00000002"] {
        run.write(
            Method::POST,
            "/v1/access-keys",
            json!({"access_key_id": id, "secret_access_key": "a-secret-of-20-chars",
                   "user": "bob", "roles": ["observer"]}),
        )
        .await;
    }
    let token = run.admin.clone();
    run.send(
        Method::DELETE,
        "/v1/access-keys/AKLGPOSTGRES00000002",
        &token,
        None,
    )
    .await;
    run.send(Method::DELETE, &format!("/v1/secrets/{gone}"), &token, None)
        .await;
    // The order last: the worker's commits then come after every other write.
    let order = run
        .write(
            Method::POST,
            "/v1/orders",
            json!({"type": "key", "meta": {"name": "k", "algorithm": "aes", "bit_length": 256}}),
        )
        .await;
    let order = last_segment(&order["order_ref"]);
    let settled =
        crate::support::eventually("the order to settle", Duration::from_secs(30), || {
            let request = t
                .http
                .get(t.url(&format!("/v1/orders/{order}")))
                .bearer_auth(&token);
            async move {
                let order: Value = request.send().await.ok()?.json().await.ok()?;
                (order["status"] != "PENDING").then_some(order)
            }
        })
        .await;
    assert_eq!(settled["status"], "ACTIVE", "{settled}");
    let key = last_segment(&settled["secret_ref"]);
    run.seq = run.seq.max(last_seq(t).await);

    for path in [
        format!("/v1/secrets/{db}"),
        format!("/v1/secrets/{db}/payload"),
        "/v1/secrets/db/payload".to_owned(),
        format!("/v1/secrets/{db}/metadata"),
        format!("/v1/secrets/{db}/metadata/owner"),
        format!("/v1/secrets/{db}/versions"),
        format!("/v1/secrets/{db}/versions/AWSCURRENT"),
        format!("/v1/secrets/{db}/versions/AWSPREVIOUS/payload"),
        format!("/v1/secrets/{db}/consumers"),
        format!("/v1/secrets/{db}/acl"),
        format!("/v1/secrets/{db}/history"),
        format!("/v1/secrets/{gone}"),
        format!("/v1/secrets/{key}"),
        "/v1/secrets".to_owned(),
        "/v1/secrets?sort=name:desc,bit_length".to_owned(),
        "/v1/secrets?sort=bit_length:asc&limit=2&offset=1".to_owned(),
        "/v1/secrets?name=db".to_owned(),
        "/v1/secrets?alg=aes&bits=256".to_owned(),
        "/v1/secrets?created=gt:2000-01-01T00:00:00Z".to_owned(),
        "/v1/secrets?acl_only=true".to_owned(),
        format!("/v1/containers/{container}"),
        "/v1/containers".to_owned(),
        format!("/v1/containers/{container}/consumers"),
        format!("/v1/orders/{order}"),
        "/v1/orders".to_owned(),
        "/v1/access-keys?all=true".to_owned(),
    ] {
        run.get(&path).await;
    }
    // What another user of the project sees: only what the ACLs give them.
    let bob = run.bob.clone();
    for path in [
        "/v1/secrets",
        "/v1/secrets?acl_only=true",
        "/v1/containers",
        "/v1/access-keys",
    ] {
        run.send(Method::GET, path, &bob, None).await;
    }
    run.send(
        Method::GET,
        &format!("/v1/secrets/{db}/payload"),
        &bob,
        None,
    )
    .await;
    run.answers
}

/// The log of `t` (a stack on SQLite), rebuilt into a new database of `pg` in one
/// batch, leaves every row `t`'s live projector left: the rebuild runs each commit's
/// writes in its aggregate's lane and joins like INSERTs of many aggregates into one
/// statement (`projections/src/apply/pending.rs`), where the live projector on SQLite
/// applied the commits as they came.
async fn rebuilt_in_one_batch_as_live(pg: &ManagedPostgres, t: &TestStack) {
    let admin = projections::db::open(&pg.url(), 1).await.unwrap();
    let Pool::Postgres(admin) = admin else {
        panic!("a PostgreSQL pool")
    };
    sqlx::query("CREATE DATABASE rebuilt")
        .execute(&admin)
        .await
        .unwrap();
    let url = pg.url().replace("/keyledger?", "/rebuilt?");
    assert_ne!(url, pg.url());
    let writer = projections::db::open_writer(&url, projections::writer::WriterSizes::PROJECTOR)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(t.service_nats().await);
    let config = projections::projector::ProjectorConfig::default();
    let seq = projections::projector::rebuild(
        writer,
        &js,
        &config,
        (*t.stack.keys.commit).clone(),
        false,
    )
    .await
    .unwrap();
    let live = Pool::Sqlite(read_model::open(&t.dir.path().join("readmodel.sqlite")).await);
    crate::support::eventually(
        "the live projector to apply the log",
        Duration::from_secs(30),
        || {
            let live = live.clone();
            async move { (read_model::checkpoint_of(&live).await == seq).then_some(()) }
        },
    )
    .await;
    let rebuilt = projections::db::open(&url, 1).await.unwrap();
    let rows = read_model::dump_of(&rebuilt).await;
    assert!(rows.len() > 25, "{rows:#?}");
    assert_eq!(rows, read_model::dump_of(&live).await);
}

/// The same writes and reads, on SQLite and on PostgreSQL, answer the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_answers_on_postgres_as_on_sqlite() {
    let pg = postgres().await;
    let on_sqlite = TestStack::start().await;
    let lite = scenario(&on_sqlite).await;
    rebuilt_in_one_batch_as_live(&pg, &on_sqlite).await;
    on_sqlite.stop().await;
    let url = pg.url();
    let on_postgres = TestStack::start_with(|c| c.database_url = Some(url)).await;
    let postgres = scenario(&on_postgres).await;
    on_postgres.stop().await;
    assert!(lite.len() > 40, "{lite:#?}");
    // Each answer is a read that worked, or a write that was taken: the scenario is
    // not comparing two sets of errors.
    for answer in &lite {
        assert!(
            [" -> 200 ", " -> 201 ", " -> 202 ", " -> 204 ", " -> 404 "]
                .iter()
                .any(|s| answer.contains(s)),
            "{answer}"
        );
    }
    for (i, (l, p)) in lite.iter().zip(&postgres).enumerate() {
        assert_eq!(l, p, "answer {i} differs (SQLite, then PostgreSQL)");
    }
    assert_eq!(lite.len(), postgres.len());
}

/// AWS's listing pages by position on PostgreSQL too, whose dialect compares the
/// positions (NULL names, times, ids) itself.
#[tokio::test]
async fn aws_listing_pages_hold_their_place_on_postgres() {
    let pg = postgres().await;
    let url = pg.url();
    let t = TestStack::start_with(|c| c.database_url = Some(url)).await;
    crate::lifecycle::listing_pages_hold_their_place(&t).await;
    t.stop().await;
}

/// A quiet read model is never behind the log, so readiness also asks the database:
/// with PostgreSQL gone the API is not ready (`api.read_model_reachable`) and a read
/// answers 503 once its wait for a connection ends, not 200 or a hang.
#[tokio::test]
async fn an_api_whose_postgresql_is_gone_is_not_ready() {
    let pg = postgres().await;
    let url = pg.url();
    let t = TestStack::start_with(|c| c.database_url = Some(url)).await;
    let token = t.token("alice", "p1");
    let id = t.create_text(&token, "kept", "v").await;
    let ready = || async {
        let r = t.http.get(t.url("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    };
    let (status, report) = ready().await;
    assert_eq!(status, 200, "{report}");
    pg.stop().await;
    let (status, report) = ready().await;
    assert_eq!(status, 503, "{report}");
    let failing = crate::support::failing_checks(&report);
    assert!(failing.contains(&"api.read_model_reachable"), "{report}");
    let read = t.get(&format!("/v1/secrets/{id}"), &token).await;
    assert_eq!(read.status(), 503);
    t.stop().await;
}

/// `url` as `role` (a role of `pg`'s server) would connect.
fn as_role(pg: &ManagedPostgres, role: &str) -> String {
    let url = pg.url().replacen("keyledger@", &format!("{role}@"), 1);
    assert_ne!(url, pg.url());
    url
}

/// Messages that are no keyledger commits at sequences `seqs`: the projection records
/// them as skipped, which moves the checkpoint without a command service.
fn foreign(seqs: std::ops::RangeInclusive<u64>) -> Vec<projections::writer::Stored> {
    seqs.map(|seq| projections::writer::Stored {
        seq,
        subject: "not.a.commit".into(),
        payload: b"{}".as_slice().into(),
    })
    .collect()
}

fn commit_key() -> std::sync::Arc<domain::commit::CommitKey> {
    std::sync::Arc::new(domain::commit::CommitKey::new([7; 32]))
}

/// Any role that may connect can NOTIFY the projector's channel, with any sequence:
/// an API replica only wakes on it and reads the checkpoint the projector wrote, so
/// a false sequence never lets a read that waits for its write see an older model.
#[tokio::test]
async fn a_false_notification_never_moves_a_readers_sequence() {
    let pg = postgres().await;
    let Pool::Postgres(pool) = projections::db::open(&pg.url(), 2).await.unwrap() else {
        panic!("a PostgreSQL pool")
    };
    sqlx::query("CREATE ROLE intruder LOGIN")
        .execute(&pool)
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    // No periodic re-read during the test: only notifications move the sequence.
    let mut applied =
        projections::read::listen_checkpoint(pool.clone(), Duration::from_secs(3600), shutdown);
    crate::support::eventually("the reader to LISTEN", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let listening: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (listening == 1).then_some(())
        }
    })
    .await;

    let mut intruder = <sqlx::PgConnection as sqlx::Connection>::connect(&as_role(&pg, "intruder"))
        .await
        .unwrap();
    sqlx::query("NOTIFY keyledger_applied, '1000000'")
        .execute(&mut intruder)
        .await
        .unwrap();
    // Then the projector commits sequences 1 and 2, and notifies 2: the reader gets
    // both notifications, in that order.
    let writer =
        projections::db::open_writer(&pg.url(), projections::writer::WriterSizes::PROJECTOR)
            .await
            .unwrap();
    writer.apply(foreign(1..=2), commit_key(), 0).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|seq| *seq >= 2))
        .await
        .expect("the reader follows the projector")
        .unwrap();
    assert_eq!(*applied.borrow(), 2);

    // A rebuild clears the read model. A read that began at sequence 2 answers 503
    // rather than from the emptied tables, and readers follow the checkpoint back at
    // once (the clear NOTIFYs), so reads that name a sequence wait for it again.
    let (_at, at_two) = tokio::sync::watch::channel(2);
    let reader = projections::read::ReadModel::new(Pool::Postgres(pool.clone()), at_two);
    writer.clear(false).await.unwrap();
    let now = domain::timestamp::Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
    let read = reader
        .get_secret(domain::ids::SecretId::from_uuid(uuid::Uuid::nil()), now)
        .await;
    assert!(
        matches!(
            read,
            Err(projections::read::ReadError::WentBack { floor: 2, seq: 0 })
        ),
        "{read:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|seq| *seq == 0))
        .await
        .expect("the reader follows the checkpoint back")
        .unwrap();
    writer.apply(foreign(1..=1), commit_key(), 0).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|seq| *seq == 1))
        .await
        .expect("the reader follows the rebuild")
        .unwrap();
}

/// The read model lives in one schema for every component, whatever schemas appear
/// later: with PostgreSQL's default search path a schema named after the role would
/// be searched first, and a component started after it would migrate a second,
/// empty read model into it. A URL may name another schema; a role that may only
/// read starts an API replica on a migrated read model.
#[tokio::test]
async fn every_component_finds_the_read_model_in_one_schema() {
    let pg = postgres().await;
    let url = pg.url();
    let writer = projections::db::open_writer(&url, projections::writer::WriterSizes::PROJECTOR)
        .await
        .unwrap();
    writer.apply(foreign(1..=2), commit_key(), 0).await.unwrap();
    drop(writer);
    let Pool::Postgres(admin) = projections::db::open(&url, 1).await.unwrap() else {
        panic!("a PostgreSQL pool")
    };
    for sql in [
        "CREATE SCHEMA keyledger AUTHORIZATION keyledger",
        "CREATE SCHEMA elsewhere AUTHORIZATION keyledger",
        "CREATE ROLE reader LOGIN",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader",
        // Settings of the role that would end the projector's session, and with it
        // the lock, between two quiet batches.
        "ALTER ROLE keyledger SET idle_session_timeout = '300ms'",
        "ALTER ROLE keyledger SET idle_in_transaction_session_timeout = '300ms'",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .unwrap();
    }

    // A projector and an API replica started now find the read model as it was.
    let writer = projections::db::open_postgres_writer_when_free(
        &url,
        match projections::db::target(&url).unwrap() {
            projections::db::Target::Postgres(options) => *options,
            projections::db::Target::Sqlite(_) => unreachable!("a postgres:// URL"),
        },
    )
    .await
    .unwrap();
    assert_eq!(writer.checkpoint().await.unwrap(), 2);
    crate::support::eventually(
        "the projector's session to be idle for longer than the role's idle timeout",
        Duration::from_secs(10),
        || {
            let admin = admin.clone();
            async move {
                let idle: Option<f64> = sqlx::query_scalar(
                    "SELECT extract(epoch FROM now() - state_change)::float8 \
                     FROM pg_stat_activity WHERE state = 'idle' \
                     AND application_name LIKE 'keyledger-projector-%'",
                )
                .fetch_optional(&admin)
                .await
                .unwrap();
                idle.is_some_and(|s| s > 1.0).then_some(())
            }
        },
    )
    .await;
    // The same session writes: it was not ended.
    writer.apply(foreign(3..=3), commit_key(), 2).await.unwrap();
    let api = projections::db::open(&url, 2).await.unwrap();
    assert_eq!(read_model::checkpoint_of(&api).await, 3);
    let reader = projections::db::open(&as_role(&pg, "reader"), 2)
        .await
        .expect("a role that may only read opens a migrated read model");
    assert_eq!(read_model::checkpoint_of(&reader).await, 3);

    let tables_in = |schema: &'static str| {
        let admin = admin.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
                .bind(schema)
                .fetch_one(&admin)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(tables_in("keyledger").await, 0);
    assert_eq!(tables_in("elsewhere").await, 0);
    let in_public = tables_in("public").await;
    assert!(in_public >= 14, "{in_public}");

    // A URL that names a schema gets a read model of its own there.
    let other = format!("{url}&options=-c%20search_path%3Delsewhere");
    drop(writer);
    let other_writer = projections::db::open_postgres_writer_when_free(
        &other,
        match projections::db::target(&other).unwrap() {
            projections::db::Target::Postgres(options) => *options,
            projections::db::Target::Sqlite(_) => unreachable!("a postgres:// URL"),
        },
    )
    .await
    .unwrap();
    assert_eq!(other_writer.checkpoint().await.unwrap(), 0);
    assert_eq!(tables_in("elsewhere").await, in_public);
    assert_eq!(read_model::checkpoint_of(&api).await, 3);

    // A URL that names no schema, on a database whose read model lives in another
    // one (a deployment from before the path was pinned, its tables in the role's
    // schema): refused, never answered from a new, empty read model.
    sqlx::query("CREATE DATABASE moved")
        .execute(&admin)
        .await
        .unwrap();
    let moved = url.replace("/keyledger?", "/moved?");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&moved)
        .await
        .unwrap();
    sqlx::query("CREATE SCHEMA keyledger AUTHORIZATION keyledger")
        .execute(&mut conn)
        .await
        .unwrap();
    projections::db::open(&format!("{moved}&options=-c%20search_path%3Dkeyledger"), 1)
        .await
        .unwrap();
    let err = projections::db::open(&moved, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schema keyledger holds a keyledger read model")
            && err.contains("options=-c%20search_path%3Dkeyledger"),
        "{err}"
    );
    let public: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(public, 0);

    // A role that may not read the migrations table is told so.
    for sql in [
        "CREATE ROLE blind LOGIN",
        "GRANT SELECT ON checkpoints TO blind",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .unwrap();
    }
    let err = projections::db::open(&as_role(&pg, "blind"), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("_sqlx_migrations") && err.contains("needs SELECT on it"),
        "{err}"
    );
}

/// A read model on another machine's PostgreSQL is reached over TLS, the server's
/// certificate verified against the CA the URL names (`sslmode=verify-full`,
/// `sslrootcert`), keyledger logging in with a client certificate (PostgreSQL's
/// `cert` authentication): the projector and the API both connect that way, every one
/// of their sessions is encrypted, and a server certificate from another CA or for
/// another name, a plain connection or one without the client certificate is refused,
/// saying why.
#[tokio::test]
async fn the_read_model_is_reached_over_verified_tls() {
    use crate::support::certs::{Ca, days};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "pg-ca");
    let (cert, key) = ca.issue(
        dir.path(),
        "server",
        &["localhost"],
        false,
        (days(-1), days(30)),
    );
    let client = ca.issue(
        dir.path(),
        "client",
        &["keyledger"],
        true,
        (days(-1), days(30)),
    );
    let tls = infra::postgres_server::ServerTls {
        cert,
        key,
        client_ca: ca.file.clone(),
    };
    let pg = ManagedPostgres::start_with_tls(keyledger::stack::free_port().unwrap(), &tls)
        .await
        .expect("PostgreSQL starts with TLS (apt-get install postgresql)");
    let over_tcp = |query: String| {
        format!(
            "postgres://keyledger@localhost:{}/keyledger?{query}",
            pg.port()
        )
    };
    let verified = |root: &Path, client: Option<&(PathBuf, PathBuf)>| {
        let mut query = format!("sslmode=verify-full&sslrootcert={}", root.display());
        if let Some((cert, key)) = client {
            query.push_str(&format!(
                "&sslcert={}&sslkey={}",
                cert.display(),
                key.display()
            ));
        }
        over_tcp(query)
    };

    let url = verified(&ca.file, Some(&client));
    let t = TestStack::start_with(|c| c.database_url = Some(url)).await;
    let token = t.token("alice", "p1");
    let id = t.create_text(&token, "over-tls", "tls-canary").await;
    let payload = t.get(&format!("/v1/secrets/{id}/payload"), &token).await;
    assert_eq!(payload.status(), 200);
    assert_eq!(payload.text().await.unwrap(), "tls-canary");

    // Every session keyledger holds over TCP is encrypted (the admin's below comes
    // through the socket: no client address).
    let Pool::Postgres(admin) = projections::db::open(&pg.url(), 1).await.unwrap() else {
        panic!("a PostgreSQL pool")
    };
    let (encrypted, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.usename = 'keyledger' AND a.client_addr IS NOT NULL",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(
        encrypted >= 2,
        "the projector's and the API's sessions: {encrypted}"
    );
    assert_eq!(plain, 0);
    t.stop().await;

    let refused = |url: String| async move {
        match projections::db::open(&url, 1).await {
            Ok(_) => panic!("{url} was let in"),
            Err(e) => e.to_string(),
        }
    };
    let other = Ca::new(dir.path(), "other-ca");
    let wrong_root = refused(verified(&other.file, Some(&client))).await;
    assert!(
        wrong_root.contains("UnknownIssuer") && wrong_root.contains("sslrootcert must name the CA"),
        "{wrong_root}"
    );
    // A standby (`serve projector`) refused the same fails at once, rather than wait
    // through what no new session would mend.
    let foreign_root = verified(&other.file, Some(&client));
    let options = match projections::db::target(&foreign_root).unwrap() {
        projections::db::Target::Postgres(options) => *options,
        projections::db::Target::Sqlite(_) => unreachable!("a postgres:// URL"),
    };
    let standby = tokio::time::timeout(
        Duration::from_secs(30),
        projections::db::open_postgres_writer_when_free(&foreign_root, options),
    )
    .await
    .expect("a standby refused by TLS fails at once");
    let standby = standby.map(drop).unwrap_err().to_string();
    assert!(
        standby.contains("UnknownIssuer") && standby.contains("sslrootcert must name the CA"),
        "{standby}"
    );
    let wrong_name =
        refused(verified(&ca.file, Some(&client)).replace("@localhost:", "@127.0.0.1:")).await;
    assert!(
        wrong_name.contains("certificate not valid for name \"127.0.0.1\""),
        "verify-full checks the host's name: {wrong_name}"
    );
    let no_client_cert = refused(verified(&ca.file, None)).await;
    assert!(no_client_cert.contains("certificate"), "{no_client_cert}");
    let plain = refused(over_tcp("sslmode=disable".into())).await;
    assert!(
        plain.contains("no pg_hba.conf entry") && plain.contains("no encryption"),
        "{plain}"
    );
    pg.stop().await;
}

/// A refused login or a missing database is named with the server's words, its
/// SQLSTATE and what to do, without sqlx's "at line N" (the line of PostgreSQL's C
/// source) and without the password.
#[tokio::test]
async fn a_refused_login_or_a_missing_database_says_what_to_do() {
    let pg = ManagedPostgres::start_checking_passwords(keyledger::stack::free_port().unwrap())
        .await
        .expect("PostgreSQL starts (apt-get install postgresql)");
    let Pool::Postgres(admin) = projections::db::open(&pg.url(), 1).await.unwrap() else {
        panic!("a PostgreSQL pool")
    };
    sqlx::query("CREATE ROLE app LOGIN PASSWORD 'right-one'")
        .execute(&admin)
        .await
        .unwrap();
    let url = |user: &str, database: &str| {
        pg.url().replacen("keyledger@", user, 1).replacen(
            "/keyledger?",
            &format!("/{database}?"),
            1,
        )
    };
    let refused = |url: String| async move {
        let err = projections::db::open(&url, 1)
            .await
            .map(|_| ())
            .expect_err("refused");
        // sqlx's own text is no cause of it, which a chain of causes (as the CLI
        // prints) would add, "at line N" and all.
        assert!(std::error::Error::source(&err).is_none(), "{err}");
        err.to_string()
    };
    let wrong = refused(url("app:wrong-one@", "keyledger")).await;
    assert!(
        wrong.contains(
            "password authentication failed for user \"app\" (SQLSTATE 28P01); the password \
             of the URL's role is not the server's"
        ),
        "{wrong}"
    );
    assert!(
        !wrong.contains("wrong-one") && !wrong.contains("at line"),
        "{wrong}"
    );
    let missing = refused(url("keyledger@", "nowhere")).await;
    assert!(
        missing
            .contains("database \"nowhere\" does not exist (SQLSTATE 3D000); create the database"),
        "{missing}"
    );
    assert!(!missing.contains("at line"), "{missing}");
    pg.stop().await;
}
