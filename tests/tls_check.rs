//! The TLS check on crafted certificate containers: each finding a load balancer would
//! otherwise fail on, and consumers registered with `"validate": "tls"`.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, date_time_ymd,
};
use serde_json::{Value, json};

use crate::support::{TestStack, description, json_of, ref_id};

/// A CA, an intermediate it signed, and what the tests need to issue leaves.
struct Pki {
    ca: Certificate,
    intermediate: Certificate,
    intermediate_key: KeyPair,
}

fn ca(name: &str, key: &KeyPair) -> Certificate {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.self_signed(key).unwrap()
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca("Test Root CA", &ca_key);
        let intermediate_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Test Intermediate CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let intermediate = params.signed_by(&intermediate_key, &ca, &ca_key).unwrap();
        Self {
            ca,
            intermediate,
            intermediate_key,
        }
    }

    /// A leaf for web.example valid from `from` to `to` (years), and its key.
    fn leaf(&self, from: i32, to: i32) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["web.example".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "web.example");
        params.not_before = date_time_ymd(from, 1, 1);
        params.not_after = date_time_ymd(to, 1, 1);
        let cert = params
            .signed_by(&key, &self.intermediate, &self.intermediate_key)
            .unwrap();
        (cert.pem(), key)
    }
}

impl TestStack {
    async fn pem_secret(&self, token: &str, name: &str, pem: &str) -> String {
        self.create_text(token, name, pem).await
    }

    /// A certificate container of the given parts; returns its id.
    async fn tls_container(
        &self,
        token: &str,
        certificate: &str,
        key: Option<&str>,
        intermediates: Option<&str>,
    ) -> String {
        let mut refs = vec![json!({"name": "certificate",
            "secret_ref": self.pem_secret(token, "cert", certificate).await})];
        if let Some(key) = key {
            refs.push(json!({"name": "private_key",
                "secret_ref": self.pem_secret(token, "key", key).await}));
        }
        if let Some(chain) = intermediates {
            refs.push(json!({"name": "intermediates",
                "secret_ref": self.pem_secret(token, "chain", chain).await}));
        }
        let created = self
            .http
            .post(self.url("/v1/containers"))
            .bearer_auth(token)
            .json(&json!({"type": "certificate", "secret_refs": refs}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        ref_id(&json_of(created).await, "container_ref")
    }

    async fn findings(&self, token: &str, id: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/v1/containers/{id}/tls-check"), token)
            .await;
        assert_eq!(r.status(), 200);
        json_of(r).await["findings"].as_array().unwrap().clone()
    }
}

fn codes(findings: &[Value]) -> Vec<&str> {
    findings
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn each_tls_finding_comes_from_a_crafted_container() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let pki = Pki::new();
    let chain = pki.intermediate.pem();
    let (good, key) = pki.leaf(2020, 2090);
    let key = key.serialize_pem();

    let ok = t
        .tls_container(&token, &good, Some(&key), Some(&chain))
        .await;
    assert_eq!(t.findings(&token, &ok).await, Vec::<Value>::new());

    let no_key = t.tls_container(&token, &good, None, Some(&chain)).await;
    assert_eq!(
        codes(&t.findings(&token, &no_key).await),
        ["private_key_missing"]
    );

    let (expired, expired_key) = pki.leaf(2020, 2021);
    let id = t
        .tls_container(
            &token,
            &expired,
            Some(&expired_key.serialize_pem()),
            Some(&chain),
        )
        .await;
    let f = t.findings(&token, &id).await;
    assert_eq!(codes(&f), ["certificate_expired"]);
    assert_eq!(
        f[0]["message"],
        "the certificate expired on 2021-01-01T00:00:00Z"
    );

    let (future, future_key) = pki.leaf(2080, 2090);
    let id = t
        .tls_container(
            &token,
            &future,
            Some(&future_key.serialize_pem()),
            Some(&chain),
        )
        .await;
    assert_eq!(
        codes(&t.findings(&token, &id).await),
        ["certificate_not_yet_valid"]
    );

    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let id = t
        .tls_container(&token, &good, Some(&other_key), Some(&chain))
        .await;
    let f = t.findings(&token, &id).await;
    assert_eq!(codes(&f), ["key_mismatch"]);
    assert!(
        f[0]["fix"]
            .as_str()
            .unwrap()
            .contains("private key the certificate was issued for")
    );

    let id = t.tls_container(&token, &good, Some(&key), None).await;
    let f = t.findings(&token, &id).await;
    assert_eq!(codes(&f), ["intermediates_missing"]);
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("Test Intermediate CA"),
        "{f:?}"
    );

    let stranger = ca("Unrelated CA", &KeyPair::generate().unwrap()).pem();
    let id = t
        .tls_container(&token, &good, Some(&key), Some(&stranger))
        .await;
    assert_eq!(
        codes(&t.findings(&token, &id).await),
        ["intermediates_not_chaining"]
    );

    // An intermediate with the right name but the wrong key does not chain either.
    let impostor = ca("Test Intermediate CA", &KeyPair::generate().unwrap()).pem();
    let id = t
        .tls_container(&token, &good, Some(&key), Some(&impostor))
        .await;
    let f = t.findings(&token, &id).await;
    assert_eq!(codes(&f), ["intermediates_not_chaining"]);
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("did not sign it"),
        "{f:?}"
    );
    let _ = &pki.ca;
    t.stop().await;
}

#[tokio::test]
async fn a_consumer_that_asks_for_tls_validation_waits_for_a_clean_check() {
    let t = TestStack::start().await;
    let token = t.token("alice", "p1");
    let pki = Pki::new();
    let (good, key) = pki.leaf(2020, 2090);
    let bad = t.tls_container(&token, &good, None, None).await;
    let register = |id: &str| {
        t.http
            .post(t.url(&format!("/v1/containers/{id}/consumers")))
            .bearer_auth(&token)
            .json(&json!({"name": "lb", "URL": "https://lb.example/1", "validate": "tls"}))
            .send()
    };
    let (status, message) = description(register(&bad).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("fails the TLS check, so it is not registered for lb")
            && message.contains("no private_key reference"),
        "{message}"
    );
    let good = t
        .tls_container(
            &token,
            &good,
            Some(&key.serialize_pem()),
            Some(&pki.intermediate.pem()),
        )
        .await;
    assert_eq!(register(&good).await.unwrap().status(), 200);

    // The CLI says the same, and fails while findings stand.
    let check = |id: String| {
        let args = [
            "container".to_owned(),
            "check".to_owned(),
            id,
            "--url".to_owned(),
            t.url(""),
            "--token".to_owned(),
            token.clone(),
        ];
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_keyledger"))
                .args(args)
                .env_remove("KEYLEDGER_TOKEN")
                .output()
                .unwrap()
        })
    };
    let out = check(bad).await.unwrap();
    assert!(!out.status.success());
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.starts_with("private_key_missing: the container has no private_key reference")
            && shown.contains("fix: create a certificate container that references"),
        "{shown}"
    );
    let out = check(good).await.unwrap();
    assert!(out.status.success());
    t.stop().await;
}
