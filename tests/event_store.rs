//! The event store on a real JetStream: stream settings, optimistic concurrency with
//! several writers, idempotency, the lost-ack retry, and per-aggregate loading.

use domain::subject::SecretOp;
use std::sync::Arc;

use async_nats::jetstream::{self, stream::StorageType};
use commands::secret::{HandlerConfig, SecretHandler};
use commands::shared::store::EventStore;
use domain::commit::{AggregateRef, Commit, NewCommit};
use domain::ids::{AggregateId, CommandId, ProjectId, Role, UserId};
use domain::principal::Principal;
use domain::secret::fields::{MetadataKey, MetadataValue};
use domain::secret::{MetadatumSet, SecretEvent, SecretState, evolve};
use domain::subject::AggregateKind;
use infra::keystore::KeyStore;
use infra::log::{LogSettings, ensure_key_bucket};
use infra::protocol::AcceptedReply;
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{TestStack, raw_command};

/// A command handler as a separate process would have it: its own connection, store
/// and cache.
pub(crate) async fn handler(t: &TestStack) -> (Arc<EventStore>, Arc<SecretHandler>) {
    let js = jetstream::new(t.service_nats().await);
    let store = Arc::new(
        EventStore::open(
            js.clone(),
            &LogSettings::default(),
            (*t.stack.keys.commit).clone(),
        )
        .await
        .unwrap(),
    );
    let keys = KeyStore::new(ensure_key_bucket(&js, 1).await.unwrap());
    let handler = SecretHandler::new(
        store.clone(),
        keys,
        t.stack.keys.envelope.clone(),
        infra::clock::system(),
        HandlerConfig::default(),
    );
    (store, Arc::new(handler))
}

/// The stack's commit key.
fn store_key(t: &TestStack) -> &domain::commit::CommitKey {
    &t.stack.keys.commit
}

pub(crate) fn alice() -> Principal {
    Principal {
        user: UserId::parse("alice").unwrap(),
        project: ProjectId::parse("p1").unwrap(),
        roles: vec![Role::parse("admin").unwrap()],
        service: None,
    }
}

pub(crate) fn body(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn aggregate(id: &str) -> AggregateRef {
    AggregateRef {
        kind: AggregateKind::Secret,
        project: ProjectId::parse("p1").unwrap(),
        id: AggregateId::parse(id).unwrap(),
    }
}

async fn stream_messages(t: &TestStack) -> u64 {
    let js = jetstream::new(t.service_nats().await);
    crate::support::log_state(&js).await.messages
}

#[tokio::test]
async fn the_stream_cannot_be_rewritten() {
    let t = TestStack::start().await;
    t.create_text(&t.token("alice", "p1"), "x", "y").await;
    let js = jetstream::new(t.service_nats().await);
    let mut stream = js.get_stream("KEYLEDGER").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert!(config.deny_delete && config.deny_purge && !config.allow_rollup);
    assert_eq!(config.max_messages_per_subject, -1);
    assert!(config.duplicate_window >= std::time::Duration::from_secs(120));
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.subjects, ["keyledger.events.>"]);
    assert!(
        stream.delete_message(1).await.is_err(),
        "deleting a commit must fail"
    );
    assert!(stream.purge().await.is_err(), "purging the log must fail");
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    t.stop().await;
}

#[tokio::test]
async fn concurrent_writers_on_one_aggregate_leave_no_gap_and_lose_no_update() {
    let t = TestStack::start().await;
    let (_, first) = handler(&t).await;
    let created = first
        .handle(SecretOp::Create, &alice(), &body(json!({"name": "hot"})))
        .await
        .unwrap();
    let id = created.id.clone();

    // Three independent handlers (as three processes) and the stack's own command
    // service over NATS, all writing the same secret at once.
    let handlers = [
        handler(&t).await.1,
        handler(&t).await.1,
        handler(&t).await.1,
    ];
    let token = t.token("alice", "p1");
    let nats = t.client_nats_as(&token).await;
    let mut writes = JoinSet::new();
    for i in 0..45 {
        let id = id.clone();
        if i % 4 == 3 {
            let (nats, token) = (nats.clone(), token.clone());
            writes.spawn(async move {
                let reply = raw_command(
                    &nats,
                    "secret.metadata.set",
                    Some(&token),
                    &json!({"id": id, "key": format!("k{i}"), "value": "v"}),
                )
                .await;
                assert_eq!(reply["ok"], true, "{reply}");
                reply["version"].as_u64().unwrap()
            });
        } else {
            let h = handlers[i % 3].clone();
            writes.spawn(async move {
                h.handle(
                    SecretOp::MetadataSet,
                    &alice(),
                    &body(json!({"id": id, "key": format!("k{i}"), "value": "v"})),
                )
                .await
                .expect("every write lands, after retries")
                .version
            });
        }
    }
    let mut versions: Vec<u64> = writes.join_all().await;
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=46).collect::<Vec<_>>(),
        "versions 2..=46, each once"
    );

    // A fresh load (which checks every hash and link) sees all 45 keys.
    let (store, _) = handler(&t).await;
    let loaded = store
        .load::<SecretEvent, SecretState>(&aggregate(&id).subject(), evolve)
        .await
        .unwrap();
    assert_eq!(loaded.version, 46);
    let SecretState::Live(secret) = loaded.state else {
        panic!("live")
    };
    assert_eq!(secret.attributes.metadata.len(), 45);
    t.stop().await;
}

#[tokio::test]
async fn a_retry_after_a_lost_ack_returns_the_first_reply_and_writes_nothing() {
    let t = TestStack::start().await;
    let (store, b) = handler(&t).await;
    let created = b
        .handle(SecretOp::Create, &alice(), &body(json!({"name": "s"})))
        .await
        .unwrap();
    let subject = aggregate(&created.id).subject();

    // Another replica committed "lost-ack-1" as version 2, and the reply never reached
    // the client. It is published here without Nats-Msg-Id, so JetStream's duplicate
    // window cannot answer for it: only the expected-sequence check can.
    let (_, v1) = store
        .last_commit::<SecretEvent>(&subject)
        .await
        .unwrap()
        .unwrap();
    let v1 = v1.expect("keyledger wrote the last commit");
    let commit = NewCommit {
        id: CommandId::parse("lost-ack-1").unwrap(),
        aggregate: aggregate(&created.id),
        version: 2,
        command: "secret.metadata.set".into(),
        actor: domain::principal::Actor::User(alice()),
        at: infra::clock::system()(),
        events: vec![SecretEvent::MetadatumSet(MetadatumSet {
            key: MetadataKey::parse("k").unwrap(),
            value: MetadataValue::parse("v").unwrap(),
        })],
    }
    .seal(Some(v1.hash), store.key());
    let js = jetstream::new(t.service_nats().await);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        created.seq.to_string().as_str(),
    );
    let ack = js
        .publish_with_headers(subject.clone(), headers, commit.to_bytes().into())
        .await
        .unwrap()
        .await
        .unwrap();

    // The client retries through B, whose cache still holds version 1.
    let retry = b
        .handle(
            SecretOp::MetadataSet,
            &alice(),
            &body(json!({"command_id": "lost-ack-1", "id": created.id, "key": "k", "value": "v"})),
        )
        .await
        .unwrap();
    assert_eq!((retry.seq, retry.version), (ack.sequence, 2));
    assert_eq!(stream_messages(&t).await, 2, "the retry wrote nothing");
    t.stop().await;
}

/// Two handlers as separate processes have them, and a secret the second created.
async fn two_handlers_and_a_secret(
    t: &TestStack,
) -> (Arc<SecretHandler>, Arc<SecretHandler>, AcceptedReply) {
    let (_, a) = handler(t).await;
    let (_, b) = handler(t).await;
    let created = b
        .handle(SecretOp::Create, &alice(), &body(json!({"name": "s"})))
        .await
        .unwrap();
    (a, b, created)
}

#[tokio::test]
async fn a_duplicate_inside_the_window_is_answered_from_the_log() {
    let t = TestStack::start().await;
    let (a, b, created) = two_handlers_and_a_secret(&t).await;
    let set = body(json!({"command_id": "set-1", "id": created.id, "key": "k", "value": "v"}));
    let first = a
        .handle(SecretOp::MetadataSet, &alice(), &set)
        .await
        .unwrap();
    // B's cache is stale (version 1): its append is deduplicated by JetStream.
    let again = b
        .handle(SecretOp::MetadataSet, &alice(), &set)
        .await
        .unwrap();
    // The first's reply, saying it answers an earlier command.
    let replayed = AcceptedReply {
        replayed: true,
        ..first.clone()
    };
    assert!(!first.replayed);
    assert_eq!(again, replayed);
    // A handler with a cold cache finds the command in the aggregate's own log.
    let (_, c) = handler(&t).await;
    assert_eq!(
        c.handle(SecretOp::MetadataSet, &alice(), &set)
            .await
            .unwrap(),
        replayed
    );
    assert_eq!(stream_messages(&t).await, 2);

    // Reusing a command id for a different command is refused, not silently merged.
    let other = b
        .handle(SecretOp::Create, &alice(), &body(json!({"name": "t"})))
        .await
        .unwrap();
    let reused = a
        .handle(
            SecretOp::Delete,
            &alice(),
            &body(json!({"command_id": "set-1", "id": other.id})),
        )
        .await
        .unwrap_err();
    assert_eq!(reused.code, domain::ErrorCode::Conflict);
    assert!(
        reused.message.contains("command_id set-1 was already used"),
        "{}",
        reused.message
    );
    t.stop().await;
}

#[tokio::test]
async fn a_command_id_sent_again_with_another_request_is_refused_on_every_path() {
    let t = TestStack::start().await;
    let (a, b, created) = two_handlers_and_a_secret(&t).await;
    let set = |value: &str| {
        body(json!({"command_id": "set-1", "id": created.id, "key": "k", "value": value}))
    };
    let first = a
        .handle(SecretOp::MetadataSet, &alice(), &set("v"))
        .await
        .unwrap();
    let refused = |r: Result<_, domain::Rejection>| {
        let r = r.unwrap_err();
        assert_eq!(r.code, domain::ErrorCode::Conflict, "{}", r.message);
        assert!(
            r.message.contains(
                "command_id set-1 was already used for a request of secret.metadata.set \
                 with other members or values"
            ),
            "{}",
            r.message
        );
    };
    // The same command id with another value: refused by the handler that applied it
    // (cached), by one whose cache is stale (JetStream's duplicate window answers),
    // and by one that reads the aggregate from the log (the digest in its header).
    refused(a.handle(SecretOp::MetadataSet, &alice(), &set("w")).await);
    refused(b.handle(SecretOp::MetadataSet, &alice(), &set("w")).await);
    let (_, cold) = handler(&t).await;
    refused(
        cold.handle(SecretOp::MetadataSet, &alice(), &set("w"))
            .await,
    );
    // The request again, its members in another order and spaced out, is a retry.
    let reordered = format!(
        r#"{{ "value": "v", "key": "k", "id": "{}", "command_id": "set-1" }}"#,
        created.id
    );
    let (_, cold) = handler(&t).await;
    assert_eq!(
        cold.handle(SecretOp::MetadataSet, &alice(), reordered.as_bytes())
            .await
            .unwrap(),
        AcceptedReply {
            replayed: true,
            ..first
        }
    );
    assert_eq!(
        stream_messages(&t).await,
        2,
        "nothing was written after the set"
    );

    // A payload is not in the digest: a value put is told from a retry by the stored
    // payload's fingerprint.
    let put = |payload: &str| {
        body(json!({
            "command_id": "put-1",
            "id": created.id,
            "payload": payload,
            "payload_content_type": "text/plain",
        }))
    };
    let stored = a
        .handle(SecretOp::ValuePut, &alice(), &put("one"))
        .await
        .unwrap();
    let (_, cold) = handler(&t).await;
    for handler in [&a, &b, &cold] {
        let other = handler
            .handle(SecretOp::ValuePut, &alice(), &put("two"))
            .await
            .unwrap_err();
        assert_eq!(other.code, domain::ErrorCode::Conflict, "{}", other.message);
        assert!(
            other
                .message
                .contains("command_id put-1 already stored version")
                && other.message.contains("with another payload"),
            "{}",
            other.message
        );
    }
    let (_, cold) = handler(&t).await;
    assert_eq!(
        cold.handle(SecretOp::ValuePut, &alice(), &put("one"))
            .await
            .unwrap(),
        AcceptedReply {
            replayed: true,
            ..stored.clone()
        }
    );
    assert_eq!(
        stream_messages(&t).await,
        3,
        "nothing was written after the put"
    );

    // A secret scheduled for deletion keeps its payloads, which are still compared;
    // once it is destroyed (its keys with it) they cannot be, and a retry is answered
    // as one, also by a handler whose cache predates the deletion.
    b.handle(SecretOp::Delete, &alice(), &body(json!({"id": created.id})))
        .await
        .unwrap();
    let other = a
        .handle(SecretOp::ValuePut, &alice(), &put("two"))
        .await
        .unwrap_err();
    assert!(
        other.message.contains("with another payload"),
        "{}",
        other.message
    );
    b.handle(
        SecretOp::Delete,
        &alice(),
        &body(json!({"id": created.id, "force": true})),
    )
    .await
    .unwrap();
    assert_eq!(
        a.handle(SecretOp::ValuePut, &alice(), &put("one"))
            .await
            .unwrap()
            .seq,
        stored.seq
    );
    t.stop().await;
}

#[tokio::test]
async fn a_command_reads_only_its_own_aggregate() {
    let t = TestStack::start().await;
    let (_, writer) = handler(&t).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let c = writer
            .handle(SecretOp::Create, &alice(), &body(json!({"name": format!("s{i}"), "payload": "x", "payload_content_type": "text/plain"})))
            .await
            .unwrap();
        ids.push(c.id);
    }
    // A handler with a cold cache changes one secret among 40: it reads exactly that
    // secret's one commit, not the stream.
    let (store, cold) = handler(&t).await;
    let set = |i: usize| body(json!({"id": ids[17], "key": format!("k{i}"), "value": "v"}));
    cold.handle(SecretOp::MetadataSet, &alice(), &set(1))
        .await
        .unwrap();
    assert_eq!(store.messages_read(), 1);
    // Further commands on it are decided on the cached state.
    cold.handle(SecretOp::MetadataSet, &alice(), &set(2))
        .await
        .unwrap();
    cold.handle(
        SecretOp::Delete,
        &alice(),
        &body(json!({"id": ids[17], "force": true})),
    )
    .await
    .unwrap();
    assert_eq!(store.messages_read(), 1);
    // A rejection is only final on state fresh from the log, so it reads what was
    // written since it was cached: nothing here. No rejection reloads the history
    // (anyone could send one: from another project, or refused by the policy).
    let again = cold
        .handle(
            SecretOp::Delete,
            &alice(),
            &body(json!({"id": ids[17], "force": true})),
        )
        .await
        .unwrap_err();
    assert_eq!(again.code, domain::ErrorCode::NotFound);
    let mallory = Principal {
        user: UserId::parse("mallory").unwrap(),
        project: ProjectId::parse("p2").unwrap(),
        roles: vec![Role::parse("observer").unwrap()],
        service: None,
    };
    for _ in 0..3 {
        let refused = cold
            .handle(
                SecretOp::MetadataSet,
                &mallory,
                &body(json!({"project": "p1", "id": ids[17], "key": "k", "value": "v"})),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code, domain::ErrorCode::Forbidden);
    }
    assert_eq!(store.messages_read(), 1);
    t.stop().await;
}

#[tokio::test]
async fn stored_commits_are_hash_chained_and_hold_no_plaintext() {
    let t = TestStack::start().await;
    let (_, h) = handler(&t).await;
    let created = h
        .handle(SecretOp::Create, &alice(), &body(json!({"name": "s", "payload": "plaintext-needle", "payload_content_type": "text/plain"})))
        .await
        .unwrap();
    let set = h
        .handle(
            SecretOp::MetadataSet,
            &alice(),
            &body(json!({"id": created.id, "key": "k", "value": "v"})),
        )
        .await
        .unwrap();
    let js = jetstream::new(t.service_nats().await);
    let stream = js.get_stream("KEYLEDGER").await.unwrap();
    let first = stream.get_raw_message(created.seq).await.unwrap();
    let second = stream.get_raw_message(set.seq).await.unwrap();
    assert!(!String::from_utf8_lossy(&first.payload).contains("plaintext-needle"));
    let first = Commit::<SecretEvent>::open(&first.payload, store_key(&t)).unwrap();
    let second = Commit::<SecretEvent>::open(&second.payload, store_key(&t)).unwrap();
    assert_eq!(first.check_link(None), Ok(()));
    assert_eq!(second.check_link(Some(&first)), Ok(()));
    assert_eq!(second.prev, Some(first.hash));
    t.stop().await;
}

#[tokio::test]
async fn a_stale_cache_never_decides_a_rejection() {
    let t = TestStack::start().await;
    let (_, a) = handler(&t).await;
    let (_, b) = handler(&t).await;
    let project = ProjectId::parse("p1").unwrap();
    let id = domain::ids::SecretId::for_create(&project, &CommandId::parse("create-x").unwrap());
    let put =
        body(json!({"id": id.to_string(), "payload": "v", "payload_content_type": "text/plain"}));

    // B looks at the secret before it exists, and caches that.
    let early = b
        .handle(SecretOp::PayloadPut, &alice(), &put)
        .await
        .unwrap_err();
    assert_eq!(early.code, domain::ErrorCode::NotFound);
    // A creates it.
    a.handle(
        SecretOp::Create,
        &alice(),
        &body(json!({"command_id": "create-x", "name": "x"})),
    )
    .await
    .unwrap();
    // B must not answer from its stale cache.
    let stored = b.handle(SecretOp::PayloadPut, &alice(), &put).await;
    assert!(stored.is_ok(), "{stored:?}");
    t.stop().await;
}

#[tokio::test]
async fn a_change_that_looks_applied_on_a_stale_cache_is_decided_again_on_the_log() {
    let t = TestStack::start().await;
    let (_, a) = handler(&t).await;
    let (_, b) = handler(&t).await;
    let created = a
        .handle(SecretOp::Create, &alice(), &body(json!({"name": "owner"})))
        .await
        .unwrap();
    let id = created.id.clone();
    let set = |value: &str| body(json!({"id": id, "key": "owner", "value": value}));
    // A caches "ops"; B (another process) changes it to "dev"; A is asked for "ops"
    // again, which its cache says is there already.
    a.handle(SecretOp::MetadataSet, &alice(), &set("ops"))
        .await
        .unwrap();
    b.handle(SecretOp::MetadataSet, &alice(), &set("dev"))
        .await
        .unwrap();
    let again = a
        .handle(SecretOp::MetadataSet, &alice(), &set("ops"))
        .await
        .unwrap();
    assert_eq!(again.version, 4, "the change was not written: {again:?}");
    let commits = t.commits_of(&id).await;
    let state = commits
        .iter()
        .flat_map(|c| c.body.events.iter())
        .fold(SecretState::default(), evolve);
    let SecretState::Live(secret) = state else {
        panic!("the secret is live")
    };
    let owner = MetadataKey::parse("owner").unwrap();
    assert_eq!(
        secret
            .attributes
            .metadata
            .get(&owner)
            .map(MetadataValue::as_str),
        Some("ops")
    );
}
