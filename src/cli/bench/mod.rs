//! `keyledger bench`: drives a running keyledger and reports throughput and latency.
//!
//! Phase 1: N NATS clients (one connection each) send `secret.create` commands with a
//! small payload for the given duration, each keeping `--in-flight` commands in flight
//! (1: each waits for its reply before sending the next). Phase 2: M HTTP
//! clients read the payloads of those secrets (`GET /v1/secrets/{id}/payload`).
//! Phase 3 (`--visibility-rate`): how soon an acknowledged command shows in HTTP reads.

mod outcome;
mod visibility;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use domain::subject::command;
use infra::client::CommandClient;
use infra::protocol::{CreateSecretRequest, PayloadField};
use outcome::Outcome;

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
    #[command(flatten)]
    tls: crate::cli::ClientTlsArgs,
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
    /// Concurrent NATS clients creating secrets (0 skips phases 1 and 2).
    #[arg(long, default_value_t = 8)]
    nats_clients: usize,
    /// Commands each NATS client keeps in flight (pipelined on its connection). The
    /// command service admits at most 64 in flight per caller (user in project), so
    /// beyond that use more tokens (one per `--token`).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Concurrent HTTP clients reading payloads (0 skips phase 2).
    #[arg(long, default_value_t = 8)]
    http_clients: usize,
    /// Phase 3: commands per second sent at a steady rate (open loop), each followed,
    /// once acknowledged, by a read that waits for its sequence; reports how long after
    /// its acknowledgement each command was visible to HTTP reads. 0 skips the phase.
    #[arg(long, default_value_t = 0)]
    visibility_rate: u32,
    /// Length of each phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Size of each payload in bytes.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.nats_clients == 0 && args.visibility_rate == 0 {
        bail!("nothing to measure: give --nats-clients above 0 or a --visibility-rate");
    }
    let payload = "x".repeat(args.payload_bytes.max(1));
    if args.nats_clients > 0 {
        println!(
            "keyledger bench: {} NATS clients creating secrets ({} in flight each, {} B payloads), then {} HTTP clients reading payloads, {:?} each",
            args.nats_clients,
            args.in_flight.max(1),
            payload.len(),
            args.http_clients,
            args.duration
        );
        let created = creates(&args, &payload).await?;
        if args.http_clients > 0 {
            reads(&args, created).await?;
        }
    }
    if args.visibility_rate > 0 {
        // A connection per token: keyledger answers a command only in the inbox space
        // of the principal its token names.
        let mut clients = Vec::with_capacity(args.token.len());
        for token in &args.token {
            let nats =
                infra::nats::connect_as_client(&args.nats_url, "keyledger-bench", token).await?;
            clients.push(Arc::new(CommandClient::new(nats, Duration::from_secs(10))));
        }
        visibility::run(&args, &clients, &payload).await;
    }
    Ok(())
}

/// A create request with `payload`.
fn create_request(payload: &str) -> CreateSecretRequest {
    CreateSecretRequest {
        name: Some("bench".into()),
        payload: Some(PayloadField::from(payload.to_owned())),
        payload_content_type: Some("text/plain".into()),
        ..Default::default()
    }
}

/// Phase 1: commands over NATS, closed loop. Returns the secrets created.
async fn creates(args: &BenchArgs, payload: &str) -> Result<Vec<(String, u64, usize)>> {
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::new();
    for n in 0..args.nats_clients {
        let which = n % args.token.len();
        let token = args.token[which].clone();
        let nats =
            infra::nats::connect_as_client(&args.nats_url, "keyledger-bench", &token).await?;
        let client = Arc::new(CommandClient::new(nats, Duration::from_secs(10)));
        for _ in 0..args.in_flight.max(1) {
            let (client, token, request) = (client.clone(), token.clone(), create_request(payload));
            workers.push(tokio::spawn(async move {
                let mut outcome = Outcome::new();
                while Instant::now() < deadline {
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
    let clients = args.nats_clients * args.in_flight.max(1);
    commands.report(
        &format!("commands (NATS secret.create): {clients} clients"),
        started.elapsed(),
    );
    if commands.created.is_empty() {
        bail!("no secret was created; check the token and that keyledger is up");
    }
    Ok(commands.created)
}

/// Phase 2: payload reads over HTTP, after the read model shows every create.
async fn reads(args: &BenchArgs, created: Vec<(String, u64, usize)>) -> Result<()> {
    let last_seq = created.iter().map(|(_, s, _)| *s).max().unwrap_or(0);
    let ids: Arc<Vec<(String, usize)>> = Arc::new(
        created
            .into_iter()
            .map(|(id, _, token)| (id, token))
            .collect(),
    );
    let http = args.tls.http_client()?;
    // A read model slower than the write load (PostgreSQL's, on a loaded machine) may
    // still be catching up: each wait is bounded (503 after 5 s), so ask again, for
    // up to 5 minutes, and say how long it took.
    let waited = Instant::now();
    let catch_up = waited + Duration::from_secs(300);
    loop {
        let warm = http
            .get(format!("{}/v1/secrets/{}/payload", args.url, ids[0].0))
            .bearer_auth(&args.token[ids[0].1])
            .header(api::MIN_SEQ, last_seq)
            .send()
            .await?;
        let status = warm.status();
        if status.is_success() {
            break;
        }
        let body = warm.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || Instant::now() > catch_up {
            bail!("reading a created secret failed: {status}: {body}");
        }
    }
    if waited.elapsed() > Duration::from_secs(1) {
        println!(
            "the read model reached sequence {last_seq} {:.1} s after the last create",
            waited.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::new();
    for worker in 0..args.http_clients {
        let client = args.tls.http_client()?;
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
                let response = client
                    .get(format!("{url}/v1/secrets/{id}/payload"))
                    .bearer_auth(token)
                    .send()
                    .await;
                outcome.record(t, answered(response).await);
            }
            outcome
        }));
    }
    let mut reads = Outcome::new();
    for w in workers {
        reads = reads.merge(w.await?);
    }
    reads.report(
        &format!("reads (HTTP GET payload): {} clients", args.http_clients),
        started.elapsed(),
    );
    Ok(())
}

/// Whether an HTTP request succeeded, its body read to the end.
async fn answered(response: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    match response {
        Ok(r) if r.status().is_success() => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}
