//! Phase 3 of `keyledger bench`: how soon an acknowledged command is visible to HTTP
//! reads.
//!
//! Commands go out at a steady rate, each at its tick whatever is still in flight (an
//! open loop, so a slow answer does not lower the load it is measured under). Once a
//! command is acknowledged, a metadata read names its sequence in
//! `X-Keyledger-Min-Seq`, which the API answers as soon as its read model shows that
//! sequence (an event, not a poll). The time from the acknowledgement to that answer
//! is the command's visibility latency; it includes one HTTP round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::subject::command;
use infra::client::CommandClient;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::outcome::Outcome;
use super::{BenchArgs, answered, create_request};

/// Runs the phase for `args.duration` at `args.visibility_rate` commands per second,
/// the tokens in turn, each on its own connection (`clients`, one per token), and
/// prints the commands' latency and their visibility latency.
pub(super) async fn run(args: &BenchArgs, clients: &[Arc<CommandClient>], payload: &str) {
    let rate = args.visibility_rate;
    println!(
        "visibility: {rate} commands/s for {:?}, each read back with X-Keyledger-Min-Seq once acknowledged",
        args.duration
    );
    let http = match args.tls.http_client() {
        Ok(h) => h,
        Err(e) => {
            println!("visibility: no HTTP client: {e:#}");
            return;
        }
    };
    // At least a nanosecond: tokio refuses a zero period, which an absurd rate gives.
    let period = Duration::from_secs_f64(1.0 / f64::from(rate)).max(Duration::from_nanos(1));
    let mut tick = tokio::time::interval(period);
    // Burst: ticks the timer could not keep up with are sent at once, so the rate
    // holds on average.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut sent = JoinSet::new();
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut n = 0usize;
    while Instant::now() < deadline {
        tick.tick().await;
        let which = n % args.token.len();
        let token = args.token[which].clone();
        n += 1;
        let (nats, http, request) = (
            clients[which].clone(),
            http.clone(),
            create_request(payload),
        );
        let url = args.url.clone();
        // Each command answers with its timings only: two histograms per command (about
        // 140 KiB each) cost the benchmark 2 GB and most of a core at 1,000/s.
        sent.spawn(async move {
            let t = Instant::now();
            match nats.send(command::SECRET_CREATE, &token, &request).await {
                Ok(a) => {
                    let acked = t.elapsed();
                    let t = Instant::now();
                    let response = http
                        .get(format!("{url}/v1/secrets/{}", a.id))
                        .bearer_auth(&token)
                        .header(api::MIN_SEQ, a.seq)
                        .send()
                        .await;
                    let answer = answered(response).await;
                    (acked, Ok(()), Some((t.elapsed(), answer)))
                }
                Err(e) => (t.elapsed(), Err(e.message), None),
            }
        });
    }
    // The rate is what was sent while sending, not while the last answers came in.
    let elapsed = started.elapsed();
    let (mut acked, mut visible) = (Outcome::new(), Outcome::new());
    while let Some(done) = sent.join_next().await {
        match done {
            Ok((took, result, read)) => {
                acked.record_took(took, result);
                if let Some((took, result)) = read {
                    visible.record_took(took, result);
                }
            }
            Err(e) => acked.record(Instant::now(), Err(e.to_string())),
        }
    }
    acked.report("  commands (NATS secret.create)", elapsed);
    visible.report("  acknowledged -> visible to HTTP reads", elapsed);
}
