//! Containers on the real stack: Barbican's types and their validation, references
//! checked against the log, generic references added and removed, consumers, ACLs, and
//! what a container shows when a secret it references expires.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestClock, TestStack, description, json_of, raw_command, ref_id};

impl TestStack {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// [`Self::send`] at a Barbican microversion.
    async fn send_at(
        &self,
        version: &str,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("OpenStack-API-Version", format!("key-manager {version}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn container(&self, token: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, "/v1/containers", token, Some(body))
            .await
    }

    async fn container_id(&self, token: &str, body: Value) -> String {
        let r = self.container(token, body).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        ref_id(&json_of(r).await, "container_ref")
    }
}

fn refs(pairs: &[(&str, &str)]) -> Value {
    json!(pairs
        .iter()
        .map(|(name, id)| json!({"name": name, "secret_ref": format!("http://x/v1/secrets/{id}")}))
        .collect::<Vec<_>>())
}

#[tokio::test]
async fn containers_hold_checked_references_of_their_type() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let cert = t
        .create_text(&alice, "cert", "-----BEGIN CERTIFICATE-----")
        .await;
    let key = t
        .create_text(&alice, "key", "-----BEGIN PRIVATE KEY-----")
        .await;
    let id = t
        .container_id(
            &alice,
            json!({"name": "web", "type": "certificate",
                   "secret_refs": refs(&[("certificate", &cert), ("private_key", &key)])}),
        )
        .await;
    let shown = json_of(t.get(&format!("/v1/containers/{id}"), &alice).await).await;
    assert_eq!(shown["type"], "certificate");
    assert_eq!(shown["status"], "ACTIVE");
    assert_eq!(shown["secret_refs"][0]["name"], "certificate");
    assert!(
        shown["secret_refs"][1]["secret_ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/secrets/{key}"))
    );

    // Each type's names are checked, and so is every reference.
    let missing = "00000000-0000-4000-8000-000000000001";
    for (body, status, says) in [
        (
            json!({"type": "rsa", "secret_refs": refs(&[("public_key", &cert)])}),
            StatusCode::BAD_REQUEST,
            "a rsa container needs a reference named private_key",
        ),
        (
            json!({"type": "certificate", "secret_refs": refs(&[("cert", &cert)])}),
            StatusCode::BAD_REQUEST,
            "cannot hold a reference named \"cert\"",
        ),
        (
            json!({"type": "tls", "secret_refs": []}),
            StatusCode::BAD_REQUEST,
            "container type \"tls\" is not supported",
        ),
        (
            json!({"type": "generic", "secret_refs": refs(&[("x", missing)])}),
            StatusCode::NOT_FOUND,
            "which does not exist (or no longer does: deleted or expired); name a live secret",
        ),
    ] {
        let (got, message) = description(t.container(&alice, body).await).await;
        assert_eq!(got, status, "{message}");
        assert!(message.contains(says), "{message}");
    }
    // A secret the caller may not read cannot be put in a container.
    let private = t.create_text(&alice, "private", "p").await;
    t.send(
        reqwest::Method::PUT,
        &format!("/v1/secrets/{private}/acl"),
        &alice,
        Some(json!({"read": {"project-access": false}})),
    )
    .await;
    let bob = t.token_with("bob", "p1", &["creator"]);
    let (got, message) = description(
        t.container(
            &bob,
            json!({"type": "generic", "secret_refs": refs(&[("p", &private)])}),
        )
        .await,
    )
    .await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{message}");
    assert!(
        message.starts_with("secret_refs \"p\": reading secret"),
        "{message}"
    );

    // Over NATS, a reference names the secret's id.
    let nats = t.client_nats_as(&alice).await;
    let reply = raw_command(
        &nats,
        "container.create",
        Some(&alice),
        &json!({"type": "rsa", "secret_refs": [
            {"name": "public_key", "secret_ref": cert},
            {"name": "private_key", "secret_ref": key}]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let listed = t
        .http
        .get(t.url("/v1/containers"))
        .bearer_auth(&alice)
        .header("X-Keyledger-Min-Seq", reply["seq"].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(listed).await["total"], 2);
    t.stop().await;
}

#[tokio::test]
async fn generic_references_change_and_consumers_go_with_a_deletion_over_http() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let a = t.create_text(&alice, "a", "1").await;
    let b = t.create_text(&alice, "b", "2").await;
    let c = t.create_text(&alice, "c", "3").await;
    let id = t
        .container_id(
            &alice,
            json!({"type": "generic", "secret_refs": refs(&[("a", &a)])}),
        )
        .await;
    let secrets = format!("/v1/containers/{id}/secrets");
    let add = json!({"name": "b", "secret_ref": b});
    let added = t
        .send(reqwest::Method::POST, &secrets, &alice, Some(add.clone()))
        .await;
    assert_eq!(added.status(), 201);
    let container_url = t.url(&format!("/v1/containers/{id}"));
    assert_eq!(added.headers()["location"], container_url.as_str());
    assert_eq!(
        json_of(added).await,
        json!({"container_ref": container_url})
    );
    // A reference needs no name in a generic container, as in Barbican.
    let unnamed = t
        .send(
            reqwest::Method::POST,
            &secrets,
            &alice,
            Some(json!({"secret_ref": c})),
        )
        .await;
    assert_eq!(unnamed.status(), 201);
    // Each secret is referenced once.
    let (status, message) = description(
        t.send(
            reqwest::Method::POST,
            &secrets,
            &alice,
            Some(json!({"name": "again", "secret_ref": a})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("referenced more than once"), "{message}");
    let removed = t
        .send(reqwest::Method::DELETE, &secrets, &alice, Some(add))
        .await;
    assert_eq!(removed.status(), 204);
    let names: Vec<Value> =
        json_of(t.get(&format!("/v1/containers/{id}"), &alice).await).await["secret_refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].clone())
            .collect();
    assert_eq!(names, [json!("a"), json!("")]);

    let consumers = format!("/v1/containers/{id}/consumers");
    let lb = json!({"name": "lb", "URL": "https://lb.example/listeners/1"});
    let registered = t
        .send(reqwest::Method::POST, &consumers, &alice, Some(lb.clone()))
        .await;
    assert_eq!(registered.status(), 200);
    assert_eq!(json_of(registered).await["consumers"], json!([lb]));
    let listed = json_of(t.get(&consumers, &alice).await).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["consumers"][0]["URL"], lb["URL"], "{listed}");
    assert_eq!(listed["consumers"][0]["status"], "ACTIVE", "{listed}");
    // Over NATS a container with consumers is deleted only when forced...
    let nats = t.client_nats_as(&alice).await;
    let reply = raw_command(&nats, "container.delete", Some(&alice), &json!({"id": id})).await;
    assert_eq!(reply["error"]["code"], "invalid", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("has consumers: lb (https://lb.example/listeners/1)"),
        "{message}"
    );
    // ...while over HTTP they go with it, as in Barbican.
    let deleted = t
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/containers/{id}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        t.get(&format!("/v1/containers/{id}"), &alice)
            .await
            .status(),
        404
    );
    t.stop().await;
}

#[tokio::test]
async fn container_acls_work_as_secret_acls_do() {
    let t = TestStack::start().await;
    let alice = t.token_with("alice", "p1", &["creator"]);
    let bob = t.token_with("bob", "p1", &["observer"]);
    let carol = t.token_with("carol", "p2", &["observer"]);
    let s = t.create_text(&alice, "s", "x").await;
    let id = t
        .container_id(
            &alice,
            json!({"type": "generic", "secret_refs": refs(&[("s", &s)])}),
        )
        .await;
    let path = format!("/v1/containers/{id}");
    assert_eq!(t.get(&path, &bob).await.status(), 200);
    assert_eq!(t.get(&path, &carol).await.status(), 403);
    let acl = format!("{path}/acl");
    let set = t
        .send(
            reqwest::Method::PUT,
            &acl,
            &alice,
            Some(json!({"read": {"project-access": false, "users": ["carol"]}})),
        )
        .await;
    assert_eq!(set.status(), 200);
    let (status, message) = description(t.get(&path, &bob).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("the container is private"), "{message}");
    assert_eq!(t.get(&path, &carol).await.status(), 200);
    let listed = json_of(t.get("/v1/containers", &bob).await).await;
    assert_eq!(listed["total"], 0);
    t.stop().await;
}

/// A referenced secret in its recovery window is "scheduled for deletion"; once the
/// window has ended it is deleted, before the scheduler's purge lands too.
#[tokio::test]
async fn a_container_shows_a_secret_deleted_once_its_recovery_window_ends() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| {
        c.clock = clock.clock();
        c.scheduler_interval = Duration::from_secs(3600);
    })
    .await;
    let alice = t.token("alice", "p1");
    let secret = json_of(
        t.send(
            reqwest::Method::POST,
            "/v1/secrets",
            &alice,
            Some(json!({"name": "key", "payload": "k", "payload_content_type": "text/plain"})),
        )
        .await,
    )
    .await["secret_ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let id = t
        .container_id(
            &alice,
            json!({"type": "generic", "secret_refs": refs(&[("key", &secret)])}),
        )
        .await;
    let deleted = t
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/secrets/{secret}?recovery_window_days=7"),
            &alice,
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let problem = |shown: &Value| shown["problems"][0].as_str().unwrap().to_owned();
    let shown = json_of(t.get(&format!("/v1/containers/{id}"), &alice).await).await;
    assert!(
        problem(&shown).contains("scheduled for deletion on"),
        "{shown}"
    );
    clock.advance(Duration::from_secs(7 * 86_400));
    let alice = t.token("alice", "p1");
    let shown = json_of(t.get(&format!("/v1/containers/{id}"), &alice).await).await;
    assert_eq!(shown["status"], "ERROR");
    assert!(
        problem(&shown).contains("deleted (its recovery window ended on"),
        "{shown}"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_container_shows_when_a_secret_it_references_expires() {
    let clock = TestClock::now();
    let t = TestStack::start_with(|c| c.clock = clock.clock()).await;
    let alice = t.token("alice", "p1");
    let expires = t.now().plus(Duration::from_secs(3600)).unwrap();
    let cert = json_of(
        t.send(
            reqwest::Method::POST,
            "/v1/secrets",
            &alice,
            Some(
                json!({"name": "cert", "payload": "c", "payload_content_type": "text/plain",
                        "expiration": expires.to_rfc3339()}),
            ),
        )
        .await,
    )
    .await["secret_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let cert_id = cert.rsplit('/').next().unwrap().to_owned();
    let id = t
        .container_id(
            &alice,
            json!({"type": "certificate", "secret_refs": refs(&[("certificate", &cert_id)])}),
        )
        .await;
    t.send(
        reqwest::Method::POST,
        &format!("/v1/containers/{id}/consumers"),
        &alice,
        Some(json!({"name": "lb", "URL": "https://lb.example/1"})),
    )
    .await;
    clock.advance(Duration::from_secs(7200));
    let alice = t.token("alice", "p1");
    let shown = json_of(t.get(&format!("/v1/containers/{id}"), &alice).await).await;
    assert_eq!(shown["status"], "ERROR");
    let problem = shown["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with("certificate secret ")
            && problem.contains(&format!("expired on {}", expires.to_rfc3339()))
            && problem.ends_with("store a renewed certificate and create a new container"),
        "{problem}"
    );
    assert_eq!(shown["consumers"][0]["name"], "lb");
    // The TLS check says the same, and lists the consumers to tell.
    let check = json_of(
        t.get(&format!("/v1/containers/{id}/tls-check"), &alice)
            .await,
    )
    .await;
    assert_eq!(check["ok"], false);
    assert_eq!(check["findings"][0]["message"], problem);
    assert_eq!(check["consumers"][0]["URL"], "https://lb.example/1");
    t.stop().await;
}

#[tokio::test]
async fn secret_consumers_follow_barbicans_microversions() {
    use reqwest::Method;
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let id = t.create_text(&alice, "cert", "c").await;
    let consumers = format!("/v1/secrets/{id}/consumers");
    let octavia = json!({"service": "octavia", "resource_type": "listener", "resource_id": "l-1"});
    // Consumers came with 1.1; before it they do not exist, as in Barbican.
    let (status, message) = description(
        t.send(Method::POST, &consumers, &alice, Some(octavia.clone()))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message.contains("key-manager 1.1"), "{message}");

    // Registering answers with the secret, its consumers included, as Barbican does.
    let registered = t
        .send_at(
            "1.1",
            Method::POST,
            &consumers,
            &alice,
            Some(octavia.clone()),
        )
        .await;
    assert_eq!(registered.status(), 200);
    assert!(
        registered.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with(&consumers)
    );
    let secret = json_of(registered).await;
    assert_eq!(secret["name"], "cert", "{secret}");
    assert_eq!(secret["consumers"], json!([octavia]), "{secret}");
    // Below 1.1 the secret shows no consumers; from 1.1 it does.
    let plain = json_of(t.get(&format!("/v1/secrets/{id}"), &alice).await).await;
    assert!(plain.get("consumers").is_none(), "{plain}");
    // The listing pages as Barbican pages.
    for n in 2..=3 {
        let other =
            json!({"service": "nova", "resource_type": "server", "resource_id": format!("s-{n}")});
        let r = t
            .send_at("1.1", Method::POST, &consumers, &alice, Some(other))
            .await;
        assert_eq!(r.status(), 200);
    }
    let page = json_of(
        t.send_at(
            "1.1",
            Method::GET,
            &format!("{consumers}?limit=2"),
            &alice,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(page["total"], 3, "{page}");
    assert_eq!(page["consumers"].as_array().unwrap().len(), 2, "{page}");
    // The listing adds when each was registered, and its status.
    let first = &page["consumers"][0];
    assert_eq!(first["status"], "ACTIVE", "{page}");
    assert!(first["created"].as_str().unwrap().len() >= 19, "{page}");
    assert!(
        page["next"]
            .as_str()
            .unwrap()
            .ends_with("?limit=2&offset=2"),
        "{page}"
    );
    assert!(page.get("previous").is_none(), "{page}");

    // From 1.2, consumers stop a deletion unless forced, in the words Barbican's
    // clients look for.
    let (status, message) = description(
        t.send_at(
            "1.2",
            Method::DELETE,
            &format!("/v1/secrets/{id}"),
            &alice,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.starts_with("Secret cannot be deleted as it has consumers.")
            && message.contains("octavia (listener l-1)"),
        "{message}"
    );
    // A scheduled deletion is refused the same way over NATS.
    let nats = t.client_nats_as(&alice).await;
    let reply = raw_command(&nats, "secret.delete", Some(&alice), &json!({"id": id})).await;
    assert_eq!(reply["error"]["code"], "invalid", "{reply}");
    // python-barbicanclient sends force=1.
    let forced = t
        .send_at(
            "1.2",
            Method::DELETE,
            &format!("/v1/secrets/{id}?force=1"),
            &alice,
            None,
        )
        .await;
    assert_eq!(forced.status(), 204);

    // Before 1.2, the deletion takes the consumers with it.
    let other = t.create_text(&alice, "other", "o").await;
    let r = t
        .send_at(
            "1.1",
            Method::POST,
            &format!("/v1/secrets/{other}/consumers"),
            &alice,
            Some(octavia),
        )
        .await;
    assert_eq!(r.status(), 200);
    let deleted = t
        .send(
            Method::DELETE,
            &format!("/v1/secrets/{other}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    t.stop().await;
}
