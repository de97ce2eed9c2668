//! The KEK in an HSM (issue 19): `keyledger up` with SoftHSM2's PKCS#11 module (Debian's
//! `softhsm2`, a token initialised in a temporary directory) creates the KEK inside the
//! token, seals and opens payloads through it, writes no KEK file, finds the same KEK
//! again after a restart, and keeps the PIN off its command line and out of its log.

#[path = "../infra/tests/support/softhsm.rs"]
mod softhsm;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::up::Up;

/// A SoftHSM2 token labelled `keyledger` in a temporary directory, its PIN in a file.
struct Token {
    dir: tempfile::TempDir,
    conf: std::path::PathBuf,
    pin_file: std::path::PathBuf,
}

impl Token {
    fn new(pin: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = softhsm::token(dir.path(), "keyledger", pin);
        let pin_file = dir.path().join("pin");
        write_private(&pin_file, &format!("{pin}\n"));
        Self {
            dir,
            conf,
            pin_file,
        }
    }

    /// The flags and environment that put a keyledger command's KEK in this token.
    fn flags(&self, c: &mut std::process::Command) {
        c.arg("--kek-pkcs11-module")
            .arg(softhsm::module())
            .args([
                "--kek-pkcs11-token-label",
                "keyledger",
                "--kek-pkcs11-pin-file",
            ])
            .arg(&self.pin_file)
            .env("SOFTHSM2_CONF", &self.conf);
    }
}

/// Writes a file only its owner may read, as a PIN file must be.
fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kek_lives_in_the_hsm_and_survives_a_restart() {
    let pin = "hsm-pin-0451";
    let token = Token::new(pin);
    let (module, conf) = (softhsm::module(), token.conf.clone());
    let configure = |c: &mut std::process::Command| {
        token.flags(c);
        c.env("RUST_LOG", "info");
    };
    let hsm = &token.dir;
    let mut up = Up::spawn(configure).await;
    let http = crate::support::http();
    let token = up.token("alice", "demo", "admin");
    let created = http
        .post(format!("{}/v1/secrets", up.http))
        .bearer_auth(&token)
        .json(&json!({"name": "in-hsm", "payload": "hsm-canary-7781",
                      "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED, "{}", up.diagnosis());
    let id = crate::support::id_of(&created.json().await.unwrap());
    let read = |up_http: String, token: String, id: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{up_http}/v1/secrets/{id}/payload"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        read(up.http.clone(), token.clone(), id.clone()).await,
        (StatusCode::OK, "hsm-canary-7781".to_owned())
    );
    assert!(
        !up.data_dir().join("kek.key").exists(),
        "no KEK file when the KEK is in the HSM"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", up.child.id())).unwrap();
    assert!(!crate::support::contains(&cmdline, pin.as_bytes()));
    let dir = up.stop_keeping();
    // Its output, kept as a service manager keeps it, holds no token: it says how to
    // issue one.
    let out = std::fs::read_to_string(dir.path().join("up.out")).unwrap();
    assert!(
        out.contains("$(keyledger token issue --data-dir") && !out.contains("=eyJ"),
        "{out}"
    );
    let log = std::fs::read(dir.path().join("up.log")).unwrap();
    assert!(
        !crate::support::contains(&log, pin.as_bytes()),
        "the PIN is not logged"
    );

    // Again on the same data directory and token: the KEK is found by its label.
    let mut up = Up::spawn_in(dir, configure).await;
    assert_eq!(
        read(up.http.clone(), token.clone(), id.clone()).await,
        (StatusCode::OK, "hsm-canary-7781".to_owned()),
        "{}",
        up.diagnosis()
    );
    let dir = up.stop_keeping();

    // A mistyped key label names no key in the token: the key keyledger makes under
    // it wraps none of the stored keys, so the start is refused and the key taken
    // back (a second start says it made one again), and the right label still works.
    for _ in 0..2 {
        let mut mistyped = crate::support::up::command(&dir.path().join("data"), "127.0.0.1:0");
        configure(&mut mistyped);
        let out = mistyped
            .args(["--kek-pkcs11-key-label", "keyledger-kek-typo"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("KEK is not the deployment's"), "{stderr}");
        assert!(
            stderr.contains("has removed them again (the token's key \"keyledger-kek-typo\")"),
            "{stderr}"
        );
    }
    let mut up = Up::spawn_in(dir, configure).await;
    assert_eq!(
        read(up.http.clone(), token.clone(), id.clone()).await,
        (StatusCode::OK, "hsm-canary-7781".to_owned()),
        "{}",
        up.diagnosis()
    );
    up.stop();

    // A wrong PIN stops keyledger at start with what to check.
    let wrong = hsm.path().join("wrong-pin");
    write_private(&wrong, "wrong-pin-9137");
    let out = crate::support::up::command(&hsm.path().join("other"), "127.0.0.1:0")
        .arg("--kek-pkcs11-module")
        .arg(&module)
        .args([
            "--kek-pkcs11-token-label",
            "keyledger",
            "--kek-pkcs11-pin-file",
        ])
        .arg(&wrong)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PIN") && !stderr.contains("wrong-pin-9137"),
        "{stderr}"
    );

    // A PIN file other users may read is refused: the PIN must be taken as disclosed.
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = crate::support::up::command(&hsm.path().join("other"), "127.0.0.1:0")
        .arg("--kek-pkcs11-module")
        .arg(&module)
        .args([
            "--kek-pkcs11-token-label",
            "keyledger",
            "--kek-pkcs11-pin-file",
        ])
        .arg(&wrong)
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the PIN file")
            && stderr.contains("accessible by other users (mode 644); run `chmod 600"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kek_in_the_hsm_rotates_and_the_old_one_is_destroyed_in_the_token() {
    let token = Token::new("hsm-pin-2207");
    let hsm_flags = |c: &mut std::process::Command| token.flags(c);
    let mut up = Up::spawn(hsm_flags).await;
    let http = crate::support::http();
    let token = up.token("alice", "demo", "admin");
    let create = |name: &'static str, value: &'static str| {
        let (http, url, token) = (
            http.clone(),
            format!("{}/v1/secrets", up.http),
            token.clone(),
        );
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(
                    &json!({"name": name, "payload": value, "payload_content_type": "text/plain"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            crate::support::id_of(&r.json().await.unwrap())
        }
    };
    let read = |base: String, id: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let r = http
                .get(format!("{base}/v1/secrets/{id}/payload"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let keys = |command: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_keyledger"));
        c.arg("keys")
            .args(command)
            .args(["--nats-url", &up.service_url(), "--data-dir"])
            .arg(up.data_dir());
        hsm_flags(&mut c);
        c.output().unwrap()
    };
    let before = create("before", "hsm-before-rotation").await;
    let rotated = keys(&["rotate-kek"]);
    assert!(rotated.status.success(), "{rotated:?} {}", up.diagnosis());
    let after = create("after", "hsm-after-rotation").await;
    let rewrapped = keys(&["rewrap"]);
    assert!(rewrapped.status.success(), "{rewrapped:?}");
    assert!(
        String::from_utf8_lossy(&rewrapped.stdout).contains("1 re-wrapped now, 1 already"),
        "{rewrapped:?}"
    );
    let retired = keys(&["retire-kek", "0"]);
    assert!(retired.status.success(), "{retired:?}");
    let status = String::from_utf8_lossy(&keys(&["status"]).stdout).into_owned();
    assert!(
        status.contains("held here: version 1") && !status.contains("held here: version 0"),
        "version 0 is gone from the token: {status}"
    );
    for (id, value) in [
        (&before, "hsm-before-rotation"),
        (&after, "hsm-after-rotation"),
    ] {
        assert_eq!(
            read(up.http.clone(), id.clone()).await,
            (StatusCode::OK, value.to_owned())
        );
    }
    // Restarted on the token that holds only version 1: everything reads.
    let dir = up.stop_keeping();
    let mut up = Up::spawn_in(dir, hsm_flags).await;
    for (id, value) in [
        (&before, "hsm-before-rotation"),
        (&after, "hsm-after-rotation"),
    ] {
        assert_eq!(
            read(up.http.clone(), id.clone()).await,
            (StatusCode::OK, value.to_owned()),
            "{}",
            up.diagnosis()
        );
    }
    up.stop();
}
