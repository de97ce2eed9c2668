//! The clock, passed in so that tests can move time instead of waiting.

use std::sync::Arc;

use domain::timestamp::Timestamp;

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system() -> Clock {
    Arc::new(|| Timestamp::saturating(time::OffsetDateTime::now_utc()))
}
