//! The hash must be the one the original's Python leader computes for the same state, so that a
//! leader change between the two implementations starts no round. Checked against a real
//! `python3` doing what the original does: `hashlib.md5(json.dumps(snapshots, sort_keys=True))`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use ochopod_core::hash::{python_json, state_hash};
use ochopod_core::view::Pods;
use ochopod_core::Registration;
use serde_json::{json, Value};

/// Runs `script` with `python3`, `input` on its stdin; its stdout.
fn python(script: &str, input: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed to check hash compatibility with the original: apt-get install python3");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed");
    String::from_utf8(out.stdout).unwrap()
}

fn python_hash(snapshots: &Value) -> String {
    let script = "import sys, json, hashlib\n\
                  s = json.load(sys.stdin)\n\
                  d = hashlib.md5(json.dumps(s, sort_keys=True).encode()).digest()\n\
                  print(':'.join('%02x' % b for b in d))";
    python(script, &snapshots.to_string()).trim().to_string()
}

fn registration(ip: &str, seq: u64, extra: Value) -> Registration {
    let mut r = Registration {
        ip: ip.into(),
        public: "54.1.2.3".into(),
        node: "nödé-1\t\"quoted\"".into(),
        ports: [("8080".to_string(), 31000 + seq as u16), ("2181".to_string(), 2181)].into(),
        port: "8080".into(),
        seq,
        cluster: "zookeeper".into(),
        namespace: "demo".into(),
        application: "app 😀".into(),
        fwk: "marathon (ec2)".into(),
        zk: "10.0.0.1:2181".into(),
        debug: "false".into(),
        start: "true".into(),
        local: "false".into(),
        ..Default::default()
    };
    if let Value::Object(map) = extra {
        r.extra = map.into_iter().collect();
    }
    r
}

#[test]
fn the_hash_is_the_originals() {
    let mut local = Pods::new();
    local.insert("b6c1e2c4-0001".into(), registration("10.0.0.2", 2, json!({})));
    local
        .insert("a1f0-0002".into(), registration("10.0.0.1", 1, json!({"hint": {"z": [1, null, true], "a": "\u{1}"}})));
    let mut deps = BTreeMap::new();
    let mut zk = Pods::new();
    zk.insert("c3".into(), registration("10.0.1.1", 7, json!({})));
    deps.insert("zookeeper".to_string(), zk);
    deps.insert("/other.kafka".to_string(), Pods::new());

    let mut all = serde_json::Map::new();
    all.insert("local".into(), serde_json::to_value(&local).unwrap());
    for (entry, pods) in &deps {
        all.insert(entry.clone(), serde_json::to_value(pods).unwrap());
    }
    let snapshots = Value::Object(all);
    assert_eq!(state_hash(&local, &deps), python_hash(&snapshots));
    assert_eq!(state_hash(&Pods::new(), &BTreeMap::new()), python_hash(&json!({"local": {}})));
}

#[test]
fn python_json_is_byte_for_byte_json_dumps() {
    let value = json!({"k": "é😀\u{7f}\\/\u{8}\u{c}", "n": [1, -2, 0], "e": {}, "l": []});
    let script = "import sys, json\nsys.stdout.write(json.dumps(json.load(sys.stdin), sort_keys=True))";
    assert_eq!(python_json(&value), python(script, &value.to_string()));
}
