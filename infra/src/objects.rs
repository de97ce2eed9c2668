//! Request structs are read from JSON objects only. serde's derive also reads a
//! struct from an array of its fields in order, so `{"read": [null, null]}` would
//! stand for a default ACL and a top-level `[]` for an empty request: a client's
//! mistake taken as an instruction. Top-level bodies are checked by
//! [`is_object`]; nested structs use the `deserialize_with` helpers here.
//!
//! Those read a nested object as a `Value` first, and a `Value` keeps the last of two
//! members of one name, where the derived struct at the top refuses the second. So
//! they read it through [`Strict`], which refuses a name given twice at any depth: a
//! proxy that takes the first would otherwise see another request than keyledger.

use std::fmt;

use serde::de::{DeserializeOwned, Error, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A JSON value in which no object names a member twice.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(A::Error::custom(format!(
                    "member {name:?} is given twice in one object; give it once"
                )));
            }
            let Strict(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

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
    from_object(Strict::deserialize(d)?.0)
}

/// An optional struct: `null` or absent is `None`, else an object.
pub(crate) fn optional_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Strict::deserialize(d)?.0 {
        Value::Null => Ok(None),
        value => from_object(value).map(Some),
    }
}

/// A list of structs, each from an object.
pub fn objects<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Strict>::deserialize(d)?
        .into_iter()
        .map(|s| from_object(s.0))
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
        // A member named twice, at any depth, is refused, not decided by its order.
        for twice in [
            r#"{"one": {"a": 1, "a": 2}}"#,
            r#"{"maybe": {"a": 1, "a": 1}}"#,
            r#"{"many": [{}, {"a": 1, "a": 2}]}"#,
        ] {
            let e = serde_json::from_str::<Outer>(twice)
                .unwrap_err()
                .to_string();
            assert!(e.contains("member \"a\" is given twice"), "{twice}: {e}");
        }
        assert!(is_object(b" \n{}"));
        assert!(!is_object(b"[]"));
        assert!(!is_object(b""));
    }
}
