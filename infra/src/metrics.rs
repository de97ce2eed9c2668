//! keyledger's metrics: every name, what it counts, and the labels it may carry.
//!
//! Each crate records through the `metrics` facade with these names; the binary
//! installs the Prometheus exporter and serves `/metrics`. Names follow Prometheus's
//! conventions (a `keyledger_` prefix, base units, `_total` on counters). Label values
//! come from bounded sets only — command names, rejection codes, cache names, routes as
//! templates — never from what a caller sends; a project id is a label only where the
//! operator asked for it ([`label_projects`]), since a deployment may hold any number
//! of projects. No metric carries secret material. The projector's series are named in
//! `projections::metrics` (that crate does not depend on this one).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Commands handled, by `command` and `outcome` (`accepted`, or the rejection's code).
pub const COMMANDS: &str = "keyledger_commands_total";
/// Time from a command's arrival to its answer, by `command`.
pub const COMMAND_DURATION: &str = "keyledger_command_duration_seconds";
/// Writes per group-commit batch (one JetStream atomic batch, or one write alone), by
/// `stream`: `events` (commits) or `keys` (wrapped data keys).
pub const GROUP_COMMIT_BATCH: &str = "keyledger_group_commit_batch_size";
/// Time from a write's hand-over to its group-commit writer to its answer (on disk, or
/// why not), by `stream`: `events` or `keys`.
pub const GROUP_COMMIT_WAIT: &str = "keyledger_group_commit_wait_seconds";
/// Cache lookups, by `cache` and `result` (`hit` or `miss`); the read model's cache
/// counts here too, as `payload_rows` and `access_keys`.
pub const CACHE_REQUESTS: &str = "keyledger_cache_requests_total";
/// Access-record batches published, by `outcome` (`ok` or `failed`).
pub const ACCESS_RECORD_BATCHES: &str = "keyledger_access_record_batches_total";
/// Access records published, by `outcome` (`ok` or `failed`).
pub const ACCESS_RECORDS: &str = "keyledger_access_records_total";
/// Payload reads, by `outcome` (`allowed` or `denied`).
pub const PAYLOAD_READS: &str = "keyledger_payload_reads_total";
/// NATS reconnections, by `connection` (keyledger's own connection names).
pub const NATS_RECONNECTS: &str = "keyledger_nats_reconnects_total";
/// NATS connections lost, by `connection`.
pub const NATS_DISCONNECTS: &str = "keyledger_nats_disconnects_total";
/// Scheduled tasks found due, by `task`.
pub const SCHEDULER_DUE: &str = "keyledger_scheduler_tasks_due_total";
/// Scheduled tasks done, by `task` and `outcome` (`done` or `failed`).
pub const SCHEDULER_DONE: &str = "keyledger_scheduler_tasks_done_total";
/// When the lifecycle scheduler last looked for due work (Unix seconds).
pub const SCHEDULER_LAST_RUN: &str = "keyledger_scheduler_last_run_timestamp_seconds";
/// Seconds since the checkpointer last found the whole log covered by a signed
/// checkpoint, as of the scrape: it grows while commits wait for one (a checkpointer
/// failing, or falling behind), not while the log is quiet.
pub const CHECKPOINT_AGE: &str = "keyledger_checkpoint_age_seconds";
/// Commits covered by the last signed checkpoint.
pub const CHECKPOINT_SIZE: &str = "keyledger_checkpoint_tree_size";
/// HTTP requests answered, by `method`, `route` (the route's template) and `status`.
pub const HTTP_REQUESTS: &str = "keyledger_http_requests_total";
/// Time to answer an HTTP request, by `method` and `route`.
pub const HTTP_DURATION: &str = "keyledger_http_request_duration_seconds";
/// Always 1, labelled with the running `version`.
pub const BUILD_INFO: &str = "keyledger_build_info";

/// The caches whose lookups [`CACHE_REQUESTS`] counts.
pub mod cache {
    /// The command side's aggregates (state as of their last commit).
    pub const AGGREGATES: &str = "aggregates";
    /// The read side's wrapped data keys (never unwrapped ones).
    pub const WRAPPED_KEYS: &str = "wrapped_keys";
    /// The NATS change relay's facts of each object (a miss reads the object's
    /// history from the log).
    pub const CHANGE_RELAY: &str = "change_relay";
    /// The facts each `GET /v1/changes` stream keeps of the objects it saw last (a
    /// miss reads the object's history from the log).
    pub const CHANGE_STREAMS: &str = "change_streams";
}

/// Counts one lookup of `cache`.
pub fn cache_lookup(cache: &'static str, hit: bool) {
    metrics::counter!(CACHE_REQUESTS, "cache" => cache, "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// When a checkpointer of this process last found the log covered (Unix ms).
static COVERED_AT_MS: AtomicI64 = AtomicI64::new(i64::MIN);

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Records that the whole log, `tree_size` commits, is now covered by a signed
/// checkpoint.
pub fn checkpoint_covered(tree_size: u64) {
    COVERED_AT_MS.store(unix_ms(), Ordering::Relaxed);
    #[expect(clippy::cast_precision_loss, reason = "a gauge of a count")]
    metrics::gauge!(CHECKPOINT_SIZE).set(tree_size as f64);
}

/// Brings the gauges that depend on the time of the scrape up to now; the exporter
/// calls it before each render.
pub fn refresh() {
    let covered = COVERED_AT_MS.load(Ordering::Relaxed);
    if covered != i64::MIN {
        #[expect(clippy::cast_precision_loss, reason = "a gauge of seconds")]
        metrics::gauge!(CHECKPOINT_AGE)
            .set(unix_ms().saturating_sub(covered).max(0) as f64 / 1000.0);
    }
}

static PROJECT_LABELS: AtomicBool = AtomicBool::new(false);

/// Makes [`COMMANDS`] and [`PAYLOAD_READS`] carry a `project` label from now on: one
/// series per project, so only for deployments with a bounded number of projects.
pub fn label_projects(on: bool) {
    PROJECT_LABELS.store(on, Ordering::Relaxed);
}

/// The `project` label for `project`, when the operator turned project labels on.
pub fn project_label(project: &str) -> Option<metrics::Label> {
    PROJECT_LABELS
        .load(Ordering::Relaxed)
        .then(|| metrics::Label::new("project", project.to_owned()))
}

/// Says what every metric means (the exporter prints it as `# HELP`).
pub fn describe() {
    describe_counter!(
        COMMANDS,
        "Commands handled, by command and outcome (accepted, or the rejection's code)."
    );
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Time from a command's arrival to its answer, by command."
    );
    describe_histogram!(
        GROUP_COMMIT_BATCH,
        Unit::Count,
        "Writes appended per group-commit batch, by stream (events: commits; keys: wrapped data keys)."
    );
    describe_histogram!(
        GROUP_COMMIT_WAIT,
        Unit::Seconds,
        "Time a write waits for its group-commit writer to store it, by stream (events or keys)."
    );
    describe_counter!(
        CACHE_REQUESTS,
        "Cache lookups, by cache and result (hit or miss)."
    );
    describe_counter!(
        ACCESS_RECORD_BATCHES,
        "Access-record batches published to the access stream, by outcome (ok or failed)."
    );
    describe_counter!(
        ACCESS_RECORDS,
        "Access records published to the access stream, by outcome (ok or failed)."
    );
    describe_counter!(
        PAYLOAD_READS,
        "Payload reads, by outcome (allowed or denied)."
    );
    describe_counter!(NATS_RECONNECTS, "NATS reconnections, by connection.");
    describe_counter!(NATS_DISCONNECTS, "NATS connections lost, by connection.");
    describe_counter!(
        SCHEDULER_DUE,
        "Scheduled lifecycle tasks found due, by task."
    );
    describe_counter!(
        SCHEDULER_DONE,
        "Scheduled lifecycle tasks carried out, by task and outcome (done or failed)."
    );
    describe_gauge!(
        SCHEDULER_LAST_RUN,
        Unit::Seconds,
        "When the lifecycle scheduler last looked for due work (Unix time)."
    );
    describe_gauge!(
        CHECKPOINT_AGE,
        Unit::Seconds,
        "Seconds since the whole log was last found covered by a signed checkpoint."
    );
    describe_gauge!(
        CHECKPOINT_SIZE,
        Unit::Count,
        "Commits covered by the last signed checkpoint."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route template."
    );
    describe_gauge!(BUILD_INFO, "Always 1, labelled with keyledger's version.");
    // Series an alert compares against exist from the start, at zero, rather than
    // appearing with their first event.
    for outcome in ["allowed", "denied"] {
        metrics::counter!(PAYLOAD_READS, "outcome" => outcome).increment(0);
    }
    for outcome in ["ok", "failed"] {
        metrics::counter!(ACCESS_RECORD_BATCHES, "outcome" => outcome).increment(0);
        metrics::counter!(ACCESS_RECORDS, "outcome" => outcome).increment(0);
    }
}
