//! Change notifications over HTTP (`GET /v1/changes`, Server-Sent Events): a stream
//! shows only what its caller may list, resumes from a sequence without gaps or
//! duplicates, and shows another project nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::metrics::{scrape, value};
use crate::support::up::Up;
use crate::support::{TestStack, json_of};

/// One event of a stream: its `id` and its `data`.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    id: u64,
    change: Value,
}

/// A change stream, read event by event.
struct Changes {
    response: reqwest::Response,
    buffer: String,
}

impl Changes {
    async fn open(t: &TestStack, token: &str, resume: Option<u64>) -> Self {
        let mut request = t.http.get(t.url("/v1/changes")).bearer_auth(token);
        if let Some(seq) = resume {
            request = request.header("Last-Event-ID", seq.to_string());
        } else {
            request = request.query(&[("since", "0")]);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next change, or `None` if none comes within `within`.
    async fn next(&mut self, within: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
                    }
                }
                // Comments (keep-alives) have neither.
                if let (Some(id), Some(change)) = (id, data) {
                    return Some(Received { id, change });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Whether the server ends the stream within `within` without sending a change
    /// first (keep-alive comments aside).
    async fn ends(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(None) | Err(_)) => return true,
                Ok(Ok(Some(chunk))) => {
                    if std::str::from_utf8(&chunk).unwrap().contains("data:") {
                        return false;
                    }
                }
            }
        }
    }

    /// Every change up to the one of object `id` (included), within 20 s.
    async fn until(&mut self, id: &str) -> Vec<Received> {
        let mut all = Vec::new();
        loop {
            let r = self
                .next(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("no change of {id} came; got {all:#?}"));
            let last = r.change["id"] == id;
            all.push(r);
            if last {
                return all;
            }
        }
    }
}

async fn send(t: &TestStack, method: reqwest::Method, path: &str, token: &str, body: Value) {
    let response = t
        .http
        .request(method, t.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.text().await.unwrap()
    );
}

/// Stores a new text version at `versions` (a secret's `/versions`).
async fn store_version(t: &TestStack, token: &str, versions: &str, payload: &str) {
    let body = json!({"payload": payload, "payload_content_type": "text/plain"});
    send(t, reqwest::Method::POST, versions, token, body).await;
}

#[tokio::test]
async fn a_stream_shows_what_its_caller_may_list_and_resumes_without_gaps_or_duplicates() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let bob = t.token_with("bob", "p1", &["member"]);
    let carol = t.token("carol", "p2");
    let mut bobs = Changes::open(&t, &bob, None).await;
    let mut carols = Changes::open(&t, &carol, None).await;

    // A shared secret, changed; a private one, changed; the private one shared with
    // bob, changed, then taken back from him and changed again.
    let shared = t.create_text(&alice, "nm-shared", "cv1").await;
    let versions = format!("/v1/secrets/{shared}/versions");
    store_version(&t, &alice, &versions, "cv2").await;
    let private = t.create_text(&alice, "nm-private", "cp1").await;
    let acl = format!("/v1/secrets/{private}/acl");
    send(
        &t,
        reqwest::Method::PUT,
        &acl,
        &alice,
        json!({"read": {"project-access": false}}),
    )
    .await;
    let private_versions = format!("/v1/secrets/{private}/versions");
    store_version(&t, &alice, &private_versions, "cp2").await;
    send(
        &t,
        reqwest::Method::PUT,
        &acl,
        &alice,
        json!({"read": {"project-access": false, "users": ["bob"]}}),
    )
    .await;
    store_version(&t, &alice, &private_versions, "cp3").await;
    send(
        &t,
        reqwest::Method::PUT,
        &acl,
        &alice,
        json!({"read": {"project-access": false}}),
    )
    .await;
    store_version(&t, &alice, &private_versions, "cp4").await;
    // The deletion of the shared secret shows, judged as it was before.
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{shared}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // Project p2's one change: the only thing carol's stream may show.
    let marker = t.create_text(&carol, "p2-marker", "x").await;
    // The last of p1's, which bob sees: everything before it has come by then.
    let end = t.create_text(&alice, "end", "x").await;

    let mut seen = bobs.until(&end).await;
    assert_eq!(
        seen.pop().map(|r| r.change["version"].clone()),
        Some(json!(1))
    );
    let what: Vec<(String, u64)> = seen
        .iter()
        .map(|r| {
            (
                r.change["id"].as_str().unwrap().to_owned(),
                r.change["version"].as_u64().unwrap(),
            )
        })
        .collect();
    // shared v1, v2 and its deletion. The other secret while bob could list it: made
    // (shared, as every secret starts), made private (v2: he could list it before),
    // shared with him (v4) until taken back (v6); not v3 or v7, made while he could
    // not list it.
    assert_eq!(
        what,
        vec![
            (shared.clone(), 1),
            (shared.clone(), 2),
            (private.clone(), 1),
            (private.clone(), 2),
            (private.clone(), 4),
            (private.clone(), 5),
            (private.clone(), 6),
            (shared.clone(), 3),
        ],
        "{seen:#?}"
    );
    for r in &seen {
        assert_eq!(r.change["seq"].as_u64(), Some(r.id));
        assert_eq!(r.change["project"], "p1");
        assert_eq!(r.change["kind"], "secret");
        // Payload-free: the stream never carries a payload, a name or an ACL.
        let text = r.change.to_string();
        for secret in ["cv1", "cv2", "cp1", "cp2", "cp3", "cp4", "nm-", "bob"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert_eq!(
        seen[0].change["events"],
        json!(["secret.created", "secret.payload_stored"])
    );
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "{seen:#?}");

    let carol_saw = carols.until(&marker).await;
    assert_eq!(carol_saw.len(), 1, "{carol_saw:#?}");
    assert_eq!(carol_saw[0].change["id"], marker.as_str());

    // Resuming: bob reconnects after the fifth change; more happens meanwhile; the
    // new stream carries exactly what followed, once each.
    drop(bobs);
    let later = t.create_text(&alice, "later", "l1").await;
    let mut resumed = Changes::open(&t, &bob, Some(seen[4].id)).await;
    let after: Vec<u64> = resumed.until(&later).await.iter().map(|r| r.id).collect();
    // From the start again: the same changes, with `end` and `later`.
    let mut all_again_stream = Changes::open(&t, &bob, None).await;
    let all_again = all_again_stream.until(&later).await;
    let expected: Vec<u64> = all_again.iter().map(|r| r.id).skip(5).collect();
    assert_eq!(after, expected);
    assert_eq!(
        all_again.iter().map(|r| r.id).take(5).collect::<Vec<_>>(),
        seen.iter().map(|r| r.id).take(5).collect::<Vec<_>>()
    );
    assert_eq!(all_again.len(), seen.len() + 2);

    // A role that lists nothing is refused, as listing is.
    let reader = t.token_with("rita", "p1", &["reader"]);
    let refused = t.get("/v1/changes", &reader).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let bad = t
        .http
        .get(t.url("/v1/changes"))
        .bearer_auth(&bob)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        json_of(bad).await["description"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID")
    );
    // A resume point past the log's end is not this log's: refused, not skipped.
    let beyond = t
        .http
        .get(t.url("/v1/changes"))
        .bearer_auth(&bob)
        .header("Last-Event-ID", "999999")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::CONFLICT);

    // Four streams a caller; one closed gives its place back at once (well before
    // the 15 s a quiet stream waits), so a reconnect is not refused.
    drop((resumed, all_again_stream));
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(Changes::open(&t, &bob, None).await);
    }
    let fifth = t.get("/v1/changes", &bob).await;
    assert_eq!(fifth.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(fifth);
    open.pop();
    crate::support::eventually(
        "a closed stream's place",
        Duration::from_secs(5),
        || async {
            let r = t.get("/v1/changes", &bob).await;
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
}

/// The next notification on `sub`, within 20 s.
/// A subscription to `subject`, known to the server before this returns: a change
/// made after it is heard.
async fn hearing(client: &async_nats::Client, subject: &str) -> async_nats::Subscriber {
    let subscriber = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    subscriber
}

async fn notified(sub: &mut async_nats::Subscriber) -> Value {
    use futures::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("a notification within 20 s")
        .expect("the subscription is open");
    serde_json::from_slice(&message.payload).unwrap()
}

#[tokio::test]
async fn nats_subscribers_hear_only_their_projects_changes_that_every_lister_may_see() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let bob = t.token_with("bob", "p1", &["member"]);
    let carol = t.token("carol", "p2");
    let bobs = t.client_nats_as(&bob).await;
    let carols = t.client_nats_as(&carol).await;
    let mut bob_hears = bobs
        .subscribe("keyledger.changes.p1.secret.>")
        .await
        .unwrap();
    // Beyond its own project's kinds, a subscription is refused by the server and
    // hears nothing; its own project's does.
    let mut carol_snoops = carols.subscribe("keyledger.changes.>").await.unwrap();
    let mut carol_pries = carols
        .subscribe("keyledger.changes.p1.secret.>")
        .await
        .unwrap();
    let mut carol_hears = carols
        .subscribe("keyledger.changes.p2.secret.>")
        .await
        .unwrap();
    bobs.flush().await.unwrap();
    carols.flush().await.unwrap();

    let shared = t.create_text(&alice, "nm-shared", "cv1").await;
    let private = t.create_text(&alice, "nm-private", "cp1").await;
    let acl = format!("/v1/secrets/{private}/acl");
    send(
        &t,
        reqwest::Method::PUT,
        &acl,
        &alice,
        json!({"read": {"project-access": false}}),
    )
    .await;
    let versions = format!("/v1/secrets/{private}/versions");
    store_version(&t, &alice, &versions, "cp2").await;
    // The relay reads the whole stream, unfiltered. A real commit (authentic, its MAC
    // intact) copied onto another secret's subject, and onto a subject with a token too
    // many, is never announced: the projector skipped the first, and the second names
    // no aggregate. Announced, the first would be heard as a change of the shared secret.
    let js = async_nats::jetstream::new(t.service_nats().await);
    let stream = js.get_stream(infra::log::DEFAULT_STREAM).await.unwrap();
    let copied = stream
        .get_last_raw_message_by_subject(&format!("keyledger.events.p1.secret.{private}"))
        .await
        .unwrap()
        .payload;
    for subject in [
        format!("keyledger.events.p1.secret.{shared}.extra"),
        format!("keyledger.events.p1.secret.{shared}"),
    ] {
        js.publish(subject, copied.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let end = t.create_text(&alice, "end", "x").await;
    let marker = t.create_text(&carol, "p2-marker", "x").await;

    // Bob hears the shared secret, the other one while it was shared (its creation and
    // the change that made it private), not its later change, and the last one.
    let mut heard = Vec::new();
    loop {
        let change = notified(&mut bob_hears).await;
        let done = change["id"] == end.as_str();
        heard.push((
            change["id"].as_str().unwrap().to_owned(),
            change["version"].as_u64().unwrap(),
        ));
        assert!(!change.to_string().contains("cv1") && !change.to_string().contains("nm-"));
        if done {
            break;
        }
    }
    assert_eq!(
        heard,
        vec![(shared, 1), (private.clone(), 1), (private, 2), (end, 1)]
    );
    let first = notified(&mut carol_hears).await;
    assert_eq!(first["id"], marker.as_str(), "{first}");
    assert_eq!(first["project"], "p2");
    // Carol's subscriptions beyond her project heard nothing, not even her own
    // project's change: the server refused them (and says so in its log).
    use futures::StreamExt;
    for refused in [&mut carol_snoops, &mut carol_pries] {
        assert!(
            tokio::time::timeout(Duration::from_millis(200), refused.next())
                .await
                .map_or(true, |m| m.is_none()),
            "a subscription beyond the client's project heard something"
        );
    }
}

/// In `keyledger up` the NATS relay takes the commits the projector applied from its
/// tap, and reads from the log what the tap left out: here every batch, then every
/// batch of more than one commit. Either way each change is heard once, in log order.
#[tokio::test]
async fn the_nats_relay_hears_each_change_once_whatever_the_projectors_tap_leaves_out() {
    use futures::StreamExt;
    for most in [0, 1] {
        let t = TestStack::start_with(|c| c.projector.tap_batch_commits = most).await;
        let alice = t.token("alice", "p1");
        let bob = t.token_with("bob", "p1", &["member"]);
        let bobs = t.client_nats_as(&bob).await;
        let mut hears = hearing(&bobs, "keyledger.changes.p1.secret.>").await;
        // One at a time (batches of one commit), then 24 at once (batches of several).
        let mut created = vec![t.create_text(&alice, "first", "x").await];
        let names: Vec<String> = (0..24).map(|i| format!("many-{i}")).collect();
        created.extend(
            futures::future::join_all(names.iter().map(|name| t.create_text(&alice, name, "x")))
                .await,
        );
        created.push(t.create_text(&alice, "last", "x").await);

        let (mut heard, mut seqs) = (Vec::new(), Vec::new());
        while heard.len() < created.len() {
            let change = notified(&mut hears).await;
            heard.push(change["id"].as_str().unwrap().to_owned());
            seqs.push(change["seq"].as_u64().unwrap());
        }
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "tap_batch_commits {most}: heard out of order: {seqs:?}"
        );
        assert_eq!(heard.first(), created.first(), "tap_batch_commits {most}");
        assert_eq!(heard.last(), created.last(), "tap_batch_commits {most}");
        let (mut heard, mut created) = (heard, created);
        heard.sort();
        created.sort();
        assert_eq!(heard, created, "tap_batch_commits {most}");
        // And nothing twice: longer than the relay waits for the tap before it reads
        // the log.
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), hears.next())
                .await
                .is_err(),
            "tap_batch_commits {most}: a change was heard twice"
        );
        t.stop().await;
    }
}

/// A bulk append (a restore, a migration, `audit replay-bench`) on more objects than
/// any bound the relay once had is announced whole, and the relay reads no object's
/// history again for it: on a real `keyledger up`, 12,000 secrets created and then each
/// changed straight on the log are heard 24,000 times, and every change's facts come
/// from what the relay kept of the secret's create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_relay_announces_a_bulk_append_reading_no_history_again() {
    const SECRETS: u64 = 12_000;
    let up = Up::spawn(|_| {}).await;
    let bob = up.token("bob", "replay-bench", "member");
    let bobs = infra::nats::connect_as_client(&format!("nats://{}", up.nats), "test", &bob)
        .await
        .unwrap();
    let mut hears = hearing(&bobs, "keyledger.changes.replay-bench.secret.>").await;
    let key = infra::keyfile::commit_key(&up.data_dir().join("commit.key")).unwrap();
    commands::log::synthetic::fill(
        &up.service_js().await,
        &key,
        &domain::ids::ProjectId::parse("replay-bench").unwrap(),
        2 * SECRETS,
        SECRETS,
        |_| {},
    )
    .await
    .unwrap();

    let mut heard = std::collections::HashSet::new();
    for _ in 0..2 * SECRETS {
        let change = notified(&mut hears).await;
        let version = change["version"].as_u64().unwrap();
        assert!(version == 1 || version == 2, "{change}");
        let id = change["id"].as_str().unwrap().to_owned();
        assert!(heard.insert((id, version)), "heard twice: {change}");
    }
    assert_eq!(heard.len() as u64, 2 * SECRETS);
    // And nothing more: longer than the relay waits for the tap before it reads the
    // log.
    use futures::StreamExt;
    match tokio::time::timeout(Duration::from_millis(1500), hears.next()).await {
        Err(_) => {}
        Ok(Some(m)) => panic!("a change was heard twice: {:?}", m.payload),
        Ok(None) => panic!("the subscription ended"),
    }
    let metrics = scrape(&crate::support::http(), &up.ops).await;
    let relay = |result| {
        value(
            &metrics,
            "keyledger_cache_requests_total",
            &[("cache", "change_relay"), ("result", result)],
        )
    };
    assert_eq!((relay("hit"), relay("miss")), (SECRETS as f64, 0.0));
    up.stop();
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let clock = crate::support::TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    let alice = t.token("alice", "p1");
    let mut stream = Changes::open(&t, &alice, None).await;
    let first = t.create_text(&alice, "before", "x").await;
    assert_eq!(
        stream.next(Duration::from_secs(20)).await.unwrap().change["id"],
        first.as_str()
    );
    // The token (valid ten minutes) has expired by the next change: the stream ends
    // instead of showing it, and the client comes back with a fresh token.
    clock.advance(Duration::from_secs(11 * 60));
    let fresh = t.token("alice", "p1");
    let second = t.create_text(&fresh, "after", "x").await;
    assert!(stream.ends(Duration::from_secs(20)).await);
    let mut again = Changes::open(&t, &fresh, Some(0)).await;
    let seen = again.until(&second).await;
    assert_eq!(seen.len(), 2, "{seen:#?}");
}

#[tokio::test]
async fn a_nats_connection_ends_when_its_token_expires() {
    let t = TestStack::start().await;
    let bob = domain::principal::Principal {
        user: domain::ids::UserId::parse("bob").unwrap(),
        project: domain::ids::ProjectId::parse("p1").unwrap(),
        roles: vec![domain::ids::Role::parse("member").unwrap()],
        service: None,
    };
    // Real seconds: nats-server ends the connection by its own clock.
    let token = t
        .stack
        .keys
        .issuer
        .issue(&bob, Duration::from_secs(3), infra::clock::system()());
    let client = t.client_nats_as(&token).await;
    let mut hears = hearing(&client, "keyledger.changes.p1.secret.>").await;
    let alice = t.token("alice", "p1");
    let first = t.create_text(&alice, "while-valid", "x").await;
    assert_eq!(notified(&mut hears).await["id"], first.as_str());
    crate::support::eventually(
        "the connection to end with its token",
        Duration::from_secs(20),
        || {
            let state = client.connection_state();
            async move { (state != async_nats::connection::State::Connected).then_some(()) }
        },
    )
    .await;
}
