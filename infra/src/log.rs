//! The event stream and the key bucket, created (or checked) at startup with the
//! settings DESIGN.md fixes: file storage, `deny_delete`, `deny_purge`, no rollup,
//! unlimited messages per subject, and a duplicate window of at least two minutes.

use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use domain::subject::EVENTS_WILDCARD;

/// Default name of the event stream.
pub const DEFAULT_STREAM: &str = "KEYLEDGER";
/// Name of the key-store bucket (wrapped data keys).
pub const KEY_BUCKET: &str = "KEYLEDGER_KEYS";
/// The shortest duplicate window accepted: a client retry within it is deduplicated
/// by JetStream itself.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where and how the log lives.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Stream name.
    pub stream: String,
    /// Replicas: 1 on one machine, 3 in a cluster.
    pub replicas: usize,
    /// JetStream's duplicate-detection window.
    pub duplicate_window: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            stream: DEFAULT_STREAM.into(),
            replicas: 1,
            duplicate_window: MIN_DUPLICATE_WINDOW,
        }
    }
}

/// Why the stream or bucket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A JetStream request failed.
    #[error("setting up {what}: {source}")]
    JetStream {
        /// The stream or bucket.
        what: String,
        /// The cause.
        source: async_nats::Error,
    },
    /// The stream holds commits in format 1, written before commits were authenticated.
    #[error(
        "stream {stream} was written by a keyledger before commits were authenticated \
         (commit format 1); this keyledger reads only authenticated commits. Migrate it: \
         `keyledger log migrate --from {stream} --to <NEW>` copies every commit into a new \
         stream, sealed with the commit key; then start with --stream <NEW> and rebuild the \
         read model (`keyledger projections rebuild --stream <NEW>`)"
    )]
    Format1 {
        /// The stream.
        stream: String,
    },
    /// An existing stream lacks a required setting.
    #[error(
        "stream {stream} exists but {problem}; keyledger refuses to write to a log that can \
         be rewritten. Create the stream with keyledger's settings (see docs/operations.md, section The log)"
    )]
    Misconfigured {
        /// The stream.
        stream: String,
        /// What is wrong.
        problem: String,
    },
}

fn js_err(what: &str) -> impl FnOnce(async_nats::Error) -> SetupError + '_ {
    move |source| SetupError::JetStream {
        what: what.to_owned(),
        source,
    }
}

/// The stream configuration keyledger requires.
pub fn stream_config(settings: &LogSettings) -> stream::Config {
    stream::Config {
        name: settings.stream.clone(),
        description: Some("keyledger event log: one message per accepted command".into()),
        subjects: vec![EVENTS_WILDCARD.into()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::New,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window.max(MIN_DUPLICATE_WINDOW),
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_direct: true,
        allow_atomic_publish: true,
        ..Default::default()
    }
}

/// Lets a stream created before group commit take atomic batches ([`crate::batch`]).
/// Without it writes still work, one message at a time, so a refusal (say, an account
/// that may not edit streams) is only logged.
async fn allow_atomic_batches(js: &Context, stream: &stream::Stream) {
    let config = &stream.cached_info().config;
    if config.allow_atomic_publish {
        return;
    }
    let name = config.name.clone();
    let wanted = stream::Config {
        allow_atomic_publish: true,
        ..config.clone()
    };
    match js.update_stream(wanted).await {
        Ok(_) => tracing::info!(stream = %name, "the stream now takes atomic batches"),
        Err(e) => tracing::warn!(
            stream = %name,
            error = %e,
            "could not let the stream take atomic batches; writes go out one at a time"
        ),
    }
}

/// Creates the event stream, or checks that the existing one has keyledger's settings.
pub async fn ensure_event_stream(
    js: &Context,
    settings: &LogSettings,
) -> Result<jetstream::stream::Stream, SetupError> {
    let wanted = stream_config(settings);
    let stream = js
        .get_or_create_stream(wanted)
        .await
        .map_err(|e| js_err(&settings.stream)(e.into()))?;
    // The info came with the answer; no second request needed.
    let have = &stream.cached_info().config;
    let problem = if !have.deny_delete {
        Some("allows deleting messages (deny_delete is false)".to_owned())
    } else if !have.deny_purge {
        Some("allows purging (deny_purge is false)".to_owned())
    } else if have.allow_rollup {
        Some("allows rollups (allow_rollup is true)".to_owned())
    } else if have.max_messages_per_subject > 0 {
        Some(format!(
            "keeps only {} messages per subject (max_msgs_per_subject must be -1)",
            have.max_messages_per_subject
        ))
    } else if have.max_age != Duration::ZERO || have.max_messages > 0 || have.max_bytes > 0 {
        Some("expires or limits messages (max_age, max_msgs and max_bytes must be unset)".into())
    } else if have.duplicate_window < MIN_DUPLICATE_WINDOW {
        Some(format!(
            "has a duplicate window of {:?} (at least {MIN_DUPLICATE_WINDOW:?} is required)",
            have.duplicate_window
        ))
    } else if !have.subjects.iter().any(|s| s == EVENTS_WILDCARD) {
        Some(format!("does not capture {EVENTS_WILDCARD}"))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(SetupError::Misconfigured {
            stream: settings.stream.clone(),
            problem,
        });
    }
    check_format(&stream, &settings.stream).await?;
    allow_atomic_batches(js, &stream).await;
    Ok(stream)
}

/// Refuses a log whose first message is a format 1 commit: every commit in it lacks an
/// authenticator, so no reader would accept any of them.
async fn check_format(stream: &stream::Stream, name: &str) -> Result<(), SetupError> {
    let first = match stream.direct_get(1).await {
        Ok(message) => message,
        // Empty, or its first message is gone: nothing to say.
        Err(_) => return Ok(()),
    };
    match domain::commit::Commit::<domain::audit::RawEvent>::parse_unverified(&first.payload) {
        Ok(commit) if commit.is_format_1() => Err(SetupError::Format1 {
            stream: name.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Creates (or opens) the key-store bucket: one value per key, file storage.
///
/// The bucket's stream is created here rather than by `create_key_value`, which sets
/// `deny_delete`: destroying a key erases its message (a secure delete that overwrites
/// the bytes on disk), and JetStream cannot lift `deny_delete` later. Otherwise the
/// stream is what a KV bucket's is, so the KV API works on it.
pub async fn ensure_key_bucket(js: &Context, replicas: usize) -> Result<kv::Store, SetupError> {
    if let Ok(store) = js.get_key_value(KEY_BUCKET).await {
        // A bucket made before keys were group-committed takes batches from now on.
        allow_atomic_batches(js, &store.stream).await;
        return Ok(store);
    }
    let config = async_nats::jetstream::stream::Config {
        name: format!("KV_{KEY_BUCKET}"),
        description: Some("keyledger key store: wrapped data keys, one per payload version".into()),
        subjects: vec![format!("$KV.{KEY_BUCKET}.>")],
        max_messages_per_subject: 1,
        storage: StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: false,
        deny_purge: false,
        allow_direct: true,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        // Keys of commands that arrive together share one batch ([`crate::batch`]).
        allow_atomic_publish: true,
        ..Default::default()
    };
    // Another process may create it at the same time: either way it then exists.
    let created = js.get_or_create_stream(config).await;
    js.get_key_value(KEY_BUCKET).await.map_err(|e| {
        let cause: Box<dyn std::error::Error + Send + Sync> = match created {
            Err(c) => c.into(),
            Ok(_) => e.into(),
        };
        js_err(KEY_BUCKET)(cause)
    })
}
