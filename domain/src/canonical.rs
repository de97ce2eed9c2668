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

use serde_json::Value;

/// The canonical encoding of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
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
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
        scalar => write_scalar(scalar, out),
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
}
