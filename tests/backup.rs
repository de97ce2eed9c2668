//! Backup and restore (issue 19): `keyledger backup` while writes go on, `keyledger
//! restore` into a fresh data directory with the key files copied over, and keyledger
//! on it. Every payload acknowledged before the backup began reads back byte-exact; a
//! secret shredded before it stays unreadable; every secret the restored read model
//! lists opens; the restored log verifies against the checkpoint key; and the read
//! model rebuilt from it lists what the original listed at the backup.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestStack, args, audit, config, json_of};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

/// The names of every secret `token` lists.
async fn names(t: &TestStack, token: &str) -> BTreeSet<String> {
    let listed = json_of(t.get("/v1/secrets?limit=1000", token).await).await;
    listed["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn payload(t: &TestStack, token: &str, id: &str) -> (StatusCode, String) {
    let r = t.get(&format!("/v1/secrets/{id}/payload"), token).await;
    (r.status(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_on_a_fresh_data_directory() {
    let t = TestStack::start().await;
    let alice = t.token("alice", "p1");
    let mut before = Vec::new();
    for i in 0..12 {
        let value = format!("backup-canary-{i}-{}", uuid::Uuid::new_v4());
        let id = t.create_text(&alice, &format!("kept-{i}"), &value).await;
        before.push((id, value));
    }
    let shredded = t.create_text(&alice, "shredded", "shredded-canary").await;
    let deleted = t
        .http
        .delete(t.url(&format!("/v1/secrets/{shredded}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let listed_before = names(&t, &alice).await;

    // Writes go on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (http, url, token, stop) = (
            t.http.clone(),
            t.url("/v1/secrets"),
            alice.clone(),
            stop.clone(),
        );
        async move {
            let mut acknowledged = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"name": format!("during-{acknowledged}"),
                        "payload": "written-during-the-backup", "payload_content_type": "text/plain"}))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == StatusCode::CREATED) {
                    acknowledged += 1;
                }
            }
            acknowledged
        }
    });
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("keyledger.backup");
    let backup = tokio::task::spawn_blocking({
        let (url, file) = (t.stack.service_url.clone(), file.clone());
        move || {
            Command::new(KEYLEDGER)
                .args(["backup", "--nats-url", &url, "--out"])
                .arg(&file)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let during = load.await.unwrap();
    assert!(backup.status.success(), "{backup:?}");
    assert!(during > 0, "writes went on during the backup");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the backup is private");
    let text = std::fs::read_to_string(&file).unwrap();
    // Every message's bytes, decoded: none holds a plaintext payload.
    let messages: Vec<(String, Vec<u8>)> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["kind"] == "message")
        .map(|l| {
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD
                .decode(l["data"].as_str().unwrap())
                .unwrap();
            (l["subject"].as_str().unwrap().to_owned(), data)
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|(s, _)| s.starts_with("$KV.KEYLEDGER_KEYS."))
    );
    for (_, value) in &before {
        for (subject, data) in &messages {
            assert!(
                !crate::support::contains(data, value.as_bytes()),
                "a plaintext payload in {subject}"
            );
        }
    }
    // The secret shredded before the backup has no data key in it.
    let shredded_keys = format!("$KV.KEYLEDGER_KEYS.p1.{shredded}.");
    assert!(
        !messages.iter().any(|(s, _)| s.starts_with(&shredded_keys)),
        "a shredded secret's data key is in the backup"
    );
    assert!(
        messages
            .iter()
            .any(|(s, _)| s.starts_with(&format!("$KV.KEYLEDGER_KEYS.p1.{}.", before[0].0))),
        "a kept secret's data key is in the backup (so the search above bites)"
    );
    // A backup is never overwritten.
    let again = Command::new(KEYLEDGER)
        .args(["backup", "--nats-url", &t.stack.service_url, "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!again.status.success());

    // A cut-short file is refused before anything is restored.
    let fresh = tempfile::tempdir().unwrap();
    let cut = work.path().join("cut.backup");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let refused = restore(fresh.path(), &cut);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cut short")
            || String::from_utf8_lossy(&refused.stderr).contains("not a backup line"),
        "{refused:?}"
    );

    // A commit missing from the middle (the end line's count fixed to match) is found
    // before anything is restored, not half-way through.
    let gap = work.path().join("gap.backup");
    let mut dropped = None;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| {
            let seq2 = l.contains(r#""stream":"KEYLEDGER","seq":2,"#);
            if seq2 {
                dropped = Some(());
            }
            !seq2
        })
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(mut end) if end["kind"] == "end" => {
                let n = end["counts"]["KEYLEDGER"].as_u64().unwrap();
                end["counts"]["KEYLEDGER"] = (n - 1).into();
                end.to_string()
            }
            _ => l.to_owned(),
        })
        .collect();
    assert!(dropped.is_some(), "the backup holds commit 2");
    std::fs::write(&gap, lines.join("\n") + "\n").unwrap();
    let refused = restore(&fresh.path().join("gap"), &gap);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("sequence 3 of KEYLEDGER follows 1: messages are missing"),
        "{stderr}"
    );
    assert!(!fresh.path().join("gap").exists(), "nothing is written");

    // A backup is input like any other: a line onto JetStream's API, or for a stream
    // keyledger does not have, is refused before anything is written; so is a pipe
    // (a restore reads its file twice).
    let hostile = |line: &str, name: &str| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(1, line);
        let path = work.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    for (line, what) in [
        (
            r#"{"kind":"message","stream":"KEYLEDGER","seq":999999,"subject":"$JS.API.STREAM.CREATE.EVIL","data":"e30="}"#,
            "is not one of stream KEYLEDGER's",
        ),
        (
            r#"{"kind":"message","stream":"EVIL","seq":1,"subject":"keyledger.events.p1.secret.x","data":"e30="}"#,
            "is not one of keyledger's",
        ),
    ] {
        let target = work.path().join("hostile-target");
        let out = restore(&target, &hostile(line, "hostile.backup"));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(what), "{stderr}");
        assert!(!target.exists(), "nothing is written for a refused backup");
    }
    let mut child = Command::new(KEYLEDGER)
        .args(["restore", "--data-dir"])
        .arg(work.path().join("piped"))
        .args(["--from", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = std::thread::spawn({
        let text = text.clone();
        move || {
            use std::io::Write as _;
            // Refused unread: a broken pipe is expected.
            let _ = stdin.write_all(text.as_bytes());
        }
    });
    let piped = child.wait_with_output().unwrap();
    feed.join().unwrap();
    assert!(!piped.status.success());
    assert!(
        String::from_utf8_lossy(&piped.stderr).contains("not a regular file"),
        "{piped:?}"
    );

    // The key files travel apart from the backup.
    for f in [
        "kek.key",
        "commit.key",
        "checkpoint.key",
        "checkpoint.pub",
        "token-hs256.key",
    ] {
        std::fs::copy(t.dir.path().join(f), fresh.path().join(f)).unwrap();
    }
    let restored = restore(fresh.path(), &file);
    assert!(restored.status.success(), "{restored:?}");
    let original_checkpoint_key = t.stack.checkpoint_public_key.clone();
    t.stop().await;

    // A restore that did not finish leaves its marker, and keyledger will not start
    // on the directory until it is gone.
    let marker = fresh.path().join(keyledger::stack::RESTORE_MARKER);
    std::fs::write(&marker, "").unwrap();
    let refused = keyledger::stack::Stack::start(config(&fresh)).await;
    let e = refused
        .err()
        .expect("a partly restored directory is refused");
    assert!(e.to_string().contains("did not finish"), "{e:#}");
    std::fs::remove_file(&marker).unwrap();

    // Started without the deployment's key files, keyledger refuses the log other keys
    // wrote and takes back the keys it made, rather than take every commit for
    // foreign and move the read model past them for good; with another KEK, it
    // refuses to seal under it. Both leave the directory as it was: below, it starts
    // with its own keys, and every read and `audit verify` pass.
    let keys = ["kek.key", "commit.key", "token-hs256.key"];
    for f in keys {
        std::fs::rename(fresh.path().join(f), work.path().join(f)).unwrap();
    }
    let e = keyledger::stack::Stack::start(config(&fresh))
        .await
        .err()
        .expect("a restored log without its keys is refused");
    let said = format!("{e:#}");
    assert!(
        said.contains("commit key is not this deployment's"),
        "{said}"
    );
    assert!(said.contains("copy the deployment's key files"), "{said}");
    for f in keys {
        assert!(!fresh.path().join(f).exists(), "{f} made and left: {said}");
    }
    for f in ["commit.key", "token-hs256.key"] {
        std::fs::rename(work.path().join(f), fresh.path().join(f)).unwrap();
    }
    let other_kek = fresh.path().join("kek.key");
    std::fs::write(&other_kek, "07".repeat(32)).unwrap();
    std::fs::set_permissions(
        &other_kek,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let e = keyledger::stack::Stack::start(config(&fresh))
        .await
        .err()
        .expect("another KEK is refused");
    let said = format!("{e:#}");
    assert!(said.contains("KEK is not the deployment's"), "{said}");
    assert!(!said.contains("made keys"), "nothing was made: {said}");
    std::fs::rename(work.path().join("kek.key"), fresh.path().join("kek.key")).unwrap();
    // Without the checkpoint key, a stray one would sign on from the log's last
    // checkpoint, and `audit verify` fail on it for good.
    for f in ["checkpoint.key", "checkpoint.pub"] {
        std::fs::rename(fresh.path().join(f), work.path().join(f)).unwrap();
    }
    let e = keyledger::stack::Stack::start(config(&fresh))
        .await
        .err()
        .expect("a log with checkpoints and no checkpoint key is refused");
    let said = format!("{e:#}");
    assert!(
        said.contains("checkpoints are signed with a checkpoint key that is not here"),
        "{said}"
    );
    for f in ["checkpoint.key", "checkpoint.pub"] {
        assert!(!fresh.path().join(f).exists(), "{f} made and left: {said}");
        std::fs::rename(work.path().join(f), fresh.path().join(f)).unwrap();
    }

    let r = TestStack::start_on(fresh).await;
    assert_eq!(r.stack.checkpoint_public_key, original_checkpoint_key);
    for (id, value) in &before {
        assert_eq!(
            payload(&r, &alice, id).await,
            (StatusCode::OK, value.clone())
        );
    }
    let (status, _) = payload(&r, &alice, &shredded).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a shredded secret stays unreadable"
    );
    let listed_after = names(&r, &alice).await;
    assert!(
        listed_before.is_subset(&listed_after),
        "{listed_before:?} ⊄ {listed_after:?}"
    );
    assert!(!listed_after.contains("shredded"));
    // Secrets written during the backup are in it or not, but never half: each one
    // listed opens.
    let listed = json_of(r.get("/v1/secrets?limit=1000", &alice).await).await;
    for secret in listed["secrets"].as_array().unwrap() {
        let id = crate::support::id_of(&serde_json::json!({"secret_ref": secret["secret_ref"]}));
        let (status, body) = payload(&r, &alice, &id).await;
        assert_eq!(status, StatusCode::OK, "{secret}: {body}");
    }

    let out = audit(args(&[
        "verify",
        "--nats-url",
        &r.auditor_url(),
        "--public-key",
        &r.checkpoint_public_key_file(),
    ]))
    .await;
    assert!(out.status.success(), "{out:?}");
    let said: Value = Value::String(String::from_utf8_lossy(&out.stdout).into_owned());
    assert!(said.as_str().unwrap().starts_with("ok:"), "{said}");
    r.stop().await;
}

fn restore(data_dir: &std::path::Path, file: &std::path::Path) -> std::process::Output {
    Command::new(KEYLEDGER)
        .arg("restore")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--from")
        .arg(file)
        .output()
        .unwrap()
}

impl TestStack {
    /// A stack on the data directory `dir` (a restored one).
    async fn start_on(dir: tempfile::TempDir) -> Self {
        let config = config(&dir);
        let stack = keyledger::stack::Stack::start(config.clone())
            .await
            .expect("the stack starts on the restored directory");
        Self {
            stack,
            dir,
            http: crate::support::http(),
            config,
        }
    }
}
