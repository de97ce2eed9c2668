//! Project quotas as Barbican has them: set by the service admin over HTTP, read by
//! everyone for their own project, enforced where commands are decided, so HTTP and
//! NATS creators racing for the last places never overshoot.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestStack, args, audit, description, json_of, raw_command};

const SERVICE_ADMIN: &str = "key-manager:service-admin";

impl TestStack {
    async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let request = self.http.request(method, self.url(path)).bearer_auth(token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        request.send().await.unwrap()
    }
}

#[tokio::test]
async fn an_idempotency_key_sent_again_with_other_quotas_is_refused_and_changes_nothing() {
    let t = TestStack::start().await;
    let ops = t.token_with("ops", "ops", &[SERVICE_ADMIN]);
    let put = |quotas: Value| {
        t.http
            .put(t.url("/v1/project-quotas/p1"))
            .bearer_auth(&ops)
            .header("Idempotency-Key", "quota-1")
            .json(&json!({"project_quotas": quotas}))
            .send()
    };
    let first = put(json!({"secrets": 5})).await.unwrap();
    assert_eq!(first.status(), 204, "{}", first.text().await.unwrap());
    let retried = put(json!({"secrets": 5})).await.unwrap();
    assert_eq!(retried.status(), 204, "{}", retried.text().await.unwrap());
    let (status, message) = description(put(json!({"secrets": 9})).await.unwrap()).await;
    assert_eq!(status, 409, "{message}");
    assert!(
        message.contains(
            "command_id quota-1 was already used for a request of quota.set with other \
             members or values"
        ) && message.contains("a new Idempotency-Key"),
        "{message}"
    );
    assert_eq!(
        json_of(t.get("/v1/project-quotas/p1", &ops).await).await,
        json!({"project_quotas": {"secrets": 5}})
    );
    t.stop().await;
}

#[tokio::test]
async fn quotas_are_set_by_the_service_admin_read_as_barbican_shows_them_and_enforced() {
    let t = TestStack::start().await;
    let admin = t.token("alice", "p1");
    let ops = t.token_with("ops", "ops", &[SERVICE_ADMIN]);

    // Every limit starts unlimited, and a project's own admin cannot change its quotas.
    let effective = json_of(t.get("/v1/quotas", &admin).await).await;
    assert_eq!(
        effective,
        json!({"quotas": {"secrets": -1, "orders": -1, "containers": -1, "consumers": -1, "cas": -1}})
    );
    let set =
        json!({"project_quotas": {"secrets": 1, "orders": 0, "containers": 1, "consumers": 1}});
    let (status, message) = description(
        t.send_json(
            Method::PUT,
            "/v1/project-quotas/p1",
            &admin,
            Some(set.clone()),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains(SERVICE_ADMIN), "{message}");
    let refused = t.get("/v1/project-quotas", &admin).await;
    assert_eq!(refused.status(), 403);

    // Bad limits are refused by name, before anything is written.
    for (body, names) in [
        (
            json!({"project_quotas": {"secrets": -2}}),
            "secrets quota -2",
        ),
        (json!({"project_quotas": {"keys": 1}}), "keys"),
        (json!({"quotas": {"secrets": 1}}), "quotas"),
    ] {
        let (status, message) = description(
            t.send_json(Method::PUT, "/v1/project-quotas/p1", &ops, Some(body))
                .await,
        )
        .await;
        assert_eq!(status, 400, "{message}");
        assert!(message.contains(names), "{names}: {message}");
    }
    let missing = t.get("/v1/project-quotas/p1", &ops).await;
    assert_eq!(missing.status(), 404);

    let put = t
        .send_json(Method::PUT, "/v1/project-quotas/p1", &ops, Some(set))
        .await;
    assert_eq!(put.status(), 204, "{}", put.text().await.unwrap());
    assert_eq!(
        json_of(t.get("/v1/project-quotas/p1", &ops).await).await,
        json!({"project_quotas": {"secrets": 1, "orders": 0, "containers": 1, "consumers": 1}})
    );
    assert_eq!(
        json_of(t.get("/v1/quotas", &admin).await).await,
        json!({"quotas": {"secrets": 1, "orders": 0, "containers": 1, "consumers": 1, "cas": -1}})
    );
    let listed = json_of(t.get("/v1/project-quotas", &ops).await).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["project_quotas"][0]["project_id"], "p1", "{listed}");

    // Each resource is held to its limit: the 403 names the quota, the limit and the count.
    let secret = t.create_text(&admin, "one", "x").await;
    let over = t
        .send_json(
            Method::POST,
            "/v1/secrets",
            &admin,
            Some(json!({"name": "two", "payload": "y", "payload_content_type": "text/plain"})),
        )
        .await;
    let (status, message) = description(over).await;
    assert_eq!(status, 403, "{message}");
    assert!(
        message.contains("Quota reached for project p1")
            && message.contains("secrets quota is 1")
            && message.contains("holds 1 secret"),
        "{message}"
    );
    let order = t
        .send_json(
            Method::POST,
            "/v1/orders",
            &admin,
            Some(json!({"type": "key", "meta": {"algorithm": "aes", "bit_length": 256}})),
        )
        .await;
    let (status, message) = description(order).await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("orders quota is 0"), "{message}");
    let container = json!({"type": "generic", "name": "c"});
    let first = t
        .send_json(
            Method::POST,
            "/v1/containers",
            &admin,
            Some(container.clone()),
        )
        .await;
    assert_eq!(first.status(), 201);
    let second = t
        .send_json(Method::POST, "/v1/containers", &admin, Some(container))
        .await;
    assert_eq!(second.status(), 403);
    let consumers = format!("/v1/secrets/{secret}/consumers");
    let consumer =
        |id: &str| json!({"service": "nova", "resource_type": "instance", "resource_id": id});
    let registered = t
        .http
        .post(t.url(&consumers))
        .bearer_auth(&admin)
        .header("OpenStack-API-Version", "key-manager 1.1")
        .json(&consumer("vm-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        registered.status(),
        200,
        "{}",
        registered.text().await.unwrap()
    );
    let (status, message) = description(
        t.http
            .post(t.url(&consumers))
            .bearer_auth(&admin)
            .header("OpenStack-API-Version", "key-manager 1.1")
            .json(&consumer("vm-2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("consumers quota is 1"), "{message}");

    // Deleting a secret gives its place back.
    let deleted = t
        .send_json(
            Method::DELETE,
            &format!("/v1/secrets/{secret}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    t.create_text(&admin, "two", "y").await;

    // A project's admin cannot hand the service admin's role to an access key.
    let (status, message) = description(
        t.send_json(
            Method::POST,
            "/v1/access-keys",
            &admin,
            Some(json!({"user": "u1", "roles": ["admin", SERVICE_ADMIN]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{message}");
    assert!(message.contains(SERVICE_ADMIN), "{message}");

    // Removed: unlimited again, and a second removal finds nothing.
    let removed = t
        .send_json(Method::DELETE, "/v1/project-quotas/p1", &ops, None)
        .await;
    assert_eq!(removed.status(), 204);
    assert_eq!(t.get("/v1/project-quotas/p1", &ops).await.status(), 404);
    let again = t
        .send_json(Method::DELETE, "/v1/project-quotas/p1", &ops, None)
        .await;
    assert_eq!(again.status(), 404);
    t.create_text(&admin, "three", "z").await;

    // The quota commits are part of the log an auditor verifies.
    let key = t.checkpoint_public_key_file();
    let out = audit(args(&[
        "verify",
        "--nats-url",
        &t.auditor_url(),
        "--public-key",
        &key,
    ]))
    .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("ok: "),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn concurrent_creators_over_http_and_nats_never_overshoot_a_quota() {
    const LIMIT: usize = 5;
    let t = TestStack::start().await;
    let ops = t.token_with("ops", "ops", &[SERVICE_ADMIN]);
    let put = t
        .send_json(
            Method::PUT,
            "/v1/project-quotas/p1",
            &ops,
            Some(json!({"project_quotas": {"secrets": LIMIT}})),
        )
        .await;
    assert_eq!(put.status(), 204);

    // Eight creators, four over HTTP and four over NATS, each trying four creates at
    // once: 32 creates for 5 places.
    let creators = (0..8).map(|c| {
        let t = &t;
        async move {
            let token = t.token(&format!("user{c}"), "p1");
            let nats = t.client_nats_as(&token).await;
            let attempts = (0..4).map(|i| {
                let (token, nats) = (token.clone(), nats.clone());
                async move {
                    let name = format!("c{c}-{i}");
                    if c % 2 == 0 {
                        let response = t
                            .send_json(
                                Method::POST,
                                "/v1/secrets",
                                &token,
                                Some(json!({"name": name, "payload": "x", "payload_content_type": "text/plain"})),
                            )
                            .await;
                        let (status, message) = description(response).await;
                        (status.as_u16(), message)
                    } else {
                        let reply = raw_command(
                            &nats,
                            "secret.create",
                            Some(&token),
                            &json!({"name": name, "payload": "x", "payload_content_type": "text/plain"}),
                        )
                        .await;
                        match reply["ok"].as_bool() {
                            Some(true) => (201, String::new()),
                            _ => (
                                match reply["error"]["code"].as_str() {
                                    Some("quota_exceeded") => 403,
                                    _ => 500,
                                },
                                reply.to_string(),
                            ),
                        }
                    }
                }
            });
            futures::future::join_all(attempts).await
        }
    });
    let outcomes: Vec<(u16, String)> = futures::future::join_all(creators)
        .await
        .into_iter()
        .flatten()
        .collect();
    let created = outcomes.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, LIMIT, "{outcomes:#?}");
    for (status, message) in outcomes.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 403, "{message}");
        assert!(
            message.contains("secrets quota is 5") && message.contains("holds 5 secrets"),
            "{message}"
        );
    }
    let listed = json_of(
        t.get("/v1/secrets?limit=100", &t.token("alice", "p1"))
            .await,
    )
    .await;
    assert_eq!(listed["total"], LIMIT, "{listed}");

    // Another project is not held to p1's quota.
    let other = t.token("bob", "p2");
    for i in 0..LIMIT + 1 {
        t.create_text(&other, &format!("p2-{i}"), "x").await;
    }
}

/// The read model's counts, as the command service's quota gate reads them.
struct Usage(projections::db::Pool);

impl commands::quota::QuotaUsage for Usage {
    fn usage<'a>(
        &'a self,
        project: &'a domain::ids::ProjectId,
        resource: domain::quota::Resource,
    ) -> commands::quota::Counted<'a> {
        Box::pin(async move { Ok(projections::read::usage(&self.0, project, resource).await?) })
    }
}

#[tokio::test]
async fn a_lowered_limit_holds_at_once_on_another_command_service() {
    use commands::secret::{HandlerConfig, SecretHandler};
    use commands::shared::store::EventStore;
    use domain::subject::SecretOp;
    use std::sync::Arc;

    let t = TestStack::start().await;
    let ops = t.token_with("ops", "ops", &[SERVICE_ADMIN]);
    let set = |limit: i64| json!({"project_quotas": {"secrets": limit}});
    let put = t
        .send_json(Method::PUT, "/v1/project-quotas/p1", &ops, Some(set(10)))
        .await;
    assert_eq!(put.status(), 204);

    // Another command service: its own connection, store, caches and quota gate.
    let js = async_nats::jetstream::new(t.service_nats().await);
    let url = keyledger::stack::default_database_url(t.dir.path());
    let pool = projections::db::open(&url, 2).await.unwrap();
    let quotas = Arc::new(commands::quota::Quotas::new(Arc::new(Usage(pool))));
    let store = Arc::new(
        EventStore::open(
            js.clone(),
            &infra::log::LogSettings::default(),
            (*t.stack.keys.commit).clone(),
        )
        .await
        .unwrap()
        .with_quotas(quotas),
    );
    let keys = infra::keystore::KeyStore::new(infra::log::ensure_key_bucket(&js, 1).await.unwrap());
    let other = SecretHandler::new(
        store,
        keys,
        t.stack.keys.envelope.clone(),
        infra::clock::system(),
        HandlerConfig::default(),
    );
    let alice = crate::event_store::alice();
    let create = |name: &str| serde_json::to_vec(&json!({"name": name})).unwrap();
    // It reads the limit (10) once and keeps it for a second.
    other
        .handle(SecretOp::Create, &alice, &create("first"))
        .await
        .unwrap();

    // Lowered to 2 through the stack's command service: the other service's next
    // charges are decided on 2 at once, not on the 10 it read a moment ago.
    let put = t
        .send_json(Method::PUT, "/v1/project-quotas/p1", &ops, Some(set(2)))
        .await;
    assert_eq!(put.status(), 204);
    let mut outcomes = Vec::new();
    for i in 0..3 {
        outcomes.push(
            other
                .handle(SecretOp::Create, &alice, &create(&format!("more-{i}")))
                .await
                .map_err(|r| (r.code, r.message)),
        );
    }
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    for refused in &outcomes[1..] {
        let (code, message) = refused.clone().unwrap_err();
        assert_eq!(code, domain::ErrorCode::QuotaExceeded, "{message}");
        assert!(message.contains("secrets quota is 2"), "{message}");
    }
}
