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

/// Cuts the top-level members named in `skip` out of `bytes`, a JSON object written
/// without whitespace (as canonical JSON is), working on the bytes alone: when `bytes`
/// are canonical, what it hands `keep` is what [`object_to_vec_without`] gives for the
/// object they encode, without parsing it into a [`Value`] and writing it again. It
/// hands the bytes over in pieces, in order, so that a caller hashing them copies
/// nothing. `None` when `bytes` do not have that shape (whitespace between members,
/// not an object); `keep` may have had some pieces by then, and the caller drops them.
///
/// The result is only as canonical as `bytes` were, and this does not check that: a
/// caller must know it by other means. Reading a commit, it is the hash keyledger's
/// writer computed over canonical bytes, and authenticated (`Commit::open`).
pub fn cut_members(bytes: &[u8], skip: &[&str], mut keep: impl FnMut(&[u8])) -> Option<()> {
    let mut rest = bytes.strip_prefix(b"{")?.strip_suffix(b"}")?;
    keep(b"{");
    let mut kept = 0;
    while !rest.is_empty() {
        let (member, name) = member_at(rest)?;
        if !skip.iter().any(|s| s.as_bytes() == name) {
            if kept > 0 {
                keep(b",");
            }
            keep(member);
            kept += 1;
        }
        rest = match &rest[member.len()..] {
            [] => &[],
            [b',', more @ ..] if !more.is_empty() => more,
            _ => return None,
        };
    }
    keep(b"}");
    Some(())
}

/// The canonical object `bytes` with `members` (names and their values, each value
/// already canonical JSON) added at their places in member order: what [`to_vec`]
/// gives for the object with them, without encoding the rest again. Sealing a commit
/// encodes it without `hash` and `mac` to hash it; this adds the two to the same bytes.
/// `None` (the caller then encodes the whole object) when `bytes` are not an object
/// without whitespace, a name of it is written with an escape, it already holds a
/// name of `members`, or `members` name one twice.
pub fn with_members(bytes: &[u8], members: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let mut adding: Vec<&(&str, &[u8])> = members.iter().collect();
    adding.sort_by(|(a, _), (b, _)| utf16_order(a, b));
    if adding.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return None;
    }
    let extra: usize = members.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
    let mut out = Vec::with_capacity(bytes.len() + extra);
    let mut rest = bytes.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let mut adding = adding.into_iter().peekable();
    out.push(b'{');
    let put = |out: &mut Vec<u8>, member: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(member);
    };
    let encoded = |(name, value): &(&str, &[u8])| {
        let mut member = Vec::with_capacity(name.len() + value.len() + 3);
        // A string serialises into a Vec without fail.
        serde_json::to_writer(&mut member, name).unwrap_or_default();
        member.push(b':');
        member.extend_from_slice(value);
        member
    };
    while !rest.is_empty() {
        let (member, written) = member_at(rest)?;
        let name = std::str::from_utf8(written)
            .ok()
            .filter(|n| !n.contains('\\'))?;
        while let Some(next) = adding.next_if(|(new, _)| utf16_order(new, name).is_lt()) {
            put(&mut out, &encoded(next));
        }
        if adding.peek().is_some_and(|(new, _)| *new == name) {
            return None;
        }
        put(&mut out, member);
        rest = &rest[member.len()..];
        if !rest.is_empty() {
            rest = rest.strip_prefix(b",")?;
            if rest.is_empty() {
                return None;
            }
        }
    }
    for next in adding {
        put(&mut out, &encoded(next));
    }
    out.push(b'}');
    Some(out)
}

/// The member `"name":value` at the start of `bytes` (up to the first comma outside
/// any string, array or object), and its name as written (escapes not decoded: a name
/// written with escapes matches no name in `skip`, and the hash check then fails).
fn member_at(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name, after) = string_at(bytes)?;
    if bytes.get(after) != Some(&b':') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = after + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = string_at(&bytes[i..])?.1 + i;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => break,
            _ => {}
        }
        i += 1;
    }
    (depth == 0).then(|| (&bytes[..i], name))
}

/// The contents of the string that opens `bytes`, and the index just past its closing
/// quote. Strings are most of a commit's bytes (a sealed payload is one), so it jumps
/// from quote or backslash to the next with `memchr`.
fn string_at(bytes: &[u8]) -> Option<(&[u8], usize)> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', bytes.get(i..)?)?;
        if bytes[i] == b'"' {
            return Some((&bytes[1..i], i + 1));
        }
        // A backslash: the byte after it is escaped.
        i += 2;
    }
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

    /// What [`cut_members`] hands on, gathered.
    fn cut(bytes: &[u8], skip: &[&str]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        cut_members(bytes, skip, |piece| out.extend_from_slice(piece))?;
        Some(out)
    }

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

    /// Cutting members out of canonical bytes gives what encoding the object without
    /// them gives, whatever the strings hold (quotes, escapes, commas, braces).
    #[test]
    fn cutting_members_from_canonical_bytes_matches_encoding_without_them() {
        use proptest::prelude::*;
        let value = prop::collection::btree_map(
            prop_oneof![
                Just("hash".to_owned()),
                Just("mac".to_owned()),
                any::<String>()
            ],
            prop_oneof![
                any::<String>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                prop::collection::vec(any::<String>(), 0..3)
                    .prop_map(|v| json!({"hash": v, "x": [v, {"mac": null}]})),
            ],
            0..6,
        );
        proptest!(|(map in value)| {
            let map: Map<String, Value> = map.into_iter().collect();
            let bytes = to_vec(&Value::Object(map.clone()));
            prop_assert_eq!(
                cut(&bytes, &["hash", "mac"]),
                Some(object_to_vec_without(&map, &["hash", "mac"]))
            );
        });
    }

    /// Adding members to canonical bytes gives what encoding the object with them
    /// gives, wherever their names fall among the others (names around and between
    /// `hash` and `mac`, escapes, control characters, non-ASCII); an object with a
    /// name written with an escape is left to a full encoding.
    #[test]
    fn adding_members_to_canonical_bytes_matches_encoding_with_them() {
        use proptest::prelude::*;
        let text = || {
            prop_oneof![
                any::<String>(),
                "[\\x00-\\x7f]{0,6}",
                "(ha|ma)[a-z0-9]{0,3}"
            ]
        };
        let value = prop::collection::btree_map(
            text().prop_filter("added below", |k| k != "hash" && k != "mac"),
            prop_oneof![
                text().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                prop::collection::vec(text(), 0..3)
                    .prop_map(|v| json!({"hash": v, "x": [v, {"mac": null}]})),
            ],
            0..6,
        );
        proptest!(|(map in value, hash in text(), mac in text())| {
            let mut map: Map<String, Value> = map.into_iter().collect();
            let bytes = to_vec(&Value::Object(map.clone()));
            let (h, m) = (to_vec(&Value::from(hash.clone())), to_vec(&Value::from(mac.clone())));
            let added = with_members(&bytes, &[("mac", &m), ("hash", &h)]);
            let escaped = map.keys().any(|k| to_vec(&Value::from(k.as_str())).contains(&b'\\'));
            map.insert("hash".into(), hash.into());
            map.insert("mac".into(), mac.into());
            if escaped {
                prop_assert_eq!(added, None);
            } else {
                prop_assert_eq!(added, Some(to_vec(&Value::Object(map))));
            }
        });
    }

    #[test]
    fn adding_a_member_already_there_or_to_no_object_gives_nothing() {
        assert_eq!(
            with_members(br#"{"a":1,"mac":"m"}"#, &[("mac", b"2")]),
            None
        );
        assert_eq!(
            with_members(br#"{"a":1}"#, &[("b", b"2"), ("b", b"3")]),
            None
        );
        assert_eq!(with_members(br#"[1]"#, &[("mac", b"2")]), None);
        assert_eq!(with_members(br#"{"a":1,}"#, &[("mac", b"2")]), None);
        assert_eq!(
            with_members(br#"{}"#, &[("b", b"2"), ("a", b"1")]).as_deref(),
            Some(&br#"{"a":1,"b":2}"#[..])
        );
    }

    #[test]
    fn cutting_members_needs_an_object_without_whitespace() {
        for bytes in [
            &br#"{"a":1, "hash":"h"}"#[..],
            br#" {"a":1}"#,
            br#"[1,2]"#,
            br#"{"a":1,}"#,
            br#"{"a":"unterminated}"#,
            br#"{"a":{"b":1}}}"#,
            br#"{"a"}"#,
        ] {
            assert_eq!(cut(bytes, &["hash"]), None, "{bytes:?}");
        }
        assert_eq!(
            cut(br#"{"a":"x\"y,\\","hash":"h","z":[{"hash":1}]}"#, &["hash"]).unwrap(),
            br#"{"a":"x\"y,\\","z":[{"hash":1}]}"#
        );
        assert_eq!(cut(b"{}", &["hash"]).unwrap(), b"{}");
        // An escaped quote or backslash at the end of a string, or a string cut short
        // after a backslash.
        assert_eq!(
            cut(br#"{"a":"\\","b":"\""}"#, &["b"]).unwrap(),
            br#"{"a":"\\"}"#
        );
        assert_eq!(cut(br#"{"a":"x\"}"#, &[]), None);
        assert_eq!(cut(br#"{"a":"x\}"#, &[]), None);
    }
}
