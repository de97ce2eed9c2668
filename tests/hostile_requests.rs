//! What an adversarial pass against the HTTP API found, each kept as a test: two
//! tokens in one request, JSON bodies in another charset or shape, ACL grants in a
//! secret's history, a versions listing that grew without bound, plain-text errors.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestStack, description, json_of};

#[tokio::test]
async fn a_request_with_two_different_tokens_is_refused() {
    let t = TestStack::start().await;
    let (alice, bob) = (t.token("alice", "p1"), t.token("bob", "p2"));
    let both = t
        .http
        .get(t.url("/v1/whoami"))
        .header("X-Auth-Token", &alice)
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let (status, text) = description(both).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("two different tokens"), "{text}");
    // The same token in both is one caller.
    let same = t
        .http
        .get(t.url("/v1/whoami"))
        .header("X-Auth-Token", &alice)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(same).await["project_id"], "p1");
    t.stop().await;
}

#[tokio::test]
async fn json_bodies_are_objects_in_utf_8_at_every_level() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t.create_text(&token, "s", "v").await;
    let send = |method: reqwest::Method, path: String, content_type: &str, body: &str| {
        t.http
            .request(method, t.url(&path))
            .bearer_auth(&token)
            .header("Content-Type", content_type)
            .body(body.to_owned())
            .send()
    };
    for content_type in [
        "application/jsonx",
        "application/json, text/plain",
        "application/json; charset=utf-16",
    ] {
        let (status, text) = description(
            send(
                reqwest::Method::POST,
                "/v1/secrets".into(),
                content_type,
                "{}",
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert!(text.contains("application/json"), "{text}");
    }
    // An array where an object belongs would have reset the ACL field by field.
    for body in [r#"[null, null]"#, r#"{"read": [null, null]}"#] {
        let (status, text) = description(
            send(
                reqwest::Method::PUT,
                format!("/v1/secrets/{id}/acl"),
                "application/json",
                body,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(text.contains("object"), "{body}: {text}");
    }
    let (status, _) = description(
        send(
            reqwest::Method::POST,
            "/v1/containers".into(),
            "application/json",
            r#"{"type": "generic", "secret_refs": [["a", "b"]]}"#,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An error axum itself raises (a path that is not UTF-8) is in Barbican's shape.
    let (status, text) = description(t.get("/v1/containers/%ff", &token).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("UTF-8"), "{text}");
    t.stop().await;
}

#[tokio::test]
async fn acl_grants_in_history_show_only_to_who_may_read_the_acl() {
    let t = TestStack::start().await;
    let owner = t.token("alice", "p1");
    let id = t.create_text(&owner, "shared", "v").await;
    let acl = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl")))
        .bearer_auth(&owner)
        .json(&json!({"read": {"users": ["carol"], "project-access": true}}))
        .send()
        .await
        .unwrap();
    assert!(acl.status().is_success(), "{}", acl.text().await.unwrap());
    let acl_events = |history: &Value| -> Vec<Value> {
        history["history"]
            .as_array()
            .unwrap_or_else(|| panic!("{history}"))
            .iter()
            .map(|e| e["event"].clone())
            .filter(|e| e["type"] == "secret.acl_set")
            .collect()
    };
    // A member of the project reads the secret (project access) but not its ACL.
    let member = t.token_with("dave", "p1", &["member"]);
    let (status, _) = description(t.get(&format!("/v1/secrets/{id}/acl"), &member).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let history = json_of(t.get(&format!("/v1/secrets/{id}/history"), &member).await).await;
    let seen = acl_events(&history);
    assert_eq!(seen.len(), 1, "{history}");
    assert!(seen[0].get("redacted").is_some(), "{history}");
    assert!(!history.to_string().contains("carol"), "{history}");
    // The owner (admin) sees the grants.
    let history = json_of(t.get(&format!("/v1/secrets/{id}/history"), &owner).await).await;
    assert!(history.to_string().contains("carol"), "{history}");
    t.stop().await;
}

#[tokio::test]
async fn versions_are_listed_a_page_at_a_time() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t.create_text(&token, "rotated", "v0").await;
    for n in 1..=12 {
        let stored = t
            .http
            .post(t.url(&format!("/v1/secrets/{id}/versions")))
            .bearer_auth(&token)
            .json(&json!({"payload": format!("v{n}"), "payload_content_type": "text/plain"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), StatusCode::CREATED);
    }
    let first = json_of(t.get(&format!("/v1/secrets/{id}/versions"), &token).await).await;
    assert_eq!(first["total"], 13, "{first}");
    assert_eq!(first["versions"].as_array().unwrap().len(), 10, "{first}");
    let next = first["next"].as_str().expect("a next page").to_owned();
    let path = &next[next.find("/v1/").unwrap()..];
    let second = json_of(t.get(path, &token).await).await;
    assert_eq!(second["versions"].as_array().unwrap().len(), 3, "{second}");
    assert!(second["previous"].is_string(), "{second}");
    // Oldest first across the pages; the newest is current.
    let last = &second["versions"][2];
    assert_eq!(last["stages"], json!(["current"]), "{second}");
    // One version, by stage, without listing them all.
    let current = json_of(
        t.get(&format!("/v1/secrets/{id}/versions/current"), &token)
            .await,
    )
    .await;
    assert_eq!(current["version_id"], last["version_id"]);
    t.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_secret_is_refused() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let create = |body: Value| {
        t.http
            .post(t.url("/v1/secrets"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "create-once")
            .json(&body)
            .send()
    };
    let body = json!({"name": "x", "payload": "first", "payload_content_type": "text/plain"});
    let first = json_of(create(body.clone()).await.unwrap()).await;
    // The same request again: the same secret.
    let again = create(body).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(json_of(again).await["secret_ref"], first["secret_ref"]);
    // Another payload, or another name, under the same key: refused, and the secret
    // keeps what the first request stored.
    for (other, says) in [
        (
            json!({"name": "x", "payload": "OTHER", "payload_content_type": "text/plain"}),
            "payload",
        ),
        (
            json!({"name": "y", "payload": "first", "payload_content_type": "text/plain"}),
            "name",
        ),
        (json!({"name": "x"}), "payload"),
    ] {
        let (status, text) = description(create(other).await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{text}");
        assert!(text.contains(&format!("another {says}")), "{text}");
    }
    let id = crate::support::id_of(&first);
    let payload = t.get(&format!("/v1/secrets/{id}/payload"), &token).await;
    assert_eq!(payload.text().await.unwrap(), "first");
    t.stop().await;
}

#[tokio::test]
async fn a_row_the_read_model_cannot_read_is_a_500_not_a_retry() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t.create_text(&token, "damaged", "v").await;
    let pool = crate::support::read_model::open_url(&t.stack.database_url).await;
    sqlx::query("UPDATE secrets SET bit_length = 'many' WHERE id = ?")
        .bind(&id)
        .execute(&mut *pool.acquire().await.unwrap())
        .await
        .unwrap();
    let (status, text) = description(t.get(&format!("/v1/secrets/{id}"), &token).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("projections rebuild"), "{text}");
    assert!(text.contains("error id"), "{text}");
    t.stop().await;
}

/// AWS's API checks a request's signature headers before it reads the body: a caller
/// without an active access key holds no connection for a body's time (the body
/// timeout), however slowly it sends one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_aws_request_is_refused_before_its_body_arrives() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let t = crate::support::TestStack::start().await;
    let mut stream = tokio::net::TcpStream::connect(t.stack.http_addr)
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: secretsmanager.ListSecrets\r\n\
         Content-Type: application/x-amz-json-1.1\r\nX-Amz-Date: {stamp}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKLGNOSUCHKEY0000000/{day}/us-east-1/\
         secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={sig}\r\n\
         Content-Length: 100\r\n\r\n{{",
        day = &stamp[..8],
        sig = "0".repeat(64)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    // Far below the 30 s body timeout.
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer before the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("UnrecognizedClientException") && answer.contains("no active access key"),
        "{answer}"
    );
    t.stop().await;
}
