//! Access records: every payload read, allowed or denied, appended to a stream of its
//! own (`KEYLEDGER_ACCESS`), apart from the event stream. Records are batched: a
//! writer task takes every record waiting, publishes them as one message, and answers
//! all their readers once JetStream has acknowledged (stored) it. In `required` mode a
//! read whose record cannot be stored gets 503, never the payload.
//!
//! Each batch carries an authenticator under the commit key (header
//! `Keyledger-Mac`), so a record published behind keyledger's back is told from its
//! own (`keyledger audit access --commit-key-file`).

use infra::metrics::{ACCESS_RECORD_BATCHES, ACCESS_RECORDS};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// The access stream's name.
pub const STREAM: &str = "KEYLEDGER_ACCESS";
/// The subject batches are published on.
pub const SUBJECT: &str = domain::subject::ACCESS_RECORDS;
/// The header carrying a batch's authenticator.
pub const MAC_HEADER: &str = "Keyledger-Mac";
/// Keeps access-record authenticators apart from commits'.
pub const MAC_CONTEXT: &[u8] = b"keyledger/access-mac/v1\0";

/// Whether the batch `body` stored with `headers` was written by keyledger.
pub fn authentic(
    key: &domain::commit::CommitKey,
    headers: Option<&async_nats::HeaderMap>,
    body: &[u8],
) -> bool {
    headers
        .and_then(|h| h.get(MAC_HEADER))
        .and_then(|v| domain::commit::Digest::from_hex(v.as_str()))
        .is_some_and(|mac| key.verifies_bytes(MAC_CONTEXT, body, &mac))
}

/// What happens when a record cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// The payload is not returned (503).
    #[default]
    Required,
    /// The payload is returned and the failure logged.
    BestEffort,
}

/// One payload read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// When (RFC 3339).
    pub at: String,
    /// Who (the token's user).
    pub user: String,
    /// The caller's project.
    pub project: String,
    /// The caller's service, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The access key the request was signed with (AWS's API), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The secret read.
    pub secret: String,
    /// The version read, when allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Whether the read was allowed.
    pub allowed: bool,
    /// Why it was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

type Pending = (AccessRecord, oneshot::Sender<Result<(), NotStored>>);

/// Why a batch of access records was not stored.
#[derive(Debug, Clone, thiserror::Error)]
enum NotStored {
    /// The batch could not be published (or encoded).
    #[error("publishing the access records failed: {0}")]
    Publish(String),
    /// JetStream did not acknowledge it in time.
    #[error("no acknowledgement within 5 s")]
    Unacknowledged,
    /// JetStream refused it.
    #[error("JetStream refused the access records: {0}")]
    Refused(String),
    /// The writer task is gone.
    #[error("the access writer stopped")]
    WriterStopped,
}

/// Appends access records, batched.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Pending>,
    mode: AccessMode,
}

/// Most records in one message.
const BATCH: usize = 512;

/// Creates (or checks) the access stream: file storage, nothing deleted or purged.
pub async fn ensure_stream(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<(), async_nats::Error> {
    let mut stream = js
        .get_or_create_stream(stream::Config {
            name: STREAM.into(),
            description: Some(
                "keyledger access records: every payload read, allowed or denied".into(),
            ),
            subjects: vec![domain::subject::ACCESS_WILDCARD.into()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            deny_delete: true,
            deny_purge: true,
            // Auditors read it with direct gets, the only API their account reaches.
            allow_direct: true,
            ..Default::default()
        })
        .await?;
    let mut config = stream.info().await?.config.clone();
    if !config.allow_direct {
        config.allow_direct = true;
        js.update_stream(config).await?;
    }
    Ok(())
}

/// How long a batch keeps being offered to JetStream while it answers "unavailable"
/// (a node catching up after a hang or a restart, a leader being elected).
const RETRY_BUDGET: Duration = Duration::from_secs(3);

/// Publishes one batch and waits for its acknowledgement. A refusal or a failed
/// publish is retried, with the same message id so that JetStream stores the batch
/// once even if an earlier attempt's acknowledgement was lost; a batch that got no
/// acknowledgement in 5 s is not (the read waiting on it has waited long enough).
async fn store(
    js: &jetstream::Context,
    key: &domain::commit::CommitKey,
    body: bytes::Bytes,
) -> Result<(), NotStored> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        MAC_HEADER,
        key.mac_bytes(MAC_CONTEXT, &body).to_hex().as_str(),
    );
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        uuid::Uuid::new_v4().to_string().as_str(),
    );
    let mut retries = infra::nats::Retries::within(RETRY_BUDGET);
    loop {
        let outcome = match js
            .publish_with_headers(SUBJECT, headers.clone(), body.clone())
            .await
        {
            Err(e) => Err(NotStored::Publish(e.to_string())),
            Ok(ack) => match tokio::time::timeout(Duration::from_secs(5), ack).await {
                Err(_) => return Err(NotStored::Unacknowledged),
                Ok(r) => r.map(|_| ()).map_err(|e| NotStored::Refused(e.to_string())),
            },
        };
        let Err(e) = outcome else { return Ok(()) };
        tracing::warn!(error = %e, "storing access records failed; retrying");
        if !retries.pause().await {
            return Err(e);
        }
    }
}

impl AccessLog {
    /// Starts the writer task on `js`, authenticating batches with `key`.
    pub fn start(
        js: jetstream::Context,
        mode: AccessMode,
        key: std::sync::Arc<domain::commit::CommitKey>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(8 * BATCH);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let records: Vec<&AccessRecord> = batch.iter().map(|(r, _)| r).collect();
                // The acknowledgement is awaited before the next batch is taken: while one
                // batch is being stored, the next one grows. (Sending batches without
                // waiting makes them small, and each costs a disk sync: slower.)
                let outcome = match serde_json::to_vec(&records) {
                    Err(e) => Err(NotStored::Publish(e.to_string())),
                    Ok(body) => store(&js, &key, body.into()).await,
                };
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, records = batch.len(), "access records were not stored");
                }
                let result = if outcome.is_ok() { "ok" } else { "failed" };
                metrics::counter!(ACCESS_RECORD_BATCHES, "outcome" => result).increment(1);
                metrics::counter!(ACCESS_RECORDS, "outcome" => result)
                    .increment(batch.len() as u64);
                for (_, done) in batch {
                    let _ = done.send(outcome.clone());
                }
            }
        });
        Self { tx, mode }
    }

    /// Stores `record`. In `required` mode a failure is a 503 the caller must return
    /// instead of the payload.
    pub async fn record(&self, record: AccessRecord) -> Result<(), ApiError> {
        let (done, wait) = oneshot::channel();
        if self.mode == AccessMode::BestEffort {
            // Nobody waits for a best-effort record; a failure is logged by the writer.
            if self.tx.try_send((record, done)).is_err() {
                tracing::warn!("an access record was dropped (best-effort mode, writer busy)");
                metrics::counter!(ACCESS_RECORDS, "outcome" => "failed").increment(1);
            }
            drop(wait);
            return Ok(());
        }
        let stored = match self.tx.send((record, done)).await {
            Ok(()) => wait.await.unwrap_or(Err(NotStored::WriterStopped)),
            Err(_) => Err(NotStored::WriterStopped),
        };
        match (stored, self.mode) {
            (Ok(()), _) => Ok(()),
            (Err(e), AccessMode::BestEffort) => {
                tracing::warn!(error = %e, "an access record was not stored (best-effort mode)");
                Ok(())
            }
            (Err(e), AccessMode::Required) => {
                tracing::error!(error = %e, "an access record was not stored; refusing the read");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the access record of this read could not be stored, so the payload is not \
                     returned (access records are required); retry shortly",
                )
                .retry_after(1))
            }
        }
    }
}
