//! Commands over NATS, sent with plain async-nats requests (no keyledger client code),
//! as any service would.

use std::time::Duration;

use serde_json::json;

use crate::support::{TestStack, assert_time_led, raw_command, unix_ms};

#[tokio::test]
async fn a_plain_nats_request_creates_a_secret_that_http_reads() {
    let t = TestStack::start().await;
    let token = t.token("svc", "p1");
    let nats = t.client_nats_as(&token).await;
    let before = unix_ms();
    let reply = raw_command(
        &nats,
        "secret.create",
        Some(&token),
        &json!({"name": "from nats", "payload": "aGVsbG8=", "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["version"], 1);
    let id = reply["id"].as_str().unwrap();
    let seq = reply["seq"].as_u64().unwrap();
    // Sent without a command id: the service generates one (`kl-v7-` and a UUIDv7),
    // and the id starts with its time.
    assert_time_led(id, before, unix_ms());

    let read = t
        .http
        .get(t.url(&format!("/v1/secrets/{id}/payload")))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", seq.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap().as_ref(), b"hello");

    let deleted = raw_command(
        &nats,
        "secret.delete",
        Some(&token),
        &json!({"id": id, "force": true}),
    )
    .await;
    assert_eq!(deleted["ok"], true, "{deleted}");
    assert_eq!(deleted["version"], 2);
    let gone = t
        .http
        .get(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", deleted["seq"].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    t.stop().await;
}

#[tokio::test]
async fn the_same_command_sent_twice_makes_one_commit_and_the_same_reply() {
    let t = TestStack::start().await;
    let token = t.token("svc", "p1");
    let nats = t.client_nats_as(&token).await;
    let body = json!({"command_id": "create-db-password-1", "name": "db", "payload": "v1", "payload_content_type": "text/plain"});
    let first = raw_command(&nats, "secret.create", Some(&token), &body).await;
    let second = raw_command(&nats, "secret.create", Some(&token), &body).await;
    assert_eq!(first["ok"], true, "{first}");
    // The same reply, saying that it answers the first (nothing was written).
    let mut replayed = first.clone();
    replayed["replayed"] = json!(true);
    assert_eq!(second, replayed);
    let without = |mut reply: serde_json::Value| {
        reply.as_object_mut().unwrap().remove("replayed");
        reply
    };

    // Concurrently, too.
    let concurrent =
        json!({"command_id": "set-owner-1", "id": first["id"], "key": "owner", "value": "ops"});
    let (a, b) = tokio::join!(
        raw_command(&nats, "secret.metadata.set", Some(&token), &concurrent),
        raw_command(&nats, "secret.metadata.set", Some(&token), &concurrent)
    );
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(without(a.clone()), without(b.clone()));
    assert_eq!(
        [&a, &b].iter().filter(|r| r["replayed"] == true).count(),
        1,
        "{a} {b}"
    );

    let js = async_nats::jetstream::new(t.service_nats().await);
    let mut stream = js.get_stream("KEYLEDGER").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        2,
        "one commit per command"
    );

    // A command id reused for a command on another kind of aggregate is refused as
    // reused (409), not read as a commit of that kind (found by schemathesis: a 500
    // "the event log is corrupt").
    for (command, body) in [
        (
            "container.create",
            json!({"command_id": "create-db-password-1", "type": "generic"}),
        ),
        (
            "access_key.create",
            json!({"command_id": "create-db-password-1", "access_key_id": "AKLGREUSED0000000001",
                   "secret_access_key": "a-long-enough-secret-1", "user": "svc", "roles": ["admin"]}),
        ),
        (
            "order.place",
            json!({"command_id": "create-db-password-1", "type": "key",
                               "meta": {"algorithm": "aes", "bit_length": 256}}),
        ),
    ] {
        let reply = raw_command(&nats, command, Some(&token), &body).await;
        assert_eq!(reply["ok"], false, "{command}: {reply}");
        assert_eq!(reply["error"]["code"], "conflict", "{command}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains("already used"), "{command}: {message}");
    }
    t.stop().await;
}

#[tokio::test]
async fn rejections_carry_stable_codes_and_actionable_messages() {
    let t = TestStack::start().await;
    let token = t.token("svc", "p1");
    let nats = t.client_nats_as(&token).await;
    let created = raw_command(
        &nats,
        "secret.create",
        Some(&token),
        &json!({"name": "two-step"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let put = json!({"id": id, "payload": "x", "payload_content_type": "text/plain"});
    assert_eq!(
        raw_command(&nats, "secret.payload.put", Some(&token), &put).await["ok"],
        true
    );

    // Signed with a key this keyledger does not trust.
    let untrusted = infra::identity::dev_keys_from_secret(&[0; 32]).0.issue(
        &domain::principal::Principal {
            user: domain::ids::UserId::parse("x").unwrap(),
            project: domain::ids::ProjectId::parse("p1").unwrap(),
            roles: vec![],
            service: None,
        },
        Duration::from_secs(60),
        infra::clock::system()(),
    );
    let cases = [
        ("secret.create", None, json!({}), "unauthorized", "no token"),
        (
            "secret.create",
            Some(untrusted.as_str()),
            json!({}),
            "unauthorized",
            "signature does not verify",
        ),
        (
            "secret.create",
            Some(token.as_str()),
            json!({"bit_length": 99999}),
            "invalid",
            "bit_length 99999 is out of range",
        ),
        (
            "secret.create",
            Some(token.as_str()),
            json!({"payload": 42}),
            "invalid",
            "payload must be a JSON string",
        ),
        (
            "secret.create",
            Some(token.as_str()),
            json!({"payload": "x".repeat(65537), "payload_content_type": "text/plain"}),
            "too_large",
            "the limit is 65536 bytes",
        ),
        (
            "secret.delete",
            Some(token.as_str()),
            json!({"id": "8a5e3f4c-1b2d-4e6f-9a0b-1c2d3e4f5a6b"}),
            "not_found",
            "Secret not found: no secret 8a5e3f4c-1b2d-4e6f-9a0b-1c2d3e4f5a6b in project p1",
        ),
        (
            "secret.delete",
            Some(token.as_str()),
            json!({"id": "nope"}),
            "invalid",
            "is not a UUID",
        ),
        (
            "secret.payload.put",
            Some(token.as_str()),
            put.clone(),
            "conflict",
            "already has a payload",
        ),
        (
            // The rotation runner's own command is not served on NATS.
            "secret.rotation.start",
            Some(token.as_str()),
            json!({}),
            "invalid",
            "unknown command \"secret.rotation.start\"; the commands are secret.create",
        ),
    ];
    for (name, token, body, code, message) in cases {
        let reply = raw_command(&nats, name, token, &body).await;
        assert_eq!(reply["ok"], false, "{name} {body}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{name} {body}: {reply}");
        let text = reply["error"]["message"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{text:?} should contain {message:?}"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn a_nats_client_cannot_write_the_log_or_touch_keys_behind_the_command_path() {
    let t = TestStack::start().await;
    let client = t.client_nats().await;
    // A forged "commit" published straight to the event subjects is refused by the
    // server's permissions for the client account...
    client
        .publish("keyledger.events.p1.secret.x", "{}".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    // ... and JetStream's API (streams, the key bucket) is out of its reach.
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client);
    assert!(js.get_stream("KEYLEDGER").await.is_err());
    assert!(js.get_key_value("KEYLEDGER_KEYS").await.is_err());

    let service = async_nats::jetstream::new(t.service_nats().await);
    let mut stream = service.get_stream("KEYLEDGER").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "nothing reached the log"
    );
    t.stop().await;
}
