//! Canonical JSON, the encoding commit hashes are computed over.
//!
//! It follows RFC 8785 (JCS) for the values keyledger writes: object members sorted by
//! the UTF-16 code units of their names, no insignificant whitespace, strings escaped
//! as `serde_json` escapes them (which matches JCS). keyledger never writes floating
//! point numbers into commits, so JCS's number rules reduce to plain integers.
//!
//! Hashing the canonical form of the *stored* JSON, rather than the bytes of a
//! re-serialised struct, lets an auditor in any language recompute a hash, and keeps
//! hashes valid after old events are upcast on read.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// The canonical encoding of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    out
}

/// The canonical encoding of the object `map` without its members named in `skip`
/// (a commit's hash covers the commit without its `hash` and `mac`): the same bytes as
/// [`to_vec`] of a copy with those members removed, without making the copy.
pub fn object_to_vec_without(map: &Map<String, Value>, skip: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_object(map, skip, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, &[], out),
        scalar => write_scalar(scalar, out),
    }
}

fn write_object(map: &Map<String, Value>, skip: &[&str], out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(key, _)| !skip.contains(&key.as_str()))
        .collect();
    entries.sort_by(|(a, _), (b, _)| utf16_order(a, b));
    out.push(b'{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A string serialises into a Vec without fail.
        serde_json::to_writer(&mut *out, key).unwrap_or_default();
        out.push(b':');
        write(item, out);
    }
    out.push(b'}');
}

/// JCS orders member names by UTF-16 code units. For ASCII names (every name
/// keyledger writes) that is byte order, which is much cheaper to compare.
fn utf16_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serialising a scalar Value into a Vec cannot fail: there is no I/O and no map
    // with non-string keys.
    serde_json::to_writer(&mut *out, value).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_sorted_and_whitespace_dropped() {
        let v = json!({"b": [1, {"z": null, "a": true}], "a": "x\ny", "é": 1, "B": 2});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"B":2,"a":"x\ny","b":[1,{"a":true,"z":null}],"é":1}"#
        );
    }

    #[test]
    fn key_order_in_the_input_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"q":2,"p":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "y": {"p":3, "q":2}, "x": 1 }"#).unwrap();
        assert_eq!(to_vec(&a), to_vec(&b));
    }

    #[test]
    fn sorting_uses_utf16_code_units() {
        // By code point U+FB01 comes first; in UTF-16 U+1F600 (a surrogate pair, 0xD83D…)
        // does, and JCS orders by UTF-16.
        let v = json!({"\u{1F600}": 1, "\u{FB01}": 2});
        let s = String::from_utf8(to_vec(&v)).unwrap();
        assert!(
            s.find('\u{1F600}').unwrap() < s.find('\u{FB01}').unwrap(),
            "{s}"
        );
    }

    #[test]
    fn an_object_without_some_members_encodes_as_a_copy_without_them() {
        let v = json!({
            "hash": "h", "mac": "m", "b": {"hash": "kept when nested", "\u{FB01}": 1, "\u{1F600}": 2},
            "a": [1, {"z": null, "y": "\u{2028}"}], "\u{e9}": true,
        });
        let Value::Object(map) = v else {
            unreachable!()
        };
        let mut copy = map.clone();
        copy.remove("hash");
        copy.remove("mac");
        assert_eq!(
            object_to_vec_without(&map, &["hash", "mac"]),
            to_vec(&Value::Object(copy))
        );
    }
}
