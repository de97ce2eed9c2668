//! The audit CLI against a real stack's log: history with filters, never a payload;
//! verification of the live log and of a copy tampered with in each way.

use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use domain::audit::RawEvent;
use domain::commit::Commit;

use crate::support::{TestStack, args, audit};

/// Asserts the command succeeded, showing its stderr if not.
pub fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces secret `id`'s ACL over HTTP.
async fn set_acl(t: &TestStack, token: &str, id: &str, acl: Value) {
    let response = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(token)
        .json(&acl)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn the_log_tells_who_did_what_and_verifies_until_tampered_with() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "audit-canary-payload").await;
    set_acl(&t, &alice, &id, json!({"read": {"users": ["bob"]}})).await;
    t.create_text(&t.token("carol", "p2"), "other", "x").await;
    let url = t.stack.service_url.clone();

    // One secret's history: created by alice, then shared with bob; never a payload.
    let out = audit(args(&["log", "--nats-url", &url, "--id", &id, "--json"])).await;
    succeeded(&out);
    let history = lines(&out);
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["secret.created", "secret.payload_stored", "secret.acl_set"]
    );
    assert!(history.iter().all(|e| e["actor"] == "alice"));
    assert_eq!(history[2]["event"]["read"]["users"], json!(["bob"]));
    assert_eq!(history[1]["event"]["ciphertext"], "[sealed]");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("audit-canary-payload"));
    // Filters: by type across projects, by actor.
    let out = audit(args(&[
        "log",
        "--nats-url",
        &url,
        "--type",
        "secret.created",
        "--json",
    ]))
    .await;
    assert_eq!(lines(&out).len(), 2);
    let out = audit(args(&[
        "log",
        "--nats-url",
        &url,
        "--actor",
        "carol",
        "--json",
    ]))
    .await;
    assert!(
        lines(&out)
            .iter()
            .all(|e| e["aggregate"]["project"] == "p2")
    );
    let table = audit(args(&["log", "--nats-url", &url, "--project", "p1"])).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("secret.acl_set"));

    // The live log verifies, on its own and against the signed checkpoints, read
    // with the auditor's read-only account.
    t.checkpointed(3).await;
    let auditor = t.auditor_url();
    let key = t.checkpoint_public_key_file();
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        &key,
    ]))
    .await;
    succeeded(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("ok: 3 commits verified, up to sequence 3"),
        "{said}"
    );
    assert!(
        said.contains("the latest covers sequences 1 to 3"),
        "{said}"
    );
    // Checkpoints are never skipped silently: without the key, verify says so.
    let out = audit(args(&["verify", "--nats-url", &auditor])).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no public key to check them with"));

    // A copy, tampered with in each way: each is caught and its sequence named.
    let export = audit(args(&["export", "--nats-url", &auditor])).await;
    assert!(export.status.success());
    let all: Vec<String> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let (checkpoints, copy): (Vec<String>, Vec<String>) = all
        .into_iter()
        .partition(|l| l.starts_with("{\"checkpoint\""));
    assert!(!checkpoints.is_empty());
    assert_eq!(copy.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let verify_copy = |name: &str, commits: Vec<String>, signed: bool| {
        let path = dir.path().join(name);
        let mut lines = if signed {
            checkpoints.clone()
        } else {
            Vec::new()
        };
        lines.extend(commits);
        std::fs::write(&path, lines.join("\n")).unwrap();
        let path = path.to_str().unwrap().to_owned();
        let key = key.clone();
        async move {
            let mut a = args(&["verify", "--file", &path]);
            if signed {
                a.extend(args(&["--public-key", &key]));
            }
            audit(a).await
        }
    };
    let ok = verify_copy("intact", copy.clone(), true).await;
    succeeded(&ok);

    let edit = |line: &str, f: &dyn Fn(Commit<RawEvent>) -> Vec<u8>| {
        let mut line: Value = serde_json::from_str(line).unwrap();
        let commit = STANDARD.decode(line["commit"].as_str().unwrap()).unwrap();
        line["commit"] = json!(STANDARD.encode(f(Commit::parse_unverified(&commit).unwrap())));
        line.to_string()
    };
    // Bob becomes eve in the ACL commit (sequence 2).
    let to_eve = |mut c: Commit<RawEvent>| {
        let mut event = c.body.events[0].value();
        event["read"]["users"] = json!(["eve"]);
        c.body.events[0] = RawEvent::new(&event);
        c
    };
    let mut changed = copy.clone();
    changed[1] = edit(&changed[1], &|c| to_eve(c).to_bytes());
    let out = verify_copy("changed", changed, true).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "FAILS verification at sequence 2: a message keyledger did not write (commit hash \
             mismatch"
        ),
        "{err}"
    );

    // The same change with the commit's hash recomputed, as someone with write
    // access to the stream (but not the commit key) could: the chain alone cannot
    // tell, the checkpoint can.
    let mut rewritten = copy.clone();
    rewritten[1] = edit(&rewritten[1], &|c| {
        let c = to_eve(c);
        c.body
            .seal(c.prev, &domain::commit::CommitKey::new([9; 32]))
            .to_bytes()
    });
    let out = verify_copy("rewritten, unsigned", rewritten.clone(), false).await;
    succeeded(&out);
    let out = verify_copy("rewritten", rewritten, true).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Checkpoints are signed every 100 ms here, so the smallest one covering
    // sequence 2 may be of 2 or of 3 commits: the range named starts after the last
    // one that matched and ends at it.
    assert!(
        err.contains("at sequence 1: the first 2 commits do not hash to the root signed")
            || err.contains("at sequence 2: the first 2 commits do not hash")
            || err.contains("at sequence 1: the first 3 commits do not hash")
            || err.contains("at sequence 2: the first 3 commits do not hash"),
        "{err}"
    );

    let mut dropped = copy.clone();
    dropped.remove(1);
    let out = verify_copy("dropped", dropped, true).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at sequence 2: expected sequence 2 next, found 3"),
        "{err}"
    );

    // The last commit removed: no gap, no broken link; the checkpoint shows it.
    let mut truncated = copy.clone();
    truncated.pop();
    let out = verify_copy("truncated, unsigned", truncated.clone(), false).await;
    assert!(out.status.success());
    let out = verify_copy("truncated", truncated, true).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at sequence 3: the checkpoint of 3 commits")
            && err.contains("the log ends at sequence 2"),
        "{err}"
    );

    let mut reordered = copy.clone();
    reordered.swap(0, 1);
    let out = verify_copy("reordered", reordered, true).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at sequence 1: expected sequence 1 next, found 2"),
        "{err}"
    );

    // A checkpoint signed with another key does not pass for the log's.
    let other = dir.path().join("other.pub");
    let stranger =
        domain::checkpoint::CheckpointSigner::new("keyledger/KEYLEDGER", &[9; 32]).unwrap();
    std::fs::write(&other, stranger.public_key()).unwrap();
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        other.to_str().unwrap(),
    ]))
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("is signed by the given public key(s): is it the right key"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no signature by a trusted key"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    t.stop().await;
}

#[tokio::test]
async fn history_over_http_outlives_the_secret_and_is_for_auditors() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let auditor = t.token_with("audrey", "p1", &["audit"]);
    let id = t.create_text(&alice, "db", "history-canary").await;
    let history = |token: String| {
        let url = t.url(&format!("/v1/secrets/{id}/history"));
        let http = t.http.clone();
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let shown: Value = history(auditor.clone()).await.json().await.unwrap();
    assert_eq!(shown["history"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(shown["next"], Value::Null, "{shown}");
    assert_eq!(shown["history"][0]["actor"], "alice");
    assert!(shown["history"][0]["hash"].as_str().unwrap().len() == 64);
    assert!(!shown.to_string().contains("history-canary"));
    // Another project's user learns nothing.
    let outsider = history(t.token("bob", "p2")).await;
    assert_eq!(outsider.status(), 403);

    // Deleted, the secret is gone from reads, not from its history.
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let shown: Value = history(auditor.clone()).await.json().await.unwrap();
    assert_eq!(shown["history"].as_array().unwrap().len(), 3, "{shown}");
    assert_eq!(shown["history"][2]["event"]["type"], "secret.deleted");
    assert_eq!(history(t.token("bob", "p2")).await.status(), 403);

    // The project-wide trail is for auditors and admins, filtered and paged.
    let events = |token: &str, query: &str| {
        let url = t.url(&format!("/v1/audit/events{query}"));
        let http = t.http.clone();
        let token = token.to_owned();
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let page: Value = events(&auditor, "?type=secret.deleted")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["events"][0]["actor"], "alice");
    // Paged a commit at a time, the trail is followed through `next` to its end.
    let mut url = t.url("/v1/audit/events?limit=1");
    let mut seen = Vec::new();
    loop {
        let page: Value = t
            .http
            .get(&url)
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // A commit is never split: a page holds one commit's events.
        let events = page["events"].as_array().unwrap();
        assert!(
            events.iter().all(|e| e["seq"] == events[0]["seq"]),
            "{page}"
        );
        seen.extend(events.iter().map(|e| e["event"]["type"].clone()));
        match page["next"].as_str() {
            Some(next) => {
                assert!(next.contains("limit=1"), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            json!("secret.created"),
            json!("secret.payload_stored"),
            json!("secret.deleted")
        ]
    );
    let zero = events(&auditor, "?limit=0").await;
    assert_eq!(zero.status(), 400);
    let text = zero.text().await.unwrap();
    assert!(text.contains("limit must be 1 to 1000"), "{text}");
    let observer = t.token_with("olga", "p1", &["observer"]);
    let denied = events(&observer, "").await;
    assert_eq!(denied.status(), 403);
    let text = denied.text().await.unwrap();
    assert!(text.contains("requires role audit or admin"), "{text}");
    t.stop().await;
}

#[tokio::test]
async fn every_payload_read_is_recorded_and_required_records_guard_the_payload() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "guarded").await;
    let read = |token: String| {
        let url = t.url(&format!("/v1/secrets/{id}/payload"));
        let http = t.http.clone();
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(read(alice.clone()).await.status(), 200);
    assert_eq!(read(t.token("bob", "p2")).await.status(), 403);

    let url = t.stack.service_url.clone();
    let out = audit(args(&["access", "--nats-url", &url, "--id", &id, "--json"])).await;
    succeeded(&out);
    let records = lines(&out);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        (records[0]["user"].as_str(), records[0]["allowed"].as_bool()),
        (Some("alice"), Some(true))
    );
    assert!(records[0]["version"].is_string());
    assert_eq!(records[0]["source"], "127.0.0.1");
    assert!(
        records[0].get("access_key").is_none(),
        "a bearer token's read"
    );
    assert_eq!(
        (records[1]["user"].as_str(), records[1]["allowed"].as_bool()),
        (Some("bob"), Some(false))
    );
    assert!(
        records[1]["reason"]
            .as_str()
            .unwrap()
            .contains("your token is for project p2")
    );
    let denied = audit(args(&["access", "--nats-url", &url, "--denied", "--json"])).await;
    assert_eq!(lines(&denied).len(), 1);

    // Without the access stream, a required record cannot be stored: no payload.
    let js = async_nats::jetstream::new(t.service_nats().await);
    js.delete_stream(api::access_log::STREAM).await.unwrap();
    let refused = read(alice.clone()).await;
    assert_eq!(refused.status(), 503);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("could not be stored, so the payload is not returned"),
        "{text}"
    );
    assert!(!text.contains("guarded"));
    t.stop().await;
}

#[tokio::test]
async fn best_effort_records_let_reads_through() {
    let t = TestStack::start_with(|c| {
        c.api.config.access_mode = api::access_log::AccessMode::BestEffort;
    })
    .await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "served").await;
    let js = async_nats::jetstream::new(t.service_nats().await);
    js.delete_stream(api::access_log::STREAM).await.unwrap();
    let r = t.get(&format!("/v1/secrets/{id}/payload"), &alice).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "served");
    t.stop().await;
}

#[tokio::test]
async fn who_could_read_a_secret_at_a_time_is_one_command() {
    let clock = crate::support::TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "x").await;
    let before = t.now().plus(std::time::Duration::from_secs(60)).unwrap();
    clock.advance(std::time::Duration::from_secs(3600));
    let alice = t.token("alice", "p1");
    set_acl(
        &t,
        &alice,
        &id,
        json!({"read": {"project-access": false, "users": ["bob"]}}),
    )
    .await;
    let after = t.now().plus(std::time::Duration::from_secs(60)).unwrap();
    let url = t.stack.service_url.clone();
    let readers = |at: String| {
        let (url, id) = (url.clone(), id.clone());
        async move {
            let out = audit(args(&[
                "state",
                "--nats-url",
                &url,
                "--at",
                &at,
                "--id",
                &id,
                "--readers",
            ]))
            .await;
            succeeded(&out);
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let then = readers(before.to_rfc3339()).await;
    assert_eq!(then["private"], false);
    assert!(!then.to_string().contains("bob"));
    let now = readers(after.to_rfc3339()).await;
    assert_eq!(now["private"], true);
    assert!(
        now["readers"]
            .to_string()
            .contains("bob (on the ACL, any project)"),
        "{now}"
    );
    // What bob could read: nothing named him before the ACL change; after it, the
    // secret, because he is on its ACL. What roles would give is stated per project.
    let readable_by_bob = |at: String| {
        let url = url.clone();
        async move {
            let out = audit(args(&[
                "state",
                "--nats-url",
                &url,
                "--at",
                &at,
                "--readable-by",
                "bob",
            ]))
            .await;
            succeeded(&out);
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let then = readable_by_bob(before.to_rfc3339()).await;
    assert_eq!(then["named"], json!([]));
    assert_eq!(
        then["by_role"][0]["as observer, member or creator"],
        json!([id])
    );
    let now = readable_by_bob(after.to_rfc3339()).await;
    assert_eq!(now["named"][0]["secret"], id);
    assert!(
        now["named"][0]["why"]
            .as_str()
            .unwrap()
            .starts_with("on its ACL")
    );
    assert_eq!(
        now["by_role"][0]["as observer, member or creator"],
        json!([])
    );
    assert_eq!(now["by_role"][0]["as admin"], json!([id]));

    // The whole project at a sequence.
    let out = audit(args(&[
        "state",
        "--nats-url",
        &url,
        "--at",
        "1",
        "--project",
        "p1",
    ]))
    .await;
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["commits"], 1);
    assert_eq!(state["secrets"][0]["acl"]["project_access"], true);
    assert_eq!(
        state["secrets"][0]["versions"][0]["stages"],
        json!(["current"])
    );
    t.stop().await;
}

/// What `keyledger up`'s checkpointer gets from the projector in its process: batches
/// of commits as the projector read them, which may start after a gap (a batch missed
/// or left out) or repeat what the tree holds. The tree takes only what continues it,
/// a tick reads the rest from the log, and the root is the log's own.
#[tokio::test]
async fn a_checkpointer_handed_commits_with_gaps_and_repeats_signs_the_logs_own_tree() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    for name in ["a", "b", "c", "d", "e"] {
        t.create_text(&alice, name, "x").await;
    }
    // A message keyledger did not write is in the log too.
    let js = async_nats::jetstream::new(t.service_nats().await);
    let forged = js
        .publish("keyledger.events.p1.secret.forged", "not a commit".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    t.create_text(&alice, "f", "x").await;
    let read = async |js: &async_nats::jetstream::Context| {
        let mut log = Vec::new();
        infra::audit::read_log(js, "KEYLEDGER", None, 1, |m| {
            log.push((m.seq, m.payload));
            true
        })
        .await
        .unwrap();
        log
    };
    let log = read(&js).await;
    assert!(log.len() >= 7, "{} messages", log.len());

    // With a key of its own, it starts from sequence 1.
    let dir = tempfile::tempdir().unwrap();
    let settings = commands::log::checkpoints::CheckpointSettings {
        key_file: dir.path().join("other.key"),
        ..t.config.checkpoints.clone().unwrap()
    };
    let signer = commands::log::checkpoints::load_signer(&settings).unwrap();
    let public_key = signer.public_key();
    let mut checkpointer = commands::log::checkpoints::Checkpointer::resume(
        js.clone(),
        "KEYLEDGER",
        signer,
        (*t.stack.keys.commit).clone(),
        t.config.clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(checkpointer.covered(), 0);
    checkpointer.take(&log[1..3]);
    assert_eq!(checkpointer.covered(), 0, "sequences 2 and 3 follow a gap");
    checkpointer.take(&log[0..2]);
    assert_eq!(checkpointer.covered(), 2);
    checkpointer.take(&log[0..4]);
    assert_eq!(checkpointer.covered(), 4, "1 and 2 again, then 3 and 4");
    checkpointer.take(&log[5..]);
    assert_eq!(checkpointer.covered(), 4, "sequence 5 is missing");
    checkpointer.take(&log[3..]);
    assert_eq!(
        checkpointer.covered(),
        log.len() as u64,
        "4 again, then 5 on, the forged message among them"
    );

    let signed = checkpointer.tick().await.unwrap();
    assert!(signed >= log.len() as u64, "signed {signed}");
    let mut whole = domain::merkle::MerkleLog::compact();
    for (_, commit) in read(&js).await.iter().take(signed as usize) {
        whole.append(commit);
    }
    assert_eq!(checkpointer.root(), whole.root());
    // Its checkpoint names the forged message as foreign.
    let verifier = domain::checkpoint::CheckpointVerifier::new(&[&public_key]).unwrap();
    let mut ours = Vec::new();
    infra::audit::read_log(
        &js,
        commands::log::checkpoints::STREAM,
        Some(commands::log::checkpoints::subject("KEYLEDGER")),
        1,
        |m| {
            ours.extend(verifier.open(&String::from_utf8_lossy(&m.payload)).ok());
            true
        },
    )
    .await
    .unwrap();
    let note = ours
        .iter()
        .find(|c| c.size == signed)
        .expect("its checkpoint");
    assert_eq!(note.foreign.to_string(), forged.to_string());
    t.stop().await;
}

#[tokio::test]
async fn an_auditor_with_read_only_nats_and_the_public_key_proves_and_keeps_checkpoints() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "db", "proof-canary").await;
    set_acl(&t, &alice, &id, json!({"read": {"users": ["bob"]}})).await;
    t.checkpointed(2).await;
    let auditor = t.auditor_url();
    let key = t.checkpoint_public_key_file();
    let dir = tempfile::tempdir().unwrap();

    // A checkpointer starting now resumes from the last checkpoint's right edge,
    // without reading the log; with another key it has to rehash from sequence 1.
    let settings = t.config.checkpoints.clone().unwrap();
    let js = async_nats::jetstream::new(t.service_nats().await);
    let commit_key = (*t.stack.keys.commit).clone();
    let resume = |settings: commands::log::checkpoints::CheckpointSettings| {
        let js = js.clone();
        let clock = t.config.clock.clone();
        let key = commit_key.clone();
        async move {
            let signer = commands::log::checkpoints::load_signer(&settings).unwrap();
            commands::log::checkpoints::Checkpointer::resume(js, "KEYLEDGER", signer, key, clock)
                .await
                .unwrap()
                .covered()
        }
    };
    assert_eq!(resume(settings.clone()).await, 2);
    let other = commands::log::checkpoints::CheckpointSettings {
        key_file: dir.path().join("other.key"),
        ..settings
    };
    assert_eq!(resume(other).await, 0);

    // A proof that the ACL change (sequence 2) is in the signed log, checked with
    // nothing but the public key.
    let out = audit(args(&[
        "prove",
        "2",
        "--nats-url",
        &auditor,
        "--public-key",
        &key,
    ]))
    .await;
    succeeded(&out);
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &out.stdout).unwrap();
    let proof: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!proof.to_string().contains("proof-canary"));
    let check = |file: std::path::PathBuf| {
        let key = key.clone();
        async move {
            audit(args(&[
                "check-proof",
                file.to_str().unwrap(),
                "--public-key",
                &key,
            ]))
            .await
        }
    };
    let out = check(proof_file.clone()).await;
    succeeded(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("ok: the commit at sequence 2 (secret.acl.set by alice")
            && said.contains("events secret.acl_set"),
        "{said}"
    );
    // The same proof, claimed for another position in the log, fails.
    let mut forged = proof.clone();
    forged["sequence"] = json!(1);
    let forged_file = dir.path().join("forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let out = check(forged_file).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the proof FAILS"), "{err}");

    // The auditor keeps today's checkpoint; later, after more commits and a restart
    // of the service (which resumes the tree from its last checkpoint), the log
    // still matches it and every checkpoint since.
    let out = audit(args(&[
        "checkpoint",
        "--nats-url",
        &auditor,
        "--public-key",
        &key,
    ]))
    .await;
    succeeded(&out);
    let saved = dir.path().join("saved.checkpoint");
    std::fs::write(&saved, &out.stdout).unwrap();
    let t = t.restart(|| {}).await;
    t.create_text(&alice, "later", "x").await;
    t.checkpointed(3).await;
    let auditor = t.auditor_url();
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &auditor,
        "--public-key",
        &key,
        "--checkpoint",
        saved.to_str().unwrap(),
    ]))
    .await;
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("the latest covers sequences 1 to 3"));

    // The auditor's account reads the log with direct gets (everything it cannot do
    // is in tests/nats_security.rs).
    let client = infra::nats::connect(&auditor, "auditor").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let first = js
        .get_stream_no_info("KEYLEDGER")
        .await
        .unwrap()
        .direct_get(1)
        .await;
    assert!(first.is_ok(), "it may read the log: {:?}", first.err());
    let service = async_nats::jetstream::new(t.service_nats().await);
    let mut log = service.get_stream("KEYLEDGER").await.unwrap();
    assert_eq!(log.info().await.unwrap().state.messages, 3);
    t.stop().await;
}
