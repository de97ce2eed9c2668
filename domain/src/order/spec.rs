//! What an order asks for: its type and `meta`, checked for shape when it is placed,
//! and the key sizes and names the generators and CAs support, checked when it runs.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Rejection;
use crate::secret::fields::{Algorithm, Expiration, Mode, SecretName};
use crate::timestamp::Timestamp;

/// Barbican's order types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    /// Symmetric key material, stored as a secret.
    Key,
    /// A key pair, stored as private and public secrets in an `rsa` container.
    Asymmetric,
    /// A key pair and a certificate issued by a CA, in a `certificate` container.
    Certificate,
}

impl OrderType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Asymmetric => "asymmetric",
            Self::Certificate => "certificate",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        match s {
            "key" => Ok(Self::Key),
            "asymmetric" => Ok(Self::Asymmetric),
            "certificate" => Ok(Self::Certificate),
            _ => Err(Rejection::invalid(format!(
                "order type {s:?} is not supported; use key, asymmetric or certificate"
            ))),
        }
    }
}

impl fmt::Display for OrderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order's `meta`, read for its type.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSpec {
    /// The type.
    pub order_type: OrderType,
    /// `algorithm`, lowercased: aes or hmac (key), rsa or ec (key pairs).
    pub algorithm: String,
    /// `algorithm` as the order named it, for the secrets made (Barbican keeps it so:
    /// Castellan asks for `AES` and reads `AES` back).
    pub algorithm_as_named: String,
    /// `bit_length`.
    pub bit_length: u32,
    /// `mode` of the key made (informational, as in Barbican).
    pub mode: Option<Mode>,
    /// `name` of the secrets made.
    pub name: Option<SecretName>,
    /// `expiration` of the secrets made.
    pub expiration: Option<Expiration>,
    /// `subject_dn` (certificates).
    pub subject_dn: Option<String>,
    /// `subject_alt_names`: DNS names (certificates).
    pub subject_alt_names: Vec<String>,
    /// `validity_days` (certificates; default 365).
    pub validity_days: u32,
    /// `key_usage` (certificates): digital_signature, key_encipherment, server_auth,
    /// client_auth.
    pub key_usage: Vec<String>,
    /// `ca`: the CA plugin that issues (certificates; default `local`).
    pub ca: String,
}

/// The most bytes an order's `meta` may take, as JSON.
pub const MAX_META_BYTES: usize = 16 * 1024;
/// The most names in `subject_alt_names` or `key_usage`.
const MAX_LIST: usize = 100;

fn string(meta: &Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::invalid(format!("meta.{key} must be a string"))),
    }
}

fn number(meta: &Map<String, Value>, key: &str) -> Result<Option<u32>, Rejection> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| match v {
                Value::Number(n) => Rejection::invalid(format!(
                    "meta.{key} must be a whole number from 0 to {}; got {n}",
                    u32::MAX
                )),
                _ => Rejection::invalid(format!("meta.{key} must be a whole number")),
            }),
    }
}

/// Why `name` is not a DNS name a certificate may carry (RFC 5280's dNSName in the
/// preferred syntax of RFC 1034, as the CA/Browser Forum's rules take it): labels of
/// letters, digits and inner hyphens, 1 to 63 characters each, at most 253 in all,
/// the last not all digits (so no IP address), and at most one wildcard, as the whole
/// leftmost label of a name of two labels or more.
fn not_a_dns_name(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some(format!("it is {} characters long; at most 253", name.len()));
    }
    if name.len() > 1 && name.ends_with('.') {
        return Some("it ends with a dot; leave the dot out".into());
    }
    // One label (`localhost`, an internal host's short name) is a name a private CA
    // may vouch for.
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return Some("it has an empty label (two dots together, or one at an end)".into());
        }
        if *label == "*" {
            if i != 0 {
                return Some("a wildcard may only be the leftmost label".into());
            }
            if labels.len() < 2 {
                return Some("a wildcard needs a name after it (*.example.com)".into());
            }
            continue;
        }
        if label.len() > 63 {
            return Some(format!("the label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Some(format!(
                "the label {label:?} holds {c:?}; labels take ASCII letters, digits and \
                 hyphens (an internationalized name in its xn-- form)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("the label {label:?} starts or ends with a hyphen"));
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
    {
        return Some(
            "its last label is all digits (an IP address is not a DNS name; this CA issues \
             DNS names only)"
                .into(),
        );
    }
    None
}

fn strings(meta: &Map<String, Value>, key: &str) -> Result<Vec<String>, Rejection> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() > MAX_LIST => Err(Rejection::invalid(format!(
            "meta.{key} names {} items; the limit is {MAX_LIST}",
            items.len()
        ))),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                let item = v.as_str().ok_or_else(|| {
                    Rejection::invalid(format!("meta.{key} must be a list of strings"))
                })?;
                crate::secret::fields::bounded_text(&format!("an item of meta.{key}"), item, 255)
            })
            .collect(),
        Some(_) => Err(Rejection::invalid(format!(
            "meta.{key} must be a list of strings"
        ))),
    }
}

impl OrderSpec {
    /// Reads `meta` for `order_type`: the fields the type takes, each of the right
    /// JSON type; unknown fields are named. Whether an algorithm or size is supported
    /// is the generator's or the CA's to say when the order runs.
    pub fn parse(order_type: OrderType, meta: &Map<String, Value>) -> Result<Self, Rejection> {
        // Every order's meta is kept in the log and shown with the order: bounded.
        let size = serde_json::to_vec(meta).map_or(usize::MAX, |json| json.len());
        if size > MAX_META_BYTES {
            return Err(Rejection::invalid(format!(
                "meta is {size} bytes of JSON; the limit is {MAX_META_BYTES}"
            )));
        }
        let allowed: &[&str] = match order_type {
            OrderType::Key => &[
                "algorithm",
                "bit_length",
                "mode",
                "name",
                "expiration",
                "payload_content_type",
            ],
            OrderType::Asymmetric => &[
                "algorithm",
                "bit_length",
                "name",
                "expiration",
                "payload_content_type",
            ],
            OrderType::Certificate => &[
                "algorithm",
                "bit_length",
                "name",
                "expiration",
                "subject_dn",
                "subject_alt_names",
                "validity_days",
                "key_usage",
                "ca",
            ],
        };
        if let Some(unknown) = meta.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Rejection::invalid(format!(
                "meta.{unknown} is not a field of {order_type} orders; they take {}",
                allowed.join(", ")
            )));
        }
        let required = |key: &str, v: Option<String>| {
            v.ok_or_else(|| {
                Rejection::invalid(format!("meta.{key} is required for {order_type} orders"))
            })
        };
        let (algorithm, bit_length) = match order_type {
            OrderType::Certificate => {
                let algorithm = string(meta, "algorithm")?.unwrap_or_else(|| "ec".into());
                let default_bits = if algorithm == "rsa" { 2048 } else { 256 };
                (
                    algorithm,
                    number(meta, "bit_length")?.unwrap_or(default_bits),
                )
            }
            _ => (
                required("algorithm", string(meta, "algorithm")?)?,
                number(meta, "bit_length")?.ok_or_else(|| {
                    Rejection::invalid(format!(
                        "meta.bit_length is required for {order_type} orders"
                    ))
                })?,
            ),
        };
        // Barbican's clients send a content type with every order; key material is
        // stored as application/octet-stream whichever of these was named.
        if let Some(ct) = string(meta, "payload_content_type")?
            && !matches!(
                ct.to_ascii_lowercase().as_str(),
                "application/octet-stream"
                    | "text/plain"
                    | "text/plain;charset=utf-8"
                    | "text/plain; charset=utf-8"
            )
        {
            return Err(Rejection::invalid(format!(
                "meta.payload_content_type {ct:?} is not supported; use \
                 application/octet-stream (key material is stored as such)"
            )));
        }
        if order_type == OrderType::Key && (bit_length == 0 || !bit_length.is_multiple_of(8)) {
            return Err(Rejection::invalid(format!(
                "meta.bit_length {bit_length} is not a whole number of bytes; use a positive \
                 multiple of 8, e.g. 256"
            )));
        }
        if bit_length > 32767 {
            return Err(Rejection::invalid(format!(
                "meta.bit_length {bit_length} is out of range; use at most 32767"
            )));
        }
        let subject_dn = match order_type {
            OrderType::Certificate => Some(crate::secret::fields::visible_text(
                "meta.subject_dn",
                &required("subject_dn", string(meta, "subject_dn")?)?,
                1024,
            )?),
            _ => None,
        };
        let algorithm = Algorithm::parse(&algorithm)?.as_str().to_owned();
        let ca = string(meta, "ca")?.unwrap_or_else(|| "local".into());
        crate::secret::fields::bounded_text("meta.ca", &ca, 64)?;
        Ok(Self {
            order_type,
            algorithm: algorithm.to_ascii_lowercase(),
            algorithm_as_named: algorithm,
            bit_length,
            mode: match order_type {
                OrderType::Key => string(meta, "mode")?
                    .as_deref()
                    .map(Mode::parse)
                    .transpose()?,
                _ => None,
            },
            name: string(meta, "name")?
                .as_deref()
                .map(SecretName::parse)
                .transpose()?,
            expiration: None,
            subject_dn,
            subject_alt_names: strings(meta, "subject_alt_names")?,
            validity_days: number(meta, "validity_days")?.unwrap_or(365),
            key_usage: strings(meta, "key_usage")?,
            ca,
        })
        .and_then(|spec| spec.with_expiration(meta))
    }

    /// Refuses a `subject_alt_names` entry that is no DNS name. Checked when an order is
    /// placed; one an earlier build placed runs as it was accepted.
    pub fn check_names(&self) -> Result<(), Rejection> {
        match self
            .subject_alt_names
            .iter()
            .find_map(|n| not_a_dns_name(n).map(|why| (n, why)))
        {
            Some((name, why)) => Err(Rejection::invalid(format!(
                "meta.subject_alt_names names {name:?}, which is not a DNS name: {why}"
            ))),
            None => Ok(()),
        }
    }

    fn with_expiration(mut self, meta: &Map<String, Value>) -> Result<Self, Rejection> {
        if let Some(at) = string(meta, "expiration")? {
            // Placement checks the form; that it lies in the future is checked against
            // the clock when the secrets are created.
            // The earliest instant as "now": placement checks the form only.
            let at = Timestamp::parse_iso8601("meta.expiration", &at)?;
            self.expiration = Some(Expiration::parse(&at.to_rfc3339(), Timestamp::MIN)?);
        }
        Ok(self)
    }

    /// The key pair this spec asks for, if the generator supports it; otherwise what it
    /// supports.
    pub fn key_pair(&self) -> Result<KeySpec, CannotMake> {
        KeySpec::parse(&self.algorithm, self.bit_length)
    }

    /// The bytes of the symmetric key a key order asks for, if the generator supports
    /// it (aes 128, 192 or 256; hmac a whole number of bytes from 128 to 1024 bits);
    /// otherwise what it supports.
    pub fn symmetric_key_bytes(&self) -> Result<usize, CannotMake> {
        let bits = self.bit_length;
        let supported = match self.algorithm.as_str() {
            "aes" => matches!(bits, 128 | 192 | 256),
            "hmac" => bits.is_multiple_of(8) && (128..=1024).contains(&bits),
            _ => false,
        };
        if !supported {
            return Err(CannotMake(format!(
                "{} {bits} is not supported for key orders; use aes 128, 192 or 256, or hmac \
                 with a bit_length that is a multiple of 8 from 128 to 1024",
                self.algorithm
            )));
        }
        Ok(bits as usize / 8)
    }
}

/// Why what an order asks for cannot be made as asked (the order ends in ERROR with
/// this reason): an unsupported algorithm or size, or a subject name the CA cannot
/// use. It says what would work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CannotMake(pub String);

/// A key pair keyledger generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA with this many bits.
    Rsa(u32),
    /// ECDSA on NIST P-256.
    P256,
    /// ECDSA on NIST P-384.
    P384,
}

/// What the key-pair generator supports, for messages.
pub const SUPPORTED_KEY_PAIRS: &str = "rsa 2048, 3072 or 4096; ec 256 (P-256) or 384 (P-384)";

impl KeySpec {
    /// The key pair for an algorithm and size, or what is supported.
    pub fn parse(algorithm: &str, bit_length: u32) -> Result<Self, CannotMake> {
        match (algorithm, bit_length) {
            ("rsa", 2048 | 3072 | 4096) => Ok(Self::Rsa(bit_length)),
            ("ec", 256) => Ok(Self::P256),
            ("ec", 384) => Ok(Self::P384),
            _ => Err(CannotMake(format!(
                "{algorithm} {bit_length} is not supported; use {SUPPORTED_KEY_PAIRS}"
            ))),
        }
    }

    /// `rsa` or `ec`.
    pub fn algorithm(self) -> &'static str {
        match self {
            Self::Rsa(_) => "rsa",
            Self::P256 | Self::P384 => "ec",
        }
    }

    /// The size in bits.
    pub fn bits(self) -> u32 {
        match self {
            Self::Rsa(bits) => bits,
            Self::P256 => 256,
            Self::P384 => 384,
        }
    }
}

/// A subject distinguished name, e.g. `CN=web.example,O=Example,C=DE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinguishedName(pub Vec<(String, String)>);

/// The attributes a subject DN may carry.
pub const DN_FIELDS: &str = "CN, O, OU, L, ST, C";

impl DistinguishedName {
    /// Parses `K=V,K=V`. Each field must be known and non-empty; `C` must be a
    /// two-letter country code; `CN` is required. The error names the field.
    pub fn parse(s: &str) -> Result<Self, CannotMake> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let Some((key, value)) = part.split_once('=') else {
                return Err(CannotMake(format!(
                    "subject_dn part {part:?} is not KEY=value; write e.g. CN=web.example,O=Example"
                )));
            };
            let key = key.trim().to_ascii_uppercase();
            let value = value.trim();
            if !["CN", "O", "OU", "L", "ST", "C"].contains(&key.as_str()) {
                return Err(CannotMake(format!(
                    "subject_dn field {key} is not supported; use {DN_FIELDS}"
                )));
            }
            if value.is_empty() || value.len() > 64 || value.chars().any(char::is_control) {
                return Err(CannotMake(format!(
                    "subject_dn field {key} must be 1 to 64 printable characters"
                )));
            }
            if key == "C" && !(value.len() == 2 && value.chars().all(|c| c.is_ascii_uppercase())) {
                return Err(CannotMake(format!(
                    "subject_dn field C must be a two-letter country code such as DE, got {value:?}"
                )));
            }
            out.push((key, value.to_owned()));
        }
        if !out.iter().any(|(k, _)| k == "CN") {
            return Err(CannotMake(
                "subject_dn field CN is missing; name the subject, e.g. CN=web.example".into(),
            ));
        }
        Ok(Self(out))
    }
}
