//! Barbican's microversions: a request names the behaviour it expects with
//! `OpenStack-API-Version: key-manager <X.Y>` (1.0 when it names none, the newest for
//! `latest`), and every response says which one it got, as Barbican's middleware does.
//!
//! What each adds, as in Barbican: 1.1 secret consumers (and `consumers` in a
//! secret's metadata); 1.2 refuses to delete a secret that has consumers unless
//! `force=true` (below 1.2 the consumers go with it).

use std::fmt;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::error::ApiError;

/// The header, as OpenStack names it.
pub const HEADER: &str = "openstack-api-version";
/// The service type the header names for keyledger.
const SERVICE: &str = "key-manager";

/// A microversion of the `/v1` API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion {
    major: u16,
    minor: u16,
}

impl Microversion {
    /// What a request gets when it names no version.
    pub const V1_0: Self = Self { major: 1, minor: 0 };
    /// Secret consumers.
    pub const V1_1: Self = Self { major: 1, minor: 1 };
    /// A secret with consumers is deleted only with `force=true`.
    pub const V1_2: Self = Self { major: 1, minor: 2 };
    /// The oldest served.
    pub const MIN: Self = Self::V1_0;
    /// The newest served.
    pub const MAX: Self = Self::V1_2;

    /// The version a request's `OpenStack-API-Version` header asks keyledger for:
    /// `Ok(None)` when there is no header (an empty one counts as none, as HTTP
    /// intermediaries treat it), an error naming what is wrong (400) or the
    /// versions served (406) otherwise. keyledger takes one entry, for its own service
    /// (`key-manager <major>.<minor>` or `key-manager latest`), which is what every
    /// Barbican client sends; [`PATTERN`] is the same rule as a regular expression.
    pub fn requested(values: &[&[u8]]) -> Result<Option<Self>, ApiError> {
        let values: Vec<&[u8]> = values
            .iter()
            .copied()
            .filter(|v| !v.trim_ascii().is_empty())
            .collect();
        let value = match values[..] {
            [] => return Ok(None),
            [one] => std::str::from_utf8(one).map_err(|_| malformed("(not text)"))?,
            _ => {
                return Err(ApiError::bad_request(
                    "the OpenStack-API-Version header is given more than once; send it once, \
                     e.g. `key-manager 1.1`",
                ));
            }
        };
        let mut words = value.split([' ', '\t']).filter(|w| !w.is_empty());
        let (Some(service), Some(version), None) = (words.next(), words.next(), words.next())
        else {
            return Err(malformed(value));
        };
        if !service.eq_ignore_ascii_case(SERVICE) {
            return Err(malformed(value));
        }
        let asked = if version.eq_ignore_ascii_case("latest") {
            Self::MAX
        } else {
            Self::parse(version).ok_or_else(|| malformed(value))?
        };
        if !(Self::MIN..=Self::MAX).contains(&asked) {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "key-manager microversion {asked} is not served; this server serves {} to {}",
                    Self::MIN,
                    Self::MAX
                ),
            ));
        }
        Ok(Some(asked))
    }

    /// `<major>.<minor>`: numbers without leading zeros, up to 4 digits each.
    fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.split_once('.')?;
        let number = |s: &str| {
            let digits = !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
            (digits && (s == "0" || !s.starts_with('0')))
                .then(|| s.parse().ok())
                .flatten()
        };
        Some(Self {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

/// The values of the header keyledger serves, as a regular expression (for the
/// OpenAPI document): [`Microversion::requested`]'s rule, without the versions it
/// does not serve.
pub const PATTERN: &str = r"^[ \t]*([Kk][Ee][Yy]-[Mm][Aa][Nn][Aa][Gg][Ee][Rr][ \t]+(1\.[0-2]|[Ll][Aa][Tt][Ee][Ss][Tt])[ \t]*)?$";

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

fn malformed(value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the OpenStack-API-Version header is {:?}; send `key-manager <major>.<minor>` (for \
         example `key-manager 1.1`) or `key-manager latest`",
        value.trim()
    ))
}

/// Reads the request's microversion into its extensions: the one to name on the
/// response ([`named`]), none for AWS's API (`POST /`, which has no microversions), or
/// the answer to a malformed one.
pub fn negotiated(request: &mut Request) -> Result<Option<Microversion>, ApiError> {
    if request.method() == axum::http::Method::POST && request.uri().path() == "/" {
        return Ok(None);
    }
    let values: Vec<&[u8]> = request
        .headers()
        .get_all(HEADER)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let version = match Microversion::requested(&values) {
        Ok(v) => v.unwrap_or(Microversion::V1_0),
        Err(e) => return Err(e),
    };
    request.extensions_mut().insert(version);
    Ok(Some(version))
}

/// Names `version` on `response` (`OpenStack-API-Version`, and `Vary` so caches keep
/// versions apart).
pub fn named(mut response: Response, version: Microversion) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("{SERVICE} {version}")) {
        headers.insert(HeaderName::from_static(HEADER), value);
    }
    headers.append(
        header::VARY,
        HeaderValue::from_static("OpenStack-API-Version"),
    );
    response
}

impl<S: Send + Sync> FromRequestParts<S> for Microversion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Microversion>()
            .copied()
            .unwrap_or(Microversion::V1_0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(values: &[&str]) -> Result<Option<String>, (u16, String)> {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        Microversion::requested(&values)
            .map(|v| v.map(|v| v.to_string()))
            .map_err(|e| (e.status().as_u16(), e.description().to_owned()))
    }

    #[test]
    fn the_header_picks_a_served_version_or_says_which_are() {
        assert_eq!(asked(&[]), Ok(None));
        assert_eq!(asked(&["key-manager 1.1"]), Ok(Some("1.1".into())));
        assert_eq!(asked(&["Key-Manager LATEST"]), Ok(Some("1.2".into())));
        assert_eq!(asked(&[" key-manager\t1.0 "]), Ok(Some("1.0".into())));
        let (status, text) = asked(&["key-manager 1.3"]).unwrap_err();
        assert_eq!(status, 406);
        assert!(text.contains("serves 1.0 to 1.2"), "{text}");
        assert_eq!(asked(&[""]), Ok(None));
        assert_eq!(asked(&[" \t", "key-manager 1.1"]), Ok(Some("1.1".into())));
        for bad in [
            "key-manager",
            "key-manager 1",
            "key-manager 1.x",
            "key-manager 01.1",
            "key-manager 1.01",
            "key-manager 1.1 extra",
            "key-manager 99999.1",
            "key-manager -1.1",
            "compute 2.1",
            "compute 2.1, key-manager 1.0",
            "{}",
        ] {
            let (status, text) = asked(&[bad]).unwrap_err();
            assert_eq!(status, 400, "{bad}");
            assert!(text.contains("key-manager 1.1"), "{text}");
        }
        assert_eq!(
            asked(&["key-manager 1.1", "key-manager 1.0"])
                .unwrap_err()
                .0,
            400
        );
    }
}
