//! The projector: exactly-once application under a real crash, and rebuilds.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use domain::subject::command;
use infra::client::CommandClient;
use infra::protocol::{
    CreateSecretRequest, DeleteSecretRequest, PayloadField, SetMetadatumRequest,
};
use tokio::task::JoinSet;

use crate::support::read_model::{checkpoint, dump, indexes, open};
use crate::support::{TestStack, eventually};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

/// Writes `creates` secrets with payloads, `per_secret` metadata changes on each, and
/// deletes every fifth; returns the last sequence.
async fn write_history(t: &TestStack, creates: usize, per_secret: usize) -> u64 {
    let token = t.token("alice", "p1");
    let client = CommandClient::new(t.client_nats_as(&token).await, Duration::from_secs(10));
    let mut tasks = JoinSet::new();
    for worker in 0..8 {
        let (client, token) = (client.clone(), token.clone());
        tasks.spawn(async move {
            let mut last = 0;
            for i in (worker..creates).step_by(8) {
                let created = client
                    .send(
                        command::SECRET_CREATE,
                        &token,
                        &CreateSecretRequest {
                            name: Some(format!("s{i}")),
                            payload: Some(PayloadField::from(format!("payload {i}"))),
                            payload_content_type: Some("text/plain".into()),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                last = last.max(created.seq);
                for k in 0..per_secret {
                    let set = SetMetadatumRequest {
                        command_id: None,
                        project: None,
                        id: created.id.clone(),
                        key: format!("k{k}"),
                        value: format!("v{i}"),
                        must_exist: None,
                    };
                    last = last.max(
                        client
                            .send(command::SECRET_METADATA_SET, &token, &set)
                            .await
                            .unwrap()
                            .seq,
                    );
                }
                if i % 5 == 0 {
                    let delete = DeleteSecretRequest {
                        command_id: None,
                        project: None,
                        id: created.id,
                        recovery_window_days: None,
                        recovery_window: None,
                        force: Some(true),
                        ignore_consumers: None,
                    };
                    last = last.max(
                        client
                            .send(command::SECRET_DELETE, &token, &delete)
                            .await
                            .unwrap()
                            .seq,
                    );
                }
            }
            last
        });
    }
    tasks.join_all().await.into_iter().max().unwrap_or(0)
}

fn projector(t: &TestStack, db: &Path, batch_size: usize) -> Child {
    Command::new(KEYLEDGER)
        .args([
            "serve",
            "projector",
            "--nats-url",
            &t.stack.service_url,
            "--data-dir",
            t.dir.path().to_str().unwrap(),
            "--database",
        ])
        .arg(projections::db::sqlite_url(db))
        .args(["--batch-size", &batch_size.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a projector process")
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_stream_resumes_to_exactly_a_fresh_rebuild() {
    let t = TestStack::start().await;
    let last = write_history(&t, 200, 5).await;
    assert!(last > 1000, "history of {last} commits");

    // A projector process on its own read model, applying one commit per batch...
    let crashed = t.dir.path().join("crashed.sqlite");
    let pool = open(&crashed).await;
    let mut child = projector(&t, &crashed, 1);
    eventually(
        "the projector to start applying",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move { (checkpoint(&pool).await > 0).then_some(()) }
        },
    )
    .await;
    // ... frozen and then killed with SIGKILL: no cleanup, possibly mid-transaction.
    signal(&child, libc::SIGSTOP);
    let at_kill = checkpoint(&pool).await;
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    assert!(
        at_kill > 0 && at_kill < last,
        "killed mid-stream (at {at_kill} of {last})"
    );

    // Restarted, it resumes from its checkpoint and catches up.
    let mut child = projector(&t, &crashed, 64);
    eventually(
        "the restarted projector to catch up",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move { (checkpoint(&pool).await >= last).then_some(()) }
        },
    )
    .await;
    signal(&child, libc::SIGTERM);
    child.wait().unwrap();

    // A fresh rebuild from sequence 1, with the CLI.
    let fresh = t.dir.path().join("fresh.sqlite");
    let status = Command::new(KEYLEDGER)
        .args([
            "projections",
            "rebuild",
            "--nats-url",
            &t.stack.service_url,
            "--data-dir",
            t.dir.path().to_str().unwrap(),
            "--database",
        ])
        .arg(projections::db::sqlite_url(&fresh))
        .status()
        .unwrap();
    assert!(status.success());

    let crashed_rows = dump(&pool).await;
    assert_eq!(crashed_rows, dump(&open(&fresh).await).await);
    // The stack's own projector, never interrupted, agrees too.
    let live = open(&t.dir.path().join(keyledger::stack::READ_MODEL_FILE)).await;
    eventually(
        "the live projector to catch up",
        Duration::from_secs(30),
        || {
            let live = live.clone();
            async move { (checkpoint(&live).await >= last).then_some(()) }
        },
    )
    .await;
    assert_eq!(crashed_rows, dump(&live).await);
    // The rebuild built the indexes it left out while applying: the schema's, all.
    let schema = indexes(&live).await;
    assert!(
        schema.iter().any(|i| i.contains("secrets_by_name")),
        "{schema:?}"
    );
    assert_eq!(indexes(&open(&fresh).await).await, schema);
    assert!(
        crashed_rows
            .iter()
            .any(|r| r.starts_with("secret_metadata:")),
        "the dump holds rows"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_rebuild_refuses_a_read_model_a_projector_is_writing() {
    let t = TestStack::start().await;
    let live = t.dir.path().join(keyledger::stack::READ_MODEL_FILE);
    let output = Command::new(KEYLEDGER)
        .args([
            "projections",
            "rebuild",
            "--nats-url",
            &t.stack.service_url,
            "--data-dir",
            t.dir.path().to_str().unwrap(),
            "--database",
        ])
        .arg(projections::db::sqlite_url(&live))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another projector is writing"), "{stderr}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_commits_arrive_reports_the_sequence_it_reached() {
    let t = TestStack::start().await;
    let started_at = write_history(&t, 16, 2).await;
    let path = t.dir.path().join("moving.sqlite");
    let pool = open(&path).await;
    let js = async_nats::jetstream::new(t.service_nats().await);
    let writer =
        projections::writer::Writer::open(&path, projections::writer::WriterSizes::REBUILD)
            .unwrap();
    // Started once more commits have begun to land: its batches of 16 are read while
    // the one before is applied, and the last takes those pending when it reads, past
    // the stream's last sequence when it started.
    let config = projections::projector::ProjectorConfig {
        batch_size: 16,
        ..Default::default()
    };
    let rebuilt = async {
        eventually("more commits to land", Duration::from_secs(30), || {
            let js = js.clone();
            async move {
                let mut stream = js.get_stream("KEYLEDGER").await.ok()?;
                let last = stream.info().await.ok()?.state.last_sequence;
                (last > started_at + 20).then_some(())
            }
        })
        .await;
        projections::projector::rebuild(writer, &js, &config, (*t.stack.keys.commit).clone(), false)
            .await
    };
    let (_, rebuilt) = tokio::join!(write_history(&t, 64, 3), rebuilt);
    let seq = rebuilt.unwrap();
    assert!(seq > started_at, "rebuilt to {seq}, short of {started_at}");
    assert_eq!(
        checkpoint(&pool).await,
        seq,
        "the sequence reported is the one applied"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_rebuild_in_place_restores_the_read_model() {
    let t = TestStack::start().await;
    write_history(&t, 16, 2).await;
    let path = t.dir.path().join("copy.sqlite");
    let pool = open(&path).await;
    let js = async_nats::jetstream::new(t.service_nats().await);
    let config = projections::projector::ProjectorConfig::default();
    let writer = || {
        projections::writer::Writer::open(&path, projections::writer::WriterSizes::REBUILD).unwrap()
    };
    let seq = projections::projector::rebuild(
        writer(),
        &js,
        &config,
        (*t.stack.keys.commit).clone(),
        false,
    )
    .await
    .unwrap();
    let before = dump(&pool).await;
    // Damage it, then rebuild again: the same rows come back.
    sqlx::query("DELETE FROM secrets")
        .execute(&mut *pool.acquire().await.unwrap())
        .await
        .unwrap();
    sqlx::query("UPDATE secret_metadata SET value = 'tampered'")
        .execute(&mut *pool.acquire().await.unwrap())
        .await
        .unwrap();
    // Rows no commit of this log wrote (as if left by another log's): an access key
    // and a quota. They go.
    sqlx::query(
        "INSERT INTO access_keys (project, access_key_id, user_id, roles, status, creator, \
         created, created_ms, key_id, version_id, nonce, ciphertext, version, seq) \
         VALUES ('ghost', 'AKLGGHOST', 'mallory', '[\"admin\"]', 'active', 'mallory', \
         '2026-01-01T00:00:00Z', 0, 'k', 'v', x'00', x'00', 1, 1)",
    )
    .execute(&mut *pool.acquire().await.unwrap())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO project_quotas (project, limits, updated, seq) \
         VALUES ('ghost', '{}', '2026-01-01T00:00:00Z', 1)",
    )
    .execute(&mut *pool.acquire().await.unwrap())
    .await
    .unwrap();
    // This time in batches cut by their bytes: every commit is a batch of its own.
    let by_bytes = projections::projector::ProjectorConfig {
        batch_bytes: 1,
        ..config
    };
    assert_eq!(
        projections::projector::rebuild(
            writer(),
            &js,
            &by_bytes,
            (*t.stack.keys.commit).clone(),
            false
        )
        .await
        .unwrap(),
        seq
    );
    assert_eq!(dump(&pool).await, before);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_refuses_a_read_model_built_from_another_log() {
    // A read model folded from one stack's log…
    let a = TestStack::start().await;
    let last = write_history(&a, 16, 1).await;
    let folded = open(&a.dir.path().join(keyledger::stack::READ_MODEL_FILE)).await;
    eventually("stack A's projector", Duration::from_secs(30), || {
        let folded = folded.clone();
        async move { (checkpoint(&folded).await >= last).then_some(()) }
    })
    .await;
    let copy = a.dir.path().join("other.sqlite");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "VACUUM INTO '{}'",
        copy.display()
    )))
    .execute(&mut *folded.acquire().await.unwrap())
    .await
    .unwrap();
    // …given to a projector of another, shorter log: it says so, and applies nothing.
    let b = TestStack::start().await;
    let mut child = Command::new(KEYLEDGER)
        .args(["serve", "projector", "--nats-url", &b.stack.service_url])
        .args(["--data-dir", b.dir.path().to_str().unwrap(), "--database"])
        .arg(projections::db::sqlite_url(&copy))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("built from another log"))
    });
    let said = tokio::time::timeout(Duration::from_secs(30), said)
        .await
        .expect("the projector names the mismatch within 30 s")
        .unwrap()
        .expect("the projector names the mismatch");
    assert!(said.contains(&format!("applied sequence {last}")), "{said}");
    assert!(said.contains("keyledger projections rebuild"), "{said}");
    signal(&child, libc::SIGTERM);
    child.wait().unwrap();
    assert_eq!(checkpoint(&open(&copy).await).await, last);
}
