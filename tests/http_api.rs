//! The Barbican-compatible HTTP API, over real HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use domain::timestamp::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestStack, assert_time_led, description, id_of, json_of, unix_ms};

fn seq_of(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("x-keyledger-seq")
        .expect("every secrets response carries X-Keyledger-Seq")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn version_discovery_answers_like_barbican() {
    let t = TestStack::start().await;
    let root = t.http.get(t.url("/")).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::MULTIPLE_CHOICES);
    let body = json_of(root).await;
    let v1 = &body["versions"]["values"][0];
    assert_eq!(v1["id"], "v1");
    assert_eq!(v1["status"], "stable");
    assert_eq!(v1["links"][0]["href"], t.url("/v1/"));
    assert_eq!(
        v1["media-types"][0]["type"],
        "application/vnd.openstack.key-manager-v1+json"
    );
    let version = t.http.get(t.url("/v1")).send().await.unwrap();
    assert_eq!(version.status(), StatusCode::OK);
    assert_eq!(
        version.headers()["openstack-api-version"],
        "key-manager 1.0"
    );
    assert_eq!(json_of(version).await["version"]["id"], "v1");

    // A client that asks for a microversion (python-barbicanclient asks for 1.1) learns
    // the range served, in Barbican's shape for it, and each response names its version.
    let asked = |path: &str, version: &str| {
        t.http
            .get(t.url(path))
            .header("OpenStack-API-Version", format!("key-manager {version}"))
            .send()
    };
    let root = asked("/", "1.1").await.unwrap();
    assert_eq!(root.status(), StatusCode::MULTIPLE_CHOICES);
    assert_eq!(root.headers()["openstack-api-version"], "key-manager 1.1");
    assert_eq!(root.headers()["vary"], "OpenStack-API-Version");
    let body = json_of(root).await;
    assert_eq!(
        body["versions"][0],
        json!({"id": "v1", "status": "CURRENT", "min_version": "1.0", "max_version": "1.2",
               "links": body["versions"][0]["links"].clone()})
    );
    let latest = asked("/v1/", "latest").await.unwrap();
    assert_eq!(latest.headers()["openstack-api-version"], "key-manager 1.2");
    assert_eq!(json_of(latest).await["version"]["max_version"], "1.2");
    let (status, text) = description(asked("/v1", "1.3").await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert!(text.contains("serves 1.0 to 1.2"), "{text}");
    let (status, text) = description(asked("/v1", "one").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("key-manager latest"), "{text}");
    t.stop().await;
}

/// A trailing slash names the same resource, for every method (python-barbicanclient
/// POSTs to `/v1/secrets/`); an unknown path or method keeps Barbican's error shape.
#[tokio::test]
async fn a_trailing_slash_is_the_same_resource_for_every_method() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let created = t
        .http
        .post(t.url("/v1/secrets/"))
        .bearer_auth(&token)
        .json(&json!({"name": "slash", "payload": "s", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = id_of(&json_of(created).await);
    for path in [format!("/v1/secrets/{id}"), format!("/v1/secrets/{id}/")] {
        let got = json_of(t.get(&path, &token).await).await;
        assert_eq!(got["name"], "slash", "{path}: {got}");
    }
    let listed = json_of(t.get("/v1/secrets/?name=slash", &token).await).await;
    assert_eq!(listed["total"], 1, "{listed}");
    let acl = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}/acl/")))
        .bearer_auth(&token)
        .json(&json!({"read": {"users": ["bob"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(acl.status(), StatusCode::OK);
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{id}/")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for (method, path, status) in [
        (reqwest::Method::GET, "/v1/nothing/", StatusCode::NOT_FOUND),
        (
            reqwest::Method::PATCH,
            "/v1/secrets/",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::PATCH,
            "/v1/secrets",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let answer = t
            .http
            .request(method.clone(), t.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (got, text) = description(answer).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(!text.is_empty(), "{method} {path}");
    }
    t.stop().await;
}

#[tokio::test]
async fn create_read_list_and_delete() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let before = unix_ms();

    // A text secret with every descriptive field.
    let created = t
        .http
        .post(t.url("/v1/secrets"))
        .header("X-Auth-Token", &token)
        .json(&json!({
            "name": "db password", "secret_type": "passphrase", "algorithm": "aes",
            "bit_length": 256, "mode": "cbc", "expiration": "2099-01-01T00:00:00Z",
            "payload": "hunter2", "payload_content_type": "text/plain"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body = json_of(created).await;
    assert_eq!(body["secret_ref"], location);
    let text_id = id_of(&body);

    // A binary secret.
    let bytes = [0u8, 159, 146, 150, 255];
    let created = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "raw key", "secret_type": "symmetric",
            "payload": B64.encode(bytes), "payload_content_type": "application/octet-stream",
            "payload_content_encoding": "base64"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let binary_id = id_of(&json_of(created).await);
    // The API generates each command's id (`kl-v7-` and a UUIDv7), so the ids start
    // with their time.
    for id in [&text_id, &binary_id] {
        assert_time_led(id, before, unix_ms());
    }

    // Metadata, as Barbican shapes it.
    let meta = json_of(t.get(&format!("/v1/secrets/{text_id}"), &token).await).await;
    assert_eq!(meta["name"], "db password");
    assert_eq!(meta["secret_type"], "passphrase");
    assert_eq!(meta["algorithm"], "aes");
    assert_eq!(meta["bit_length"], 256);
    assert_eq!(meta["mode"], "cbc");
    // Times as Barbican shows them: UTC, no offset (gophercloud parses only this).
    assert_eq!(meta["expiration"], "2099-01-01T00:00:00");
    assert_eq!(meta["status"], "ACTIVE");
    assert_eq!(meta["creator_id"], "alice");
    assert_eq!(meta["content_types"]["default"], "text/plain");
    assert_eq!(meta["secret_ref"], location);
    assert!(meta.get("payload").is_none());

    // Payloads, byte for byte.
    let text = t
        .get(&format!("/v1/secrets/{text_id}/payload"), &token)
        .await;
    assert_eq!(text.status(), StatusCode::OK);
    assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(text.headers()["cache-control"], "no-store");
    assert_eq!(text.text().await.unwrap(), "hunter2");
    let raw = t
        .http
        .get(t.url(&format!("/v1/secrets/{binary_id}/payload")))
        .bearer_auth(&token)
        .header("Accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "application/octet-stream");
    assert_eq!(raw.bytes().await.unwrap().as_ref(), bytes);

    // Listing, filters, paging.
    let list = |query: &'static str| {
        let request = t
            .http
            .get(t.url(&format!("/v1/secrets{query}")))
            .bearer_auth(&token);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let all = list("").await;
    assert_eq!(all["total"], 2);
    assert_eq!(all["secrets"].as_array().unwrap().len(), 2);
    assert_eq!(all["secrets"][0]["name"], "db password", "oldest first");
    assert!(all.get("next").is_none() && all.get("previous").is_none());
    let by_name = list("?name=raw%20key").await;
    assert_eq!(by_name["total"], 1);
    assert_eq!(by_name["secrets"][0]["secret_type"], "symmetric");
    assert_eq!(list("?secret_type=passphrase").await["total"], 1);
    assert_eq!(list("?secret_type=opaque").await["total"], 0);
    let first = list("?limit=1").await;
    assert_eq!(first["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(first["total"], 2);
    assert_eq!(first["next"], t.url("/v1/secrets?limit=1&offset=1"));
    let second = list("?limit=1&offset=1").await;
    assert_eq!(second["secrets"][0]["name"], "raw key");
    assert_eq!(second["previous"], t.url("/v1/secrets?limit=1&offset=0"));

    // Delete: 204, then gone everywhere.
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{text_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for path in [
        format!("/v1/secrets/{text_id}"),
        format!("/v1/secrets/{text_id}/payload"),
    ] {
        let gone = t.get(&path, &token).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        let err = json_of(gone).await;
        assert_eq!(err["code"], 404);
        assert_eq!(err["title"], "Not Found");
        assert_eq!(
            err["description"],
            format!("Secret not found: no secret {text_id} in project p1")
        );
    }
    assert_eq!(list("").await["total"], 1);
    t.stop().await;
}

#[tokio::test]
async fn two_step_create_takes_one_payload_put() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let created = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .json(&json!({"name": "later"}))
        .send()
        .await
        .unwrap();
    let id = id_of(&json_of(created).await);
    let payload_url = t.url(&format!("/v1/secrets/{id}/payload"));

    let none = t
        .http
        .get(&payload_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    assert!(
        json_of(none).await["description"]
            .as_str()
            .unwrap()
            .contains("has no payload yet")
    );

    let put = |body: &'static [u8], content_type: &'static str| {
        t.http
            .put(t.url(&format!("/v1/secrets/{id}")))
            .bearer_auth(&token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let wrong = put(b"{}", "application/json").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let first = put(&[0, 1, 2, 255], "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    let second = put(b"again", "text/plain").await.unwrap();
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert!(
        json_of(second).await["description"]
            .as_str()
            .unwrap()
            .contains("already has a payload")
    );

    let got = t
        .http
        .get(&payload_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), [0, 1, 2, 255]);
    t.stop().await;
}

#[tokio::test]
async fn accept_is_negotiated_as_barbican_does() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let text_id = t.create_text(&token, "t", "plain words").await;
    let get = |path: String, accept: &'static str| {
        t.http
            .get(t.url(&path))
            .bearer_auth(&token)
            .header("Accept", accept)
            .send()
    };
    let payload = format!("/v1/secrets/{text_id}/payload");
    assert_eq!(
        get(payload.clone(), "text/plain").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get(payload.clone(), "*/*").await.unwrap().status(),
        StatusCode::OK
    );
    let octets = get(payload.clone(), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(octets.headers()["content-type"], "application/octet-stream");
    let refused = get(payload, "image/png").await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    assert!(
        json_of(refused).await["description"]
            .as_str()
            .unwrap()
            .contains("Accept: text/plain")
    );

    // GET /v1/secrets/{id}: JSON clients get metadata, text clients the payload.
    let secret = format!("/v1/secrets/{text_id}");
    let meta = get(secret.clone(), "application/json").await.unwrap();
    assert_eq!(json_of(meta).await["name"], "t");
    let legacy = get(secret.clone(), "text/plain").await.unwrap();
    assert_eq!(legacy.text().await.unwrap(), "plain words");
    assert_eq!(
        get(secret, "application/xml").await.unwrap().status(),
        StatusCode::NOT_ACCEPTABLE
    );

    // A binary payload is served as text when its bytes are UTF-8 (as Barbican does;
    // gophercloud and the openstack CLI ask for text/plain), and refused otherwise.
    let binary = |b64: &'static str| {
        let request = t
            .http
            .post(t.url("/v1/secrets"))
            .bearer_auth(&token)
            .json(&json!({"payload": b64, "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"}));
        async move { id_of(&json_of(request.send().await.unwrap()).await) }
    };
    let utf8_id = binary("aMOpbGxv").await;
    let served = get(format!("/v1/secrets/{utf8_id}/payload"), "text/plain")
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(
        served.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(served.text().await.unwrap(), "h\u{e9}llo");
    let binary_id = binary("/wA=").await;
    let refused = get(format!("/v1/secrets/{binary_id}/payload"), "text/plain")
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    let text = refused.text().await.unwrap();
    assert!(text.contains("binary, not UTF-8 text"), "{text}");
    t.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_a_message_that_says_what_to_do() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let post = |body: Value| {
        t.http
            .post(t.url("/v1/secrets"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"name": "n".repeat(256)}),
            StatusCode::BAD_REQUEST,
            "name is 256 characters long; the limit is 255",
        ),
        (
            json!({"secret_type": "key"}),
            StatusCode::BAD_REQUEST,
            "secret_type \"key\" is not supported; use one of",
        ),
        (
            json!({"bit_length": 0}),
            StatusCode::BAD_REQUEST,
            "bit_length 0 is out of range; use 1 to 32767",
        ),
        (
            json!({"expiration": "2001-01-01T00:00:00Z"}),
            StatusCode::BAD_REQUEST,
            "is not in the future",
        ),
        (
            json!({"expiration": "soon"}),
            StatusCode::BAD_REQUEST,
            "is not an ISO-8601 date-time",
        ),
        (
            json!({"payload": "x"}),
            StatusCode::BAD_REQUEST,
            "payload_content_type is required with payload",
        ),
        (
            json!({"payload": "eA==", "payload_content_type": "application/octet-stream"}),
            StatusCode::BAD_REQUEST,
            "payload_content_encoding is required",
        ),
        (
            json!({"payload": "x", "payload_content_type": "text/html"}),
            StatusCode::BAD_REQUEST,
            "\"text/html\" is not supported",
        ),
        (
            json!({"bitlength": 1}),
            StatusCode::BAD_REQUEST,
            "unknown field `bitlength`",
        ),
        (
            json!({"payload": "x".repeat(70_000), "payload_content_type": "text/plain"}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload is 70000 bytes; the limit is 65536 bytes",
        ),
    ];
    for (body, status, message) in cases {
        let response = post(body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let err = json_of(response).await;
        assert_eq!(err["code"], status.as_u16());
        assert_eq!(err["title"], status.canonical_reason().unwrap());
        let description = err["description"].as_str().unwrap();
        assert!(
            description.contains(message),
            "{description:?} should say {message:?}"
        );
    }

    let huge = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let form = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .header("Content-Type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    for (query, message) in [
        (
            "?limit=abc",
            "limit=\"abc\" must be a whole number from 0 to",
        ),
        (
            "?offset=99999999999",
            "offset=\"99999999999\" must be a whole number from 0 to 4294967295",
        ),
        ("?colour=red", "\"colour\" is not supported"),
        (
            "?created=yesterday",
            "created \"yesterday\" is not an ISO-8601 date-time",
        ),
        ("?sort=size:desc", "cannot sort by \"size\""),
        ("?sort=name:up", "sort direction \"up\""),
        ("?secret_type=x", "secret_type \"x\""),
    ] {
        let r = t.get(&format!("/v1/secrets{query}"), &token).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let description = json_of(r).await["description"].as_str().unwrap().to_owned();
        assert!(description.contains(message), "{query}: {description}");
    }

    let missing = t
        .get("/v1/secrets/3f1c9a9e-0d7b-4d0a-9f59-5a8c1d2e3f40", &token)
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let not_uuid = t.get("/v1/secrets/nope", &token).await;
    assert_eq!(not_uuid.status(), StatusCode::NOT_FOUND);
    assert!(
        json_of(not_uuid).await["description"]
            .as_str()
            .unwrap()
            .contains("no live secret has the name \"nope\" in project p1")
    );
    let nowhere = t.http.get(t.url("/v2/things")).send().await.unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(nowhere).await["code"], 404);
    let wrong_method = t
        .http
        .patch(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    t.stop().await;
}

#[tokio::test]
async fn tokens_are_required_and_verified() {
    let t = TestStack::start().await;
    let none = t.http.get(t.url("/v1/secrets")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"keyledger\""
    );
    assert!(
        json_of(none).await["description"]
            .as_str()
            .unwrap()
            .contains("X-Auth-Token")
    );

    let token = t.token("alice", "p1");
    // Change the first character of the signature (the last one may only carry
    // padding bits).
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{first}{}", &signature[1..]);
    let bad = t.get("/v1/secrets", &forged).await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(
        json_of(bad).await["description"]
            .as_str()
            .unwrap()
            .contains("signature does not verify")
    );

    let other_key = infra::identity::dev_keys_from_secret(&[9; 32]).0.issue(
        &domain::principal::Principal {
            user: domain::ids::UserId::parse("alice").unwrap(),
            project: domain::ids::ProjectId::parse("p1").unwrap(),
            roles: vec![],
            service: None,
        },
        Duration::from_secs(60),
        infra::clock::system()(),
    );
    let foreign = t.get("/v1/secrets", &other_key).await;
    assert_eq!(foreign.status(), StatusCode::UNAUTHORIZED);

    let ok = t
        .http
        .get(t.url("/v1/secrets"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    t.stop().await;
}

#[tokio::test]
async fn a_project_sees_and_changes_only_its_own_secrets() {
    let t = TestStack::start().await;
    let p1 = t.token("alice", "p1");
    let p2 = t.token("bob", "p2");
    let id = t.create_text(&p1, "mine", "p1 only").await;
    for path in [
        format!("/v1/secrets/{id}"),
        format!("/v1/secrets/{id}/payload"),
    ] {
        let r = t.get(&path, &p2).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let body = json_of(r).await;
        let description = body["description"].as_str().unwrap();
        assert!(
            description.contains("in project p1 requires role")
                && description.contains("your token is for project p2"),
            "{description}"
        );
    }
    let list = json_of(t.get("/v1/secrets", &p2).await).await;
    assert_eq!(list["total"], 0);
    let delete = t
        .http
        .delete(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&p2)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::FORBIDDEN);
    let put = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&p2)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    // Still there for its owner.
    let mine = t.get(&format!("/v1/secrets/{id}/payload"), &p1).await;
    assert_eq!(mine.text().await.unwrap(), "p1 only");
    t.stop().await;
}

#[tokio::test]
async fn writes_are_visible_to_the_next_read_and_reads_say_what_they_reflect() {
    let t =
        TestStack::start_with(|c| c.api.config.consistency_timeout = Duration::from_millis(300))
            .await;
    let token = t.token("alice", "p1");
    for i in 0..5 {
        let created = t
            .http
            .post(t.url("/v1/secrets"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("s{i}"), "payload": "v", "payload_content_type": "text/plain"}))
            .send()
            .await
            .unwrap();
        let seq = seq_of(&created);
        let id = id_of(&json_of(created).await);
        // No waiting between the write and the read.
        let read = t.get(&format!("/v1/secrets/{id}"), &token).await;
        assert_eq!(read.status(), StatusCode::OK);
        assert!(seq_of(&read) >= seq);
        let list = t.get("/v1/secrets", &token).await;
        assert!(seq_of(&list) >= seq);
        assert_eq!(json_of(list).await["total"], i + 1);
    }

    // Asking for a sequence the log does not hold: refused at once, naming the end.
    let ahead = t
        .http
        .get(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", "1000000")
        .send()
        .await
        .unwrap();
    assert_eq!(ahead.status(), StatusCode::CONFLICT);
    assert!(
        json_of(ahead).await["description"]
            .as_str()
            .unwrap()
            .contains("1000000 is beyond the end of the log")
    );
    let garbage = t
        .http
        .get(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    t.stop().await;
}

#[tokio::test]
async fn an_expired_secret_is_not_found_from_the_instant_it_expires() {
    let offset = Arc::new(AtomicI64::new(0));
    let clock_offset = offset.clone();
    let t = TestStack::start_with(move |c| {
        c.clock = Arc::new(move || {
            let now = infra::clock::system()();
            Timestamp::from_unix_millis(now.unix_millis() + clock_offset.load(Ordering::SeqCst))
                .unwrap()
        });
    })
    .await;
    let token = t.token("alice", "p1");
    let expires =
        Timestamp::from_unix_millis(infra::clock::system()().unix_millis() + 60_000).unwrap();
    let created = t
        .http
        .post(t.url("/v1/secrets"))
        .bearer_auth(&token)
        .json(&json!({"name": "short-lived", "expiration": expires.to_rfc3339(), "payload": "v", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    let id = id_of(&json_of(created).await);
    let payload = t.url(&format!("/v1/secrets/{id}/payload"));
    assert_eq!(
        t.http
            .get(&payload)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Move the clock past the expiration; nothing was written to the log meanwhile.
    offset.store(61_000, Ordering::SeqCst);
    for url in [payload, t.url(&format!("/v1/secrets/{id}"))] {
        let r = t.http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            json_of(r).await["description"],
            format!("secret {id} expired at {}", expires.to_rfc3339())
        );
    }
    let list = json_of(t.get("/v1/secrets", &token).await).await;
    assert_eq!(list["total"], 0);
    t.stop().await;
}

/// What Barbican accepts and its clients send, keyledger accepts: empty names kept as
/// given, the times Python prints, an encoding without a payload, `limit=0`; and it
/// answers as Barbican does where its clients read the answer.
#[tokio::test]
async fn barbicans_edge_cases_are_answered_as_barbican_answers_them() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let post = |path: &str, body: Value| {
        let request = t.http.post(t.url(path)).bearer_auth(&token).json(&body);
        async move { request.send().await.unwrap() }
    };
    // An empty name is a name, and an encoding alone says nothing.
    let created = post(
        "/v1/secrets/",
        json!({"name": "", "payload_content_encoding": "base64"}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = id_of(&json_of(created).await);
    let shown = json_of(t.get(&format!("/v1/secrets/{id}"), &token).await).await;
    assert_eq!(shown["name"], "", "{shown}");
    // What python-barbicanclient sends for an expiration: str(datetime).
    let created = post(
        "/v1/secrets",
        json!({"name": "py", "expiration": "2099-12-02 18:34:28.475561-01"}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let py = id_of(&json_of(created).await);
    let shown = json_of(t.get(&format!("/v1/secrets/{py}"), &token).await).await;
    assert_eq!(shown["expiration"], "2099-12-02T19:34:28.475561");
    // limit=0 reads as 1 (python-barbicanclient counts secrets with it).
    let page = json_of(t.get("/v1/secrets?limit=0", &token).await).await;
    assert_eq!(page["secrets"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["total"], 2, "{page}");
    // A UUID no secret can have is an invalid id, in Barbican's words.
    let (status, text) = description(
        t.get("/v1/secrets/9999999f-ffff-ffff-9fff-f99f999ff9ff", &token)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.starts_with("Provided secret id is invalid."), "{text}");
    let (status, text) = description(
        t.get("/v1/secrets/9999999f-f99f-49f9-9fff-f99f999ff9ff", &token)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.starts_with("Secret not found"), "{text}");
    // A payload without a Content-Type is 415.
    let put = t
        .http
        .put(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Containers filter by name and type, and page with links.
    for (name, kind) in [("web", "generic"), ("db", "generic")] {
        let r = post("/v1/containers/", json!({"name": name, "type": kind})).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let listed = json_of(t.get("/v1/containers?type=generic&name=db", &token).await).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["containers"][0]["name"], "db", "{listed}");
    let first = json_of(t.get("/v1/containers?limit=1&type=generic", &token).await).await;
    assert_eq!(
        first["next"],
        t.url("/v1/containers?limit=1&offset=1&type=generic"),
        "{first}"
    );
    // Orders page with links too (gophercloud follows them).
    for _ in 0..2 {
        t.place(
            &token,
            json!({"type": "key", "meta": {"algorithm": "aes", "bit_length": 128}}),
        )
        .await;
    }
    let orders = json_of(t.get("/v1/orders?limit=1", &token).await).await;
    assert_eq!(orders["total"], 2, "{orders}");
    assert_eq!(
        orders["next"],
        t.url("/v1/orders?limit=1&offset=1"),
        "{orders}"
    );
    t.stop().await;
}

/// The OpenAPI document and the router agree: every operation the document names is
/// served (without a token: 401, or the answer for the public ones; AWS's `POST /`
/// without a target: its `UnknownOperationException`), and every other
/// method on its paths is 405 with `Allow`. (Routes come only from the handlers'
/// annotations; `api`'s unit test checks no route is added another way.)
#[tokio::test]
async fn every_operation_of_the_openapi_document_is_served_and_no_other() {
    let t = TestStack::start().await;
    let document = json_of(t.http.get(t.url("/v1/openapi.json")).send().await.unwrap()).await;
    assert_eq!(document["openapi"], "3.1.0", "{document}");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 29, "{}", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "8a5e3f4c-1b2d-4e6f-9a0b-1c2d3e4f5a6b")
            .replace("{version}", "current")
            .replace("{stage}", "current")
            .replace("{key}", "k");
        let public = item
            .as_object()
            .unwrap()
            .values()
            .all(|op| op.get("security").is_none());
        for method in ["get", "put", "post", "delete", "patch"] {
            let response = t
                .http
                .request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    t.url(&concrete),
                )
                .send()
                .await
                .unwrap();
            let status = response.status();
            let allow = response.headers().get("allow").cloned();
            if (method, path.as_str()) == ("post", "/") {
                // AWS's API: unsigned, AWS's own refusal (HTTP 400).
                let body = json_of(response).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
                assert_eq!(body["__type"], "UnknownOperationException", "{body}");
            } else if item.get(method).is_some() {
                let expected = if public {
                    status.is_success() || status.is_redirection()
                } else {
                    status == StatusCode::UNAUTHORIZED
                };
                assert!(expected, "{method} {path}: {status}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(allow.is_some(), "{method} {path}: no Allow header");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, paths.len() * 5);
    // Operation ids are unique, as OpenAPI requires (code generators name methods
    // after them).
    let ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op.get("operationId")?.as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    // A path the document does not have is Barbican's 404.
    let (status, text) = description(t.get("/v1/nowhere", "no token").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("no such resource"), "{text}");
    t.stop().await;
}
