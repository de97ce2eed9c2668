//! A secret's descriptive fields, as Barbican defines them, each parsed once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::Rejection;
use crate::timestamp::Timestamp;

/// Whether free text refuses `c`: a control character always (Unicode Cc: they break
/// logs and terminals and are never meaningful in a name); in text people read in
/// listings (`visible`), also invisible formatting (Cf) and line or paragraph
/// separators (Zl, Zp).
pub fn refused(c: char, visible: bool) -> bool {
    c.is_control()
        || (visible
            && matches!(
                c.general_category(),
                GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            ))
}

/// The ranges of characters [`refused`] refuses, in order (for describing the rule,
/// as the OpenAPI document's patterns do).
pub fn refused_ranges(visible: bool) -> Vec<(char, char)> {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        if !refused(c, visible) {
            continue;
        }
        match ranges.last_mut() {
            Some((_, end)) if u32::from(*end) + 1 == u32::from(c) => *end = c,
            _ => ranges.push((c, c)),
        }
    }
    ranges
}

/// Checks a free-text field: 1 to `max` characters, no control characters (they break
/// logs and terminals and are never meaningful in a name).
pub(crate) fn bounded_text(field: &str, s: &str, max: usize) -> Result<String, Rejection> {
    if s.is_empty() {
        return Err(Rejection::invalid(format!(
            "{field} must not be empty; omit it instead"
        )));
    }
    let len = s.chars().count();
    if len > max {
        return Err(Rejection::invalid(format!(
            "{field} is {len} characters long; the limit is {max}"
        )));
    }
    if s.chars().any(|c| refused(c, false)) {
        return Err(Rejection::invalid(format!(
            "{field} {s:?} contains a control character; use printable characters only"
        )));
    }
    Ok(s.to_owned())
}

/// Checks a new value of a field people read in listings: [`bounded_text`], and no
/// invisible formatting character (Unicode category Cf: direction overrides and
/// isolates, zero-width spaces and joiners, byte-order marks…) or line or paragraph
/// separator, which can make one name look like another.
pub(crate) fn visible_text(field: &str, s: &str, max: usize) -> Result<String, Rejection> {
    let text = bounded_text(field, s, max)?;
    let hidden = s.chars().enumerate().find(|(_, c)| refused(*c, true));
    if let Some((at, c)) = hidden {
        return Err(Rejection::invalid(format!(
            "{field} contains U+{:04X} at character {}, an invisible {} character that can make \
             one {field} look like another; remove it",
            u32::from(c),
            at + 1,
            if c.general_category() == GeneralCategory::Format {
                "formatting (or text-direction)"
            } else {
                "line-breaking"
            }
        )));
    }
    Ok(text)
}

/// [`visible_text`], or the empty string: names, which Barbican lets be empty
/// (`"name": ""` is kept and shown as given, unlike a name left out).
pub(crate) fn visible_or_empty(field: &str, s: &str, max: usize) -> Result<String, Rejection> {
    if s.is_empty() {
        return Ok(String::new());
    }
    visible_text(field, s, max)
}

/// [`bounded_text`], or the empty string: names as stored.
pub(crate) fn bounded_or_empty(field: &str, s: &str, max: usize) -> Result<String, Rejection> {
    if s.is_empty() {
        return Ok(String::new());
    }
    bounded_text(field, s, max)
}

/// Declares a bounded free-text field type. New values are checked by `$check`
/// ([`bounded_text`] or [`visible_text`]); values read back from the log by
/// `$stored` (by default [`bounded_text`]), the rule they were written under.
macro_rules! text_field {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $check:ident) => {
        text_field!($(#[$doc])* $name, $field, $max, $check, bounded_text);
    };
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $check:ident, $stored:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Parses a new value of the field.
            pub fn parse(s: &str) -> Result<Self, Rejection> {
                $check($field, s, $max).map(Self)
            }

            /// A value as stored in the log.
            fn stored(s: &str) -> Result<Self, Rejection> {
                $stored($field, s, $max).map(Self)
            }
        }

        parsed_string!($name, stored = $name::stored);
    };
}

text_field!(
    /// A secret's (or container's) human-readable name: up to 255 characters, and may
    /// be empty, as in Barbican.
    SecretName,
    "name",
    255,
    visible_or_empty,
    bounded_or_empty
);
text_field!(
    /// The algorithm the secret is for, e.g. `aes` (informational, as in Barbican;
    /// shown in listings, so visible characters only).
    Algorithm,
    "algorithm",
    255,
    visible_text,
    bounded_text
);
text_field!(
    /// The cipher mode, e.g. `cbc` (informational, as in Barbican; shown in
    /// listings, so visible characters only).
    Mode,
    "mode",
    255,
    visible_text,
    bounded_text
);
text_field!(
    /// A metadata value.
    MetadataValue,
    "metadata value",
    1024,
    visible_text
);

text_field!(
    /// A tag's key (AWS: up to 128 characters).
    TagKey,
    "tag key",
    128,
    tag_key_text
);

impl TagKey {
    /// A key to remove: any a new tag could have had, and the reserved one, which tags
    /// written before it was refused may hold.
    pub fn to_remove(s: &str) -> Result<Self, Rejection> {
        visible_text("tag key", s, Self::MAX_CHARS).map(Self)
    }
}

/// [`visible_text`], and not the one key serde_json reads as no other: an object whose
/// first member it names is read as the JSON held in that member's string (a
/// `RawValue`), so a secret tagged with it would not read back as written.
fn tag_key_text(field: &str, s: &str, max: usize) -> Result<String, Rejection> {
    if s == crate::json_text::RAW_VALUE_TOKEN {
        return Err(Rejection::invalid(format!(
            "{field} {s:?} is reserved by the JSON library keyledger reads its log with; \
             choose another key"
        )));
    }
    visible_text(field, s, max)
}

/// A tag's value: up to 256 characters, may be empty (as in AWS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TagValue(String);

impl TagValue {
    /// Parses a new value.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() {
            return Ok(Self(String::new()));
        }
        visible_text("tag value", s, 256).map(Self)
    }

    /// A value as stored in the log.
    fn stored(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() {
            return Ok(Self(String::new()));
        }
        bounded_text("tag value", s, 256).map(Self)
    }
}
parsed_string!(TagValue, stored = TagValue::stored);

/// A secret's tags.
pub type Tags = BTreeMap<TagKey, TagValue>;

/// Most tags a secret may carry (AWS's limit).
pub const MAX_TAGS: usize = 50;

/// Parses tags from wire key/value pairs.
pub fn parse_tags<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Tags, Rejection> {
    let mut out = Tags::new();
    for (k, v) in pairs {
        out.insert(TagKey::parse(k)?, TagValue::parse(v)?);
    }
    if out.len() > MAX_TAGS {
        return Err(Rejection::invalid(format!(
            "{} tags given; a secret carries at most {MAX_TAGS}",
            out.len()
        )));
    }
    Ok(out)
}

/// What kind of secret this is (Barbican's `secret_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretType {
    /// A symmetric key.
    Symmetric,
    /// A public key.
    Public,
    /// A private key.
    Private,
    /// A passphrase.
    Passphrase,
    /// A certificate.
    Certificate,
    /// Anything else; stored as given.
    #[default]
    Opaque,
}

impl SecretType {
    /// Every type, in Barbican's order.
    pub const ALL: [SecretType; 6] = [
        Self::Symmetric,
        Self::Public,
        Self::Private,
        Self::Passphrase,
        Self::Certificate,
        Self::Opaque,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Symmetric => "symmetric",
            Self::Public => "public",
            Self::Private => "private",
            Self::Passphrase => "passphrase",
            Self::Certificate => "certificate",
            Self::Opaque => "opaque",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Rejection::invalid(format!(
                    "secret_type {s:?} is not supported; use one of symmetric, public, private, \
                     passphrase, certificate, opaque"
                ))
            })
    }
}

/// Key length in bits (Barbican: 1 to 32767).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BitLength(u16);

impl BitLength {
    /// Largest accepted value.
    pub const MAX: u16 = 32767;

    /// Parses a bit length.
    pub fn parse(n: i64) -> Result<Self, Rejection> {
        match u16::try_from(n) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(Rejection::invalid(format!(
                "bit_length {n} is out of range; use 1 to {}",
                Self::MAX
            ))),
        }
    }

    /// The value.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// When a secret stops being readable. Must lie in the future when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Expiration(Timestamp);

impl Expiration {
    /// Parses an ISO-8601 expiration and checks it is after `now`.
    pub fn parse(s: &str, now: Timestamp) -> Result<Self, Rejection> {
        let at = Timestamp::parse_iso8601("expiration", s)?;
        if at <= now {
            return Err(Rejection::invalid(format!(
                "expiration {at} is not in the future (it is now {now}); choose a later time \
                 or omit expiration"
            )));
        }
        Ok(Self(at))
    }

    /// The instant.
    pub fn at(self) -> Timestamp {
        self.0
    }

    /// True once the secret has expired.
    pub fn has_passed(self, now: Timestamp) -> bool {
        now >= self.0
    }
}

/// A metadata key: 1 to 255 characters of ASCII letters, digits, `-`, `_`, `.`,
/// folded to lower case (Barbican treats metadata keys case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MetadataKey(String);

impl MetadataKey {
    /// Parses a key.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(Rejection::invalid(format!(
                "metadata key {s:?} is not valid; use 1 to 255 ASCII letters, digits, '-', '_' \
                 or '.'"
            )));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}
parsed_string!(MetadataKey);

/// A secret's user metadata.
pub type Metadata = BTreeMap<MetadataKey, MetadataValue>;

/// What describes a secret, as given when it is created (Barbican's secret fields,
/// apart from the payload).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Attributes {
    /// Optional name.
    pub name: Option<SecretName>,
    /// Kind of secret; `opaque` by default.
    pub secret_type: SecretType,
    /// Informational algorithm.
    pub algorithm: Option<Algorithm>,
    /// Informational key length.
    pub bit_length: Option<BitLength>,
    /// Informational mode.
    pub mode: Option<Mode>,
    /// When the secret stops being readable.
    pub expiration: Option<Expiration>,
    /// User metadata.
    pub metadata: Metadata,
    /// A description (AWS's `Description`; since `secret.created` v3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
}

/// A secret's description: 1 to 2,048 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    /// The longest description (AWS's).
    pub const MAX_LEN: usize = 2048;

    /// Parses a description; the empty string is none.
    pub fn parse(s: &str) -> Result<Option<Self>, Rejection> {
        if s.is_empty() {
            return Ok(None);
        }
        bounded_text("description", s, Self::MAX_LEN).map(|d| Some(Self(d)))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = Rejection;

    fn try_from(s: String) -> Result<Self, Rejection> {
        Self::parse(&s)?.ok_or_else(|| Rejection::invalid("description must not be empty"))
    }
}

impl From<Description> for String {
    fn from(d: Description) -> Self {
        d.0
    }
}

/// Most metadata entries a secret may carry.
pub const MAX_METADATA_ENTRIES: usize = 64;

/// Parses user metadata from wire key/value pairs.
pub fn parse_metadata<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Metadata, Rejection> {
    let mut out = Metadata::new();
    for (k, v) in pairs {
        let key = MetadataKey::parse(k)?;
        if out.insert(key, MetadataValue::parse(v)?).is_some() {
            return Err(Rejection::invalid(format!(
                "metadata key {k:?} appears twice (keys are case-insensitive)"
            )));
        }
    }
    if out.len() > MAX_METADATA_ENTRIES {
        return Err(Rejection::invalid(format!(
            "{} metadata entries given; the limit is {MAX_METADATA_ENTRIES}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_iso8601("now", "2026-11-22T10:00:00Z").unwrap()
    }

    #[test]
    fn names_are_bounded() {
        assert!(SecretName::parse(&"n".repeat(255)).is_ok());
        assert_eq!(
            SecretName::parse(&"n".repeat(256)).unwrap_err().message,
            "name is 256 characters long; the limit is 255"
        );
        assert!(SecretName::parse("a\nb").is_err());
        assert_eq!(SecretName::parse("").unwrap().as_str(), "");
    }

    #[test]
    fn bit_length_range_is_barbicans() {
        assert!(BitLength::parse(1).is_ok());
        assert!(BitLength::parse(32767).is_ok());
        assert_eq!(
            BitLength::parse(0).unwrap_err().message,
            "bit_length 0 is out of range; use 1 to 32767"
        );
        assert!(BitLength::parse(32768).is_err());
        assert!(BitLength::parse(-5).is_err());
    }

    #[test]
    fn secret_type_lists_the_choices() {
        assert_eq!(SecretType::parse("private").unwrap(), SecretType::Private);
        let err = SecretType::parse("key").unwrap_err();
        assert!(
            err.message.contains("symmetric, public, private"),
            "{}",
            err.message
        );
    }

    #[test]
    fn expiration_must_be_in_the_future() {
        assert!(Expiration::parse("2026-11-22T10:00:01Z", now()).is_ok());
        let err = Expiration::parse("2026-11-22T10:00:00Z", now()).unwrap_err();
        assert_eq!(
            err.message,
            "expiration 2026-11-22T10:00:00Z is not in the future (it is now \
             2026-11-22T10:00:00Z); choose a later time or omit expiration"
        );
    }

    #[test]
    fn metadata_keys_fold_case_and_reject_duplicates() {
        let md = parse_metadata([("Owner", "ops")]).unwrap();
        assert_eq!(md.keys().next().unwrap().as_str(), "owner");
        assert!(parse_metadata([("a", "1"), ("A", "2")]).is_err());
        assert!(parse_metadata([("a b", "1")]).is_err());
    }

    /// The key serde_json reads as no other is refused as a tag key, saying why; a key
    /// that only contains it is an ordinary key.
    #[test]
    fn a_tag_key_may_not_be_serde_jsons_raw_value_token() {
        let err = TagKey::parse("$serde_json::private::RawValue").unwrap_err();
        assert!(err.message.contains("is reserved"), "{}", err.message);
        assert!(parse_tags([("$serde_json::private::RawValue", "x")]).is_err());
        assert!(TagKey::parse("$serde_json::private::RawValue2").is_ok());
        // What older tags may hold can still be removed.
        assert!(TagKey::to_remove("$serde_json::private::RawValue").is_ok());
    }

    #[test]
    fn names_and_tags_refuse_invisible_characters_naming_the_character() {
        for (c, code) in [
            ('\u{202E}', "U+202E"),
            ('\u{200B}', "U+200B"),
            ('\u{FEFF}', "U+FEFF"),
            ('\u{2028}', "U+2028"),
        ] {
            let text = format!("pay{c}roll");
            for err in [
                SecretName::parse(&text).unwrap_err(),
                TagKey::parse(&text).unwrap_err(),
                TagValue::parse(&text).unwrap_err(),
                MetadataValue::parse(&text).unwrap_err(),
            ] {
                assert!(err.message.contains(code), "{}", err.message);
                assert!(err.message.contains("at character 4"), "{}", err.message);
            }
        }
        // What the log already holds keeps reading.
        let stored: SecretName = serde_json::from_str("\"pay\\u202eroll\"").unwrap();
        assert_eq!(stored.as_str(), "pay\u{202E}roll");
        // Visible text of any script is fine.
        assert!(SecretName::parse("données-機密-🔑").is_ok());
    }
}
