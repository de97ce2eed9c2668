//! No plaintext payload in the log, the key store, the read model or the logs: canary
//! payloads go in through every path, come back out, one is deleted, and then every
//! byte under the data directory and everything keyledger and nats-server printed
//! is searched for them, raw, hex and base64. keyledger runs at its most verbose
//! (`-vv` and `RUST_LOG=trace`), and its logs are also searched for the bearer token,
//! every password and key in the data directory, and a command body.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::support::{contains, files_under, id_of, needles, raw_command};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_canary_reaches_disk_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Command::new(KEYLEDGER)
        .args([
            "up",
            "-vv",
            "--nats-port",
            "0",
            "--http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Read what `up` prints: where everything is, and (its output being no terminal)
    // how to issue a development token, not one.
    let mut stdout = BufReader::new(up.stdout.take().unwrap());
    let mut printed = String::new();
    let (mut http, mut nats, mut metrics) = (String::new(), String::new(), String::new());
    while !printed.contains("Stop with Ctrl-C") {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "keyledger up exited early: {printed}"
        );
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["HTTP", "API", url, ..] => http = url.to_string(),
            ["NATS", url, ..] => nats = url.to_string(),
            ["metrics", url, ..] => metrics = url.to_string(),
            _ => {}
        }
        printed.push_str(&line);
    }
    assert!(
        printed.contains("KEYLEDGER_TOKEN=$(keyledger token issue --data-dir")
            && !printed.contains("=eyJ"),
        "{printed}"
    );
    let issued = Command::new(KEYLEDGER)
        .args([
            "token",
            "issue",
            "--user",
            "dev",
            "--project",
            "dev",
            "--roles",
            "admin",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(issued.status.success(), "{issued:?}");
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let mut stderr = up.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        stderr.read_to_end(&mut text).unwrap();
        text
    });

    let canaries: Vec<String> = (0..4)
        .map(|i| format!("CANARY{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect();
    let http_client = crate::support::http();
    let mut ids = Vec::new();

    // 1. Created over HTTP as text.
    let r = http_client
        .post(format!("{http}/v1/secrets"))
        .bearer_auth(&token)
        .json(&json!({"name": "canary-name-http", "payload": canaries[0], "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    ids.push(id_of(&r.json().await.unwrap()));

    // 2. Created over NATS as base64 octets.
    let client = infra::nats::connect_as_client(&nats, "canary", &token)
        .await
        .unwrap();
    let reply = raw_command(
        &client,
        "secret.create",
        Some(&token),
        &json!({"name": "canary-name-nats", "payload": STANDARD.encode(&canaries[1]), "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    ids.push(reply["id"].as_str().unwrap().to_owned());

    // 3. Two-step: created empty, payload PUT as raw octets.
    let r = http_client
        .post(format!("{http}/v1/secrets"))
        .bearer_auth(&token)
        .json(&json!({"name": "canary-name-put"}))
        .send()
        .await
        .unwrap();
    let id = id_of(&r.json().await.unwrap());
    let r = http_client
        .put(format!("{http}/v1/secrets/{id}"))
        .bearer_auth(&token)
        .header("Content-Type", "application/octet-stream")
        .body(canaries[2].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    ids.push(id);

    // 4. Created with the CLI from a file, then deleted (its key is destroyed).
    let file = dir.path().join("payload.txt");
    std::fs::write(&file, &canaries[3]).unwrap();
    let out = Command::new(KEYLEDGER)
        .args([
            "secret",
            "create",
            "--url",
            &http,
            "--token",
            &token,
            "--name",
            "canary-name-cli",
            "--payload-file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).unwrap();
    ids.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());

    // 5. An access key generated over HTTP: its secret access key is a canary too.
    let mut canaries = canaries;
    let r = http_client
        .post(format!("{http}/v1/access-keys"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let generated: serde_json::Value = r.json().await.unwrap();
    let generated_id = generated["access_key_id"].as_str().unwrap().to_owned();
    canaries.push(generated["secret_access_key"].as_str().unwrap().to_owned());

    // 6. An access key imported over NATS, with a canary as its secret.
    let imported = format!("CANARY-KEY-{}", uuid::Uuid::new_v4().simple());
    let reply = raw_command(
        &client,
        "access_key.create",
        Some(&token),
        &json!({"access_key_id": "AKLGCANARY0000000001", "secret_access_key": imported, "user": "dev", "roles": ["admin"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    canaries.push(imported);

    // The generated key is revoked (its data key is destroyed).
    let r = http_client
        .delete(format!("{http}/v1/access-keys/{generated_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Every payload reads back intact (so the reads are exercised and logged too).
    for (id, canary) in ids.iter().zip(&canaries) {
        let body = http_client
            .get(format!("{http}/v1/secrets/{id}/payload"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.as_ref(), canary.as_bytes());
    }
    let r = http_client
        .delete(format!("{http}/v1/secrets/{}", ids[3]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // What Prometheus would scrape, searched with the rest.
    let scraped = http_client
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert!(
        contains(&scraped, b"keyledger_commands_total"),
        "scraped {metrics}"
    );

    // Stop keyledger (and its nats-server) so every file is flushed.
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    let status = tokio::task::spawn_blocking(move || up.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "keyledger up exits cleanly on SIGINT");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    printed.push_str(&rest);
    let logs = log_reader.join().unwrap();
    assert!(
        contains(&logs, b"accepted"),
        "the logs were captured at debug level"
    );

    let mut searched = vec![
        ("keyledger stdout".to_owned(), printed.into_bytes()),
        ("keyledger stderr".to_owned(), logs),
        ("/metrics".to_owned(), scraped),
    ];
    for path in files_under(&data) {
        searched.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    let mut leaks = Vec::new();
    for canary in &canaries {
        for needle in needles(canary.as_bytes()) {
            for (name, bytes) in &searched {
                if contains(bytes, &needle) {
                    leaks.push(format!(
                        "{} found in {name}",
                        String::from_utf8_lossy(&needle)
                    ));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "plaintext leaked:\n{}", leaks.join("\n"));

    // No log line, at any level, holds a token, a password, a key or a command body.
    // (`up` prints a development token on a terminal on purpose; the logs never do.)
    let logs: Vec<&(String, Vec<u8>)> = searched
        .iter()
        .filter(|(name, _)| {
            name == "keyledger stderr" || name == "/metrics" || name.ends_with("nats-server.log")
        })
        .collect();
    assert_eq!(
        logs.len(),
        3,
        "keyledger's and nats-server's logs, and /metrics, searched"
    );
    let mut secrets = vec![
        ("the bearer token".to_owned(), token.clone().into_bytes()),
        (
            "a command body".to_owned(),
            b"payload_content_encoding".to_vec(),
        ),
    ];
    for file in [
        "kek.key",
        "commit.key",
        "checkpoint.key",
        "token-hs256.key",
        "nats-service.key",
        "nats-auditor.key",
        "nats-auth.key",
        "nats-callout.key",
        "nats-rotation.key",
        "nats-intake.key",
    ] {
        let text = std::fs::read_to_string(data.join(file)).unwrap();
        secrets.push((file.to_owned(), text.trim().as_bytes().to_vec()));
    }
    let leaked: Vec<String> = secrets
        .iter()
        .flat_map(|(what, secret)| {
            logs.iter()
                .filter(|(_, bytes)| contains(bytes, secret))
                .map(move |(name, _)| format!("{what} found in {name}"))
        })
        .collect();
    assert!(leaked.is_empty(), "secrets in logs:\n{}", leaked.join("\n"));

    // Only the owner may look into the data directory, or read the server's log (it
    // names the users of refused connections).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("nats")), 0o700);
    assert_eq!(mode(&data.join("nats/nats-server.log")), 0o600);

    // The search looked at the right files: the (non-secret) names are there, in the
    // stream's files and in the read model.
    let holding = |needle: &str| -> Vec<&str> {
        searched
            .iter()
            .filter(|(_, b)| contains(b, needle.as_bytes()))
            .map(|(n, _)| n.as_str())
            .collect()
    };
    let with_names = holding("canary-name-nats");
    assert!(
        with_names.iter().any(|n| n.contains("/jetstream/")),
        "stream files searched: {with_names:?}"
    );
    assert!(
        with_names.iter().any(|n| n.contains("readmodel.sqlite")),
        "read model searched: {with_names:?}"
    );
    assert!(
        files_under(&data)
            .iter()
            .any(|p| p.to_string_lossy().contains("KV_KEYLEDGER_KEYS")),
        "key store files searched"
    );
}
