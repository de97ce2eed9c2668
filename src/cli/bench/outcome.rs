//! What one phase of `keyledger bench` measured: a latency histogram, the errors, and
//! the secrets it created.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies, errors and created secrets of one phase (or one worker in it).
pub(super) struct Outcome {
    latencies: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    /// Each created secret: its id, its commit's sequence and the token (index) that
    /// created it, which phase 2 reads it with.
    pub(super) created: Vec<(String, u64, usize)>,
}

impl Outcome {
    pub(super) fn new() -> Self {
        Self {
            // Three significant figures from 1 us to 60 s: low >= 1, high >= 2 * low and
            // sigfig <= 5, so these bounds are always accepted.
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
            first_error: None,
            created: Vec::new(),
        }
    }

    pub(super) fn record(&mut self, started: Instant, result: Result<(), String>) {
        self.record_took(started.elapsed(), result);
    }

    /// Records an operation that took `took`.
    pub(super) fn record_took(&mut self, took: Duration, result: Result<(), String>) {
        let micros = took.as_micros().clamp(1, 60_000_000) as u64;
        match result {
            Ok(()) => {
                let _ = self.latencies.record(micros);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    pub(super) fn merge(mut self, other: Outcome) -> Self {
        let _ = self.latencies.add(&other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.created.extend(other.created);
        self
    }

    /// Prints `what` was measured, over `elapsed`.
    pub(super) fn report(&self, what: &str, elapsed: Duration) {
        let ok = self.latencies.len();
        let ms = |q: f64| self.latencies.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{what}, {:.1} s: {ok} ok, {} failed, {:.0}/s; latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            elapsed.as_secs_f64(),
            self.errors,
            ok as f64 / elapsed.as_secs_f64(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.latencies.max() as f64 / 1000.0,
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
    }
}
