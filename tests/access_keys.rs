//! Access keys (AWS-style key pairs for SigV4, issue 18): created, imported, listed
//! and revoked over HTTP, NATS and the CLI, with the authorization rule of
//! docs/access-control.md; the secret access key is returned once, when generated,
//! and never listed; revoking destroys its data key in the key store.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestStack, description, json_of, raw_command};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

impl TestStack {
    async fn create_key(&self, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/access-keys"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn revoke_key(&self, token: &str, id: &str) -> reqwest::Response {
        self.http
            .delete(self.url(&format!("/v1/access-keys/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The data keys held in the key store for access key `id` of project p1.
    async fn data_keys_of(&self, id: &str) -> Vec<String> {
        use futures::TryStreamExt as _;
        let js = async_nats::jetstream::new(self.service_nats().await);
        let bucket = js.get_key_value("KEYLEDGER_KEYS").await.unwrap();
        let (secret, _) = domain::access_key::sealing_ids(
            &domain::ids::ProjectId::parse("p1").unwrap(),
            &domain::access_key::AccessKeyId::parse(id).unwrap(),
        );
        let prefix = format!("p1.{secret}.");
        let names: Vec<String> = bucket.keys().await.unwrap().try_collect().await.unwrap();
        names
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }
}

/// What `keyledger access-key <command>` prints on stdout, against `stack` with `token`.
fn access_key_cli(command: &str, stack: &TestStack, token: &str) -> String {
    let out = std::process::Command::new(KEYLEDGER)
        .args([
            "access-key",
            command,
            "--url",
            &stack.url(""),
            "--token",
            token,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_and_revoked_as_their_owner_and_admins_may() {
    let stack = TestStack::start().await;
    let admin = stack.token("root", "p1");
    let bob = stack.token_with("bob", "p1", &["member"]);
    let alice = stack.token_with("alice", "p1", &["member"]);

    // An admin makes a key for bob: the pair comes back once, never to be cached.
    let r = stack
        .create_key(&admin, json!({"user": "bob", "roles": ["member"]}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let made = json_of(r).await;
    let id = made["access_key_id"].as_str().unwrap().to_owned();
    let secret = made["secret_access_key"].as_str().unwrap().to_owned();
    assert!(id.starts_with("AKLG") && id.len() == 20, "{made}");
    assert_eq!(secret.len(), 40, "{made}");
    assert_eq!(
        (made["user"].as_str(), made["project"].as_str()),
        (Some("bob"), Some("p1"))
    );
    assert_eq!(
        stack.data_keys_of(&id).await.len(),
        1,
        "its data key is stored"
    );

    // bob sees his key, without its secret.
    let r = stack.get("/v1/access-keys", &bob).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(&secret),
        "a listing never holds a secret: {text}"
    );
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        listed["access_keys"][0]["access_key_id"],
        id.as_str(),
        "{listed}"
    );
    assert_eq!(listed["access_keys"][0]["status"], "active", "{listed}");
    assert_eq!(listed["access_keys"][0]["creator"], "root", "{listed}");

    // bob may import a pair for himself with his own roles, not more, not for others.
    let imported = "AKLGIMPORTED00000001";
    let r = stack
        .create_key(
            &bob,
            json!({"access_key_id": imported, "secret_access_key": "bobs-own-secret-0123456789"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let made = json_of(r).await;
    assert!(
        made.get("secret_access_key").is_none(),
        "an imported secret is not echoed: {made}"
    );
    for (body, says) in [
        (json!({"roles": ["admin"]}), "(admin)"),
        (
            json!({"user": "alice", "roles": ["member"]}),
            "only an admin",
        ),
    ] {
        let (status, message) = description(stack.create_key(&bob, body).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
        assert!(message.contains(says), "{message}");
    }
    // An id is never reused, even by its owner.
    let (status, message) = description(
        stack
            .create_key(
                &bob,
                json!({"access_key_id": imported, "secret_access_key": "another-secret-0123456789"}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{message}");
    // A key for someone else names its roles: an admin's own are never handed on.
    let (status, message) =
        description(stack.create_key(&admin, json!({"user": "carol"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("names its roles"), "{message}");
    // A secret given without its id is refused by name.
    let (status, message) = description(
        stack
            .create_key(
                &bob,
                json!({"secret_access_key": "bobs-own-secret-0123456789"}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(message.contains("access_key_id"), "{message}");

    // A secret put in the wrong field never comes back in the error.
    let leaked = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    for body in [
        json!({"access_key_id": leaked, "secret_access_key": "bobs-own-secret-0123456789"}),
        json!({"roles": leaked}),
    ] {
        let (status, message) = description(stack.create_key(&bob, body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
        assert!(!message.contains("wJalr"), "{message}");
    }
    // A key whose roles the policy does not know could do nothing: refused.
    let (status, message) = description(
        stack
            .create_key(&admin, json!({"user": "carol", "roles": ["superuser"]}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");

    // An Idempotency-Key makes a retried import safe; a retried generated key is
    // the same key, whose secret is not shown again: the retry says what to do.
    for attempt in 0..2 {
        let r = stack
            .http
            .post(stack.url("/v1/access-keys"))
            .bearer_auth(&bob)
            .header("Idempotency-Key", "import-1")
            .json(&json!({"access_key_id": "AKLGIMPORTED00000002", "secret_access_key": "bobs-other-secret-012345"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "attempt {attempt}");
    }
    let generate = || {
        stack
            .http
            .post(stack.url("/v1/access-keys"))
            .bearer_auth(&bob)
            .header("Idempotency-Key", "generated-1")
            .json(&json!({}))
            .send()
    };
    let first = json_of(generate().await.unwrap()).await;
    let (status, message) = description(generate().await.unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{message}");
    let first_id = first["access_key_id"].as_str().unwrap();
    assert!(message.contains(&format!("revoke {first_id}")), "{message}");
    assert_eq!(
        stack.revoke_key(&bob, first_id).await.status(),
        StatusCode::NO_CONTENT
    );

    // Only an admin lists the whole project's keys.
    let (status, message) = description(stack.get("/v1/access-keys?all=true", &bob).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    let all = json_of(stack.get("/v1/access-keys?all=true", &admin).await).await;
    assert_eq!(all["total"], 4, "{all}");
    assert_eq!(
        json_of(stack.get("/v1/access-keys", &alice).await).await["total"],
        0
    );

    // alice cannot even tell bob's key exists; bob revokes it, and its data key goes.
    let (status, message) = description(stack.revoke_key(&alice, &id).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{message}");
    assert_eq!(
        stack.revoke_key(&bob, &id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        stack.revoke_key(&bob, &id).await.status(),
        StatusCode::NO_CONTENT
    );
    let (status, message) = description(stack.revoke_key(&alice, &id).await).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "revoked, it still looks absent: {message}"
    );
    assert!(
        stack.data_keys_of(&id).await.is_empty(),
        "the revoked key's data key is destroyed"
    );
    let mine = json_of(stack.get("/v1/access-keys", &bob).await).await;
    let revoked = mine["access_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["access_key_id"] == id.as_str())
        .unwrap();
    assert_eq!(revoked["status"], "revoked", "{mine}");
    assert!(revoked["revoked"].is_string(), "{mine}");
    let (status, _) = description(stack.revoke_key(&bob, "not-a-key").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Over NATS, with the same rules.
    let nats = stack.client_nats_as(&bob).await;
    let reply = raw_command(
        &nats,
        "access_key.create",
        Some(&bob),
        &json!({"access_key_id": "AKLGNATS000000000001", "secret_access_key": "short", "user": "bob", "roles": ["member"]}),
    )
    .await;
    assert_eq!(reply["ok"], false, "{reply}");
    let error = reply["error"]["message"].as_str().unwrap();
    assert!(
        error.contains("secret access key is not valid") && !error.contains("short"),
        "{reply}"
    );
    let reply = raw_command(
        &nats,
        "access_key.create",
        Some(&bob),
        &json!({"access_key_id": "AKLGNATS000000000001", "secret_access_key": "a-long-enough-secret-1", "user": "bob", "roles": ["member"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["id"], "AKLGNATS000000000001", "{reply}");
    let once = json!({"command_id": "nats-create-1", "access_key_id": "AKLGNATS000000000002", "secret_access_key": "a-long-enough-secret-2", "user": "bob", "roles": ["member", "member"]});
    let reply = raw_command(&nats, "access_key.create", Some(&bob), &once).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = raw_command(&nats, "access_key.create", Some(&bob), &once).await;
    assert_eq!(
        reply["ok"], true,
        "a retry is answered as the first time: {reply}"
    );
    let reply = raw_command(
        &nats,
        "access_key.revoke",
        Some(&bob),
        &json!({"access_key_id": "AKLGNATS000000000002"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = raw_command(&nats, "access_key.create", Some(&bob), &once).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked since"),
        "{reply}"
    );

    // The CLI prints the pair as environment assignments and nothing else.
    let stdout = access_key_cli("create", &stack, &bob);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("AWS_ACCESS_KEY_ID=AKLG"), "{stdout}");
    assert!(
        lines[1].starts_with("AWS_SECRET_ACCESS_KEY=") && lines[1].len() == 22 + 40,
        "{stdout}"
    );
    let cli_id = lines[0].trim_start_matches("AWS_ACCESS_KEY_ID=");
    let listing = access_key_cli("list", &stack, &bob);
    assert!(
        listing.contains(cli_id) && listing.contains(imported),
        "{listing}"
    );
    assert!(!listing.contains(&lines[1][22..]), "{listing}");

    // The audit trail shows whom each key stood for and that it was revoked, never
    // a secret.
    let out = crate::support::audit(crate::support::args(&[
        "state",
        "--nats-url",
        &stack.stack.service_url,
        "--at",
        "2999-01-01T00:00:00Z",
        "--project",
        "p1",
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains(&secret), "{printed}");
    let state: Value = serde_json::from_str(&printed).unwrap();
    let status_of = |key: &str| {
        state["access_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["access_key_id"] == key)
            .map(|k| (k["status"].clone(), k["user"].clone()))
    };
    assert_eq!(
        status_of(&id),
        Some((json!("revoked"), json!("bob"))),
        "{state}"
    );
    assert_eq!(
        status_of(imported),
        Some((json!("active"), json!("bob"))),
        "{state}"
    );
    stack.stop().await;
}

/// A signed request names only the access key id, so an imported pair cannot be in
/// two projects at once: the second import is refused, and the first project keeps
/// it. The same id may come back once the first project has revoked it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_key_id_lives_in_one_project() {
    let stack = TestStack::start().await;
    let p1 = stack.token("root", "p1");
    let p2 = stack.token("root", "p2");
    let pair = json!({"access_key_id": "SHAREDKEY0000001", "secret_access_key": "imported-secret-0123456789"});
    let r = stack.create_key(&p1, pair.clone()).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = stack.create_key(&p2, pair.clone()).await;
    assert_eq!(r.status(), 409);
    let said = json_of(r).await;
    assert!(
        said["description"]
            .as_str()
            .unwrap()
            .contains("in use in another project"),
        "{said}"
    );
    assert_eq!(
        stack.revoke_key(&p1, "SHAREDKEY0000001").await.status(),
        204
    );
    let r = stack.create_key(&p2, pair).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// The key shredder covers access keys as it covers secrets: a data key a revocation
/// left behind (a command service killed between the commit and the destroy) is
/// destroyed when the shredder reaches the revocation. A shredder consumer made by an
/// older build, which followed secrets only, is widened when keyledger starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_shredder_destroys_what_a_revocation_left_behind() {
    use async_nats::jetstream::consumer::pull;
    use std::time::Duration;

    let stack = TestStack::start().await;
    let admin = stack.token_with("root", "p1", &["admin"]);
    let id = "AKLGSHRED00000000001";
    let created = stack
        .create_key(
            &admin,
            json!({"access_key_id": id, "secret_access_key": "shred-me-0123456789abcdef",
                   "user": "bob", "roles": ["creator"]}),
        )
        .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.text().await
    );
    let names = stack.data_keys_of(id).await;
    assert_eq!(names.len(), 1, "{names:?}");
    let js = async_nats::jetstream::new(stack.service_nats().await);
    let bucket = js.get_key_value("KEYLEDGER_KEYS").await.unwrap();
    let wrapped = bucket.get(&names[0]).await.unwrap().expect("the data key");

    let revoked = stack.revoke_key(&admin, id).await;
    assert!(revoked.status().is_success(), "{:?}", revoked.text().await);
    crate::support::eventually(
        "the revocation to destroy the data key",
        Duration::from_secs(10),
        || async { stack.data_keys_of(id).await.is_empty().then_some(()) },
    )
    .await;

    // As if the destroy had been cut short: the key is back, and the shredder reads
    // the log again from its start.
    bucket.put(&names[0], wrapped).await.unwrap();
    let stream = js.get_stream("KEYLEDGER").await.unwrap();
    stream
        .delete_consumer(commands::shredder::CONSUMER)
        .await
        .unwrap();
    crate::support::eventually(
        "the shredder to destroy the data key again",
        Duration::from_secs(30),
        || async { stack.data_keys_of(id).await.is_empty().then_some(()) },
    )
    .await;

    // An older build's consumer, narrowed to secrets, is widened on start.
    let secrets_only =
        domain::subject::events_filter(None, Some(domain::subject::AggregateKind::Secret), None);
    stream
        .update_consumer(pull::Config {
            durable_name: Some(commands::shredder::CONSUMER.into()),
            filter_subject: secrets_only,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap();
    let stack = stack.restart(|| {}).await;
    let js = async_nats::jetstream::new(stack.service_nats().await);
    let stream = js.get_stream("KEYLEDGER").await.unwrap();
    let filters = crate::support::eventually(
        "the shredder's consumer to follow access keys",
        Duration::from_secs(30),
        || {
            let stream = stream.clone();
            async move {
                let info = stream
                    .consumer_info(commands::shredder::CONSUMER)
                    .await
                    .ok()?;
                let filters = info.config.filter_subjects.clone();
                filters
                    .iter()
                    .any(|f| f.contains(".access_key."))
                    .then_some(filters)
            }
        },
    )
    .await;
    assert!(
        filters.iter().any(|f| f.contains(".secret.")),
        "{filters:?}"
    );
    stack.stop().await;
}
