//! A request's `Host`: exactly one, naming a host and an optional port (or empty, as
//! RFC 9112, 3.2, lets a client send it), as that section requires of HTTP/1.1
//! servers. Without `--public-url`, links in responses (`secret_ref`, `Location`,
//! `GET /`) are built from it, and Barbican clients follow them with their token: a
//! value with a path, user info or markup would hand a client links to somewhere
//! else. The health checks build no links and answer load balancers' hand-written
//! probes, Host or not.

use axum::extract::Request;
use axum::http::header::HOST;
use axum::http::{HeaderMap, Version};

use crate::error::ApiError;

/// Longest `Host` accepted: a DNS name (253) with a port.
const MAX_LEN: usize = 253 + 6;

/// Paths that build no links from `Host`, and are probed by load balancers.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// Refuses (400) a request whose `Host` is missing (HTTP/1.1), repeated or malformed.
pub fn checked(request: &Request) -> Result<(), ApiError> {
    if PROBES.contains(&request.uri().path()) {
        return Ok(());
    }
    match problem(request.version(), request.headers()) {
        Some(problem) => Err(ApiError::bad_request(problem)),
        None => Ok(()),
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
    // A name, an IPv4 or a bracketed IPv6 address (with a `%` zone id), and a port.
    let well_formed = host.len() <= MAX_LEN
        && host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]%".contains(b));
    (!well_formed).then_some(
        "the Host header is not a host name or address with an optional port (letters, \
         digits, '.', '-', '_', ':', and brackets for IPv6)",
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
            "[fe80::1%25eth0]:9311",
            "my_host",
            "",
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
