//! The shared harness.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api::ApiConfig;
use commands::clock;
use commands::handler::HandlerConfig;
use commands::log::LogSettings;
use domain::ids::{ProjectId, Role, UserId};
use domain::principal::Principal;
use keyledger::stack::{ApiSettings, NatsChoice, Stack, StackConfig};
use projections::projector::ProjectorConfig;
use serde_json::Value;
use tempfile::TempDir;

/// A whole keyledger on loopback, in a temporary data directory.
pub struct TestStack {
    pub stack: Stack,
    pub dir: TempDir,
    pub http: reqwest::Client,
}

/// The config of a test stack: managed nats-server and HTTP on free ports.
pub fn config(dir: &TempDir) -> StackConfig {
    StackConfig {
        data_dir: dir.path().to_owned(),
        nats: NatsChoice::Managed {
            port: None,
            binary: None,
        },
        api: ApiSettings {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config: ApiConfig {
                max_body_bytes: 256 * 1024,
                ..Default::default()
            },
            replicas: 1,
        },
        log: LogSettings::default(),
        handler: HandlerConfig::default(),
        scheduler_interval: std::time::Duration::from_millis(100),
        projector: ProjectorConfig::default(),
        clock: clock::system(),
        identity: Default::default(),
    }
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut StackConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&dir);
        adjust(&mut config);
        let stack = Stack::start(config).await.expect("the stack starts");
        Self {
            stack,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// A token for `user` in `project` with role admin.
    pub fn token(&self, user: &str, project: &str) -> String {
        self.token_with(user, project, &["admin"])
    }

    /// A development token for `user` in `project` with `roles`.
    pub fn token_with(&self, user: &str, project: &str, roles: &[&str]) -> String {
        let principal = Principal {
            user: UserId::parse(user).unwrap(),
            project: ProjectId::parse(project).unwrap(),
            roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
            service: None,
        };
        self.stack
            .keys
            .issuer
            .issue(&principal, Duration::from_secs(600), clock::system()())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.stack.http_addr)
    }

    /// `GET path` with `token`.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the API answers")
    }

    /// A NATS connection without credentials: the `client` account, which may only
    /// send commands, as any outside NATS client.
    pub async fn client_nats(&self) -> async_nats::Client {
        async_nats::connect(&self.stack.client_url)
            .await
            .expect("connect as a client")
    }

    /// A NATS connection with keyledger's service credentials.
    pub async fn service_nats(&self) -> async_nats::Client {
        commands::nats::connect(&self.stack.service_url, "test")
            .await
            .expect("connect as the service")
    }

    /// Creates a text secret over HTTP; returns its id.
    pub async fn create_text(&self, token: &str, name: &str, payload: &str) -> String {
        let response = self
            .http
            .post(self.url("/v1/secrets"))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "name": name, "payload": payload, "payload_content_type": "text/plain"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        id_of(&response.json::<Value>().await.unwrap())
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }
}

/// The JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// The status of an error response and its Barbican `description`.
pub async fn description(response: reqwest::Response) -> (reqwest::StatusCode, String) {
    let status = response.status();
    let body = json_of(response).await;
    (
        status,
        body["description"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The secret id in a `secret_ref`.
pub fn id_of(created: &Value) -> String {
    created["secret_ref"]
        .as_str()
        .expect("secret_ref")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Polls `check` every 10 ms until it yields a value, failing after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a command with a raw async-nats request (no keyledger client code) and
/// returns the reply JSON.
pub async fn raw_command(
    nats: &async_nats::Client,
    name: &str,
    token: Option<&str>,
    body: &Value,
) -> Value {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(token) = token {
        headers.insert("Authorization", format!("Bearer {token}").as_str());
    }
    let reply = nats
        .request_with_headers(
            format!("keyledger.cmd.{name}"),
            headers,
            serde_json::to_vec(body).unwrap().into(),
        )
        .await
        .expect("a reply");
    serde_json::from_slice(&reply.payload).expect("reply is JSON")
}
