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
//!
//! The checkpointer holds the commit key too: each checkpoint names the messages it
//! adds that keyledger did not write (`foreign` line), so an auditor with only the
//! public key learns which messages every reader ignored.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind};
use bytes::Bytes;
use domain::audit::RawEvent;
use domain::checkpoint::{CheckpointSigner, CheckpointVerifier, Foreign};
use domain::commit::{Commit, CommitKey};
use domain::merkle::{MerkleHash, MerkleLog};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use infra::audit::{last_message, read_log};
use infra::clock::Clock;
use infra::keyfile::{self, KeyFileError};

/// The stream checkpoints are kept in.
pub const STREAM: &str = "KEYLEDGER_CHECKPOINTS";
use domain::subject::CHECKPOINTS_WILDCARD as SUBJECTS;
pub use domain::subject::checkpoint_subject as subject;

/// Header carrying the tree's right edge (base64 hashes, comma-separated).
const FRONTIER_HEADER: &str = "Keyledger-Frontier";
/// How many notes back a restarted checkpointer looks for its own latest one.
const LOOK_BACK: usize = 1000;

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

/// Creates the checkpoint stream if it does not exist; one made by an earlier
/// keyledger (one subject for every log) is given the per-log subjects.
pub async fn ensure_stream(js: &Context, replicas: usize) -> Result<(), CheckpointError> {
    let mut stream = js
        .get_or_create_stream(stream::Config {
            name: STREAM.into(),
            description: Some("keyledger signed checkpoints of the event streams".into()),
            subjects: vec![SUBJECTS.into()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut config = stream.info().await.map_err(nats)?.config.clone();
    if !config.subjects.iter().any(|s| s == SUBJECTS) {
        config.subjects.push(SUBJECTS.into());
        js.update_stream(config).await.map_err(nats)?;
    }
    Ok(())
}

/// Every checkpoint note of the event stream `log_stream`, oldest first, with its
/// sequence in the checkpoint stream. An absent stream holds none.
pub async fn read_all(
    js: &Context,
    log_stream: &str,
) -> Result<Vec<(u64, String)>, CheckpointError> {
    let mut notes = Vec::new();
    let read = read_log(js, STREAM, Some(subject(log_stream)), 1, |m| {
        notes.push((m.seq, String::from_utf8_lossy(&m.payload).into_owned()));
        true
    })
    .await;
    match read {
        Err(e) if e.is_absent() => Ok(Vec::new()),
        Err(e) => Err(nats(e)),
        Ok(_) => Ok(notes),
    }
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

/// The latest checkpoint of the event stream `log_stream`, if any.
pub async fn latest(
    js: &Context,
    log_stream: &str,
) -> Result<Option<StoredCheckpoint>, CheckpointError> {
    let message = match last_message(js, STREAM, &subject(log_stream)).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e) if e.is_absent() => return Ok(None),
        Err(e) => return Err(nats(e)),
    };
    Ok(Some(StoredCheckpoint {
        seq: message.seq,
        note: String::from_utf8_lossy(&message.payload).into_owned(),
        frontier: message
            .headers
            .as_ref()
            .and_then(|h| h.get(FRONTIER_HEADER))
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
    subject: String,
    signer: CheckpointSigner,
    commit_key: CommitKey,
    clock: Clock,
    tree: MerkleLog,
    /// Foreign messages in the tree that no checkpoint has named yet.
    foreign: Foreign,
    /// The checkpoint stream's last sequence, and the size it covers.
    last_seq: u64,
    published: u64,
}

/// Commits another reader in this process has read from the log (the projector),
/// handed on in batches, each batch in sequence order: `(sequence, bytes as stored)`.
/// The checkpointer adds those that continue its tree and reads the rest from the log
/// itself, so a batch missed or left out costs a read, never a commit.
pub type Feed = BoxStream<'static, Vec<(u64, Bytes)>>;

impl Checkpointer {
    /// Resumes from the last checkpoint (or from the log's start).
    pub async fn resume(
        js: Context,
        log_stream: &str,
        signer: CheckpointSigner,
        commit_key: CommitKey,
        clock: Clock,
    ) -> Result<Self, CheckpointError> {
        let mut this = Self {
            js,
            log_stream: log_stream.to_owned(),
            subject: subject(log_stream),
            signer,
            commit_key,
            clock,
            tree: MerkleLog::compact(),
            foreign: Foreign::default(),
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

    /// The root of the tree it holds.
    pub fn root(&self) -> MerkleHash {
        self.tree.root()
    }

    /// Where the checkpoint subject stands: its last message (what the next publish
    /// expects), and this key's latest checkpoint. A note this key did not sign (another
    /// key's, or one written behind keyledger's back) is passed over, never trusted for
    /// its size: it could claim anything.
    async fn last(&self) -> Result<Option<Last>, CheckpointError> {
        let Some(latest) = latest(&self.js, &self.log_stream).await? else {
            return Ok(None);
        };
        let mut at = Some(latest.clone());
        let mut looked = 0;
        while let Some(stored) = at {
            if let Some(checkpoint) = self.ours(&stored.note)? {
                let tree = stored
                    .frontier
                    .as_deref()
                    .and_then(parse_frontier)
                    .and_then(|edge| MerkleLog::from_frontier(checkpoint.size, edge).ok())
                    .filter(|tree| tree.root() == checkpoint.root);
                return Ok(Some(Last {
                    seq: latest.seq,
                    size: checkpoint.size,
                    tree,
                }));
            }
            tracing::warn!(
                seq = stored.seq,
                subject = %self.subject,
                "checkpoints: a note this key did not sign; passed over (another key's, or \
                 written behind keyledger's back: run keyledger audit verify)"
            );
            looked += 1;
            at = if looked < LOOK_BACK {
                self.earlier(stored.seq).await?
            } else {
                None
            };
        }
        Ok(Some(Last {
            seq: latest.seq,
            size: 0,
            tree: None,
        }))
    }

    /// The checkpoint in `note`, if this key signed it.
    fn ours(
        &self,
        note: &str,
    ) -> Result<Option<domain::checkpoint::SignedCheckpoint>, CheckpointError> {
        Ok(CheckpointVerifier::new(&[self.signer.public_key()])?
            .open(note)
            .ok())
    }

    /// The checkpoint of this log stored before `seq` in the checkpoint stream.
    async fn earlier(&self, seq: u64) -> Result<Option<StoredCheckpoint>, CheckpointError> {
        let stream = self.js.get_stream_no_info(STREAM).await.map_err(nats)?;
        for s in (1..seq).rev().take(LOOK_BACK) {
            let message = match stream.direct_get(s).await {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
                Err(e) => return Err(nats(e)),
            };
            if message.subject.as_str() == self.subject {
                return Ok(Some(StoredCheckpoint {
                    seq: s,
                    note: String::from_utf8_lossy(&message.payload).into_owned(),
                    frontier: message
                        .headers
                        .get(FRONTIER_HEADER)
                        .map(|v| v.as_str().to_owned()),
                }));
            }
        }
        Ok(None)
    }

    /// Reads the commits appended since the last look and, if the log grew past the
    /// last checkpoint, publishes a new one. Returns the size of the log now signed.
    pub async fn tick(&mut self) -> Result<u64, CheckpointError> {
        let end = self
            .js
            .get_stream(&self.log_stream)
            .await
            .map_err(nats)?
            .cached_info()
            .state
            .last_sequence;
        if end < self.published {
            return Err(CheckpointError::Log(format!(
                "the log ends at sequence {end} but a checkpoint covers {} messages: messages \
                 were removed; run keyledger audit verify",
                self.published
            )));
        }
        let mut gap = None;
        let (js, log_stream) = (self.js.clone(), self.log_stream.clone());
        read_log(&js, &log_stream, None, self.tree.size() + 1, |m| {
            if m.seq != self.tree.size() + 1 {
                gap = Some(m.seq);
                return false;
            }
            self.add(&m.payload);
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
        while self.tree.size() > self.published {
            let foreign = self.foreign.after(self.published);
            let note =
                self.signer
                    .sign(self.tree.size(), self.tree.root(), (self.clock)(), &foreign);
            let message = PublishMessage::build()
                .payload(note.into_bytes().into())
                .header(FRONTIER_HEADER, format_frontier(&self.tree.frontier()))
                .expected_last_subject_sequence(self.last_seq);
            let ack = match self.js.send_publish(self.subject.clone(), message).await {
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
            self.foreign = self.foreign.after(self.published);
        }
        Ok(self.published)
    }

    /// Adds the next commit of the log to the tree, and to the foreign ones if
    /// keyledger did not write it.
    fn add(&mut self, commit: &[u8]) {
        self.tree.append(commit);
        if let Err(e) = Commit::<RawEvent>::open(commit, &self.commit_key)
            && e.is_foreign()
        {
            self.foreign.push(self.tree.size());
        }
    }

    /// Adds the commits of a batch another reader read from the log (in sequence
    /// order) that continue the tree; the rest (older, or after a gap) is left to the
    /// next [`tick`](Self::tick)'s read of the log.
    pub fn take(&mut self, batch: &[(u64, Bytes)]) {
        for (seq, commit) in batch {
            if *seq == self.tree.size() + 1 {
                self.add(commit);
            }
        }
    }

    /// Checkpoints every `interval` until `shutdown`. Failures are logged and retried
    /// at the next interval: the command path never waits on checkpoints. Between
    /// checkpoints it adds to the tree the commits `feed` hands on, if given, so that
    /// a tick reads from the log only what the feed did not carry.
    pub async fn run(
        mut self,
        interval: Duration,
        mut feed: Option<Feed>,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
                batch = next_batch(&mut feed) => {
                    match batch {
                        Some(batch) => self.take(&batch),
                        // The feed ended (its projector stopped): the ticks read the log.
                        None => feed = None,
                    }
                    continue;
                }
            }
            match self.tick().await {
                Ok(covered) => infra::metrics::checkpoint_covered(covered),
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
}

/// The feed's next batch; pending forever without a feed.
async fn next_batch(feed: &mut Option<Feed>) -> Option<Vec<(u64, Bytes)>> {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
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
