//! Delays between restarts of a long-running follower of the log (the projector, the
//! key shredder, the order worker): doubling while it keeps failing, and short again
//! after a run that went well, so one bad hour does not slow every later recovery.

use std::time::Duration;

/// The restart delays of one follower.
#[derive(Debug, Clone)]
pub struct Restarts {
    next: Duration,
}

impl Restarts {
    /// The first delay, and the delay after a healthy run.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(5);
    /// A run at least this long counts as healthy: its failure is a new incident.
    pub const HEALTHY: Duration = Duration::from_secs(30);

    /// Delays that start at [`Self::FIRST`].
    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// How long to wait before restarting a run that failed after `ran`.
    pub fn after_failure(&mut self, ran: Duration) -> Duration {
        if ran >= Self::HEALTHY {
            self.next = Self::FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// How long to wait before restarting a run that failed after `ran`, having
    /// `progressed` (applied something) or not: a run that progressed had recovered,
    /// however short it was, so its failure is a new incident, retried after
    /// [`Self::FIRST`] (a database restarted twice within [`Self::HEALTHY`] must not
    /// leave the follower asleep once it is back).
    pub fn after_failed_run(&mut self, ran: Duration, progressed: bool) -> Duration {
        if progressed {
            self.reset();
        }
        self.after_failure(ran)
    }

    /// Starts over from [`Self::FIRST`] (e.g. once NATS is back).
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Restarts {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_and_start_over_after_a_healthy_run() {
        let mut r = Restarts::new();
        let quick = Duration::from_secs(1);
        let delays: Vec<u128> = (0..8).map(|_| r.after_failure(quick).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(r.after_failure(Restarts::HEALTHY), Restarts::FIRST);
        assert_eq!(r.after_failure(quick), Duration::from_millis(200));
        r.reset();
        assert_eq!(r.after_failure(quick), Restarts::FIRST);
    }

    #[test]
    fn a_short_run_that_progressed_starts_over_and_one_that_did_not_backs_off() {
        let mut r = Restarts::new();
        let quick = Duration::from_millis(50);
        for _ in 0..6 {
            r.after_failed_run(quick, false);
        }
        assert_eq!(r.after_failed_run(quick, false), Restarts::MAX);
        assert_eq!(r.after_failed_run(quick, true), Restarts::FIRST);
        assert_eq!(r.after_failed_run(quick, false), Duration::from_millis(200));
    }
}
