//! KEK rotation with online re-wrap (issue 19): `keyledger keys rotate-kek` makes a new
//! KEK version that new data keys are wrapped by at once; `keyledger keys rewrap`
//! moves every stored key to it while reads and writes go on, is killed with SIGKILL
//! half-way and resumed; not one read fails, every payload reads back byte-exact, no
//! key is left under the old KEK, the keyring's commits verify, and `retire-kek`
//! destroys the old KEK, after which keyledger restarts and still reads everything. A
//! key destroyed between a re-wrap's read and its write stays destroyed.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use commands::keyring::rewrap::{self, Outcome};
use infra::envelope::{Envelope, WrappedKey};
use reqwest::StatusCode;

use crate::support::{TestStack, args, audit, eventually};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

/// `keyledger keys <command> ...` against `t`'s NATS and data directory.
fn keys_command(t: &TestStack, command: &[&str]) -> Command {
    keys_command_in(t, t.dir.path(), command)
}

/// `keyledger keys <command> ...` against `t`'s NATS with the keys in `data`.
fn keys_command_in(t: &TestStack, data: &std::path::Path, command: &[&str]) -> Command {
    let mut c = Command::new(KEYLEDGER);
    c.arg("keys")
        .args(command)
        .args(["--nats-url", &t.stack.service_url, "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn");
    c
}

async fn keys(t: &TestStack, command: &[&str]) -> Output {
    let mut c = keys_command(t, command);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

async fn key_bucket(t: &TestStack) -> kv::Store {
    async_nats::jetstream::new(t.service_nats().await)
        .get_key_value(infra::log::KEY_BUCKET)
        .await
        .unwrap()
}

/// The KEK ids the envelope of `t`'s data directory holds, by version.
fn kek_ids(t: &TestStack) -> BTreeMap<u32, String> {
    Envelope::load_or_create(&t.dir.path().join("kek.key"))
        .unwrap()
        .versions()
        .into_iter()
        .collect()
}

/// The key-store entry holding the data key of `secret` (its only version).
async fn entry_of(kv: &kv::Store, secret: &str) -> String {
    use futures::TryStreamExt as _;
    let names: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    names
        .into_iter()
        .find(|n| n.starts_with(&format!("p1.{secret}.")))
        .expect("the secret's data key is stored")
}

/// Whether `name` holds a value (not absent, not a deletion marker).
async fn live(kv: &kv::Store, name: &str) -> bool {
    kv.entry(name)
        .await
        .unwrap()
        .is_some_and(|e| e.operation == kv::Operation::Put)
}

/// Every `(id, payload)` of `all` reads back byte-exact.
async fn all_read_back(t: &TestStack, token: &str, all: &[(String, String)]) {
    for (id, value) in all {
        let got = payload(&t.http, &t.url(&format!("/v1/secrets/{id}/payload")), token).await;
        assert_eq!(got, (StatusCode::OK, value.clone()), "secret {id}");
    }
}

/// Creates a text secret with an `Idempotency-Key`: the status and the answer.
async fn create_once(t: &TestStack, token: &str, key: &str, value: &str) -> (StatusCode, String) {
    let r = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&serde_json::json!({"name": key, "payload": value,
            "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The KEK id that wrapped the data key of `secret`.
async fn wrapped_by(kv: &kv::Store, secret: &str) -> String {
    let entry = kv.get(entry_of(kv, secret).await).await.unwrap().unwrap();
    serde_json::from_slice::<WrappedKey>(&entry).unwrap().kek_id
}

async fn payload(http: &reqwest::Client, url: &str, token: &str) -> (StatusCode, String) {
    match http.get(url).bearer_auth(token).send().await {
        Ok(r) => (r.status(), r.text().await.unwrap_or_default()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_killed_half_way_and_resumed_under_load_never_fails_a_read() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let mut stored = Vec::new();
    for i in 0..120 {
        let value = format!("kek-canary-{i}-{}", uuid::Uuid::new_v4());
        stored.push((t.create_text(&alice, &format!("s{i}"), &value).await, value));
    }
    let old = kek_ids(&t)[&0].clone();
    let first = create_once(&t, &alice, "retried-create", "retried-value").await;
    assert_eq!(first.0, StatusCode::CREATED);

    // Readers read every stored payload in turn; writers keep creating secrets.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let reads = Arc::new(AtomicU64::new(0));
    let written = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let reader = tokio::spawn({
        let (http, stop, failures, reads) = (
            t.http.clone(),
            stop.clone(),
            failures.clone(),
            reads.clone(),
        );
        let (urls, token) = (
            stored
                .iter()
                .map(|(id, v)| (t.url(&format!("/v1/secrets/{id}/payload")), v.clone()))
                .collect::<Vec<_>>(),
            alice.clone(),
        );
        async move {
            for (url, value) in urls.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let got = payload(&http, url, &token).await;
                if got != (StatusCode::OK, value.clone()) {
                    failures.lock().unwrap().push(format!("{url}: {got:?}"));
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let writer = tokio::spawn({
        let (http, stop, written, url, token) = (
            t.http.clone(),
            stop.clone(),
            written.clone(),
            t.url("/v1/secrets"),
            alice.clone(),
        );
        async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let value = format!("written-during-{n}-{}", uuid::Uuid::new_v4());
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(
                        &serde_json::json!({"name": format!("w{n}"), "payload": value,
                        "payload_content_type": "text/plain"}),
                    )
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status() == StatusCode::CREATED
                {
                    let id = crate::support::id_of(&r.json().await.unwrap());
                    written.lock().unwrap().push((id, value));
                }
            }
        }
    });

    let rotated = keys(&t, &["rotate-kek"]).await;
    assert!(rotated.status.success(), "{rotated:?}");
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        said.contains("Version 0 still opens the keys it wrapped")
            && said.contains("then `keyledger keys retire-kek 0`"),
        "{said}"
    );
    let new = kek_ids(&t)[&1].clone();
    assert_ne!(old, new);
    // New data keys are wrapped by the new KEK at once.
    let kv = key_bucket(&t).await;
    let fresh = t
        .create_text(&alice, "after-rotation", "after-rotation")
        .await;
    let wrapped: WrappedKey =
        serde_json::from_slice(&kv.get(entry_of(&kv, &fresh).await).await.unwrap().unwrap())
            .unwrap();
    assert_eq!(wrapped.kek_id, new, "a key made after the rotation");

    // A slow re-wrap, killed with SIGKILL once some keys are moved and some are not.
    let mut child = keys_command(&t, &["rewrap", "--rate", "40"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let census = || async { rewrap::census(&kv).await.unwrap() };
    let before = census().await;
    let moved_from = before.get(&new).copied().unwrap_or(0);
    eventually(
        "the re-wrap to move some keys",
        Duration::from_secs(60),
        || async {
            let now = census().await;
            (now.get(&new).copied().unwrap_or(0) >= moved_from + 15).then_some(())
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let half = census().await;
    assert!(
        half.get(&old).copied().unwrap_or(0) > 0,
        "killed half-way: keys are still under the old KEK ({half:?})"
    );

    // Resumed: it skips what is done and finishes.
    let resumed = keys(&t, &["rewrap"]).await;
    assert!(resumed.status.success(), "{resumed:?}");
    let said = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        said.contains("every stored data key is wrapped by KEK version 1"),
        "{said}"
    );

    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    writer.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "reads failed during the rotation: {failures:?}"
    );
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "the readers read throughout"
    );
    let written = written.lock().unwrap().clone();
    assert!(!written.is_empty(), "writes went on during the rotation");
    let end = census().await;
    assert_eq!(
        end.get(&old),
        None,
        "no key is left under the old KEK: {end:?}"
    );

    // Every payload reads back byte-exact.
    let all: Vec<(String, String)> = stored.iter().cloned().chain(written).collect();
    all_read_back(&t, &alice, &all).await;

    // A create retried with its Idempotency-Key after the re-wrap is the same create.
    assert_eq!(
        create_once(&t, &alice, "retried-create", "retried-value").await,
        first
    );

    // The old KEK is retired: refused while current is asked, done for version 0.
    let refused = keys(&t, &["retire-kek", "1"]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is current"));
    let retired = keys(&t, &["retire-kek", "0"]).await;
    assert!(retired.status.success(), "{retired:?}");
    assert!(!t.dir.path().join("kek.key").exists());

    // The keyring's commits are in the log, which verifies.
    let verified = audit(args(&[
        "verify",
        "--nats-url",
        &t.auditor_url(),
        "--public-key",
        &t.checkpoint_public_key_file(),
    ]))
    .await;
    assert!(verified.status.success(), "{verified:?}");
    let js = async_nats::jetstream::new(t.service_nats().await);
    let stream = js.get_stream(infra::log::DEFAULT_STREAM).await.unwrap();
    let last = stream
        .get_last_raw_message_by_subject(&domain::keyring::aggregate().subject())
        .await
        .unwrap();
    let last: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
    assert_eq!(last["events"][0]["type"], "kek.retired");
    assert_eq!(last["actor"]["system"], "kek_rotation");
    assert_eq!(
        last["version"], 5,
        "rotated, two starts, a finish, a retirement"
    );

    // After a restart with only the new KEK, everything still reads.
    let t = t.restart(|| {}).await;
    all_read_back(&t, &alice, &all).await;
    // Its first attempt was fingerprinted under the retired KEK: a retry now cannot be
    // told from another request, and is refused saying so.
    let (status, said) = create_once(&t, &alice, "retried-create", "retried-value").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(said.contains("can no longer be told"), "{said}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_destroyed_during_a_rewrap_stays_destroyed() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let doomed = t.create_text(&alice, "doomed", "doomed-canary").await;
    let raced = t.create_text(&alice, "raced", "raced-canary").await;
    let rotated = keys(&t, &["rotate-kek"]).await;
    assert!(rotated.status.success(), "{rotated:?}");
    let kv = key_bucket(&t).await;
    // A node that slept through the rotation (it still wraps with version 0) stores no
    // key its stale view wrapped: the store confirms the current KEK first.
    let stale = Arc::new(Envelope::load_or_create(&t.dir.path().join("kek.key")).unwrap());
    assert_eq!(stale.current_version(), 0, "before it reads the entry");
    let v0 = stale.kek_id();
    let lease = infra::kek::current::Lease::new(stale.clone(), kv.clone());
    let refused = lease.confirm(&v0).await.unwrap_err().to_string();
    assert!(
        refused.contains("rotated while this command ran"),
        "{refused}"
    );
    lease.confirm(&stale.kek_id()).await.unwrap();
    assert_eq!(stale.current_version(), 1, "the lease read the entry");

    let envelope = Envelope::load_or_create(&t.dir.path().join("kek.key")).unwrap();
    infra::kek::current::adopt_now(&envelope, &kv)
        .await
        .unwrap();
    assert_eq!(envelope.current_version(), 1);

    // The re-wrap reads the entry and wraps it again...
    let name = entry_of(&kv, &doomed).await;
    let entry = kv.entry(name.as_str()).await.unwrap().unwrap();
    let mut parts = name.split('.');
    let (project, secret, key) = (
        domain::ids::ProjectId::parse(parts.next().unwrap()).unwrap(),
        domain::ids::SecretId::parse(parts.next().unwrap()).unwrap(),
        domain::ids::KeyId::parse(parts.next().unwrap()).unwrap(),
    );
    let wrapped: WrappedKey = serde_json::from_slice(&entry.value).unwrap();
    let next = envelope
        .rewrap(&wrapped, &project, secret, key)
        .unwrap()
        .expect("wrapped by the old KEK");
    // ...the secret is deleted (its keys destroyed) before the re-wrap writes...
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{doomed}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let store = infra::keystore::KeyStore::new(kv.clone());
    crate::support::key_destroyed(&store, &project, secret, key, Duration::from_secs(10)).await;
    // ...so the write is refused, and the key stays destroyed.
    let wrote = rewrap::write_back(
        &kv,
        &name,
        serde_json::to_vec(&next).unwrap(),
        entry.revision,
    )
    .await
    .unwrap();
    assert!(
        !wrote,
        "a write at the revision read must not bring a destroyed key back"
    );
    assert!(!live(&kv, &name).await, "the key stays destroyed");
    assert!(store.get(&project, secret, key).await.unwrap().is_none());
    assert_eq!(
        rewrap::rewrap_one(&kv, &envelope, &name).await.unwrap(),
        Outcome::Gone
    );
    let read = t
        .get(&format!("/v1/secrets/{doomed}/payload"), &alice)
        .await;
    assert_eq!(read.status(), StatusCode::NOT_FOUND);

    // Two re-wraps of one key: the second write is refused, and a look again finds it
    // done.
    let name = entry_of(&kv, &raced).await;
    let entry = kv.entry(name.as_str()).await.unwrap().unwrap();
    assert_eq!(
        rewrap::rewrap_one(&kv, &envelope, &name).await.unwrap(),
        Outcome::Rewrapped
    );
    assert!(
        !rewrap::write_back(&kv, &name, entry.value.to_vec(), entry.revision)
            .await
            .unwrap(),
        "a stale write does not undo a re-wrap"
    );
    assert_eq!(
        rewrap::rewrap_one(&kv, &envelope, &name).await.unwrap(),
        Outcome::Already
    );
    let read = t.get(&format!("/v1/secrets/{raced}/payload"), &alice).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.text().await.unwrap(), "raced-canary");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_kek_waits_and_a_node_without_the_current_kek_wraps_nothing() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let v0 = kek_ids(&t)[&0].clone();
    // On a log without a commit, nothing shows the keys are the deployment's.
    let empty = keys(&t, &["rotate-kek", "--stage"]).await;
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no commit yet"));
    assert!(!t.dir.path().join("kek.key.1").exists());
    let first = t.create_text(&alice, "first", "first-value").await;

    // Staged: made, not current, also after a restart.
    let staged = keys(&t, &["rotate-kek", "--stage"]).await;
    assert!(staged.status.success(), "{staged:?}");
    let status = String::from_utf8_lossy(&keys(&t, &["status"]).await.stdout).into_owned();
    assert!(
        status.contains(&format!("current KEK: version 0 ({v0})")),
        "{status}"
    );
    let t = t.restart(|| {}).await;
    let kv = key_bucket(&t).await;
    let before = t.create_text(&alice, "before", "before-value").await;
    assert_eq!(wrapped_by(&kv, &first).await, v0);
    assert_eq!(
        wrapped_by(&kv, &before).await,
        v0,
        "a staged KEK wraps nothing"
    );

    // The next rotation makes the staged version current; it makes no other.
    let rotated = keys(&t, &["rotate-kek"]).await;
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(!t.dir.path().join("kek.key.2").exists());
    let v1 = kek_ids(&t)[&1].clone();
    let after = t.create_text(&alice, "after", "after-value").await;
    assert_eq!(wrapped_by(&kv, &after).await, v1);

    // The entry names a version this node does not hold: it wraps nothing (not with
    // an older KEK, which a retirement would take away), and reads go on.
    let create = |name: &'static str| {
        let (http, url, token) = (t.http.clone(), t.url("/v1/secrets"), alice.clone());
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"name": name, "payload": "x",
                    "payload_content_type": "text/plain"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    use infra::kek::KekSource as _;
    let elsewhere = tempfile::tempdir().unwrap();
    let v7 = infra::kek::FileSource::new(elsewhere.path().join("kek.key"))
        .create(7)
        .unwrap()
        .id()
        .to_owned();
    kv.put(
        infra::kek::current::ENTRY,
        serde_json::to_vec(&serde_json::json!({"version": 7, "kek_id": v7}))
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    let (status, said) = eventually("creates to be refused", Duration::from_secs(10), || {
        let create = create("refused");
        async move {
            let got = create.await;
            (got.0 != StatusCode::CREATED).then_some(got)
        }
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{said}");
    assert!(said.contains("KEK version 7 is current"), "{said}");
    all_read_back(&t, &alice, &[(before.clone(), "before-value".into())]).await;
    // Given the KEK, the node finds it by itself and wraps with it.
    std::fs::copy(
        elsewhere.path().join("kek.key.7"),
        t.dir.path().join("kek.key.7"),
    )
    .unwrap();
    let given = eventually(
        "creates to work with version 7",
        Duration::from_secs(10),
        || {
            let create = create("given");
            async move {
                let (status, said) = create.await;
                (status == StatusCode::CREATED).then_some(said)
            }
        },
    )
    .await;
    let given = crate::support::id_of(&serde_json::from_str(&given).unwrap());
    assert_eq!(wrapped_by(&kv, &given).await, v7);

    // Malformed, it is named, with what repairs it.
    kv.put(infra::kek::current::ENTRY, "not json".into())
        .await
        .unwrap();
    eventually(
        "the malformed entry to be named",
        Duration::from_secs(10),
        || {
            let create = create("malformed");
            async move {
                let (status, said) = create.await;
                (status == StatusCode::SERVICE_UNAVAILABLE && said.contains("keys rotate-kek"))
                    .then_some(())
            }
        },
    )
    .await;
    let status = String::from_utf8_lossy(&keys(&t, &["status"]).await.stdout).into_owned();
    assert!(status.contains("current KEK: unknown"), "{status}");
    // `rotate-kek` writes it again, from the version the log's last rotation names
    // (1) to the newest one held (7, given above), and creates work at once.
    let repaired = keys(&t, &["rotate-kek"]).await;
    assert!(repaired.status.success(), "{repaired:?}");
    assert!(!t.dir.path().join("kek.key.8").exists());
    let fixed = eventually("creates to work again", Duration::from_secs(10), || {
        let create = create("fixed");
        async move {
            let (status, said) = create.await;
            (status == StatusCode::CREATED).then_some(said)
        }
    })
    .await;
    let fixed = crate::support::id_of(&serde_json::from_str(&fixed).unwrap());
    assert_eq!(wrapped_by(&kv, &fixed).await, v7);

    // Another data directory's keys are refused before anything is made or written.
    let other = TestStack::start().await;
    let mut wrong = keys_command_in(&t, other.dir.path(), &["rotate-kek"]);
    let wrong = tokio::task::spawn_blocking(move || wrong.output().unwrap())
        .await
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("commit key is not this deployment's"),
        "{wrong:?}"
    );
    assert!(!other.dir.path().join("kek.key.1").exists());
    other.stop().await;
    t.stop().await;
}

/// A node started with another KEK is refused however deletions left the key store:
/// its start reads the oldest data keys that still exist, not fixed positions, which
/// churn empties (each deleted secret's key is destroyed).
#[tokio::test]
async fn another_kek_is_refused_after_churn_left_the_key_store_sparse() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let churn = |round: u32| {
        let t = &t;
        let alice = alice.clone();
        async move {
            for i in 0..55 {
                let id = t
                    .create_text(&alice, &format!("churn-{round}-{i}"), "gone")
                    .await;
                let deleted = t
                    .http
                    .delete(t.url(&format!("/v1/secrets/{id}")))
                    .bearer_auth(&alice)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
            }
        }
    };
    churn(1).await;
    let kept = t.create_text(&alice, "kept", "kept-canary").await;
    churn(2).await;
    let kv = key_bucket(&t).await;
    eventually(
        "every deleted secret's data key to be destroyed",
        Duration::from_secs(60),
        || {
            let kv = kv.clone();
            async move {
                let held: u64 = rewrap::census(&kv).await.ok()?.values().sum();
                (held == 1).then_some(())
            }
        },
    )
    .await;

    let TestStack {
        stack,
        dir,
        http,
        config,
    } = t;
    stack.stop().await;
    let kek = dir.path().join("kek.key");
    let theirs = std::fs::read(&kek).unwrap();
    std::fs::write(&kek, "07".repeat(32)).unwrap();
    let e = keyledger::stack::Stack::start(config.clone())
        .await
        .err()
        .expect("another KEK is refused");
    let said = format!("{e:#}");
    assert!(
        said.contains("KEK is not the deployment's: the key store's oldest data keys"),
        "{said}"
    );
    std::fs::write(&kek, theirs).unwrap();
    let stack = keyledger::stack::Stack::start(config.clone())
        .await
        .expect("the deployment's own KEK starts");
    let t = TestStack {
        stack,
        dir,
        http,
        config,
    };
    let read = t.get(&format!("/v1/secrets/{kept}/payload"), &alice).await;
    assert_eq!(read.text().await.unwrap(), "kept-canary");
    t.stop().await;
}
