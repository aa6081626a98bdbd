//! The leader's change detector: an MD5 over the local registrations and every dependency
//! snapshot, rendered as colon-separated hex like the original (`"3f:a1:…"`, 47 chars).
//!
//! The bytes hashed are exactly what the original's Python computes,
//! `json.dumps(snapshots, sort_keys=True)` with the default separators (`", "` and `": "`) and
//! ASCII escaping, so a leader of either implementation stores the hash the other computes: a
//! leader change between them runs no round (which would restart every `strict` pod). Sorted keys
//! also make the hash independent of insertion order, so a new leader computes the same hash for
//! the same state.

use std::collections::BTreeMap;
use std::fmt::Write;

use md5::{Digest, Md5};
use serde_json::Value;

use crate::view::Pods;

/// `json.dumps(value, sort_keys=True)` as Python 3 writes it: keys sorted at every depth (by code
/// point, as Python compares `str`), `", "` and `": "` separators, every character outside
/// printable ASCII escaped as `\uXXXX` (UTF-16 surrogate pairs above the BMP).
pub fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_python(value, &mut out);
    out
}

fn write_python(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(k, out);
                out.push_str(": ");
                write_python(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_str(s, out),
        // Integers, booleans and null print alike in both languages. Floats may not (Python
        // writes `1e+100` where Rust writes `1e100`): no field we or the original register is one.
        other => out.push_str(&other.to_string()),
    }
}

/// Python's `py_encode_basestring_ascii`.
fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// MD5 rendered as colon-separated lowercase hex pairs.
pub fn colon_hex_md5(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The hash of a cluster state: `{"local": pods, "<dependency entry>": pods, …}`.
pub fn state_hash(local: &Pods, dependencies: &BTreeMap<String, Pods>) -> String {
    let mut all = serde_json::Map::new();
    all.insert("local".into(), serde_json::to_value(local).expect("registrations serialise"));
    for (entry, pods) in dependencies {
        all.insert(entry.clone(), serde_json::to_value(pods).expect("registrations serialise"));
    }
    colon_hex_md5(python_json(&Value::Object(all)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registration;
    use serde_json::json;

    #[test]
    fn python_json_sorts_keys_with_python_separators_and_escapes() {
        let v = json!({"b": {"y": 1, "x": [ {"d": null, "c": true} ]}, "a": "s\"\\\n\u{1}é😀\u{7f}", "": []});
        assert_eq!(
            python_json(&v),
            r#"{"": [], "a": "s\"\\\n\u0001\u00e9\ud83d\ude00\u007f", "b": {"x": [{"c": true, "d": null}], "y": 1}}"#
        );
    }

    #[test]
    fn the_hash_has_the_original_shape_and_ignores_insertion_order() {
        let mut one = Pods::new();
        one.insert("k1".into(), Registration { ip: "1".into(), ..Default::default() });
        one.insert("k2".into(), Registration { ip: "2".into(), ..Default::default() });
        let mut two = Pods::new();
        two.insert("k2".into(), Registration { ip: "2".into(), ..Default::default() });
        two.insert("k1".into(), Registration { ip: "1".into(), ..Default::default() });
        let h = state_hash(&one, &BTreeMap::new());
        assert_eq!(h, state_hash(&two, &BTreeMap::new()));
        assert_eq!(h.len(), 47);
        assert_eq!(h.matches(':').count(), 15);
    }

    #[test]
    fn a_dependency_change_changes_the_hash() {
        let local = Pods::new();
        let mut deps = BTreeMap::new();
        let a = state_hash(&local, &deps);
        deps.insert("zookeeper".to_string(), Pods::new());
        assert_ne!(a, state_hash(&local, &deps));
    }

    #[test]
    fn md5_matches_a_known_vector() {
        assert_eq!(colon_hex_md5(b""), "d4:1d:8c:d9:8f:00:b2:04:e9:80:09:98:ec:f8:42:7e");
    }
}
