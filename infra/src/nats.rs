//! Connecting to NATS. A URL may carry credentials (`nats://user:password@host:4222`);
//! they are sent as user/password auth and never printed. TLS (a `tls://` URL, or a
//! server that requires it) uses the CA and client certificate this process was
//! given once with [`use_tls`].

use std::path::PathBuf;
use std::sync::OnceLock;
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
    #[error(
        "cannot connect to NATS at {url}: {source}; is nats-server running there, and does \
         its TLS match --nats-ca and --nats-cert (TLS needs both sides to agree)?"
    )]
    Connect {
        /// The URL with any password removed.
        url: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
}

/// How this process's NATS connections do TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTls {
    /// The CA (PEM) that signed the servers' certificates; `None`: the system's.
    pub ca: Option<PathBuf>,
    /// A client certificate and key (PEM), for servers that `verify` clients.
    pub client: Option<crate::tls::ClientIdentityFiles>,
}

/// TLS for every NATS connection of this process. Set once, at start, from the
/// command line: how a process reaches NATS is one setting of that process, as its
/// crypto provider is, rather than an argument of the dozen places that connect.
static TLS: OnceLock<NatsTls> = OnceLock::new();

/// Makes every later connection of this process require TLS with `tls`, after
/// checking that its files can be read. A second call with other settings is refused.
pub fn use_tls(tls: NatsTls) -> Result<(), crate::tls::TlsError> {
    if let Some(ca) = &tls.ca {
        crate::tls::roots(ca)?;
    }
    if let Some(client) = &tls.client {
        crate::tls::certificates(&client.cert)?;
        crate::tls::private_key(&client.key)?;
    }
    let set = TLS.get_or_init(|| tls.clone());
    if *set != tls {
        return Err(crate::tls::TlsError::File {
            path: tls.ca.clone().unwrap_or_default(),
            problem: "NATS TLS is already set up otherwise in this process".into(),
        });
    }
    Ok(())
}

/// Whether this process's NATS connections use TLS.
pub fn tls_in_use() -> bool {
    TLS.get().is_some()
}

/// `url` with any password replaced by `***`, for messages and logs. A list of
/// servers (`nats://a:4222,nats://b:4222`) has each of its URLs redacted.
pub fn redact(url: &str) -> String {
    split_list(url)
        .iter()
        .map(|one| redact_one(one))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(mut u) if u.password().is_some() => {
            // Setting a password only fails for URLs without a host, which a URL that
            // parsed with a password has.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        // A user without a password is a token to NATS (`nats://<token>@host`).
        Ok(mut u) if !u.username().is_empty() => {
            let _ = u.set_username("***");
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        // A URL that does not parse may still carry credentials: hide whatever sits
        // between the scheme and the last `@`.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.to_owned(),
        },
    }
}

/// The URLs of a list separated by commas. A comma inside a URL (a password holding
/// one) does not separate: each URL of a list starts with its scheme (`nats://`), so
/// only a comma followed by a scheme, by another comma or by nothing ends one.
fn split_list(url: &str) -> Vec<&str> {
    let starts_url = |rest: &str| {
        rest.is_empty()
            || rest.starts_with(',')
            || rest.split_once("://").is_some_and(|(scheme, _)| {
                !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            })
    };
    let mut out = Vec::new();
    let mut start = 0;
    for (comma, _) in url.match_indices(',') {
        if starts_url(url[comma + 1..].trim_start()) {
            out.push(&url[start..comma]);
            start = comma + 1;
        }
    }
    out.push(&url[start..]);
    out
}

/// A user and password.
type Credentials = (String, String);

/// The servers a NATS URL names (one, or several separated by commas: the nodes of a
/// cluster), without credentials, and the user and password they carry. Every URL
/// that carries credentials must carry the same: a connection has one identity.
fn servers(url: &str) -> Result<(Vec<String>, Option<Credentials>), NatsError> {
    let bad = |reason: String| NatsError::BadUrl {
        url: redact(url),
        reason,
    };
    let mut credentials: Option<Credentials> = None;
    let mut bare = Vec::new();
    for one in split_list(url) {
        let one = one.trim();
        if one.is_empty() {
            return Err(bad(
                "an empty server in the list; separate URLs with single commas".into(),
            ));
        }
        let mut parsed = Url::parse(one).map_err(|e| bad(e.to_string()))?;
        if !parsed.username().is_empty() {
            let these = (
                percent_decode(parsed.username()),
                percent_decode(parsed.password().unwrap_or_default()),
            );
            match &credentials {
                Some(seen) if *seen != these => {
                    return Err(bad(
                        "the servers carry different credentials; give every URL the same \
                         user and password, or only the first"
                            .into(),
                    ));
                }
                _ => credentials = Some(these),
            }
            // These setters only fail for cannot-be-a-base URLs, which nats:// URLs
            // are not.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
        }
        bare.push(parsed.to_string());
    }
    Ok((bare, credentials))
}

/// `url` (one server or a list) with `user` and `password` in place of whatever
/// credentials it carries: the same servers, another identity.
pub fn with_user(url: &str, user: &str, password: &str) -> Result<String, NatsError> {
    let (bare, _) = servers(url)?;
    let mut out = Vec::with_capacity(bare.len());
    for one in bare {
        let mut parsed = Url::parse(&one).map_err(|e| NatsError::BadUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        // As in `servers`: these fail only for URLs without a host, which these have.
        let _ = parsed.set_username(user);
        let _ = parsed.set_password(Some(password));
        out.push(parsed.to_string());
    }
    Ok(out.join(","))
}

/// Connects to `url` as `name` (shown in the server's connection list).
pub async fn connect(url: &str, name: &str) -> Result<Client, NatsError> {
    connect_with(url, name, ConnectOptions::new()).await
}

/// [`connect`], holding at most `messages` messages per subscription that its reader
/// has not taken yet: beyond them the client drops what comes and counts a slow
/// consumer, where by default it would hold 65,536 (of up to 1 MiB each).
pub async fn connect_buffering(
    url: &str,
    name: &str,
    messages: usize,
) -> Result<Client, NatsError> {
    connect_with(
        url,
        name,
        ConnectOptions::new().subscription_capacity(messages),
    )
    .await
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
    let (servers, credentials) = servers(url)?;
    // keyledger's own connection names (a bounded set), so a label value.
    let connection = name.to_owned();
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One report per message dropped would let a client that floods a subscription
    // write the log at its own rate.
    let slow = std::sync::Arc::new(crate::log_budget::LogBudget::new(
        1,
        Duration::from_secs(10),
    ));
    metrics::counter!(crate::metrics::NATS_RECONNECTS, "connection" => connection.clone())
        .increment(0);
    metrics::counter!(crate::metrics::NATS_DISCONNECTS, "connection" => connection.clone())
        .increment(0);
    let mut options = options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        // A server that hangs (or a partition) is noticed after two unanswered pings:
        // 10 to 15 s, then the client moves to another server of the list. The default
        // (60 s) kept writes failing for about three minutes when one node of three
        // hung.
        .ping_interval(Duration::from_secs(5))
        // Back soon after the server is: retry every 50 ms at first, then at most
        // every 250 ms, forever.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(50 * u64::try_from(attempts).unwrap_or(u64::MAX).min(5))
        })
        .event_callback(move |event| {
            let connection = connection.clone();
            let lost = lost.clone();
            let slow = slow.clone();
            async move {
                match event {
                    Event::Disconnected => {
                        lost.store(true, Ordering::Relaxed);
                        metrics::counter!(crate::metrics::NATS_DISCONNECTS, "connection" => connection.clone())
                            .increment(1);
                        tracing::warn!(connection, "NATS connection lost; reconnecting")
                    }
                    Event::Connected => {
                        if lost.swap(false, Ordering::Relaxed) {
                            metrics::counter!(crate::metrics::NATS_RECONNECTS, "connection" => connection.clone())
                                .increment(1);
                        }
                        tracing::info!(connection, "NATS connected")
                    }
                    Event::ServerError(e) => {
                        tracing::warn!(connection, error = %e, "NATS server error")
                    }
                    Event::SlowConsumer(sid) => {
                        if let Some(earlier) = slow.take() {
                            tracing::warn!(
                                connection,
                                sid,
                                earlier_unreported_at_least = earlier,
                                "NATS slow consumer: a message was dropped (reported at most \
                                 once every 10 s; the client's own queue of such reports may \
                                 drop some too)"
                            )
                        }
                    }
                    _ => {}
                }
            }
        });
    if let Some((user, password)) = credentials {
        options = options.user_and_password(user, password);
    }
    if let Some(tls) = TLS.get() {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some(client) = &tls.client {
            options = options.add_client_certificate(client.cert.clone(), client.key.clone());
        }
    }
    options
        .connect(servers)
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

/// The name of the NATS account `client` was admitted to, as the server says
/// (`$SYS.REQ.USER.INFO`, which nats-server answers for every user allowed to ask):
/// `$G` on a server without accounts. `None` when it does not say: no answer within
/// `within` (a user denied the subject gets none), no responders (a server without a
/// system account), or an error or other reply in place of the user's info.
pub async fn account_of(client: &Client, within: Duration) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct UserInfo {
        data: Account,
    }
    #[derive(serde::Deserialize)]
    struct Account {
        account: String,
    }
    let asked = client.request("$SYS.REQ.USER.INFO", bytes::Bytes::new());
    let answer = tokio::time::timeout(within, asked).await.ok()?.ok()?;
    serde_json::from_slice::<UserInfo>(&answer.payload)
        .ok()
        .map(|info| info.data.account)
}

/// The account a nats-server without accounts puts every user in.
pub const GLOBAL_ACCOUNT: &str = "$G";

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `subject` can be a reply: an inbox or a cross-account response subject, and
/// nothing a stream, the key store or the JetStream API listens on.
pub fn is_reply_subject(subject: &str) -> bool {
    let Some((first, rest)) = subject.split_once('.') else {
        return false;
    };
    let inbox = first == "_INBOX" || first.strip_prefix("_INBOX_").is_some_and(|n| !n.is_empty());
    (inbox || first == "_R_")
        && !rest.is_empty()
        && rest
            .split('.')
            .all(|token| !token.is_empty() && token != "*" && token != ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inboxes_and_response_subjects_are_replies() {
        for ok in [
            "_INBOX.abc.1",
            "_INBOX_3f2a.abc.def",
            "_R_.x1.y2",
            "_INBOX.a",
        ] {
            assert!(is_reply_subject(ok), "{ok}");
        }
        for bad in [
            "keyledger.events.p1.secret.1",
            "$KV.KEYLEDGER_KEYS.ca.local",
            "$JS.API.STREAM.DELETE.KEYLEDGER",
            "keyledger.checkpoints.KEYLEDGER",
            "_INBOX",
            "_INBOX.",
            "_INBOX_.x",
            "_INBOX.*",
            "_INBOX.>",
            "_R_",
            "_INBOXES.x",
            "$SYS.REQ.USER.AUTH",
        ] {
            assert!(!is_reply_subject(bad), "{bad}");
        }
    }

    #[test]
    fn another_identity_on_the_same_servers() {
        let url = with_user(
            "nats://keyledger:s3cret@127.0.0.1:4222, nats://127.0.0.1:4223",
            "intake",
            "p@ss",
        )
        .unwrap();
        let (bare, credentials) = servers(&url).unwrap();
        assert_eq!(bare, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
        assert_eq!(credentials, Some(("intake".to_owned(), "p@ss".to_owned())));
        assert!(!url.contains("s3cret"), "{url}");
    }

    #[test]
    fn tokens_never_reach_messages() {
        assert_eq!(
            redact("nats://eyJ0eXAi.eyJzdWIi.sig@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("nats://keyledger:s3cret@127.0.0.1:4222"),
            "nats://keyledger:***@127.0.0.1:4222"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://k:s3cret@127.0.0.1:4222,nats://k:s3cret@127.0.0.1:4223"),
            "nats://k:***@127.0.0.1:4222,nats://k:***@127.0.0.1:4223"
        );
    }

    #[test]
    fn a_list_names_every_node_with_one_identity() {
        let (bare, credentials) =
            servers("nats://k:p%40ss@127.0.0.1:4222, nats://127.0.0.1:4223").unwrap();
        assert_eq!(bare, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
        assert_eq!(credentials, Some(("k".to_owned(), "p@ss".to_owned())));
        let mixed = servers("nats://a:1@127.0.0.1:4222,nats://b:2@127.0.0.1:4223").unwrap_err();
        assert!(
            mixed.to_string().contains("different credentials"),
            "{mixed}"
        );
        assert!(!mixed.to_string().contains(":1@"), "{mixed}");
        let empty = servers("nats://127.0.0.1:4222,").unwrap_err();
        assert!(empty.to_string().contains("empty server"), "{empty}");
        // A comma in a password stays in it.
        let (bare, credentials) = servers("nats://k:se,cret@127.0.0.1:4222").unwrap();
        assert_eq!(bare, ["nats://127.0.0.1:4222"]);
        assert_eq!(credentials, Some(("k".to_owned(), "se,cret".to_owned())));
        // A URL that does not parse is shown without its password.
        for bad in [
            "nats://k:s3cret@127.0.0.1:4222;nats://k:s3cret@127.0.0.1:4223",
            "nats://k:s3cret@127.0.0.1:99999",
            "nats://k:s3cret@[::1:4222",
        ] {
            let e = servers(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}

/// Pauses between tries of a request JetStream answered "unavailable": a node that hung
/// or restarted answers so for a moment while it catches up, and so does a stream
/// while its leader is elected. The pauses double from 50 ms, within a time budget.
#[derive(Debug)]
pub struct Retries {
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl Retries {
    /// Retries that end once `budget` has passed.
    pub fn within(budget: Duration) -> Self {
        Self {
            deadline: tokio::time::Instant::now() + budget,
            pause: Duration::from_millis(50),
        }
    }

    /// Waits before the next try; `false` (at once) if it would end past the budget.
    pub async fn pause(&mut self) -> bool {
        if tokio::time::Instant::now() + self.pause >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause *= 2;
        true
    }
}
