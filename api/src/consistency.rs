//! Read-your-writes over HTTP.
//!
//! - Every successful response to a secrets request carries `X-Keyledger-Seq`: the
//!   stream sequence the read model had applied when it answered (for a write: the
//!   sequence of its commit). An error does not.
//! - A write returns once the read model shows it, so the next read by the same client
//!   sees it.
//! - A read may send `X-Keyledger-Min-Seq: <n>` (e.g. the `seq` of a command a service
//!   sent over NATS): it waits, for up to the consistency timeout, until the read
//!   model has applied `n`, and otherwise answers 503 with `Retry-After`; a sequence
//!   beyond the log's end is a 409 once the read has waited `GRACE` for it (waiting
//!   longer would hold the request in vain).

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use infra::protocol::AcceptedReply;
use projections::read::Lagging;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Request header: the sequence a read must reflect.
pub const MIN_SEQ: &str = "x-keyledger-min-seq";
/// Response header: the sequence a response reflects.
pub const SEQ: &str = "x-keyledger-seq";

/// How long a read waits for its sequence before asking the log whether that sequence
/// exists. A sequence from a command reply is usually applied within milliseconds;
/// asking first would cost every such read two JetStream API requests (the stream's
/// info, which nats-server computes under the stream's lock), taken from the server
/// the commands are waiting on.
const GRACE: Duration = Duration::from_millis(100);

/// The sequence a read must reflect, if the client named one; waiting for it happens
/// while extracting, before the handler reads.
#[derive(Debug, Clone, Copy)]
pub struct Consistent;

impl FromRequestParts<AppState> for Consistent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(MIN_SEQ) else {
            return Ok(Self);
        };
        let seq: u64 = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{MIN_SEQ} must be a stream sequence number (the seq of a command reply)"
                ))
            })?;
        // Boxed: inline, the wait's future would enlarge every read's, this header or not.
        Box::pin(reach(state, seq)).await?;
        Ok(Self)
    }
}

/// Waits until the read model has applied `seq` (the client's `X-Keyledger-Min-Seq`).
async fn reach(state: &AppState, seq: u64) -> Result<(), ApiError> {
    let timeout = state.config.consistency_timeout;
    let lagging = |lag: Lagging| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the read model has applied sequence {} and did not reach {} within {:?}; \
                 retry shortly",
                lag.applied, lag.wanted, timeout
            ),
        )
        .retry_after(1)
    };
    let grace = GRACE.min(timeout);
    if state.read.wait_for(seq, grace).await.is_err() {
        // A sequence the log does not hold yet would be waited for in vain.
        let end = log_end(state).await?;
        if seq > end {
            // 409: the request is well formed, but names a state the log has not
            // reached (nor may ever: no write has that sequence yet).
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{MIN_SEQ} {seq} is beyond the end of the log (sequence {end}); send the \
                     seq of a write (its X-Keyledger-Seq, or a command reply's seq)"
                ),
            ));
        }
        state
            .read
            .wait_for(seq, timeout.saturating_sub(grace))
            .await
            .map_err(lagging)?;
    }
    Ok(())
}

/// The log's last sequence.
pub(crate) async fn log_end(state: &AppState) -> Result<u64, ApiError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "reading the log's end failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the log is unavailable; retry shortly",
        )
        .retry_after(1)
    };
    let mut stream = state
        .js
        .get_stream(&state.config.stream)
        .await
        .map_err(|e| unavailable(&e))?;
    let info = stream.info().await.map_err(|e| unavailable(&e))?;
    Ok(info.state.last_sequence)
}

/// An empty 204 for a write that landed at `seq`.
pub fn no_content(seq: u64) -> Response {
    with_seq(StatusCode::NO_CONTENT.into_response(), seq)
}

/// Adds `X-Keyledger-Seq` to a response.
pub fn with_seq(mut response: Response, seq: u64) -> Response {
    response.headers_mut().insert(SEQ, HeaderValue::from(seq));
    response
}

/// Sends a write as the command `name` and returns its reply once reads show it. If
/// the read model lags past the timeout the write still succeeded, so this answers
/// success (and logs the lag): the header `X-Keyledger-Seq` lets the client insist on
/// it with `X-Keyledger-Min-Seq`.
/// It is sent as `caller`: with their bearer token, or, for a principal keyledger
/// verified itself (a SigV4 signature, a client certificate), with a delegation token
/// minted now, on the delegated subjects that accept it.
pub async fn write<T: Serialize>(
    state: &AppState,
    name: &str,
    caller: &crate::auth::Caller,
    body: &T,
) -> Result<AcceptedReply, ApiError> {
    let commands = if caller.delegated() {
        &state.aws.commands
    } else {
        &state.commands
    };
    let accepted = commands
        .send(name, &caller.command_token(state), body)
        .await?;
    if let Err(lag) = state
        .read
        .wait_for(accepted.seq, state.config.consistency_timeout)
        .await
    {
        tracing::warn!(%lag, "a write is committed but not yet visible to reads");
    }
    Ok(accepted)
}
