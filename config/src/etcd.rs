//! The etcd target: `etcd://[user:password@]host:port[,host:port…][/prefix]`, or `etcds://…` for
//! TLS with `?ca=PATH[&cert=PATH&key=PATH]` (the CA that signed the members' certificates, and a
//! client certificate if the members ask for one), from the declaration's `coordination:` or
//! `OCHOPOD_ETCD`. Parsed once, at load, like [`crate::ZkTarget`]:
//! the credentials live in a [`Secret`] (redacted `Debug`, skipped by `Serialize`) and are never
//! registered, shown or passed to children.

use std::fmt;
use std::path::PathBuf;
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
    /// `etcds://`: TLS to every member.
    pub tls: Option<EtcdTls>,
}

/// Files for TLS to etcd (PEM); relative paths are as given (the pod's working directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdTls {
    pub ca: PathBuf,
    /// A client certificate and its key, both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The default key prefix, mirroring ZooKeeper's `/ochopod`.
pub const DEFAULT_PREFIX: &str = "/ochopod";

const EXPECTED: &str =
    "expected `etcd://[user:password@]host:port[,host:port…][/prefix]` or `etcds://…[/prefix]?ca=PATH[&cert=PATH&key=PATH]`";

impl EtcdTarget {
    pub fn parse(text: &str) -> Result<EtcdTarget, String> {
        let t = text.trim();
        let (secure, rest) = match t.split_once("://") {
            Some(("etcd", rest)) => (false, rest),
            Some(("etcds", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!("{EXPECTED}; the scheme `{scheme}://` is neither `etcd://` nor `etcds://`"))
            }
            None => return Err(format!("{EXPECTED}, got `{}`", t.escape_default())),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let tls = match (secure, query) {
            (true, Some(query)) => Some(parse_tls(query)?),
            (true, None) => return Err(format!("{EXPECTED}; `etcds://` needs `?ca=PATH`")),
            (false, Some(_)) => return Err(format!("{EXPECTED}; options after `?` are for `etcds://` only")),
            (false, None) => None,
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
        Ok(EtcdTarget { endpoints, prefix, credentials, tls })
    }

    /// `user` and `password` for etcd's authentication.
    pub fn user(&self) -> Option<(&str, &str)> {
        self.credentials.as_ref().and_then(|s| s.0.split_once(':'))
    }

    /// Hosts, prefix and TLS files, never the credentials: what messages and `/info` show.
    pub fn redacted(&self) -> String {
        let hosts = self.endpoints.join(",");
        match &self.tls {
            None => format!("etcd://{hosts}{}", self.prefix),
            Some(tls) => {
                let mut query = format!("ca={}", tls.ca.display());
                if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                    query.push_str(&format!("&cert={}&key={}", cert.display(), key.display()));
                }
                format!("etcds://{hosts}{}?{query}", self.prefix)
            }
        }
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

fn parse_tls(query: &str) -> Result<EtcdTls, String> {
    let (mut ca, mut cert, mut key) = (None, None, None);
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if value.is_empty() {
            return Err(format!("{EXPECTED}; `{}` has no value", name.escape_default()));
        }
        let slot = match name {
            "ca" => &mut ca,
            "cert" => &mut cert,
            "key" => &mut key,
            other => return Err(format!("{EXPECTED}; unknown option `{}`", other.escape_default())),
        };
        *slot = Some(PathBuf::from(value));
    }
    let ca = ca.ok_or_else(|| format!("{EXPECTED}; `etcds://` needs `?ca=PATH`"))?;
    if cert.is_some() != key.is_some() {
        return Err(format!("{EXPECTED}; `cert` and `key` go together"));
    }
    Ok(EtcdTls { ca, cert, key })
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
    fn etcds_urls_name_their_tls_files() {
        let t = EtcdTarget::parse("etcds://u:pw@h:2379/p?ca=/etc/ca.pem&cert=c.pem&key=k.pem").unwrap();
        let tls = t.tls.clone().unwrap();
        assert_eq!(tls.ca, PathBuf::from("/etc/ca.pem"));
        assert_eq!((tls.cert.unwrap(), tls.key.unwrap()), (PathBuf::from("c.pem"), PathBuf::from("k.pem")));
        assert_eq!(t.prefix, "/p");
        assert_eq!(t.to_string(), "etcds://h:2379/p?ca=/etc/ca.pem&cert=c.pem&key=k.pem");
        assert_eq!(EtcdTarget::parse(&t.to_string()).unwrap().tls, t.tls, "what is shown parses back");
        assert_eq!(EtcdTarget::parse("etcds://h:1?ca=x").unwrap().prefix, "/ochopod");
        for bad in
            ["etcds://h:1", "etcds://h:1?cert=c&key=k", "etcds://h:1?ca=x&cert=c", "etcd://h:1?ca=x", "etcds://h:1?ca="]
        {
            assert!(EtcdTarget::parse(bad).is_err(), "{bad}");
        }
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
