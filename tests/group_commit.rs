//! Group commit on a real nats-server: writes that arrive together share one atomic
//! batch; a batch the server refuses (one stale expectation among many) stores every
//! other write exactly once; wrapped data keys put in batches read back, and once
//! shredded are in no file of the data directory; concurrent writers on one aggregate keep its versions
//! gap-free through batches; and a command service killed with SIGKILL in the middle
//! of its batches loses no acknowledged command, leaves no commit without its key, and
//! a retry of every command writes each exactly once.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::ids::{KeyId, ProjectId, SecretId};
use domain::subject::SecretOp;
use infra::batch::{Batcher, Resend, Write, WriteError};
use infra::client::CommandClient;
use infra::envelope::WrappedKey;
use infra::keystore::KeyStore;
use infra::protocol::{CreateSecretRequest, PayloadField};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::event_store::{alice, body, handler};
use crate::support::{TestStack, eventually, files_holding, wrapped_key_needles};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

fn expecting(seq: u64, id: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        seq.to_string().as_str(),
    );
    headers.insert("Nats-Msg-Id", id);
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_stores_every_other_write_exactly_once() {
    let t = TestStack::start().await;
    let js = jetstream::new(t.service_nats().await);
    let mut test_stream = js
        .create_stream(stream::Config {
            name: "BATCH_TEST".into(),
            subjects: vec!["batchtest.>".into()],
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let batcher = Batcher::new(js.clone(), "test", Resend::Always);
    let mut stored_total = 0;

    // Rounds of 40 concurrent writes, each expecting its subject empty; in every other
    // round one subject already holds a message, so a batch holding it is refused.
    // Until the writer has both committed a batch and had one refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 1.. {
        let stale = (round % 2 == 0).then(|| format!("batchtest.r{round}.stale"));
        if let Some(subject) = &stale {
            js.publish(subject.clone(), "first".into())
                .await
                .unwrap()
                .await
                .unwrap();
            stored_total += 1;
        }
        let mut writes = JoinSet::new();
        for i in 0..40 {
            let subject = match (&stale, i) {
                (Some(stale), 17) => stale.clone(),
                _ => format!("batchtest.r{round}.w{i}"),
            };
            let batcher = batcher.clone();
            writes.spawn(async move {
                let write = Write {
                    headers: expecting(0, &format!("r{round}-{i}")),
                    payload: format!("{round}/{i}").into(),
                    subject: subject.clone(),
                };
                (subject, batcher.write(write).await)
            });
        }
        let mut seqs = HashSet::new();
        for (subject, result) in writes.join_all().await {
            if stale.as_ref() == Some(&subject) {
                assert!(
                    matches!(result, Err(WriteError::WrongLastSequence)),
                    "the stale write is refused on its own: {result:?}"
                );
                continue;
            }
            let stored = result.expect("every fresh write is stored");
            assert!(!stored.duplicate);
            assert!(seqs.insert(stored.seq), "one sequence per write");
            // The sequence answered is the write's own.
            let message = test_stream.get_raw_message(stored.seq).await.unwrap();
            assert_eq!(message.subject.as_str(), subject);
            stored_total += 1;
        }
        let messages = test_stream.info().await.unwrap().state.messages;
        assert_eq!(messages, stored_total, "nothing lost, nothing stored twice");
        let stats = batcher.stats();
        if stats.batches > 0 && stats.refused > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no committed and refused batch after {round} rounds: {stats:?}"
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_aggregate_keep_versions_gap_free_through_batches() {
    let t = TestStack::start().await;
    let (_, first) = handler(&t).await;
    let hot = first
        .handle(SecretOp::Create, &alice(), &body(json!({"name": "hot"})))
        .await
        .unwrap()
        .id;

    // Three handlers (as three processes), each writing the hot secret 15 times while
    // creating 60 other secrets, all at once: its writes share batches with the
    // creates, and lose races to the other handlers inside them.
    let mut stores = Vec::new();
    let mut writes = JoinSet::new();
    for h in 0..3 {
        let (store, handler) = handler(&t).await;
        stores.push(store);
        for i in 0..75 {
            let (handler, hot) = (handler.clone(), hot.clone());
            writes.spawn(async move {
                let (op, request) = if i % 5 == 0 {
                    let key = format!("k{h}-{i}");
                    (
                        SecretOp::MetadataSet,
                        json!({"id": hot, "key": key, "value": "v"}),
                    )
                } else {
                    (SecretOp::Create, json!({"name": format!("s{h}-{i}")}))
                };
                let reply = handler
                    .handle(op, &alice(), &body(request))
                    .await
                    .expect("every write lands, after retries");
                (reply.id == hot).then_some(reply.version)
            });
        }
    }
    let mut versions: Vec<u64> = writes.join_all().await.into_iter().flatten().collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=46).collect::<Vec<_>>(),
        "the hot secret's versions 2..=46, each once"
    );
    let batches: u64 = stores.iter().map(|s| s.writer_stats().batches).sum();
    assert!(batches > 0, "the writes went out in atomic batches");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_put_in_batches_read_back_and_shred_from_every_file() {
    let t = TestStack::start().await;
    let js = jetstream::new(t.service_nats().await);
    let bucket = infra::log::ensure_key_bucket(&js, 1).await.unwrap();
    let store = KeyStore::new(bucket).batched(js.clone());
    let project = ProjectId::parse("p1").unwrap();
    let uuid = || uuid::Uuid::new_v4().to_string();

    // 96 keys put at once, until some went out in atomic batches.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut keys = Vec::new();
    while store.writer_stats().unwrap().batches == 0 {
        assert!(
            Instant::now() < deadline,
            "no batch after {} puts",
            keys.len()
        );
        let mut puts = JoinSet::new();
        for _ in 0..96 {
            let secret = SecretId::parse(&uuid()).unwrap();
            let key = KeyId::parse(&uuid()).unwrap();
            // Random bytes, so the file search below cannot match anything else.
            let wrapped: WrappedKey = serde_json::from_value(json!({
                "kek_id": "test",
                "nonce": STANDARD.encode(uuid::Uuid::new_v4().as_bytes()),
                "wrapped": STANDARD.encode([*uuid::Uuid::new_v4().as_bytes(), *uuid::Uuid::new_v4().as_bytes()].concat()),
            }))
            .unwrap();
            let (store, project) = (store.clone(), project.clone());
            puts.spawn(async move {
                store.put(&project, secret, key, &wrapped).await.unwrap();
                (secret, key, wrapped)
            });
        }
        keys.extend(puts.join_all().await);
    }

    // Every key reads back as put; then half are shredded.
    for (secret, key, wrapped) in &keys {
        let found = store.get(&project, *secret, *key).await.unwrap().unwrap();
        assert_eq!(found.wrapped, wrapped.wrapped);
    }
    let (shredded, kept) = keys.split_at(keys.len() / 2);
    for (secret, key, _) in shredded {
        store.destroy(&project, *secret, *key).await.unwrap();
    }

    // No file of the data directory holds a shredded key (a committed batch's staging
    // file is gone with its commit); every kept key is still there and reads.
    let data = t.dir.path();
    for (secret, key, wrapped) in shredded {
        let left = files_holding(data, &wrapped_key_needles(&wrapped.wrapped));
        assert!(left.is_empty(), "a shredded key survives in {left:?}");
        assert!(store.get(&project, *secret, *key).await.unwrap().is_none());
    }
    for (secret, key, wrapped) in kept {
        assert!(
            !files_holding(data, &wrapped_key_needles(&wrapped.wrapped)).is_empty(),
            "the search must find a kept key, or it proves nothing"
        );
        assert!(store.get(&project, *secret, *key).await.unwrap().is_some());
    }
    t.stop().await;
}

/// A `keyledger serve commands` process on the stack's NATS, beside the stack's own
/// command service (one queue group: each takes about half of the commands).
fn command_service(t: &TestStack) -> Child {
    Command::new(KEYLEDGER)
        .args([
            "serve",
            "commands",
            "--nats-url",
            &t.stack.service_url,
            "--data-dir",
            t.dir.path().to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a command service process")
}

/// A child process, killed when dropped (also when a test fails).
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What each command got: its reply, once one came.
type Replies = Arc<Mutex<HashMap<String, infra::protocol::AcceptedReply>>>;

fn create(command_id: &str) -> CreateSecretRequest {
    CreateSecretRequest {
        command_id: Some(command_id.to_owned()),
        name: Some(command_id.to_owned()),
        payload: Some(PayloadField::from(format!("payload of {command_id}"))),
        payload_content_type: Some("text/plain".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_service_killed_mid_batch_loses_nothing_acknowledged_and_writes_once() {
    // The command service runs only as a process of its own, killed and restarted.
    let t = TestStack::start_with(|c| c.commands = false).await;
    let mut child = Service(command_service(&t));

    // 48 callers (each its own user, so no caller limit applies), each sending creates
    // one after another with its own command ids, until told to stop.
    let replies: Replies = Arc::default();
    let sent = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let interrupted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = JoinSet::new();
    for w in 0..48 {
        let token = t.token(&format!("w{w}"), "p1");
        let client = CommandClient::new(t.client_nats_as(&token).await, Duration::from_secs(3));
        let (replies, sent, interrupted, stop) = (
            replies.clone(),
            sent.clone(),
            interrupted.clone(),
            stop.clone(),
        );
        callers.spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) {
                let command_id = format!("w{w}-{k}");
                k += 1;
                sent.lock().await.push((command_id.clone(), token.clone()));
                match client
                    .send("secret.create", &token, &create(&command_id))
                    .await
                {
                    Ok(reply) => {
                        replies.lock().await.insert(command_id, reply);
                    }
                    Err(_) => {
                        interrupted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
    }

    // Three times: once ~300 more commands are acknowledged, SIGKILL the process (no
    // cleanup, batches half sent) and start it again.
    for _ in 0..3 {
        let target = replies.lock().await.len() + 300;
        eventually(
            "commands to be acknowledged",
            Duration::from_secs(60),
            || {
                let replies = replies.clone();
                async move { (replies.lock().await.len() >= target).then_some(()) }
            },
        )
        .await;
        drop(child);
        child = Service(command_service(&t));
    }
    let target = replies.lock().await.len() + 100;
    eventually(
        "commands after the last restart",
        Duration::from_secs(60),
        || {
            let replies = replies.clone();
            async move { (replies.lock().await.len() >= target).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    callers.join_all().await;
    assert!(
        interrupted.load(Ordering::SeqCst) > 0,
        "the kills interrupted commands in flight"
    );
    // Keys stored for commands whose commit never came (killed between the key batch
    // and the commit batch) are orphans: harmless, and counted for the record.
    let js = jetstream::new(t.service_nats().await);
    let messages = |name: &'static str| {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream(name).await.unwrap();
            stream.info().await.unwrap().state.messages
        }
    };
    let orphans = messages("KV_KEYLEDGER_KEYS").await - messages("KEYLEDGER").await;
    eprintln!(
        "{} commands, {} interrupted by the kills, {orphans} keys stored without their commit",
        sent.lock().await.len(),
        interrupted.load(Ordering::SeqCst),
    );
    assert!(
        orphans > 0,
        "a kill landed between a key batch and its commit batch"
    );

    // Every command again, with its command id: an acknowledged one answers as the
    // first time; an interrupted one lands now (or is found landed).
    // Each sender's commands on a connection of its own principal's.
    let sent = sent.lock().await.clone();
    let acknowledged = replies.lock().await.clone();
    let mut ids = HashMap::new();
    let mut clients = HashMap::new();
    for (command_id, token) in &sent {
        if !clients.contains_key(token) {
            let client = CommandClient::new(t.client_nats_as(token).await, Duration::from_secs(10));
            clients.insert(token.clone(), client);
        }
        let reply = clients[token]
            .send("secret.create", token, &create(command_id))
            .await
            .unwrap_or_else(|e| panic!("retrying {command_id}: {}", e.message));
        if let Some(first) = acknowledged.get(command_id) {
            assert_eq!(
                (&reply.id, reply.seq, reply.version),
                (&first.id, first.seq, first.version),
                "{command_id}: a retry answers as the first time"
            );
        }
        ids.insert(reply.id, (command_id.clone(), token.clone()));
    }
    assert_eq!(ids.len(), sent.len(), "one secret per command");

    // The log holds exactly one create per command, nothing else.
    let log = crate::support::log_state(&js).await;
    assert_eq!(log.messages, sent.len() as u64, "one commit per command");

    // Every secret's payload opens: no commit lacks its data key.
    let last = log.last_sequence;
    for (id, (command_id, token)) in &ids {
        let response = t
            .http
            .get(t.url(&format!("/v1/secrets/{id}/payload")))
            .bearer_auth(token)
            .header(api::MIN_SEQ, last)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{command_id}");
        assert_eq!(
            response.text().await.unwrap(),
            format!("payload of {command_id}")
        );
    }
    drop(child);
    t.stop().await;
}
