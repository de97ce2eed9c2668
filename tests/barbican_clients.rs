//! Barbican's real clients against a real `keyledger up`, as users point them at it:
//! python-barbicanclient's own functional tests (its library and its `barbican`
//! CLI), the `openstack` CLI, and Castellan. Keystone is the minimal stand-in in
//! `tests/clients/keystone_stub.py`, whose tokens are keyledger tokens. The clients
//! and the functional tests come from PyPI (`scripts/clients.sh`); the Python side
//! of each test is in `tests/clients/`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::support::clients::{clients_dir, installed};
use crate::support::up::Up;

/// `keyledger up` and a Keystone stand-in issuing its tokens.
struct Clients {
    up: Up,
    keystone: Child,
    keystone_url: String,
    /// More environment for the Python side.
    env: Vec<(&'static str, String)>,
}

impl Clients {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Clients::start`] with `configure` applied to `keyledger up`.
    async fn start_with(configure: impl FnOnce(&mut Command)) -> Self {
        let up = Up::spawn(configure).await;
        let user = |id: &str, password: &str, projects: serde_json::Value| json!({"id": id, "password": password, "domain": "Default", "projects": projects});
        let config = json!({
            "listen": "127.0.0.1:0",
            "key_manager_url": up.http,
            "keyledger_bin": env!("CARGO_BIN_EXE_keyledger"),
            "data_dir": up.data_dir(),
            "users": {
                // python-barbicanclient's functional tests log in as these two.
                "barbican": user("barbican", "secretservice",
                    json!({"service": {"id": "service", "roles": ["admin"]}})),
                "admin": user("admin", "secretadmin",
                    json!({"admin": {"id": "admin", "roles": ["admin"]}})),
                "alice": user("alice", "secret",
                    json!({"demo": {"id": "demo", "roles": ["admin"]}})),
            },
        });
        let path = up.dir.path().join("keystone.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut keystone = Command::new(installed("KEYLEDGER_CLIENTS_PYTHON"))
            .arg(clients_dir().join("keystone_stub.py"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = keystone.stdout.take().unwrap();
        let keystone_url = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line.split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap_or_else(|| panic!("the Keystone stand-in said {line:?}"))
                .to_owned()
        })
        .await
        .unwrap();
        Self {
            up,
            keystone,
            keystone_url,
            env: Vec::new(),
        }
    }

    /// Runs the clients' Python with `args` in `tests/clients`, with the addresses and
    /// tokens the tests read; fails with its output unless it succeeds.
    async fn python(&mut self, args: &[&str]) -> String {
        let mut command = Command::new(installed("KEYLEDGER_CLIENTS_PYTHON"));
        command
            .args(args)
            .current_dir(clients_dir())
            .env("KEYLEDGER_URL", &self.up.http)
            .env("KEYSTONE_URL", &self.keystone_url)
            .env("KEYLEDGER_TOKEN", self.up.token("alice", "demo", "admin"))
            .env(
                "KEYLEDGER_OTHER_TOKEN",
                self.up.token("bob", "other", "observer"),
            )
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let out = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let keystone = match self.keystone.try_wait() {
                Ok(None) => "the Keystone stand-in is running".to_owned(),
                other => format!("the Keystone stand-in ended: {other:?}"),
            };
            panic!(
                "{args:?} failed ({}):\n{stdout}\n{stderr}\n{keystone}\n{}",
                out.status,
                self.up.diagnosis()
            );
        }
        stdout
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.keystone.kill();
        let _ = self.keystone.wait();
    }
}

/// The last line of a runner's output: its count.
fn summary(output: &str) -> &str {
    output.lines().last().unwrap_or_default()
}

/// python-barbicanclient's own functional tests, unchanged from its sdist: every test
/// that applies passes (the few that do not are listed, with why, in
/// `tests/clients/barbicanclient_functional_excluded.txt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_barbicanclients_own_functional_tests_pass() {
    let mut clients = Clients::start().await;
    let work = tempfile::tempdir().unwrap();
    let sdist = installed("KEYLEDGER_BARBICANCLIENT_SDIST");
    let (keyledger_url, keystone_url) = (clients.up.http.clone(), clients.keystone_url.clone());
    let output = clients
        .python(&[
            "barbicanclient_functional.py",
            "--sdist",
            &sdist,
            "--keyledger-url",
            &keyledger_url,
            "--keystone-url",
            &keystone_url,
            "--workdir",
            work.path().to_str().unwrap(),
        ])
        .await;
    let last = summary(&output);
    println!("{last}");
    assert!(last.contains("0 did not pass; 0 did not run"), "{output}");
}

/// The openstack CLI, pointed at keyledger with `--os-auth-type admin_token
/// --os-endpoint <url>/v1`: secrets (text and binary files), ACLs, containers,
/// consumers and orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_cli_works_against_keyledger() {
    let mut clients = Clients::start().await;
    let output = clients.python(&["run.py", "test_openstack_cli"]).await;
    println!("{}", summary(&output));
}

/// The openstack CLI over HTTPS (`keyledger up --tls`), trusting its development CA
/// with REQUESTS_CA_BUNDLE as users do; without it the certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_cli_works_over_https() {
    let mut clients = Clients::start_with(|c| {
        c.arg("--tls");
    })
    .await;
    let ca = clients.up.data_dir().join("tls").join("ca.pem");
    clients
        .env
        .push(("REQUESTS_CA_BUNDLE", ca.display().to_string()));
    let output = clients.python(&["run.py", "test_https_openstack"]).await;
    println!("{}", summary(&output));
}

/// Castellan's Barbican key manager, authenticated by a Keystone password, by a token
/// re-scoped at Keystone, and by a plugin of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn castellan_stores_generates_and_deletes_keys() {
    let mut clients = Clients::start().await;
    let output = clients.python(&["run.py", "test_castellan"]).await;
    println!("{}", summary(&output));
}
