//! The ZooKeeper side of one generation: connect (through `ochopod_zk`, creating the chroot),
//! prepare the cluster's nodes, register. Every call is bounded by a timeout
//! (`ochopod_zk::timed`), because requests issued while disconnected hang until the client
//! reconnects or gives up.

use std::time::Duration;

use ochopod_config::ZkTarget;
use ochopod_core::{paths, Registration};
use ochopod_zk::{timed, ConnectOptions, ZkError};
use rand::Rng;
use zookeeper_client::{Acls, Client, CreateMode, MultiWriteError, StateWatcher};

use crate::plan::registration_json;
use crate::SessionError;

/// Everything one generation needs, cloned out of the actor so the future owns it.
#[derive(Debug, Clone)]
pub struct Params {
    pub target: ZkTarget,
    pub session_timeout: Duration,
    pub op_timeout: Duration,
    /// `/ochopod/clusters/<namespace>.<cluster>`.
    pub prefix: String,
    pub key: String,
    pub registration: Registration,
}

/// A registered generation: the client (the only long-lived one), its state watcher taken right
/// after connecting so no transition during registration is missed, and what was registered.
pub struct Registered {
    pub client: Client,
    pub states: StateWatcher,
    pub seq: u64,
    pub node: String,
}

/// How often the first registration may lose the race for its predicted sequence before the
/// attempt is given up (and retried later with backoff). Each loss means another pod registered,
/// so with N pods starting together at most N-1 rounds are lost.
const RESERVE_ATTEMPTS: u32 = 64;

/// Connects, prepares and registers; any failure drops the client (closing its session, so a
/// half-made registration disappears with it) and is returned for the caller to retry.
pub async fn establish(p: &Params, seq: Option<u64>) -> Result<Registered, SessionError> {
    let options = ConnectOptions {
        session_timeout: p.session_timeout,
        connect_timeout: p.session_timeout + Duration::from_secs(2),
        op_timeout: p.op_timeout,
        // A chrooted client cannot create its own chroot: a pod makes it on first use.
        create_chroot: true,
    };
    let (client, states) = ochopod_zk::connect(&p.target, &options).await?;
    prepare(&client, &p.prefix, p.op_timeout).await?;
    remove_leftovers(&client, &p.prefix, &p.key, p.op_timeout).await?;
    let (seq, node) = match seq {
        Some(seq) => (seq, register_again(&client, p, seq).await?),
        None => register_first(&client, p).await?,
    };
    Ok(Registered { client, states, seq, node })
}

/// The pods dir and the persistent (initially empty) `hash` node, as the original makes them.
/// Both exist but for the cluster's first pod: they are looked up first (a read), since a create
/// that fails is still a write ZooKeeper logs to disk, and pods starting together would queue
/// two of them each in front of their registrations.
async fn prepare(client: &Client, prefix: &str, op_timeout: Duration) -> Result<(), SessionError> {
    let dir = paths::pods_dir(prefix);
    let hash = paths::hash_node(prefix);
    let (has_dir, has_hash) = tokio::join!(
        timed("exists", &dir, op_timeout, client.check_stat(&dir)),
        timed("exists", &hash, op_timeout, client.check_stat(&hash)),
    );
    if has_dir?.is_some() && has_hash?.is_some() {
        return Ok(());
    }
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    timed("mkdir", &dir, op_timeout, client.mkdir(&dir, &persistent)).await?;
    match timed("create", &hash, op_timeout, client.create(&hash, b"", &persistent)).await {
        Ok(_) => Ok(()),
        Err(ZkError::Failed { source: zookeeper_client::Error::NodeExists, .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Nodes of our own key still present (from a session that was reset but not yet closed, or an
/// attempt whose answer timed out after it committed): deleting them keeps one node per pod.
async fn remove_leftovers(client: &Client, prefix: &str, key: &str, op_timeout: Duration) -> Result<(), SessionError> {
    let dir = paths::pods_dir(prefix);
    let children = timed("list", &dir, op_timeout, client.list_children(&dir)).await?;
    for name in children.iter().filter(|n| paths::pod_key(n) == key) {
        let path = format!("{dir}/{name}");
        match timed("delete", &path, op_timeout, client.delete(&path, None)).await {
            Ok(()) | Err(ZkError::Failed { source: zookeeper_client::Error::NoNode, .. }) => {
                tracing::info!(node = %path, "removed a leftover registration of this pod");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A later registration: the seq is known, so the JSON is complete before the create.
async fn register_again(client: &Client, p: &Params, seq: u64) -> Result<String, SessionError> {
    let prefix = paths::pod_node_prefix(&p.prefix, &p.key);
    let json = registration_json(&p.registration, seq, &p.target)?;
    let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let (_, sequence) = timed("create", &prefix, p.op_timeout, client.create(&prefix, &json, &options)).await?;
    Ok(format!("{prefix}{sequence}"))
}

/// The sequence ZooKeeper will give the next sequential child of a node. The server counts
/// creates only to name children, but reports `cversion` as creates + deletes (it stores creates
/// and returns `2 × creates − children`), so the two agree only until a child is first deleted.
pub(crate) fn next_sequence(cversion: i32, num_children: i32) -> Option<u64> {
    let creates = i64::from(cversion) + i64::from(num_children);
    if creates < 0 || creates % 2 != 0 {
        return None;
    }
    u64::try_from(creates / 2).ok()
}

/// The first registration: its seq is the node's own ZooKeeper sequence (as in the original), yet
/// the JSON carrying it must be there at create. ZooKeeper names a sequential child after the
/// number of children ever created under the parent ([`next_sequence`]), so: compute it = C, then
/// commit a multi of
/// [create `<uuid>.` sequential with seq C, check that `<uuid>.<C>` exists]. If any pod changed
/// `pods/` in between, the node got another name, the check fails, and the whole multi is rolled
/// back: nobody ever saw the node. Then read C again and retry.
async fn register_first(client: &Client, p: &Params) -> Result<(u64, String), SessionError> {
    let dir = paths::pods_dir(&p.prefix);
    let prefix = paths::pod_node_prefix(&p.prefix, &p.key);
    let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    for attempt in 0..RESERVE_ATTEMPTS {
        let stat = timed("exists", &dir, p.op_timeout, client.check_stat(&dir)).await?.ok_or_else(|| {
            ZkError::Failed { op: "exists", path: dir.clone(), source: zookeeper_client::Error::NoNode }
        })?;
        let predicted = next_sequence(stat.cversion, stat.num_children).ok_or_else(|| SessionError::Sequence {
            dir: dir.clone(),
            reason: format!("impossible child version {} with {} children", stat.cversion, stat.num_children),
        })?;
        let node = format!("{prefix}{predicted:010}");
        let json = registration_json(&p.registration, predicted, &p.target)?;
        let mut multi = client.new_multi_writer();
        multi
            .add_create(&prefix, &json, &options)
            .and_then(|_| multi.add_check_version(&node, -1))
            .map_err(|source| ZkError::Failed { op: "multi", path: node.clone(), source })?;
        match tokio::time::timeout(p.op_timeout, multi.commit()).await {
            Err(_) => return Err(ZkError::Timeout { op: "multi", path: node, after: p.op_timeout }.into()),
            Ok(Ok(results)) => {
                // The check passing proves the name; the returned path is only cross-checked.
                if let Some(zookeeper_client::MultiWriteResult::Create { path, .. }) = results.first() {
                    if paths::sequence_of(path) != Some(predicted) {
                        tracing::warn!(%path, predicted, "created node name differs from the predicted one");
                    }
                }
                return Ok((predicted, node));
            }
            Ok(Err(MultiWriteError::OperationFailed { index: 1, source: zookeeper_client::Error::NoNode })) => {
                tracing::debug!(attempt, predicted, "another pod registered first; predicting again");
                let pause = rand::rng().random_range(0..=10 * u64::from(attempt.min(10)));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Ok(Err(e)) => return Err(ZkError::Failed { op: "multi", path: node, source: e.into() }.into()),
        }
    }
    Err(SessionError::Sequence { dir, reason: format!("lost the race {RESERVE_ATTEMPTS} times in a row") })
}

#[cfg(test)]
mod sequence_tests {
    use super::next_sequence;

    #[test]
    fn the_next_sequence_counts_creates_not_deletes() {
        // Fresh parent: nothing created yet.
        assert_eq!(next_sequence(0, 0), Some(0));
        // 3 created, none deleted: cversion 3, 3 children.
        assert_eq!(next_sequence(3, 3), Some(3));
        // 3 created, 2 deleted (measured on ZooKeeper 3.8: cversion 5, 1 child): next is 3.
        assert_eq!(next_sequence(5, 1), Some(3));
        // 4 created, all deleted: cversion 8, no child.
        assert_eq!(next_sequence(8, 0), Some(4));
        assert_eq!(next_sequence(-1, 0), None);
        assert_eq!(next_sequence(4, 1), None);
    }
}
