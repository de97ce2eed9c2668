//! The audit CLI against a real stack's log: history with filters, never a payload;
//! verification of the live log and of a copy tampered with in each way.

use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::TestStack;

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

async fn audit(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(KEYLEDGER)
            .arg("audit")
            .args(args)
            .env_remove("KEYLEDGER_NATS_URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
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
    let acl = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(&alice)
        .json(&json!({"read": {"users": ["bob"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(acl.status(), 200);
    t.create_text(&t.token("carol", "p2"), "other", "x").await;
    let url = t.stack.service_url.clone();

    // One secret's history: created by alice, then shared with bob; never a payload.
    let out = audit(args(&["log", "--nats-url", &url, "--id", &id, "--json"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    // The live log verifies.
    let out = audit(args(&["verify", "--nats-url", &url])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("ok: 3 commits verified, up to sequence 3")
    );

    // A copy, tampered with in three ways: each is caught and its sequence named.
    let export = audit(args(&["export", "--nats-url", &url])).await;
    assert!(export.status.success());
    let copy: Vec<String> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(copy.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let verify_copy = |name: &str, content: Vec<String>| {
        let path = dir.path().join(name);
        std::fs::write(&path, content.join("\n")).unwrap();
        let path = path.to_str().unwrap().to_owned();
        async move { audit(args(&["verify", "--file", &path])).await }
    };
    let ok = verify_copy("intact", copy.clone()).await;
    assert!(ok.status.success());

    let mut changed = copy.clone();
    let mut line: Value = serde_json::from_str(&changed[1]).unwrap();
    let commit = STANDARD.decode(line["commit"].as_str().unwrap()).unwrap();
    let commit = String::from_utf8(commit)
        .unwrap()
        .replace("\"bob\"", "\"eve\"");
    line["commit"] = json!(STANDARD.encode(commit));
    changed[1] = line.to_string();
    let out = verify_copy("changed", changed).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAILS verification at sequence 2: commit hash mismatch"),
        "{err}"
    );

    let mut dropped = copy.clone();
    dropped.remove(1);
    let out = verify_copy("dropped", dropped).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at sequence 2: expected sequence 2 next, found 3"),
        "{err}"
    );

    let mut reordered = copy.clone();
    reordered.swap(0, 1);
    let out = verify_copy("reordered", reordered).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at sequence 1: expected sequence 1 next, found 2"),
        "{err}"
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
    assert_eq!(shown["total"], 2);
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
    assert_eq!(shown["total"], 3);
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
    assert_eq!(page["total"], 1);
    assert_eq!(page["events"][0]["actor"], "alice");
    let page: Value = events(&auditor, "?limit=1&offset=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            page["total"].as_u64(),
            page["events"].as_array().unwrap().len()
        ),
        (Some(3), 1)
    );
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = lines(&out);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        (records[0]["user"].as_str(), records[0]["allowed"].as_bool()),
        (Some("alice"), Some(true))
    );
    assert!(records[0]["version"].is_string());
    assert_eq!(records[0]["source"], "127.0.0.1");
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
    let set = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(&alice)
        .json(&json!({"read": {"project-access": false, "users": ["bob"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
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
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
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
