//! Signed checkpoints of the event stream: every `interval`, if the log has grown, the
//! command service signs the RFC 6962 Merkle root of all commits so far with an
//! Ed25519 key kept in a file (never in NATS) and appends the note to the stream
//! `KEYLEDGER_CHECKPOINTS`.
//!
//! The service keeps only the tree's right edge ([`MerkleLog::compact`]) and reads
//! only the commits appended since its last checkpoint. Each checkpoint message
//! carries that right edge in a header, so a restarted service resumes from the last
//! checkpoint instead of rehashing the whole log; the edge is trusted only if it
//! hashes to the signed root. Replicas publish with the checkpoint subject's expected
//! last sequence, so the checkpoint stream only grows, one checkpoint per size.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self, Context};
use domain::checkpoint::{CheckpointSigner, CheckpointVerifier};
use domain::merkle::{MerkleHash, MerkleLog};
use tokio_util::sync::CancellationToken;

use crate::audit::read_log;
use crate::clock::Clock;
use crate::keyfile::{self, KeyFileError};

/// The stream checkpoints are kept in.
pub const STREAM: &str = "KEYLEDGER_CHECKPOINTS";
/// Their subject.
pub const SUBJECT: &str = "keyledger.checkpoints";
/// Header carrying the tree's right edge (base64 hashes, comma-separated).
const FRONTIER_HEADER: &str = "Keyledger-Frontier";

/// Why checkpoints cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The signing key file.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The key's name.
    #[error(transparent)]
    Key(#[from] domain::checkpoint::CheckpointError),
    /// The public key file could not be written.
    #[error("writing the checkpoint public key {path}: {source}")]
    PublicKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// NATS failed.
    #[error("checkpoints: {0}")]
    Nats(String),
    /// The log does not continue the checkpoints already made.
    #[error("checkpoints stopped: {0}")]
    Log(String),
}

fn nats(e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Nats(e.to_string())
}

/// Where the checkpoint key is and how often to sign.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// The Ed25519 key (32 random bytes, hex, mode 0600), created on first use. The
    /// public key is written next to it, with the extension `.pub`.
    pub key_file: PathBuf,
    /// The key's name, also the checkpoints' origin.
    pub name: String,
    /// How often to look for new commits.
    pub interval: Duration,
}

impl CheckpointSettings {
    /// Where the public key is written.
    pub fn public_key_file(&self) -> PathBuf {
        self.key_file.with_extension("pub")
    }
}

/// Loads (or creates) the signing key and writes its public key file.
pub fn load_signer(settings: &CheckpointSettings) -> Result<CheckpointSigner, CheckpointError> {
    let seed = keyfile::load_or_create(&settings.key_file, 32)?;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&seed);
    let signer = CheckpointSigner::new(&settings.name, &bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    let signer = signer?;
    let public = settings.public_key_file();
    let line = format!("{}\n", signer.public_key());
    if std::fs::read_to_string(&public).ok().as_deref() != Some(&line) {
        std::fs::write(&public, line).map_err(|source| CheckpointError::PublicKey {
            path: public.clone(),
            source,
        })?;
    }
    Ok(signer)
}

/// Creates the checkpoint stream if it does not exist.
pub async fn ensure_stream(js: &Context, replicas: usize) -> Result<(), CheckpointError> {
    js.get_or_create_stream(stream::Config {
        name: STREAM.into(),
        description: Some("keyledger signed checkpoints of the event stream".into()),
        subjects: vec![SUBJECT.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(nats)
}

/// The checkpoint stream, if it exists.
async fn stream(js: &Context) -> Result<Option<jetstream::stream::Stream>, CheckpointError> {
    match js.get_stream(STREAM).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            _ => Err(nats(e)),
        },
    }
}

/// Every checkpoint note, oldest first, with its sequence in the checkpoint stream.
/// An absent stream holds none.
pub async fn read_all(js: &Context) -> Result<Vec<(u64, String)>, CheckpointError> {
    if stream(js).await?.is_none() {
        return Ok(Vec::new());
    }
    let mut notes = Vec::new();
    read_log(js, STREAM, None, 1, |m| {
        notes.push((m.seq, String::from_utf8_lossy(&m.payload).into_owned()));
        true
    })
    .await
    .map_err(nats)?;
    Ok(notes)
}

/// A checkpoint as stored.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    /// Its sequence in the checkpoint stream.
    pub seq: u64,
    /// The signed note.
    pub note: String,
    /// The tree's right edge, as the header carries it.
    frontier: Option<String>,
}

/// The latest checkpoint, if any.
pub async fn latest(js: &Context) -> Result<Option<StoredCheckpoint>, CheckpointError> {
    let Some(stream) = stream(js).await? else {
        return Ok(None);
    };
    let message = match stream.get_last_raw_message_by_subject(SUBJECT).await {
        Ok(m) => m,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(nats(e)),
    };
    Ok(Some(StoredCheckpoint {
        seq: message.sequence,
        note: String::from_utf8_lossy(&message.payload).into_owned(),
        frontier: message
            .headers
            .get(FRONTIER_HEADER)
            .map(|v| v.as_str().to_owned()),
    }))
}

/// The last checkpoint published: its sequence in the checkpoint stream, size, and
/// the tree's right edge if its header holds one that hashes to the signed root.
struct Last {
    seq: u64,
    size: u64,
    tree: Option<MerkleLog>,
}

/// Makes and publishes checkpoints of one event stream.
pub struct Checkpointer {
    js: Context,
    log_stream: String,
    signer: CheckpointSigner,
    clock: Clock,
    tree: MerkleLog,
    /// The checkpoint stream's last sequence, and the size it covers.
    last_seq: u64,
    published: u64,
}

impl Checkpointer {
    /// Resumes from the last checkpoint (or from the log's start).
    pub async fn resume(
        js: Context,
        log_stream: &str,
        signer: CheckpointSigner,
        clock: Clock,
    ) -> Result<Self, CheckpointError> {
        let mut this = Self {
            js,
            log_stream: log_stream.to_owned(),
            signer,
            clock,
            tree: MerkleLog::compact(),
            last_seq: 0,
            published: 0,
        };
        if let Some(last) = this.last().await? {
            this.last_seq = last.seq;
            this.published = last.size;
            match last.tree {
                Some(tree) => this.tree = tree,
                None => tracing::warn!(
                    size = last.size,
                    "checkpoints: the last checkpoint is not this key's or has no usable right \
                     edge; rehashing the log from its start"
                ),
            }
        }
        Ok(this)
    }

    /// How many commits the tree holds (before the next [`tick`](Self::tick)).
    pub fn covered(&self) -> u64 {
        self.tree.size()
    }

    async fn last(&self) -> Result<Option<Last>, CheckpointError> {
        let Some(message) = latest(&self.js).await? else {
            return Ok(None);
        };
        let ours = CheckpointVerifier::new(&[self.signer.public_key()])?;
        let Ok(checkpoint) = ours.open(&message.note) else {
            // Another key's checkpoint: its size is still the one to exceed.
            let size = domain::checkpoint::claimed_size(&message.note).unwrap_or(0);
            return Ok(Some(Last {
                seq: message.seq,
                size,
                tree: None,
            }));
        };
        let tree = message
            .frontier
            .as_deref()
            .and_then(parse_frontier)
            .and_then(|edge| MerkleLog::from_frontier(checkpoint.size, edge).ok())
            .filter(|tree| tree.root() == checkpoint.root);
        Ok(Some(Last {
            seq: message.seq,
            size: checkpoint.size,
            tree,
        }))
    }

    /// Reads the commits appended since the last look and, if the log grew past the
    /// last checkpoint, publishes a new one. Returns the size of the log now signed.
    pub async fn tick(&mut self) -> Result<u64, CheckpointError> {
        let mut gap = None;
        let tree = &mut self.tree;
        let end = read_log(&self.js, &self.log_stream, None, tree.size() + 1, |m| {
            if m.seq != tree.size() + 1 {
                gap = Some(m.seq);
                return false;
            }
            tree.append(&m.payload);
            true
        })
        .await
        .map_err(nats)?;
        if let Some(seq) = gap {
            return Err(CheckpointError::Log(format!(
                "the log skips from sequence {} to {seq}; run keyledger audit verify",
                self.tree.size()
            )));
        }
        if end < self.published {
            return Err(CheckpointError::Log(format!(
                "the log ends at sequence {end} but a checkpoint covers {} commits: commits \
                 were removed; run keyledger audit verify",
                self.published
            )));
        }
        while self.tree.size() > self.published {
            let note = self
                .signer
                .sign(self.tree.size(), self.tree.root(), (self.clock)());
            let message = PublishMessage::build()
                .payload(note.into_bytes().into())
                .header(FRONTIER_HEADER, format_frontier(&self.tree.frontier()))
                .expected_last_subject_sequence(self.last_seq);
            let ack = match self.js.send_publish(SUBJECT, message).await {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => {
                    self.last_seq = ack.sequence;
                    self.published = self.tree.size();
                    tracing::debug!(size = self.published, "checkpoint signed");
                }
                // Another replica published first: take its place in the stream and
                // publish again only if this tree is larger.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    let last = self.last().await?.ok_or_else(|| {
                        nats("the checkpoint stream refused a publish but holds no checkpoint")
                    })?;
                    self.last_seq = last.seq;
                    self.published = last.size;
                }
                Err(e) => return Err(nats(e)),
            }
        }
        Ok(self.published)
    }

    /// Checkpoints every `interval` until `shutdown`. Failures are logged and retried
    /// at the next interval: the command path never waits on checkpoints.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(e) = self.tick().await {
                tracing::error!("{e}");
            }
        }
    }
}

fn format_frontier(edge: &[MerkleHash]) -> String {
    edge.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_frontier(header: &str) -> Option<Vec<MerkleHash>> {
    if header.is_empty() {
        return Some(Vec::new());
    }
    header
        .split(',')
        .map(|h| MerkleHash::parse_hash(h).ok())
        .collect()
}
