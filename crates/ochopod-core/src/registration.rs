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
    /// that registered without one. `None` for a registration that [`validate`](Self::validate)
    /// refuses: an address built from an unchecked `ip` could send the bearer token anywhere.
    pub fn control_address(&self, fallback_port: u16) -> Option<String> {
        self.validate(fallback_port).ok()
    }

    /// Checks what other pods act on before anything uses it: `ip` (and `public` when set) an IP
    /// address or a DNS name, every port 1–65535, and a host port for the control port. Returns
    /// the control address (`ip:port`, `[v6]:port`). Anyone who can write to ZooKeeper can
    /// register anything: an `ip` like `10.0.0.1:80/steal?` must never reach a URL or a file.
    pub fn validate(&self, fallback_port: u16) -> Result<String, InvalidRegistration> {
        self.validate_addresses()?;
        let host = host(&self.ip).ok_or_else(|| InvalidRegistration::Address("ip", printable(&self.ip)))?;
        let port = match self.port.as_str() {
            "" => fallback_port,
            p => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| InvalidRegistration::ControlPort(printable(p)))?,
        };
        let hostport = self.host_port(port).ok_or(InvalidRegistration::NoControlPort(port))?;
        Ok(format!("{host}:{hostport}"))
    }

    /// What a dependent renders into its files: `ip` (and `public` when set) an IP address or a
    /// DNS name, every port 1–65535. [`validate`](Self::validate) adds the control port.
    pub fn validate_addresses(&self) -> Result<(), InvalidRegistration> {
        if host_ok(&self.ip).is_none() {
            return Err(InvalidRegistration::Address("ip", printable(&self.ip)));
        }
        if !self.public.is_empty() && host_ok(&self.public).is_none() {
            return Err(InvalidRegistration::Address("public", printable(&self.public)));
        }
        for (container, hostport) in &self.ports {
            if container.parse::<u16>().map_or(true, |p| p == 0) || *hostport == 0 {
                return Err(InvalidRegistration::Port(printable(container), *hostport));
            }
        }
        Ok(())
    }

    /// `"true"` / `"false"`, the original's boolean spelling.
    pub fn flag(value: bool) -> String {
        if value { "true" } else { "false" }.to_string()
    }
}

/// Why a registration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidRegistration {
    /// The field and its (escaped) value: neither an IP address nor a DNS name.
    Address(&'static str, String),
    /// A `ports` entry whose container or host port is not 1–65535.
    Port(String, u16),
    /// The `port` field is not a port number.
    ControlPort(String),
    /// `ports` has no host port for the control port.
    NoControlPort(u16),
}

impl std::fmt::Display for InvalidRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidRegistration::Address(field, v) => {
                write!(f, "`{field}` {v:?} is neither an IP address nor a DNS name")
            }
            InvalidRegistration::Port(c, h) => write!(f, "`ports` maps {c:?} to {h}: ports are 1-65535"),
            InvalidRegistration::ControlPort(p) => write!(f, "`port` {p:?} is not a port number (1-65535)"),
            InvalidRegistration::NoControlPort(p) => {
                write!(f, "`ports` has no host port for the control port {p}")
            }
        }
    }
}

impl std::error::Error for InvalidRegistration {}

/// The host part of a URL for `ip`: itself for IPv4 and DNS names, `[…]` for IPv6.
fn host(value: &str) -> Option<String> {
    match host_ok(value)? {
        std::net::IpAddr::V6(_) => Some(format!("[{value}]")),
        std::net::IpAddr::V4(_) => Some(value.to_string()),
    }
}

/// An IP address, or a DNS name (RFC 1123: dot-separated labels of letters, digits and inner
/// hyphens, 1–63 each, 253 in all). Returns the parsed IP, or the unspecified v4 for a name.
fn host_ok(value: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return Some(ip);
    }
    let name = value.strip_suffix('.').unwrap_or(value);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // An all-numeric name would be an IPv4 address that did not parse (`1.2.3.999`).
    let numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    (!name.is_empty() && name.len() <= 253 && !numeric && name.split('.').all(label_ok))
        .then_some(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// A value from somebody else's registration, cut and escaped for a log line.
fn printable(value: &str) -> String {
    value.chars().take(64).flat_map(char::escape_default).collect()
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

    #[test]
    fn registrations_are_validated_before_use() {
        let ok = |ip: &str| Registration {
            ip: ip.into(),
            port: "8080".into(),
            ports: [("8080".into(), 9000)].into(),
            ..Default::default()
        };
        assert_eq!(ok("10.0.0.1").validate(8080), Ok("10.0.0.1:9000".into()));
        assert_eq!(ok("pod-1.zk.svc.cluster.local").validate(8080), Ok("pod-1.zk.svc.cluster.local:9000".into()));
        assert_eq!(ok("fd00::1").validate(8080), Ok("[fd00::1]:9000".into()));
        for bad in ["127.0.0.1:18099/steal?", "", "a b", "1.2.3.999", "evil.com/x", "-x.com", "x..y", "a@b"] {
            assert!(matches!(ok(bad).validate(8080), Err(InvalidRegistration::Address("ip", _))), "{bad:?} accepted");
            assert_eq!(ok(bad).control_address(8080), None);
        }
        let mut r = ok("10.0.0.1");
        r.public = "x/y".into();
        assert!(matches!(r.validate(8080), Err(InvalidRegistration::Address("public", _))));
        let mut r = ok("10.0.0.1");
        r.ports.insert("8080".into(), 0);
        assert_eq!(r.validate(8080), Err(InvalidRegistration::Port("8080".into(), 0)));
        let mut r = ok("10.0.0.1");
        r.ports.insert("0".into(), 5);
        assert!(matches!(r.validate(8080), Err(InvalidRegistration::Port(..))));
        let mut r = ok("10.0.0.1");
        r.port = "http".into();
        assert_eq!(r.validate(8080), Err(InvalidRegistration::ControlPort("http".into())));
        let mut r = ok("10.0.0.1");
        r.port = String::new();
        assert_eq!(r.validate(8080), Ok("10.0.0.1:9000".into()), "no port field: the fallback");
        assert_eq!(r.validate(7000), Err(InvalidRegistration::NoControlPort(7000)));
        let long = "x".repeat(500);
        assert!(ok(&long).validate(8080).unwrap_err().to_string().len() < 200, "values are cut in messages");
    }
}
