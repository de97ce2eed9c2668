//! Tokens from an identity provider, end to end: a stack that trusts an EdDSA and an
//! RS256 key (PEM files, with key ids) and refuses development tokens. Each negative
//! case gets 401 over HTTP and `unauthorized` over NATS, with a message that says why
//! and what to do.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use domain::ErrorCode;
use domain::subject::command;
use infra::client::CommandClient;
use infra::identity::TrustConfig;
use infra::protocol::CreateSecretRequest;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyledger::stack::IdentitySettings;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestStack, description, json_of};

const ISSUER: &str = "https://idp.test";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/idp")
        .join(name)
}

fn key(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(iss: &str, aud: &str, exp: i64) -> Value {
    json!({
        "sub": "svc-orders", "project": "p1", "roles": ["member"], "service": "orders",
        "iss": iss, "aud": aud, "exp": exp,
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test]
async fn identity_provider_tokens_and_every_refusal() {
    let t = TestStack::start_with(|c| {
        c.identity = IdentitySettings {
            trust: TrustConfig {
                issuer: Some(ISSUER.into()),
                audience: "keyledger".into(),
                jwks_file: None,
                public_keys: vec![
                    (Some("ed-1".into()), fixture("ed25519.pub.pem")),
                    (Some("rsa-1".into()), fixture("rsa.pub.pem")),
                ],
            },
            dev_tokens: None,
        };
    })
    .await;
    let ed = EncodingKey::from_ed_pem(&key("ed25519.pem")).unwrap();
    let rsa = EncodingKey::from_rsa_pem(&key("rsa.pem")).unwrap();
    let good = claims(ISSUER, "keyledger", now() + 300);

    // Both algorithms are accepted, and the service claim comes through.
    for token in [
        sign(Algorithm::EdDSA, Some("ed-1"), &ed, &good),
        sign(Algorithm::RS256, Some("rsa-1"), &rsa, &good),
    ] {
        let me = json_of(t.get("/v1/whoami", &token).await).await;
        assert_eq!(me["user_id"], "svc-orders");
        assert_eq!(me["service"], "orders");
        assert_eq!(me["effective_roles"], json!(["member"]));
    }

    let expired_at = now() - 10;
    let expired_text = domain::timestamp::Timestamp::from_unix_millis(expired_at * 1000)
        .unwrap()
        .to_rfc3339();
    let parts: Vec<String> = sign(Algorithm::RS256, Some("rsa-1"), &rsa, &good)
        .split('.')
        .map(str::to_owned)
        .collect();
    let mut admin = good.clone();
    admin["roles"] = json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&admin).unwrap()),
        parts[2]
    );
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64URL.encode(serde_json::to_vec(&good).unwrap())
    );
    let cases: Vec<(&str, String, String)> = vec![
        (
            "expired",
            sign(
                Algorithm::EdDSA,
                Some("ed-1"),
                &ed,
                &claims(ISSUER, "keyledger", expired_at),
            ),
            format!(
                "token expired at {expired_text}; request a new one (get one from your \
                 identity provider)"
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::EdDSA,
                Some("ed-1"),
                &ed,
                &claims("https://other", "keyledger", now() + 300),
            ),
            "token rejected: its issuer is not trusted (expected https://idp.test)".into(),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::EdDSA,
                Some("ed-1"),
                &ed,
                &claims(ISSUER, "vault", now() + 300),
            ),
            "token rejected: its audience is not keyledger".into(),
        ),
        (
            "unknown key id",
            sign(Algorithm::EdDSA, Some("ed-2"), &ed, &good),
            "token rejected: its key id \"ed-2\" is not among the trusted keys".into(),
        ),
        (
            "tampered",
            tampered,
            "token rejected: its signature does not verify".into(),
        ),
        (
            "alg none",
            unsigned,
            "token rejected: it is unsigned (alg none), and unsigned tokens are never accepted"
                .into(),
        ),
        (
            "algorithm confusion",
            sign(
                Algorithm::HS256,
                Some("rsa-1"),
                &EncodingKey::from_secret(&key("rsa.pub.pem")),
                &good,
            ),
            "token rejected: it is a development token (HS256), and this keyledger does not \
             accept development tokens"
                .into(),
        ),
        (
            "development token",
            t.token("alice", "p1"),
            "token rejected: it is a development token (HS256)".into(),
        ),
    ];

    // The NATS connection itself is admitted by an identity provider's token: with
    // development tokens off, the auth callout refuses a development one.
    let admitted = sign(Algorithm::EdDSA, Some("ed-1"), &ed, &good);
    let refused =
        infra::nats::connect_as_client(&t.stack.client_url, "test-client", &t.token("alice", "p1"))
            .await;
    assert!(
        refused.is_err(),
        "a development token admitted a connection"
    );
    let nats = CommandClient::new(t.client_nats_as(&admitted).await, Duration::from_secs(10));
    for (name, token, expected) in cases {
        let (status, description) = description(t.get("/v1/secrets", &token).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            description.starts_with(&expected),
            "{name} over HTTP: {description}\n  expected: {expected}"
        );
        let rejection = nats
            .send(
                command::SECRET_CREATE,
                &token,
                &CreateSecretRequest::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(rejection.code, ErrorCode::Unauthorized, "{name}");
        assert!(
            rejection.message.starts_with(&expected),
            "{name} over NATS: {}",
            rejection.message
        );
    }
    t.stop().await;
}
