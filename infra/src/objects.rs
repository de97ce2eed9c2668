//! Request structs are read from JSON objects only. serde's derive also reads a
//! struct from an array of its fields in order, so `{"read": [null, null]}` would
//! stand for a default ACL and a top-level `[]` for an empty request: a client's
//! mistake taken as an instruction. Top-level bodies are checked by
//! [`is_object`]; nested structs use the `deserialize_with` helpers here.

use serde::de::{DeserializeOwned, Error, Unexpected};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Whether a JSON document is an object (by its first significant byte; the parse
/// that follows checks the rest).
pub fn is_object(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

fn from_object<T: DeserializeOwned, E: Error>(value: Value) -> Result<T, E> {
    if !value.is_object() {
        return Err(E::invalid_type(unexpected(&value), &"a JSON object"));
    }
    T::deserialize(value).map_err(E::custom)
}

/// A struct, from an object.
pub fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    from_object(Value::deserialize(d)?)
}

/// An optional struct: `null` or absent is `None`, else an object.
pub(crate) fn optional_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        value => from_object(value).map(Some),
    }
}

/// A list of structs, each from an object.
pub fn objects<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Value>::deserialize(d)?
        .into_iter()
        .map(from_object)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        a: Option<u8>,
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        #[serde(default, deserialize_with = "object")]
        one: Option<Inner>,
        #[serde(default, deserialize_with = "optional_object")]
        maybe: Option<Inner>,
        #[serde(default, deserialize_with = "objects")]
        many: Vec<Inner>,
    }

    #[test]
    fn structs_come_from_objects_only() {
        let ok: Outer =
            serde_json::from_str(r#"{"one": {"a": 1}, "maybe": null, "many": [{}]}"#).unwrap();
        assert_eq!(ok.one, Some(Inner { a: Some(1) }));
        assert_eq!(ok.maybe, None);
        assert_eq!(ok.many, vec![Inner { a: None }]);
        for bad in [
            r#"{"one": [null]}"#,
            r#"{"maybe": [1]}"#,
            r#"{"many": [[1]]}"#,
            r#"{"one": 3}"#,
        ] {
            let e = serde_json::from_str::<Outer>(bad).unwrap_err().to_string();
            assert!(e.contains("expected a JSON object"), "{bad}: {e}");
        }
        assert!(is_object(b" \n{}"));
        assert!(!is_object(b"[]"));
        assert!(!is_object(b""));
    }
}
