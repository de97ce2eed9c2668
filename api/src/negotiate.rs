//! `Accept` negotiation, as Barbican does it: `GET /v1/secrets/{id}` serves metadata
//! to JSON clients and the payload to `text/plain` / `application/octet-stream`
//! clients; `GET …/payload` serves the payload in the stored type, or as raw octets.

use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};
use domain::secret::payload::ContentType;

use crate::error::ApiError;

/// The `Accept` header's text, if there is one; a value that is not visible ASCII
/// names no media type keyledger serves: 406.
pub fn accept(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(ACCEPT) else {
        return Ok(None);
    };
    value.to_str().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "the Accept header is not ASCII text; ask for application/json (metadata), or \
             text/plain or application/octet-stream (payload)",
        )
    })
}

/// One media range of an `Accept` header, with its quality.
fn ranges(accept: &str) -> Vec<(String, f32)> {
    let mut out: Vec<(String, f32)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';').map(str::trim);
            let media = pieces.next()?.to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let q = pieces
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0).then_some((media, q))
        })
        .collect();
    // Stable: equal qualities keep the client's order.
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// What `GET /v1/secrets/{id}` should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretView {
    /// The metadata, as JSON.
    Metadata,
    /// The payload (Barbican's older way of reading it).
    Payload,
}

/// Chooses metadata or payload for `GET /v1/secrets/{id}`; `None`: 406.
pub fn secret_view(accept: Option<&str>) -> Option<SecretView> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(SecretView::Metadata);
    };
    ranges(accept)
        .into_iter()
        .find_map(|(media, _)| match media.as_str() {
            "application/json" | "application/*" | "*/*" => Some(SecretView::Metadata),
            "text/plain" | "text/*" | "application/octet-stream" => Some(SecretView::Payload),
            _ => None,
        })
}

/// How to serve a payload stored as `stored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// As stored.
    Stored,
    /// As raw octets (any payload is a sequence of octets).
    Octets,
    /// A binary payload as text: served if its bytes are UTF-8, as Barbican does
    /// (gophercloud and the openstack CLI ask for `text/plain` by default).
    TextIfUtf8,
}

/// How to serve a payload stored as `stored` to a client that accepts `accept`;
/// `None`: 406.
pub fn payload_type(accept: Option<&str>, stored: ContentType) -> Option<Served> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Served::Stored);
    };
    ranges(accept)
        .into_iter()
        .find_map(|(media, _)| match (media.as_str(), stored) {
            ("*/*", _) | ("text/plain" | "text/*", ContentType::TextPlain) => Some(Served::Stored),
            ("text/plain" | "text/*", ContentType::OctetStream) => Some(Served::TextIfUtf8),
            ("application/octet-stream" | "application/*", ContentType::TextPlain) => {
                Some(Served::Octets)
            }
            ("application/octet-stream" | "application/*", ContentType::OctetStream) => {
                Some(Served::Stored)
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_for_json_and_no_preference() {
        assert_eq!(secret_view(None), Some(SecretView::Metadata));
        assert_eq!(
            secret_view(Some("application/json")),
            Some(SecretView::Metadata)
        );
        assert_eq!(secret_view(Some("*/*")), Some(SecretView::Metadata));
        assert_eq!(secret_view(Some("text/plain")), Some(SecretView::Payload));
        assert_eq!(secret_view(Some("image/png")), None);
    }

    #[test]
    fn payload_type_follows_the_stored_type() {
        use ContentType::*;
        assert_eq!(payload_type(None, TextPlain), Some(Served::Stored));
        assert_eq!(
            payload_type(Some("text/plain"), TextPlain),
            Some(Served::Stored)
        );
        assert_eq!(
            payload_type(Some("text/plain"), OctetStream),
            Some(Served::TextIfUtf8)
        );
        assert_eq!(
            payload_type(Some("application/octet-stream"), TextPlain),
            Some(Served::Octets)
        );
        assert_eq!(payload_type(Some("application/json"), TextPlain), None);
        assert_eq!(
            payload_type(
                Some("text/plain;q=0.5, application/octet-stream"),
                TextPlain
            ),
            Some(Served::Octets)
        );
        assert_eq!(payload_type(Some("text/plain;q=0"), TextPlain), None);
    }
}
