//! The lifecycle scheduler: issues Expire for secrets whose expiration has passed,
//! Purge for deletions whose recovery window has ended, and PruneVersions for secrets
//! holding deprecated versions that retention no longer keeps.
//!
//! It asks a [`DueSource`] (the read model) what is due, and runs each task through the
//! command handler as keyledger's own actor. Command ids are derived from the task
//! (`expire-<secret>`; `purge-<secret>-v<version>`), so several replicas running the
//! scheduler at once write each task once: the second append is answered as a
//! duplicate of the first. After downtime the first pass finds everything overdue.
//! The domain still checks each task against the log, so a stale read model can make
//! the scheduler try too early, never act wrongly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use domain::ErrorCode;
use domain::secret::version::Lifecycle;
use domain::timestamp::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::secret::SecretHandler;
use infra::clock::Clock;
use infra::health::Heartbeat;
use infra::metrics::{SCHEDULER_DONE, SCHEDULER_DUE};

pub use domain::secret::version::{Due, DueTask as Task};

/// Where the scheduler learns what is due.
pub trait DueSource: Send + Sync + 'static {
    /// Up to `limit` tasks of each kind due at `now` under `lifecycle`.
    fn due(
        &self,
        now: Timestamp,
        lifecycle: Lifecycle,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Due>, crate::SourceError>> + Send;
}

/// Batch size of one pass, per kind of task.
const BATCH: u32 = 256;

/// Runs the scheduler every `interval` until `shutdown` is cancelled, with the
/// handler's lifecycle rules.
pub async fn run<S: DueSource>(
    handler: Arc<SecretHandler>,
    source: S,
    clock: Clock,
    interval: Duration,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) {
    let lifecycle = handler.lifecycle();
    loop {
        let now = clock();
        let full = match source.due(now, lifecycle, BATCH).await {
            Ok(due) => {
                let full = due.len() >= BATCH as usize;
                for task in due {
                    metrics::counter!(SCHEDULER_DUE, "task" => task_name(task.task)).increment(1);
                    run_one(&handler, task).await;
                }
                heartbeat.beat(now, None);
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: cannot read what is due; retrying");
                heartbeat.beat(now, Some(format!("cannot read what is due: {e}")));
                false
            }
        };
        // After a full batch more may be waiting (say, after downtime): look again
        // soon, but not at once, so the projector can show what this pass did.
        let pause = if full {
            interval.min(Duration::from_millis(100))
        } else {
            interval
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// A task's name, as a label.
fn task_name(task: Task) -> &'static str {
    match task {
        Task::Expire => "expire",
        Task::Purge => "purge",
        Task::Prune => "prune",
    }
}

/// Runs one task. A refusal because the log already says otherwise (the read model
/// lagged) is expected and quiet.
async fn run_one(handler: &SecretHandler, due: Due) {
    let (command, id) = match due.command() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, secret = %due.secret, "scheduler: bad task");
            return;
        }
    };
    let name = command.name();
    let result = handler
        .run_task(due.project.clone(), due.secret, command, id)
        .await;
    let outcome = match &result {
        Ok(_) => "done",
        Err(r) if matches!(r.code, ErrorCode::Conflict | ErrorCode::NotFound) => "skipped",
        Err(_) => "failed",
    };
    metrics::counter!(SCHEDULER_DONE, "task" => task_name(due.task), "outcome" => outcome)
        .increment(1);
    match result {
        Ok(accepted) => {
            tracing::info!(task = name, secret = %due.secret, seq = accepted.seq, "scheduler: done");
        }
        // The log already says otherwise (restored, already expired, not yet due by
        // the log's state): the read model was behind. Nothing to do.
        Err(r) if matches!(r.code, ErrorCode::Conflict | ErrorCode::NotFound) => {
            tracing::debug!(task = name, secret = %due.secret, reason = %r, "scheduler: skipped");
        }
        Err(r) => {
            tracing::warn!(
                task = name,
                secret = %due.secret,
                error = %r,
                "scheduler: task failed; it is retried on the next pass"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ids::{CommandId, ProjectId, SecretId};
    use uuid::Uuid;

    fn due(task: Task, version: u64) -> Due {
        Due {
            project: ProjectId::parse("p1").unwrap(),
            secret: SecretId::from_uuid(Uuid::from_u128(9)),
            task,
            version,
        }
    }

    /// Replicas derive the same command id for the same occasion, so the log takes it
    /// once; a purge after a restore and a new deletion is a new occasion.
    #[test]
    fn command_ids_name_the_occasion() {
        let id = |d: Due| d.command().unwrap().1.to_string();
        assert_eq!(
            id(due(Task::Expire, 3)),
            "expire-00000000-0000-0000-0000-000000000009"
        );
        assert_eq!(id(due(Task::Expire, 3)), id(due(Task::Expire, 7)));
        assert_eq!(id(due(Task::Purge, 4)), id(due(Task::Purge, 4)));
        assert_ne!(id(due(Task::Purge, 4)), id(due(Task::Purge, 6)));
        assert!(id(due(Task::Prune, 99_999)).len() <= CommandId::MAX_LEN);
    }
}
