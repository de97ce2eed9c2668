//! schemathesis fuzzes the HTTP API from its own OpenAPI document, against a real
//! `keyledger up`, with every check on (no 5xx, responses as documented, valid
//! requests accepted and invalid ones refused) and a valid token. Another project's
//! data is set up first and must look the same afterwards, and its part of the log
//! must be unchanged: nothing the fuzzer sends reaches it.
//!
//! The example count per operation is `KEYLEDGER_FUZZ_EXAMPLES` (default 25, a
//! minute or two on 2 cores) and the seed `KEYLEDGER_FUZZ_SEED` (default fixed, so a
//! CI run explores the same requests every time and a red run is a change's doing);
//! `scripts/fuzz-api` runs the same with more examples and a fresh seed.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::clients::{clients_dir, venv_program};
use crate::support::up::Up;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_and_another_project_is_untouched() {
    let up = Up::spawn(|_| {}).await;
    let api = Api {
        http: crate::support::http(),
        base: up.http.clone(),
    };
    let fuzzer = up.token("fuzzer", "fuzz", "admin");
    let bystander = up.token("bob", "bystander", "admin");

    let theirs = api.fixtures(&bystander, "theirs").await;
    let before = api.view(&bystander, &theirs).await;
    let ours = api.fixtures(&fuzzer, "ours").await;

    let examples = std::env::var("KEYLEDGER_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let seed = std::env::var("KEYLEDGER_FUZZ_SEED").unwrap_or_else(|_| "20261201".into());
    let reports = tempfile::tempdir().unwrap();
    let (json_report, har) = (
        reports.path().join("run.json"),
        reports.path().join("requests.har"),
    );
    let mut command = Command::new(venv_program("schemathesis"));
    command
        .arg("--config-file")
        .arg(clients_dir().join("schemathesis.toml"))
        .args(["run", &format!("{}/v1/openapi.json", up.http)])
        .args([
            "--checks",
            "all",
            "--workers",
            "1",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
        ])
        .args(["-H", &format!("Authorization: Bearer {fuzzer}")])
        .args(["--report", "json,har", "--report-json-path"])
        .arg(&json_report)
        .arg("--report-har-path")
        .arg(&har)
        .env("KEYLEDGER_FUZZ_SECRET", &ours.secret)
        .env("KEYLEDGER_FUZZ_CONTAINER", &ours.container)
        .env("KEYLEDGER_FUZZ_ORDER", &ours.order)
        .env("NO_COLOR", "1")
        // Its cache (.schemathesis/) goes with the reports, not into the checkout.
        .current_dir(reports.path());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json_report).unwrap()).unwrap();
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["failures"], json!([]), "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(
        report["operations"]["tested"], report["operations"]["total"],
        "every operation is fuzzed: {report}"
    );
    let requests =
        serde_json::from_slice::<Value>(&std::fs::read(&har).unwrap()).unwrap()["log"]["entries"]
            .as_array()
            .map_or(0, Vec::len);
    println!(
        "schemathesis: {requests} requests, {} test cases, {examples} examples per \
         operation, seed {seed}",
        report["test_cases"]["generated"]
    );
    assert!(requests > 1000, "only {requests} requests were sent");

    // The other project: what it sees and its part of the log are unchanged, and its
    // payload still opens to the same bytes.
    assert_eq!(api.view(&bystander, &theirs).await, before);
    let payload = api
        .get(
            &bystander,
            &format!("/v1/secrets/{}/payload", theirs.secret),
        )
        .await;
    assert_eq!(payload.0, StatusCode::OK);
    assert_eq!(payload.1, "their payload");
}

/// Objects a project has: a secret with a payload, an ACL and a consumer, a
/// container holding it, and an order that ran.
struct Fixtures {
    secret: String,
    container: String,
    order: String,
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(&self, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-Auth-Token", token)
            .header("OpenStack-API-Version", "key-manager 1.1")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-Auth-Token", token)
            .header("OpenStack-API-Version", "key-manager 1.1")
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn fixtures(&self, token: &str, name: &str) -> Fixtures {
        use reqwest::Method;
        let last = |url: &Value| url.as_str().unwrap().rsplit('/').next().unwrap().to_owned();
        let created = self
            .send(
                token,
                Method::POST,
                "/v1/secrets",
                json!({"name": name, "payload": format!("{} payload", if name == "theirs" { "their" } else { "our" }),
                       "payload_content_type": "text/plain"}),
            )
            .await;
        let secret = last(&created["secret_ref"]);
        self.send(
            token,
            Method::PUT,
            &format!("/v1/secrets/{secret}/acl"),
            json!({"read": {"users": ["carol"], "project-access": true}}),
        )
        .await;
        self.send(
            token,
            Method::POST,
            &format!("/v1/secrets/{secret}/consumers"),
            json!({"service": "image", "resource_type": "image", "resource_id": name}),
        )
        .await;
        self.send(
            token,
            Method::PUT,
            &format!("/v1/secrets/{secret}/metadata"),
            json!({"metadata": {"owner": name}}),
        )
        .await;
        let container = last(
            &self
                .send(
                    token,
                    Method::POST,
                    "/v1/containers",
                    json!({"type": "generic", "name": name, "secret_refs": [
                        {"name": "a", "secret_ref": created["secret_ref"]}]}),
                )
                .await["container_ref"],
        );
        let order = last(
            &self
                .send(
                    token,
                    Method::POST,
                    "/v1/orders",
                    json!({"type": "key", "meta": {"algorithm": "aes", "bit_length": 256}}),
                )
                .await["order_ref"],
        );
        Fixtures {
            secret,
            container,
            order,
        }
    }

    /// What a project sees of its objects, and its part of the log.
    async fn view(&self, token: &str, fixtures: &Fixtures) -> Vec<(String, StatusCode, String)> {
        let secret = &fixtures.secret;
        let mut view = Vec::new();
        for path in [
            "/v1/secrets".to_owned(),
            "/v1/containers".to_owned(),
            "/v1/orders".to_owned(),
            format!("/v1/secrets/{secret}"),
            format!("/v1/secrets/{secret}/acl"),
            format!("/v1/secrets/{secret}/consumers"),
            format!("/v1/secrets/{secret}/metadata"),
            format!("/v1/secrets/{secret}/versions"),
            format!("/v1/containers/{}", fixtures.container),
            format!("/v1/containers/{}/acl", fixtures.container),
            format!("/v1/orders/{}", fixtures.order),
            "/v1/audit/events?limit=1000".to_owned(),
        ] {
            let (status, body) = self.get(token, &path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            view.push((path, status, body));
        }
        view
    }
}
