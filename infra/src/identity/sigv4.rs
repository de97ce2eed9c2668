//! AWS Signature Version 4 (SigV4), verified: how every AWS SDK and the aws CLI sign a
//! request, checked by a server that holds the signer's secret access key.
//!
//! Pure: the request's parts, the key and the time are arguments, so the canonical
//! forms are pinned by AWS's own SigV4 test suite (the tests below, with the suite's
//! files as botocore ships them, Apache-2.0). The server rebuilds the canonical request
//! from exactly the headers the client says it signed (`SignedHeaders`), since SDKs
//! sign different sets, and hashes the body itself: a client's `X-Amz-Content-SHA256`
//! is never trusted (a signature replayed with another body then fails).
//!
//! What a server using it must still do: call [`Authorization::check`] (with
//! `host`, `x-amz-date` and the header that names the action, e.g. `x-amz-target`, as
//! required: an unsigned action could be swapped for another that takes the same
//! body) before [`Authorization::verify`], with the same `X-Amz-Date` in
//! [`string_to_sign`]; check the scope's region if it cares; refuse
//! `X-Amz-Security-Token`, query-string (presigned) signatures, chunked (streaming)
//! payloads and SigV4a; cap the body before hashing it; pass the path and query as
//! they came over the wire (and a `host` header from `:authority` on HTTP/2); look up
//! the access key without telling unknown keys from bad signatures by timing; and
//! accept that a signed request can be replayed within the 15 minutes of skew.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The algorithm of an `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The last element of every credential scope.
const TERMINATOR: &str = "aws4_request";

/// How far `X-Amz-Date` may be from the server's clock, either way (AWS's limit).
pub const MAX_SKEW: time::Duration = time::Duration::minutes(15);

/// Why a request's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The `Authorization` header, the credential scope or `X-Amz-Date` is missing or
    /// malformed, or a header the server needs signed is not.
    #[error("{0}")]
    Incomplete(String),
    /// The signature is not the one the key gives for this request.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
    )]
    Mismatch,
    /// `X-Amz-Date` is more than [`MAX_SKEW`] in the past.
    #[error(
        "Signature expired: {amz_date} is now earlier than {earliest} ({now} - 15 min.); \
         set the client's clock right"
    )]
    Expired {
        /// The request's time.
        amz_date: String,
        /// The earliest time accepted.
        earliest: String,
        /// The server's time.
        now: String,
    },
    /// `X-Amz-Date` is more than [`MAX_SKEW`] in the future.
    #[error(
        "Signature not yet current: {amz_date} is still later than {latest} ({now} + 15 \
         min.); set the client's clock right"
    )]
    NotYetCurrent {
        /// The request's time.
        amz_date: String,
        /// The latest time accepted.
        latest: String,
        /// The server's time.
        now: String,
    },
    /// The credential is scoped to another service.
    #[error(
        "Credential should be scoped to correct service: '{expected}' (the request's \
         scope names '{found}')"
    )]
    WrongService {
        /// This server's service name.
        expected: String,
        /// The scope's.
        found: String,
    },
}

fn incomplete(what: impl Into<String>) -> SigV4Error {
    SigV4Error::Incomplete(what.into())
}

/// The credential scope: the day, region and service a signing key is derived for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `YYYYMMDD`.
    pub date: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The service, e.g. `secretsmanager`.
    pub service: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{TERMINATOR}",
            self.date, self.region, self.service
        )
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
/// Signature=…` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id the client signed with.
    pub access_key_id: String,
    /// The key's scope.
    pub scope: Scope,
    /// The headers signed, lowercase, sorted, unique.
    pub signed_headers: Vec<String>,
    signature: [u8; 32],
}

impl Authorization {
    /// Parses the value of an `Authorization` header.
    pub fn parse(value: &str) -> Result<Self, SigV4Error> {
        let rest = value
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| {
                incomplete(format!(
                    "the Authorization header must start with {ALGORITHM} (SigV4); sign \
                     requests with an AWS SDK or the aws CLI"
                ))
            })?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                incomplete(format!(
                    "Authorization header requires 'Credential', 'SignedHeaders' and \
                     'Signature' parameters as name=value; found {part:?}"
                ))
            })?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => {
                    return Err(incomplete(format!(
                        "the Authorization header has an unknown parameter {name:?}; it \
                         takes Credential, SignedHeaders and Signature"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(incomplete(format!(
                    "the Authorization header names {name} twice"
                )));
            }
        }
        // The header itself is not echoed: whatever logs the error need not hold it.
        let missing = |name: &str| {
            incomplete(format!(
                "Authorization header requires '{name}' parameter; it takes Credential, \
                 SignedHeaders and Signature"
            ))
        };
        let (access_key_id, scope) =
            parse_credential(credential.ok_or_else(|| missing("Credential"))?)?;
        let signed_headers = parse_signed_headers(signed.ok_or_else(|| missing("SignedHeaders"))?)?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(signature, &mut bytes).map_err(|_| {
            incomplete("the Signature must be 64 hexadecimal digits (a SHA-256 HMAC)")
        })?;
        Ok(Self {
            access_key_id,
            scope,
            signed_headers,
            signature: bytes,
        })
    }

    /// Whether the client signed header `name` (lowercase).
    pub fn signs(&self, name: &str) -> bool {
        self.signed_headers
            .binary_search_by(|h| h.as_str().cmp(name))
            .is_ok()
    }

    /// Checks the scope and the time against this server's `service` and clock, and
    /// that the headers in `required` are signed: `amz_date` is the request's
    /// `X-Amz-Date`.
    pub fn check(
        &self,
        amz_date: &str,
        now: OffsetDateTime,
        service: &str,
        required: &[&str],
    ) -> Result<(), SigV4Error> {
        if self.scope.service != service {
            return Err(SigV4Error::WrongService {
                expected: service.to_owned(),
                found: self.scope.service.clone(),
            });
        }
        for name in required {
            if !self.signs(name) {
                return Err(incomplete(format!(
                    "the header {name} must be signed (add it to SignedHeaders)"
                )));
            }
        }
        let at = parse_amz_date(amz_date)?;
        if !amz_date.starts_with(&self.scope.date) {
            return Err(incomplete(format!(
                "the credential's date {} is not the day of X-Amz-Date {amz_date}; sign with \
                 a scope of the request's day",
                self.scope.date
            )));
        }
        let earliest = now.checked_sub(MAX_SKEW).unwrap_or(now);
        let latest = now.checked_add(MAX_SKEW).unwrap_or(now);
        if at < earliest {
            return Err(SigV4Error::Expired {
                amz_date: amz_date.to_owned(),
                earliest: format_amz_date(earliest),
                now: format_amz_date(now),
            });
        }
        if at > latest {
            return Err(SigV4Error::NotYetCurrent {
                amz_date: amz_date.to_owned(),
                latest: format_amz_date(latest),
                now: format_amz_date(now),
            });
        }
        Ok(())
    }

    /// Checks the signature of `string_to_sign` under `signing_key` (see
    /// [`signing_key`]), in constant time.
    pub fn verify(&self, string_to_sign: &str, signing_key: &[u8; 32]) -> Result<(), SigV4Error> {
        let mut mac = HmacSha256::new_from_slice(signing_key).expect("HMAC takes any key length");
        mac.update(string_to_sign.as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| SigV4Error::Mismatch)
    }
}

/// `<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, Scope), SigV4Error> {
    let malformed = || {
        incomplete(format!(
            "the Credential {credential:?} is malformed; expected \
             <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request"
        ))
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = parts[..] else {
        return Err(malformed());
    };
    let token = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !token(akid, 128)
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
        || !token(region, 64)
        || !token(service, 64)
        || terminator != TERMINATOR
    {
        return Err(malformed());
    }
    Ok((
        akid.to_owned(),
        Scope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        },
    ))
}

/// `a;b;c`: lowercase header names, sorted and unique, as every SDK sends them.
fn parse_signed_headers(value: &str) -> Result<Vec<String>, SigV4Error> {
    let names: Vec<String> = value.split(';').map(str::to_owned).collect();
    let valid = |n: &String| {
        !n.is_empty()
            && n.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b)
            })
    };
    if !names.iter().all(valid) || !names.windows(2).all(|w| w[0] < w[1]) {
        return Err(incomplete(format!(
            "SignedHeaders {value:?} must be lowercase header names, sorted and separated \
             by ';'"
        )));
    }
    Ok(names)
}

/// Parses `X-Amz-Date` (`YYYYMMDD'T'HHMMSS'Z'`).
fn parse_amz_date(value: &str) -> Result<OffsetDateTime, SigV4Error> {
    time::PrimitiveDateTime::parse(value, AMZ_DATE)
        .map(|t| t.assume_utc())
        .map_err(|_| {
            incomplete(format!(
                "X-Amz-Date {value:?} is not a time of the form 20150830T123600Z (UTC)"
            ))
        })
}

const AMZ_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

fn format_amz_date(at: OffsetDateTime) -> String {
    at.format(AMZ_DATE).unwrap_or_default()
}

/// A request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The query string as sent, without `?` (empty if none).
    pub query: &'a str,
    /// Every header, names in any case, in arrival order (a repeated header once per
    /// occurrence).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body.
    pub body: &'a [u8],
}

impl Request<'_> {
    /// The canonical request (SigV4 task 1) over the headers in `signed` (lowercase,
    /// sorted): fails if one of them is not in the request.
    pub fn canonical(&self, signed: &[String]) -> Result<Vec<u8>, SigV4Error> {
        let mut out = Vec::with_capacity(256 + self.path.len() + self.query.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(canonical_path(self.path).as_bytes());
        out.push(b'\n');
        out.extend_from_slice(canonical_query(self.query).as_bytes());
        out.push(b'\n');
        for name in signed {
            let mut values = self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .peekable();
            if values.peek().is_none() {
                return Err(incomplete(format!(
                    "the header {name} is in SignedHeaders but not in the request"
                )));
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            for (i, value) in values.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Trimmed, with each inner run of whitespace made one space.
                for (j, word) in value
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                    .enumerate()
                {
                    if j > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(word);
                }
            }
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(signed.join(";").as_bytes());
        out.push(b'\n');
        out.extend_from_slice(hex::encode(Sha256::digest(self.body)).as_bytes());
        Ok(out)
    }
}

/// The string to sign (SigV4 task 2).
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request))
    )
}

/// The signing key of `secret_access_key` for `scope` (SigV4 task 3): valid for that
/// day, region and service only, so a server may keep it instead of the secret.
pub fn signing_key(secret_access_key: &[u8], scope: &Scope) -> Zeroizing<[u8; 32]> {
    let mut first = Zeroizing::new(Vec::with_capacity(4 + secret_access_key.len()));
    first.extend_from_slice(b"AWS4");
    first.extend_from_slice(secret_access_key);
    let date = hmac(&first, scope.date.as_bytes());
    let region = hmac(&*date, scope.region.as_bytes());
    let service = hmac(&*region, scope.service.as_bytes());
    hmac(&*service, TERMINATOR.as_bytes())
}

/// The signature of `string_to_sign` under `signing_key`, in hex: what a client puts
/// in its `Authorization` header (for keyledger's own clients and benchmarks).
pub fn signature(string_to_sign: &str, signing_key: &[u8; 32]) -> String {
    hex::encode(*hmac(signing_key, string_to_sign.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// Bytes a URI component keeps as they are (RFC 3986's unreserved characters).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn encode(bytes: &[u8], keep: impl Fn(u8) -> bool, out: &mut String) {
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The path as sent, with `.` and `..` segments and empty segments removed (a
/// trailing `/` kept), then every byte but unreserved ones and `/` percent-encoded:
/// how AWS's SDKs sign for services other than S3, which encode the already encoded
/// path again (`/a%20b` is signed as `/a%2520b`), so an encoded `/` or `.` never
/// becomes a separator or a dot segment.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode(segment.as_bytes(), unreserved, &mut out);
    }
    if !segments.is_empty() && path.ends_with('/') {
        out.push('/');
    }
    out
}

/// The query's parameters, each name and value decoded and encoded again, sorted by
/// name, then value. What an SDK sends encoded this way comes out as it signed it; a
/// query written by hand with `+`, lowercase escapes or empty `&&` pairs may not.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let reencode = |s: &str| {
                let decoded: Vec<u8> = percent_encoding::percent_decode_str(s).collect();
                let mut out = String::new();
                encode(&decoded, unreserved, &mut out);
                out
            };
            (reencode(name), reencode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests;
