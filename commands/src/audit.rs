//! Reading the event stream as an auditor: in order, from a sequence, through an
//! ordered consumer (no state on the server), up to the last sequence the stream held
//! when reading began.

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures::StreamExt;

/// One stored message of the log.
#[derive(Debug, Clone)]
pub struct LogMessage {
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// The commit's bytes.
    pub payload: Bytes,
}

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the log: {0}")]
pub struct ReadError(String);

fn err(e: impl std::fmt::Display) -> ReadError {
    ReadError(e.to_string())
}

/// Reads the messages of `stream` from `from_seq` (on subjects matching `filter`, all
/// when `None`) up to the stream's last sequence at the start, calling `each` on each;
/// `each` returns `false` to stop. Returns the last sequence read up to.
pub async fn read_log(
    js: &Context,
    stream: &str,
    filter: Option<String>,
    from_seq: u64,
    mut each: impl FnMut(LogMessage) -> bool,
) -> Result<u64, ReadError> {
    let mut stream = js.get_stream(stream).await.map_err(err)?;
    let last = stream.info().await.map_err(err)?.state.last_sequence;
    if last < from_seq.max(1) {
        return Ok(last);
    }
    let mut consumer: jetstream::consumer::Consumer<pull::OrderedConfig> = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from_seq.max(1),
            },
            filter_subject: filter.unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(err)?;
    if consumer.info().await.map_err(err)?.num_pending == 0 {
        return Ok(last);
    }
    let mut messages = consumer.messages().await.map_err(err)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(err)?;
        let info = message.info().map_err(err)?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > last {
            break;
        }
        let go_on = each(LogMessage {
            seq,
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
        });
        // Nothing more matches (so far): the reading is complete.
        if !go_on || seq == last || pending == 0 {
            break;
        }
    }
    Ok(last)
}
