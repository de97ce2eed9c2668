//! The KEK in an HSM (issue 19): `keyledger up` with SoftHSM2's PKCS#11 module (Debian's
//! `softhsm2`, a token initialised in a temporary directory) creates the KEK inside the
//! token, seals and opens payloads through it, writes no KEK file, finds the same KEK
//! again after a restart, and keeps the PIN off its command line and out of its log.

#[path = "../infra/tests/support/softhsm.rs"]
mod softhsm;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::up::Up;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kek_lives_in_the_hsm_and_survives_a_restart() {
    let hsm = tempfile::tempdir().unwrap();
    let pin = "hsm-pin-0451";
    let conf = softhsm::token(hsm.path(), "keyledger", pin);
    let pin_file = hsm.path().join("pin");
    std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
    let module = softhsm::module();
    let configure = |c: &mut std::process::Command| {
        c.arg("--kek-pkcs11-module")
            .arg(&module)
            .args([
                "--kek-pkcs11-token-label",
                "keyledger",
                "--kek-pkcs11-pin-file",
            ])
            .arg(&pin_file)
            .env("SOFTHSM2_CONF", &conf)
            .env("RUST_LOG", "info");
    };
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
    up.stop();

    // A wrong PIN stops keyledger at start with what to check.
    let wrong = hsm.path().join("wrong-pin");
    std::fs::write(&wrong, "wrong-pin-9137").unwrap();
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
}
