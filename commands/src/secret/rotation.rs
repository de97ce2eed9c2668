//! The rotation runner: starts scheduled rotations and drives each run through its
//! four steps by asking the secret's handler on `keyledger.rotate.<handler>`, where
//! AWS invokes a Lambda function.
//!
//! It asks a [`RotationSource`] (the read model) which rotations are due, and records
//! every outcome as a commit of the secret, as keyledger's own actor. Replicas may run
//! it side by side: a scheduled start's command id and version are derived from the
//! due time, so the log starts it once; each step's outcome is recorded only for the
//! run's current step and attempt, so a second runner asking for the same step finds
//! it recorded and stops. Handlers must take a step asked twice, as AWS's contract
//! already requires of a rotation function.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domain::ErrorCode;
use domain::Rejection;
use domain::ids::{CommandId, ProjectId, SecretId, VersionId};
use domain::principal::Actor;
use domain::secret::arn::arn;
use domain::secret::rotation::{DueRotation, HandlerName, Run, Step, StepResult, clean_reason};
use domain::secret::{RecordStep, SecretCommand, SecretState};
use domain::subject::rotation_handler;
use domain::timestamp::Timestamp;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::secret::SecretHandler;
use infra::clock::Clock;

/// Where the runner learns which rotations are due.
pub trait RotationSource: Send + Sync + 'static {
    /// Up to `limit` rotations due at `now`.
    fn due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DueRotation>, crate::SourceError>> + Send;
}

/// How the runner asks handlers and retries.
#[derive(Debug, Clone, Copy)]
pub struct RotationSettings {
    /// How often it looks for due rotations.
    pub interval: Duration,
    /// How long a handler has to answer one step.
    pub step_timeout: Duration,
    /// Attempts of one step before the run ends as failed.
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for each later one.
    pub retry_after: Duration,
}

impl Default for RotationSettings {
    /// Steps of 60 s, three attempts, a minute before the first retry.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            step_timeout: Duration::from_secs(60),
            attempts: 3,
            retry_after: Duration::from_secs(60),
        }
    }
}

/// The region in the ARNs handlers receive. keyledger answers an ARN of any region
/// (it is one region wherever a client says it is), so this only fills the field.
pub const ARN_REGION: &str = "us-east-1";

/// What a handler receives: AWS's rotation event.
#[derive(Debug, Serialize)]
struct StepRequest<'a> {
    #[serde(rename = "SecretId")]
    secret_id: &'a str,
    #[serde(rename = "ClientRequestToken")]
    token: String,
    #[serde(rename = "Step")]
    step: Step,
}

/// Why a step failed, in the words recorded as its reason.
#[derive(Debug, thiserror::Error)]
enum StepFailed {
    /// The request could not be encoded.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// No NATS service answers the handler's subject.
    #[error(
        "handler {handler} not reachable: no NATS service answers {subject}; start it (it \
         connects as the rotation user), or name another handler with RotateSecret"
    )]
    Unreachable {
        handler: HandlerName,
        subject: String,
    },
    /// The handler did not answer within the step's deadline.
    #[error(
        "{step} timed out: handler {handler} did not answer within {}s",
        timeout.as_secs_f64()
    )]
    TimedOut {
        step: Step,
        handler: HandlerName,
        timeout: Duration,
    },
    /// Asking the handler failed otherwise.
    #[error("asking handler {handler} for {step}: {error}")]
    Request {
        handler: HandlerName,
        step: Step,
        error: async_nats::RequestError,
    },
    /// The handler's reply is not JSON.
    #[error(
        "the handler's reply ({len} bytes) is not JSON; a handler answers null (or any JSON \
         without an error) on success, and {{\"errorMessage\": \"…\"}} on failure"
    )]
    NotJson { len: usize },
    /// The handler reported a failure: its words, cleaned.
    #[error("{0}")]
    Handler(String),
}

/// The runner.
pub struct Runner<S> {
    /// Records outcomes.
    pub handler: Arc<SecretHandler>,
    /// Asks handlers.
    pub nats: async_nats::Client,
    /// What is due.
    pub source: S,
    /// The time.
    pub clock: Clock,
    /// Timing.
    pub settings: RotationSettings,
}

/// Due rotations looked at in one pass.
const BATCH: u32 = 64;

/// Rotations one runner drives at once: each waits on its handler, so a slow or silent
/// handler holds one of these, never the others.
const IN_FLIGHT: usize = 32;

impl<S: RotationSource> Runner<S> {
    /// Runs until `shutdown` is cancelled. Each due rotation is driven in a task of its
    /// own, one per secret at a time; on shutdown they stop where they are, and the
    /// lease of a run lapses so that a runner takes it up again.
    pub async fn run(self, shutdown: CancellationToken) {
        let runner = Arc::new(self);
        let driving: Arc<Mutex<HashSet<SecretId>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            match runner.source.due((runner.clock)(), BATCH).await {
                Ok(due) => {
                    for rotation in due {
                        if tasks.len() >= IN_FLIGHT {
                            break;
                        }
                        let secret = rotation.secret;
                        if !lock(&driving).insert(secret) {
                            continue;
                        }
                        let (runner, driving) = (runner.clone(), driving.clone());
                        tasks.spawn(async move {
                            runner.drive(rotation).await;
                            lock(&driving).remove(&secret);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rotation runner: cannot read what is due; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    tasks.abort_all();
                    return;
                }
                () = tokio::time::sleep(runner.settings.interval) => {}
            }
        }
    }

    /// Starts the rotation if it is a scheduled one, then asks for its steps until it
    /// ends, fails an attempt, or another runner holds it.
    async fn drive(&self, due: DueRotation) {
        let (project, secret) = (due.project, due.secret);
        if due.rotation.run.is_none() {
            let Some(next) = due.rotation.next else {
                return;
            };
            if let Err(r) = self.start(&project, secret, next).await {
                quiet_or_warn(secret, "start", &r);
                return;
            }
        }
        let mut first = true;
        let mut asked: Option<(VersionId, Timestamp, Step, u32)> = None;
        loop {
            let state = match self.handler.state(&project, secret).await {
                Ok(s) => s,
                Err(r) => return quiet_or_warn(secret, "load", &r),
            };
            let SecretState::Live(s) = state else { return };
            let Some(rotation) = s.rotation.as_ref() else {
                return;
            };
            let Some(run) = rotation.run.clone() else {
                return;
            };
            // The read model said due; the log may say a retry waits, or another
            // runner holds the run. Once this runner records a step it holds it.
            if first && run.due > (self.clock)() {
                return;
            }
            first = false;
            // A record that left the run where it was (it was already there: a
            // command id answered as done) must not make this runner ask again.
            let at = (run.version, run.started, run.step, run.attempt);
            if asked == Some(at) {
                tracing::warn!(%secret, step = %run.step, "rotation runner: the step's record changed nothing; stopping");
                return;
            }
            asked = Some(at);
            let secret_arn = arn(ARN_REGION, &project, s.attributes.name.as_ref(), secret);
            let outcome = self
                .ask(&rotation.handler, &secret_arn, run.version, run.step)
                .await;
            let failed = outcome.is_err();
            if let Err(reason) = &outcome {
                tracing::warn!(%secret, step = %run.step, attempt = run.attempt, %reason, "rotation step failed");
            }
            if let Err(r) = self.record(&project, secret, &run, outcome).await {
                return quiet_or_warn(secret, "record", &r);
            }
            if failed || run.step == Step::Finish {
                return;
            }
        }
    }

    async fn start(
        &self,
        project: &ProjectId,
        secret: SecretId,
        due: Timestamp,
    ) -> Result<(), Rejection> {
        let occasion = format!("rotate-{secret}-{}", due.unix_millis());
        let version = VersionId::from_uuid(Uuid::new_v5(&RUN_NAMESPACE, occasion.as_bytes()));
        let command = SecretCommand::StartScheduledRotation { version };
        self.run_command(project, secret, command, &occasion)
            .await?;
        tracing::info!(%secret, %version, "rotation started on schedule");
        Ok(())
    }

    /// Asks the handler for one step; the error says why it failed.
    async fn ask(
        &self,
        handler: &HandlerName,
        secret_arn: &str,
        version: VersionId,
        step: Step,
    ) -> Result<(), StepFailed> {
        let request = StepRequest {
            secret_id: secret_arn,
            token: version.to_string(),
            step,
        };
        let body = serde_json::to_vec(&request).map_err(StepFailed::Encode)?;
        let subject = rotation_handler(handler);
        let timeout = self.settings.step_timeout;
        // The step's own deadline, not the connection's default request timeout.
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(timeout));
        let reply = match self.nats.send_request(subject.clone(), request).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(StepFailed::Unreachable {
                    handler: handler.clone(),
                    subject,
                });
            }
            Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                return Err(StepFailed::TimedOut {
                    step,
                    handler: handler.clone(),
                    timeout,
                });
            }
            Err(error) => {
                return Err(StepFailed::Request {
                    handler: handler.clone(),
                    step,
                    error,
                });
            }
            Ok(reply) => reply,
        };
        // The step is recorded beside the reason: the handler's words suffice.
        handler_answer(&reply.payload)
    }

    async fn record(
        &self,
        project: &ProjectId,
        secret: SecretId,
        run: &Run,
        outcome: Result<(), StepFailed>,
    ) -> Result<(), Rejection> {
        let now = (self.clock)();
        let result = match outcome {
            // Other runners leave the run alone while this one asks for the next step.
            Ok(()) => StepResult::Done {
                lease: now.plus(self.settings.step_timeout * 2).unwrap_or(now),
            },
            Err(failed) => StepResult::Failed {
                retry_at: (run.attempt < self.settings.attempts)
                    .then(|| now.plus(backoff(self.settings.retry_after, run.attempt)))
                    .flatten(),
                reason: failed.to_string(),
            },
        };
        // A run is named by its version and its start: a later run with the same
        // version (a reused ClientRequestToken) records its steps anew.
        let id = format!(
            "rot-{}-{}-{}-{}",
            run.version.to_string().replace('-', ""),
            run.started.unix_millis(),
            step_letter(run.step),
            run.attempt
        );
        let command = SecretCommand::RecordRotationStep(Box::new(RecordStep {
            version: run.version,
            step: run.step,
            attempt: run.attempt,
            result,
        }));
        self.run_command(project, secret, command, &id).await
    }

    /// Runs `command` on `secret` as the rotation runner, with command id `id`.
    async fn run_command(
        &self,
        project: &ProjectId,
        secret: SecretId,
        command: SecretCommand,
        id: &str,
    ) -> Result<(), Rejection> {
        self.handler
            .run_as(
                &Actor::rotator(),
                project.clone(),
                secret,
                command,
                CommandId::parse(id)?,
            )
            .await?;
        Ok(())
    }
}

/// The set of secrets being driven; a task that panicked while holding it left it
/// whole (an insert or a remove), so a poisoned lock is still good.
fn lock(set: &Mutex<HashSet<SecretId>>) -> MutexGuard<'_, HashSet<SecretId>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

const RUN_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_796c_6564_6765_7200_0000_0000_0003);

/// The wait before attempt `attempt + 1`: `first`, doubled for each attempt after the
/// first, capped at a day.
fn backoff(first: Duration, attempt: u32) -> Duration {
    let doubled = first.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    doubled.min(Duration::from_secs(86_400))
}

fn step_letter(step: Step) -> &'static str {
    match step {
        Step::Create => "c",
        Step::Set => "s",
        Step::Test => "t",
        Step::Finish => "f",
    }
}

/// What a handler's reply says, failing closed: success is a JSON reply without an
/// error (AWS's functions return nothing: `null`); Lambda's `{"errorMessage",
/// "errorType"}` or `{"error"}` is the handler's failure, and so is a reply that is not
/// JSON at all, since a step that cannot be read cannot be taken as done.
fn handler_answer(payload: &[u8]) -> Result<(), StepFailed> {
    let Ok(value) = domain::json_text::from_untrusted::<serde_json::Value>(payload) else {
        return Err(StepFailed::NotJson { len: payload.len() });
    };
    let member = |k: &str| {
        value.get(k).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let message = member("errorMessage").or_else(|| member("error"));
    let kind = member("errorType");
    let reason = match (kind, message) {
        (None, None) => return Ok(()),
        (Some(kind), None) => clean_reason(&kind),
        (None, Some(message)) => clean_reason(&message),
        (Some(kind), Some(message)) => clean_reason(&format!(
            "{}: {message}",
            kind.chars().take(100).collect::<String>()
        )),
    };
    Err(StepFailed::Handler(reason))
}

/// A refusal because the log says otherwise (another runner got there first, the
/// secret was deleted or the rotation cancelled) is expected and quiet.
fn quiet_or_warn(secret: SecretId, what: &str, r: &Rejection) {
    if matches!(r.code, ErrorCode::Conflict | ErrorCode::NotFound) {
        tracing::debug!(%secret, what, reason = %r, "rotation runner: skipped");
    } else {
        tracing::warn!(%secret, what, error = %r, "rotation runner: failed; retried on the next pass");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason recorded for a reply that must be a failure.
    fn reason(payload: &[u8]) -> String {
        handler_answer(payload).unwrap_err().to_string()
    }

    #[test]
    fn handler_answers_read_as_lambda_writes_them_and_fail_closed() {
        assert!(handler_answer(b"null").is_ok());
        assert!(handler_answer(b"{}").is_ok());
        assert_eq!(
            reason(br#"{"errorMessage": "login refused", "errorType": "ValueError"}"#),
            "ValueError: login refused"
        );
        assert_eq!(reason(br#"{"error": "no"}"#), "no");
        // Unreadable or odd replies are failures, never a step done.
        assert_eq!(
            reason(b"{"),
            "the handler's reply (1 bytes) is not JSON; a handler answers null (or any JSON \
             without an error) on success, and {\"errorMessage\": \"…\"} on failure"
        );
        assert!(reason(b"").contains("not JSON"));
        assert!(handler_answer(br#"{"errorMessage": "\udcff"}"#).is_err());
        assert_eq!(reason(br#"{"errorMessage": 7}"#), "7");
        assert_eq!(reason(br#"{"errorMessage": null}"#), "null");
        // Bounded and without control characters, whatever the handler sends.
        let huge = format!(
            r#"{{"errorType": "{}", "errorMessage": "a\nb"}}"#,
            "T".repeat(1 << 20)
        );
        let cleaned = reason(huge.as_bytes());
        assert!(cleaned.chars().count() <= domain::secret::rotation::MAX_REASON_CHARS);
        assert!(cleaned.ends_with(": a\u{FFFD}b"), "{cleaned}");
    }

    #[test]
    fn retries_back_off_and_command_ids_fit() {
        let m = Duration::from_secs(60);
        assert_eq!(backoff(m, 1), m);
        assert_eq!(backoff(m, 3), m * 4);
        assert_eq!(backoff(m, 40), Duration::from_secs(86_400));
        // The longest a step's id gets: the last instant a timestamp holds (year
        // 9999), the most attempts --rotation-attempts allows.
        let v = VersionId::from_uuid(Uuid::from_u128(u128::MAX));
        let last = Timestamp::parse_iso8601("t", "9999-12-31T23:59:59.999Z").unwrap();
        let id = format!(
            "rot-{}-{}-f-100",
            v.to_string().replace('-', ""),
            last.unix_millis()
        );
        assert!(CommandId::parse(&id).is_ok(), "{id}");
        let s = SecretId::from_uuid(Uuid::from_u128(u128::MAX));
        assert!(CommandId::parse(&format!("rotate-{s}-{}", i64::MAX)).is_ok());
    }
}
