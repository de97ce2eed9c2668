//! The shared harness.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use api::ApiConfig;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use commands::log::checkpoints::CheckpointSettings;
use commands::secret::HandlerConfig;
use domain::commit::Commit;
use domain::ids::{ProjectId, Role, ServiceName, UserId};
use domain::principal::Principal;
use domain::secret::SecretEvent;
use domain::timestamp::Timestamp;
use infra::clock::{self, Clock};
use infra::log::LogSettings;
use keyledger::stack::{ApiSettings, NatsChoice, Stack, StackConfig};
use projections::projector::ProjectorConfig;
use serde_json::Value;
use tempfile::TempDir;

pub mod aws;
pub mod certs;
pub mod clients;
pub mod metrics;
pub mod read_model;
pub mod up;

/// A whole keyledger on loopback, in a temporary data directory.
pub struct TestStack {
    pub stack: Stack,
    pub dir: TempDir,
    pub http: reqwest::Client,
    /// The stack's configuration, to restart it on the same data directory.
    pub config: StackConfig,
}

/// A clock tests move by hand: the stack, its scheduler and the tokens the tests
/// issue all read it, so hours and days pass at once, without waiting.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock standing at the real current time.
    pub fn now() -> Self {
        Self(Arc::new(AtomicI64::new(clock::system()().unix_millis())))
    }

    /// The clock, as the stack takes it.
    pub fn clock(&self) -> Clock {
        let ms = self.0.clone();
        Arc::new(move || {
            Timestamp::from_unix_millis(ms.load(Ordering::SeqCst)).expect("a valid instant")
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(
            i64::try_from(by.as_millis()).expect("a short advance"),
            Ordering::SeqCst,
        );
    }
}

/// The config of a test stack: managed nats-server and HTTP on free ports.
pub fn config(dir: &TempDir) -> StackConfig {
    StackConfig {
        data_dir: dir.path().to_owned(),
        kek_pkcs11: None,
        nats: NatsChoice::Managed {
            port: None,
            binary: None,
            tls: None,
        },
        api: ApiSettings {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: api::ServerLimits::default(),
            config: ApiConfig {
                max_body_bytes: 256 * 1024,
                ..Default::default()
            },
            replicas: 1,
            tls: None,
            allow_plain_http: false,
            relay_changes: false,
        },
        log: LogSettings::default(),
        handler: HandlerConfig::default(),
        commands: true,
        scheduler_interval: std::time::Duration::from_millis(100),
        rotation: commands::secret::rotation::RotationSettings {
            interval: std::time::Duration::from_millis(100),
            step_timeout: std::time::Duration::from_secs(5),
            attempts: 2,
            retry_after: std::time::Duration::from_millis(300),
        },
        orders: Default::default(),
        checkpoints: Some(CheckpointSettings {
            interval: std::time::Duration::from_millis(100),
            ..keyledger::stack::default_checkpoints(dir.path(), &LogSettings::default().stream)
        }),
        projector: ProjectorConfig::default(),
        database_url: None,
        clock: clock::system(),
        identity: Default::default(),
        ops: Default::default(),
    }
}

/// An HTTP client, with rustls's crypto provider installed first (as the binary's
/// `main` does): reqwest asks rustls for the default one.
pub fn http() -> reqwest::Client {
    infra::tls::install_provider();
    // Pooled connections are dropped well before keyledger's idle timeout (60 s)
    // closes them, so a request is never sent on a connection the server is closing
    // at that moment (hyper's `UnexpectedMessage`).
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client")
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut StackConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&dir);
        adjust(&mut config);
        let stack = Stack::start(config.clone())
            .await
            .expect("the stack starts");
        Self {
            stack,
            dir,
            http: crate::support::http(),
            config,
        }
    }

    /// Stops every component, runs `while_down`, and starts them again on the same
    /// data directory, as after downtime.
    pub async fn restart(self, while_down: impl FnOnce()) -> Self {
        let Self {
            stack,
            dir,
            http,
            config,
        } = self;
        stack.stop().await;
        while_down();
        let stack = Stack::start(config.clone())
            .await
            .expect("the stack restarts");
        Self {
            stack,
            dir,
            http,
            config,
        }
    }

    /// The current time on the stack's clock.
    pub fn now(&self) -> Timestamp {
        (self.config.clock)()
    }

    /// A token for `user` in `project` with role admin.
    pub fn token(&self, user: &str, project: &str) -> String {
        self.token_with(user, project, &["admin"])
    }

    /// A development token for `user` in `project` with `roles`.
    pub fn token_with(&self, user: &str, project: &str, roles: &[&str]) -> String {
        self.token_as(user, project, roles, None)
    }

    /// A development token, optionally for a service, valid for ten minutes on the
    /// stack's clock.
    pub fn token_as(
        &self,
        user: &str,
        project: &str,
        roles: &[&str],
        service: Option<&str>,
    ) -> String {
        let principal = Principal {
            user: UserId::parse(user).unwrap(),
            project: ProjectId::parse(project).unwrap(),
            roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
            service: service.map(|s| ServiceName::parse(s).unwrap()),
        };
        self.stack
            .keys
            .issuer
            .issue(&principal, Duration::from_secs(600), self.now())
    }

    /// Every commit of secret `id`, in order, read from the stream: its chain, as
    /// every reader follows it (foreign messages on its subject left out).
    pub async fn commits_of(&self, id: &str) -> Vec<Commit<SecretEvent>> {
        let js = async_nats::jetstream::new(self.service_nats().await);
        let mut stream = js.get_stream("KEYLEDGER").await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut out: Vec<Commit<SecretEvent>> = Vec::new();
        for seq in 1..=last {
            let message = stream.get_raw_message(seq).await.unwrap();
            if message.subject.ends_with(id) {
                let head = out.last().map(domain::chain::Head::from);
                let judged = domain::chain::judge(
                    &message.subject,
                    &message.payload,
                    Some(&self.stack.keys.commit),
                    head.as_ref(),
                )
                .unwrap();
                if let domain::chain::Judged::Next(commit) = judged {
                    out.push(commit);
                }
            }
        }
        out
    }

    /// The data keys the log says secret `id`'s versions were sealed under, in order.
    pub async fn key_ids(&self, id: &str) -> Vec<domain::ids::KeyId> {
        self.commits_of(id)
            .await
            .iter()
            .flat_map(|c| c.body.events.iter())
            .filter_map(|e| match e {
                SecretEvent::PayloadStored(p) => Some(p.payload.key_id),
                _ => None,
            })
            .collect()
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

    /// A secret's metadata with keyledger's own fields (`reference`, `tags`,
    /// `owning_service`), which Barbican's shape leaves out unless asked for.
    pub async fn extended(&self, id: &str, token: &str) -> Value {
        let response = self
            .http
            .get(self.url(&format!("/v1/secrets/{id}")))
            .bearer_auth(token)
            .header("X-Keyledger-Extended", "true")
            .send()
            .await
            .expect("the API answers");
        json_of(response).await
    }

    /// A NATS connection as an outside client would make it: admitted by a token (of
    /// user `nats-client` in project p1) to the `CLIENTS` account, which may only send
    /// commands and receive its own replies. Commands still carry their own tokens.
    pub async fn client_nats(&self) -> async_nats::Client {
        self.client_nats_as(&self.token("nats-client", "p1")).await
    }

    /// A NATS connection admitted by `token`, with its principal's inbox prefix.
    pub async fn client_nats_as(&self, token: &str) -> async_nats::Client {
        infra::nats::connect_as_client(&self.stack.client_url, "test-client", token)
            .await
            .expect("connect as a client")
    }

    /// A NATS connection with keyledger's service credentials.
    pub async fn service_nats(&self) -> async_nats::Client {
        infra::nats::connect(&self.stack.service_url, "test")
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

    /// The read-only auditor's NATS URL.
    pub fn auditor_url(&self) -> String {
        self.stack
            .auditor_url
            .clone()
            .expect("a managed nats-server")
    }

    /// The file holding the checkpoint public key.
    pub fn checkpoint_public_key_file(&self) -> String {
        self.dir
            .path()
            .join("checkpoint.pub")
            .to_string_lossy()
            .into_owned()
    }

    /// Waits until a signed checkpoint covers at least `size` commits; returns it.
    pub async fn checkpointed(&self, size: u64) -> domain::checkpoint::SignedCheckpoint {
        let js = async_nats::jetstream::new(self.service_nats().await);
        let keys =
            domain::checkpoint::CheckpointVerifier::new(&[&self.stack.checkpoint_public_key])
                .unwrap();
        eventually(
            &format!("a checkpoint of {size} commits"),
            Duration::from_secs(10),
            || async {
                let latest = commands::log::checkpoints::latest(&js, &self.config.log.stream)
                    .await
                    .ok()??;
                // A note the stack's key did not sign is passed over, as the
                // checkpointer does: the next one is the stack's.
                let checkpoint = keys.open(&latest.note).ok()?;
                (checkpoint.size >= size).then_some(checkpoint)
            },
        )
        .await
    }

    /// Places an order over HTTP; returns its id.
    pub async fn place(&self, token: &str, body: Value) -> String {
        let r = self
            .http
            .post(self.url("/v1/orders"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let url = json_of(r).await["order_ref"].as_str().unwrap().to_owned();
        url.rsplit('/').next().unwrap().to_owned()
    }

    /// The order once it is no longer PENDING.
    pub async fn settled(&self, token: &str, id: &str) -> Value {
        eventually("the order to settle", Duration::from_secs(30), || async {
            let order = json_of(self.get(&format!("/v1/orders/{id}"), token).await).await;
            (order["status"] != "PENDING").then_some(order)
        })
        .await
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }
}

/// Runs `keyledger audit <args>`.
pub async fn audit(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyledger"))
            .arg("audit")
            .args(args)
            .env_remove("KEYLEDGER_NATS_URL")
            .env_remove("KEYLEDGER_COMMIT_KEY_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Owned arguments.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The JSON body of a response.
pub async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// The names of the checks a `/readyz` report says fail.
pub fn failing_checks(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .expect("a readiness report lists its checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect()
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
    ref_id(created, "secret_ref")
}

/// The id at the end of the reference in `object[field]` (`secret_ref`,
/// `container_ref`, `order_ref`).
pub fn ref_id(object: &Value, field: &str) -> String {
    object[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {object}"))
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("a time in range")
}

/// Asserts that the secret id `id` is a UUIDv7 led by a time in `from..=to` (Unix
/// ms): the id of a create whose command id keyledger (or its client) generated.
pub fn assert_time_led(id: &str, from: u64, to: u64) {
    let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 7, "{id} is not a UUIDv7");
    let (secs, nanos) = uuid.get_timestamp().expect("a v7 timestamp").to_unix();
    let ms = secs * 1000 + u64::from(nanos / 1_000_000);
    assert!((from..=to).contains(&ms), "{id}: {ms} not in {from}..={to}");
}

/// The event stream's state (messages, last sequence), as JetStream reports it.
pub async fn log_state(
    js: &async_nats::jetstream::Context,
) -> async_nats::jetstream::stream::State {
    js.get_stream(infra::log::DEFAULT_STREAM)
        .await
        .expect("the event stream exists")
        .info()
        .await
        .expect("the event stream's info")
        .state
        .clone()
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
    try_raw_command(nats, name, token, body)
        .await
        .expect("a reply")
}

/// [`raw_command`], or `None` when the request got no reply (no responders yet, as
/// while the command service resubscribes after a NATS restart; or a timeout).
pub async fn try_raw_command(
    nats: &async_nats::Client,
    name: &str,
    token: Option<&str>,
    body: &Value,
) -> Option<Value> {
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
        .ok()?;
    Some(serde_json::from_slice(&reply.payload).expect("reply is JSON"))
}

/// The forms a leaked canary could take.
pub fn needles(canary: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![
        canary.to_vec(),
        hex::encode(canary).into_bytes(),
        hex::encode_upper(canary).into_bytes(),
    ];
    // Base64 of the canary at each of the three alignments it could have inside a
    // longer encoded string; the middle of each encoding is stable.
    for shift in 0..3 {
        let mut padded = vec![b'#'; shift];
        padded.extend_from_slice(canary);
        for encoded in [STANDARD.encode(&padded), URL_SAFE_NO_PAD.encode(&padded)] {
            let core = &encoded.as_bytes()[4..encoded.len() - 4];
            out.push(core.to_vec());
        }
    }
    out
}

/// The forms a wrapped data key could take in a file: [`needles`] of its bytes, and
/// the base64 the key store keeps it in.
pub fn wrapped_key_needles(wrapped: &[u8]) -> Vec<Vec<u8>> {
    let mut out = needles(wrapped);
    out.push(STANDARD.encode(wrapped).into_bytes());
    out
}

/// Waits until the key store has no data key `key` of `secret` (it was destroyed).
pub async fn key_destroyed(
    store: &infra::keystore::KeyStore,
    project: &ProjectId,
    secret: domain::ids::SecretId,
    key: domain::ids::KeyId,
    within: Duration,
) {
    eventually("the data key to be destroyed", within, || async {
        store
            .get(project, secret, key)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files under `dir` that hold any of `needles`.
pub fn files_holding(dir: &Path, needles: &[Vec<u8>]) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            needles.iter().any(|n| contains(&bytes, n))
        })
        .collect()
}
