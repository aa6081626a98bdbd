//! The leader's change detector: an MD5 over the local registrations and every dependency
//! snapshot, rendered as colon-separated hex like the original (`"3f:a1:…"`, 47 chars).
//!
//! Unlike the original (which hashed `json.dumps` of a Python 2 dict, so equal content could hash
//! differently after a failover), the JSON is serialised canonically: object keys sorted at every
//! depth, no whitespace. A new leader therefore computes the same hash for the same state and
//! does not run a spurious round.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde_json::Value;

use crate::view::Pods;

/// Canonical JSON: sorted keys at every depth, compact separators.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
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
    colon_hex_md5(canonical_json(&Value::Object(all)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registration;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = json!({"b": {"y": 1, "x": [ {"d": 1, "c": 2} ]}, "a": "s"});
        assert_eq!(canonical_json(&v), r#"{"a":"s","b":{"x":[{"c":2,"d":1}],"y":1}}"#);
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
