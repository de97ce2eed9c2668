//! Health: whether a process is ready to serve, as load balancers, Kubernetes probes and
//! `keyledger status` ask.
//!
//! Each component adds its readiness checks to the process's [`Health`] as it starts
//! (NATS reachable, its streams present, the read model within a lag, the current KEK
//! held). A [`Report`] runs them all at once, each within [`CHECK_TIMEOUT`]: a probe
//! never hangs on a partitioned NATS. Liveness (`/healthz`) asks nothing: a process that
//! answers is alive, and restarting it because NATS is away would not bring NATS back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Longest one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The subject every keyledger process answers status requests on (keyledger's own
/// NATS account only: clients and auditors cannot reach it).
pub const STATUS_SUBJECT: &str = "keyledger.status";

type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<String, Unhealthy>> + Send + Sync>;

/// Why a readiness check failed: what is wrong, and what to do about it (a report's
/// `detail`).
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// The check did not answer within [`CHECK_TIMEOUT`].
    #[error("no answer within {} s", CHECK_TIMEOUT.as_secs())]
    TimedOut,
    /// The NATS connection is down.
    #[error(
        "not connected to NATS ({0}); reconnecting by itself — check that nats-server runs \
         and is reachable"
    )]
    Disconnected(async_nats::connection::State),
    /// A stream cannot be read.
    #[error("the stream {stream} cannot be read ({error}); is it there, and is JetStream up?")]
    StreamUnreadable {
        /// The stream's name.
        stream: String,
        /// What reading it answered.
        error: jetstream::context::GetStreamError,
    },
    /// A stream is at a limit it was given that refuses new messages.
    #[error(
        "the stream {stream} is full ({messages} messages, {bytes} bytes; its limits are \
         {max_messages} and {max_bytes}) and refuses new messages: raise or remove its limits \
         (max_msgs, max_bytes)"
    )]
    StreamFull {
        /// The stream's name.
        stream: String,
        /// The messages it holds.
        messages: u64,
        /// The bytes it holds.
        bytes: u64,
        /// Its limit of messages.
        max_messages: i64,
        /// Its limit of bytes.
        max_bytes: i64,
    },
    /// The read model is further behind the log than allowed.
    #[error(
        "the read model is {lag} commits behind the log (applied {applied} of {last}; at most \
         {max_lag} allowed): the projector is catching up, or not running"
    )]
    Lagging {
        /// Commits behind.
        lag: u64,
        /// The last sequence applied.
        applied: u64,
        /// The log's last sequence.
        last: u64,
        /// The most commits behind allowed.
        max_lag: u64,
    },
    /// The read model has stood still, behind the log, for longer than [`STALLED`].
    #[error(
        "the read model has not moved for {} s while {lag} commits behind the log (applied \
         {applied} of {last}): the projector is failing or not running; see its log",
        still_for.as_secs()
    )]
    Stalled {
        /// How long it has stood still.
        still_for: Duration,
        /// Commits behind.
        lag: u64,
        /// The last sequence applied.
        applied: u64,
        /// The log's last sequence.
        last: u64,
    },
    /// The read model's database does not answer.
    #[error(
        "the read model's database does not answer ({0}): reads fail until it does; check \
         that it runs and is reachable"
    )]
    Unreachable(String),
    /// The last pass of a periodic task went wrong.
    #[error("the pass at {at} failed: {problem}")]
    PassFailed {
        /// When the pass was made.
        at: domain::timestamp::Timestamp,
        /// What went wrong in it.
        problem: String,
    },
    /// This node does not hold the deployment's current KEK.
    #[error(
        "this node does not hold the deployment's current KEK, so it stores no new payloads; \
         see `keyledger keys status`"
    )]
    NoCurrentKek,
}

/// The readiness checks of one process, shared by its components.
#[derive(Clone)]
pub struct Health {
    checks: Arc<Mutex<Vec<(String, Probe)>>>,
    components: Arc<Mutex<Vec<String>>>,
    max_lag: u64,
}

/// The read model's lag a process stays ready with by default: about a second of
/// commits at a busy command service's pace.
pub const DEFAULT_MAX_LAG: u64 = 10_000;

impl Default for Health {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LAG)
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("components", &self.components())
            .finish_non_exhaustive()
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// What was checked, e.g. `commands.nats`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, or what is wrong and what to do (left out where the report is
    /// public: on the API's port).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Every check of a process, run now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// Whether every check passed.
    pub ready: bool,
    /// The checks, in the order the components added them.
    pub checks: Vec<CheckResult>,
}

impl Health {
    /// No checks yet; a read model more than `max_lag` commits behind the log is not
    /// ready.
    pub fn new(max_lag: u64) -> Self {
        Self {
            checks: Arc::default(),
            components: Arc::default(),
            max_lag,
        }
    }

    /// Records that `component` runs in this process.
    pub fn component(&self, component: &str) {
        lock(&self.components).push(component.to_owned());
    }

    /// The components running in this process.
    pub fn components(&self) -> Vec<String> {
        lock(&self.components).clone()
    }

    /// Adds the check `name`: `probe` answers what it found, or what is wrong.
    pub fn check<F>(&self, name: impl Into<String>, probe: impl Fn() -> F + Send + Sync + 'static)
    where
        F: Future<Output = Result<String, Unhealthy>> + Send + 'static,
    {
        let probe: Probe = Arc::new(move || Box::pin(probe()));
        lock(&self.checks).push((name.into(), probe));
    }

    /// Runs every check, concurrently, each within [`CHECK_TIMEOUT`].
    pub async fn report(&self) -> Report {
        let checks = lock(&self.checks).clone();
        let results =
            futures::future::join_all(checks.into_iter().map(|(name, probe)| async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Unhealthy::TimedOut),
                };
                let (ok, detail) = match outcome {
                    Ok(found) => (true, found),
                    Err(problem) => (false, problem.to_string()),
                };
                CheckResult { name, ok, detail }
            }))
            .await;
        Report {
            ready: results.iter().all(|c| c.ok),
            checks: results,
        }
    }

    /// Adds `<component>.nats`: `client` is connected.
    pub fn nats(&self, component: &str, client: &async_nats::Client) {
        let client = client.clone();
        self.check(format!("{component}.nats"), move || {
            let state = client.connection_state();
            async move {
                match state {
                    async_nats::connection::State::Connected => Ok("connected".to_owned()),
                    other => Err(Unhealthy::Disconnected(other)),
                }
            }
        });
    }

    /// Adds `<component>.stream.<name>`: the stream `name` exists.
    pub fn stream(&self, component: &str, js: &jetstream::Context, name: &str) {
        let (js, stream) = (js.clone(), name.to_owned());
        self.check(format!("{component}.stream.{name}"), move || {
            let (js, stream) = (js.clone(), stream.clone());
            async move {
                let last = writable_end(&js, &stream).await?;
                Ok(format!("last sequence {last}"))
            }
        });
    }

    /// Adds `<component>.read_model`: `applied` is at most the allowed lag behind the
    /// end of the event stream `stream`.
    pub fn read_model(
        &self,
        component: &str,
        js: &jetstream::Context,
        stream: &str,
        applied: watch::Receiver<u64>,
    ) {
        let (js, stream, max_lag) = (js.clone(), stream.to_owned(), self.max_lag);
        // Since when this check has seen the read model behind the log at the same
        // sequence: still for longer than STALLED, the projector is failing or gone,
        // however small the lag.
        let behind: Arc<Mutex<(u64, Option<std::time::Instant>)>> = Arc::default();
        self.check(format!("{component}.read_model"), move || {
            let (js, stream, applied) = (js.clone(), stream.clone(), *applied.borrow());
            let behind = behind.clone();
            async move {
                let last = last_sequence(&js, &stream).await?;
                let lag = last.saturating_sub(applied);
                let still_for = {
                    let mut seen = lock(&behind);
                    if seen.0 != applied || lag == 0 {
                        *seen = (applied, None);
                    }
                    if lag > 0 {
                        seen.1.get_or_insert_with(std::time::Instant::now).elapsed()
                    } else {
                        Duration::ZERO
                    }
                };
                if lag > max_lag {
                    Err(Unhealthy::Lagging {
                        lag,
                        applied,
                        last,
                        max_lag,
                    })
                } else if still_for > STALLED {
                    Err(Unhealthy::Stalled {
                        still_for,
                        lag,
                        applied,
                        last,
                    })
                } else {
                    Ok(format!("applied {applied} of {last} (lag {lag})"))
                }
            }
        });
    }
}

/// How long a read model may stay still while behind the log before it is not ready.
pub const STALLED: Duration = Duration::from_secs(10);

/// The state and limits of `stream`, or what is wrong.
async fn stream_info(
    js: &jetstream::Context,
    stream: &str,
) -> Result<jetstream::stream::Info, Unhealthy> {
    let found = js
        .get_stream(stream)
        .await
        .map_err(|error| Unhealthy::StreamUnreadable {
            stream: stream.to_owned(),
            error,
        })?;
    Ok(found.cached_info().clone())
}

/// The last sequence of `stream`, or what is wrong.
async fn last_sequence(js: &jetstream::Context, stream: &str) -> Result<u64, Unhealthy> {
    Ok(stream_info(js, stream).await?.state.last_sequence)
}

/// The last sequence of `stream`, or why it cannot take writes: missing, or at a limit
/// it was given that refuses new messages.
async fn writable_end(js: &jetstream::Context, stream: &str) -> Result<u64, Unhealthy> {
    let info = stream_info(js, stream).await?;
    let (config, state) = (&info.config, &info.state);
    let refuses = config.discard == jetstream::stream::DiscardPolicy::New;
    // A limit of 0 or -1 is none.
    let reached = |max: i64, now: u64| u64::try_from(max).is_ok_and(|max| max > 0 && now >= max);
    let (full_messages, full_bytes) = (
        reached(config.max_messages, state.messages),
        reached(config.max_bytes, state.bytes),
    );
    if refuses && (full_messages || full_bytes) {
        return Err(Unhealthy::StreamFull {
            stream: stream.to_owned(),
            messages: state.messages,
            bytes: state.bytes,
            max_messages: config.max_messages,
            max_bytes: config.max_bytes,
        });
    }
    Ok(state.last_sequence)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a process answers on [`STATUS_SUBJECT`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// The process id.
    pub pid: u32,
    /// keyledger's version.
    pub version: String,
    /// The components it runs.
    pub components: Vec<String>,
    /// Its readiness.
    pub report: Report,
}

/// Answers status requests on [`STATUS_SUBJECT`] with `health`'s report until
/// `shutdown`, on `client` (keyledger's own account).
pub async fn answer_status(
    client: async_nats::Client,
    health: Health,
    version: &'static str,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    use futures::StreamExt as _;
    let mut requests = client.subscribe(STATUS_SUBJECT).await?;
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = requests.next() => r,
        };
        let Some(request) = request else {
            return Ok(());
        };
        // Only keyledger's own account can ask; still, answer only onto an inbox.
        let Some(reply) = request.reply.filter(|r| crate::nats::is_reply_subject(r)) else {
            continue;
        };
        let status = ProcessStatus {
            pid: std::process::id(),
            version: version.to_owned(),
            components: health.components(),
            report: health.report().await,
        };
        match serde_json::to_vec(&status) {
            Ok(body) => {
                if let Err(e) = client.publish(reply, body.into()).await {
                    tracing::debug!(error = %e, "answering a status request failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "encoding the status failed"),
        }
    }
}

/// When a periodic task (the lifecycle scheduler) last made a pass, and whether it
/// went wrong: a check, and `keyledger status`'s "last scheduler run".
#[derive(Clone, Default)]
pub struct Heartbeat(Arc<Mutex<Option<Pass>>>);

/// A pass: when, and what went wrong in it, if anything did.
type Pass = (domain::timestamp::Timestamp, Option<String>);

impl Heartbeat {
    /// Records a pass at `at`; `problem` says what went wrong, if anything did.
    pub fn beat(&self, at: domain::timestamp::Timestamp, problem: Option<String>) {
        if problem.is_none() {
            #[expect(clippy::cast_precision_loss, reason = "a gauge of seconds")]
            metrics::gauge!(crate::metrics::SCHEDULER_LAST_RUN)
                .set(at.unix_millis() as f64 / 1000.0);
        }
        *lock(&self.0) = Some((at, problem));
    }

    /// Adds the check `name` to `health`: the last pass went right (or none was made
    /// yet).
    pub fn watch(&self, health: &Health, name: &str) {
        let beat = self.clone();
        health.check(name, move || {
            let last = lock(&beat.0).clone();
            async move {
                match last {
                    None => Ok("no pass yet".to_owned()),
                    Some((at, None)) => Ok(format!("last pass at {at}")),
                    Some((at, Some(problem))) => Err(Unhealthy::PassFailed { at, problem }),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_the_report_shows_them() {
        let cases = [
            (Unhealthy::TimedOut, "no answer within 2 s".to_owned()),
            (
                Unhealthy::Disconnected(async_nats::connection::State::Pending),
                format!(
                    "not connected to NATS ({}); reconnecting by itself — check that nats-server \
                     runs and is reachable",
                    async_nats::connection::State::Pending
                ),
            ),
            (
                Unhealthy::StreamFull {
                    stream: "KEYLEDGER".into(),
                    messages: 10,
                    bytes: 2048,
                    max_messages: 10,
                    max_bytes: -1,
                },
                "the stream KEYLEDGER is full (10 messages, 2048 bytes; its limits are 10 and -1) \
                 and refuses new messages: raise or remove its limits (max_msgs, max_bytes)"
                    .to_owned(),
            ),
            (
                Unhealthy::Lagging {
                    lag: 20_001,
                    applied: 5,
                    last: 20_006,
                    max_lag: DEFAULT_MAX_LAG,
                },
                "the read model is 20001 commits behind the log (applied 5 of 20006; at most \
                 10000 allowed): the projector is catching up, or not running"
                    .to_owned(),
            ),
            (
                Unhealthy::Stalled {
                    still_for: Duration::from_millis(12_500),
                    lag: 3,
                    applied: 7,
                    last: 10,
                },
                "the read model has not moved for 12 s while 3 commits behind the log (applied 7 \
                 of 10): the projector is failing or not running; see its log"
                    .to_owned(),
            ),
            (
                Unhealthy::NoCurrentKek,
                "this node does not hold the deployment's current KEK, so it stores no new \
                 payloads; see `keyledger keys status`"
                    .to_owned(),
            ),
        ];
        for (failure, words) in cases {
            assert_eq!(failure.to_string(), words);
        }
        let at = domain::timestamp::Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
        assert_eq!(
            Unhealthy::PassFailed {
                at,
                problem: "NATS away".into()
            }
            .to_string(),
            format!("the pass at {at} failed: NATS away")
        );
    }
}
