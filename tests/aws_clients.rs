//! AWS's real clients against a real `keyledger up`, configured as a user points them
//! at it: `AWS_ENDPOINT_URL_SECRETS_MANAGER` and a key pair that `keyledger
//! access-key create` printed. boto3 and the aws CLI come from PyPI
//! (`scripts/clients.sh`, `.tools/venv-aws`); the Python side is in
//! `tests/clients/test_boto3.py` and `test_awscli.py`.

use std::process::Command;

use crate::support::clients::{clients_dir, installed};
use crate::support::metrics::{scrape, value};
use crate::support::up::Up;

/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, as `keyledger access-key create`
/// prints them for `user` in `project` with `roles`, run with `token`.
fn access_key(up: &Up, token: &str, user: &str, project: &str, roles: &str) -> (String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    command
        .args(["access-key", "create", "--url", &up.http, "--token", token])
        .args(["--user", user, "--project", project, "--roles", roles]);
    // `keyledger up --tls`: trust its development CA.
    let ca = up.data_dir().join("tls").join("ca.pem");
    if ca.exists() {
        command.env("KEYLEDGER_CACERT", ca);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {stdout:?}"))
            .to_owned()
    };
    (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY"))
}

/// Runs `run.py <modules>` with the AWS venv's Python against `up`; fails with its
/// output unless every test ran and passed.
async fn run(up: &mut Up, modules: &[&str]) -> String {
    run_with(up, modules, &[]).await
}

/// [`run`], with more environment variables.
async fn run_with(up: &mut Up, modules: &[&str], env: &[(&str, String)]) -> String {
    let admin = up.token("alice", "demo", "admin");
    let (key, secret) = access_key(up, &admin, "alice", "demo", "admin");
    let (auditor_key, auditor_secret) = access_key(up, &admin, "carol", "demo", "audit");
    let other_admin = up.token("bob", "other", "admin");
    let (other_key, other_secret) = access_key(up, &other_admin, "bob", "other", "admin");
    let python = installed("KEYLEDGER_AWS_PYTHON");
    let mut command = Command::new(&python);
    command
        .arg("run.py")
        .args(modules)
        .current_dir(clients_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", up.dir.path())
        .env("KEYLEDGER_AWS_PYTHON", &python)
        // No __pycache__ in the checkout.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &up.http)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "eu-west-3")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_RETRY_MODE", "standard")
        .env("AWS_MAX_ATTEMPTS", "2")
        .env("AUDITOR_ACCESS_KEY_ID", auditor_key)
        .env("AUDITOR_SECRET_ACCESS_KEY", auditor_secret)
        .env("OTHER_ACCESS_KEY_ID", other_key)
        .env("OTHER_SECRET_ACCESS_KEY", other_secret)
        .env("KEYLEDGER_URL", &up.http)
        .env("KEYLEDGER_TOKEN", admin)
        .env("OTHER_TOKEN", other_admin)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{modules:?} failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        up.diagnosis()
    );
    stdout
}

/// boto3: every operation keyledger serves, their errors (signature, unknown key,
/// skew, another service, not found, scheduled for deletion, a policy denial, another
/// project, the hyphen-six-characters ambiguity) and one secret across both APIs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_works_against_keyledger() {
    let mut up = Up::spawn(|_| {}).await;
    let output = run(&mut up, &["test_boto3"]).await;
    println!("{}", output.lines().last().unwrap_or_default());

    // The run's signatures were checked against access keys held in the read cache,
    // and its secrets' names resolved there.
    let metrics = scrape(&crate::support::http(), &up.ops).await;
    for cache in ["access_keys", "names"] {
        let hits = value(
            &metrics,
            "keyledger_cache_requests_total",
            &[("cache", cache), ("result", "hit")],
        );
        assert!(hits > 0.0, "no {cache} cache hits counted");
    }

    // Each payload read over AWS's API is recorded with the access key that signed it.
    let js = up.service_js().await;
    let mut stream = js.get_stream(api::access_log::STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut signed = 0;
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.unwrap();
        let records: Vec<api::access_log::AccessRecord> =
            serde_json::from_slice(&message.payload).unwrap();
        signed += records
            .iter()
            .filter(|r| {
                r.allowed
                    && r.user == "alice"
                    && r.access_key
                        .as_deref()
                        .is_some_and(|k| k.starts_with("AKLG"))
            })
            .count();
    }
    assert!(signed > 0, "no allowed read names its access key");
}

/// boto3 and the aws CLI over HTTPS (`keyledger up --tls`), trusting its development
/// CA with AWS_CA_BUNDLE as users do; without it the certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_work_over_https() {
    let mut up = Up::spawn(|c| {
        c.arg("--tls");
    })
    .await;
    let ca = up.data_dir().join("tls").join("ca.pem");
    let output = run_with(
        &mut up,
        &["test_https_aws"],
        &[("AWS_CA_BUNDLE", ca.display().to_string())],
    )
    .await;
    println!("{}", output.lines().last().unwrap_or_default());
}

/// The aws CLI: a secret's life (create, get, put, describe, list, delete, restore,
/// force delete) and a binary secret from a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_works_against_keyledger() {
    let mut up = Up::spawn(|_| {}).await;
    let output = run(&mut up, &["test_awscli"]).await;
    println!("{}", output.lines().last().unwrap_or_default());
}

/// Rotation on NATS handlers: AWS's generic rotation template, run unchanged by
/// `handlers/nats_lambda.py` as the `rotation` NATS user, rotates a secret through its
/// four steps; a failed testSecret leaves AWSCURRENT; an unserved handler, a step
/// timeout, a rotation in progress and a cancelled one each answer what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_runs_on_nats_handlers() {
    let mut up = up_rotating("2s").await;
    let url = rotation_url(&up);
    let output = run_with(
        &mut up,
        &["test_rotation"],
        &[("KEYLEDGER_ROTATION_NATS", url)],
    )
    .await;
    println!("{}", output.lines().last().unwrap_or_default());
}

/// `keyledger up` rotating quickly: steps of `step_timeout`, two attempts a second
/// apart, due rotations looked for every 200 ms.
async fn up_rotating(step_timeout: &str) -> Up {
    Up::spawn(|c| {
        c.args([
            "--rotation-step-timeout",
            step_timeout,
            "--rotation-attempts",
            "2",
        ])
        .args([
            "--rotation-retry-after",
            "1s",
            "--scheduler-interval",
            "200ms",
        ]);
    })
    .await
}

/// The rotation user's NATS URL for `up`, as `keyledger up` prints it.
fn rotation_url(up: &Up) -> String {
    let password =
        std::fs::read_to_string(up.dir.path().join("data").join("nats-rotation.key")).unwrap();
    format!("nats://rotation:{}@{}", password.trim(), up.nats)
}

/// The shipped PostgreSQL handler against Debian's PostgreSQL, which checks
/// passwords: the new password logs in and the old one does not after finishSecret;
/// a handler failing testSecret leaves AWSCURRENT where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_handler_rotates_a_database_password() {
    let pg = infra::postgres_server::ManagedPostgres::start_checking_passwords(
        keyledger::stack::free_port().unwrap(),
    )
    .await
    .expect("PostgreSQL starts (apt-get install postgresql)");
    let mut up = up_rotating("10s").await;
    let env = [
        ("KEYLEDGER_ROTATION_NATS", rotation_url(&up)),
        ("PG_SOCKET", pg.socket().display().to_string()),
    ];
    let output = run_with(&mut up, &["test_rotation_postgres"], &env).await;
    println!("{}", output.lines().last().unwrap_or_default());
    pg.stop().await;
}
