//! `keyledger audit replay-bench`: how fast the log replays. It appends N synthetic,
//! correctly hash-chained events (project `replay-bench`, one event per commit) straight
//! to the event stream, then reads the whole stream back twice: verifying it (as
//! `audit verify` does) and folding it into state (as `audit state` does), and reports
//! events per second. Run it against a scratch data directory: the events stay.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Result, bail};
use async_nats::jetstream::context::PublishAckFuture;
use domain::audit::LogVerifier;
use domain::commit::{AggregateRef, CommitKey, Digest, NewCommit};
use domain::ids::{CommandId, ProjectId, UserId};
use domain::principal::Actor;
use domain::secret::fields::{MetadataKey, MetadataValue};
use domain::secret::{MetadatumSet, SecretCreated, SecretEvent};
use domain::subject::AggregateKind;
use uuid::Uuid;

use super::replay::Replay;

/// Appends `events` synthetic events over `aggregates` secrets, sealed with `key`.
async fn fill(
    js: &async_nats::jetstream::Context,
    key: &CommitKey,
    events: u64,
    aggregates: u64,
) -> Result<()> {
    let project = ProjectId::parse("replay-bench")?;
    let mut heads: Vec<(u64, Option<Digest>)> = vec![(0, None); aggregates as usize];
    let mut in_flight: VecDeque<PublishAckFuture> = VecDeque::new();
    let at = commands::clock::system()();
    let actor = Actor::scheduler();
    for n in 0..events {
        let a = (n % aggregates) as usize;
        let (version, prev) = heads[a];
        let event = if version == 0 {
            SecretEvent::Created(SecretCreated {
                attributes: Default::default(),
                creator: UserId::parse("bench")?,
                owning_service: None,
                tags: Default::default(),
            })
        } else {
            SecretEvent::MetadatumSet(MetadatumSet {
                key: MetadataKey::parse(&format!("k{}", version % 16))?,
                value: MetadataValue::parse(&format!("v{n}"))?,
            })
        };
        let aggregate = AggregateRef {
            kind: AggregateKind::Secret,
            project: project.clone(),
            id: Uuid::from_u128(a as u128 + 1).to_string(),
        };
        let commit = NewCommit {
            id: CommandId::parse(&format!("replay-{n}"))?,
            aggregate: aggregate.clone(),
            version: version + 1,
            command: "secret.metadata.set".into(),
            actor: actor.clone(),
            at,
            events: vec![event],
        }
        .seal(prev, key);
        heads[a] = (version + 1, Some(commit.hash));
        in_flight.push_back(
            js.publish(aggregate.subject(), commit.to_bytes().into())
                .await?,
        );
        // Pipelined, with a bounded number of acknowledgements outstanding.
        if in_flight.len() >= 4096
            && let Some(ack) = in_flight.pop_front()
        {
            ack.await?;
        }
        if (n + 1) % 100_000 == 0 {
            eprintln!("appended {} events", n + 1);
        }
    }
    for ack in in_flight {
        ack.await?;
    }
    Ok(())
}

/// Runs the benchmark, with the log's commit key.
pub async fn run(
    nats_url: &str,
    stream: &str,
    key: CommitKey,
    events: u64,
    aggregates: u64,
) -> Result<()> {
    let client = commands::nats::connect(nats_url, "keyledger-replay-bench").await?;
    let js = async_nats::jetstream::new(client);
    let started = Instant::now();
    fill(&js, &key, events, aggregates.max(1)).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    println!(
        "appended {events} events in {fill_secs:.1} s ({:.0}/s)",
        events as f64 / fill_secs
    );

    let started = Instant::now();
    let mut verifier = LogVerifier::with_checkpoints(Vec::new(), Some(key.clone()));
    let mut violation = None;
    commands::audit::read_log(&js, stream, None, 1, |m| {
        match verifier.check(m.seq, &m.subject, &m.payload) {
            Ok(()) => true,
            Err(v) => {
                violation = Some(v);
                false
            }
        }
    })
    .await?;
    if let Some(v) = violation {
        bail!("verification failed at {}: {}", v.seq, v.reason);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "verify (audit verify): {} commits in {secs:.1} s, {:.0} events/s",
        verifier.commits(),
        verifier.commits() as f64 / secs
    );

    let started = Instant::now();
    let mut replay = Replay::default();
    let mut trust = super::trust::Trust::with_key(key);
    let mut failed = None;
    commands::audit::read_log(&js, stream, None, 1, |m| {
        match replay.apply(m.seq, &m.subject, &m.payload, None, &mut trust) {
            Ok(_) => true,
            Err(e) => {
                failed = Some(e.to_string());
                false
            }
        }
    })
    .await?;
    if let Some(e) = failed {
        bail!("replay failed: {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay (audit state): {} commits in {secs:.1} s, {:.0} events/s",
        replay.commits,
        replay.commits as f64 / secs
    );
    Ok(())
}
