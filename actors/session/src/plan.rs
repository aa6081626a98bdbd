//! Plain logic of the session, without actix or a server: where to connect, how long to wait
//! before retrying, what JSON to register. Unit-tested here; the actor only drives it.

use std::time::Duration;

use ochopod_config::ZkSettings;
use ochopod_core::Registration;
use rand::Rng;

use crate::SessionError;

/// What the client connects to, split out of [`ZkSettings`]. The credentials are kept apart from
/// `hosts` so that `hosts` is safe to log and to put in error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    /// `host:port[,host:port…]`, no credentials and no chroot.
    pub hosts: String,
    /// Normalised absolute path (`/mesos`), `None` for the root.
    pub chroot: Option<String>,
    /// `user:password` for the `digest` scheme, from a `user:password@hosts` connect string.
    pub digest: Option<String>,
}

impl std::fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectTarget")
            .field("hosts", &self.hosts)
            .field("chroot", &self.chroot)
            .field("digest", &self.digest.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ConnectTarget {
    /// Accepts `[zk://][user:pass@]h:p[,h:p…][/chroot]`. A chroot may come from the settings or
    /// from the connect string, but two different ones are an error rather than a guess.
    ///
    /// The chroot is not left in the connect string for zookeeper-client (which does accept the
    /// Java `h:p,h:p/chroot` form): a chrooted client cannot create its own chroot, so the actor
    /// connects at the root, creates the chroot if missing, then calls `Client::chroot`.
    pub fn parse(zk: &ZkSettings) -> Result<ConnectTarget, SessionError> {
        let bad = |reason: &str| SessionError::BadConnectString {
            connect: strip_credentials(&zk.connect),
            reason: reason.to_string(),
        };
        let mut s = zk.connect.trim();
        s = s.strip_prefix("zk://").unwrap_or(s);
        let (digest, rest) = match s.rsplit_once('@') {
            Some((creds, rest)) => {
                if !creds.contains(':') {
                    return Err(bad("credentials must be `user:password@`"));
                }
                (Some(creds.to_string()), rest)
            }
            None => (None, s),
        };
        let (hosts, embedded) = match rest.find('/') {
            Some(i) => (&rest[..i], normalise_chroot(&rest[i..]).map_err(|r| bad(&r))?),
            None => (rest, None),
        };
        if hosts.is_empty() {
            return Err(bad("no server given"));
        }
        for entry in hosts.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(bad("empty server entry"));
            }
            // `[v6]:port` keeps its colons inside the brackets.
            let port = if let Some(after) = entry.strip_prefix('[') {
                match after.split_once(']') {
                    Some((_, p)) => p.strip_prefix(':'),
                    None => return Err(bad("unclosed `[` in an IPv6 address")),
                }
            } else {
                entry.rsplit_once(':').map(|(_, p)| p)
            };
            if let Some(p) = port {
                if p.parse::<u16>().map_or(true, |p| p == 0) {
                    return Err(bad(&format!("`{entry}` has no valid port")));
                }
            }
        }
        let configured = match &zk.chroot {
            Some(c) => normalise_chroot(c).map_err(|reason| SessionError::BadChroot { chroot: c.clone(), reason })?,
            None => None,
        };
        let chroot = match (configured, embedded) {
            (Some(a), Some(b)) if a != b => {
                return Err(bad(&format!("chroot `{b}` in the connect string differs from the configured `{a}`")))
            }
            (a, b) => a.or(b),
        };
        Ok(ConnectTarget { hosts: hosts.to_string(), chroot, digest })
    }
}

/// `/a/b/` → `/a/b`; `/` → `None` (the root needs no chroot).
fn normalise_chroot(path: &str) -> Result<Option<String>, String> {
    let trimmed = path.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    if !trimmed.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    for part in trimmed[1..].split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("`{part}` is not a valid path element"));
        }
    }
    Ok(Some(trimmed.to_string()))
}

/// Removes `user:pass@` from a connect string or URL (`zk://u:p@h:1` → `zk://h:1`).
pub fn strip_credentials(connect: &str) -> String {
    let (scheme, rest) = match connect.find("://") {
        Some(i) => connect.split_at(i + 3),
        None => ("", connect),
    };
    match rest.rsplit_once('@') {
        Some((_, hosts)) => format!("{scheme}{hosts}"),
        None => connect.to_string(),
    }
}

/// The exact bytes registered: the caller's registration with `seq` set. Fields written by other
/// implementations (`extra`) are dropped and credentials are cut out of `zk`, so that whatever the
/// caller passes, no secret and no arbitrary environment reaches ZooKeeper.
pub fn registration_json(registration: &Registration, seq: u64) -> Result<Vec<u8>, SessionError> {
    let mut r = registration.clone();
    r.seq = seq;
    r.extra.clear();
    r.zk = strip_credentials(&r.zk);
    Ok(serde_json::to_vec(&r)?)
}

/// Capped exponential backoff with jitter for reconnecting while ZooKeeper is unreachable, so a
/// restarting ensemble is not hammered by every pod at the same instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), attempt: 0 }
    }

    /// The next delay: the nominal one is `initial × 2^attempt` capped at `max`, and the delay
    /// returned lies in `[nominal / 2, nominal]`.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.initial.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        (half + Duration::from_millis(jitter_ms)).min(nominal)
    }
}

/// What a change of the client's session state means to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Suspend,
    Resume,
    /// Terminal; `expired` tells an expiry (the server dropped us) from a close or auth failure.
    Lose {
        expired: bool,
    },
    Nothing,
}

/// Phase of the current generation, as reported by `GetSessionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Connected,
    Suspended,
    Expired,
    Closed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Connected => "connected",
            Phase::Suspended => "suspended",
            Phase::Expired => "expired",
            Phase::Closed => "closed",
        }
    }

    /// Only a registered generation moves between connected and suspended: before `Up` the
    /// subscribers know nothing to suspend, and after a loss nothing can resume.
    pub fn on_state(self, state: zookeeper_client::SessionState) -> Transition {
        use zookeeper_client::SessionState as S;
        match (self, state) {
            (Phase::Expired | Phase::Closed, _) => Transition::Nothing,
            (_, S::Expired) => Transition::Lose { expired: true },
            (_, S::Closed | S::AuthFailed) => Transition::Lose { expired: false },
            // A read-only server cannot take writes: for a leader that is as good as disconnected.
            (Phase::Connected, S::Disconnected | S::ConnectedReadOnly) => Transition::Suspend,
            (Phase::Suspended, S::SyncConnected) => Transition::Resume,
            _ => Transition::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zookeeper_client::SessionState as S;

    fn zk(connect: &str, chroot: Option<&str>) -> ZkSettings {
        ZkSettings { connect: connect.into(), chroot: chroot.map(Into::into), session_timeout: Duration::from_secs(15) }
    }

    #[test]
    fn connect_strings_split_into_hosts_chroot_and_credentials() {
        let t = ConnectTarget::parse(&zk("10.0.0.1:2181,10.0.0.2:2181", None)).unwrap();
        assert_eq!(t.hosts, "10.0.0.1:2181,10.0.0.2:2181");
        assert_eq!(t.chroot, None);
        assert_eq!(t.digest, None);

        let t = ConnectTarget::parse(&zk("zk://bob:s3cret@h1:2181,h2/mesos/", None)).unwrap();
        assert_eq!(t.hosts, "h1:2181,h2");
        assert_eq!(t.chroot.as_deref(), Some("/mesos"));
        assert_eq!(t.digest.as_deref(), Some("bob:s3cret"));
        assert!(!format!("{t:?}").contains("s3cret"));

        let t = ConnectTarget::parse(&zk("h1:2181", Some("/mesos"))).unwrap();
        assert_eq!(t.chroot.as_deref(), Some("/mesos"));
        let t = ConnectTarget::parse(&zk("h1:2181/mesos", Some("/mesos/"))).unwrap();
        assert_eq!(t.chroot.as_deref(), Some("/mesos"));
        let t = ConnectTarget::parse(&zk("[::1]:2181", Some("/"))).unwrap();
        assert_eq!(t.hosts, "[::1]:2181");
        assert_eq!(t.chroot, None);
    }

    #[test]
    fn bad_connect_strings_are_named_without_their_password() {
        for (connect, chroot, needle) in [
            ("", None, "no server"),
            ("h1:2181,,h2:2181", None, "empty server"),
            ("h1:notaport", None, "no valid port"),
            ("h1:0", None, "no valid port"),
            ("nopass@h1:2181", None, "user:password"),
            ("u:pw@h1:2181/a", Some("/b"), "differs"),
            ("h1:2181/a//b", None, "not a valid path"),
        ] {
            let err = ConnectTarget::parse(&zk(connect, chroot)).unwrap_err().to_string();
            assert!(err.contains(needle), "{connect:?}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
        let err = ConnectTarget::parse(&zk("h1:2181", Some("mesos"))).unwrap_err().to_string();
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn the_registration_is_the_callers_fields_and_seq_only() {
        let mut r = Registration {
            ip: "10.0.0.5".into(),
            port: "8080".into(),
            zk: "zk://u:pw@h1:2181".into(),
            cluster: "web".into(),
            ..Default::default()
        };
        r.ports.insert("8080".into(), 31000);
        r.extra.insert("token".into(), serde_json::Value::String("secret".into()));
        let js: serde_json::Value = serde_json::from_slice(&registration_json(&r, 42).unwrap()).unwrap();
        assert_eq!(js["seq"], 42);
        assert_eq!(js["ip"], "10.0.0.5");
        assert_eq!(js["ports"]["8080"], 31000);
        assert_eq!(js["zk"], "zk://h1:2181");
        assert!(js.get("token").is_none());
        let fields: Vec<&str> = js.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "application",
                "cluster",
                "debug",
                "fwk",
                "ip",
                "local",
                "namespace",
                "node",
                "port",
                "ports",
                "public",
                "seq",
                "start",
                "task",
                "zk"
            ]
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400) && delays[3] <= Duration::from_millis(800));
        for d in &delays[5..] {
            assert!(*d >= Duration::from_secs(1) && *d <= Duration::from_secs(2), "{d:?}");
        }
    }

    #[test]
    fn state_changes_map_to_transitions_only_when_they_mean_something() {
        assert_eq!(Phase::Connected.on_state(S::Disconnected), Transition::Suspend);
        assert_eq!(Phase::Connected.on_state(S::ConnectedReadOnly), Transition::Suspend);
        assert_eq!(Phase::Suspended.on_state(S::SyncConnected), Transition::Resume);
        assert_eq!(Phase::Connected.on_state(S::SyncConnected), Transition::Nothing);
        assert_eq!(Phase::Suspended.on_state(S::Disconnected), Transition::Nothing);
        assert_eq!(Phase::Suspended.on_state(S::Expired), Transition::Lose { expired: true });
        assert_eq!(Phase::Connected.on_state(S::AuthFailed), Transition::Lose { expired: false });
        assert_eq!(Phase::Connected.on_state(S::Closed), Transition::Lose { expired: false });
        assert_eq!(Phase::Expired.on_state(S::Closed), Transition::Nothing);
        assert_eq!(Phase::Closed.on_state(S::SyncConnected), Transition::Nothing);
    }
}
