//! A typed client of the command protocol, used by the HTTP API, the CLI and the
//! benchmark. Any NATS client can do the same: this is a convenience, not a
//! requirement.

use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use domain::Rejection;
use domain::subject::command_subject;
use serde::Serialize;

use crate::protocol::{AUTHORIZATION, AcceptedReply, decode_reply};

/// How long one attempt of a command waits for its reply before it is sent again.
pub(crate) const ATTEMPT: Duration = Duration::from_secs(2);

/// Sends commands and reads replies.
#[derive(Debug, Clone)]
pub struct CommandClient {
    nats: Client,
    timeout: Duration,
    /// Sends on the delegated command subjects (`keyledger.api.cmd.<name>`).
    delegated: bool,
}

impl CommandClient {
    /// A client over `nats`, waiting up to `timeout` for each reply.
    pub fn new(nats: Client, timeout: Duration) -> Self {
        Self {
            nats,
            timeout,
            delegated: false,
        }
    }

    /// The same client sending on the delegated command subjects, with delegation
    /// tokens: for keyledger's HTTP API only (clients cannot publish there).
    pub fn delegated(&self) -> Self {
        Self {
            delegated: true,
            ..self.clone()
        }
    }

    /// Sends the command `name` with `body`, authenticated by `token`.
    ///
    /// A request or its reply can be lost while NATS restarts (core NATS delivers at
    /// most once). Every command is idempotent by its `command_id`, so the request is
    /// given one (unless it has its own) and sent again, unchanged, when no reply came
    /// within [`ATTEMPT`], until the client's timeout: a write in flight during a
    /// restart then lands as soon as NATS is back, instead of waiting out the timeout.
    pub async fn send<T: Serialize>(
        &self,
        name: &str,
        token: &str,
        body: &T,
    ) -> Result<AcceptedReply, Rejection> {
        let subject = if self.delegated {
            format!("{}{name}", domain::subject::DELEGATED_PREFIX)
        } else {
            command_subject(name)
        };
        let encoding =
            |e: serde_json::Error| Rejection::invalid(format!("encoding the {name} request: {e}"));
        let mut body = serde_json::to_value(body).map_err(encoding)?;
        if let Some(fields) = body.as_object_mut()
            && fields
                .get("command_id")
                .is_none_or(serde_json::Value::is_null)
        {
            // A UUIDv7: a create's secret id then starts with its time (see
            // `domain::ids::SecretId::for_create`).
            let id = uuid::Uuid::now_v7().simple().to_string();
            fields.insert("command_id".into(), id.into());
        }
        let payload = bytes::Bytes::from(serde_json::to_vec(&body).map_err(encoding)?);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let reply = loop {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, format!("Bearer {token}").as_str());
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .headers(headers)
                .timeout(Some(left.min(ATTEMPT)));
            match self.nats.send_request(subject.clone(), request).await {
                Err(e)
                    if e.kind() == RequestErrorKind::TimedOut
                        && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(%subject, "no reply yet; sending the command again");
                }
                done => break done,
            }
        };
        let reply = reply.map_err(|e| match e.kind() {
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
