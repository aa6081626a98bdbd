//! Where ZooKeeper is: the one parser of connect strings in ochopod. The declaration's `zk:`,
//! `OCHOPOD_ZK`/`ochopod_zk`, the platform bindings (Mesos `zk://` files, Kubernetes services)
//! and the CLI's `--zk` all go through [`ZkTarget::parse`], so a string accepted anywhere is one
//! the session can connect with: a pod never starts with a target it will retry forever.
//!
//! The credentials live in a [`Secret`] from the moment they are parsed. Nothing else in the
//! target is secret, and [`ZkTarget`]'s `Display` (hosts and chroot) is what every message,
//! log line and `ochopod validate` shows; `Debug` prints `Secret(***)` and `Serialize` skips it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::raw::parse_port;
use crate::settings::Secret;

/// A parsed connect string `[zk://][user:password@]host:port[,host:port…][/chroot]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZkTarget {
    /// `host:port[,host:port…]`, as the client takes it: no credentials, no chroot.
    pub hosts: String,
    /// An absolute path without trailing `/` (`/mesos`); `None` for the root. Kept apart from
    /// `hosts` because a chrooted client cannot create its own chroot.
    pub chroot: Option<String>,
    /// `user:password` for the `digest` auth scheme.
    #[serde(skip)]
    pub digest: Option<Secret>,
}

const EXPECTED: &str = "expected `host:port[,host:port…]` or `zk://[user:pass@]host:port[,host:port…][/chroot]`";

impl ZkTarget {
    /// Reads `h:p[,h:p…][/chroot]` or `zk://[user:pass@]h:p[,h:p…][/chroot]`. The error says what
    /// is wrong and quotes only the offending part, never the credentials. Unlike the original,
    /// the chroot is kept: writing at the root of a shared Mesos ensemble was a surprise.
    pub fn parse(text: &str) -> Result<ZkTarget, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("{EXPECTED}, got an empty value"));
        }
        let rest = match t.split_once("://") {
            Some(("zk", rest)) => rest,
            Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
                return Err(format!("{EXPECTED}; the scheme `{scheme}://` is not `zk://`"))
            }
            // Not a scheme: quoting it could quote a password.
            Some(_) => return Err(format!("{EXPECTED}; the text before `://` is not a scheme")),
            None => t,
        };
        // As in a URL, the authority ends at the first `/`: a password cannot contain one.
        let (authority, chroot) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        // An `@` past the first `/` is a password with a `/` in it far more often than a chroot
        // with an `@`; either way, every part quoted below could hold a piece of the password.
        if chroot.is_some_and(|c| c.contains('@')) {
            return Err(format!(
                "{EXPECTED}; `@` after a `/`: credentials come before the hosts and cannot contain `/`"
            ));
        }
        let (digest, hosts) = match authority.rsplit_once('@') {
            Some((creds, hosts)) => match creds.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    (Some(Secret(creds.to_owned())), hosts)
                }
                _ => {
                    return Err(format!(
                        "{EXPECTED}; the credentials before `@` must be `user:password` (digest scheme)"
                    ))
                }
            },
            None => (None, authority),
        };
        if hosts.trim().is_empty() {
            return Err(format!("{EXPECTED}, got no server"));
        }
        let mut servers = Vec::new();
        for server in hosts.split(',') {
            let server = server.trim();
            check_server(server).map_err(|m| format!("{EXPECTED}; {m}"))?;
            servers.push(server);
        }
        let chroot = match chroot {
            Some(c) => normalise_chroot(c).map_err(|m| format!("{EXPECTED}; the chroot `{c}` {m}"))?,
            None => None,
        };
        Ok(ZkTarget { hosts: servers.join(","), chroot, digest })
    }

    /// Hosts and chroot, never the credentials: what messages and logs show.
    pub fn redacted(&self) -> String {
        format!("{}{}", self.hosts, self.chroot.as_deref().unwrap_or(""))
    }

    /// The `zk` field of the registration: the network location only, as the original
    /// registered it (`urlparse(..).netloc`), without credentials or chroot.
    pub fn registered(&self) -> String {
        self.hosts.clone()
    }
}

impl fmt::Display for ZkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for ZkTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ZkTarget::parse(s)
    }
}

/// `host:port` or `[v6]:port`. A port is required: the client would default to 2181, but a
/// missing port is more often a mistake than a wish, and the original always wrote one.
fn check_server(server: &str) -> Result<(), String> {
    if server.is_empty() {
        return Err("an empty server entry (check the commas)".to_owned());
    }
    let (host, port) = if let Some(after) = server.strip_prefix('[') {
        let (host, tail) = after.split_once(']').ok_or_else(|| format!("`{server}` has an unclosed `[`"))?;
        (host, tail.strip_prefix(':').ok_or_else(|| format!("`{server}` has no port"))?)
    } else {
        server.rsplit_once(':').ok_or_else(|| format!("`{server}` has no port"))?
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(format!("`{server}` has no valid host"));
    }
    parse_port(port).map(drop).map_err(|m| format!("in `{server}`: {m}"))
}

/// `/a/b/` → `/a/b`; `/` → `None`. Refuses what ZooKeeper refuses in a path (empty, `.` and
/// `..` elements, control characters), so the client never rejects a chroot we accepted.
fn normalise_chroot(path: &str) -> Result<Option<String>, String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    let bad_char = |c: char| {
        let u = u32::from(c);
        [0x0000..=0x001f, 0x007f..=0x009f, 0xd800..=0xf8ff, 0xfff0..=0xffff].into_iter().any(|r| r.contains(&u))
    };
    for part in trimmed[1..].split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains(bad_char) {
            return Err("is not a valid ZooKeeper path".to_owned());
        }
    }
    Ok(Some(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_plain_strings_split_into_hosts_chroot_and_credentials() {
        let z = ZkTarget::parse("zk://user:pass@10.0.0.1:2181,10.0.0.2:2181/mesos").unwrap();
        assert_eq!(z.hosts, "10.0.0.1:2181,10.0.0.2:2181");
        assert_eq!(z.chroot.as_deref(), Some("/mesos"));
        assert_eq!(z.digest, Some(Secret("user:pass".into())));
        let z = ZkTarget::parse("zk://10.0.0.56:2181/mesos/").unwrap();
        assert_eq!((z.hosts.as_str(), z.chroot.as_deref(), z.digest), ("10.0.0.56:2181", Some("/mesos"), None));
        let z = ZkTarget::parse(" 127.0.0.1:2181 ").unwrap();
        assert_eq!((z.hosts.as_str(), z.chroot), ("127.0.0.1:2181", None));
        let z = ZkTarget::parse("h1:2181, h2:2182/a/b").unwrap();
        assert_eq!((z.hosts.as_str(), z.chroot.as_deref()), ("h1:2181,h2:2182", Some("/a/b")));
        assert_eq!(ZkTarget::parse("zk://h:2181/").unwrap().chroot, None);
        assert_eq!(ZkTarget::parse("[::1]:2181").unwrap().hosts, "[::1]:2181");
        // A password may hold `@` and `:`; the last `@` ends it.
        let z = ZkTarget::parse("u:p@ss:w@h:1").unwrap();
        assert_eq!((z.hosts.as_str(), z.digest), ("h:1", Some(Secret("u:p@ss:w".into()))));
        assert_eq!("h:1".parse::<ZkTarget>().unwrap().hosts, "h:1");
    }

    #[test]
    fn rejects_what_the_client_would_not_take() {
        for bad in [
            "",
            "zk://",
            "zk:///chroot",
            "http://h:2181",
            "h",
            "h:0",
            "h:99999",
            "h:2181,",
            "h:1,,h:2",
            ":2181",
            "[::1",
            "[::1]",
            "h:2181/a/../b",
            "h:2181/a//b",
            "h:2181/a\u{1}",
            "nopass@h:2181",
            ":pw@h:2181",
            "u:@h:2181",
        ] {
            let e = ZkTarget::parse(bad).unwrap_err();
            assert!(e.starts_with("expected `host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn no_password_in_errors_debug_serialize_or_display() {
        for bad in [
            "zk://u:s3cret@",
            "u:s3cret@h",
            "u:s3cret@h:0",
            "zk://u:s3cret@h:1,,h:2",
            "nos3cret@h:2181",
            "u:s3/cret@h:2181",
            "u:s3cret://@h:2181",
            "zk://u:s3cret@h:2181/a/../b",
        ] {
            let e = ZkTarget::parse(bad).unwrap_err();
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
        let z = ZkTarget::parse("zk://bob:s3cret@h1:2181/mesos").unwrap();
        for shown in
            [format!("{z:?}"), format!("{z}"), z.redacted(), z.registered(), serde_json::to_string(&z).unwrap()]
        {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert_eq!(z.to_string(), "h1:2181/mesos");
        assert_eq!(z.registered(), "h1:2181");
    }
}
