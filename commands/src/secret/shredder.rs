//! The key shredder: a durable consumer of the event stream that destroys the data
//! keys every `secret.deleted`, `secret.expired` and `secret.versions_destroyed` event
//! names. The command handler destroys them right
//! after the commit; the shredder makes that crash-safe (a handler killed between the
//! commit and the purge leaves the work to it) and is idempotent.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, Context};
use domain::commit::{AggregateRef, Commit, CommitKey};
use domain::ids::{KeyId, SecretId};
use domain::secret::SecretEvent;
use domain::subject::{AggregateKind, events_filter};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use infra::keystore::{KeyStore, KeyStoreError};

/// Name of the shredder's durable consumer.
pub const CONSUMER: &str = "keyledger-key-shredder";

/// Destroys `keys` of the secret `aggregate`.
pub(crate) async fn destroy_keys(
    keys: &KeyStore,
    aggregate: &AggregateRef,
    ids: &[KeyId],
) -> Result<(), KeyStoreError> {
    let Ok(secret) = SecretId::parse(aggregate.id.as_str()) else {
        return Ok(());
    };
    for id in ids {
        keys.destroy(&aggregate.project, secret, *id).await?;
    }
    Ok(())
}

/// Why the shredder stopped.
#[derive(Debug, thiserror::Error)]
#[error("key shredder: {0}")]
pub struct ShredderError(String);

/// Runs until `shutdown` is cancelled. Only commits keyledger wrote (checked with
/// `commit_key`) destroy keys: a forged deletion destroys nothing. When NATS goes away
/// and comes back, or the consumer fails, it starts again from the consumer's
/// position: nothing is lost, and destroying a key twice is harmless.
pub async fn run(
    js: Context,
    stream: &str,
    keys: KeyStore,
    commit_key: CommitKey,
    shutdown: CancellationToken,
) -> Result<(), ShredderError> {
    let mut restarts = domain::restarts::Restarts::new();
    loop {
        let started = std::time::Instant::now();
        match follow(&js, stream, &keys, &commit_key, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let backoff = restarts.after_failure(started.elapsed());
                tracing::warn!(error = %e, retry_in = ?backoff, "key shredder: restarting");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

/// Follows the log with the durable consumer until shutdown, a failure, or a
/// reconnection to NATS.
async fn follow(
    js: &Context,
    stream: &str,
    keys: &KeyStore,
    commit_key: &CommitKey,
    shutdown: &CancellationToken,
) -> Result<(), ShredderError> {
    let err = |e: &dyn std::fmt::Display| ShredderError(e.to_string());
    let client = js.client();
    let connects = infra::nats::connects(&client);
    let stream = js.get_stream(stream).await.map_err(|e| err(&e))?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.into()),
                description: Some(
                    "destroys the data keys of deleted and expired secrets and versions".into(),
                ),
                filter_subject: events_filter(None, Some(AggregateKind::Secret), None),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = infra::nats::reconnected(&client, connects) => {
                return Err(ShredderError("NATS reconnected".into()));
            }
            next = messages.next() => next,
        };
        let message = match next {
            None => return Err(ShredderError("the consumer ended".into())),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "key shredder: receiving failed; continuing");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let outcome = match Commit::<SecretEvent>::open(&message.payload, commit_key) {
            // Nothing to shred in a foreign message or a commit this build cannot read;
            // the projector and the auditor report them.
            Err(_) => Ok(()),
            Ok(commit) => shred(keys, &commit).await,
        };
        let ack = match outcome {
            Ok(()) => message.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "key shredder: destroying keys failed; retrying");
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await
            }
        };
        if let Err(e) = ack {
            tracing::warn!(error = %e, "key shredder: acknowledging failed");
        }
    }
}

async fn shred(keys: &KeyStore, commit: &Commit<SecretEvent>) -> Result<(), KeyStoreError> {
    for event in &commit.body.events {
        destroy_keys(keys, &commit.body.aggregate, event.destroyed_keys()).await?;
    }
    Ok(())
}
