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

/// Progress of a known number of items: on a terminal, a line rewritten in place;
/// elsewhere (a log file), a line every 1,000 items, so an operator can follow a
/// long run either way.
pub struct Bar {
    what: &'static str,
    total: u64,
    started: Instant,
    terminal: bool,
}

impl Bar {
    /// Progress of `what` over about `total` items.
    pub fn new(what: &'static str, total: u64) -> Self {
        Self {
            what,
            total,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// `count` items are done.
    pub fn at(&self, count: u64) {
        let step = if self.terminal { 100 } else { 1_000 };
        if !count.is_multiple_of(step) {
            return;
        }
        let percent = count * 100 / self.total.max(count).max(1);
        let rate = count as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "{} {count} of ~{} ({percent}%, {rate:.0}/s)",
            self.what, self.total
        );
        if self.terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }

    /// Ends the progress line.
    pub fn done(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
