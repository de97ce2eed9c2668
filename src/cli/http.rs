//! A thin HTTP client of keyledger's API for the CLI, turning Barbican error bodies
//! into readable errors.

use anyhow::{Result, anyhow};
use api::responses::ErrorBody;
use reqwest::{Method, RequestBuilder, Response};

use super::ClientArgs;

/// The API at `--url`, authenticated with `--token`.
pub struct Api {
    client: reqwest::Client,
    base: String,
    /// `None` with a client certificate that stands for the caller.
    token: Option<String>,
}

impl Api {
    pub fn new(args: &ClientArgs) -> Result<Self> {
        Ok(Self {
            client: args.tls.http_client()?,
            base: args.url.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    /// A request to `path` (under the base URL) with the token, at the newest
    /// microversion and asking for keyledger's own fields (the CLI is keyledger's
    /// client, not Barbican's).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("OpenStack-API-Version", "key-manager latest")
            .header("X-Keyledger-Extended", "true");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; a non-success status becomes an error naming the status and
    /// the API's description.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request
            .send()
            .await
            .map_err(|e| unreachable_api(&self.base, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        // A body in Barbican's shape, as the API writes every error; anything else (a
        // proxy's page, say) is shown as it came.
        let description = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| body.description)
            .unwrap_or(text);
        Err(anyhow!("{status}: {description}"))
    }
}

/// The log sequence a write's response names (`?` when it names none).
pub fn seq_of(response: &Response) -> String {
    response
        .headers()
        .get(api::SEQ)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned()
}

/// The path segment that addresses a secret given as a `secret_ref` URL (its last
/// segment), or as an id, a reference or a name (percent-encoded whole, so a name
/// such as `prod/db` stays one segment).
pub fn secret_id(given: &str) -> String {
    if given.starts_with("http://") || given.starts_with("https://") {
        return given
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(given)
            .to_owned();
    }
    percent_encoding::utf8_percent_encode(given, SEGMENT).to_string()
}

/// Characters escaped in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Why the API at `base` could not be reached, with the cause's whole chain (reqwest's
/// own message hides a certificate problem behind "error sending request") and what
/// to do about it.
pub fn unreachable_api(base: &str, e: &reqwest::Error) -> anyhow::Error {
    let cause = anyhow::Chain::new(e)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    let hint = if cause.contains("alert") && cause.contains("Certificate") {
        "the server asks for a client certificate: pass --client-cert and --client-key"
    } else if cause.contains("certificate") || cause.contains("UnknownIssuer") {
        "keyledger's HTTPS certificate is not trusted: pass --cacert FILE (or set \
         KEYLEDGER_CACERT) with the CA that signed it; `keyledger up --tls` writes it to \
         <data-dir>/tls/ca.pem"
    } else if base.starts_with("http://") && cause.contains("connection closed") {
        "is keyledger serving HTTPS? Then use an https:// URL"
    } else {
        "is `keyledger up` running?"
    };
    anyhow!("cannot reach the keyledger API at {base}: {cause}; {hint}")
}
