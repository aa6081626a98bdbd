//! A pod's registration ("breadcrumbs"): the JSON stored in its ephemeral-sequential znode.
//!
//! Field names and JSON types follow the original exactly (every value a string except `ports`,
//! a `{"<container port>": <host port>}` map, and `seq`, an int) so that Python tooling reads our
//! pods and our leader drives Python pods. Unknown fields written by other implementations are
//! kept in `extra` so that a snapshot built by a Rust leader round-trips them unchanged.
//!
//! Unlike the original, nothing secret and no arbitrary environment goes in here: the set of
//! fields we write is closed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub public: String,
    #[serde(default)]
    pub node: String,
    /// Container port → host port (identity when the platform does not remap).
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// The control port *inside* the container, as a string (original spelling).
    #[serde(default)]
    pub port: String,
    /// The ZooKeeper sequence of the pod's first registration, kept for its whole life.
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub application: String,
    #[serde(default)]
    pub task: String,
    /// Binding name (the original's field name; its docs said `binding`).
    #[serde(default)]
    pub fwk: String,
    #[serde(default)]
    pub zk: String,
    #[serde(default)]
    pub debug: String,
    #[serde(default)]
    pub start: String,
    #[serde(default)]
    pub local: String,
    /// Fields written by other implementations; preserved, never produced by us.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Registration {
    /// The host port that a container port is published on, if the pod exposes it.
    pub fn host_port(&self, container_port: u16) -> Option<u16> {
        self.ports.get(&container_port.to_string()).copied()
    }

    /// Where this pod's control API answers. Each pod's own `port` field is used, so pods need
    /// not share one control port (the original assumed they did); `fallback_port` covers pods
    /// that registered without one.
    pub fn control_address(&self, fallback_port: u16) -> Option<String> {
        let port = self.port.parse::<u16>().unwrap_or(fallback_port);
        self.host_port(port).map(|p| format!("{}:{p}", self.ip))
    }

    /// `"true"` / `"false"`, the original's boolean spelling.
    pub fn flag(value: bool) -> String {
        if value { "true" } else { "false" }.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_original_registration_and_keeps_unknown_fields() {
        let js = r#"{"application":"my-service.database.342","task":"t","node":"i-d5d1b53a","seq":19,
            "zk":"10.181.124.223:2181","fwk":"marathon (ec2)","namespace":"my-service","port":"8080",
            "cluster":"database","ip":"10.109.129.218","debug":"true","local":"false","start":"true",
            "public":"54.145.22.4","ports":{"8080":1024},"extra_hint":"x"}"#;
        let r: Registration = serde_json::from_str(js).unwrap();
        assert_eq!(r.seq, 19);
        assert_eq!(r.control_address(9999).as_deref(), Some("10.109.129.218:1024"));
        assert_eq!(r.extra.get("extra_hint"), Some(&Value::String("x".into())));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["ports"]["8080"], 1024);
        assert_eq!(back["seq"], 19);
        assert_eq!(back["port"], "8080");
        assert_eq!(back["extra_hint"], "x");
    }

    #[test]
    fn a_pod_without_the_control_port_has_no_address() {
        let r = Registration { ip: "1.2.3.4".into(), port: "8080".into(), ..Default::default() };
        assert_eq!(r.control_address(8080), None);
    }
}
