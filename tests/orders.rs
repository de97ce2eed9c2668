//! Orders on the real stack: every type, every failure cause, the local CA checked by
//! `openssl`, and a worker killed mid-order that resumes with exactly one result.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use commands::order::worker::Retry;
use serde_json::json;

use crate::support::{TestStack, description, eventually, json_of, raw_command, ref_id};

const WAIT: Duration = Duration::from_secs(30);

impl TestStack {
    async fn payload_of(&self, token: &str, secret_ref: &str) -> Vec<u8> {
        let id = secret_ref.rsplit('/').next().unwrap();
        let r = self
            .http
            .get(self.url(&format!("/v1/secrets/{id}/payload")))
            .bearer_auth(token)
            .header("Accept", "application/octet-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }

    /// The payloads of a container's references, by name.
    async fn container_parts(&self, token: &str, container_ref: &str) -> Vec<(String, Vec<u8>)> {
        let id = container_ref.rsplit('/').next().unwrap();
        let c = json_of(self.get(&format!("/v1/containers/{id}"), token).await).await;
        let mut out = Vec::new();
        for r in c["secret_refs"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap().to_owned();
            out.push((
                name,
                self.payload_of(token, r["secret_ref"].as_str().unwrap())
                    .await,
            ));
        }
        out
    }
}

fn part<'a>(parts: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &parts.iter().find(|(n, _)| n == name).unwrap().1
}

/// Runs openssl with `args`, returning stdout; fails the test on a non-zero exit.
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn key_and_key_pair_orders_make_secrets_and_containers() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t
        .place(
            &token,
            json!({"type": "key", "meta": {"algorithm": "aes", "bit_length": 256, "name": "k",
                   "mode": "cbc", "payload_content_type": "text/plain"}}),
        )
        .await;
    // Placing answers once the order ran (bounded), as Barbican runs orders as they
    // are placed: its clients read the secret right after.
    let order = json_of(t.get(&format!("/v1/orders/{id}"), &token).await).await;
    assert_eq!(order["status"], "ACTIVE", "{order}");
    let secret_ref = order["secret_ref"].as_str().unwrap();
    assert_eq!(t.payload_of(&token, secret_ref).await.len(), 32);
    let secret = json_of(
        t.get(
            &format!("/v1/secrets/{}", secret_ref.rsplit('/').next().unwrap()),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(secret["secret_type"], "symmetric");
    assert_eq!(secret["creator_id"], "alice");
    // The order's mode is the key's, as in Barbican; key material is binary whatever
    // content type the order named.
    assert_eq!(secret["mode"], "cbc");
    assert_eq!(
        secret["content_types"]["default"],
        "application/octet-stream"
    );

    let dir = tempfile::tempdir().unwrap();
    for (algorithm, bits) in [("rsa", 2048), ("ec", 384)] {
        let id = t
            .place(
                &token,
                json!({"type": "asymmetric", "meta": {"algorithm": algorithm, "bit_length": bits}}),
            )
            .await;
        let order = t.settled(&token, &id).await;
        assert_eq!(order["status"], "ACTIVE", "{order}");
        let parts = t
            .container_parts(&token, order["container_ref"].as_str().unwrap())
            .await;
        let private = dir.path().join(format!("{algorithm}.key"));
        std::fs::write(&private, part(&parts, "private_key")).unwrap();
        // The public key is the private key's public half.
        let derived = openssl(&["pkey", "-in", private.to_str().unwrap(), "-pubout"]);
        assert_eq!(
            derived.trim(),
            String::from_utf8_lossy(part(&parts, "public_key")).trim()
        );
        let text = openssl(&["pkey", "-in", private.to_str().unwrap(), "-noout", "-text"]);
        assert!(text.contains(&format!("{bits} bit")), "{text}");
    }
    // Over NATS too.
    let nats = t.client_nats_as(&token).await;
    let reply = raw_command(
        &nats,
        "order.place",
        Some(&token),
        &json!({"type": "key", "meta": {"algorithm": "hmac", "bit_length": 512}}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    t.stop().await;
}

#[tokio::test]
async fn a_certificate_order_is_verified_by_openssl_and_passes_the_tls_check() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let id = t
        .place(
            &token,
            json!({"type": "certificate", "meta": {
                "subject_dn": "CN=web.example,O=Example,C=DE",
                "subject_alt_names": ["web.example", "www.web.example"],
                "validity_days": 90, "algorithm": "rsa", "bit_length": 2048, "name": "web"}}),
        )
        .await;
    let order = t.settled(&token, &id).await;
    assert_eq!(order["status"], "ACTIVE", "{order}");
    let container_ref = order["container_ref"].as_str().unwrap();
    let parts = t.container_parts(&token, container_ref).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let ca = t
        .http
        .get(t.url("/v1/cas/local"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ca.status(), 200);
    std::fs::write(path("ca.pem"), ca.bytes().await.unwrap()).unwrap();
    std::fs::write(path("cert.pem"), part(&parts, "certificate")).unwrap();
    std::fs::write(path("key.pem"), part(&parts, "private_key")).unwrap();
    assert_eq!(
        part(&parts, "intermediates"),
        std::fs::read(path("ca.pem")).unwrap()
    );
    // Issued by the CA, and for the key in the container.
    let verified = openssl(&["verify", "-CAfile", &path("ca.pem"), &path("cert.pem")]);
    assert!(verified.contains("OK"), "{verified}");
    let from_cert = openssl(&["x509", "-in", &path("cert.pem"), "-noout", "-pubkey"]);
    let from_key = openssl(&["pkey", "-in", &path("key.pem"), "-pubout"]);
    assert_eq!(from_cert, from_key);
    let text = openssl(&["x509", "-in", &path("cert.pem"), "-noout", "-text"]);
    assert!(
        text.contains("CN=web.example") || text.contains("CN = web.example"),
        "{text}"
    );
    assert!(text.contains("DNS:www.web.example"), "{text}");
    // keyledger's own TLS check agrees.
    let cid = container_ref.rsplit('/').next().unwrap();
    let check = json_of(
        t.get(&format!("/v1/containers/{cid}/tls-check"), &token)
            .await,
    )
    .await;
    assert_eq!(check["ok"], true, "{check}");
    // Listed only to those who ask for keyledger's own shape: Barbican's clients know
    // no certificate orders, and python-barbicanclient fails a listing holding one.
    let key_order = t
        .place(
            &token,
            json!({"type": "key", "meta": {"algorithm": "aes", "bit_length": 256}}),
        )
        .await;
    let barbican = json_of(t.get("/v1/orders", &token).await).await;
    let listed = |list: &serde_json::Value| -> Vec<String> {
        list["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| ref_id(o, "order_ref"))
            .collect()
    };
    assert_eq!(
        listed(&barbican),
        std::slice::from_ref(&key_order),
        "{barbican}"
    );
    assert_eq!(barbican["total"], 1, "{barbican}");
    let extended = t
        .http
        .get(t.url("/v1/orders"))
        .bearer_auth(&token)
        .header("X-Keyledger-Extended", "true")
        .send()
        .await
        .unwrap();
    let extended = json_of(extended).await;
    let mut all = listed(&extended);
    all.sort();
    let mut want = vec![id.clone(), key_order];
    want.sort();
    assert_eq!(all, want, "{extended}");
    t.stop().await;
}

#[tokio::test]
async fn each_failure_cause_makes_an_error_order_with_a_precise_reason() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let cases = [
        (
            json!({"type": "certificate", "meta": {"subject_dn": "CN=web.example,XX=1"}}),
            400,
            "subject_dn field XX is not supported; use CN, O, OU, L, ST, C",
        ),
        (
            json!({"type": "certificate", "meta": {"subject_dn": "CN=a,C=Germany"}}),
            400,
            "subject_dn field C must be a two-letter country code",
        ),
        (
            json!({"type": "certificate", "meta": {"subject_dn": "CN=a", "algorithm": "rsa", "bit_length": 1024}}),
            400,
            "the CA local cannot certify rsa 1024 is not supported; use rsa 2048, 3072 or 4096; ec 256 (P-256) or 384 (P-384)",
        ),
        (
            json!({"type": "asymmetric", "meta": {"algorithm": "dsa", "bit_length": 2048}}),
            400,
            "dsa 2048 is not supported",
        ),
        (
            json!({"type": "key", "meta": {"algorithm": "aes", "bit_length": 64}}),
            400,
            "aes 64 is not supported for key orders",
        ),
    ];
    for (body, code, reason) in cases {
        let id = t.place(&token, body.clone()).await;
        let order = t.settled(&token, &id).await;
        assert_eq!(order["status"], "ERROR", "{body}: {order}");
        // A string, as Barbican stores it (gophercloud decodes it as one).
        assert_eq!(order["error_status_code"], code.to_string(), "{order}");
        let got = order["error_reason"].as_str().unwrap();
        assert!(got.contains(reason), "{body}: {got}");
    }
    // A malformed order is refused at once, naming the field.
    let (status, message) = description(
        t.http
            .post(t.url("/v1/orders"))
            .bearer_auth(&token)
            .json(&json!({"type": "key", "meta": {"algorithm": "aes", "bits": 256}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message.contains("meta.bits is not a field of key orders"),
        "{message}"
    );
    // So is a key size that is no whole number of bytes, or a mode that is no string,
    // as Barbican refuses them; and a certificate name that is no DNS name.
    for (order_type, meta, says) in [
        (
            "key",
            json!({"algorithm": "aes", "bit_length": 129}),
            "not a whole number of bytes",
        ),
        (
            "key",
            json!({"algorithm": "aes", "bit_length": 32768}),
            "use at most 32767",
        ),
        (
            "key",
            json!({"algorithm": "aes", "bit_length": 99_999_999_999u64}),
            "a whole number from 0 to 4294967295",
        ),
        (
            "key",
            json!({"algorithm": "aes", "bit_length": 256, "mode": 123}),
            "meta.mode must be a string",
        ),
        (
            "certificate",
            json!({"subject_dn": "CN=x", "subject_alt_names": ["web.example", "a b"]}),
            "names \"a b\", which is not a DNS name",
        ),
    ] {
        let (status, message) = description(
            t.http
                .post(t.url("/v1/orders/"))
                .bearer_auth(&token)
                .json(&json!({"type": order_type, "meta": meta}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{meta}: {message}");
        assert!(message.contains(says), "{meta}: {message}");
    }
    t.stop().await;
}

#[tokio::test]
async fn an_unreachable_ca_is_retried_with_backoff_then_reported() {
    let t = TestStack::start_with(|c| {
        c.orders.ca_unreachable = true;
        c.orders.retry = Retry {
            attempts: 3,
            backoff: Duration::from_millis(20),
        };
    })
    .await;
    let token = t.token("alice", "p1");
    let id = t
        .place(
            &token,
            json!({"type": "certificate", "meta": {"subject_dn": "CN=web.example"}}),
        )
        .await;
    let order = t.settled(&token, &id).await;
    assert_eq!(order["status"], "ERROR");
    assert_eq!(order["error_status_code"], "503");
    let reason = order["error_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the CA local is unreachable or failing: connection refused")
            && reason.contains("tried 3 times over 60ms"),
        "{reason}"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_worker_killed_mid_order_resumes_with_exactly_one_result() {
    let crashed = Arc::new(AtomicBool::new(false));
    let hook_crashed = crashed.clone();
    let t = TestStack::start_with(move |c| {
        // The first time the private key has been stored, the worker "dies" there.
        c.orders.hook = Some(Arc::new(move |step: &str| {
            step != "secret:private_key" || hook_crashed.swap(true, Ordering::SeqCst)
        }));
    })
    .await;
    let token = t.token("alice", "p1");
    let id = t
        .place(
            &token,
            json!({"type": "asymmetric", "meta": {"algorithm": "ec", "bit_length": 256}}),
        )
        .await;
    eventually("the worker to die mid-order", WAIT, || async {
        crashed.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let order = json_of(t.get(&format!("/v1/orders/{id}"), &token).await).await;
    assert_eq!(order["status"], "PENDING");

    // A restart resumes the pending order.
    let t = t.restart(|| {}).await;
    let token = t.token("alice", "p1");
    let order = t.settled(&token, &id).await;
    assert_eq!(order["status"], "ACTIVE", "{order}");
    // Exactly one of each: two secrets, one container, each written once.
    let secrets = json_of(t.get("/v1/secrets", &token).await).await;
    assert_eq!(secrets["total"], 2, "{secrets}");
    let containers = json_of(t.get("/v1/containers", &token).await).await;
    assert_eq!(containers["total"], 1);
    for s in secrets["secrets"].as_array().unwrap() {
        let sid = s["secret_ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let creates = t
            .commits_of(sid)
            .await
            .iter()
            .filter(|c| c.body.command == "secret.create")
            .count();
        assert_eq!(creates, 1, "secret {sid}");
    }
    // And the stored key pair still belongs together.
    let parts = t
        .container_parts(&token, order["container_ref"].as_str().unwrap())
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    std::fs::write(&key, part(&parts, "private_key")).unwrap();
    let derived = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert_eq!(
        derived.trim(),
        String::from_utf8_lossy(part(&parts, "public_key")).trim()
    );
    t.stop().await;
}
