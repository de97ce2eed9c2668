//! The secret lifecycle on the real stack: versions and stages, retention, expiry and
//! crypto-shredding, recoverable deletion, managed secrets, names and references,
//! metadata and tags, listing filters. Time-dependent rules run on a clock the test
//! moves (`TestClock`), so days pass at once; everything else is polled with a
//! deadline.

use std::time::Duration;

use domain::ids::{ProjectId, SecretId};
use domain::principal::Actor;
use domain::secret::version::{Lifecycle, Retention};
use infra::keystore::KeyStore;
use infra::log::ensure_key_bucket;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    TestClock, TestStack, description, eventually, files_holding, id_of, json_of, key_destroyed,
    raw_command, wrapped_key_needles,
};

const WAIT: Duration = Duration::from_secs(10);

impl TestStack {
    async fn post_json(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn put_json(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn text(&self, path: &str, token: &str) -> String {
        let r = self.get(path, token).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().await.unwrap()
    }

    async fn create(&self, token: &str, body: Value) -> String {
        let r = self.post_json("/v1/secrets", token, body).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        id_of(&json_of(r).await)
    }

    async fn put_version(&self, token: &str, id: &str, body: Value) -> reqwest::Response {
        self.post_json(&format!("/v1/secrets/{id}/versions"), token, body)
            .await
    }

    /// The key store, as keyledger's components see it.
    async fn key_store(&self) -> KeyStore {
        let js = async_nats::jetstream::new(self.service_nats().await);
        KeyStore::new(ensure_key_bucket(&js, 1).await.unwrap())
    }

    /// The commands in secret `id`'s log, with who issued them.
    async fn history(&self, id: &str) -> Vec<(String, Actor)> {
        self.commits_of(id)
            .await
            .into_iter()
            .map(|c| (c.body.command, c.body.actor))
            .collect()
    }
}

fn text(payload: &str) -> Value {
    json!({"payload": payload, "payload_content_type": "text/plain"})
}

/// The reply to `secret.value.put` of the text `payload` to secret `id`, over NATS as
/// `token`'s holder.
async fn put_over_nats(nats: &async_nats::Client, token: &str, id: &str, payload: &str) -> Value {
    let mut body = text(payload);
    body["id"] = json!(id);
    raw_command(nats, "secret.value.put", Some(token), &body).await
}

#[tokio::test]
async fn versions_follow_aws_stages_and_barbican_reads_current() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t
        .create(
            &token,
            json!({"name": "db", "payload": "v1", "payload_content_type": "text/plain"}),
        )
        .await;

    // A new version becomes current; the old one becomes previous.
    let token_a = "a".repeat(40);
    let put = t
        .put_version(&token, &id, json!({"payload": "v2", "payload_content_type": "text/plain", "client_request_token": token_a}))
        .await;
    assert_eq!(put.status(), 201);
    let v2 = json_of(put).await["version_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.text(&format!("/v1/secrets/{id}/payload"), &token).await,
        "v2"
    );
    assert_eq!(
        t.text(
            &format!("/v1/secrets/{id}/versions/previous/payload"),
            &token
        )
        .await,
        "v1"
    );
    assert_eq!(
        t.text(
            &format!("/v1/secrets/{id}/versions/AWSCURRENT/payload"),
            &token
        )
        .await,
        "v2"
    );
    assert_eq!(
        t.text(&format!("/v1/secrets/{id}/versions/{v2}/payload"), &token)
            .await,
        "v2"
    );

    // The same token and payload again: the same version, nothing written.
    let before = t.commits_of(&id).await.len();
    let again = t
        .put_version(&token, &id, json!({"payload": "v2", "payload_content_type": "text/plain", "client_request_token": token_a}))
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(json_of(again).await["version_id"], v2.as_str());
    assert_eq!(t.commits_of(&id).await.len(), before);
    // The same token with another payload is refused.
    let (status, message) = description(
        t.put_version(&token, &id, json!({"payload": "other", "payload_content_type": "text/plain", "client_request_token": token_a}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message.contains("with a different payload"), "{message}");
    let (status, message) = description(
        t.put_version(&token, &id, json!({"payload": "x", "payload_content_type": "text/plain", "client_request_token": "short"}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("32 to 64"), "{message}");

    // A pending version waits; moving current needs to name where it is.
    let pending = t
        .put_version(&token, &id, json!({"payload": "v3", "payload_content_type": "text/plain", "stages": ["AWSPENDING"]}))
        .await;
    let v3 = json_of(pending).await["version_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.text(&format!("/v1/secrets/{id}/payload"), &token).await,
        "v2"
    );
    let stage = format!("/v1/secrets/{id}/stages/current");
    let (status, message) =
        description(t.put_json(&stage, &token, json!({"move_to": v3})).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message.contains("also name that version"), "{message}");
    let moved = t
        .put_json(&stage, &token, json!({"move_to": v3, "remove_from": v2}))
        .await;
    assert_eq!(moved.status(), 204);
    assert_eq!(
        t.text(&format!("/v1/secrets/{id}/payload"), &token).await,
        "v3"
    );
    let versions = json_of(t.get(&format!("/v1/secrets/{id}/versions"), &token).await).await;
    let stages: Vec<Value> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["stages"].clone())
        .collect();
    // v1 is deprecated, v2 previous, v3 current and (still) pending.
    assert_eq!(
        stages,
        [
            json!([]),
            json!(["previous"]),
            json!(["current", "pending"])
        ]
    );

    // Barbican's rule stays on the Barbican API: a second payload PUT is 409.
    let second = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&token)
        .header("Content-Type", "text/plain")
        .body("again")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::CONFLICT);

    // Over NATS, the reply names the version.
    let nats = t.client_nats_as(&token).await;
    let reply = put_over_nats(&nats, &token, &id, "v4").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply["version_id"].is_string(), "{reply}");
    // ... and the labels it carries, as stored (so AWS's PutSecretValue answers them
    // without reading the version back).
    assert_eq!(reply["stages"], json!(["current"]), "{reply}");
    let value = json!({"id": id, "payload": "v5", "payload_content_type": "text/plain",
                       "client_request_token": "the-token-of-the-fifth-version-v5",
                       "stages": ["blue", "AWSCURRENT", "blue"]});
    let mut labelled = value.clone();
    labelled["command_id"] = json!("put-the-fifth-version");
    let first = raw_command(&nats, "secret.value.put", Some(&token), &labelled).await;
    assert_eq!(first["stages"], json!(["blue", "current"]), "{first}");
    let next = put_over_nats(&nats, &token, &id, "v6").await;
    assert_eq!(next["stages"], json!(["current"]), "{next}");
    // Sent again, the same command (its id applied already) and the same value under
    // another command id (the token's version found stored) name the labels the
    // version carries now, not those they asked for: `current` moved on to v6,
    // leaving `previous`.
    for again in [&labelled, &value] {
        let again = raw_command(&nats, "secret.value.put", Some(&token), again).await;
        assert_eq!(
            (&again["version_id"], &again["stages"]),
            (&first["version_id"], &json!(["blue", "previous"])),
            "{again}"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn retention_destroys_deprecated_versions_and_their_keys() {
    let t = TestStack::start_with(|c| {
        c.handler.lifecycle = Lifecycle {
            retention: Retention {
                keep: 2,
                min_age: Duration::ZERO,
            },
            ..Default::default()
        };
    })
    .await;
    let token = t.token("alice", "p1");
    let id = t.create(&token, text("v1")).await;
    for v in ["v2", "v3", "v4"] {
        assert_eq!(t.put_version(&token, &id, text(v)).await.status(), 201);
    }
    let versions = json_of(t.get(&format!("/v1/secrets/{id}/versions"), &token).await).await;
    assert_eq!(versions["total"], 2, "{versions}");
    let keys = t.key_ids(&id).await;
    let store = t.key_store().await;
    let project = ProjectId::parse("p1").unwrap();
    let secret = SecretId::parse(&id).unwrap();
    // v1 and v2 are gone with their keys; v3 (previous) and v4 (current) stay.
    for (n, key) in keys.iter().enumerate() {
        let kept = store.get(&project, secret, *key).await.unwrap().is_some();
        assert_eq!(kept, n >= 2, "key of v{}", n + 1);
    }
    let destroyed = t
        .history(&id)
        .await
        .iter()
        .filter(|(command, _)| command == "secret.value.put")
        .count();
    assert_eq!(destroyed, 3);
    assert_eq!(
        t.text(&format!("/v1/secrets/{id}/payload"), &token).await,
        "v4"
    );
    t.stop().await;
}

#[tokio::test]
async fn the_scheduler_destroys_versions_once_they_are_old_enough() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| {
        c.clock = clock.clock();
        c.handler.lifecycle = Lifecycle {
            retention: Retention {
                keep: 2,
                min_age: Duration::from_secs(3600),
            },
            ..Default::default()
        };
    })
    .await;
    let token = t.token("alice", "p1");
    let id = t.create(&token, text("v1")).await;
    for v in ["v2", "v3", "v4"] {
        assert_eq!(t.put_version(&token, &id, text(v)).await.status(), 201);
    }
    // Too young to go: all four stay, over the limit.
    let count = |body: Value| body["total"].as_u64().unwrap();
    let versions = format!("/v1/secrets/{id}/versions");
    assert_eq!(count(json_of(t.get(&versions, &token).await).await), 4);
    clock.advance(Duration::from_secs(2 * 3600));
    let token = t.token("alice", "p1");
    eventually("the scheduler's prune", WAIT, || async {
        let n = count(json_of(t.get(&versions, &token).await).await);
        (n == 2).then_some(())
    })
    .await;
    let prunes: Vec<_> = t
        .history(&id)
        .await
        .into_iter()
        .filter(|(c, _)| c == "secret.versions.prune")
        .collect();
    assert_eq!(prunes.len(), 1);
    assert_eq!(prunes[0].1, Actor::scheduler());
    t.stop().await;
}

#[tokio::test]
async fn expiry_is_immediate_lands_once_with_two_schedulers_and_shreds_the_key() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    // A second command component: a second scheduler racing the first.
    let extra = tokio_util::sync::CancellationToken::new();
    let _second = keyledger::stack::start_commands(
        &t.stack.service_url,
        &t.stack.keys,
        &t.config.log,
        keyledger::stack::CommandSettings {
            intake_url: t.stack.intake_url.clone(),
            handler: t.config.handler.clone(),
            database_url: t.stack.database_url.clone(),
            scheduler_interval: Duration::from_millis(50),
            rotation: t.config.rotation,
            orders: Default::default(),
            // A second checkpointer with the same key races the first too.
            checkpoints: t.config.checkpoints.clone().unwrap(),
            log_tap: None,
        },
        t.config.clock.clone(),
        &Default::default(),
        extra.clone(),
    )
    .await
    .unwrap();

    let token = t.token("alice", "p1");
    let expires = t.now().plus(Duration::from_secs(3600)).unwrap();
    let id = t
        .create(
            &token,
            json!({"name": "canary", "payload": "expiry-canary-7f3a9c", "payload_content_type": "text/plain", "expiration": expires.to_rfc3339()}),
        )
        .await;
    let project = ProjectId::parse("p1").unwrap();
    let secret = SecretId::parse(&id).unwrap();
    let key = t.key_ids(&id).await[0];
    let store = t.key_store().await;
    let wrapped = store.get(&project, secret, key).await.unwrap().unwrap();
    // The needles: the wrapped key's bytes, raw and as stored (base64 in JSON).
    let wanted = wrapped_key_needles(&wrapped.wrapped);
    let data = t.dir.path();
    assert!(
        !files_holding(data, &wanted).is_empty(),
        "the search must find the key while it exists, or it proves nothing"
    );

    // From the instant the expiration passes, reads are 404, whatever the log says.
    clock.advance(Duration::from_secs(3600));
    let (status, message) = description(
        t.get(&format!("/v1/secrets/{id}"), &t.token("alice", "p1"))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message,
        format!("secret {id} expired at {}", expires.to_rfc3339())
    );

    // The schedulers issue Expire; it lands once and the key is destroyed.
    key_destroyed(&store, &project, secret, key, WAIT).await;
    eventually("the read model shows the expiry", WAIT, || async {
        let body = t
            .get(
                &format!("/v1/secrets/{id}/payload"),
                &t.token("alice", "p1"),
            )
            .await;
        (body.status() == 404).then_some(())
    })
    .await;
    let history = t.history(&id).await;
    let expiries: Vec<_> = history
        .iter()
        .filter(|(command, _)| command == "secret.expire")
        .collect();
    assert_eq!(expiries.len(), 1, "{history:?}");
    assert_eq!(expiries[0].1, Actor::scheduler());
    // The log keeps who created it, and when it expired.
    assert_eq!(history[0].0, "secret.create");
    assert!(matches!(&history[0].1, Actor::User(p) if p.user.as_str() == "alice"));

    // No copy of the wrapped key is left in any file of the data directory (stream
    // blocks, key-store blocks, SQLite): even with the KEK, the payload is gone.
    let left = files_holding(data, &wanted);
    assert!(left.is_empty(), "the wrapped key survives in {left:?}");
    assert!(store.get(&project, secret, key).await.unwrap().is_none());
    extra.cancel();
    t.stop().await;
}

#[tokio::test]
async fn the_scheduler_catches_up_after_downtime() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    let token = t.token("alice", "p1");
    let expires = t.now().plus(Duration::from_secs(60)).unwrap();
    let id = t
        .create(&token, json!({"payload": "x", "payload_content_type": "text/plain", "expiration": expires.to_rfc3339()}))
        .await;
    // Down while the expiration passes.
    let t = t.restart(|| clock.advance(Duration::from_secs(3600))).await;
    eventually("the Expire command after restart", WAIT, || async {
        t.history(&id)
            .await
            .iter()
            .any(|(c, _)| c == "secret.expire")
            .then_some(())
    })
    .await;
    t.stop().await;
}

/// The window is over from its last instant, whether or not the scheduler's purge has
/// landed (here it is held back: an hour between passes): a restore is refused, as AWS
/// refuses one, and so is every change and read of the secret.
#[tokio::test]
async fn a_restore_after_the_recovery_window_is_refused_before_the_purge_lands() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| {
        c.clock = clock.clock();
        c.scheduler_interval = Duration::from_secs(3600);
    })
    .await;
    let token = t.token("alice", "p1");
    let id = t.create(&token, text("gone")).await;
    let scheduled = t
        .delete(&format!("/v1/secrets/{id}?recovery_window_days=7"), &token)
        .await;
    assert_eq!(scheduled.status(), 204);
    let purge_at = t.now().plus(Duration::from_secs(7 * 86_400)).unwrap();
    clock.advance(Duration::from_secs(7 * 86_400));
    let token = t.token("alice", "p1");
    let ended = format!(
        "secret {id}'s recovery window ended at {purge_at}: it is deleted and can no longer \
         be restored"
    );
    let (status, message) = description(
        t.post_json(&format!("/v1/secrets/{id}/restore"), &token, json!({}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message.contains(&ended), "{message}");
    let (status, message) = description(t.get(&format!("/v1/secrets/{id}"), &token).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message.contains(&ended), "{message}");
    // A deletion too, at once or with a window: the purge is the scheduler's.
    for path in [
        format!("/v1/secrets/{id}"),
        format!("/v1/secrets/{id}?recovery_window_days=7"),
    ] {
        let (status, message) = description(t.delete(&path, &token).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(message.contains(&ended), "{path}: {message}");
    }
    let nats = t.client_nats_as(&token).await;
    let put = put_over_nats(&nats, &token, &id, "x").await;
    assert!(
        put["error"]["message"].as_str().unwrap().contains(&ended),
        "{put}"
    );
    // The purge had not landed: the refusals above came from the window alone.
    assert!(
        !t.history(&id)
            .await
            .iter()
            .any(|(c, _)| c == "secret.purge"),
        "the scheduler purged it meanwhile"
    );
    t.stop().await;
}

/// AWS's API agrees once a recovery window has ended, before the purge lands: the
/// secret is no longer described, restored or deleted (a forced deletion succeeds, as
/// for a missing one), nor listed with `IncludePlannedDeletion`, and a create of its
/// name is told the name is not free yet and why.
#[tokio::test]
async fn aws_shows_a_secret_as_deleted_once_its_window_ends_before_the_purge_lands() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| {
        c.clock = clock.clock();
        c.scheduler_interval = Duration::from_secs(3600);
    })
    .await;
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;
    let name = json!({"SecretId": "db/gone"});
    t.aws_ok(
        &key,
        "CreateSecret",
        json!({"Name": "db/gone", "SecretString": "s"}),
    )
    .await;
    t.aws_ok(
        &key,
        "DeleteSecret",
        json!({"SecretId": "db/gone", "RecoveryWindowInDays": 7}),
    )
    .await;
    let listed = |answer: &Value| {
        answer["SecretList"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Name"] == "db/gone")
    };
    let with_planned = json!({"IncludePlannedDeletion": true});

    // A secret Barbican's API made holds its name too, and is told apart the same way.
    let barbican = t
        .create(
            &token,
            json!({"name": "bar/held", "payload": "b", "payload_content_type": "text/plain"}),
        )
        .await;
    let scheduled = t
        .delete(
            &format!("/v1/secrets/{barbican}?recovery_window_days=7"),
            &token,
        )
        .await;
    assert_eq!(scheduled.status(), 204);
    let create_held = json!({"Name": "bar/held", "SecretString": "again"});
    let again = t
        .aws_refused(
            &key,
            "CreateSecret",
            create_held.clone(),
            "InvalidRequestException",
        )
        .await;
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("already scheduled for deletion"),
        "{again}"
    );

    // In its window it is described, and listed when asked for.
    let described = t.aws_ok(&key, "DescribeSecret", name.clone()).await;
    assert!(described["DeletedDate"].is_number(), "{described}");
    let (_, list) = t.aws(&key, "ListSecrets", with_planned.clone()).await;
    assert!(listed(&list), "{list}");

    clock.advance(Duration::from_secs(7 * 86_400));
    let described = t
        .aws_refused(
            &key,
            "DescribeSecret",
            name.clone(),
            "ResourceNotFoundException",
        )
        .await;
    assert!(
        described["message"]
            .as_str()
            .unwrap()
            .contains("recovery window ended"),
        "{described}"
    );
    let list = t.aws_ok(&key, "ListSecrets", with_planned).await;
    assert!(!listed(&list), "{list}");
    t.aws_refused(
        &key,
        "RestoreSecret",
        name.clone(),
        "ResourceNotFoundException",
    )
    .await;
    // As for a missing secret, a forced deletion succeeds and a windowed one does not.
    t.aws_ok(
        &key,
        "DeleteSecret",
        json!({"SecretId": "db/gone", "ForceDeleteWithoutRecovery": true}),
    )
    .await;
    t.aws_refused(
        &key,
        "DeleteSecret",
        name.clone(),
        "ResourceNotFoundException",
    )
    .await;
    let again = t
        .aws_refused(
            &key,
            "CreateSecret",
            json!({"Name": "db/gone", "SecretString": "again"}),
            "InvalidRequestException",
        )
        .await;
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("You can't create this secret yet"),
        "{again}"
    );
    let (status, again) = t.aws(&key, "CreateSecret", create_held).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("You can't create this secret yet"),
        "{again}"
    );
    // The purge had not landed: the answers above came from the window alone.
    let project = ProjectId::parse("p1").unwrap();
    let id = SecretId::for_name(&project, "db/gone", 0).to_string();
    let history = t.history(&id).await;
    assert!(
        history.iter().any(|(c, _)| c == "secret.delete"),
        "{history:?}"
    );
    assert!(
        !history.iter().any(|(c, _)| c == "secret.purge"),
        "the scheduler purged it meanwhile"
    );
    t.stop().await;
}

/// A deletion that the command service has taken but the read model does not show yet
/// (its projector held back by a write lock on the SQLite file): AWS's API sees the
/// secret live, sends the change, and the command service refuses it. The answer is
/// still AWS's for a secret marked for deletion, not a missing one.
#[tokio::test]
async fn a_change_racing_a_deletion_the_read_model_does_not_show_yet_is_answered_as_aws_does() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;
    let made = t
        .aws_ok(
            &key,
            "CreateSecret",
            json!({"Name": "db/racing", "SecretString": "s"}),
        )
        .await;
    let id = crate::support::aws::aws_secret_id("p1", "db/racing");

    // Hold the read model's write lock: the projector cannot apply the deletion, and
    // readers still see the secret live.
    let pool = crate::support::read_model::open_url(&t.stack.database_url).await;
    let mut lock = pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let nats = t.client_nats_as(&token).await;
    let deleted = raw_command(
        &nats,
        "secret.delete",
        Some(&token),
        &json!({"id": id, "recovery_window_days": 7}),
    )
    .await;
    assert!(deleted.get("error").is_none(), "{deleted}");
    let described = t
        .aws_ok(&key, "DescribeSecret", json!({"SecretId": "db/racing"}))
        .await;
    assert!(
        described.get("DeletedDate").is_none(),
        "the read model shows the deletion already: {described}"
    );

    let put = t
        .aws_refused(
            &key,
            "PutSecretValue",
            json!({"SecretId": "db/racing", "SecretString": "late"}),
            "InvalidRequestException",
        )
        .await;
    assert!(
        put["message"]
            .as_str()
            .unwrap()
            .contains("it was marked for deletion"),
        "{put}"
    );
    t.aws_refused(
        &key,
        "UpdateSecretVersionStage",
        json!({"SecretId": "db/racing", "VersionStage": "custom",
                   "MoveToVersionId": made["VersionId"]}),
        "InvalidRequestException",
    )
    .await;
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);

    // Once applied, the API's own check answers the same.
    eventually("the deletion applied", WAIT, || async {
        let (_, d) = t
            .aws(&key, "DescribeSecret", json!({"SecretId": "db/racing"}))
            .await;
        d["DeletedDate"].is_number().then_some(())
    })
    .await;
    t.aws_refused(
        &key,
        "PutSecretValue",
        json!({"SecretId": "db/racing", "SecretString": "late"}),
        "InvalidRequestException",
    )
    .await;
    t.stop().await;
}

/// AWS's `NextToken` holds the place of the last secret shown, not an offset: secrets
/// deleted between pages (ones already listed, which an offset would count) neither
/// skip nor repeat the others, in every sort order, nameless secrets (NULL names,
/// first going up and last going down) included.
#[tokio::test]
async fn aws_listing_pages_hold_their_place_while_secrets_are_deleted() {
    let t = TestStack::start().await;
    listing_pages_hold_their_place(&t).await;
    t.stop().await;
}

/// The body of [`aws_listing_pages_hold_their_place_while_secrets_are_deleted`], also
/// run on PostgreSQL (`tests/postgres.rs`), whose dialect compares positions itself.
pub(crate) async fn listing_pages_hold_their_place(t: &TestStack) {
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;
    let create = |name: String| {
        let key = &key;
        async move {
            t.aws_ok(
                key,
                "CreateSecret",
                json!({"Name": name, "SecretString": "s"}),
            )
            .await;
        }
    };
    let mut stable: Vec<String> = Vec::new();
    for i in 0..8 {
        create(format!("stable-{i:02}")).await;
        stable.push(format!("stable-{i:02}"));
    }
    // Barbican's secrets need no name; AWS shows their id.
    for _ in 0..2 {
        stable.push(t.create(&token, text("nameless")).await);
    }
    for (round, (sort_by, order)) in [
        ("name", "asc"),
        ("name", "desc"),
        ("created-date", "asc"),
        ("last-changed-date", "desc"),
    ]
    .into_iter()
    .enumerate()
    {
        for i in 0..8 {
            create(format!("churn-{round}-{i:02}")).await;
        }
        let mut seen: Vec<String> = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut input = json!({"MaxResults": 3, "SortBy": sort_by, "SortOrder": order});
            if let Some(n) = &next {
                input["NextToken"] = json!(n);
            }
            let page = t.aws_ok(&key, "ListSecrets", input).await;
            let names: Vec<String> = page["SecretList"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["Name"].as_str().unwrap().to_owned())
                .collect();
            // Delete, at once, the churn secrets this page showed: each moves every
            // later secret one place forward.
            for name in names.iter().filter(|n| n.starts_with("churn-")) {
                t.aws_ok(
                    &key,
                    "DeleteSecret",
                    json!({"SecretId": name, "ForceDeleteWithoutRecovery": true}),
                )
                .await;
            }
            seen.extend(names);
            match page["NextToken"].as_str() {
                Some(n) => next = Some(n.to_owned()),
                None => break,
            }
        }
        for name in &stable {
            let times = seen.iter().filter(|s| *s == name).count();
            assert_eq!(
                times, 1,
                "{sort_by} {order}: {name} listed {times} times: {seen:?}"
            );
        }
        let churned = seen.iter().filter(|s| s.starts_with("churn-")).count();
        assert_eq!(churned, 8, "{sort_by} {order}: {seen:?}");
    }

    // MaxResults may change between pages; a token whose place was tampered with (a
    // NUL, which PostgreSQL cannot compare; a number where names sort) is refused.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let by_name = json!({"MaxResults": 1, "SortBy": "name"});
    let (_, first) = t.aws(&key, "ListSecrets", by_name.clone()).await;
    let handed = first["NextToken"].as_str().unwrap().to_owned();
    let mut next = by_name.clone();
    next["NextToken"] = json!(handed);
    next["MaxResults"] = json!(2);
    t.aws_ok(&key, "ListSecrets", next.clone()).await;
    let mut token: Value = serde_json::from_slice(&b64.decode(&handed).unwrap()).unwrap();
    for forged in [json!("a\0b"), json!(i64::MAX)] {
        token["p"]["key"] = forged;
        next["NextToken"] = json!(b64.encode(serde_json::to_vec(&token).unwrap()));
        t.aws_refused(
            &key,
            "ListSecrets",
            next.clone(),
            "InvalidNextTokenException",
        )
        .await;
    }
}

/// AWS's DeleteSecret takes the command service's configured recovery window: its
/// default when `RecoveryWindowInDays` is absent (as the aws CLI sends it), its bounds
/// otherwise, and `DeletionDate` is the end of the window chosen.
#[tokio::test]
async fn aws_deletion_takes_the_configured_recovery_window() {
    let clock = TestClock::now();
    let day = Duration::from_secs(86_400);
    let t = TestStack::start_with(|c| {
        c.clock = clock.clock();
        c.handler.lifecycle = Lifecycle {
            recovery: domain::secret::version::RecoveryWindow {
                min: 10 * day,
                max: 20 * day,
                default: 14 * day,
            },
            ..Default::default()
        };
    })
    .await;
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;
    t.aws_ok(
        &key,
        "CreateSecret",
        json!({"Name": "db/windowed", "SecretString": "s"}),
    )
    .await;
    for days in [7, 21] {
        let refused = t
            .aws_refused(
                &key,
                "DeleteSecret",
                json!({"SecretId": "db/windowed", "RecoveryWindowInDays": days}),
                "InvalidParameterException",
            )
            .await;
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("choose between 10 days and 20 days"),
            "{refused}"
        );
    }
    // A count of days no duration holds is named as given, not as seconds.
    let refused = t
        .aws_refused(
            &key,
            "DeleteSecret",
            json!({"SecretId": "db/windowed", "RecoveryWindowInDays": i64::MAX}),
            "InvalidParameterException",
        )
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&format!("value {} is out of range", i64::MAX)),
        "{refused}"
    );
    let deleted = t
        .aws_ok(&key, "DeleteSecret", json!({"SecretId": "db/windowed"}))
        .await;
    let expected = t.now().plus(14 * day).unwrap().unix_millis() as f64 / 1000.0;
    assert!(
        (deleted["DeletionDate"].as_f64().unwrap() - expected).abs() < 1.0,
        "{deleted}, expected {expected}"
    );
    let (_, described) = t
        .aws(&key, "DescribeSecret", json!({"SecretId": "db/windowed"}))
        .await;
    assert_eq!(
        described["DeletedDate"], deleted["DeletionDate"],
        "{described}"
    );
    t.stop().await;
}

/// AWS's forced deletion succeeds for a missing secret, concurrent ones for one secret
/// all succeed, but what names no secret keyledger could hold is refused, and a named
/// secret's keyledger id (which AWS's API does not take) is not confirmed as deleted.
#[tokio::test]
async fn aws_forced_deletion_succeeds_for_a_missing_secret_and_only_for_one() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;
    let forced = |id: Value| json!({"SecretId": id, "ForceDeleteWithoutRecovery": true});
    t.aws_ok(&key, "DeleteSecret", forced(json!("never-was")))
        .await;
    for bad in [json!("name with space"), json!("x".repeat(3000))] {
        t.aws_refused(
            &key,
            "DeleteSecret",
            forced(bad),
            "InvalidParameterException",
        )
        .await;
    }

    t.aws_ok(
        &key,
        "CreateSecret",
        json!({"Name": "db/kept", "SecretString": "s"}),
    )
    .await;
    let id = crate::support::aws::aws_secret_id("p1", "db/kept");
    let refused = t
        .aws_refused(
            &key,
            "DeleteSecret",
            forced(json!(id)),
            "InvalidParameterException",
        )
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("nothing was deleted"),
        "{refused}"
    );
    t.aws_ok(&key, "GetSecretValue", json!({"SecretId": "db/kept"}))
        .await;

    // Four at once: each either deletes it or finds it deleted.
    let answers = futures::future::join_all(
        (0..4).map(|_| t.aws(&key, "DeleteSecret", forced(json!("db/kept")))),
    )
    .await;
    for (status, answer) in answers {
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    t.aws_refused(
        &key,
        "GetSecretValue",
        json!({"SecretId": "db/kept"}),
        "ResourceNotFoundException",
    )
    .await;
    t.stop().await;
}

/// What holds a name is told only to a caller who may read it: a private Barbican
/// secret of another user, in its recovery window, is "exists" to AWS's create, not
/// its deletion date and ARN.
#[tokio::test]
async fn aws_create_tells_a_names_holder_only_to_a_caller_who_may_read_it() {
    let t = TestStack::start().await;
    let bob = t.token_with("bob", "p1", &["member"]);
    let held = t
        .create(
            &bob,
            json!({"name": "priv/held", "payload": "b", "payload_content_type": "text/plain"}),
        )
        .await;
    let private = t
        .http
        .put(t.url(&format!("/v1/secrets/{held}/acl")))
        .bearer_auth(&bob)
        .json(&json!({"read": {"project-access": false}}))
        .send()
        .await
        .unwrap();
    assert!(private.status().is_success(), "{}", private.status());
    let scheduled = t
        .delete(&format!("/v1/secrets/{held}?recovery_window_days=7"), &bob)
        .await;
    assert_eq!(scheduled.status(), 204);
    let create = json!({"Name": "priv/held", "SecretString": "mine"});
    let alice = t.aws_key(&t.token_with("alice", "p1", &["member"])).await;
    let refused = t
        .aws_refused(
            &alice,
            "CreateSecret",
            create.clone(),
            "ResourceExistsException",
        )
        .await;
    assert!(!refused.to_string().contains("scheduled"), "{refused}");
    // Its owner is told.
    let owner = t.aws_key(&bob).await;
    let (_, told) = t.aws(&owner, "CreateSecret", create).await;
    assert_eq!(told["__type"], "InvalidRequestException", "{told}");
    t.stop().await;
}

/// A forced deletion of an expired secret (to AWS, not found) still destroys its keys
/// at once, as the native forced deletion does.
#[tokio::test]
async fn aws_forced_deletion_of_an_expired_secret_destroys_it() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    let token = t.token("alice", "p1");
    let expires = t.now().plus(Duration::from_secs(3600)).unwrap();
    let id = t
        .create(
            &token,
            json!({"payload": "e", "payload_content_type": "text/plain",
                   "expiration": expires.to_rfc3339()}),
        )
        .await;
    clock.advance(Duration::from_secs(7200));
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;
    t.aws_ok(
        &key,
        "DeleteSecret",
        json!({"SecretId": id, "ForceDeleteWithoutRecovery": true}),
    )
    .await;
    let history = t.history(&id).await;
    assert!(
        history.iter().any(|(c, _)| c == "secret.delete"),
        "{history:?}"
    );
    t.stop().await;
}

/// A create retried with its `ClientRequestToken` after its secret was deleted is told
/// so, not that the token's command id is in use; one retried while its secret waits
/// out a recovery window is told that. The command service says a reply answers an
/// earlier command (`replayed`), which is how AWS's API tells a retry from a first
/// attempt (every SDK create carries a token).
#[tokio::test]
async fn aws_create_retried_after_its_secret_was_deleted_says_so() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;

    let nats = t.client_nats_as(&token).await;
    let native = json!({"command_id": "retried-create-1", "name": "native",
                        "payload": "n", "payload_content_type": "text/plain"});
    let first = raw_command(&nats, "secret.create", Some(&token), &native).await;
    assert_eq!(first["ok"], true, "{first}");
    assert!(first.get("replayed").is_none(), "{first}");
    let again = raw_command(&nats, "secret.create", Some(&token), &native).await;
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["id"], first["id"]);

    let windowed = json!({"Name": "db/windowed-again", "SecretString": "s",
                          "ClientRequestToken": "6d1c3a52-9a0e-4a51-8f3e-2b7c9d4e5f60"});
    t.aws_ok(&key, "CreateSecret", windowed.clone()).await;
    t.aws_ok(
        &key,
        "DeleteSecret",
        json!({"SecretId": "db/windowed-again", "RecoveryWindowInDays": 7}),
    )
    .await;
    let (status, again) = t.aws(&key, "CreateSecret", windowed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("already scheduled for deletion"),
        "{again}"
    );

    let create = json!({"Name": "db/again", "SecretString": "s",
                        "ClientRequestToken": "0b4f9c8e-4d52-4a7e-9a55-3f1b2c7d8e90"});
    t.aws_ok(&key, "CreateSecret", create.clone()).await;
    t.aws_ok(
        &key,
        "DeleteSecret",
        json!({"SecretId": "db/again", "ForceDeleteWithoutRecovery": true}),
    )
    .await;
    let again = t
        .aws_refused(&key, "CreateSecret", create, "InvalidRequestException")
        .await;
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("its secret has been deleted since"),
        "{again}"
    );
    t.stop().await;
}

/// A create without a value, whose answer an SDK lost, retried with its
/// `ClientRequestToken` after another client put a value: the same request, answered
/// as it was, since the create's own commit stored no value. A create that did store
/// one is told from a retry without it, whichever token names the first version.
#[tokio::test]
async fn a_value_less_create_retried_after_a_put_is_the_same_request() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;

    let bare =
        json!({"Name": "db/bare", "ClientRequestToken": "5e0f2d7a-1c3b-4e59-8a6d-7b2c9e1f3a40"});
    let first = t.aws_ok(&key, "CreateSecret", bare.clone()).await;
    assert!(first.get("VersionId").is_none(), "{first}");
    t.aws_ok(
        &key,
        "PutSecretValue",
        json!({"SecretId": "db/bare", "SecretString": "put later",
               "ClientRequestToken": "5e0f2d7a-1c3b-4e59-8a6d-7b2c9e1f3a41"}),
    )
    .await;
    let again = t.aws_ok(&key, "CreateSecret", bare).await;
    assert_eq!(again["ARN"], first["ARN"], "{again}");
    assert!(again.get("VersionId").is_none(), "{again}");
    let value = t
        .aws_ok(&key, "GetSecretValue", json!({"SecretId": "db/bare"}))
        .await;
    assert_eq!(value["SecretString"], "put later", "{value}");

    // Over NATS, where the command id and the first version's token are apart: a
    // create that stored a value under one token, sent again without a value under
    // another, is another request.
    let nats = t.client_nats_as(&token).await;
    let valued = json!({"command_id": "valued-create", "name": "valued", "payload": "v",
                        "payload_content_type": "text/plain",
                        "client_request_token": "5e0f2d7a-1c3b-4e59-8a6d-7b2c9e1f3a42"});
    let made = raw_command(&nats, "secret.create", Some(&token), &valued).await;
    assert_eq!(made["ok"], true, "{made}");
    let bare_retry = json!({"command_id": "valued-create", "name": "valued",
                            "client_request_token": "5e0f2d7a-1c3b-4e59-8a6d-7b2c9e1f3a43"});
    let refused = raw_command(&nats, "secret.create", Some(&token), &bare_retry).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("with another payload")),
        "{refused}"
    );
    t.stop().await;
}

/// Barbican's consumers block a deletion, which only the command service checks: AWS's
/// DeleteSecret answers `InvalidRequestException` naming them, and the secret stays.
#[tokio::test]
async fn aws_delete_of_a_secret_with_barbican_consumers_is_an_invalid_request() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let key = t.aws_key(&token).await;
    t.aws_ok(
        &key,
        "CreateSecret",
        json!({"Name": "db/consumed", "SecretString": "s"}),
    )
    .await;
    let id = crate::support::aws::aws_secret_id("p1", "db/consumed");
    let registered = t
        .http
        .post(t.url(&format!("/v1/secrets/{id}/consumers")))
        .bearer_auth(&token)
        .header("OpenStack-API-Version", "key-manager 1.1")
        .json(&json!({"service": "image", "resource_type": "image", "resource_id": "i-1"}))
        .send()
        .await
        .unwrap();
    let (status, body) = (registered.status(), registered.text().await.unwrap());
    assert!(status.is_success(), "{status} {body}");
    for input in [
        json!({"SecretId": "db/consumed", "RecoveryWindowInDays": 7}),
        json!({"SecretId": "db/consumed", "ForceDeleteWithoutRecovery": true}),
    ] {
        let refused = t
            .aws_refused(&key, "DeleteSecret", input, "InvalidRequestException")
            .await;
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .starts_with("Secret cannot be deleted as it has consumers."),
            "{refused}"
        );
    }
    let value = t
        .aws_ok(&key, "GetSecretValue", json!({"SecretId": "db/consumed"}))
        .await;
    assert_eq!(value["SecretString"], "s");
    t.stop().await;
}

#[tokio::test]
async fn deletion_waits_for_its_recovery_window_and_can_be_restored() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    let token = t.token("alice", "p1");
    let id = t.create(&token, text("keep me")).await;

    // Out of bounds (7 to 30 days) is refused, and says what is allowed.
    let (status, message) = description(
        t.delete(&format!("/v1/secrets/{id}?recovery_window_days=3"), &token)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("between 7 days and 30 days"), "{message}");

    let scheduled = t
        .delete(&format!("/v1/secrets/{id}?recovery_window_days=7"), &token)
        .await;
    assert_eq!(scheduled.status(), 204);
    let purge_at = t.now().plus(Duration::from_secs(7 * 86_400)).unwrap();
    let (status, message) = description(t.get(&format!("/v1/secrets/{id}"), &token).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        message.starts_with(&format!(
            "secret {id} is scheduled for deletion on {purge_at}; restore it with"
        )),
        "{message}"
    );
    // Changes are refused the same way over NATS.
    let nats = t.client_nats_as(&token).await;
    let put = put_over_nats(&nats, &token, &id, "x").await;
    assert!(
        put["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is scheduled for deletion"),
        "{put}"
    );

    let restored = t
        .post_json(&format!("/v1/secrets/{id}/restore"), &token, json!({}))
        .await;
    assert_eq!(restored.status(), 204);
    assert_eq!(
        t.text(&format!("/v1/secrets/{id}/payload"), &token).await,
        "keep me"
    );

    // Scheduled again (the default window, 30 days), then the window ends: purged.
    let again = raw_command(&nats, "secret.delete", Some(&token), &json!({"id": id})).await;
    assert_eq!(again["ok"], true, "{again}");
    clock.advance(Duration::from_secs(30 * 86_400 + 1));
    let token = t.token("alice", "p1");
    eventually("the purge", WAIT, || async {
        t.history(&id)
            .await
            .iter()
            .any(|(c, a)| c == "secret.purge" && *a == Actor::scheduler())
            .then_some(())
    })
    .await;
    let key = t.key_ids(&id).await[0];
    let store = t.key_store().await;
    let (project, secret) = (
        ProjectId::parse("p1").unwrap(),
        SecretId::parse(&id).unwrap(),
    );
    key_destroyed(&store, &project, secret, key, WAIT).await;
    let gone = t.get(&format!("/v1/secrets/{id}"), &token).await;
    assert_eq!(gone.status(), 404);

    // Forcing skips the window; Barbican's DELETE (no window) removes at once.
    let forced = t.create(&token, text("f")).await;
    raw_command(&nats, "secret.delete", Some(&token), &json!({"id": forced})).await;
    let now = raw_command(
        &nats,
        "secret.delete",
        Some(&token),
        &json!({"id": forced, "force": true}),
    )
    .await;
    assert_eq!(now["ok"], true, "{now}");
    let barbican = t.create(&token, text("b")).await;
    assert_eq!(
        t.delete(&format!("/v1/secrets/{barbican}"), &token)
            .await
            .status(),
        204
    );
    assert_eq!(
        t.get(&format!("/v1/secrets/{barbican}"), &token)
            .await
            .status(),
        404
    );
    let commands: Vec<String> = t
        .history(&forced)
        .await
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        commands,
        ["secret.create", "secret.delete", "secret.delete"]
    );
    t.stop().await;
}

#[tokio::test]
async fn only_the_owning_service_changes_a_managed_secret() {
    let t = TestStack::start().await;
    let rotator = t.token_as("rotator-bot", "p1", &["admin"], Some("rotator"));
    let admin = t.token("alice", "p1");
    let id = t
        .create(&rotator, json!({"name": "managed", "payload": "m1", "payload_content_type": "text/plain", "owning_service": "rotator"}))
        .await;
    let managed = "This secret is managed by rotator; use that service to update it";
    // Reads follow the ACL rules as usual.
    assert_eq!(
        t.text(&format!("/v1/secrets/{id}/payload"), &admin).await,
        "m1"
    );
    let meta = t.extended(&id, &admin).await;
    assert_eq!(meta["owning_service"], "rotator");
    // Anyone else gets the same words over HTTP and NATS.
    for response in [
        t.put_version(&admin, &id, text("m2")).await,
        t.delete(&format!("/v1/secrets/{id}"), &admin).await,
        t.put_json(
            &format!("/v1/secrets/{id}/acl"),
            &admin,
            json!({"read": {"users": ["eve"]}}),
        )
        .await,
    ] {
        let (status, message) = description(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(message, managed);
    }
    let nats = t.client_nats_as(&admin).await;
    let reply = put_over_nats(&nats, &admin, &id, "m2").await;
    assert_eq!(reply["error"]["code"], "forbidden");
    assert_eq!(reply["error"]["message"], managed);
    // The service itself may.
    assert_eq!(t.put_version(&rotator, &id, text("m2")).await.status(), 201);
    // Nobody creates a secret managed by a service they are not.
    let (status, message) = description(
        t.post_json(
            "/v1/secrets",
            &admin,
            json!({"name": "x", "owning_service": "rotator"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        message.contains("only service rotator may create"),
        "{message}"
    );
    t.stop().await;
}

#[tokio::test]
async fn names_and_references_resolve_exactly_or_not_at_all() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let a = t
        .create(
            &token,
            json!({"name": "db", "payload": "A", "payload_content_type": "text/plain"}),
        )
        .await;
    // Barbican's shape has no reference (its clients refuse unknown fields)...
    let plain = json_of(t.get(&format!("/v1/secrets/{a}"), &token).await).await;
    assert!(plain.get("reference").is_none(), "{plain}");
    // ...keyledger's, asked for, does.
    let reference = t.extended(&a, &token).await["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reference.starts_with("krn:keyledger:p1:secret:db-"),
        "{reference}"
    );
    let suffix = &reference[reference.len() - 6..];
    assert_eq!(t.text("/v1/secrets/db/payload", &token).await, "A");
    assert_eq!(
        t.text(&format!("/v1/secrets/{reference}/payload"), &token)
            .await,
        "A"
    );

    // A secret whose name is A's name plus A's suffix: the pitfall AWS documents.
    let tricky = format!("db-{suffix}");
    t.create(
        &token,
        json!({"name": tricky, "payload": "B", "payload_content_type": "text/plain"}),
    )
    .await;
    assert_eq!(
        t.text(&format!("/v1/secrets/{tricky}/payload"), &token)
            .await,
        "B"
    );
    assert_eq!(
        t.text(&format!("/v1/secrets/{reference}/payload"), &token)
            .await,
        "A"
    );
    // A partial reference resolves to nothing, never to a secret that merely starts so.
    let partial = t
        .get("/v1/secrets/krn:keyledger:p1:secret:db/payload", &token)
        .await;
    assert_eq!(partial.status(), StatusCode::NOT_FOUND);

    // Two secrets named alike: the name is ambiguous, and the error lists both.
    let c = t
        .create(
            &token,
            json!({"name": "db", "payload": "C", "payload_content_type": "text/plain"}),
        )
        .await;
    let c_ref = t.extended(&c, &token).await["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, message) = description(t.get("/v1/secrets/db", &token).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message.contains(&reference) && message.contains(&c_ref),
        "{message}"
    );
    // Made private, C is counted, not named, to those who may not read it; the name
    // stays ambiguous for them too (a write must not land on A because C is hidden).
    let private = t
        .http
        .put(t.url(&format!("/v1/secrets/{c}/acl")))
        .bearer_auth(&token)
        .json(&json!({"read": {"project-access": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), StatusCode::OK);
    let carol = t.token_with("carol", "p1", &["observer"]);
    let (status, message) = description(t.get("/v1/secrets/db", &carol).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message.contains(&reference)
            && !message.contains(&c_ref)
            && message.contains("1 you may not read"),
        "{message}"
    );
    let (status, message) = description(t.get("/v1/secrets/db", &token).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message.contains(&c_ref), "{message}");
    // A name is looked up in the caller's project only.
    let other = t.token("bob", "p2");
    assert_eq!(
        t.get(&format!("/v1/secrets/{tricky}"), &other)
            .await
            .status(),
        404
    );
    t.stop().await;
}

#[tokio::test]
async fn metadata_and_tags_endpoints_follow_barbican_and_aws() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t.create(&token, text("m")).await;
    let md = format!("/v1/secrets/{id}/metadata");
    let put = t
        .put_json(&md, &token, json!({"metadata": {"a": "1", "b": "2"}}))
        .await;
    assert_eq!(put.status(), 201);
    let add = t
        .post_json(&md, &token, json!({"key": "c", "value": "3"}))
        .await;
    assert_eq!(add.status(), 201);
    assert_eq!(
        t.post_json(&md, &token, json!({"key": "c", "value": "4"}))
            .await
            .status(),
        409
    );
    let update = t
        .put_json(
            &format!("{md}/c"),
            &token,
            json!({"key": "c", "value": "9"}),
        )
        .await;
    assert_eq!(update.status(), 200);
    assert_eq!(
        t.put_json(
            &format!("{md}/zzz"),
            &token,
            json!({"key": "zzz", "value": "1"})
        )
        .await
        .status(),
        404
    );
    assert_eq!(t.delete(&format!("{md}/a"), &token).await.status(), 204);
    let all = json_of(t.get(&md, &token).await).await;
    assert_eq!(all, json!({"metadata": {"b": "2", "c": "9"}}));
    let one = json_of(t.get(&format!("{md}/c"), &token).await).await;
    assert_eq!(one, json!({"key": "c", "value": "9"}));

    let tags = format!("/v1/secrets/{id}/tags");
    let set = t
        .post_json(
            &tags,
            &token,
            json!({"tags": {"env": "prod", "team": "pay"}}),
        )
        .await;
    assert_eq!(set.status(), 204);
    assert_eq!(
        t.delete(&format!("{tags}/team"), &token).await.status(),
        204
    );
    assert_eq!(
        json_of(t.get(&tags, &token).await).await,
        json!({"tags": {"env": "prod"}})
    );
    let secret = t.extended(&id, &token).await;
    assert_eq!(secret["tags"], json!({"env": "prod"}));
    t.stop().await;
}

#[tokio::test]
async fn listings_filter_and_sort_as_barbican_does() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let soon = t.now().plus(Duration::from_secs(3600)).unwrap();
    let later = t.now().plus(Duration::from_secs(7200)).unwrap();
    for (name, alg, bits, exp) in [
        ("b-key", "aes", 256, Some(soon)),
        ("a-key", "aes", 128, Some(later)),
        ("c-key", "rsa", 2048, None),
    ] {
        let mut body = json!({"name": name, "algorithm": alg, "bit_length": bits, "mode": "cbc"});
        if let Some(exp) = exp {
            body["expiration"] = json!(exp.to_rfc3339());
        }
        t.create(&token, body).await;
    }
    let names = |v: Value| -> Vec<String> {
        v["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = |q: &str| {
        let path = format!("/v1/secrets?{q}");
        let t = &t;
        let token = token.clone();
        async move { json_of(t.get(&path, &token).await).await }
    };
    assert_eq!(names(list("alg=aes&sort=name").await), ["a-key", "b-key"]);
    assert_eq!(names(list("bits=2048").await), ["c-key"]);
    assert_eq!(
        names(list("mode=cbc&sort=name:desc").await),
        ["c-key", "b-key", "a-key"]
    );
    let cutoff = t
        .now()
        .plus(Duration::from_secs(5400))
        .unwrap()
        .to_rfc3339();
    assert_eq!(
        names(list(&format!("expiration=lt:{cutoff}")).await),
        ["b-key"]
    );
    assert_eq!(
        names(
            list(&format!(
                "expiration=gt:{},lte:{}",
                soon.to_rfc3339(),
                later.to_rfc3339()
            ))
            .await
        ),
        ["a-key"]
    );
    assert_eq!(
        names(list("sort=bit_length:desc").await),
        ["c-key", "b-key", "a-key"]
    );
    // Paging keeps the filter and the order.
    let page = list("sort=name&limit=1&mode=cbc").await;
    assert_eq!(names(page.clone()), ["a-key"]);
    let next = page["next"].as_str().unwrap();
    assert!(
        next.contains("sort=name") && next.contains("mode=cbc"),
        "{next}"
    );
    t.stop().await;
}
