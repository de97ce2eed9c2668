//! JSON text read without building a [`serde_json::Value`]: whether it would read as
//! one, and one member of its top-level object. A reader that keeps an event as text
//! ([`crate::audit::RawEvent`]) uses these to accept exactly the text a `Value` would
//! be read from, and to find the event's `type`, at the cost of a scan instead of a
//! tree of allocations. And the one check every reader of text nobody has
//! authenticated makes before parsing it: [`refuse_raw_value_token`], or
//! [`from_untrusted`] for both.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The member name serde_json (with its `raw_value` feature, which axum turns on) gives
/// a meaning of its own: an object whose first member it names is read as a `Value`
/// by parsing that member's string, not as the object written.
pub(crate) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// How deep an event's arrays and objects may nest, its own object counted, for its
/// commit to read as a [`Value`]: serde_json reads at most 127 levels, and a commit's
/// events stand at the third (inside the commit's object and its `events` array).
pub(crate) const EVENT_DEPTH: usize = 125;

/// Whether `text` reads as a [`Value`], nesting at most `depth` deep: the checks
/// serde_json makes building one (escapes, surrogates, numbers in range, an object led
/// by [`RAW_VALUE_TOKEN`] holding a string of JSON and nothing else), none skipped.
/// serde_json's own skipping ([`IgnoredAny`], and the scan behind a `RawValue`) checks
/// less: a lone `\ud800`, `1e400`, any nesting or `{"<token>": "x"}` pass it.
pub(crate) fn reads_as_value(text: &str, depth: usize) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    AnyValue {
        left: depth,
        token_refused: false,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// Refuses JSON text holding a member named [`RAW_VALUE_TOKEN`] (however the name is
/// escaped), found within serde_json's own nesting limit and without reading any
/// string as JSON. A [`Value`] read of an object led by that member (as written; or
/// as sorted, when a `Value` is read again from a `Value`) parses its string as JSON
/// afresh, with a nesting limit of its own, so such objects nested in each other's
/// strings make it recurse past that limit, as deep as the text's size allows (16
/// levels of 120, 1,936 in all, take 266 KB; a 1 MiB message holds 18). A release
/// build's 2 MiB stacks held the deepest keyledger's size limits let in (measured),
/// but a smaller stack, a debug build or a larger limit need not. keyledger writes no
/// such member (a tag key may not be the token), so text nobody has authenticated is
/// checked with this before anything parses it: the recursion is serde_json's own
/// limit again.
///
/// Text that is not JSON at all may pass: the parse that follows refuses it.
pub fn refuse_raw_value_token(bytes: &[u8]) -> Result<(), serde_json::Error> {
    // Every spelling of the token holds "RawValue" or a `\u` escape (no other JSON
    // escape makes a letter): text holding neither cannot hold it.
    let finder = |needle: &[u8]| memchr::memmem::find(bytes, needle).is_some();
    if !finder(b"RawValue") && !finder(b"\\u") {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    AnyValue {
        left: usize::MAX,
        token_refused: true,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// `T` from JSON text nobody has authenticated, once [`refuse_raw_value_token`] has
/// passed it.
pub fn from_untrusted<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, serde_json::Error> {
    refuse_raw_value_token(bytes)?;
    serde_json::from_slice(bytes)
}

/// How deep `value`'s arrays and objects nest (a scalar: 0).
pub(crate) fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The string value of the member `name` of the object `text`, the last one if it
/// is written twice (as a [`Value`] keeps it); `None` if `text` is not such an object,
/// or the member is absent or not a string.
pub(crate) fn member_str(text: &str, name: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let found = de.deserialize_map(MemberStr { name }).ok()?;
    de.end().ok()?;
    found
}

/// Visits any JSON value, checking it as [`Value`]'s visitor would, keeping nothing;
/// arrays and objects may nest `left` deep. An object led by [`RAW_VALUE_TOKEN`] is
/// refused (`token_refused`) or checked as a `Value` reads it.
#[derive(Clone, Copy)]
struct AnyValue {
    left: usize,
    token_refused: bool,
}

impl AnyValue {
    /// The visitor of a container's members, or an error if none may nest here.
    fn inside<E: de::Error>(self) -> Result<Self, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Self { left, ..self }),
            None => Err(E::custom("arrays and objects nest too deep")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for AnyValue {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValue {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inside = self.inside()?;
        while seq.next_element_seed(inside)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inside = self.inside()?;
        let refused = || {
            de::Error::custom(format!(
                "a member is named {RAW_VALUE_TOKEN:?}, a name serde_json reserves"
            ))
        };
        match map.next_key_seed(KeyIs(RAW_VALUE_TOKEN))? {
            None => return Ok(()),
            Some(true) if self.token_refused => return Err(refused()),
            // As a Value reads it: the member's string, parsed as JSON afresh, is the
            // value; a member after it is an error.
            Some(true) => {
                map.next_value_seed(JsonInString)?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "an object led by {RAW_VALUE_TOKEN:?} holds only that member"
                    )));
                }
                return Ok(());
            }
            Some(false) => map.next_value_seed(inside)?,
        }
        while let Some(token) = map.next_key_seed(KeyIs(RAW_VALUE_TOKEN))? {
            if token && self.token_refused {
                return Err(refused());
            }
            map.next_value_seed(inside)?;
        }
        Ok(())
    }
}

/// A string holding JSON that reads as a [`Value`], as the member led by
/// [`RAW_VALUE_TOKEN`] must be (parsed afresh, with serde_json's whole depth).
struct JsonInString;

impl<'de> DeserializeSeed<'de> for JsonInString {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for JsonInString {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string of JSON")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        reads_as_value(v, 127).map_err(E::custom)
    }
}

/// Finds the string value of the member `name` of an object.
struct MemberStr<'n> {
    name: &'n str,
}

impl<'de> Visitor<'de> for MemberStr<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut found = None;
        while let Some(is_name) = map.next_key_seed(KeyIs(self.name))? {
            if is_name {
                found = map.next_value::<Value>()?.as_str().map(str::to_owned);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Reads a member's name, telling whether it is the one sought (escapes decoded).
struct KeyIs<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// `levels` objects led by [`RAW_VALUE_TOKEN`], each in the last one's string, each
/// inside `brackets` arrays.
#[cfg(test)]
pub(crate) fn nested_raw_value_tokens(levels: usize, brackets: usize) -> String {
    let mut nested = "1".to_owned();
    for _ in 0..levels {
        let inner = Value::from(nested).to_string();
        let (open, close) = ("[".repeat(brackets), "]".repeat(brackets));
        nested = format!("{open}{{\"{RAW_VALUE_TOKEN}\":{inner}}}{close}");
    }
    nested
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text that serde_json's skipping accepts but a `Value` refuses, and the reverse
    /// never: each is judged as `Value` judges it.
    #[test]
    fn text_reads_as_value_exactly_when_a_value_reads_from_it() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for text in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":-1e400}"#,
            &deep,
            r#"{"a":"\ud83d\ude00","b":[1,-2,3.5,true,null,{}],"a":2}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":1} x"#,
            r#"{"a":"x\q"}"#,
            "{\"a\":\"\u{1}\"}",
            r#""just a string""#,
        ] {
            let value = serde_json::from_str::<Value>(text).map(drop);
            assert_eq!(
                reads_as_value(text, 200).is_ok(),
                value.is_ok(),
                "{text}: {value:?}"
            );
            // What serde_json's skipping lets through.
            let skipped = serde_json::from_str::<IgnoredAny>(text).is_ok();
            assert!(skipped || value.is_err(), "{text}");
        }
    }

    /// An object led by the token reads, as a `Value`, as the JSON in its string:
    /// checked as a `Value` reads it, whether the string holds JSON, the member is no
    /// string, or another member follows; led by another member, it is an ordinary one.
    #[test]
    fn an_object_led_by_the_raw_value_token_reads_as_a_value_reads_it() {
        let token = RAW_VALUE_TOKEN;
        assert_eq!(
            serde_json::from_str::<Value>(&format!(r#"{{"a":{{"{token}":"{{}}"}}}}"#)).unwrap(),
            serde_json::json!({"a": {}}),
            "serde_json still reads the token as its own"
        );
        for text in [
            format!(r#"{{"a":{{"{token}":"{{}}"}}}}"#),
            format!(r#"{{"{token}":"[1,\"\\ud800\"]"}}"#),
            format!(r#"{{"{token}":"x"}}"#),
            format!(r#"{{"{token}":{{}}}}"#),
            format!(r#"{{"{token}":"1","b":2}}"#),
            format!(r#"{{"{token}":"1e400"}}"#),
            format!(r#"{{"a":{{" ":1,"{token}":"x"}}}}"#),
        ] {
            let value = serde_json::from_str::<Value>(&text).map(drop);
            assert_eq!(
                reads_as_value(&text, 10).is_ok(),
                value.is_ok(),
                "{text}: {value:?}"
            );
        }
    }

    proptest! {
        /// Any JSON a `Value` writes reads back as one, and its members read back.
        #[test]
        fn written_values_read(key in "[a-z\u{e9}\"\\\\]{0,4}", s in any::<String>(), n in any::<i64>()) {
            let v = serde_json::json!({"type": s, format!("k{key}"): [n, {"type": 1}], "z": null});
            let text = v.to_string();
            prop_assert!(reads_as_value(&text, 3).is_ok());
            prop_assert!(reads_as_value(&text, 2).is_err());
            prop_assert_eq!(depth(&v), 3);
            let want = v.get("type").and_then(Value::as_str).map(str::to_owned);
            prop_assert_eq!(member_str(&text, "type"), want);
        }
    }

    /// A member named the token is refused wherever it stands, first or not (a `Value`
    /// read again from a `Value` sorts it first), its name escaped or not, and nothing
    /// in a string is parsed: the token in a string is ordinary.
    #[test]
    fn a_member_named_the_raw_value_token_is_refused_before_any_parse() {
        let token = RAW_VALUE_TOKEN;
        let nested = nested_raw_value_tokens(16, 120);
        assert!(nested.len() < 300_000, "{}", nested.len());
        let escaped_dollar = format!(r#"{{"\u0024{}":"1"}}"#, &token[1..]);
        let escaped_letter = format!(r#"[{{"{}\u0065":"1"}}]"#, &token[..token.len() - 1]);
        for refused in [
            nested.as_str(),
            &escaped_dollar,
            &escaped_letter,
            &format!(r#"{{"a":{{"b":[{{"{token}":1}}]}}}}"#),
            &format!(r#"{{"a":1,"{token}":"x"}}"#),
            &format!(r##"{{"#":1,"{token}":"x"}}"##),
        ] {
            let err = refuse_raw_value_token(refused.as_bytes()).unwrap_err();
            assert!(
                err.to_string().contains("serde_json reserves"),
                "{refused}: {err}"
            );
        }
        for ordinary in [
            format!(r#"{{"a":"{{\"{token}\":1}}"}}"#),
            format!(r#"{{"a":1,"{token}2":"x"}}"#),
            r#"{"a":"\u00e9"}"#.to_owned(),
            r#"{"a":[1,{"b":null}]}"#.to_owned(),
        ] {
            assert!(
                refuse_raw_value_token(ordinary.as_bytes()).is_ok(),
                "{ordinary}"
            );
            assert!(
                serde_json::from_str::<Value>(&ordinary).is_ok(),
                "{ordinary}"
            );
        }
    }

    /// The member is found as a `Value` lookup finds it: the last of two, through
    /// escapes in its name, only in an object, only if a string.
    #[test]
    fn a_member_is_found_as_a_value_lookup_finds_it() {
        for (text, want) in [
            (r#"{"type":"a","v":1}"#, Some("a")),
            (r#"{"type":"a","type":"b"}"#, Some("b")),
            (r#"{"typ\u0065":"a"}"#, Some("a")),
            (r#"{"type":1}"#, None),
            (r#"{"x":{"type":"a"}}"#, None),
            (r#"["type","a"]"#, None),
            (r#"["a"]"#, None),
            (r#"{"type":"a"} trailing"#, None),
            (r#"{"type":"a""#, None),
        ] {
            assert_eq!(member_str(text, "type").as_deref(), want, "{text}");
        }
    }
}
