//! Synthetic commits, appended straight to the event stream, for benchmarks and load
//! tests that need a long log without running a command for each commit: correctly
//! chained and sealed with the log's commit key, so every reader takes them as
//! keyledger's own. Never for a log that holds real secrets.

use std::collections::VecDeque;

use async_nats::jetstream::context::PublishAckFuture;
use domain::commit::{AggregateRef, CommitKey, Digest, NewCommit};
use domain::ids::{CommandId, ProjectId, SecretId, UserId};
use domain::principal::Actor;
use domain::secret::fields::{MetadataKey, MetadataValue};
use domain::secret::{MetadatumSet, SecretCreated, SecretEvent};
use domain::subject::AggregateKind;
use uuid::Uuid;

use crate::shared::store::StoreError;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Acknowledgements awaited at most at once while appending.
const IN_FLIGHT: usize = 4096;

/// Appends `events` commits to project `project`, one event each, over `aggregates`
/// secrets (UUIDv5 ids from their number): each secret's first is `secret.created`, the
/// rest `secret.metadatum_set`. Publishes are pipelined; returns once all are
/// acknowledged. `progress` is called after every 100,000.
pub async fn fill(
    js: &async_nats::jetstream::Context,
    key: &CommitKey,
    project: &ProjectId,
    events: u64,
    aggregates: u64,
    progress: impl Fn(u64),
) -> Result<(), StoreError> {
    let aggregates = aggregates.max(1);
    let mut heads: Vec<(u64, Option<Digest>)> = vec![(0, None); aggregates as usize];
    let mut in_flight: VecDeque<PublishAckFuture> = VecDeque::new();
    let at = infra::clock::system()();
    let actor = Actor::scheduler();
    let creator = UserId::parse("synthetic").expect("a valid user id");
    for n in 0..events {
        let a = (n % aggregates) as usize;
        let (version, prev) = heads[a];
        let event = if version == 0 {
            SecretEvent::Created(SecretCreated {
                attributes: Default::default(),
                creator: creator.clone(),
                owning_service: None,
                tags: Default::default(),
            })
        } else {
            SecretEvent::MetadatumSet(MetadatumSet {
                key: MetadataKey::parse(&format!("k{}", version % 16))
                    .expect("a valid metadata key"),
                value: MetadataValue::parse(&format!("v{n}")).expect("a valid metadata value"),
            })
        };
        let aggregate = AggregateRef {
            kind: AggregateKind::Secret,
            project: project.clone(),
            id: SecretId::from_uuid(Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("keyledger-synthetic-{a}").as_bytes(),
            ))
            .into(),
        };
        let commit = NewCommit {
            id: CommandId::parse(&format!("synthetic-{n}")).expect("a valid command id"),
            aggregate: aggregate.clone(),
            version: version + 1,
            command: "secret.metadata.set".into(),
            actor: actor.clone(),
            at,
            events: vec![event],
        }
        .seal_for_log(prev, key);
        heads[a] = (version + 1, Some(commit.commit.hash));
        in_flight.push_back(
            js.publish(aggregate.subject(), commit.bytes.into())
                .await
                .map_err(unavailable)?,
        );
        if in_flight.len() >= IN_FLIGHT
            && let Some(ack) = in_flight.pop_front()
        {
            ack.await.map_err(unavailable)?;
        }
        if (n + 1) % 100_000 == 0 {
            progress(n + 1);
        }
    }
    for ack in in_flight {
        ack.await.map_err(unavailable)?;
    }
    Ok(())
}
