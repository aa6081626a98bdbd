//! Shared ZooKeeper plumbing: the session actor, the leader and the CLI tools all connect, bound
//! their calls and read a cluster's pods through this crate, so each of those is written once.
//!
//! # Theory of operation
//!
//! * [`connect`] takes a [`ZkTarget`] (parsed and checked once, by the config crate) and opens a
//!   session at the *root* with the target's digest credentials, bounded by a timeout. When the
//!   target has a chroot it checks it (creating it if asked: a chrooted client cannot create its
//!   own chroot) and only then switches the client into it. It returns the client with its state
//!   watcher, taken right after connecting so no transition is missed. Every message names the
//!   target by its `Display` (hosts and chroot), never the credentials.
//! * [`timed`] bounds one call: requests issued while disconnected hang until the client
//!   reconnects or gives up, so nothing here waits on ZooKeeper without a deadline.
//! * [`scan_pods`] reads `pods/`: lists it, reads every child at once, parses each as an
//!   [`ochopod_core::Registration`] ([`parse_registration`], with the node suffix as `seq` for a
//!   registration that has none) and keys them by uuid; when a pod re-registered and both of its
//!   nodes exist for a moment, the newest wins. A node that vanished, is empty or is not a
//!   registration never fails the scan: it comes back in [`PodScan::skipped`] and the caller
//!   decides (the leader logs and ignores, the tools print a warning).
//! * [`close`] drops a client and waits, bounded, for its session to end, so peers see an
//!   ephemeral node go at once and no client object outlives the runtime.
//!
//! Writes with a protocol of their own (the session's registration transaction, the leader's
//! fenced snapshot) stay with their owners.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use ochopod_core::view::Pods;
use ochopod_core::{paths, Registration};
use zookeeper_client::{Acls, Client, CreateMode, SessionState, StateWatcher};

pub use ochopod_config::ZkTarget;

/// What can go wrong talking to ZooKeeper. Targets are shown redacted; paths are as seen through
/// the chroot.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ZkError {
    #[error("cannot connect to ZooKeeper at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: zookeeper_client::Error,
    },
    #[error("cannot connect to ZooKeeper at {target}: no session within {after:?}")]
    ConnectTimeout { target: String, after: Duration },
    #[error("ZooKeeper {op} of {path} failed: {source}")]
    Failed {
        op: &'static str,
        path: String,
        #[source]
        source: zookeeper_client::Error,
    },
    #[error("ZooKeeper {op} of {path} got no answer within {after:?}")]
    Timeout { op: &'static str, path: String, after: Duration },
    #[error("the ZooKeeper client refused the chroot {chroot}")]
    Chroot { chroot: String },
    /// A write fenced by a lock node failed its check: the node is gone or not the caller's any
    /// more, so the caller is no longer leader.
    #[error("our lock node {lock} is gone or not ours any more: no longer leader")]
    Fenced { lock: String },
}

impl ZkError {
    /// The server's answer, when the call got one.
    pub fn zk_error(&self) -> Option<&zookeeper_client::Error> {
        match self {
            ZkError::Connect { source, .. } | ZkError::Failed { source, .. } => Some(source),
            _ => None,
        }
    }

    pub fn is_no_node(&self) -> bool {
        matches!(self.zk_error(), Some(zookeeper_client::Error::NoNode))
    }
}

/// Runs one ZooKeeper call with a deadline; `op` and `path` name it in the error.
pub async fn timed<T>(
    op: &'static str,
    path: &str,
    after: Duration,
    call: impl Future<Output = Result<T, zookeeper_client::Error>>,
) -> Result<T, ZkError> {
    match tokio::time::timeout(after, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ZkError::Failed { op, path: path.to_owned(), source }),
        Err(_) => Err(ZkError::Timeout { op, path: path.to_owned(), after }),
    }
}

/// How [`connect`] connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    pub session_timeout: Duration,
    /// Deadline of the connect itself.
    pub connect_timeout: Duration,
    /// Deadline of each call made while connecting (checking or creating the chroot).
    pub op_timeout: Duration,
    /// Create a missing chroot (a pod does; a read-only tool does not write).
    pub create_chroot: bool,
}

impl ConnectOptions {
    /// A session of `session_timeout`; the connect may take that long plus a margin (the
    /// client itself gives up about then), each call 5 s; the chroot must exist.
    pub fn new(session_timeout: Duration) -> Self {
        ConnectOptions {
            session_timeout,
            connect_timeout: session_timeout + Duration::from_secs(2),
            op_timeout: Duration::from_secs(5),
            create_chroot: false,
        }
    }
}

/// Connects to `target`: root session with the digest credentials, then the chroot (checked,
/// created if `options.create_chroot`, then entered). Fails eagerly: callers that must keep
/// trying (the session) retry with their own backoff and log each failure, rather than the
/// client cycling silently through the servers for a whole session timeout.
pub async fn connect(target: &ZkTarget, options: &ConnectOptions) -> Result<(Client, StateWatcher), ZkError> {
    let mut connector = Client::connector().with_session_timeout(options.session_timeout).with_fail_eagerly();
    if let Some(digest) = &target.digest {
        connector = connector.with_auth("digest", digest.0.as_bytes());
    }
    let client = match tokio::time::timeout(options.connect_timeout, connector.connect(&target.hosts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(source)) => return Err(ZkError::Connect { target: target.redacted(), source }),
        Err(_) => return Err(ZkError::ConnectTimeout { target: target.redacted(), after: options.connect_timeout }),
    };
    let states = client.state_watcher();
    let Some(chroot) = &target.chroot else { return Ok((client, states)) };
    let create = options.create_chroot
        && timed("exists", chroot, options.op_timeout, client.check_stat(chroot)).await?.is_none();
    if create {
        let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
        timed("mkdir", chroot, options.op_timeout, client.mkdir(chroot, &persistent)).await?;
    }
    let client = client.chroot(chroot.as_str()).map_err(|_| ZkError::Chroot { chroot: chroot.clone() })?;
    Ok((client, states))
}

/// Drops `client` (the caller's last clone, or the session stays open) and waits up to `wait`
/// for the session to end. Returns the final state, `None` when it did not end in time (the
/// session then expires on the server).
pub async fn close(client: Client, wait: Duration) -> Option<SessionState> {
    let mut states = client.state_watcher();
    drop(client);
    tokio::time::timeout(wait, async {
        loop {
            let state = states.state();
            if state.is_terminated() {
                return state;
            }
            states.changed().await;
        }
    })
    .await
    .ok()
}

/// One pod found under `pods/`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedPod {
    /// The node's name (`<uuid>.<sequence>`).
    pub node: String,
    pub registration: Registration,
}

/// Why a child of `pods/` is not in a scan.
#[derive(Debug, Clone)]
pub enum SkipReason {
    /// Deleted between the listing and the read (the pod left).
    Vanished,
    /// Empty (a pod of the original between its create and its set) or not a registration.
    Invalid(String),
    /// The read failed (timeout, connection loss): the node may well be a live pod.
    Unreadable(ZkError),
}

#[derive(Debug, Clone)]
pub struct Skipped {
    /// Full path of the node.
    pub path: String,
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            SkipReason::Vanished => write!(f, "{}: skipped: the pod left while being read", self.path),
            SkipReason::Invalid(why) => write!(f, "{}: skipped: {why}", self.path),
            SkipReason::Unreadable(e) => write!(f, "{}: skipped: cannot read ({e})", self.path),
        }
    }
}

/// What [`scan_pods`] found.
#[derive(Debug, Clone, Default)]
pub struct PodScan {
    /// Keyed by uuid ([`paths::pod_key`]).
    pub pods: BTreeMap<String, ScannedPod>,
    pub skipped: Vec<Skipped>,
}

impl PodScan {
    /// The registrations by uuid, as rounds and snapshots carry them.
    pub fn into_pods(self) -> Pods {
        self.pods.into_iter().map(|(k, p)| (k, p.registration)).collect()
    }

    /// The first read that failed for another reason than the node being gone, if any: a caller
    /// that must not act on a partial view (the leader) retries the scan on it.
    pub fn unreadable(&self) -> Option<&ZkError> {
        self.skipped.iter().find_map(|s| match &s.reason {
            SkipReason::Unreadable(e) => Some(e),
            _ => None,
        })
    }
}

/// Every registration under `pods_dir`, keyed by uuid. Only the listing can fail the scan (a
/// missing `pods_dir` is `Failed` with `NoNode`); a node that cannot be used is in `skipped`.
pub async fn scan_pods(client: &Client, pods_dir: &str, op_timeout: Duration) -> Result<PodScan, ZkError> {
    let mut children = timed("list", pods_dir, op_timeout, client.list_children(pods_dir)).await?;
    // When a pod re-registered and both nodes exist for a moment, the newest wins.
    children.sort_by_key(|c| paths::sequence_of(c).unwrap_or(0));
    let reads = children.into_iter().map(|name| async move {
        let path = format!("{pods_dir}/{name}");
        let read = timed("get", &path, op_timeout, client.get_data(&path)).await;
        (name, path, read)
    });
    let mut scan = PodScan::default();
    for (name, path, read) in futures::future::join_all(reads).await {
        let reason = match read {
            Ok((data, _)) => match parse_registration(&name, &data) {
                Ok(registration) => {
                    scan.pods.insert(paths::pod_key(&name).to_owned(), ScannedPod { node: name, registration });
                    continue;
                }
                Err(why) => SkipReason::Invalid(why),
            },
            Err(e) if e.is_no_node() => SkipReason::Vanished,
            Err(e) => SkipReason::Unreadable(e),
        };
        scan.skipped.push(Skipped { path, reason });
    }
    Ok(scan)
}

/// Parses one pod node's data; `Err` says why it is skipped.
///
/// The registered `seq` is the pod's for life and differs from the node's suffix after a
/// re-registration, so it wins; only a registration without one (other writers exist) takes
/// the node's suffix. `0` is a real seq (the first pod of a cluster), not "missing".
pub fn parse_registration(node_name: &str, data: &[u8]) -> Result<Registration, String> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err("no registration yet (the pod may be registering)".into());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("unreadable registration ({e})"))?;
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|k, v| !(k == "seq" && v.is_null()));
    }
    let has_seq = value.get("seq").is_some();
    let mut reg: Registration = serde_json::from_value(value).map_err(|e| format!("unreadable registration ({e})"))?;
    if !has_seq {
        reg.seq = paths::sequence_of(node_name).unwrap_or(0);
    }
    Ok(reg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_broken_registrations_are_skipped_with_a_reason() {
        assert!(parse_registration("u.0000000001", b"").unwrap_err().contains("registering"));
        assert!(parse_registration("u.0000000001", b" \n").unwrap_err().contains("registering"));
        assert!(parse_registration("u.0000000001", b"{nope").unwrap_err().contains("unreadable"));
        assert!(parse_registration("u.0000000001", br#"{"seq":"x"}"#).unwrap_err().contains("unreadable"));
        assert_eq!(parse_registration("u.0000000007", br#"{"ip":"1.2.3.4","seq":3}"#).unwrap().seq, 3);
    }

    #[test]
    fn the_registered_seq_wins_over_the_node_suffix_even_when_zero() {
        // A pod re-registered after a reset: new node suffix, same seq for life.
        assert_eq!(parse_registration("u.0000000002", br#"{"seq":0}"#).unwrap().seq, 0);
        assert_eq!(parse_registration("u.0000000002", br#"{"ip":"x"}"#).unwrap().seq, 2);
        assert_eq!(parse_registration("u.0000000002", br#"{"seq":null}"#).unwrap().seq, 2);
    }

    #[test]
    fn errors_name_the_target_without_credentials() {
        let t = ZkTarget::parse("zk://bob:s3cret@h1:2181/mesos").unwrap();
        let e = ZkError::ConnectTimeout { target: t.redacted(), after: Duration::from_secs(1) };
        assert_eq!(e.to_string(), "cannot connect to ZooKeeper at h1:2181/mesos: no session within 1s");
        let e = ZkError::Failed { op: "get", path: "/a".into(), source: zookeeper_client::Error::NoNode };
        assert!(e.is_no_node());
        assert!(!ZkError::Timeout { op: "get", path: "/a".into(), after: Duration::ZERO }.is_no_node());
    }

    #[tokio::test]
    async fn timed_calls_give_up_and_say_which_call() {
        let pending = std::future::pending::<Result<(), zookeeper_client::Error>>();
        let e = timed("get", "/x", Duration::from_millis(20), pending).await.unwrap_err();
        assert_eq!(e.to_string(), "ZooKeeper get of /x got no answer within 20ms");
        let ok = timed("get", "/x", Duration::from_secs(1), async { Ok::<_, zookeeper_client::Error>(7) }).await;
        assert_eq!(ok.unwrap(), 7);
    }
}
