//! Progress of a long read of the log, on stderr when it is a terminal (never in a
//! pipe or a log file).

use std::io::IsTerminal;
use std::time::Instant;

/// Counts commits and shows the count and rate every 10,000.
pub struct Progress {
    what: &'static str,
    started: Instant,
    shown: bool,
}

impl Progress {
    /// Progress of `what` (e.g. "replayed"), shown only on a terminal.
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            started: Instant::now(),
            shown: std::io::stderr().is_terminal(),
        }
    }

    /// `count` commits are done.
    pub fn at(&self, count: u64) {
        if self.shown && count.is_multiple_of(10_000) {
            eprint!(
                "\r{} {count} commits ({:.0}/s)",
                self.what,
                count as f64 / self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// Ends the progress line.
    pub fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}
