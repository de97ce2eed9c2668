//! The read path caches wrapped data keys (`api/src/key_cache.rs`) and, beside the
//! projector, secrets' rows with their current sealed payloads
//! (`projections/src/read/cache.rs`). Neither may let a payload out that the read
//! model no longer shows: after the command that deleted, expired or un-shared a
//! secret, or stored a new version, a read at that command's sequence sees the change,
//! though the row and key it needed were read a moment before.

use std::time::Duration;

use serde_json::json;

use domain::timestamp::Timestamp;

use crate::support::metrics::{scrape, value};
use crate::support::up::Up;
use crate::support::{TestClock, TestStack, id_of};

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
    let expiring = id_of(&created.json().await.unwrap());
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

/// An API whose read model lags (here: a frozen copy) still shows a secret after it
/// was deleted. Its cache must not open the payload from a key the deletion destroyed:
/// the commit goes by on NATS and the cache forgets the secret's keys, so the read
/// finds the key gone, as it would without a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_does_not_open_a_shredded_payload_from_its_cache() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "shredded", "cache-canary-lag").await;
    assert_eq!(read_at(&t, &id, &alice, "0").await.0, 200);

    // A second API over a copy of the read model that no projector updates.
    let frozen = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = t
            .dir
            .path()
            .join(format!("{}{suffix}", keyledger::stack::READ_MODEL_FILE));
        if from.exists() {
            std::fs::copy(
                &from,
                frozen
                    .path()
                    .join(format!("{}{suffix}", keyledger::stack::READ_MODEL_FILE)),
            )
            .unwrap();
        }
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (addr, _task) = keyledger::stack::start_api(
        &t.stack.service_url,
        &projections::db::sqlite_url(&frozen.path().join(keyledger::stack::READ_MODEL_FILE)),
        &t.stack.keys,
        t.config.api.clone(),
        None,
        t.config.clock.clone(),
        &Default::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let lagging = |path: String| {
        t.http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(&alice)
            .header("Accept", "text/plain")
            .send()
    };
    let payload = format!("/v1/secrets/{id}/payload");
    let warm = lagging(payload.clone()).await.unwrap();
    assert_eq!(warm.status(), 200);
    assert_eq!(warm.text().await.unwrap(), "cache-canary-lag");

    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    // The commit reaches the lagging API's cache within moments; from then on its
    // reads find the key destroyed.
    let refused = crate::support::eventually(
        "the lagging API to stop serving the shredded payload",
        Duration::from_secs(5),
        || async {
            let response = lagging(payload.clone()).await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            (status != 200).then_some((status, body))
        },
    )
    .await;
    assert_eq!(refused.0, 404, "{}", refused.1);
    assert!(!refused.1.contains("cache-canary"), "{}", refused.1);
    // And it stays refused: the key is not cached again.
    let again = lagging(payload).await.unwrap();
    assert_eq!(again.status(), 404);
    shutdown.cancel();
    t.stop().await;
}

/// A new current version replaces the cached one at once: a read at the new
/// version's sequence gets the new payload, never the cached old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_read_at_its_sequence_not_the_cached_one() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "rotated", "version-0").await;
    for n in 1..=5 {
        // Warm: the current version is cached.
        assert_eq!(read_at(&t, &id, &alice, "0").await.0, 200);
        let stored = t
            .http
            .post(t.url(&format!("/v1/secrets/{id}/versions")))
            .bearer_auth(&alice)
            .json(&json!({"payload": format!("version-{n}"), "payload_content_type": "text/plain"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), 201);
        assert_eq!(
            read_at(&t, &id, &alice, &seq_of(&stored)).await,
            (200, format!("version-{n}"))
        );
    }
    t.stop().await;
}

/// Readers that fill the cache race the projector's evictions: while eight tasks read
/// the same secret without pause (each miss stores the row it read), its ACL is
/// shared with bob and revoked again, 60 rounds (without the guard against a stale
/// insert, one run in two failed at 20). At each change's sequence,
/// bob's read must show that change: allowed after the share, refused after the
/// revocation, never a row the revocation made stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_filling_the_cache_never_outlive_an_acl_revocation() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let bob = t.token_with("bob", "p2", &["creator"]);
    let id = t.create_text(&alice, "contended", "race-canary").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, alice, stop) = (
            t.http.clone(),
            t.url(&format!("/v1/secrets/{id}/payload")),
            alice.clone(),
            stop.clone(),
        );
        readers.spawn(async move {
            let mut reads = 0u32;
            while !stop.is_cancelled() {
                let response = http
                    .get(&url)
                    .bearer_auth(&alice)
                    .header("Accept", "text/plain")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                reads += 1;
            }
            reads
        });
    }
    let acl = |body: serde_json::Value| {
        t.http
            .put(t.url(&format!("/v1/secrets/{id}/acl")))
            .bearer_auth(&alice)
            .json(&body)
            .send()
    };
    for round in 0..60 {
        let shared = acl(json!({"read": {"users": ["bob"], "project-access": true}}))
            .await
            .unwrap();
        assert!(shared.status().is_success());
        let (status, body) = read_at(&t, &id, &bob, &seq_of(&shared)).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "race-canary"),
            "round {round}"
        );
        let revoked = acl(json!({"read": {"users": [], "project-access": true}}))
            .await
            .unwrap();
        assert!(revoked.status().is_success());
        let (status, body) = read_at(&t, &id, &bob, &seq_of(&revoked)).await;
        assert_eq!(status, 403, "round {round}: {body}");
        assert!(!body.contains("race-canary"), "round {round}: {body}");
    }
    stop.cancel();
    let reads: u32 = readers.join_all().await.into_iter().sum();
    assert!(reads > 0, "the readers never ran");
    t.stop().await;
}

/// Reads of a secret's row (its metadata, `GET /v1/secrets/{id}`, and the look-up
/// before every change to it) come from the same cache as payload reads, and fill it:
/// on a real `keyledger up`, every metadata read of one secret after the first is a
/// hit, and a read at a change's sequence shows the change though the row was held a
/// moment before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reads_are_answered_from_the_cache_and_show_each_change() {
    let up = Up::spawn(|_| {}).await;
    let http = crate::support::http();
    let alice = up.token("alice", "demo", "admin");
    let bob = up.token("bob", "demo", "observer");
    let created = http
        .post(format!("{}/v1/secrets", up.http))
        .bearer_auth(&alice)
        .json(&json!({"name": "held", "payload": "meta-canary", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = id_of(&created.json().await.unwrap());
    let metadata = |token: &str, seq: &str| {
        http.get(format!("{}/v1/secrets/{id}", up.http))
            .bearer_auth(token)
            .header("Accept", "application/json")
            .header("X-Keyledger-Min-Seq", seq)
            .send()
    };
    let rows = |scrape: &prometheus_parse::Scrape, result: &str| {
        value(
            scrape,
            "keyledger_cache_requests_total",
            &[("cache", "payload_rows"), ("result", result)],
        )
    };

    let before = scrape(&http, &up.ops).await;
    for _ in 0..5 {
        let read = metadata(&bob, "0").await.unwrap();
        assert_eq!(read.status(), 200);
        let row: serde_json::Value = read.json().await.unwrap();
        assert_eq!(row["name"], "held", "{row}");
    }
    let after = scrape(&http, &up.ops).await;
    assert!(
        rows(&after, "hit") - rows(&before, "hit") >= 4.0,
        "metadata reads did not hit the read cache"
    );
    assert!(rows(&after, "miss") - rows(&before, "miss") <= 1.0);

    // Made private: bob, who read the row from the cache a moment ago, is refused
    // at the change's sequence.
    let private = http
        .put(format!("{}/v1/secrets/{id}/acl", up.http))
        .bearer_auth(&alice)
        .json(&json!({"read": {"users": [], "project-access": false}}))
        .send()
        .await
        .unwrap();
    assert!(private.status().is_success());
    let read = metadata(&bob, &seq_of(&private)).await.unwrap();
    assert_eq!(read.status(), 403);
    assert_eq!(metadata(&alice, "0").await.unwrap().status(), 200);

    // Deleted: not found at its sequence.
    let delete = http
        .delete(format!("{}/v1/secrets/{id}", up.http))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    let read = metadata(&alice, &seq_of(&delete)).await.unwrap();
    assert_eq!(read.status(), 404);
}

/// A commit that destroys no key leaves the key cache as it was: on a real `keyledger
/// up`, a secret read right after its create, and again right after a change of its
/// metadata, opens its payload with the key held since the first read (the build
/// before missed on every read for 10 s after any commit). Once deleted, nothing is
/// served at the deletion's sequence (the read model refuses first here; which
/// commits make the cache forget is unit-tested in `api/src/key_cache.rs`, and the
/// lagging replica above covers a deletion the read model does not show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_secrets_key_is_held_from_its_first_read_until_a_commit_destroys_it() {
    let up = Up::spawn(|_| {}).await;
    let http = crate::support::http();
    let alice = up.token("alice", "demo", "admin");
    let created = http
        .post(format!("{}/v1/secrets", up.http))
        .bearer_auth(&alice)
        .json(&json!({"name": "fresh", "payload": "key-canary", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = id_of(&created.json().await.unwrap());
    let payload = |seq: String| {
        http.get(format!("{}/v1/secrets/{id}/payload", up.http))
            .bearer_auth(&alice)
            .header("Accept", "text/plain")
            .header("X-Keyledger-Min-Seq", seq)
            .send()
    };
    let keys = |scrape: &prometheus_parse::Scrape, result: &str| {
        value(
            scrape,
            "keyledger_cache_requests_total",
            &[("cache", "wrapped_keys"), ("result", result)],
        )
    };
    let read = |seq: String| async {
        let response = payload(seq).await.unwrap();
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    };

    // Within moments of its create (far less than the settling time after a
    // destroying commit): one miss, then hits.
    let before = scrape(&http, &up.ops).await;
    for _ in 0..3 {
        assert_eq!(read("0".into()).await, (200, "key-canary".into()));
    }
    let after = scrape(&http, &up.ops).await;
    assert_eq!(keys(&after, "miss") - keys(&before, "miss"), 1.0);
    assert_eq!(keys(&after, "hit") - keys(&before, "hit"), 2.0);

    // A change of metadata is a commit on the secret that destroys nothing.
    let changed = http
        .put(format!("{}/v1/secrets/{id}/metadata", up.http))
        .bearer_auth(&alice)
        .json(&json!({"metadata": {"team": "blue"}}))
        .send()
        .await
        .unwrap();
    assert!(changed.status().is_success(), "{}", changed.status());
    let before = scrape(&http, &up.ops).await;
    assert_eq!(read(seq_of(&changed)).await, (200, "key-canary".into()));
    let after = scrape(&http, &up.ops).await;
    assert_eq!(keys(&after, "miss") - keys(&before, "miss"), 0.0);
    assert_eq!(keys(&after, "hit") - keys(&before, "hit"), 1.0);

    // Deleted: its commit names the key, and the payload is gone at its sequence.
    let deleted = http
        .delete(format!("{}/v1/secrets/{id}", up.http))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, body) = read(seq_of(&deleted)).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("key-canary"), "{body}");
}

/// A key cache whose feed drops commits (its follower fell behind) stops answering the
/// keys it holds, so no key a missed commit destroyed is answered from memory. Here
/// the feed holds one commit, a key is held, then removed from the key store behind
/// the cache's back (as a destroy named by a missed commit would), and a burst of
/// messages the follower cannot take one by one goes by: none of them names that
/// secret, yet the cache stops answering the key it held, and the client counted the
/// drops. Once the pause after the drop has passed (`key_cache::PAUSE`, 10 s: the time
/// a secret settles after a destroying commit, plus the slowest key-store read that
/// may be cached), the cache holds keys again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cache_whose_feed_drops_commits_stops_answering_what_it_holds_then_caches_again() {
    // A feed connection that holds one commit for its follower.
    let HeldKey {
        t,
        alice,
        id,
        key,
        service,
        kv,
        feed,
        shutdown,
        cache,
        project,
        secret,
    } = HeldKey::fetched("cache-canary-drop", 1).await;
    let wrapped = kv
        .get(format!("p1.{id}.{key}"))
        .await
        .unwrap()
        .expect("the key is in the key store");
    kv.purge(format!("p1.{id}.{key}")).await.unwrap();
    assert!(
        cache.get(&project, secret, key).await.unwrap().is_some(),
        "the key is held: gone from the key store, it is still answered"
    );

    // Junk messages on another secret's subject, as fast as the server takes them:
    // the follower cannot take each before the next. That secret's create reaching
    // the feed shows the follower's subscription in place (a flush is no round trip
    // with the server); everything the feed receives after it is the junk.
    let created = received(&feed);
    let other = t.create_text(&alice, "busy", "busy").await;
    crate::support::eventually(
        "the feed to receive the second secret's create",
        Duration::from_secs(10),
        || {
            let feed = &feed;
            async move { (received(feed) > created).then_some(()) }
        },
    )
    .await;
    let base = received(&feed);
    let subject = format!("keyledger.events.p1.secret.{other}");
    // Bursts (five at most) until the feed has dropped one. The junk lands in this
    // test's own stream: its projector records each message as skipped.
    let (mut bursts, mut sent) = (0, 0);
    let (service, subject, feed) = (&service, &subject, &feed);
    // Fails (panics) if the key is still answered 10 s on.
    crate::support::eventually(
        "the cache to stop answering the key once its feed dropped commits",
        Duration::from_secs(10),
        || {
            let burst = bursts < 5 && dropped(feed) == 0;
            bursts += 1;
            if burst {
                sent += 200;
            }
            let cache = &cache;
            let (project, secret) = (&project, secret);
            async move {
                if burst {
                    for _ in 0..200 {
                        service
                            .publish(subject.clone(), b"{}".to_vec().into())
                            .await
                            .unwrap();
                    }
                    service.flush().await.unwrap();
                }
                cache
                    .get(project, secret, key)
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    assert!(
        dropped(feed) > 0,
        "the client counted the commits its feed dropped"
    );
    // The bursts' tail may still be arriving (and dropped): once all of it is in,
    // nothing more comes.
    crate::support::eventually(
        "the feed's client to receive every message sent",
        Duration::from_secs(10),
        || async { (received(feed) >= base + sent).then_some(()) },
    )
    .await;
    let dropped_then = dropped(feed);

    // The key back in the key store: each round fetches it, removes it again and
    // asks once more. The second answer comes from memory only once caching resumed;
    // until then it is `None`, read through to the empty key store.
    let started = std::time::Instant::now();
    let (kv, name) = (&kv, &format!("p1.{id}.{key}"));
    crate::support::eventually(
        "the cache to hold keys again after the pause that follows a drop",
        api::key_cache::PAUSE * 2,
        || {
            let (cache, project, wrapped) = (&cache, &project, wrapped.clone());
            async move {
                kv.put(name, wrapped).await.unwrap();
                let fetched = cache.get(project, secret, key).await.unwrap();
                assert!(fetched.is_some(), "the key is in the key store again");
                kv.purge(name).await.unwrap();
                let held = cache.get(project, secret, key).await.unwrap().is_some();
                held.then_some(())
            }
        },
    )
    .await;
    assert_eq!(dropped(feed), dropped_then, "nothing dropped since");
    // The pause runs from the follower's notice of the last drop, which is no earlier
    // than the drop; `started` comes milliseconds after the last message arrived, so
    // a second's slack covers the gap.
    assert!(
        started.elapsed() >= api::key_cache::PAUSE - Duration::from_secs(1),
        "caching resumed {:?} after the drop was seen, not after its {:?} pause",
        started.elapsed(),
        api::key_cache::PAUSE
    );
    drop(cache);
    shutdown.cancel();
    t.stop().await;
}

/// Commits the feed's client has received but the follower has not taken are late:
/// one waiting among them may destroy a key the cache holds. The cache counts them as
/// the messages its client received (and did not drop) beyond those its follower took;
/// while at most `MOST_WAITING` wait, held keys are answered, beyond that none is. A
/// stalled follower cannot be made to order, so the waiting is simulated: a second
/// subscription on the feed's client that nobody reads (the cache's docs forbid one
/// for this reason) receives messages that the follower never takes. They are not
/// commits, and they never drain, so the test shows the count and its bound, not hits
/// coming back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cache_stops_answering_while_more_messages_than_it_allows_are_received_not_taken() {
    let HeldKey {
        t,
        id,
        key,
        service,
        kv,
        feed,
        shutdown,
        cache,
        project,
        secret,
        ..
    } = HeldKey::fetched("cache-canary-waiting", api::key_cache::FEED_MESSAGES).await;
    kv.purge(format!("p1.{id}.{key}")).await.unwrap();
    let held = async || cache.get(&project, secret, key).await.unwrap().is_some();
    assert!(held().await, "the key is held");

    let unread = feed.subscribe("test.unread").await.unwrap();
    // The feed's own message on the subject comes back once the server holds the
    // subscription (it takes a connection's SUB before its PUB; a flush is no round
    // trip with it): only then may another connection publish there. It is the
    // first message waiting.
    let before = received(&feed);
    feed.publish("test.unread", b"{}".to_vec().into())
        .await
        .unwrap();
    feed.flush().await.unwrap();
    let send = async |n: u64| {
        for _ in 0..n {
            service
                .publish("test.unread", b"{}".to_vec().into())
                .await
                .unwrap();
        }
        service.flush().await.unwrap();
    };
    let all_received = |n: u64| {
        let feed = &feed;
        async move { (received(feed) >= before + n).then_some(()) }
    };

    let most = api::key_cache::MOST_WAITING;
    crate::support::eventually(
        "the feed's client to receive its own message",
        Duration::from_secs(10),
        || all_received(1),
    )
    .await;
    send(most - 1).await;
    crate::support::eventually(
        "the feed's client to receive the messages",
        Duration::from_secs(10),
        || all_received(most),
    )
    .await;
    assert!(held().await, "{most} waiting: the key is still answered");
    send(1).await;
    crate::support::eventually(
        "the feed's client to receive one more",
        Duration::from_secs(10),
        || all_received(most + 1),
    )
    .await;
    assert!(
        !held().await,
        "{} waiting: the key is not answered",
        most + 1
    );
    assert_eq!(dropped(&feed), 0, "nothing was dropped: the messages wait");
    drop(unread);
    drop(cache);
    shutdown.cancel();
    t.stop().await;
}

/// A key cache on a feed connection of its own, and a secret whose key it has fetched
/// once (so holds).
struct HeldKey {
    t: TestStack,
    alice: String,
    id: String,
    key: domain::ids::KeyId,
    service: async_nats::Client,
    kv: async_nats::jetstream::kv::Store,
    feed: async_nats::Client,
    shutdown: tokio_util::sync::CancellationToken,
    cache: api::key_cache::KeyCache,
    project: domain::ids::ProjectId,
    secret: domain::ids::SecretId,
}

impl HeldKey {
    /// A fresh stack, a secret holding `payload`, and a cache whose feed's client holds
    /// `feed_messages` for its follower.
    async fn fetched(payload: &str, feed_messages: usize) -> Self {
        let t = TestStack::start().await;
        let alice = t.token("alice", "p1");
        let id = t.create_text(&alice, "held", payload).await;
        let key = t.key_ids(&id).await[0];
        let service = t.service_nats().await;
        let js = async_nats::jetstream::new(service.clone());
        let kv = js.get_key_value("KEYLEDGER_KEYS").await.unwrap();
        let feed =
            infra::nats::connect_buffering(&t.stack.service_url, "test-key-feed", feed_messages)
                .await
                .unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let cache = api::key_cache::KeyCache::start(
            infra::keystore::KeyStore::new(kv.clone()),
            feed.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let project = domain::ids::ProjectId::parse("p1").unwrap();
        let secret = domain::ids::SecretId::parse(&id).unwrap();
        assert!(cache.get(&project, secret, key).await.unwrap().is_some());
        Self {
            t,
            alice,
            id,
            key,
            service,
            kv,
            feed,
            shutdown,
            cache,
            project,
            secret,
        }
    }
}

/// The messages `client` has received, dropped ones included (the client counts each
/// before it hands it on or drops it).
fn received(client: &async_nats::Client) -> u64 {
    client
        .statistics()
        .in_messages
        .load(std::sync::atomic::Ordering::SeqCst)
}

/// The messages `client` has dropped for a slow subscriber (keyledger's patch of
/// async-nats counts each as it drops it).
fn dropped(client: &async_nats::Client) -> u64 {
    client
        .statistics()
        .dropped_messages
        .load(std::sync::atomic::Ordering::SeqCst)
}
