//! HTTPS on the HTTP API (issue 19): real rustls handshakes with reqwest clients. A
//! certificate from another CA or an expired one is refused; a changed certificate
//! is served to new connections without dropping open ones; mutual TLS maps a
//! verified client certificate to a principal, which can read and write; the CLI
//! trusts `--cacert`; `keyledger up --tls` makes and serves a development CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::certs::{Ca, days};
use crate::support::{TestStack, eventually};

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

/// A client trusting `ca`, presenting `identity` (certificate, key) if given.
fn client(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    infra::tls::install_provider();
    let identity = identity.map(|(cert, key)| infra::tls::ClientIdentityFiles {
        cert: cert.clone(),
        key: key.clone(),
    });
    let config = infra::tls::client_config(Some(ca), identity.as_ref()).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// The whole chain of a request's error, where rustls's reason is.
fn chain(e: &reqwest::Error) -> String {
    anyhow::Chain::new(e)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

async fn start(files: infra::tls::ServerFiles, principals: Option<&Path>) -> TestStack {
    let tls = Arc::new(api::tls::ServerTls::load(files).unwrap());
    let principals =
        principals.map(|p| Arc::new(api::client_cert::CertPrincipals::load(p).unwrap()));
    TestStack::start_with(|c| {
        c.api.tls = Some(tls);
        c.api.config.client_principals = principals;
    })
    .await
}

fn https(t: &TestStack, path: &str) -> String {
    format!("https://{}{path}", t.stack.http_addr)
}

/// A trusted certificate serves; another CA's, plain HTTP and an expired certificate
/// are refused; a changed certificate is served to new connections while an open
/// connection keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_refused_where_it_should_be_and_reloaded_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let (cert, key) = ca.issue(
        dir.path(),
        "server",
        &["127.0.0.1", "localhost"],
        false,
        (days(-1), days(30)),
    );
    let t = start(
        infra::tls::ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
            require_client_cert: false,
        },
        None,
    )
    .await;
    let token = t.token("alice", "p1");
    let whoami = https(&t, "/v1/whoami");

    let trusting = client(&ca.file, None);
    let r = trusting
        .get(&whoami)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["user_id"], "alice", "{me}");

    let e = client(&other.file, None)
        .get(&whoami)
        .send()
        .await
        .unwrap_err();
    assert!(chain(&e).contains("UnknownIssuer"), "{}", chain(&e));
    let plain = crate::support::http()
        .get(format!("http://{}/v1/whoami", t.stack.http_addr))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP on the HTTPS port is not served: {plain:?}"
    );

    // An expired certificate replaces the good one: new connections refuse it...
    let (expired_cert, expired_key) = ca.issue(
        dir.path(),
        "expired",
        &["127.0.0.1"],
        false,
        (days(-30), days(-1)),
    );
    std::fs::copy(&expired_key, &key).unwrap();
    std::fs::copy(&expired_cert, &cert).unwrap();
    let refused = eventually(
        "the expired certificate to be served",
        Duration::from_secs(20),
        || async {
            let e = client(&ca.file, None).get(&whoami).send().await.err()?;
            let text = chain(&e);
            text.contains("certificate expired").then_some(text)
        },
    )
    .await;
    assert!(refused.contains("certificate"), "{refused}");
    // ...while the connection opened before the change keeps working.
    let r = trusting
        .get(&whoami)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A good certificate again.
    let (renewed_cert, renewed_key) = ca.issue(
        dir.path(),
        "renewed",
        &["127.0.0.1"],
        false,
        (days(-1), days(30)),
    );
    std::fs::copy(&renewed_key, &key).unwrap();
    std::fs::copy(&renewed_cert, &cert).unwrap();
    eventually(
        "the renewed certificate to be served",
        Duration::from_secs(20),
        || async {
            let r = client(&ca.file, None)
                .get(&whoami)
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    t.stop().await;
}

/// Mutual TLS: a verified client certificate that the operator mapped stands for its
/// principal (reads and writes, as that user); an unmapped one is told how to map it;
/// one from an unknown CA is refused at the handshake; a token still works without a
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_mapped_to_a_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "server-ca");
    let clients = Ca::new(dir.path(), "client-ca");
    let stranger = Ca::new(dir.path(), "stranger-ca");
    let (cert, key) = ca.issue(
        dir.path(),
        "server",
        &["127.0.0.1"],
        false,
        (days(-1), days(30)),
    );
    let map = dir.path().join("principals.json");
    std::fs::write(
        &map,
        json!({"nova.compute.test": {"user": "nova", "project": "p1", "roles": ["creator"],
                                     "service": "nova"}})
        .to_string(),
    )
    .unwrap();
    let t = start(
        infra::tls::ServerFiles {
            cert,
            key,
            client_ca: Some(clients.file.clone()),
            require_client_cert: false,
        },
        Some(&map),
    )
    .await;

    let nova = clients.issue(
        dir.path(),
        "nova",
        &["nova.compute.test"],
        true,
        (days(-1), days(30)),
    );
    let as_nova = client(&ca.file, Some(&nova));
    let me: Value = as_nova
        .get(https(&t, "/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            me["user_id"].as_str(),
            me["project_id"].as_str(),
            me["service"].as_str()
        ),
        (Some("nova"), Some("p1"), Some("nova")),
        "{me}"
    );
    let created = as_nova
        .post(https(&t, "/v1/secrets"))
        .json(&json!({"name": "by-certificate", "payload": "mtls-canary",
                      "payload_content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.text().await
    );
    let id = crate::support::id_of(&created.json().await.unwrap());
    let payload = as_nova
        .get(https(&t, &format!("/v1/secrets/{id}/payload")))
        .send()
        .await
        .unwrap();
    assert_eq!(payload.text().await.unwrap(), "mtls-canary");
    let commits = t.commits_of(&id).await;
    match &commits[0].body.actor {
        domain::principal::Actor::User(p) => assert_eq!(p.user.as_str(), "nova"),
        other => panic!("created by {other:?}"),
    }

    // A certificate that expires while its connection is kept alive stops standing
    // for anyone on that connection (and TLS sessions are not resumed past it).
    let brief = clients.issue(
        dir.path(),
        "brief",
        &["nova.compute.test"],
        true,
        (days(-1), time::Duration::seconds(3)),
    );
    let as_brief = client(&ca.file, Some(&brief));
    let r = as_brief.get(https(&t, "/v1/whoami")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let refused = eventually(
        "the certificate to expire",
        Duration::from_secs(20),
        || async {
            let r = as_brief.get(https(&t, "/v1/whoami")).send().await.ok()?;
            (r.status() == StatusCode::UNAUTHORIZED).then_some(r.text().await.unwrap_or_default())
        },
    )
    .await;
    assert!(refused.contains("not valid now"), "{refused}");

    let unmapped = clients.issue(
        dir.path(),
        "unmapped",
        &["cron.test"],
        true,
        (days(-1), days(30)),
    );
    let r = client(&ca.file, Some(&unmapped))
        .get(https(&t, "/v1/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("cron.test") && text.contains("--tls-client-principals"),
        "{text}"
    );

    let forged = stranger.issue(
        dir.path(),
        "forged",
        &["nova.compute.test"],
        true,
        (days(-1), days(30)),
    );
    let e = client(&ca.file, Some(&forged))
        .get(https(&t, "/v1/whoami"))
        .send()
        .await
        .unwrap_err();
    let text = chain(&e);
    assert!(
        !text.is_empty(),
        "a certificate from an unknown CA is refused"
    );

    let r = client(&ca.file, None)
        .get(https(&t, "/v1/whoami"))
        .bearer_auth(t.token("alice", "p1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    t.stop().await;
}

/// `keyledger up --tls` makes a development CA and serves HTTPS with it; the CLI
/// trusts it with `--cacert` and, without it, says to pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_tls_serves_a_development_ca_that_the_cli_trusts() {
    let mut up = crate::support::up::Up::spawn(|c| {
        c.arg("--tls");
    })
    .await;
    assert!(up.http.starts_with("https://"), "{}", up.http);
    let ca = up.data_dir().join("tls").join("ca.pem");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(up.data_dir().join("tls").join("server.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0);
    let token = up.token("alice", "demo", "admin");
    let cli = |extra: &[&str]| {
        Command::new(KEYLEDGER)
            .args(["whoami", "--url", &up.http, "--token", &token])
            .args(extra)
            .env_remove("KEYLEDGER_CACERT")
            .output()
            .unwrap()
    };
    let trusted = cli(&["--cacert", ca.to_str().unwrap()]);
    assert!(trusted.status.success(), "{trusted:?}");
    assert!(
        String::from_utf8_lossy(&trusted.stdout).contains("alice"),
        "{trusted:?}"
    );
    let untrusted = cli(&[]);
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("--cacert"), "{stderr}");
    let r = client(&ca, None)
        .get(format!("{}/v1/whoami", up.http))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(
        r.is_ok_and(|r| r.status() == StatusCode::OK),
        "{}",
        up.diagnosis()
    );
    up.stop();
}

/// Plain HTTP on an address other than loopback is refused with what to do instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let data = dir.path().join("data");
        move || {
            crate::support::up::command(&data, "0.0.0.0:0")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--allow-plain-http"),
        "{stderr}"
    );

    // Client certificates without HTTPS are refused, not ignored.
    let ca = Ca::new(dir.path(), "client-ca");
    let out = crate::support::up::command(&dir.path().join("data2"), "127.0.0.1:0")
        .arg("--tls-client-ca")
        .arg(&ca.file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("need HTTPS"), "{stderr}");
}

/// TLS to NATS: `keyledger up --tls --nats-tls-verify` runs its nats-server with TLS
/// and `verify`; keyledger's own components work through it (a secret is created and
/// read over HTTPS, which goes through NATS); a NATS client needs TLS, the CA and a
/// client certificate from it (plain, certificate-less and foreign-CA connections are
/// refused); the CLI connects with --nats-ca, --nats-cert and --nats-key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_speaks_tls_and_verifies_clients() {
    let mut up = crate::support::up::Up::spawn(|c| {
        c.args(["--tls", "--nats-tls-verify"]);
    })
    .await;
    let tls_dir = up.data_dir().join("tls");
    let ca = tls_dir.join("ca.pem");
    let own = (tls_dir.join("client.pem"), tls_dir.join("client.key"));
    let token = up.token("alice", "demo", "admin");

    let https = client(&ca, None);
    let created = https
        .post(format!("{}/v1/secrets", up.http))
        .bearer_auth(&token)
        .json(
            &json!({"name": "over-nats-tls", "payload": "nats-tls-canary",
                      "payload_content_type": "text/plain"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED, "{}", up.diagnosis());
    let id = crate::support::id_of(&created.json().await.unwrap());
    let payload = https
        .get(format!("{}/v1/secrets/{id}/payload", up.http))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(payload.text().await.unwrap(), "nats-tls-canary");

    let url = format!("tls://127.0.0.1:{}", up.nats.rsplit(':').next().unwrap());
    let connect = |options: async_nats::ConnectOptions, url: String| async move {
        options
            .connection_timeout(Duration::from_secs(3))
            .retry_on_initial_connect()
            .max_reconnects(Some(1))
            .connect(url)
            .await
    };
    // Plain NATS to a TLS port.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::with_token(token.clone())
            .connection_timeout(Duration::from_secs(3))
            .connect(format!(
                "nats://127.0.0.1:{}",
                up.nats.rsplit(':').next().unwrap()
            )),
    )
    .await;
    assert!(
        matches!(plain, Ok(Err(_))),
        "a plain connection is refused at once: {plain:?}"
    );
    // TLS, the CA, but no client certificate.
    let anonymous = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::with_token(token.clone())
            .add_root_certificates(ca.clone())
            .connection_timeout(Duration::from_secs(3))
            .connect(url.clone()),
    )
    .await;
    assert!(
        !matches!(anonymous, Ok(Ok(_))),
        "a client without a certificate is refused"
    );
    // A client certificate from another CA.
    let dir = tempfile::tempdir().unwrap();
    let foreign =
        Ca::new(dir.path(), "foreign").issue(dir.path(), "c", &["c"], true, (days(-1), days(30)));
    let forged = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::with_token(token.clone())
            .add_root_certificates(ca.clone())
            .add_client_certificate(foreign.0.clone(), foreign.1.clone())
            .connection_timeout(Duration::from_secs(3))
            .connect(url.clone()),
    )
    .await;
    assert!(
        !matches!(forged, Ok(Ok(_))),
        "a foreign client certificate is refused"
    );
    // The CA and a certificate it signed: a client with its token sends a command.
    let mut options = async_nats::ConnectOptions::with_token(token.clone())
        .add_root_certificates(ca.clone())
        .add_client_certificate(own.0.clone(), own.1.clone());
    if let Some(prefix) = infra::nats_auth::token_inbox_prefix(&token) {
        options = options.custom_inbox_prefix(prefix);
    }
    let nats = connect(options, url.clone()).await.unwrap();
    let reply = crate::support::raw_command(
        &nats,
        "secret.create",
        Some(&token),
        &json!({"name": "from-nats-tls"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");

    // The CLI, with the global NATS TLS flags, as the auditor.
    let password =
        std::fs::read_to_string(up.data_dir().join(infra::server::AUDITOR_PASSWORD_FILE)).unwrap();
    let auditor = format!(
        "tls://{}:{}@127.0.0.1:{}",
        infra::server::AUDITOR_USER,
        password.trim(),
        up.nats.rsplit(':').next().unwrap()
    );
    let verify = |tls: &[&str]| {
        Command::new(KEYLEDGER)
            .args(["audit", "verify", "--nats-url", &auditor])
            .args(tls)
            .output()
            .unwrap()
    };
    let (ca_arg, cert_arg, key_arg) = (
        ca.to_str().unwrap(),
        own.0.to_str().unwrap(),
        own.1.to_str().unwrap(),
    );
    let out = verify(&[
        "--nats-ca",
        ca_arg,
        "--nats-cert",
        cert_arg,
        "--nats-key",
        key_arg,
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = verify(&["--nats-ca", ca_arg]);
    assert!(!out.status.success(), "no client certificate: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect to NATS"),
        "{out:?}"
    );
    up.stop();
}
