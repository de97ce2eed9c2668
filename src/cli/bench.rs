//! `keyledger bench`: drives a running keyledger and reports throughput and latency.
//!
//! Phase 1: N NATS clients (one connection each) send `secret.create` commands with a
//! small payload for the given duration, each keeping `--in-flight` commands in flight
//! (1: each waits for its reply before sending the next). Phase 2: M HTTP
//! clients read the payloads of those secrets (`GET /v1/secrets/{id}/payload`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use domain::subject::command;
use hdrhistogram::Histogram;
use infra::client::CommandClient;
use infra::protocol::{CreateSecretRequest, PayloadField};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// NATS URL for commands (no credentials needed).
    #[arg(
        long,
        env = "KEYLEDGER_NATS_CLIENT_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// Base URL of the HTTP API.
    #[arg(long, env = "KEYLEDGER_URL", default_value = "http://127.0.0.1:9311")]
    url: String,
    /// Bearer token (see `keyledger token issue`); several (`--token a --token b`, or
    /// comma-separated in the variable) are used in turn by the NATS clients.
    #[arg(
        long,
        env = "KEYLEDGER_TOKEN",
        hide_env_values = true,
        value_delimiter = ',',
        required = true
    )]
    token: Vec<String>,
    /// Concurrent NATS clients creating secrets.
    #[arg(long, default_value_t = 8)]
    nats_clients: usize,
    /// Commands each NATS client keeps in flight (pipelined on its connection). The
    /// command service admits at most 64 in flight per caller (user in project), so
    /// beyond that use more tokens (one per `--token`).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Concurrent HTTP clients reading payloads.
    #[arg(long, default_value_t = 8)]
    http_clients: usize,
    /// Length of each phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Size of each payload in bytes.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
}

struct Outcome {
    latencies: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    /// Each created secret: its id, its commit's sequence and the token (index) that
    /// created it, which phase 2 reads it with.
    created: Vec<(String, u64, usize)>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            // Three significant figures from 1 us to 60 s: low >= 1, high >= 2 * low and
            // sigfig <= 5, so these bounds are always accepted.
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
            first_error: None,
            created: Vec::new(),
        }
    }

    fn record(&mut self, started: Instant, result: Result<(), String>) {
        let micros = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        match result {
            Ok(()) => {
                let _ = self.latencies.record(micros);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(mut self, other: Outcome) -> Self {
        let _ = self.latencies.add(&other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.created.extend(other.created);
        self
    }

    fn report(&self, what: &str, clients: usize, elapsed: Duration) {
        let ok = self.latencies.len();
        let ms = |q: f64| self.latencies.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{what}: {clients} clients, {:.1} s: {ok} ok, {} failed, {:.0}/s; latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            elapsed.as_secs_f64(),
            self.errors,
            ok as f64 / elapsed.as_secs_f64(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.latencies.max() as f64 / 1000.0,
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let payload = "x".repeat(args.payload_bytes.max(1));
    println!(
        "keyledger bench: {} NATS clients creating secrets ({} in flight each, {} B payloads), then {} HTTP clients reading payloads, {:?} each",
        args.nats_clients,
        args.in_flight.max(1),
        payload.len(),
        args.http_clients,
        args.duration
    );

    // Phase 1: commands over NATS.
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::new();
    for n in 0..args.nats_clients.max(1) {
        let which = n % args.token.len();
        let token = args.token[which].clone();
        let nats =
            infra::nats::connect_as_client(&args.nats_url, "keyledger-bench", &token).await?;
        let client = Arc::new(CommandClient::new(nats, Duration::from_secs(10)));
        for _ in 0..args.in_flight.max(1) {
            let (client, token, payload) = (client.clone(), token.clone(), payload.clone());
            workers.push(tokio::spawn(async move {
                let mut outcome = Outcome::new();
                while Instant::now() < deadline {
                    let request = CreateSecretRequest {
                        name: Some("bench".into()),
                        payload: Some(PayloadField::from(payload.clone())),
                        payload_content_type: Some("text/plain".into()),
                        ..Default::default()
                    };
                    let t = Instant::now();
                    match client.send(command::SECRET_CREATE, &token, &request).await {
                        Ok(a) => {
                            outcome.record(t, Ok(()));
                            outcome.created.push((a.id, a.seq, which));
                        }
                        Err(e) => outcome.record(t, Err(e.message)),
                    }
                }
                outcome
            }));
        }
    }
    let mut commands = Outcome::new();
    for w in workers {
        commands = commands.merge(w.await?);
    }
    commands.report(
        "commands (NATS secret.create)",
        args.nats_clients * args.in_flight.max(1),
        started.elapsed(),
    );
    if commands.created.is_empty() {
        bail!("no secret was created; check the token and that keyledger is up");
    }

    // Phase 2: payload reads over HTTP, after the read model shows every create.
    let last_seq = commands
        .created
        .iter()
        .map(|(_, s, _)| *s)
        .max()
        .unwrap_or(0);
    let ids: Arc<Vec<(String, usize)>> = Arc::new(
        commands
            .created
            .into_iter()
            .map(|(id, _, token)| (id, token))
            .collect(),
    );
    let http = reqwest::Client::new();
    let warm = http
        .get(format!("{}/v1/secrets/{}/payload", args.url, ids[0].0))
        .bearer_auth(&args.token[ids[0].1])
        .header(api::MIN_SEQ, last_seq)
        .send()
        .await?;
    if !warm.status().is_success() {
        let status = warm.status();
        let body = warm.text().await.unwrap_or_default();
        bail!("reading a created secret failed: {status}: {body}");
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::new();
    for worker in 0..args.http_clients.max(1) {
        let client = reqwest::Client::new();
        let ids = ids.clone();
        let url = args.url.clone();
        let tokens = args.token.clone();
        workers.push(tokio::spawn(async move {
            let mut outcome = Outcome::new();
            let mut i = worker;
            while Instant::now() < deadline {
                let (id, token) = &ids[i % ids.len()];
                let token = &tokens[*token];
                i += 7;
                let t = Instant::now();
                let result = client
                    .get(format!("{url}/v1/secrets/{id}/payload"))
                    .bearer_auth(token)
                    .send()
                    .await;
                let result = match result {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                outcome.record(t, result);
            }
            outcome
        }));
    }
    let mut reads = Outcome::new();
    for w in workers {
        reads = reads.merge(w.await?);
    }
    reads.report(
        "reads (HTTP GET payload)",
        args.http_clients,
        started.elapsed(),
    );
    Ok(())
}
