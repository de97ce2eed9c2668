//! `keyledger audit replay-bench`: how fast the log replays. It appends N synthetic,
//! correctly hash-chained events (project `replay-bench`, one event per commit) straight
//! to the event stream, then reads the whole stream back twice: verifying it (as
//! `audit verify` does) and folding it into state (as `audit state` does), and reports
//! events per second. Run it against a scratch data directory: the events stay.

use std::time::Instant;

use anyhow::{Result, bail};
use domain::audit::LogVerifier;
use domain::commit::CommitKey;
use domain::ids::ProjectId;

use super::replay::Replay;

/// Runs the benchmark, with the log's commit key.
pub async fn run(
    nats_url: &str,
    stream: &str,
    key: CommitKey,
    events: u64,
    aggregates: u64,
) -> Result<()> {
    let client = infra::nats::connect(nats_url, "keyledger-replay-bench").await?;
    let js = async_nats::jetstream::new(client);
    let started = Instant::now();
    commands::log::synthetic::fill(
        &js,
        &key,
        &ProjectId::parse("replay-bench")?,
        events,
        aggregates,
        |n| eprintln!("appended {n} events"),
    )
    .await?;
    let fill_secs = started.elapsed().as_secs_f64();
    println!(
        "appended {events} events in {fill_secs:.1} s ({:.0}/s)",
        events as f64 / fill_secs
    );

    let started = Instant::now();
    // As `audit verify` does it: opened on one thread, checked in order on another.
    let mut pipeline = super::verify_pipeline::Pipeline::start(
        LogVerifier::with_checkpoints(Vec::new(), Some(key.clone())),
        super::progress::Progress::new("verified"),
    )?;
    infra::audit::read_log(&js, stream, None, 1, |m| {
        pipeline.push(m.seq, m.subject, m.payload)
    })
    .await?;
    let (verifier, violation) = pipeline.finish()?;
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
    infra::audit::read_log(&js, stream, None, 1, |m| {
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
