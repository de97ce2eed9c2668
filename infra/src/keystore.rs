//! The key store: wrapped data keys in a JetStream KV bucket, outside the event log.
//!
//! Keys are named `<project>.<secret>.<key id>`. Destroying a key erases its message
//! with JetStream's secure delete, which overwrites the stored bytes on disk: with the
//! wrapped key gone from every file, the ciphertext in the immutable log can no longer
//! be opened by anyone, even with the KEK and a copy of the data directory
//! (crypto-shredding; `tests/lifecycle.rs` searches the files to prove it).

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use domain::ids::{KeyId, ProjectId, SecretId};

use crate::batch::{BatchStats, Batcher, Resend, Write};
use crate::envelope::WrappedKey;

/// Why the key store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// NATS or JetStream failed; retrying later may work.
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
    /// An entry is not what keyledger stored there: only keyledger writes the key
    /// store, so it was altered or overwritten behind its back.
    #[error(
        "the key store entry of {0} is not what keyledger stored there: it was tampered with \
         (altered or overwritten); restore the key store from a backup"
    )]
    Tampered(String),
}

/// How long a read of a data key keeps retrying JetStream's "unavailable" answers.
const READ_RETRY_BUDGET: Duration = Duration::from_secs(3);

fn unavailable(e: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Unavailable(e.to_string())
}

/// Wrapped data keys, by project, secret and key id.
#[derive(Debug, Clone)]
pub struct KeyStore {
    kv: kv::Store,
    /// For a store that writes data keys: their KEK is confirmed current first.
    lease: Option<std::sync::Arc<crate::kek::current::Lease>>,
    /// For a store that writes many data keys at once: puts that arrive together share
    /// one atomic batch, and so its fsyncs ([`crate::batch`]).
    writer: Option<Batcher>,
}

fn entry_name(project: &ProjectId, secret: SecretId, key: KeyId) -> String {
    format!("{project}.{secret}.{key}")
}

impl KeyStore {
    /// A key store over the bucket `kv`.
    pub fn new(kv: kv::Store) -> Self {
        Self {
            kv,
            lease: None,
            writer: None,
        }
    }

    /// A store that writes a data key only while its KEK is confirmed current.
    pub fn with_lease(kv: kv::Store, lease: crate::kek::current::Lease) -> Self {
        Self {
            kv,
            lease: Some(std::sync::Arc::new(lease)),
            writer: None,
        }
    }

    /// This store, putting keys through a group-commit writer on `js` (the command
    /// service's: many creates at once). A bucket reached through a JetStream domain
    /// prefix keeps putting one key at a time.
    pub fn batched(self, js: Context) -> Self {
        let writer = (!self.kv.use_jetstream_prefix)
            .then(|| Batcher::new(js, "keys", Resend::IfNothingStored));
        Self { writer, ..self }
    }

    /// What its group-commit writer has done so far, if it has one.
    pub fn writer_stats(&self) -> Option<BatchStats> {
        self.writer.as_ref().map(Batcher::stats)
    }

    /// Stores a wrapped key. Must complete before the commit that references it.
    pub async fn put(
        &self,
        project: &ProjectId,
        secret: SecretId,
        key: KeyId,
        wrapped: &WrappedKey,
    ) -> Result<(), KeyStoreError> {
        if let Some(lease) = &self.lease {
            lease.confirm(&wrapped.kek_id).await.map_err(unavailable)?;
        }
        let value = serde_json::to_vec(wrapped).map_err(unavailable)?;
        let name = entry_name(project, secret, key);
        let Some(writer) = &self.writer else {
            return self
                .kv
                .put(name, value.into())
                .await
                .map(|_| ())
                .map_err(unavailable);
        };
        let prefix = self.kv.put_prefix.as_ref().unwrap_or(&self.kv.prefix);
        let write = Write {
            subject: format!("{prefix}{name}"),
            headers: async_nats::HeaderMap::new(),
            payload: value.into(),
        };
        writer.write(write).await.map(|_| ()).map_err(unavailable)
    }

    /// The wrapped key, or `None` if it was never stored or has been destroyed.
    pub async fn get(
        &self,
        project: &ProjectId,
        secret: SecretId,
        key: KeyId,
    ) -> Result<Option<WrappedKey>, KeyStoreError> {
        let name = entry_name(project, secret, key);
        // JetStream answers "temporarily unavailable" for a moment while a node that
        // hung or restarted catches up, or a leader is elected; a read then is
        // retried, briefly, rather than failing while two healthy nodes could answer.
        let mut retries = crate::nats::Retries::within(READ_RETRY_BUDGET);
        let found = loop {
            match self.find(&name).await {
                Err(e @ KeyStoreError::Unavailable(_)) => {
                    tracing::warn!(error = %e, "reading a data key failed; retrying");
                    if !retries.pause().await {
                        return Err(e);
                    }
                }
                found => break found?,
            }
        };
        let Some(bytes) = found else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|_| {
            tracing::error!(key = %key, "a key store entry is not a wrapped key: tampered with");
            KeyStoreError::Tampered(format!("data key {key}"))
        })
    }

    /// The entry `name`, from any replica or else from the leader.
    async fn find(&self, name: &str) -> Result<Option<bytes::Bytes>, KeyStoreError> {
        match self.kv.get(name).await {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) => Ok(self.leader_entry(name).await?.map(|(_, bytes)| bytes)),
            Err(e) => Err(unavailable(format!("reading from a replica: {e}"))),
        }
    }

    /// An entry's stored revision and value as the bucket's stream leader holds it;
    /// `None` if it has none or was deleted or purged.
    ///
    /// Reads go through JetStream's direct gets, which any replica of a replicated
    /// bucket may answer, and a follower can lag behind a put acknowledged a moment
    /// ago. So a read that would conclude a key is missing (destroyed: the payload is
    /// gone) asks the leader first, and a destroy finds what to erase there: a lagging
    /// follower must never turn a shred into a no-op.
    async fn leader_entry(&self, name: &str) -> Result<Option<(u64, bytes::Bytes)>, KeyStoreError> {
        let subject = format!("{}{name}", self.kv.prefix);
        match self
            .kv
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => {
                let headers = &message.headers;
                let gone = headers
                    .get("KV-Operation")
                    .is_some_and(|op| op.as_str() != "PUT")
                    || headers.get("Nats-Marker-Reason").is_some();
                Ok((!gone).then_some((message.sequence, message.payload)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(format!("reading from the leader: {e}"))),
        }
    }

    /// Another kind of entry (e.g. `ca.local`), as raw bytes.
    pub async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, KeyStoreError> {
        Ok(self
            .kv
            .get(name)
            .await
            .map_err(unavailable)?
            .map(|b| b.to_vec()))
    }

    /// Creates an entry unless it exists; whether this call created it.
    pub async fn create_blob(&self, name: &str, bytes: Vec<u8>) -> Result<bool, KeyStoreError> {
        match self.kv.create(name, bytes.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Destroys a wrapped key. Idempotent: destroying a missing key does nothing.
    ///
    /// The message is erased (JetStream overwrites it with random bytes on disk), not
    /// just purged, which would only drop it from the index and leave its bytes in the
    /// store's block files until they happen to be compacted.
    pub async fn destroy(
        &self,
        project: &ProjectId,
        secret: SecretId,
        key: KeyId,
    ) -> Result<(), KeyStoreError> {
        let name = entry_name(project, secret, key);
        let Some((revision, _)) = self.leader_entry(&name).await? else {
            return Ok(());
        };
        match self.kv.stream.delete_message(revision).await {
            Ok(_) => Ok(()),
            // Erased meanwhile by another destroy of the same key (the command's own
            // and the shredder's may run together): done.
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::DeleteMessageErrorKind::JetStream(ref j)
                        if j.error_code() == async_nats::jetstream::ErrorCode::SEQUENCE_NOT_FOUND
                ) =>
            {
                Ok(())
            }
            Err(e) => {
                // A bucket created by an earlier keyledger forbids deletes: purge, which
                // still makes the key unreadable, and say that its bytes may linger.
                tracing::warn!(
                    error = %e,
                    "the key bucket refuses secure erase (created by an older keyledger?); \
                     purging instead. Recreate the bucket to erase key bytes from disk"
                );
                self.kv.purge(name).await.map_err(unavailable)
            }
        }
    }
}

/// The key-store entry of the local CA.
pub const LOCAL_CA_ENTRY: &str = "ca.local";

/// What the local CA keeps in the key store: its key sealed under the KEK, its
/// certificate in the clear (the order worker's CA writes it; the API serves the
/// certificate).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct LocalCaEntry {
    /// The CA's private key, sealed.
    pub key: domain::secret::payload::SealedPayload,
    /// The data key that sealed it, wrapped by the KEK.
    pub wrapped: crate::envelope::WrappedKey,
    /// The CA's certificate, PEM.
    pub certificate: String,
}

/// The local CA's certificate, PEM, if it has been created.
pub async fn local_ca_certificate(keys: &KeyStore) -> Result<Option<String>, KeyStoreError> {
    let Some(bytes) = keys.get_blob(LOCAL_CA_ENTRY).await? else {
        return Ok(None);
    };
    serde_json::from_slice::<LocalCaEntry>(&bytes)
        .map(|s| Some(s.certificate))
        .map_err(|_| KeyStoreError::Tampered(format!("the local CA ({LOCAL_CA_ENTRY})")))
}

impl From<KeyStoreError> for domain::Rejection {
    fn from(e: KeyStoreError) -> Self {
        match e {
            KeyStoreError::Unavailable(_) => {
                domain::Rejection::unavailable(format!("{e}; retry shortly"))
            }
            KeyStoreError::Tampered(_) => domain::Rejection::internal(e.to_string()),
        }
    }
}
