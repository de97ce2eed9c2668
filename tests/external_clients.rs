//! A NATS client in another language (nats-py), running the README's example script.

use std::process::Command;

use serde_json::Value;

use crate::support::TestStack;

#[tokio::test]
async fn the_python_example_creates_a_secret_that_http_reads() {
    let t = TestStack::start().await;
    let token = t.token("py", "p1");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/nats_create.py");
    let output = tokio::task::spawn_blocking({
        let (server, token) = (t.stack.client_url.clone(), token.clone());
        move || {
            Command::new("python3")
                .args([
                    script,
                    "--server",
                    &server,
                    "--token",
                    &token,
                    "--name",
                    "from-python",
                    "--payload",
                    "py-payload",
                    "--command-id",
                    "py-1",
                ])
                .output()
                .expect("python3 runs (scripts/test installs nats-py)")
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the example failed (is nats-py installed? scripts/test installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reply["ok"], true);
    let id = reply["id"].as_str().unwrap();
    let payload = t
        .http
        .get(t.url(&format!("/v1/secrets/{id}/payload")))
        .bearer_auth(&token)
        .header("X-Keyledger-Min-Seq", reply["seq"].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(payload.text().await.unwrap(), "py-payload");
    t.stop().await;
}
