//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use infra::client::CommandClient;
use infra::clock::Clock;
use infra::envelope::Envelope;
use infra::identity::Verifier;
use infra::keystore::KeyStore;
use projections::read::ReadModel;

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base of the URLs in responses (`secret_ref`, `next`); when `None`, taken from
    /// the request's `Host` header.
    pub public_url: Option<String>,
    /// How long a write waits for the read model to show it, and the longest a read
    /// waits for a sequence named in `X-Keyledger-Min-Seq`.
    pub consistency_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest a request body may take to arrive (408 after it).
    pub body_timeout: Duration,
    /// The event stream history is read from.
    pub stream: String,
    /// Whether a payload read needs its access record stored.
    pub access_mode: crate::access_log::AccessMode,
    /// How long placing an order waits for it to be ACTIVE or ERROR before answering
    /// 202 anyway (Barbican's clients read the order right after placing it).
    pub order_wait: Duration,
    /// Who verified client certificates stand for (mutual TLS); `None`: a
    /// certificate alone authenticates nobody.
    pub client_principals: Option<std::sync::Arc<crate::client_cert::CertPrincipals>>,
    /// Whether the API serves HTTPS: the scheme of the links it writes (without
    /// `public_url`).
    pub https: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            consistency_timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            stream: infra::log::DEFAULT_STREAM.to_owned(),
            access_mode: crate::access_log::AccessMode::Required,
            order_wait: Duration::from_secs(10),
            client_principals: None,
            https: false,
        }
    }
}

/// Shared state of the API: one allocation, so the clone every handler's `State`
/// extractor makes is one reference count, not a copy of each client inside.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of an API over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the API's handlers share.
pub struct Shared {
    /// Queries.
    pub read: ReadModel,
    /// Sends writes as commands over NATS.
    pub commands: CommandClient,
    /// Verifies bearer tokens.
    pub verifier: Verifier,
    /// Opens payloads.
    pub envelope: Arc<Envelope>,
    /// Wrapped data keys.
    pub keys: KeyStore,
    /// The same, cached for payload reads.
    pub wrapped_keys: crate::key_cache::KeyCache,
    /// JetStream, for reading history from the log.
    pub js: async_nats::jetstream::Context,
    /// Tells the commits keyledger wrote from foreign messages.
    pub commit_key: Arc<domain::commit::CommitKey>,
    /// Where every payload read is recorded.
    pub access_log: crate::access_log::AccessLog,
    /// Reads that scan (history, listings) in progress, bounded.
    pub costly: Arc<crate::costly::Costly>,
    /// Verifies AWS signatures and hands their principals to the command service.
    pub aws: crate::aws::AwsKeys,
    /// The current time.
    pub clock: Clock,
    /// This process's readiness checks (`/readyz`).
    pub health: infra::health::Health,
    /// Settings.
    pub config: Arc<ApiConfig>,
}
