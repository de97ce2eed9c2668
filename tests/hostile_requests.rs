//! What an adversarial pass against the HTTP API found, each kept as a test: two
//! tokens in one request (or one credential header twice), refusals that quoted a
//! value at its whole length, links built from a malformed Host, JSON bodies in another charset or shape, ACL grants in a
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

/// A credential header sent twice is refused on every path, even with the same token
/// in both: a proxy that vetted one copy must not see the other used. The scheme of
/// `Authorization` is case-insensitive.
#[tokio::test]
async fn a_credential_header_sent_twice_is_refused_on_every_path() {
    let t = TestStack::start().await;
    let (alice, bob) = (t.token("alice", "p1"), t.token("bob", "p2"));
    for (header, first, second) in [
        ("X-Auth-Token", bob.clone(), alice.clone()),
        ("X-Auth-Token", alice.clone(), alice.clone()),
        (
            "Authorization",
            format!("Bearer {bob}"),
            format!("Bearer {alice}"),
        ),
    ] {
        let twice = t
            .http
            .get(t.url("/v1/whoami"))
            .header(header, &first)
            .header(header, &second)
            .send()
            .await
            .unwrap();
        let (status, text) = description(twice).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header}: {text}");
        assert!(
            text.contains(&format!(
                "the {} header more than once",
                header.to_lowercase()
            )),
            "{header}: {text}"
        );
    }
    let shouted = t
        .http
        .get(t.url("/v1/whoami"))
        .header("Authorization", format!("BEARER {alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(shouted).await["user_id"], "alice");

    // NATS: the header's name is matched whatever its case, and two copies of it (under
    // one spelling or two) are refused.
    let nats = t.client_nats_as(&alice).await;
    let create = |headers: Vec<(&'static str, String)>| {
        let nats = nats.clone();
        async move {
            let mut map = async_nats::HeaderMap::new();
            for (name, value) in headers {
                map.append(name, value.as_str());
            }
            let reply = nats
                .request_with_headers(
                    "keyledger.cmd.secret.create",
                    map,
                    json!({"name": "twice"}).to_string().into(),
                )
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    for twice in [
        vec![
            ("Authorization", format!("Bearer {bob}")),
            ("Authorization", format!("Bearer {alice}")),
        ],
        vec![
            ("Authorization", format!("Bearer {alice}")),
            ("authorization", format!("Bearer {alice}")),
        ],
    ] {
        let reply = create(twice).await;
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Authorization header more than once"),
            "{reply}"
        );
    }
    let lower = create(vec![("authorization", format!("bearer {alice}"))]).await;
    assert_eq!(lower["ok"], true, "{lower}");

    // AWS's API: two authorization headers, refused before either is read.
    let aws = t
        .http
        .post(t.url("/"))
        .header("X-Amz-Target", "secretsmanager.ListSecrets")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("Authorization", "AWS4-HMAC-SHA256 one")
        .header("Authorization", "AWS4-HMAC-SHA256 two")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(aws.status(), StatusCode::BAD_REQUEST);
    let body = aws.text().await.unwrap();
    assert!(
        body.contains("IncompleteSignature") && body.contains("sent more than once"),
        "{body}"
    );
    t.stop().await;
}

/// A refusal quotes the value at fault, but never at the value's length: a request
/// cannot have its own 200,000 characters answered (or logged) back.
#[tokio::test]
async fn a_refusal_quotes_a_huge_value_only_in_part() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t.create_text(&token, "s", "v").await;
    let key = "k".repeat(200_000);
    let metadata = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/metadata")))
        .bearer_auth(&token)
        .json(&json!({"metadata": {key.as_str(): "v"}}))
        .send()
        .await
        .unwrap();
    let idempotency = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "b".repeat(200_000))
        .json(&json!({"name": "n"}))
        .send()
        .await
        .unwrap();
    for (what, response) in [("metadata key", metadata), ("Idempotency-Key", idempotency)] {
        let (status, text) = description(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert!(
            text.len() <= domain::error::MESSAGE_LIMIT && text.contains("bytes left out"),
            "{what}: {} bytes: {}",
            text.len(),
            &text[..200.min(text.len())]
        );
    }
    t.stop().await;
}

/// Links in responses are built from the request's Host when no public URL is set:
/// a missing (HTTP/1.1), repeated or malformed Host is refused with 400, as RFC 9112
/// asks, and a well-formed one is what the links name; the health checks answer any.
#[tokio::test]
async fn a_request_without_one_well_formed_host_is_refused() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let t = TestStack::start().await;
    let ask = |head: String| async move {
        let mut stream = tokio::net::TcpStream::connect(t.stack.http_addr)
            .await
            .unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("an answer")
        .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    for (what, hosts) in [
        ("no Host", ""),
        ("two", "Host: a.example\r\nHost: b.example\r\n"),
        ("a path", "Host: evil.example/x\r\n"),
        ("markup", "Host: evil.example\"><script>\r\n"),
        ("user info", "Host: user@evil.example\r\n"),
    ] {
        let answer = ask(format!(
            "GET / HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n"
        ))
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert!(answer.contains("Host header"), "{what}: {answer}");
    }
    let answer =
        ask("GET / HTTP/1.1\r\nHost: keyledger.example:9311\r\nConnection: close\r\n\r\n".into())
            .await;
    assert!(answer.starts_with("HTTP/1.1 300"), "{answer}");
    assert!(
        answer.contains("http://keyledger.example:9311/v1"),
        "{answer}"
    );
    // An empty Host is the RFC's for a target without one: links name localhost.
    let answer = ask("GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n".into()).await;
    assert!(answer.starts_with("HTTP/1.1 300"), "{answer}");
    assert!(answer.contains("http://localhost/v1"), "{answer}");
    // A load balancer's hand-written probe, without Host, is answered.
    let answer = ask("GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".into()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
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
    // A client request token names the first version: another token, with the same
    // payload or another, or none where the first had one, is another request.
    let t1 = "0b4f9c8e-4d52-4a7e-9a55-3f1b2c7d8e91";
    let t2 = "0b4f9c8e-4d52-4a7e-9a55-3f1b2c7d8e92";
    let with_token = |payload: &str, version_token: Option<&str>| {
        let mut body =
            json!({"name": "t", "payload": payload, "payload_content_type": "text/plain"});
        if let Some(version_token) = version_token {
            body["client_request_token"] = version_token.into();
        }
        t.http
            .post(t.url("/v1/secrets"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "create-tokened")
            .json(&body)
            .send()
    };
    let made = with_token("ONE", Some(t1)).await.unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let again = with_token("ONE", Some(t1)).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    for (payload, other) in [
        ("TWO", Some(t2)),
        ("ONE", Some(t2)),
        ("TWO", None),
        ("ONE", None),
    ] {
        let (status, text) = description(with_token(payload, other).await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{payload} {other:?}: {text}");
        assert!(text.contains("with another payload"), "{text}");
    }
    // Two keys in one request: which one a proxy in front deduplicates on is unknown.
    let twice = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "create-once")
        .header("Idempotency-Key", "create-twice")
        .json(&json!({"name": "z", "payload": "p", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    let (status, text) = description(twice).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("Idempotency-Key header is given more than once"),
        "{text}"
    );
    // A malformed key is told in the header's terms, not as the command id it becomes.
    let malformed = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "w0-A/w1.jsonl")
        .json(&json!({"name": "z", "payload": "p", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    let (status, text) = description(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.starts_with("Idempotency-Key \"w0-A/w1.jsonl\" is not valid: use 1 to 64"),
        "{text}"
    );
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

/// The first answer to `head`, sent on a connection of its own before any body:
/// within 5 s, far below the 30 s body timeout.
async fn answer_before_the_body(t: &TestStack, head: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(t.stack.http_addr)
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer before the body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// The head of an AWS `ListSecrets` request from access key `key_id`, with a
/// signature that cannot verify, declaring a body of `length` bytes (and the first of
/// them).
fn aws_head(key_id: &str, length: u64) -> String {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: secretsmanager.ListSecrets\r\n\
         Content-Type: application/x-amz-json-1.1\r\nX-Amz-Date: {stamp}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={key_id}/{day}/us-east-1/\
         secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
         Signature={sig}\r\nContent-Length: {length}\r\n\r\n{{",
        day = &stamp[..8],
        sig = "0".repeat(64)
    )
}

/// AWS's API checks a request's signature headers before it reads the body: a caller
/// without an active access key holds no connection for a body's time (the body
/// timeout), however slowly it sends one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_aws_request_is_refused_before_its_body_arrives() {
    let t = crate::support::TestStack::start().await;
    let answer = answer_before_the_body(&t, &aws_head("AKLGNOSUCHKEY0000000", 100)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("UnrecognizedClientException") && answer.contains("no active access key"),
        "{answer}"
    );
    t.stop().await;
}

/// A body declared (Content-Length) larger than the limit is refused at once, before
/// any of it is read: the client is told now, not after the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_over_the_limit_is_refused_before_it_arrives() {
    let t = crate::support::TestStack::start().await;
    let token = t.token("alice", "p1");
    let answer = answer_before_the_body(
        &t,
        &format!(
            "POST /v1/secrets HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{{"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("the request body is larger than"),
        "{answer}"
    );

    // AWS's API reads the body to check its signature: an active key's id is enough
    // to be refused on the size alone.
    let key = t.aws_key(&token).await;
    let answer = answer_before_the_body(&t, &aws_head(&key.id, 1_000_000_000)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("the request body is larger than"),
        "{answer}"
    );
    t.stop().await;
}
