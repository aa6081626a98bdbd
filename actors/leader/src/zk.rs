//! Everything the leader does in ZooKeeper: the lock contention, the watches on `pods/` and on
//! the dependencies' `snapshot` nodes, the fenced writes of `snapshot` and `hash`, and the fence
//! the round asks between its steps.
//!
//! The long-running functions here are loops run as tokio tasks by the actor, which aborts them
//! when they become stale; they report through a callback and never decide anything. Every
//! request has a timeout (requests issued while disconnected hang until reconnection), while
//! waiting on a watch does not (that is the point of a watch).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use futures::FutureExt;
use ochopod_core::deps::Dependency;
use ochopod_core::paths::{self, ROOT};
use ochopod_core::view::Pods;
use ochopod_core::Registration;
use zookeeper_client::{
    Acls, AddWatchMode, Client, CreateMode, CreateOptions, EventType, MultiWriteError, OneshotWatcher, SessionState,
};

use crate::election::{self, Position};
use crate::round::Fence;

/// Longest wait for one ZooKeeper request.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before retrying after a failed request, so an outage does not spin.
const RETRY: Duration = Duration::from_millis(500);

/// The leader's ZooKeeper errors are the shared plumbing's; a lost fence is [`ZkError::Fenced`].
pub use ochopod_zk::ZkError;

/// One request bounded by [`OP_TIMEOUT`] (`ochopod_zk::timed`).
async fn zk<T>(
    op: &'static str,
    path: &str,
    request: impl Future<Output = Result<T, zookeeper_client::Error>>,
) -> Result<T, ZkError> {
    ochopod_zk::timed(op, path, OP_TIMEOUT, request).await
}

fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

fn ephemeral_sequential() -> CreateOptions<'static> {
    CreateMode::EphemeralSequential.with_acls(Acls::anyone_all())
}

/// A session-terminating event: watchers panic if polled after it, so loops end on it.
fn is_terminal(event_type: EventType, state: SessionState) -> bool {
    event_type == EventType::Session && state.is_terminated()
}

/// Our contender node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockNode {
    pub path: String,
    pub name: String,
    /// The fencing epoch of a leadership won with this node.
    pub seq: u64,
    /// Its data version, checked by every fenced write (the node is never rewritten).
    pub version: i32,
}

/// What the contention loop reports.
#[derive(Debug)]
pub enum ElectionEvent {
    /// Our node exists (created, or found again after a lost reply).
    Queued(LockNode),
    /// Ours is the lowest node: we lead with this epoch.
    Elected(LockNode),
    /// While leading, our node was deleted (by hand, or the session is ending).
    LockLost,
}

/// Contends for the lock until elected, then watches our node until it goes. `own` is the node
/// kept across a suspension, if any.
pub async fn contend(
    client: Client,
    coordinator: String,
    contender_hex: String,
    data: Vec<u8>,
    mut own: Option<LockNode>,
    report: impl Fn(ElectionEvent) + Send,
) {
    loop {
        match step(&client, &coordinator, &contender_hex, &data, &mut own, &report).await {
            Ok(Some(node)) => {
                report(ElectionEvent::Elected(node.clone()));
                watch_own(&client, &node).await;
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

/// One look at the queue: `Some(node)` when we lead, `None` when it must be looked at again
/// (our predecessor left, or our node vanished and was recreated).
async fn step(
    client: &Client,
    coordinator: &str,
    contender_hex: &str,
    data: &[u8],
    own: &mut Option<LockNode>,
    report: &impl Fn(ElectionEvent),
) -> Result<Option<LockNode>, ZkError> {
    let node = match own {
        Some(node) => node.clone(),
        None => {
            let node = create_lock(client, coordinator, contender_hex, data).await?;
            *own = Some(node.clone());
            report(ElectionEvent::Queued(node.clone()));
            node
        }
    };
    let mut children = zk("list", coordinator, client.list_children(coordinator)).await?;
    loop {
        match election::position(&children, &node.name) {
            Position::Leader => return Ok(Some(node)),
            Position::Missing => {
                tracing::warn!(node = %node.path, "our lock node vanished, queueing again");
                *own = None;
                return Ok(None);
            }
            Position::Follower { predecessor, leader } => {
                let path = format!("{coordinator}/{predecessor}");
                let (stat, watcher) = zk("exists", &path, client.check_and_watch_stat(&path)).await?;
                match stat {
                    // A contender lives only as long as its session: a persistent node (written by
                    // hand, or restored from a backup) would hold the lock forever. It takes no
                    // part, loudly, so that someone deletes it.
                    Some(stat) if stat.ephemeral_owner == 0 => {
                        tracing::warn!(
                            node = %path,
                            "a persistent node in coordinator/ is not a contender: ignored in the election (delete it)"
                        );
                        children.retain(|c| *c != predecessor);
                    }
                    Some(_) => {
                        tracing::debug!(%leader, %predecessor, "follower, watching the predecessor");
                        watcher.changed().await;
                        return Ok(None);
                    }
                    None => return Ok(None),
                }
            }
        }
    }
}

async fn create_lock(client: &Client, coordinator: &str, hex: &str, data: &[u8]) -> Result<LockNode, ZkError> {
    zk("mkdir", coordinator, client.mkdir(coordinator, &persistent())).await?;
    let prefix = election::lock_prefix(coordinator, hex);
    let created = zk("create", &prefix, client.create(&prefix, data, &ephemeral_sequential())).await;
    match created {
        Ok((stat, seq)) => Ok(LockNode {
            path: format!("{prefix}{seq}"),
            name: format!("{hex}{}{seq}", paths::LOCK_MARKER),
            seq: seq.into_i64().max(0) as u64,
            version: if stat.is_invalid() { 0 } else { stat.version },
        }),
        Err(e) => {
            // The server may have applied the create before the reply was lost: adopt that node
            // rather than leave a ghost contender ahead of everyone until the session ends.
            let children = zk("list", coordinator, client.list_children(coordinator)).await?;
            let Some(found) = election::find_own(&children, hex) else { return Err(e) };
            let path = format!("{coordinator}/{}", found.name);
            let stat = zk("exists", &path, client.check_stat(&path)).await?.ok_or(e)?;
            Ok(LockNode { path, name: found.name, seq: found.seq, version: stat.version })
        }
    }
}

async fn watch_own(client: &Client, node: &LockNode) {
    loop {
        match zk("exists", &node.path, client.check_and_watch_stat(&node.path)).await {
            Ok((None, _)) => return,
            Ok((Some(_), watcher)) => {
                let event = watcher.changed().await;
                if event.event_type == EventType::NodeDeleted || is_terminal(event.event_type, event.session_state) {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "watching our lock node: retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The address in the lowest contender's data, when it is one of ours.
pub async fn leader_address(client: &Client, coordinator: &str) -> Option<String> {
    let children = zk("list", coordinator, client.list_children(coordinator)).await.ok()?;
    let head = election::queue(&children).into_iter().next()?;
    let path = format!("{coordinator}/{}", head.name);
    let (data, _) = zk("get", &path, client.get_data(&path)).await.ok()?;
    election::LockData::parse(&data).map(|d| d.address)
}

pub async fn delete_lock(client: &Client, node: &LockNode) -> Result<(), ZkError> {
    match zk("delete", &node.path, client.delete(&node.path, None)).await {
        Err(e) if !e.is_no_node() => Err(e),
        _ => Ok(()),
    }
}

/// Lock held, session connected, leadership still current: what every step of a round asks.
pub struct ZkFence {
    pub client: Client,
    pub lock_path: String,
    /// Cleared by the actor the moment it stops leading (suspension, loss, shutdown).
    pub active: Arc<AtomicBool>,
}

impl Fence for ZkFence {
    fn holds(&self) -> impl Future<Output = bool> + Send {
        let client = self.client.clone();
        let path = self.lock_path.clone();
        let active = self.active.clone();
        async move {
            if !active.load(Ordering::SeqCst) || client.state() != SessionState::SyncConnected {
                return false;
            }
            let owned = match zk("exists", &path, client.check_stat(&path)).await {
                Ok(Some(stat)) => stat.ephemeral_owner == client.session_id().0,
                _ => false,
            };
            owned && active.load(Ordering::SeqCst)
        }
    }
}

/// `{uuid: registration}` from a snapshot node. Entries that are not usable registrations (not a
/// registration, or an address that [`Registration::validate_addresses`] refuses) are skipped with
/// a warning; data that is not a JSON object is an error, never "no pods": dependents would be
/// configured with an empty list.
pub fn parse_pods(data: &[u8]) -> Result<Pods, String> {
    let map = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
        .map_err(|e| format!("not a JSON object of registrations ({e})"))?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match serde_json::from_value::<Registration>(v) {
            Ok(r) => match r.validate_addresses() {
                Ok(()) => Some((k, r)),
                Err(e) => {
                    tracing::warn!(pod = %k.escape_default(), error = %e, "skipping an invalid registration in a snapshot");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(pod = %k.escape_default(), error = %e, "skipping an entry of a snapshot that is not a registration");
                None
            }
        })
        .collect())
}

/// Every registration under `pods/`, keyed by uuid (`ochopod_zk::scan_pods`). A node that
/// vanished between the list and the read, or whose data is not (yet) a registration, is skipped:
/// never a reason to fail (the original dropped leadership on either). A read that failed
/// otherwise fails the scan, which is retried: a round must not leave out a live pod.
pub async fn scan_pods(client: &Client, pods_dir: &str) -> Result<Pods, ZkError> {
    let scan = ochopod_zk::scan_pods(client, pods_dir, OP_TIMEOUT).await?;
    if let Some(e) = scan.unreadable() {
        return Err(e.clone());
    }
    for skipped in &scan.skipped {
        tracing::debug!(%skipped, "skipping a pod node");
    }
    Ok(scan.into_pods())
}

/// Reports the cluster's pods now and after every change below `pods/` (one persistent recursive
/// watch; a burst of events gives one scan).
pub async fn watch_local(client: Client, pods_dir: String, report: impl Fn(Pods) + Send) {
    // The watch goes first so that a change between it and the first scan is not missed.
    let mut watcher = loop {
        let armed = async {
            zk("mkdir", &pods_dir, client.mkdir(&pods_dir, &persistent())).await?;
            zk("watch", &pods_dir, client.watch(&pods_dir, AddWatchMode::PersistentRecursive)).await
        };
        match armed.await {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the cluster's pods: retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let mut last: Option<Pods> = None;
    loop {
        match scan_pods(&client, &pods_dir).await {
            Ok(pods) if last.as_ref() != Some(&pods) => {
                last = Some(pods.clone());
                report(pods);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the cluster's pods: retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        }
        loop {
            let event = watcher.changed().await;
            if is_terminal(event.event_type, event.session_state) {
                return;
            }
            // Events are lost during a reconnection (ZOOKEEPER-4698): a reconnection rescans too.
            if event.event_type != EventType::Session || event.session_state == SessionState::SyncConnected {
                break;
            }
        }
        while let Some(event) = watcher.changed().now_or_never() {
            if is_terminal(event.event_type, event.session_state) {
                return;
            }
        }
    }
}

/// Reports a dependency's pods now and after every change: the snapshot of one cluster, or the
/// merged snapshots of every cluster a glob matches (`None` while an exact dependency has no
/// snapshot). One-shot watches, re-armed on each read. A snapshot that cannot be read as pods is
/// reported as `Err` (the leader keeps the last good view) and watched until it is fixed.
pub async fn watch_dependency(
    client: Client,
    dependency: Dependency,
    report: impl Fn(Result<Option<Pods>, String>) + Send,
) {
    let mut last: Option<Option<Pods>> = None;
    loop {
        let read = match &dependency {
            Dependency::Exact { cluster, .. } => read_snapshot(&client, cluster).await.map(|(p, w)| (p, vec![w])),
            Dependency::Glob { .. } => read_glob(&client, &dependency).await,
        };
        match read {
            Ok((pods, watchers)) => {
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
                let (event, _, _) = select_all(watchers.into_iter().map(|w| Box::pin(w.changed()))).await;
                if is_terminal(event.event_type, event.session_state) {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(dependency = %dependency.entry(), error = %e, "reading a dependency: retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// A snapshot read, or why it cannot be used (naming the node).
type SnapshotRead = Result<Option<Pods>, String>;

async fn read_snapshot(client: &Client, cluster: &str) -> Result<(SnapshotRead, OneshotWatcher), ZkError> {
    let path = paths::snapshot_node(&format!("{ROOT}/{cluster}"));
    loop {
        match zk("get", &path, client.get_and_watch_data(&path)).await {
            Ok((data, _, watcher)) => {
                return Ok((parse_pods(&data).map(Some).map_err(|e| format!("{path}: {e}")), watcher))
            }
            Err(e) if e.is_no_node() => {
                let (stat, watcher) = zk("exists", &path, client.check_and_watch_stat(&path)).await?;
                if stat.is_none() {
                    return Ok((Ok(None), watcher));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn read_glob(client: &Client, dependency: &Dependency) -> Result<(SnapshotRead, Vec<OneshotWatcher>), ZkError> {
    let (children, watcher) = match zk("list", ROOT, client.list_and_watch_children(ROOT)).await {
        Ok(found) => found,
        Err(e) if e.is_no_node() => {
            let (_, watcher) = zk("exists", ROOT, client.check_and_watch_stat(ROOT)).await?;
            return Ok((Ok(Some(Pods::new())), vec![watcher]));
        }
        Err(e) => return Err(e),
    };
    let mut clusters = dependency.matching(children.iter().map(String::as_str));
    clusters.sort();
    let mut watchers = vec![watcher];
    let mut merged = Ok(Pods::new());
    for cluster in clusters {
        let (pods, watcher) = read_snapshot(client, &cluster).await?;
        watchers.push(watcher);
        match (&mut merged, pods) {
            (Ok(all), Ok(pods)) => all.extend(pods.unwrap_or_default()),
            (Ok(_), Err(e)) => merged = Err(e),
            (Err(_), _) => {}
        }
    }
    Ok((merged.map(Some), watchers))
}

/// What a new leader finds: the stored hash (`""` when never configured), the pods in
/// `snapshot`, if it holds one it owns after [`take_over`], and its fencing epoch.
pub struct Takeover {
    pub hash: String,
    pub published: Option<Pods>,
    pub epoch: u64,
}

/// Makes sure `hash` exists, reads it, and adopts the previous leader's `snapshot`: after a
/// graceful hand-over that node still belongs to the old session and would vanish with it, so
/// its content is copied into one of ours, and dependents see no gap.
///
/// The epoch is the lock's sequence, or one above the highest epoch a leader of this cluster
/// took (the `epoch` node) if that is higher: the sequence restarts when `coordinator/` is
/// recreated (ZooKeeper restored from nothing, the node deleted), and pods refuse commands from an
/// epoch older than the newest they applied. The epoch is recorded by a write fenced by our lock
/// node, so no two leaderships share one.
pub async fn take_over(client: &Client, lock: &LockNode, prefix: &str) -> Result<Takeover, ZkError> {
    let epoch_path = paths::epoch_node(prefix);
    zk("mkdir", &epoch_path, client.mkdir(&epoch_path, &persistent())).await?;
    let (floor, _) = zk("get", &epoch_path, client.get_data(&epoch_path)).await?;
    let floor = std::str::from_utf8(&floor).ok().and_then(|f| f.trim().parse::<u64>().ok());
    let epoch = match floor {
        Some(f) => lock.seq.max(f.saturating_add(1)),
        None => lock.seq,
    };
    record_epoch(client, lock, prefix, epoch).await?;
    let hash_path = paths::hash_node(prefix);
    zk("mkdir", &hash_path, client.mkdir(&hash_path, &persistent())).await?;
    let (hash, _) = zk("get", &hash_path, client.get_data(&hash_path)).await?;
    let hash = String::from_utf8_lossy(&hash).trim().to_string();
    let snapshot = paths::snapshot_node(prefix);
    let published = match zk("get", &snapshot, client.get_data(&snapshot)).await {
        Ok((data, stat)) => {
            // An unreadable snapshot of our own cluster is replaced by the next round's.
            let pods = parse_pods(&data).unwrap_or_else(|e| {
                tracing::warn!(node = %snapshot, error = %e, "the stored snapshot is unreadable");
                Pods::new()
            });
            if stat.ephemeral_owner != client.session_id().0 {
                publish(client, lock, prefix, &pods, None).await?;
            }
            Some(pods)
        }
        Err(e) if e.is_no_node() => None,
        Err(e) => return Err(e),
    };
    Ok(Takeover { hash, published, epoch })
}

/// Records `epoch` as the cluster's highest, in one transaction that checks our lock node: only
/// the current leader can raise it.
pub async fn record_epoch(client: &Client, lock: &LockNode, prefix: &str, epoch: u64) -> Result<(), ZkError> {
    let epoch_path = paths::epoch_node(prefix);
    let invalid = |source| ZkError::Failed { op: "multi", path: epoch_path.clone(), source };
    let mut tx = client.new_multi_writer();
    tx.add_check_version(&lock.path, lock.version).map_err(invalid)?;
    tx.add_set_data(&epoch_path, epoch.to_string().as_bytes(), None).map_err(invalid)?;
    match tokio::time::timeout(OP_TIMEOUT, tx.commit()).await {
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(ZkError::Timeout { op: "multi", path: epoch_path, after: OP_TIMEOUT }),
        Ok(Err(MultiWriteError::OperationFailed { index: 0, .. })) => Err(ZkError::Fenced { lock: lock.path.clone() }),
        Ok(Err(MultiWriteError::OperationFailed { source, .. } | MultiWriteError::RequestFailed { source })) => {
            Err(invalid(source))
        }
    }
}

/// Writes `snapshot` (an ephemeral of our session, replacing one left by another session) and
/// then `hash`, in one transaction that also checks our lock node: a leader that lost its lock
/// cannot write either.
pub async fn publish(
    client: &Client,
    lock: &LockNode,
    prefix: &str,
    snapshot: &Pods,
    hash: Option<&str>,
) -> Result<(), ZkError> {
    let snapshot_path = paths::snapshot_node(prefix);
    let hash_path = paths::hash_node(prefix);
    let data = serde_json::to_vec(snapshot).unwrap_or_else(|_| b"{}".to_vec());
    let invalid = |source| ZkError::Failed { op: "multi", path: snapshot_path.clone(), source };
    let mut last = None;
    for _ in 0..3 {
        let stat = zk("exists", &snapshot_path, client.check_stat(&snapshot_path)).await?;
        let mut tx = client.new_multi_writer();
        tx.add_check_version(&lock.path, lock.version).map_err(invalid)?;
        match stat {
            Some(s) if s.ephemeral_owner == client.session_id().0 => {
                tx.add_set_data(&snapshot_path, &data, Some(s.version)).map_err(invalid)?
            }
            Some(s) => {
                tx.add_delete(&snapshot_path, Some(s.version)).map_err(invalid)?;
                tx.add_create(&snapshot_path, &data, &ephemeral()).map_err(invalid)?;
            }
            None => tx.add_create(&snapshot_path, &data, &ephemeral()).map_err(invalid)?,
        }
        let hash_index = if matches!(stat, Some(s) if s.ephemeral_owner != client.session_id().0) { 3 } else { 2 };
        if let Some(h) = hash {
            tx.add_set_data(&hash_path, h.as_bytes(), None).map_err(invalid)?;
        }
        match tokio::time::timeout(OP_TIMEOUT, tx.commit()).await {
            Ok(Ok(_)) => return Ok(()),
            Err(_) => return Err(ZkError::Timeout { op: "multi", path: snapshot_path, after: OP_TIMEOUT }),
            Ok(Err(MultiWriteError::OperationFailed { index: 0, .. })) => {
                return Err(ZkError::Fenced { lock: lock.path.clone() })
            }
            Ok(Err(MultiWriteError::OperationFailed { index, source })) => {
                // The snapshot changed hands between our look and the write, or `hash` is gone:
                // look again.
                if index == hash_index {
                    zk("mkdir", &hash_path, client.mkdir(&hash_path, &persistent())).await?;
                }
                last = Some(ZkError::Failed { op: "multi", path: snapshot_path.clone(), source });
            }
            Ok(Err(MultiWriteError::RequestFailed { source })) => return Err(invalid(source)),
        }
    }
    Err(last.unwrap_or(ZkError::Timeout { op: "multi", path: snapshot_path, after: OP_TIMEOUT }))
}
