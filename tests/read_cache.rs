//! The read path caches wrapped data keys (`api/src/key_cache.rs`). A cached key must
//! never let a payload out that the read model no longer shows: after the command that
//! deleted, expired or un-shared a secret, a read at that command's sequence is refused,
//! though the key it needed was read a moment before.

use std::time::Duration;

use serde_json::json;

use domain::timestamp::Timestamp;

use crate::support::{TestClock, TestStack};

fn seq_of(response: &reqwest::Response) -> String {
    response.headers()["x-keyledger-seq"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A payload read as `token` at (at least) sequence `seq`: its status and body.
async fn read_at(t: &TestStack, id: &str, token: &str, seq: &str) -> (u16, String) {
    let response = t
        .http
        .get(t.url(&format!("/v1/secrets/{id}/payload")))
        .bearer_auth(token)
        .header("Accept", "text/plain")
        .header("X-Keyledger-Min-Seq", seq)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_key_never_serves_a_deleted_expired_or_unshared_secret() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    let alice = t.token("alice", "p1");
    let bob = t.token_with("bob", "p2", &["creator"]);

    // Shared with bob, read by both: the key is in the cache.
    let shared = t.create_text(&alice, "shared", "cache-canary-acl").await;
    let acl = t
        .http
        .put(t.url(&format!("/v1/secrets/{shared}/acl")))
        .bearer_auth(&alice)
        .json(&json!({"read": {"users": ["bob"], "project-access": true}}))
        .send()
        .await
        .unwrap();
    assert!(acl.status().is_success());
    let seq = seq_of(&acl);
    assert_eq!(
        read_at(&t, &shared, &bob, &seq).await,
        (200, "cache-canary-acl".to_owned())
    );
    // The ACL reset: bob is refused at its sequence.
    let reset = t
        .http
        .delete(t.url(&format!("/v1/secrets/{shared}/acl")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    let (status, body) = read_at(&t, &shared, &bob, &seq_of(&reset)).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("cache-canary"), "{body}");

    // Read, then deleted: not found at the deletion's sequence.
    let deleted = t
        .create_text(&alice, "deleted", "cache-canary-delete")
        .await;
    assert_eq!(
        read_at(&t, &deleted, &alice, "0").await,
        (200, "cache-canary-delete".to_owned())
    );
    let delete = t
        .http
        .delete(t.url(&format!("/v1/secrets/{deleted}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    let (status, body) = read_at(&t, &deleted, &alice, &seq_of(&delete)).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("cache-canary"), "{body}");

    // Read, then past its expiration: refused at once, before any Expire command.
    let later = Timestamp::from_unix_millis(t.now().unix_millis() + 3_600_000)
        .unwrap()
        .to_rfc3339();
    let created = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&alice)
        .json(&json!({
            "name": "expiring",
            "payload": "cache-canary-expiry",
            "payload_content_type": "text/plain",
            "expiration": later,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let seq = seq_of(&created);
    let body: serde_json::Value = created.json().await.unwrap();
    let expiring = body["secret_ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        read_at(&t, &expiring, &alice, &seq).await,
        (200, "cache-canary-expiry".to_owned())
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let alice = t.token("alice", "p1");
    let (status, body) = read_at(&t, &expiring, &alice, &seq).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("cache-canary"), "{body}");
    t.stop().await;
}
