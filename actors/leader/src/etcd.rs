//! Everything the leader does in etcd, the same protocol as [`crate::zk`] on etcd's primitives:
//!
//! * **Election**: each contender puts `coordinator/<32 hex>` bound to its lease; the key with the
//!   lowest create revision leads and every other watches only its predecessor (the next lower
//!   create revision) for deletion: a fair queue in arrival order, no herd. A key bound to no
//!   lease is no contender (it would hold the lock forever): skipped with a warning.
//! * **Epoch**: our key's create revision, or one above the `epoch` key when that is higher.
//!   Revisions only rise, and each new leader's key was created after its predecessor's, so the
//!   epoch rises with each leadership; the `epoch` key keeps it rising if etcd is restored.
//! * **Fencing**: every write of a leader is a transaction comparing our lock key's create
//!   revision with the one we were elected with: if the key is gone (lease expired, deleted) or
//!   was created again, the transaction does nothing and the caller learns it is not leader.
//! * **Watches**, no polling: on `pods/` (a prefix watch, armed before the first scan so nothing
//!   is missed) and on each dependency's `snapshot` (a key watch; a prefix watch on every
//!   cluster's keys filtered to snapshots for a glob).
//!
//! Every request has a timeout; waiting on a watch does not.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};
use futures::FutureExt;
use ochopod_core::deps::Dependency;
use ochopod_core::paths;
use ochopod_core::view::Pods;
use ochopod_etcd::{keys, timed, EtcdError, LeaseState, Session};

use crate::election::LockData;
use crate::round::Fence;
use crate::zk::{parse_pods, ElectionEvent, LockNode, Takeover};

/// Longest wait for one etcd request.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before retrying after a failed request or a broken watch.
const RETRY: Duration = Duration::from_millis(500);

async fn call<T>(
    op: &'static str,
    key: &str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    timed(op, key, OP_TIMEOUT, request).await
}

/// Our lock key's create revision must still be the one we were elected with.
fn fence(lock: &LockNode) -> Compare {
    Compare::create_revision(lock.path.as_str(), CompareOp::Equal, lock.seq as i64)
}

/// Waits until `key` (or, with `prefix`, any key below it) changes after `from` (a revision);
/// with `filter`, only changes of keys it accepts count. `Err` when the watch broke: the caller
/// looks again.
async fn changed_after(
    session: &Session,
    key: &str,
    prefix: bool,
    from: Option<i64>,
    deletes_only: bool,
    filter: impl Fn(&str) -> bool,
) -> Result<(), EtcdError> {
    let mut options = WatchOptions::new();
    if prefix {
        options = options.with_prefix();
    }
    if let Some(revision) = from {
        options = options.with_start_revision(revision);
    }
    let mut watch = session.client.watch_client();
    let mut stream = call("watch", key, watch.watch(key, Some(options))).await?;
    let broken = |message: String| EtcdError::Failed { op: "watch", key: key.to_owned(), message };
    loop {
        let response = stream.message().await.map_err(|e| broken(e.to_string()))?;
        let Some(response) = response else { return Err(broken("the watch ended".into())) };
        if response.canceled() {
            return Err(broken(format!("canceled: {}", response.cancel_reason())));
        }
        let relevant = response.events().iter().any(|event| {
            (!deletes_only || event.event_type() == EventType::Delete)
                && event.kv().is_some_and(|kv| filter(&String::from_utf8_lossy(kv.key())))
        });
        if relevant {
            // A burst gives one look: take what already arrived.
            while let Some(Ok(Some(_))) = stream.message().now_or_never() {}
            return Ok(());
        }
    }
}

/// Contends until elected, then watches our key until it goes; `own` is the key kept across a
/// suspension, if any.
pub async fn contend(
    session: Session,
    prefix: String,
    contender_hex: String,
    data: Vec<u8>,
    mut own: Option<LockNode>,
    report: impl Fn(ElectionEvent) + Send,
) {
    let dir = keys::coordinator_dir(&prefix);
    loop {
        match step(&session, &dir, &contender_hex, &data, &mut own, &report).await {
            Ok(Some(node)) => {
                report(ElectionEvent::Elected(node.clone()));
                watch_own(&session, &node).await;
                report(ElectionEvent::LockLost);
                return;
            }
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "leader election: retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn step(
    session: &Session,
    dir: &str,
    hex: &str,
    data: &[u8],
    own: &mut Option<LockNode>,
    report: &impl Fn(ElectionEvent),
) -> Result<Option<LockNode>, EtcdError> {
    let node = match own {
        Some(node) => node.clone(),
        None => {
            let node = create_lock(session, dir, hex, data).await?;
            *own = Some(node.clone());
            report(ElectionEvent::Queued(node.clone()));
            node
        }
    };
    let mut kv = session.client.kv_client();
    let options = GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend);
    let queue = call("get", dir, kv.get(dir, Some(options))).await?;
    let revision = queue.header().map_or(0, |h| h.revision());
    let mut predecessor = None;
    let mut found = false;
    for kv in queue.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        if key == node.path {
            found = kv.create_revision() == node.seq as i64;
            break;
        }
        if kv.lease() == 0 {
            tracing::warn!(key = %key, "a key without a lease in coordinator/ is not a contender: ignored in the election (delete it)");
            continue;
        }
        predecessor = Some(key);
    }
    if !found {
        tracing::warn!(key = %node.path, "our lock key vanished, queueing again");
        *own = None;
        return Ok(None);
    }
    let Some(predecessor) = predecessor else { return Ok(Some(node)) };
    tracing::debug!(%predecessor, "follower, watching the predecessor");
    // From the revision read: a deletion since then is seen at once.
    changed_after(session, &predecessor, false, Some(revision + 1), true, |_| true).await?;
    Ok(None)
}

/// Puts our contender key (idempotent: a put after a lost reply keeps the first create
/// revision) and reads its create revision back.
async fn create_lock(session: &Session, dir: &str, hex: &str, data: &[u8]) -> Result<LockNode, EtcdError> {
    let key = format!("{dir}{hex}");
    let mut kv = session.client.kv_client();
    let options = PutOptions::new().with_lease(session.lease);
    call("put", &key, kv.put(key.as_str(), data, Some(options))).await?;
    let read = call("get", &key, kv.get(key.as_str(), None)).await?;
    let created = read.kvs().first().map(|kv| kv.create_revision()).ok_or_else(|| EtcdError::Failed {
        op: "get",
        key: key.clone(),
        message: "our lock key is gone right after its put (lease expired?)".into(),
    })?;
    Ok(LockNode { path: key, name: hex.to_owned(), seq: created.max(0) as u64, version: 0 })
}

async fn watch_own(session: &Session, node: &LockNode) {
    loop {
        let mut kv = session.client.kv_client();
        match call("get", &node.path, kv.get(node.path.as_str(), None)).await {
            Ok(read) => {
                let ours = read.kvs().first().is_some_and(|kv| kv.create_revision() == node.seq as i64);
                if !ours {
                    return;
                }
                let from = read.header().map_or(0, |h| h.revision()) + 1;
                if changed_after(session, &node.path, false, Some(from), true, |_| true).await.is_ok() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "watching our lock key: retrying"),
        }
        if session.state().is_terminal() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The address in the first contender's value.
pub async fn leader_address(session: &Session, prefix: &str) -> Option<String> {
    let dir = keys::coordinator_dir(prefix);
    let mut kv = session.client.kv_client();
    let options = GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend);
    let queue = call("get", &dir, kv.get(dir.as_str(), Some(options))).await.ok()?;
    let head = queue.kvs().iter().find(|kv| kv.lease() != 0)?;
    LockData::parse(head.value()).map(|d| d.address)
}

pub async fn delete_lock(session: &Session, node: &LockNode) -> Result<(), EtcdError> {
    // Only our own key: a transaction, so a key created again by another lease is left alone.
    let txn = Txn::new().when([fence(node)]).and_then([TxnOp::delete(node.path.as_str(), None)]);
    let mut kv = session.client.kv_client();
    call("txn", &node.path, kv.txn(txn)).await.map(drop)
}

/// Lock held, lease alive, leadership still current: what every step of a round asks.
pub struct EtcdFence {
    pub session: Box<Session>,
    pub lock: LockNode,
    pub active: Arc<AtomicBool>,
}

impl Fence for EtcdFence {
    async fn holds(&self) -> bool {
        if !self.active.load(Ordering::SeqCst) || self.session.state() != LeaseState::Alive {
            return false;
        }
        let mut kv = self.session.client.kv_client();
        let owned = match call("get", &self.lock.path, kv.get(self.lock.path.as_str(), None)).await {
            Ok(read) => read.kvs().first().is_some_and(|kv| kv.create_revision() == self.lock.seq as i64),
            Err(_) => false,
        };
        owned && self.active.load(Ordering::SeqCst)
    }
}

/// Reports the cluster's pods now and after every change below `pods/`.
pub async fn watch_local(session: Session, prefix: String, report: impl Fn(Pods) + Send) {
    let dir = keys::pods_dir(&prefix);
    let mut last: Option<Pods> = None;
    loop {
        // The watch is armed before the scan (its first answer says it is), so a change in
        // between is not missed.
        let mut watch = session.client.watch_client();
        let armed = async {
            let mut stream =
                call("watch", &dir, watch.watch(dir.as_str(), Some(WatchOptions::new().with_prefix()))).await?;
            call("watch", &dir, stream.message()).await?;
            Ok::<_, EtcdError>(stream)
        };
        let mut stream = match armed.await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the cluster's pods: retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            match ochopod_etcd::scan_pods(&session.client, &prefix, OP_TIMEOUT).await {
                Ok(scan) => {
                    for skipped in &scan.skipped {
                        tracing::debug!(%skipped, "skipping a pod key");
                    }
                    let pods = scan.into_pods();
                    if last.as_ref() != Some(&pods) {
                        last = Some(pods.clone());
                        report(pods);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the cluster's pods: retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
            match stream.message().await {
                Ok(Some(response)) if !response.canceled() => {
                    while let Some(Ok(Some(_))) = stream.message().now_or_never() {}
                }
                _ => break,
            }
        }
        if session.state().is_terminal() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Reports a dependency's pods now and after every change (`None` while an exact dependency has
/// no snapshot); an unusable snapshot is reported as `Err` and watched until it is fixed.
pub async fn watch_dependency(
    session: Session,
    dependency: Dependency,
    report: impl Fn(Result<Option<Pods>, String>) + Send,
) {
    let mut last: Option<Option<Pods>> = None;
    loop {
        let read = match &dependency {
            Dependency::Exact { cluster, .. } => read_snapshot(&session, cluster).await,
            Dependency::Glob { .. } => read_glob(&session, &dependency).await,
        };
        let revision = match read {
            Ok((pods, revision)) => {
                match pods {
                    Ok(pods) if last.as_ref() != Some(&pods) => {
                        last = Some(pods.clone());
                        report(Ok(pods));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        last = None;
                        report(Err(error));
                    }
                }
                revision
            }
            Err(e) => {
                tracing::warn!(dependency = %dependency.entry(), error = %e, "reading a dependency: retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let watched = match &dependency {
            Dependency::Exact { cluster, .. } => {
                let key = snapshot_key(&session, cluster);
                changed_after(&session, &key, false, Some(revision + 1), false, |_| true).await
            }
            Dependency::Glob { .. } => {
                let dir = keys::clusters(&session.root);
                let root = session.root.clone();
                let filter = |key: &str| {
                    key.ends_with("/snapshot")
                        && keys::cluster_of(&root, key).is_some_and(|c| !dependency.matching([c]).is_empty())
                };
                changed_after(&session, &dir, true, Some(revision + 1), false, filter).await
            }
        };
        if let Err(e) = watched {
            if session.state().is_terminal() {
                return;
            }
            tracing::debug!(dependency = %dependency.entry(), error = %e, "dependency watch broke: looking again");
            tokio::time::sleep(RETRY).await;
        }
    }
}

fn snapshot_key(session: &Session, cluster: &str) -> String {
    paths::snapshot_node(&format!("{}{cluster}", keys::clusters(&session.root)))
}

/// A snapshot read, or why it cannot be used (naming the key).
type SnapshotRead = Result<Option<Pods>, String>;

async fn read_snapshot(session: &Session, cluster: &str) -> Result<(SnapshotRead, i64), EtcdError> {
    let key = snapshot_key(session, cluster);
    let mut kv = session.client.kv_client();
    let read = call("get", &key, kv.get(key.as_str(), None)).await?;
    let revision = read.header().map_or(0, |h| h.revision());
    let pods = match read.kvs().first() {
        Some(kv) => parse_pods(kv.value()).map(Some).map_err(|e| format!("{key}: {e}")),
        None => Ok(None),
    };
    Ok((pods, revision))
}

/// Most keys a glob's listing of clusters reads.
const LIST_LIMIT: i64 = 100_000;

async fn read_glob(session: &Session, dependency: &Dependency) -> Result<(SnapshotRead, i64), EtcdError> {
    let dir = keys::clusters(&session.root);
    let mut kv = session.client.kv_client();
    let options = GetOptions::new().with_prefix().with_keys_only().with_limit(LIST_LIMIT);
    let listed = call("get", &dir, kv.get(dir.as_str(), Some(options))).await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let mut names: Vec<String> = listed
        .kvs()
        .iter()
        .filter_map(|kv| keys::cluster_of(&session.root, &String::from_utf8_lossy(kv.key())).map(str::to_owned))
        .collect();
    names.dedup();
    let mut clusters = dependency.matching(names.iter().map(String::as_str));
    clusters.sort();
    clusters.dedup();
    let mut merged = Ok(Pods::new());
    for cluster in clusters {
        let (pods, _) = read_snapshot(session, &cluster).await?;
        match (&mut merged, pods) {
            (Ok(all), Ok(pods)) => all.extend(pods.unwrap_or_default()),
            (Ok(_), Err(e)) => merged = Err(e),
            (Err(_), _) => {}
        }
    }
    Ok((merged.map(Some), revision))
}

/// Reads the stored hash and snapshot and records our epoch (see the module's doc); a snapshot
/// bound to another lease (the previous leader's) is written again bound to ours, so that
/// dependents see no gap when the old lease goes.
pub async fn take_over(session: &Session, lock: &LockNode, prefix: &str) -> Result<Takeover, EtcdError> {
    let mut kv = session.client.kv_client();
    let epoch_key = paths::epoch_node(prefix);
    let floor = call("get", &epoch_key, kv.get(epoch_key.as_str(), None)).await?;
    let floor = floor.kvs().first().and_then(|kv| std::str::from_utf8(kv.value()).ok()?.trim().parse::<u64>().ok());
    let epoch = match floor {
        Some(f) => lock.seq.max(f.saturating_add(1)),
        None => lock.seq,
    };
    record_epoch(session, lock, prefix, epoch).await?;
    let hash_key = paths::hash_node(prefix);
    let hash = call("get", &hash_key, kv.get(hash_key.as_str(), None)).await?;
    let hash = hash.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).trim().to_string()).unwrap_or_default();
    let snapshot_key = paths::snapshot_node(prefix);
    let snapshot = call("get", &snapshot_key, kv.get(snapshot_key.as_str(), None)).await?;
    let published = match snapshot.kvs().first() {
        Some(found) => {
            let pods = parse_pods(found.value()).unwrap_or_else(|e| {
                tracing::warn!(key = %snapshot_key, error = %e, "the stored snapshot is unreadable");
                Pods::new()
            });
            if found.lease() != session.lease {
                publish(session, lock, prefix, &pods, None).await?;
            }
            Some(pods)
        }
        None => None,
    };
    Ok(Takeover { hash, published, epoch })
}

/// Runs `ops` only if our lock key is still the one we were elected with.
async fn fenced(session: &Session, lock: &LockNode, key: &str, ops: Vec<TxnOp>) -> Result<(), EtcdError> {
    let txn = Txn::new().when([fence(lock)]).and_then(ops);
    let mut kv = session.client.kv_client();
    let done = call("txn", key, kv.txn(txn)).await?;
    if done.succeeded() {
        Ok(())
    } else {
        Err(EtcdError::Fenced { lock: lock.path.clone() })
    }
}

/// Records `epoch` as the cluster's highest, fenced by our lock key.
pub async fn record_epoch(session: &Session, lock: &LockNode, prefix: &str, epoch: u64) -> Result<(), EtcdError> {
    let key = paths::epoch_node(prefix);
    fenced(session, lock, &key, vec![TxnOp::put(key.as_str(), epoch.to_string(), None)]).await
}

/// Writes `snapshot` (bound to our lease, as ZooKeeper's is an ephemeral of the leader) and
/// `hash` in one transaction fenced by our lock key.
pub async fn publish(
    session: &Session,
    lock: &LockNode,
    prefix: &str,
    snapshot: &Pods,
    hash: Option<&str>,
) -> Result<(), EtcdError> {
    let snapshot_key = paths::snapshot_node(prefix);
    let data = serde_json::to_vec(snapshot).unwrap_or_else(|_| b"{}".to_vec());
    let mut ops = vec![TxnOp::put(snapshot_key.as_str(), data, Some(PutOptions::new().with_lease(session.lease)))];
    if let Some(h) = hash {
        ops.push(TxnOp::put(paths::hash_node(prefix), h, None));
    }
    fenced(session, lock, &snapshot_key, ops).await
}
