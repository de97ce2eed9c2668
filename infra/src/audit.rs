//! Reading a stream in order, as an auditor does: through JetStream's direct get API,
//! in batches, with no state on the server (no consumer), up to the last message the
//! stream held when reading began.
//!
//! Direct gets are the only JetStream API an auditor's account reaches (keyledger's
//! managed nats-server exports nothing else to it): reading cannot create, change or
//! delete anything, and every reader of the log — auditors, the checkpointer, the
//! history endpoints — uses this one path.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

/// Messages asked for per direct-get batch.
const BATCH: u64 = 1000;
/// Bytes asked for per batch: the server stops a batch at this size.
const BATCH_BYTES: usize = 4 << 20;
/// How long one batch may go quiet before the read fails.
const QUIET: Duration = Duration::from_secs(10);

/// One stored message of the log.
#[derive(Debug, Clone)]
pub struct LogMessage {
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// The commit's bytes.
    pub payload: Bytes,
    /// Its headers, as stored.
    pub headers: Option<HeaderMap>,
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {stream}: {reason}")]
pub struct ReadError {
    stream: String,
    reason: String,
    absent: bool,
}

impl ReadError {
    /// Whether nothing answered: the stream does not exist (or this account may not
    /// read it).
    pub fn is_absent(&self) -> bool {
        self.absent
    }
}

/// A batched direct-get request (nats-server 2.11 and later).
#[derive(Serialize)]
struct BatchRequest<'a> {
    seq: u64,
    batch: u64,
    max_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_by_subj: Option<&'a str>,
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

fn number(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    header(headers, name)?.parse().ok()
}

/// Reads the messages of `stream` from `from_seq` (on subjects matching `filter`, all
/// when `None`) up to the last one the stream held when reading began, calling `each`
/// on each; `each` returns `false` to stop. Returns the sequence of the last message
/// read (`from_seq - 1` when there was none).
pub async fn read_log(
    js: &Context,
    stream: &str,
    filter: Option<String>,
    from_seq: u64,
    mut each: impl FnMut(LogMessage) -> bool,
) -> Result<u64, ReadError> {
    let fail = |reason: String| ReadError {
        stream: stream.to_owned(),
        reason,
        absent: false,
    };
    let client = js.client();
    let subject = format!("$JS.API.DIRECT.GET.{stream}");
    let mut next = from_seq.max(1);
    let mut last = next - 1;
    // How many messages remain to read, once the first batch has said.
    let mut remaining: Option<u64> = None;
    loop {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let request = BatchRequest {
            seq: next,
            batch: remaining.map_or(BATCH, |r| r.min(BATCH)),
            max_bytes: BATCH_BYTES,
            next_by_subj: filter.as_deref(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| fail(e.to_string()))?;
        client
            .publish_with_reply(subject.clone(), inbox, body.into())
            .await
            .map_err(|e| fail(e.to_string()))?;
        loop {
            let reply = match tokio::time::timeout(QUIET, replies.next()).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Err(fail("the reply subscription ended".into())),
                Err(_) => {
                    return Err(fail(format!(
                        "no answer to a direct get within {QUIET:?} (is the stream there, with \
                         allow_direct, and may this account read it?)"
                    )));
                }
            };
            match reply.status {
                // 204: the end of this batch.
                Some(status) if status.as_u16() == 204 => break,
                Some(StatusCode::NOT_FOUND) => return Ok(last),
                Some(StatusCode::NO_RESPONDERS) => {
                    return Err(ReadError {
                        absent: true,
                        ..fail(NO_RESPONDERS.into())
                    });
                }
                Some(status) if status != StatusCode::OK => {
                    return Err(fail(format!(
                        "direct get answered {status} {}",
                        reply.description.unwrap_or_default()
                    )));
                }
                _ => {}
            }
            let headers = reply.headers.as_ref();
            let (Some(seq), Some(msg_subject)) = (
                number(headers, "Nats-Sequence"),
                header(headers, "Nats-Subject"),
            ) else {
                return Err(fail("a direct-get reply without Nats-Sequence".into()));
            };
            let subject = msg_subject.to_owned();
            let pending = number(headers, "Nats-Num-Pending").unwrap_or(0);
            let left = *remaining.get_or_insert(pending + 1);
            // The reply is moved, not copied: a copy of its headers was a map built
            // again for every message of the log.
            let go_on = each(LogMessage {
                seq,
                subject,
                payload: reply.payload,
                headers: reply.headers,
            });
            last = seq;
            next = seq + 1;
            remaining = Some(left.saturating_sub(1));
            if !go_on || remaining == Some(0) {
                return Ok(last);
            }
        }
    }
}

const NO_RESPONDERS: &str = "no responders: the stream does not exist, does not allow direct \
                             gets, or this account may not read it";

/// The last message on `subject` in `stream`, if any.
pub async fn last_message(
    js: &Context,
    stream: &str,
    subject: &str,
) -> Result<Option<LogMessage>, ReadError> {
    let fail = |reason: String| ReadError {
        stream: stream.to_owned(),
        reason,
        absent: false,
    };
    let reply = js
        .client()
        .request(
            format!("$JS.API.DIRECT.GET.{stream}.{subject}"),
            Bytes::new(),
        )
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => ReadError {
                absent: true,
                ..fail(NO_RESPONDERS.into())
            },
            _ => fail(e.to_string()),
        })?;
    match reply.status {
        Some(StatusCode::NOT_FOUND) => return Ok(None),
        Some(status) if status != StatusCode::OK => {
            return Err(fail(format!(
                "direct get answered {status} {}",
                reply.description.unwrap_or_default()
            )));
        }
        _ => {}
    }
    let headers = reply.headers.as_ref();
    let seq = number(headers, "Nats-Sequence")
        .ok_or_else(|| fail("a direct-get reply without Nats-Sequence".into()))?;
    Ok(Some(LogMessage {
        seq,
        subject: subject.to_owned(),
        payload: reply.payload,
        headers: reply.headers,
    }))
}

/// Logs a foreign message on an event subject: never applied, always reported.
pub fn report_foreign(seq: u64, subject: &str, reason: &str) {
    tracing::error!(
        seq,
        subject = ?subject,
        reason,
        "ignoring a message on an event subject that keyledger did not write; run \
         `keyledger audit verify` and check who may publish to the event stream"
    );
}
