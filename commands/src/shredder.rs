//! The key shredder: a durable consumer of the event stream that destroys the data
//! keys every `secret.deleted`, `secret.expired`, `secret.versions_destroyed` and
//! `access_key.revoked` event names. The command handlers destroy them right after
//! the commit; the shredder makes that crash-safe (a handler killed between the commit
//! and the purge leaves the work to it) and is idempotent.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, Context};
use domain::access_key::{AccessKeyEvent, AccessKeyId, sealing_ids};
use domain::commit::{AggregateRef, Commit, CommitKey};
use domain::ids::{KeyId, SecretId};
use domain::secret::{SecretEvent, may_destroy_keys};
use domain::subject::{AggregateKind, events_filter, parse_aggregate_subject};
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
    // Create or update: a consumer made by an older build, which followed secrets
    // only, gains the access keys' subjects (a filter is updatable in place).
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(CONSUMER.into()),
            description: Some(
                "destroys the data keys of deleted and expired secrets and versions, and of \
                 revoked access keys"
                    .into(),
            ),
            filter_subjects: [AggregateKind::Secret, AggregateKind::AccessKey]
                .into_iter()
                .map(|kind| events_filter(None, Some(kind), None))
                .collect(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
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
        let outcome = shred(keys, &message.subject, &message.payload, commit_key).await;
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

/// Destroys the keys the commit `payload` on `subject` names. Nothing is shredded for
/// a foreign message or a commit this build cannot read; the projector and the auditor
/// report them.
async fn shred(
    keys: &KeyStore,
    subject: &str,
    payload: &[u8],
    commit_key: &CommitKey,
) -> Result<(), KeyStoreError> {
    // Nearly every commit destroys nothing: it is acknowledged unopened (its MAC
    // check and parse took 5.5% of `keyledger up`'s CPU under 64 clients creating).
    if !may_destroy_keys(payload) {
        return Ok(());
    }
    match parse_aggregate_subject(subject) {
        Some((_, AggregateKind::Secret, _)) => {
            let Ok(commit) = Commit::<SecretEvent>::open(payload, commit_key) else {
                return Ok(());
            };
            for event in &commit.body.events {
                destroy_keys(keys, &commit.body.aggregate, event.destroyed_keys()).await?;
            }
        }
        Some((_, AggregateKind::AccessKey, _)) => {
            let Ok(commit) = Commit::<AccessKeyEvent>::open(payload, commit_key) else {
                return Ok(());
            };
            let aggregate = &commit.body.aggregate;
            let Ok(id) = AccessKeyId::parse(aggregate.id.as_str()) else {
                return Ok(());
            };
            let (secret, _) = sealing_ids(&aggregate.project, &id);
            for event in &commit.body.events {
                if let AccessKeyEvent::Revoked(revoked) = event {
                    for key in &revoked.destroyed_keys {
                        keys.destroy(&aggregate.project, secret, *key).await?;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use domain::access_key::AccessKeyRevoked;
    use domain::commit::NewCommit;
    use domain::ids::{CommandId, KeyId, ProjectId, SecretId, VersionId};
    use domain::principal::Actor;
    use domain::secret::{SecretCreated, SecretDeleted, SecretExpired, VersionsDestroyed};
    use domain::timestamp::Timestamp;
    use uuid::Uuid;

    use super::*;

    /// The bytes of a commit of `events` on an aggregate of `kind`, as the log holds
    /// them.
    fn written<E: domain::commit::EventCodec>(kind: AggregateKind, events: Vec<E>) -> Vec<u8> {
        let project = ProjectId::parse("p1").unwrap();
        NewCommit {
            id: CommandId::parse("c1").unwrap(),
            aggregate: AggregateRef {
                kind,
                project,
                id: SecretId::from_uuid(Uuid::from_u128(1)).into(),
            },
            version: 1,
            command: "test".into(),
            actor: Actor::scheduler(),
            at: Timestamp::from_unix_millis(1_796_000_000_000).unwrap(),
            events,
        }
        .seal(None, &CommitKey::new([7; 32]))
        .to_bytes()
    }

    #[test]
    fn every_event_that_destroys_keys_is_opened_and_a_create_is_not() {
        let keys = vec![KeyId::from_uuid(Uuid::from_u128(2))];
        let destroying = [
            written(
                AggregateKind::Secret,
                vec![SecretEvent::Deleted(SecretDeleted {
                    destroyed_keys: keys.clone(),
                })],
            ),
            written(
                AggregateKind::Secret,
                vec![SecretEvent::Expired(SecretExpired {
                    expired_at: Timestamp::from_unix_millis(1_796_000_000_000).unwrap(),
                    destroyed_keys: keys.clone(),
                })],
            ),
            written(
                AggregateKind::Secret,
                vec![SecretEvent::VersionsDestroyed(VersionsDestroyed {
                    versions: vec![VersionId::from_uuid(Uuid::from_u128(3))],
                    destroyed_keys: keys.clone(),
                })],
            ),
            written(
                AggregateKind::AccessKey,
                vec![AccessKeyEvent::Revoked(AccessKeyRevoked {
                    destroyed_keys: keys.clone(),
                })],
            ),
        ];
        for bytes in &destroying {
            assert!(
                may_destroy_keys(bytes),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let created = written(
            AggregateKind::Secret,
            vec![SecretEvent::Created(SecretCreated {
                attributes: Default::default(),
                creator: domain::ids::UserId::parse("alice").unwrap(),
                owning_service: None,
                tags: Default::default(),
            })],
        );
        assert!(!may_destroy_keys(&created));
    }
}
