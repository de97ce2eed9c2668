//! A typed client of the command protocol, used by the HTTP API, the CLI and the
//! benchmark. Any NATS client can do the same: this is a convenience, not a
//! requirement.

use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use domain::Rejection;
use domain::subject::command_subject;
use serde::Serialize;

use crate::protocol::{AUTHORIZATION, AcceptedReply, decode_reply};

/// Sends commands and reads replies.
#[derive(Debug, Clone)]
pub struct CommandClient {
    nats: Client,
    timeout: Duration,
}

impl CommandClient {
    /// A client over `nats`, waiting up to `timeout` for each reply.
    pub fn new(nats: Client, timeout: Duration) -> Self {
        Self { nats, timeout }
    }

    /// Sends the command `name` with `body`, authenticated by `token`.
    pub async fn send<T: Serialize>(
        &self,
        name: &str,
        token: &str,
        body: &T,
    ) -> Result<AcceptedReply, Rejection> {
        let subject = command_subject(name);
        let payload = serde_json::to_vec(body)
            .map_err(|e| Rejection::invalid(format!("encoding the {name} request: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").as_str());
        let request = async_nats::Request::new()
            .payload(payload.into())
            .headers(headers)
            .timeout(Some(self.timeout));
        let reply = self
            .nats
            .send_request(subject.clone(), request)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => Rejection::unavailable(format!(
                    "no command service is listening on {subject}; start one with `keyledger \
                     up` or `keyledger serve commands`"
                )),
                RequestErrorKind::TimedOut => Rejection::unavailable(format!(
                    "no reply on {subject} within {:?}; the command may still have been \
                     applied: retry it with the same command_id",
                    self.timeout
                )),
                RequestErrorKind::MaxPayloadExceeded => Rejection::too_large(format!(
                    "the {name} request is larger than the NATS server accepts ({e})"
                )),
                _ => Rejection::unavailable(format!("sending {subject} failed: {e}")),
            })?;
        decode_reply(&reply.payload)
            .map_err(|e| Rejection::internal(format!("malformed reply on {subject}: {e}")))?
    }
}
