//! Commits prove their writer: defence in depth for the day a NATS permission is
//! wrong. A test holding keyledger's own NATS credentials (admin rights on the
//! stream) appends what an intruder could: junk, a well-formed commit sealed with
//! another key, a replayed copy of a real commit, a real commit moved to another
//! secret's subject. Every reader ignores them and names them; nothing is bricked.
//! The same for the key store: a wrapped key that does not open is reported as
//! tampered with.

use domain::audit::RawEvent;
use domain::commit::{Commit, CommitKey, NewCommit};
use domain::principal::Actor;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::audit::succeeded;
use crate::support::{TestStack, args, audit, description, json_of};

/// Appends `bytes` to `subject` as the intruder would: no expectations, no id.
async fn append(js: &async_nats::jetstream::Context, subject: &str, bytes: Vec<u8>) -> u64 {
    js.publish(subject.to_owned(), bytes.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// `GET path` that waits for the read model to reach `seq`.
async fn get_at(t: &TestStack, path: &str, token: &str, seq: u64) -> reqwest::Response {
    t.http
        .get(t.url(path))
        .bearer_auth(token)
        .header("X-Keyledger-Min-Seq", seq.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_on_the_log_are_ignored_named_and_never_brick_a_secret() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let mallory = t.token_with("mallory", "p2", &["observer"]);
    let id = t.create_text(&alice, "db", "forged-canary").await;
    let other = t.create_text(&alice, "other", "other-canary").await;
    let private = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(&alice)
        .json(&json!({"read": {"project-access": false}}))
        .send()
        .await
        .unwrap();
    assert!(private.status().is_success());
    let commits = t.commits_of(&id).await;
    let head = commits.last().unwrap().clone();
    let subject = head.body.aggregate.subject();

    // What the intruder appends, as keyledger's own NATS user.
    let js = async_nats::jetstream::new(t.service_nats().await);
    let junk = append(&js, &subject, br#"{"error":{"code":"invalid"}}"#.to_vec()).await;
    let forged_acl = NewCommit {
        id: domain::ids::CommandId::parse("forged-acl").unwrap(),
        aggregate: head.body.aggregate.clone(),
        version: head.body.version + 1,
        command: "secret.acl.set".into(),
        actor: Actor::User(domain::principal::Principal {
            user: domain::ids::UserId::parse("alice").unwrap(),
            project: domain::ids::ProjectId::parse("p1").unwrap(),
            roles: vec![domain::ids::Role::parse("admin").unwrap()],
            service: None,
        }),
        at: t.now(),
        events: vec![RawEvent::new(&json!({
            "type": "secret.acl_set", "v": 1,
            "acl": {"project_access": true, "users": ["mallory"]},
        }))],
    }
    .seal(Some(head.hash), &CommitKey::new([7; 32]));
    let forged = append(&js, &subject, forged_acl.to_bytes()).await;
    let first = Commit::<RawEvent>::open(&commits[0].to_bytes(), &t.stack.keys.commit).unwrap();
    let replayed = append(&js, &subject, first.to_bytes()).await;
    let other_subject = format!("keyledger.events.p1.secret.{other}");
    let moved = append(&js, &other_subject, head.to_bytes()).await;
    let foreign = [junk, forged, replayed, moved];

    // The read model skipped them: mallory is not on the ACL, the secret is intact.
    let denied = get_at(&t, &format!("/v1/secrets/{id}/payload"), &mallory, moved).await;
    assert_eq!(denied.status(), 403);
    let acl = json_of(get_at(&t, &format!("/v1/secrets/{id}/acl"), &alice, moved).await).await;
    assert_eq!(acl["read"]["project-access"], false, "{acl}");
    let payload = get_at(&t, &format!("/v1/secrets/{id}/payload"), &alice, moved).await;
    assert_eq!(payload.text().await.unwrap(), "forged-canary");
    let pool = crate::support::read_model::open_url(&t.stack.database_url).await;
    let skipped: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, reason FROM skipped_commits ORDER BY seq")
            .fetch_all(&mut *pool.acquire().await.unwrap())
            .await
            .unwrap();
    let seqs: Vec<u64> = skipped.iter().map(|(s, _)| *s as u64).collect();
    assert_eq!(seqs, foreign, "{skipped:?}");
    for (_, reason) in &skipped {
        assert!(reason.starts_with("foreign message: "), "{reason}");
    }

    // The secret still changes, over HTTP and NATS, each change the next version.
    let set = t
        .http
        .post(t.url(&format!("/v1/secrets/{id}/metadata")))
        .bearer_auth(&alice)
        .json(&json!({"key": "owner", "value": "ops"}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{:?}", description(set).await);
    let nats = t.client_nats_as(&alice).await;
    let reply = crate::support::raw_command(
        &nats,
        "secret.tags.set",
        Some(&alice),
        &json!({"id": id, "tags": {"env": "prod"}}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let versions: Vec<u64> = t
        .commits_of(&id)
        .await
        .iter()
        .map(|c| c.body.version)
        .collect();
    let expected: Vec<u64> = (1..=head.body.version + 2).collect();
    assert_eq!(
        versions, expected,
        "one chain, no gap, nothing foreign in it"
    );

    // History shows keyledger's commits only.
    let history = json_of(
        get_at(
            &t,
            &format!("/v1/secrets/{id}/history"),
            &alice,
            reply["seq"].as_u64().unwrap(),
        )
        .await,
    )
    .await;
    let mut versions: Vec<u64> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    versions.dedup();
    assert!(!history.to_string().contains("mallory"), "{history}");
    assert_eq!(versions, expected, "{history}");

    // The auditor: with the commit key, verify names each foreign message and fails
    // until they are accepted; with the public key alone, the checkpoints name them.
    let key = t.dir.path().join("commit.key");
    let key = key.to_str().unwrap();
    let auditor = t.auditor_url();
    let public = t.checkpoint_public_key_file();
    t.checkpointed(1).await;
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        &public,
        "--commit-key-file",
        key,
    ]))
    .await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for seq in foreign {
        assert!(
            stdout.contains(&format!("FOREIGN: sequence {seq} ")),
            "{seq} not named: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("FAILS verification at sequence {junk}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = format!("{junk}-{moved}");
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        &public,
        "--commit-key-file",
        key,
        "--accept-foreign",
        &accepted,
    ]))
    .await;
    succeeded(&out);
    t.checkpointed(reply["seq"].as_u64().unwrap()).await;
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        &public,
        "--accept-foreign",
        &accepted,
    ]))
    .await;
    succeeded(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "accepted: sequence {forged} on {subject:?}: not written by keyledger (named as foreign by a signed checkpoint)"
        )),
        "{stdout}"
    );
    // Who could read the secret, by the log as the auditor sees it: not mallory.
    let out = audit(args(&[
        "state",
        "--nats-url",
        &auditor,
        "--public-key",
        &public,
        "--id",
        &id,
        "--readers",
        "--at",
        &reply["seq"].to_string(),
    ]))
    .await;
    succeeded(&out);
    let readers: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!readers.to_string().contains("mallory"), "{readers}");
    t.stop().await;
}

#[tokio::test]
async fn a_tampered_key_store_entry_is_reported_as_tampered() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "tamper-canary").await;
    let other = t.create_text(&alice, "other", "other-canary").await;
    let key = t.key_ids(&id).await[0];
    let other_key = t.key_ids(&other).await[0];
    let js = async_nats::jetstream::new(t.service_nats().await);
    let kv = js.get_key_value("KEYLEDGER_KEYS").await.unwrap();
    let entry = format!("p1.{id}.{key}");
    let own = kv.get(&entry).await.unwrap().unwrap();
    let others = kv
        .get(format!("p1.{other}.{other_key}"))
        .await
        .unwrap()
        .unwrap();
    for (what, value) in [
        ("junk", b"{\"error\":\"x\"}".to_vec().into()),
        ("another secret's wrapped key", others),
    ] {
        kv.put(&entry, value).await.unwrap();
        let (status, message) =
            description(t.get(&format!("/v1/secrets/{id}/payload"), &alice).await).await;
        assert_eq!(status, 500, "{what}");
        assert!(message.contains("tampered"), "{what}: {message}");
        assert!(!message.contains("malformed"), "{what}: {message}");
    }
    // Removed behind keyledger's back (no commit destroyed it): tampered, not "not found".
    kv.purge(&entry).await.unwrap();
    let (status, message) =
        description(t.get(&format!("/v1/secrets/{id}/payload"), &alice).await).await;
    assert_eq!(
        (status.as_u16(), message.contains("tampered")),
        (500, true),
        "{message}"
    );
    // Before that verdict the read looks for the key again: a node that hung and
    // resumed answers for a moment as the leader it was, without the keys written
    // meanwhile. A key found again is served.
    let nats = t.service_nats().await;
    let mut looks = nats
        .subscribe("$JS.API.STREAM.MSG.GET.KEYLEDGER")
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let read = {
        let request = t
            .http
            .get(t.url(&format!("/v1/secrets/{id}/payload")))
            .bearer_auth(&alice);
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    // Twice it found no key and asked the stream's leader for the secret's last commit.
    let looked_again = async {
        let mut asked = 0;
        while asked < 2 {
            let look = looks.next().await.unwrap();
            asked += usize::from(String::from_utf8_lossy(&look.payload).contains(&id));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), looked_again)
        .await
        .expect("the read to look for the missing key again");
    kv.put(&entry, own).await.unwrap();
    let read = read.await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.text().await.unwrap(), "tamper-canary");
    // Destroyed by keyledger, the answer is the usual one.
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{other}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, _) =
        description(t.get(&format!("/v1/secrets/{other}/payload"), &alice).await).await;
    assert_eq!(status, 404);
    t.stop().await;
}

/// A note on the checkpoint subject that the checkpoint key did not sign (here, a real
/// one with its size raised) is trusted by no one: the checkpointer passes over it and
/// goes on signing, and verification names it until the auditor accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_checkpoint_is_passed_over_and_named() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    t.create_text(&alice, "one", "x").await;
    t.checkpointed(1).await;
    let js = async_nats::jetstream::new(t.service_nats().await);
    let latest = commands::log::checkpoints::latest(&js, "KEYLEDGER")
        .await
        .unwrap()
        .unwrap();
    let forged_note = latest.note.replacen("\n1\n", "\n999999999\n", 1);
    assert_ne!(forged_note, latest.note);
    let forged = append(
        &js,
        &commands::log::checkpoints::subject("KEYLEDGER"),
        forged_note.into_bytes(),
    )
    .await;
    // The log grows, and the checkpointer signs it: the forged size stopped nothing.
    t.create_text(&alice, "two", "y").await;
    let signed = t.checkpointed(2).await;
    assert!(signed.size >= 2 && signed.size < 999_999_999);

    let public = t.checkpoint_public_key_file();
    let auditor = t.auditor_url();
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        &public,
    ]))
    .await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "FOREIGN: checkpoint {forged} of KEYLEDGER_CHECKPOINTS: not signed by a trusted key"
        )),
        "{stdout}"
    );
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        &public,
        "--accept-foreign-checkpoints",
        &forged.to_string(),
    ]))
    .await;
    succeeded(&out);
    t.stop().await;
}

/// A start checks that its keys are the deployment's by the log's newest and oldest
/// commits and data keys: a flood of forged ones appended after the real ones (as
/// keyledger's own NATS user could) does not stop a restart.
#[tokio::test]
async fn a_flood_of_forged_commits_and_keys_does_not_stop_a_restart() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "flood-canary").await;
    let head = t.commits_of(&id).await.last().unwrap().clone();
    let js = async_nats::jetstream::new(t.service_nats().await);
    for n in 0..60 {
        let forged = NewCommit {
            id: domain::ids::CommandId::parse(&format!("forged-{n}")).unwrap(),
            aggregate: head.body.aggregate.clone(),
            version: head.body.version + 1 + n,
            command: "secret.metadata.set".into(),
            actor: head.body.actor.clone(),
            at: t.now(),
            events: vec![RawEvent::new(&json!({
                "type": "secret.metadatum_set", "v": 1, "key": "k", "value": "v",
            }))],
        }
        .seal(Some(head.hash), &CommitKey::new([7; 32]));
        append(&js, &head.body.aggregate.subject(), forged.to_bytes()).await;
        let key = json!({"kek_id": "forged-kek", "nonce": "AAAAAAAAAAAAAAAA", "wrapped": "AAAA"});
        append(
            &js,
            &format!("$KV.KEYLEDGER_KEYS.p1.forged-{n}"),
            key.to_string().into_bytes(),
        )
        .await;
    }
    let t = t.restart(|| {}).await;
    let read = t.get(&format!("/v1/secrets/{id}/payload"), &alice).await;
    assert_eq!(read.text().await.unwrap(), "flood-canary");
    t.stop().await;
}

/// Access records carry an authenticator too: a forged record (someone claiming a read
/// that never happened, or hiding behind a made-up user) is named and left out.
#[tokio::test]
async fn forged_access_records_are_named_and_left_out() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "read-me").await;
    let read = t.get(&format!("/v1/secrets/{id}/payload"), &alice).await;
    assert_eq!(read.status(), 200);
    let js = async_nats::jetstream::new(t.service_nats().await);
    let record = json!([{"at": "2026-12-01T17:31:55.000000Z", "user": "ceo-forged",
        "project": "p1", "secret": id, "source": "10.6.6.6", "allowed": true}]);
    let forged = append(
        &js,
        "keyledger.access.records",
        record.to_string().into_bytes(),
    )
    .await;
    let junk = append(&js, "keyledger.access.records", b"junk".to_vec()).await;
    // The real batch published again, authenticator and all: its read would count
    // twice.
    let real = js
        .get_stream("KEYLEDGER_ACCESS")
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Keyledger-Mac",
        real.headers.get("Keyledger-Mac").unwrap().as_str(),
    );
    let replayed = js
        .publish_with_headers("keyledger.access.records", headers, real.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    let key = t.dir.path().join("commit.key");
    let out = audit(args(&[
        "access",
        "--nats-url",
        &t.auditor_url(),
        "--commit-key-file",
        key.to_str().unwrap(),
        "--id",
        &id,
        "--json",
    ]))
    .await;
    succeeded(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.matches("\"alice\"").count(),
        1,
        "the real read is listed, once: {stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "sequence {replayed} of KEYLEDGER_ACCESS: a copy of the batch at sequence 1"
        )),
        "{stderr}"
    );
    assert!(!stdout.contains("ceo-forged"), "{stdout}");
    for seq in [forged, junk] {
        assert!(
            stderr.contains(&format!(
                "sequence {seq} of KEYLEDGER_ACCESS: not written by keyledger"
            )),
            "{stderr}"
        );
    }
    t.stop().await;
}
