//! A log written before commits were authenticated (commit format 1) is refused with
//! the way out, and `keyledger log migrate` moves it to a new stream that keyledger
//! then serves: the same secrets, payloads and ACLs, a chain that goes on, and a log
//! that verifies.

use std::process::Command;

use domain::audit::RawEvent;
use domain::commit::{Commit, Digest, hash_of};
use keyledger::stack::Stack;
use serde_json::{Value, json};

use crate::audit::succeeded;
use crate::support::{TestStack, args, audit, json_of};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

/// Every message of the stream, in order.
async fn messages(js: &async_nats::jetstream::Context, stream: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    infra::audit::read_log(js, stream, None, 1, |m| {
        out.push((m.subject, m.payload.to_vec()));
        true
    })
    .await
    .unwrap();
    out
}

/// The log as an earlier keyledger wrote it: no `v`, no `mac`, each chain linked by
/// format 1 hashes.
fn format_1(log: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut heads: std::collections::HashMap<String, Digest> = Default::default();
    log.iter()
        .map(|(subject, bytes)| {
            let mut c = Commit::<RawEvent>::parse_unverified(bytes).unwrap();
            c.mac = None;
            c.prev = heads.get(subject).copied();
            let Value::Object(map) = c.to_json() else {
                unreachable!("a commit is an object")
            };
            c.hash = hash_of(map);
            heads.insert(subject.clone(), c.hash);
            (subject.clone(), c.to_bytes())
        })
        .collect()
}

fn keyledger(list: &[&str]) -> std::process::Output {
    Command::new(KEYLEDGER).args(list).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_log_is_refused_then_migrated_and_served() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "migrated-canary").await;
    let acl = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(&alice)
        .json(&json!({"read": {"users": ["bob"], "project-access": false}}))
        .send()
        .await
        .unwrap();
    assert!(acl.status().is_success());
    let other = t.create_text(&alice, "other", "other-canary").await;
    let TestStack {
        stack,
        dir,
        http,
        mut config,
    } = t;
    stack.stop().await;
    let data = dir.path().to_str().unwrap().to_owned();

    // Rewrite the log as a keyledger before commit authentication would have written
    // it (the key store stays as it is).
    let (nats, lock) = keyledger::stack::maintenance_nats(dir.path(), None, "KEYLEDGER")
        .await
        .unwrap();
    let js = async_nats::jetstream::new(
        infra::nats::connect(&nats.service_url(), "test")
            .await
            .unwrap(),
    );
    let old = format_1(&messages(&js, "KEYLEDGER").await);
    js.delete_stream("KEYLEDGER").await.unwrap();
    js.create_stream(infra::log::stream_config(&Default::default()))
        .await
        .unwrap();
    for (subject, bytes) in &old {
        js.publish(subject.clone(), bytes.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    nats.stop().await;
    drop(lock);

    // keyledger refuses it, and says how to migrate.
    let refused = Stack::start(config.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("keyledger log migrate"), "{refused}");

    // Migrate, rebuild the read model, serve the new stream.
    let out = keyledger(&[
        "log",
        "migrate",
        "--data-dir",
        &data,
        "--from",
        "KEYLEDGER",
        "--to",
        "KEYLEDGER_V2",
    ]);
    succeeded(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{} commits copied", old.len())),
        "{said}"
    );
    // Run again, it copies nothing twice.
    let out = keyledger(&[
        "log",
        "migrate",
        "--data-dir",
        &data,
        "--from",
        "KEYLEDGER",
        "--to",
        "KEYLEDGER_V2",
    ]);
    succeeded(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("0 commits copied, {} already there", old.len())),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = keyledger(&[
        "projections",
        "rebuild",
        "--data-dir",
        &data,
        "--stream",
        "KEYLEDGER_V2",
    ]);
    succeeded(&out);
    config.log.stream = "KEYLEDGER_V2".into();
    config.projector.stream = "KEYLEDGER_V2".into();
    config.api.config.stream = "KEYLEDGER_V2".into();
    config.checkpoints = Some(commands::log::checkpoints::CheckpointSettings {
        name: "keyledger/KEYLEDGER_V2".into(),
        ..config.checkpoints.clone().unwrap()
    });
    let stack = Stack::start(config.clone()).await.unwrap();
    let t = TestStack {
        stack,
        dir,
        http,
        config,
    };

    let payload = t.get(&format!("/v1/secrets/{id}/payload"), &alice).await;
    assert_eq!(payload.text().await.unwrap(), "migrated-canary");
    let bob = t.token_with("bob", "p2", &["observer"]);
    let payload = t.get(&format!("/v1/secrets/{id}/payload"), &bob).await;
    assert_eq!(
        payload.text().await.unwrap(),
        "migrated-canary",
        "the ACL came along"
    );
    let payload = t.get(&format!("/v1/secrets/{other}/payload"), &alice).await;
    assert_eq!(payload.text().await.unwrap(), "other-canary");
    // The chain goes on from the migrated commits.
    let set = t
        .http
        .post(t.url(&format!("/v1/secrets/{id}/metadata")))
        .bearer_auth(&alice)
        .json(&json!({"key": "after", "value": "migration"}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    let meta = json_of(t.get(&format!("/v1/secrets/{id}/metadata"), &alice).await).await;
    assert_eq!(meta["metadata"]["after"], "migration", "{meta}");

    let key = t.dir.path().join("commit.key");
    t.checkpointed(old.len() as u64 + 1).await;
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &t.auditor_url(),
        "--stream",
        "KEYLEDGER_V2",
        "--commit-key-file",
        key.to_str().unwrap(),
        "--public-key",
        &t.checkpoint_public_key_file(),
    ]))
    .await;
    succeeded(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("every authenticator"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    t.stop().await;
}
