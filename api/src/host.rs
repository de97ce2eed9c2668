//! A request's `Host`: exactly one, naming a host and an optional port, as RFC 9112
//! (3.2) requires of HTTP/1.1 servers. Without `--public-url`, links in responses
//! (`secret_ref`, `Location`, `GET /`) are built from it, and Barbican clients follow
//! them with their token: a value with a path, user info or markup would hand a
//! client links to somewhere else.

use axum::extract::Request;
use axum::http::header::HOST;
use axum::http::{HeaderMap, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::error::ApiError;

/// Longest `Host` accepted: a DNS name (253) with a port.
const MAX_LEN: usize = 253 + 6;

/// Refuses (400) a request whose `Host` is missing (HTTP/1.1), repeated or malformed.
pub async fn checked(request: Request, next: Next) -> Response {
    match problem(request.version(), request.headers()) {
        Some(problem) => ApiError::bad_request(problem).into_response(),
        None => next.run(request).await,
    }
}

/// What is wrong with the request's `Host`, if anything.
fn problem(version: Version, headers: &HeaderMap) -> Option<&'static str> {
    let mut hosts = headers.get_all(HOST).iter();
    let Some(host) = hosts.next() else {
        // HTTP/1.0 had no Host; links then name `localhost` (or the public URL).
        return (version >= Version::HTTP_11)
            .then_some("the request has no Host header; HTTP/1.1 requires one");
    };
    if hosts.next().is_some() {
        return Some("the request has more than one Host header; send one");
    }
    let host = host.as_bytes();
    let well_formed = !host.is_empty()
        && host.len() <= MAX_LEN
        && host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(b));
    (!well_formed).then_some(
        "the Host header is not a host name or address with an optional port (letters, \
         digits, '.', '-', '_', ':' and brackets for IPv6)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_hosts(hosts: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, HeaderValue::from_static(host));
        }
        headers
    }

    #[test]
    fn a_host_name_address_or_port_passes() {
        for host in [
            "keyledger.example",
            "keyledger.example:9311",
            "127.0.0.1:9311",
            "[::1]:9311",
            "my_host",
        ] {
            assert_eq!(
                problem(Version::HTTP_11, &with_hosts(&[host])),
                None,
                "{host}"
            );
        }
    }

    #[test]
    fn a_missing_repeated_or_malformed_host_is_refused() {
        assert!(problem(Version::HTTP_11, &with_hosts(&[])).is_some());
        assert_eq!(problem(Version::HTTP_10, &with_hosts(&[])), None);
        assert!(problem(Version::HTTP_11, &with_hosts(&["a", "b"])).is_some());
        for host in [
            "",
            "evil.example/x",
            "evil.example:1/x?y#",
            "user@evil.example",
            "evil.example\"><script>",
            "evil example",
        ] {
            assert!(
                problem(Version::HTTP_11, &with_hosts(&[host])).is_some(),
                "{host}"
            );
        }
        let long: &'static str = "a".repeat(MAX_LEN + 1).leak();
        assert!(problem(Version::HTTP_11, &with_hosts(&[long])).is_some());
    }
}
