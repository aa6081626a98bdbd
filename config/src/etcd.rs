//! The etcd target: `etcd://[user:password@]host:port[,host:port…][/prefix]`, from the
//! declaration's `coordination:` or `OCHOPOD_ETCD`. Parsed once, at load, like [`crate::ZkTarget`]:
//! the credentials live in a [`Secret`] (redacted `Debug`, skipped by `Serialize`) and are never
//! registered, shown or passed to children.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::raw::parse_port;
use crate::settings::Secret;

/// Where and as whom an etcd-backed pod coordinates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdTarget {
    /// `host:port` of each member, as given.
    pub endpoints: Vec<String>,
    /// Every key lives under it (`/ochopod` by default), like ZooKeeper's `/ochopod` root.
    pub prefix: String,
    /// `user:password` (etcd's own authentication), if any.
    #[serde(skip)]
    pub credentials: Option<Secret>,
}

/// The default key prefix, mirroring ZooKeeper's `/ochopod`.
pub const DEFAULT_PREFIX: &str = "/ochopod";

const EXPECTED: &str = "expected `etcd://[user:password@]host:port[,host:port…][/prefix]`";

impl EtcdTarget {
    pub fn parse(text: &str) -> Result<EtcdTarget, String> {
        let t = text.trim();
        let rest = match t.split_once("://") {
            Some(("etcd", rest)) => rest,
            Some((scheme, _)) => return Err(format!("{EXPECTED}; the scheme `{scheme}://` is not `etcd://`")),
            None => return Err(format!("{EXPECTED}, got `{}`", t.escape_default())),
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if prefix.contains('@') {
            return Err(format!("{EXPECTED}; `@` after a `/`: credentials come before the hosts"));
        }
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((creds, hosts)) => match creds.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    (Some(Secret(creds.to_owned())), hosts)
                }
                _ => return Err(format!("{EXPECTED}; the credentials before `@` must be `user:password`")),
            },
            None => (None, authority),
        };
        let mut endpoints = Vec::new();
        for server in hosts.split(',') {
            let server = server.trim();
            let (host, port) = server.rsplit_once(':').ok_or_else(|| format!("{EXPECTED}; `{server}` has no port"))?;
            if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
                return Err(format!("{EXPECTED}; `{server}` has no valid host"));
            }
            parse_port(port).map_err(|m| format!("{EXPECTED}; in `{server}`: {m}"))?;
            endpoints.push(server.to_owned());
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX.to_owned() } else { prefix.to_owned() };
        if prefix.contains(|c: char| c.is_control() || c.is_whitespace())
            || prefix.split('/').skip(1).any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!("{EXPECTED}; the prefix `{}` is not a clean path", prefix.escape_default()));
        }
        Ok(EtcdTarget { endpoints, prefix, credentials })
    }

    /// `user` and `password` for etcd's authentication.
    pub fn user(&self) -> Option<(&str, &str)> {
        self.credentials.as_ref().and_then(|s| s.0.split_once(':'))
    }

    /// Hosts and prefix, never the credentials: what messages and `/info` show.
    pub fn redacted(&self) -> String {
        format!("etcd://{}{}", self.endpoints.join(","), self.prefix)
    }

    /// What a registration's `zk` field carries on etcd: the URL without credentials.
    pub fn registered(&self) -> String {
        self.redacted()
    }
}

impl fmt::Display for EtcdTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Which store the pod coordinates through. ZooKeeper (the `zk` settings) unless `coordination:`
/// or `OCHOPOD_ETCD` names an etcd cluster.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Coordination {
    #[default]
    ZooKeeper,
    Etcd(EtcdSettings),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    pub target: EtcdTarget,
    /// The registration's lease TTL: `zk_session_timeout`, so both backends drop a dead pod
    /// after the same time.
    pub lease_ttl: Duration,
}

/// The variable that selects etcd (and wins over the declaration's `coordination:`).
pub const ENV: &str = "OCHOPOD_ETCD";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_endpoints_prefix_and_credentials() {
        let t = EtcdTarget::parse("etcd://bob:s3cret@10.0.0.1:2379,10.0.0.2:2379/prod").unwrap();
        assert_eq!(t.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(t.prefix, "/prod");
        assert_eq!(t.user(), Some(("bob", "s3cret")));
        assert_eq!(t.to_string(), "etcd://10.0.0.1:2379,10.0.0.2:2379/prod");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(EtcdTarget::parse("etcd://h:2379").unwrap().prefix, "/ochopod");
        assert_eq!(EtcdTarget::parse("etcd://h:2379/").unwrap().prefix, "/ochopod");
    }

    #[test]
    fn bad_urls_say_what_is_expected_without_the_password() {
        for bad in [
            "h:2379",
            "zk://h:2181",
            "etcd://",
            "etcd://h",
            "etcd://h:0",
            "etcd://u@h:1",
            "etcd://h:1/a//b",
            "etcd://h:1/x@y",
        ] {
            let e = EtcdTarget::parse(bad).unwrap_err();
            assert!(e.starts_with("expected `etcd://"), "{bad}: {e}");
        }
        let e = EtcdTarget::parse("etcd://bob:s3cret@h").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
