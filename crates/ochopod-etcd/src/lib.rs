//! Shared etcd v3 plumbing: the session actor, the leader and the CLI tools connect, bound their
//! calls, keep a lease and read a cluster's pods through this crate, as `ochopod-zk` does for
//! ZooKeeper.
//!
//! # Theory of operation
//!
//! * [`connect`] opens a client on every endpoint of an [`EtcdTarget`] (parsed and checked once,
//!   by the config crate) with its credentials, bounded by a timeout. Messages name the target
//!   by its `Display` (endpoints and prefix), never the credentials.
//! * [`Session::start`] grants a lease of the session timeout and keeps it alive from a task of
//!   its own, publishing [`LeaseState`]: `Alive` while keep-alives are answered, `Unsure` once
//!   none was for half the TTL (the lease may still be alive: leader duties stop), `Expired` when etcd says
//!   the lease is gone or nothing was answered for a whole TTL (after which etcd has dropped it),
//!   `Closed` after [`Session::close`]. What a pod writes with the lease (its registration, its
//!   lock key, the leader's snapshot) goes with it: etcd's counterpart of ZooKeeper's ephemerals.
//! * [`timed`] bounds one call; [`scan_pods`] reads `pods/` with one ranged get, parses each
//!   value with the same [`ochopod_zk::parse_registration`] as the ZooKeeper scan, and keys them
//!   by uuid; a value that is not a registration never fails the scan.
//!
//! The key layout mirrors ZooKeeper's under the target's prefix (see [`keys`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use ochopod_zk::{PodScan, ScannedPod, SkipReason, Skipped};
use tokio::sync::watch;

pub use etcd_client;
pub use ochopod_config::EtcdTarget;

/// What can go wrong talking to etcd. Targets are shown redacted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    #[error("cannot connect to etcd at {target}: {message}")]
    Connect { target: String, message: String },
    #[error("etcd {op} of {key} failed: {message}")]
    Failed { op: &'static str, key: String, message: String },
    #[error("etcd {op} of {key} got no answer within {after:?}")]
    Timeout { op: &'static str, key: String, after: Duration },
    /// A write fenced by a lock key failed its comparison: the key is gone or was created again,
    /// so the caller is no longer leader.
    #[error("our lock key {lock} is gone or not ours any more: no longer leader")]
    Fenced { lock: String },
}

/// Runs one etcd call with a deadline; `op` and `key` name it in the error.
pub async fn timed<T>(
    op: &'static str,
    key: &str,
    after: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(after, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EtcdError::Failed { op, key: key.to_owned(), message: e.to_string() }),
        Err(_) => Err(EtcdError::Timeout { op, key: key.to_owned(), after }),
    }
}

/// Connects to every endpoint of `target` (with its credentials); each request of the client
/// is bounded by `op_timeout`.
pub async fn connect(
    target: &EtcdTarget,
    connect_timeout: Duration,
    op_timeout: Duration,
) -> Result<Client, EtcdError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(connect_timeout)
        .with_timeout(op_timeout)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    if let Some((user, password)) = target.user() {
        // etcd's simple tokens expire when idle: a long-lived pod takes a new one when told.
        options = options.with_user(user, password).with_auto_token_refresh(true);
    }
    let failed = |message: String| EtcdError::Connect { target: target.redacted(), message };
    let scheme = match &target.tls {
        None => "http",
        Some(tls) => {
            options = options.with_tls(tls_options(tls).map_err(failed)?);
            "https"
        }
    };
    let endpoints: Vec<String> = target.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect();
    match tokio::time::timeout(connect_timeout, Client::connect(endpoints, Some(options))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!("no answer within {connect_timeout:?}"))),
    }
}

/// The CA (and client certificate) of an `etcds://` target, read now: a missing file is a
/// connect error naming it.
fn tls_options(tls: &ochopod_config::EtcdTls) -> Result<etcd_client::TlsOptions, String> {
    let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let mut options = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?));
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}

/// The keys, mirroring ZooKeeper's nodes under the target's prefix:
///
/// ```text
/// <prefix>/clusters/<namespace>.<cluster>/
///     pods/<uuid>.<10-digit seq>      registration JSON, bound to the pod's lease
///     seq                             the cluster's registration counter (the next seq)
///     hash                            colon-hex MD5 of the last configured state
///     snapshot                        {uuid: registration}, bound to the leader's lease
///     epoch                           the highest fencing epoch a leader took
///     coordinator/<32 hex>            contenders, bound to their lease; lowest create revision leads
/// ```
pub mod keys {
    /// `<prefix>/clusters/`: every cluster's keys start with it; tools list and glob below it.
    pub fn clusters(root: &str) -> String {
        format!("{root}/clusters/")
    }

    pub fn cluster_prefix(root: &str, namespace: &str, cluster: &str) -> String {
        format!("{root}/clusters/{namespace}.{cluster}")
    }

    /// With the trailing `/`, for ranged reads and watches.
    pub fn pods_dir(prefix: &str) -> String {
        format!("{prefix}/pods/")
    }

    pub fn pod(prefix: &str, uuid: &str, seq: u64) -> String {
        format!("{prefix}/pods/{uuid}.{seq:010}")
    }

    pub fn seq_counter(prefix: &str) -> String {
        format!("{prefix}/seq")
    }

    /// With the trailing `/`.
    pub fn coordinator_dir(prefix: &str) -> String {
        format!("{prefix}/coordinator/")
    }

    /// The cluster name (`<namespace>.<cluster>`) of a key below [`clusters`], if any.
    pub fn cluster_of<'a>(root: &str, key: &'a str) -> Option<&'a str> {
        let rest = key.strip_prefix(root)?.strip_prefix("/clusters/")?;
        rest.split('/').next().filter(|c| !c.is_empty())
    }
}

/// Most pods a scan reads: a bound on what a misbehaving writer can make us hold.
pub const SCAN_LIMIT: i64 = 10_000;

/// Every registration under `pods/`, keyed by uuid; when a pod's old and new keys both exist for
/// a moment, the newest (highest create revision) wins. Values that are not registrations are
/// in [`PodScan::skipped`].
pub async fn scan_pods(client: &Client, prefix: &str, op_timeout: Duration) -> Result<PodScan, EtcdError> {
    let dir = keys::pods_dir(prefix);
    let mut kv = client.kv_client();
    let options = GetOptions::new().with_prefix().with_limit(SCAN_LIMIT);
    let response = timed("get", &dir, op_timeout, kv.get(dir.as_str(), Some(options))).await?;
    let mut found: Vec<_> = response.kvs().iter().collect();
    found.sort_by_key(|kv| kv.create_revision());
    let mut scan = PodScan::default();
    for kv in found {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let name = key.strip_prefix(&dir).unwrap_or(&key).to_owned();
        match ochopod_zk::parse_registration(&name, kv.value()) {
            Ok(registration) => {
                let uuid = ochopod_core::paths::pod_key(&name).to_owned();
                scan.pods.insert(uuid, ScannedPod { node: name, registration });
            }
            Err(why) => scan.skipped.push(Skipped { path: key, reason: SkipReason::Invalid(why) }),
        }
    }
    if response.more() {
        tracing::warn!(dir = %dir, limit = SCAN_LIMIT, "more pods than a scan reads: the rest are left out");
    }
    Ok(scan)
}

/// A lease's state as the keep-alive task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The last keep-alive was answered: our keys are there.
    Alive,
    /// A keep-alive went unanswered: the lease may still be alive.
    Unsure,
    /// etcd said the lease is gone, or nothing answered for a whole TTL.
    Expired,
    /// Revoked by [`Session::close`].
    Closed,
}

impl LeaseState {
    pub fn is_terminal(self) -> bool {
        matches!(self, LeaseState::Expired | LeaseState::Closed)
    }
}

/// A client, its lease, and the task that keeps the lease alive (ended when the last clone of
/// the session goes, or by [`Session::close`]).
#[derive(Clone)]
pub struct Session {
    pub client: Client,
    pub lease: i64,
    /// The target's key prefix (`/ochopod`).
    pub root: String,
    pub ttl: Duration,
    pub op_timeout: Duration,
    states: watch::Receiver<LeaseState>,
    keeper: Arc<Keeper>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd::Session(lease {:x})", self.lease)
    }
}

struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Session {
    /// Connects and grants a lease of `ttl` (whole seconds, at least 2), kept alive from now on.
    pub async fn start(target: &EtcdTarget, ttl: Duration, op_timeout: Duration) -> Result<Session, EtcdError> {
        let client = connect(target, op_timeout + Duration::from_secs(2), op_timeout).await?;
        let seconds = ttl.as_secs().max(2) as i64;
        let mut lease = client.lease_client();
        let granted = timed("lease grant", "-", op_timeout, lease.grant(seconds, None)).await?;
        let id = granted.id();
        let (tx, states) = watch::channel(LeaseState::Alive);
        let ttl = Duration::from_secs(seconds as u64);
        let keeper = Keeper(tokio::spawn(keep_alive(client.clone(), id, ttl, tx)));
        Ok(Session {
            client,
            lease: id,
            root: target.prefix.clone(),
            ttl,
            op_timeout,
            states,
            keeper: Arc::new(keeper),
        })
    }

    /// The lease's state now.
    pub fn state(&self) -> LeaseState {
        *self.states.borrow()
    }

    /// A receiver of the lease's state changes.
    pub fn states(&self) -> watch::Receiver<LeaseState> {
        self.states.clone()
    }

    /// Revokes the lease (every key bound to it goes at once) and stops keeping it alive.
    pub async fn close(self) -> Option<LeaseState> {
        self.keeper.0.abort();
        let mut lease = self.client.lease_client();
        match timed("lease revoke", "-", self.op_timeout, lease.revoke(self.lease)).await {
            Ok(_) => Some(LeaseState::Closed),
            Err(e) => {
                tracing::warn!(error = %e, "could not revoke the lease; its keys go when it expires");
                None
            }
        }
    }
}

/// Sends a keep-alive every quarter of the TTL and publishes what the answers say. A broken
/// stream is opened again at once (the client fails over to another member); the lease is only
/// `Unsure` once half the TTL went by without an answer, so that losing one etcd member does not
/// suspend a leader whose lease is safe, and `Expired` after a whole TTL.
async fn keep_alive(client: Client, id: i64, ttl: Duration, states: watch::Sender<LeaseState>) {
    let period = (ttl / 4).max(Duration::from_millis(500));
    let unsure_after = ttl / 2;
    let mut last_ok = Instant::now();
    let set = |state: LeaseState| {
        states.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    };
    loop {
        let mut lease = client.lease_client();
        if let Ok(Ok((mut keeper, mut answers))) = tokio::time::timeout(period, lease.keep_alive(id)).await {
            loop {
                let answer = tokio::time::timeout(period, async {
                    keeper.keep_alive().await?;
                    answers.message().await
                })
                .await;
                match answer {
                    Ok(Ok(Some(a))) if a.ttl() > 0 => {
                        last_ok = Instant::now();
                        set(LeaseState::Alive);
                        tokio::time::sleep(period).await;
                    }
                    Ok(Ok(Some(_))) => {
                        tracing::warn!(lease = format!("{id:x}"), "etcd says our lease expired");
                        return set(LeaseState::Expired);
                    }
                    _ => break,
                }
            }
        }
        if last_ok.elapsed() >= ttl {
            tracing::warn!(lease = format!("{id:x}"), "no keep-alive answered for a whole TTL: the lease is gone");
            return set(LeaseState::Expired);
        }
        if last_ok.elapsed() >= unsure_after {
            set(LeaseState::Unsure);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::keys;

    #[test]
    fn keys_mirror_the_zookeeper_layout() {
        let p = keys::cluster_prefix("/ochopod", "demo", "web");
        assert_eq!(p, "/ochopod/clusters/demo.web");
        assert_eq!(keys::pod(&p, "abc", 7), "/ochopod/clusters/demo.web/pods/abc.0000000007");
        assert_eq!(keys::pods_dir(&p), "/ochopod/clusters/demo.web/pods/");
        assert_eq!(keys::coordinator_dir(&p), "/ochopod/clusters/demo.web/coordinator/");
        assert_eq!(keys::cluster_of("/ochopod", "/ochopod/clusters/demo.web/snapshot"), Some("demo.web"));
        assert_eq!(keys::cluster_of("/ochopod", "/other/clusters/x/snapshot"), None);
    }
}
