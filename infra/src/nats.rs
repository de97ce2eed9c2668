//! Connecting to NATS. A URL may carry credentials (`nats://user:password@host:4222`);
//! they are sent as user/password auth and never printed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use url::Url;

/// Why NATS could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The URL does not parse.
    #[error("NATS URL {url:?} is not valid ({reason}); use e.g. nats://127.0.0.1:4222")]
    BadUrl {
        /// The URL with any password removed.
        url: String,
        /// Why.
        reason: String,
    },
    /// Connecting failed.
    #[error("cannot connect to NATS at {url}: {source}; is nats-server running there?")]
    Connect {
        /// The URL with any password removed.
        url: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Setting a password only fails for URLs without a host, which a URL that
            // parsed with a password has.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Connects to `url` as `name` (shown in the server's connection list).
pub async fn connect(url: &str, name: &str) -> Result<Client, NatsError> {
    connect_with(url, name, ConnectOptions::new()).await
}

/// Connects to keyledger's NATS as a client: `token` (a keyledger bearer token) admits
/// the connection, and its replies arrive in the token's principal's own inbox space
/// ([`crate::nats_auth::inbox_prefix`]).
pub async fn connect_as_client(url: &str, name: &str, token: &str) -> Result<Client, NatsError> {
    let mut options = ConnectOptions::with_token(token.to_owned());
    if let Some(prefix) = crate::nats_auth::token_inbox_prefix(token) {
        options = options.custom_inbox_prefix(prefix);
    }
    connect_with(url, name, options).await
}

async fn connect_with(url: &str, name: &str, options: ConnectOptions) -> Result<Client, NatsError> {
    let parsed = Url::parse(url).map_err(|e| NatsError::BadUrl {
        url: redact(url),
        reason: e.to_string(),
    })?;
    let connection = name.to_owned();
    let mut options = options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        // Back soon after the server is: retry every 50 ms at first, then at most
        // every 250 ms, forever.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(50 * u64::try_from(attempts).unwrap_or(u64::MAX).min(5))
        })
        .event_callback(move |event| {
            let connection = connection.clone();
            async move {
                match event {
                    Event::Disconnected => {
                        tracing::warn!(connection, "NATS connection lost; reconnecting")
                    }
                    Event::Connected => tracing::info!(connection, "NATS connected"),
                    Event::ServerError(e) => {
                        tracing::warn!(connection, error = %e, "NATS server error")
                    }
                    Event::SlowConsumer(sid) => {
                        tracing::warn!(connection, sid, "NATS slow consumer")
                    }
                    _ => {}
                }
            }
        });
    let mut bare = parsed.clone();
    if !parsed.username().is_empty() {
        let user = percent_decode(parsed.username());
        let password = percent_decode(parsed.password().unwrap_or_default());
        options = options.user_and_password(user, password);
        // Userinfo was taken over above; these setters only fail for cannot-be-a-base
        // URLs, which nats:// URLs are not.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
    }
    options
        .connect(bare.as_str())
        .await
        .map_err(|source| NatsError::Connect {
            url: redact(url),
            source,
        })
}

/// How many times `client` has connected so far (1 after the first connection).
pub fn connects(client: &Client) -> u64 {
    client.statistics().connects.load(Ordering::Relaxed)
}

/// Resolves once `client` has connected again after `seen` connections: a reader whose
/// server-side state (a consumer) may be gone restarts then, rather than waiting for
/// missed heartbeats.
pub async fn reconnected(client: &Client, seen: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if connects(client) > seen {
            return;
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("nats://keyledger:s3cret@127.0.0.1:4222"),
            "nats://keyledger:***@127.0.0.1:4222"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
