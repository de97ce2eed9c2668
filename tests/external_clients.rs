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

/// The next line `lines` brings, within 20 s.
fn line_within(lines: &std::sync::mpsc::Receiver<String>) -> Value {
    let line = lines
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the example printed a line within 20 s");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn the_cache_example_refreshes_the_moment_a_secret_changes_and_lets_go_when_it_is_gone() {
    use std::io::BufRead as _;
    let t = TestStack::start().await;
    let token = t.token("cache", "p1");
    let id = t.create_text(&token, "db-password", "first").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cached_secret.py");
    let mut child = Command::new("python3")
        .args([
            script,
            "--url",
            &t.url(""),
            "--token",
            &token,
            "--secret",
            &id,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    // Killed if the test fails before the example ends (it would reconnect forever).
    struct Reaped(Option<std::process::Child>);
    impl Drop for Reaped {
        fn drop(&mut self) {
            if let Some(mut child) = self.0.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut child = Reaped(Some(child));
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The stack runs on this test's thread: lines are waited for on another.
    let (cached, lines) = tokio::task::spawn_blocking(move || (line_within(&lines), lines))
        .await
        .unwrap();
    assert_eq!(cached["sha256"], sha256_hex(b"first"), "{cached}");

    // A new version: the cache holds it as soon as the example hears of it.
    let stored = t
        .http
        .post(t.url(&format!("/v1/secrets/{id}/versions")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"payload": "second", "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 201);
    let refreshed = tokio::task::spawn_blocking(move || (line_within(&lines), lines))
        .await
        .unwrap();
    let (refreshed, lines) = refreshed;
    assert_eq!(refreshed["sha256"], sha256_hex(b"second"), "{refreshed}");
    assert_eq!(refreshed["version"], 2, "{refreshed}");

    // Deleted: it lets go of the payload and stops.
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = tokio::task::spawn_blocking(move || line_within(&lines))
        .await
        .unwrap();
    assert_eq!(
        gone["gone"],
        serde_json::json!(["secret.deleted"]),
        "{gone}"
    );
    let mut example = child.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || example.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
