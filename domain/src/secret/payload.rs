//! Payloads: the plaintext a client sends (in memory only, zeroed on drop) and the
//! sealed form that is written to the log.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Rejection;
use crate::ids::{KeyId, ProjectId, SecretId, VersionId};

/// The media type of a payload (Barbican's `payload_content_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// `text/plain` (UTF-8); sent and returned as-is.
    TextPlain,
    /// `application/octet-stream`; sent base64-encoded, returned as raw bytes.
    OctetStream,
}

impl ContentType {
    /// The media type string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TextPlain => "text/plain",
            Self::OctetStream => "application/octet-stream",
        }
    }

    /// Parses `text/plain`, `text/plain;charset=utf-8` (any case and spacing) or
    /// `application/octet-stream`.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let lower = s.to_ascii_lowercase();
        let mut parts = lower.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default();
        let params: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
        match (essence, params.as_slice()) {
            ("application/octet-stream", []) => Ok(Self::OctetStream),
            ("text/plain", []) => Ok(Self::TextPlain),
            ("text/plain", [charset])
                if charset.replace(' ', "") == "charset=utf-8"
                    || charset.replace(' ', "") == "charset=\"utf-8\"" =>
            {
                Ok(Self::TextPlain)
            }
            _ => Err(Rejection::invalid(format!(
                "payload_content_type {s:?} is not supported; use text/plain, \
                 text/plain;charset=utf-8 or application/octet-stream"
            ))),
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ContentType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ContentType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|r| serde::de::Error::custom(r.message))
    }
}

/// The largest plaintext payload accepted, in bytes (after base64 decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLimit(pub usize);

impl Default for PayloadLimit {
    /// 64 KiB.
    fn default() -> Self {
        Self(64 * 1024)
    }
}

impl PayloadLimit {
    fn check(self, len: usize) -> Result<(), Rejection> {
        self.check_size(len, "")
    }

    fn check_size(self, len: usize, qualifier: &str) -> Result<(), Rejection> {
        if len > self.0 {
            return Err(Rejection::too_large(format!(
                "payload is {qualifier}{len} bytes; the limit is {} bytes. Store large data \
                 elsewhere and keep only its key in keyledger",
                self.0
            )));
        }
        Ok(())
    }
}

/// A decoded plaintext payload with its media type. Lives in memory only; the bytes
/// are zeroed when it is dropped, and `Debug` never shows them.
pub struct Plaintext {
    bytes: SecretSlice<u8>,
    content_type: ContentType,
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Plaintext({}, {} bytes)",
            self.content_type,
            self.bytes.expose_secret().len()
        )
    }
}

impl Plaintext {
    /// Checks Barbican's payload fields and decodes the payload.
    ///
    /// `text/plain` payloads are sent as-is (and must be UTF-8, which a JSON string
    /// is); `application/octet-stream` payloads must be base64 with
    /// `payload_content_encoding: "base64"`. Returns `None` when no payload was sent.
    pub fn parse_fields(
        payload: Option<&str>,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        limit: PayloadLimit,
    ) -> Result<Option<Self>, Rejection> {
        let Some(payload) = payload else {
            // As Barbican: an encoding alone says nothing (its clients send one with
            // every secret), a content type alone is a payload forgotten.
            if content_type.is_some() {
                return Err(Rejection::invalid(
                    "payload_content_type was given without payload; send the payload too, or \
                     omit it to store the payload later",
                ));
            }
            return Ok(None);
        };
        if payload.is_empty() {
            return Err(Rejection::invalid(
                "payload must not be empty; omit it to create a secret without a payload \
                 and store one later",
            ));
        }
        let content_type = ContentType::parse(content_type.ok_or_else(|| {
            Rejection::invalid(
                "payload_content_type is required with payload; use text/plain or \
                 application/octet-stream",
            )
        })?)?;
        let encoding = content_encoding.map(str::to_ascii_lowercase);
        match (content_type, encoding.as_deref()) {
            (ContentType::TextPlain, None) => {
                limit.check(payload.len())?;
                Ok(Some(Self::new(payload.as_bytes().to_vec(), content_type)))
            }
            (ContentType::TextPlain, Some(_)) => Err(Rejection::invalid(
                "payload_content_encoding applies to application/octet-stream only; send \
                 text/plain payloads unencoded, or send the base64 with \
                 payload_content_type application/octet-stream",
            )),
            (ContentType::OctetStream, Some("base64")) => {
                Self::decode_base64(payload, limit).map(Some)
            }
            (ContentType::OctetStream, None) => Err(Rejection::invalid(
                "payload_content_encoding is required for application/octet-stream; \
                 base64-encode the payload and set payload_content_encoding to base64",
            )),
            (ContentType::OctetStream, Some(other)) => Err(Rejection::invalid(format!(
                "payload_content_encoding {other:?} is not supported; use base64"
            ))),
        }
    }

    /// A payload from raw bytes (e.g. an HTTP body). `text/plain` must be UTF-8.
    pub fn from_bytes(
        bytes: Vec<u8>,
        content_type: ContentType,
        limit: PayloadLimit,
    ) -> Result<Self, Rejection> {
        let payload = Self::new(bytes, content_type);
        let len = payload.expose().len();
        if len == 0 {
            return Err(Rejection::invalid("payload must not be empty"));
        }
        limit.check(len)?;
        if content_type == ContentType::TextPlain && std::str::from_utf8(payload.expose()).is_err()
        {
            return Err(Rejection::invalid(
                "a text/plain payload must be UTF-8; send binary data as \
                 application/octet-stream",
            ));
        }
        Ok(payload)
    }

    fn decode_base64(encoded: &str, limit: PayloadLimit) -> Result<Self, Rejection> {
        // Line breaks and spaces are not data: `base64` wraps its output at 76 columns
        // (MIME), and Barbican's Python decoder skips them too.
        // The copy holds the payload (encoded): zeroed when dropped, as the bytes are.
        let stripped: Option<zeroize::Zeroizing<String>> = encoded
            .bytes()
            .any(|b| b.is_ascii_whitespace())
            .then(|| zeroize::Zeroizing::new(encoded.split_ascii_whitespace().collect()));
        let compact: &str = stripped.as_deref().map_or(encoded, String::as_str);
        // Refuse before decoding when even the shortest possible decoding (every group
        // full, two padding characters) is too big.
        limit.check_size((compact.len() / 4 * 3).saturating_sub(2), "at least ")?;
        let bytes = B64.decode(compact.as_bytes()).map_err(|_| {
            Rejection::invalid(
                "payload is not valid base64 (payload_content_encoding is base64); encode it \
                 with standard base64 and padding",
            )
        })?;
        if bytes.is_empty() {
            return Err(Rejection::invalid(
                "payload must not be empty: its base64 holds no data",
            ));
        }
        let payload = Self::new(bytes, ContentType::OctetStream);
        limit.check(payload.expose().len())?;
        Ok(payload)
    }

    fn new(bytes: Vec<u8>, content_type: ContentType) -> Self {
        Self {
            bytes: SecretSlice::from(bytes),
            content_type,
        }
    }

    /// The plaintext bytes. Callers keep them only as long as needed.
    pub fn expose(&self) -> &[u8] {
        self.bytes.expose_secret()
    }

    /// The media type.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }
}

/// The additional authenticated data a payload is sealed with. Binding the project,
/// secret, version and key means a ciphertext copied to any other secret, version or
/// project fails to open.
pub fn payload_aad(
    project: &ProjectId,
    secret: SecretId,
    version: VersionId,
    key: KeyId,
) -> Vec<u8> {
    format!("keyledger/payload/v1\0{project}\0{secret}\0{version}\0{key}").into_bytes()
}

/// A payload as it is written to the log: AES-256-GCM ciphertext under a data key
/// (`key_id`) that lives in the key store, never in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPayload {
    /// This payload version; bound into the AAD.
    pub version_id: VersionId,
    /// The data key that sealed it; bound into the AAD.
    pub key_id: KeyId,
    /// The plaintext's media type.
    pub content_type: ContentType,
    /// The 96-bit GCM nonce.
    #[serde(with = "base64_bytes")]
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 128-bit tag.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

mod base64_bytes {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: PayloadLimit = PayloadLimit(16);

    fn parse(
        p: Option<&str>,
        ct: Option<&str>,
        enc: Option<&str>,
    ) -> Result<Option<Plaintext>, Rejection> {
        Plaintext::parse_fields(p, ct, enc, LIMIT)
    }

    #[test]
    fn text_is_stored_as_sent() {
        let p = parse(Some("beer"), Some("text/plain; charset=UTF-8"), None)
            .unwrap()
            .unwrap();
        assert_eq!(p.expose(), b"beer");
        assert_eq!(p.content_type(), ContentType::TextPlain);
    }

    #[test]
    fn binary_is_base64_decoded() {
        let p = parse(
            Some("YmVlcg=="),
            Some("application/octet-stream"),
            Some("base64"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.expose(), b"beer");
        // Wrapped in lines as `base64` writes it (at 76 columns; here 8, the limit
        // being 16 bytes), with CRLFs and a trailing newline: the same bytes. A
        // limit-sized payload so wrapped still fits.
        let data: Vec<u8> = (0..LIMIT.0).map(|i| (i * 7 % 251) as u8).collect();
        let flat = B64.encode(&data);
        let wrapped: String = flat
            .as_bytes()
            .chunks(8)
            .map(|line| format!("{}\r\n", std::str::from_utf8(line).unwrap()))
            .collect();
        let p = parse(
            Some(&wrapped),
            Some("application/octet-stream"),
            Some("base64"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.expose(), &data[..]);
    }

    #[test]
    fn each_wrong_combination_says_what_to_do() {
        let cases = [
            (Some("x"), None, None, "payload_content_type is required"),
            (None, Some("text/plain"), None, "given without payload"),
            (Some(""), Some("text/plain"), None, "must not be empty"),
            (Some("x"), Some("text/html"), None, "is not supported"),
            (
                Some("x"),
                Some("text/plain"),
                Some("base64"),
                "applies to application/octet-stream",
            ),
            (
                Some("x"),
                Some("application/octet-stream"),
                None,
                "is required for application",
            ),
            (
                Some("@@"),
                Some("application/octet-stream"),
                Some("base64"),
                "not valid base64",
            ),
            // Only spaces: no data, not an empty payload stored.
            (
                Some("  \n "),
                Some("application/octet-stream"),
                Some("base64"),
                "must not be empty",
            ),
            (
                Some("x"),
                Some("application/octet-stream"),
                Some("gzip"),
                "\"gzip\" is not supported",
            ),
        ];
        for (p, ct, enc, want) in cases {
            let err = parse(p, ct, enc).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::Invalid);
            assert!(err.message.contains(want), "{want}: {}", err.message);
        }
    }

    #[test]
    fn size_limit_applies_to_decoded_bytes() {
        assert!(parse(Some(&"a".repeat(16)), Some("text/plain"), None).is_ok());
        let err = parse(Some(&"a".repeat(17)), Some("text/plain"), None).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::TooLarge);
        assert!(
            err.message
                .starts_with("payload is 17 bytes; the limit is 16 bytes")
        );
        // 16 bytes encode to 24 base64 characters: allowed.
        let b64 = B64.encode([7u8; 16]);
        assert!(parse(Some(&b64), Some("application/octet-stream"), Some("base64")).is_ok());
        let b64 = B64.encode([7u8; 17]);
        let err = parse(Some(&b64), Some("application/octet-stream"), Some("base64")).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::TooLarge);
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let p = parse(Some("hunter2"), Some("text/plain"), None)
            .unwrap()
            .unwrap();
        assert_eq!(format!("{p:?}"), "Plaintext(text/plain, 7 bytes)");
    }

    #[test]
    fn raw_text_must_be_utf8() {
        let err = Plaintext::from_bytes(vec![0xff], ContentType::TextPlain, LIMIT).unwrap_err();
        assert!(err.message.contains("must be UTF-8"));
    }
}
