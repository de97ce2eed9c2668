//! Reads whose cost grows with the data they scan (history pages, listings) run a
//! few at a time: more wait for a slot (up to [`QUEUE_WAIT`], then 503 with
//! `Retry-After`), and one caller may have only a few in flight (429 beyond), so no
//! caller can make the others wait long or hold the database for itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;
use crate::error::ApiError;

/// Longest a read waits for a slot.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Who is running reads of one kind now.
#[derive(Debug)]
pub struct CostlyReads {
    /// What they are, for messages: "history reads".
    what: &'static str,
    per_caller: usize,
    running: Arc<Semaphore>,
    callers: Mutex<HashMap<String, usize>>,
}

/// A read in flight (waiting for a slot, then running); ends when dropped.
pub struct Reading {
    reads: Arc<CostlyReads>,
    caller: String,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut callers = self.reads.callers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = callers.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                callers.remove(&self.caller);
            }
        }
    }
}

impl CostlyReads {
    /// `concurrent` reads of this kind run at once; each caller may have
    /// `per_caller` in flight (running or waiting).
    pub fn new(what: &'static str, concurrent: usize, per_caller: usize) -> Self {
        Self {
            what,
            per_caller,
            running: Arc::new(Semaphore::new(concurrent)),
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a read for `caller` once a slot is free, or says to come back: at once
    /// when the caller has its reads in flight already (429), after [`QUEUE_WAIT`]
    /// when the slots stay taken (503).
    pub async fn start(self: &Arc<Self>, caller: &Caller) -> Result<Reading, ApiError> {
        let who = format!("{}@{}", caller.principal.user, caller.principal.project);
        {
            let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
            let n = callers.entry(who.clone()).or_default();
            if *n >= self.per_caller {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "you have {} {} in flight already; wait for an answer before asking \
                         again",
                        self.per_caller, self.what
                    ),
                )
                .retry_after(1));
            }
            *n += 1;
        }
        // Counted from here: dropping `Reading` (also when the wait below fails or the
        // client goes away) gives the caller's place back.
        let mut reading = Reading {
            reads: self.clone(),
            caller: who,
            _permit: None,
        };
        let permit = tokio::time::timeout(QUEUE_WAIT, self.running.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{} stayed busy for {} s; retry in a moment",
                        self.what,
                        QUEUE_WAIT.as_secs()
                    ),
                )
                .retry_after(1)
            })?;
        reading._permit = Some(permit);
        Ok(reading)
    }
}

/// The kinds of costly reads, each bounded on its own.
#[derive(Debug)]
pub struct Costly {
    /// History and audit pages: they read the log (4 at once, 4 per caller).
    pub history: Arc<CostlyReads>,
    /// Listings of secrets, containers and orders: they scan the project's rows in
    /// the read model (8 at once, 4 per caller).
    pub listings: Arc<CostlyReads>,
    /// Change streams (`GET /v1/changes`): each follows the log for as long as its
    /// client listens (256 at once, 4 per caller).
    pub changes: Arc<CostlyReads>,
}

impl Default for Costly {
    fn default() -> Self {
        Self {
            history: Arc::new(CostlyReads::new("history reads", 4, 4)),
            listings: Arc::new(CostlyReads::new("listings", 8, 4)),
            changes: Arc::new(CostlyReads::new("change streams", 256, 4)),
        }
    }
}
