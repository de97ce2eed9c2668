//! The projector's metrics (the rest are named in `infra::metrics`; this crate does not
//! depend on that one).

use metrics::{Unit, describe_gauge};

/// The last stream sequence the projector applied to the read model.
pub const PROJECTOR_APPLIED: &str = "keyledger_projector_applied_sequence";
/// Commits in the stream the projector has not applied yet.
pub const PROJECTOR_LAG_COMMITS: &str = "keyledger_projector_lag_commits";
/// How far behind the projector is in time: the age of the last commit it applied,
/// while more are pending (0 when caught up).
pub const PROJECTOR_LAG_SECONDS: &str = "keyledger_projector_lag_seconds";
/// `infra::metrics::CACHE_REQUESTS`, which the read cache counts in too.
const CACHE_REQUESTS: &str = "keyledger_cache_requests_total";

/// Counts one lookup of the read cache's `cache` (`payload_rows`, `access_keys`).
pub(crate) fn cache_lookup(cache: &'static str, hit: bool) {
    metrics::counter!(CACHE_REQUESTS, "cache" => cache, "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// Records where the projector stands: `applied`, appended `behind` ago, with `pending`
/// commits after it.
#[expect(clippy::cast_precision_loss, reason = "gauges")]
pub(crate) fn projector_at(applied: u64, pending: u64, behind: std::time::Duration) {
    metrics::gauge!(PROJECTOR_APPLIED).set(applied as f64);
    metrics::gauge!(PROJECTOR_LAG_COMMITS).set(pending as f64);
    metrics::gauge!(PROJECTOR_LAG_SECONDS).set(if pending == 0 {
        0.0
    } else {
        behind.as_secs_f64()
    });
}

/// Says what the projector's metrics mean.
pub fn describe() {
    describe_gauge!(
        PROJECTOR_APPLIED,
        "The last stream sequence the projector applied to the read model."
    );
    describe_gauge!(
        PROJECTOR_LAG_COMMITS,
        Unit::Count,
        "Commits in the event stream the projector has not applied yet."
    );
    describe_gauge!(
        PROJECTOR_LAG_SECONDS,
        Unit::Seconds,
        "Age of the last commit the projector applied, while more are pending (0 when caught up)."
    );
}
