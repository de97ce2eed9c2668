//! A bound on how many lines of one kind a process logs: what a client can cause once
//! per message (a rejected command, a message dropped for a slow consumer) must not
//! let it write the log at its own rate. An adversarial pass sent a million bogus
//! commands in 10 s and grew the log by 133 MB.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most `lines` lines per `window`; the rest are counted, and the count is handed
/// to the next line the budget lets through (after a flood that stops, there may be
/// none: the count waits for it).
#[derive(Debug)]
pub struct LogBudget {
    lines: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current window began; `None` before the first line.
    started: Option<Instant>,
    /// Lines written in it.
    used: u32,
    /// Lines left out since the last one written.
    left_out: u64,
}

impl LogBudget {
    /// A budget of `lines` per `window`.
    pub const fn new(lines: u32, window: Duration) -> Self {
        Self {
            lines,
            window,
            state: Mutex::new(State {
                started: None,
                used: 0,
                left_out: 0,
            }),
        }
    }

    /// Whether a line may be written now: `Some(n)`, with the `n` lines left out
    /// since the last one written (to be said with it), or `None` (counted).
    pub fn take(&self) -> Option<u64> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window)
        {
            state.started = Some(now);
            state.used = 0;
        }
        if state.used >= self.lines {
            state.left_out += 1;
            return None;
        }
        state.used += 1;
        Some(std::mem::take(&mut state.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_counted_and_named_by_the_next_window_s_first() {
        let budget = LogBudget::new(2, Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(budget.take_at(start), Some(0));
        assert_eq!(budget.take_at(start), Some(0));
        for _ in 0..5 {
            assert_eq!(budget.take_at(start + Duration::from_millis(999)), None);
        }
        let next = start + Duration::from_secs(1);
        assert_eq!(budget.take_at(next), Some(5));
        assert_eq!(budget.take_at(next), Some(0));
        assert_eq!(budget.take_at(next), None);
    }
}
