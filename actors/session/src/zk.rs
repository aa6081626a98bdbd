//! The ZooKeeper side of one generation: connect, prepare the cluster's nodes, register. Every
//! call is bounded by a timeout, because requests issued while disconnected hang until the
//! client reconnects or gives up.

use std::future::Future;
use std::time::Duration;

use ochopod_core::{paths, Registration};
use rand::Rng;
use zookeeper_client::{Acls, Client, CreateMode, MultiWriteError, StateWatcher};

use crate::plan::{registration_json, ConnectTarget};
use crate::SessionError;

/// Everything one generation needs, cloned out of the actor so the future owns it.
#[derive(Debug, Clone)]
pub struct Params {
    pub target: Result<ConnectTarget, String>,
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

pub async fn timed<T>(
    op: &'static str,
    path: &str,
    after: Duration,
    fut: impl Future<Output = Result<T, zookeeper_client::Error>>,
) -> Result<T, SessionError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(SessionError::Zk { op, path: path.to_string(), source }),
        Err(_) => Err(SessionError::Timeout { op, path: path.to_string(), after }),
    }
}

/// Connects, prepares and registers; any failure drops the client (closing its session, so a
/// half-made registration disappears with it) and is returned for the caller to retry.
pub async fn establish(p: &Params, seq: Option<u64>) -> Result<Registered, SessionError> {
    let target = p.target.as_ref().map_err(|reason| SessionError::Config(reason.clone()))?;
    let (client, states) = connect(target, p.session_timeout, p.op_timeout).await?;
    prepare(&client, &p.prefix, p.op_timeout).await?;
    remove_leftovers(&client, &p.prefix, &p.key, p.op_timeout).await?;
    let (seq, node) = match seq {
        Some(seq) => (seq, register_again(&client, p, seq).await?),
        None => register_first(&client, p).await?,
    };
    Ok(Registered { client, states, seq, node })
}

async fn connect(
    target: &ConnectTarget,
    session_timeout: Duration,
    op_timeout: Duration,
) -> Result<(Client, StateWatcher), SessionError> {
    // Fail eagerly: our own capped backoff retries, logging each failure, instead of the
    // client cycling silently through the servers for a whole session timeout.
    let mut connector = Client::connector().with_session_timeout(session_timeout).with_fail_eagerly();
    if let Some(digest) = &target.digest {
        connector = connector.with_auth("digest", digest.as_bytes());
    }
    let bound = session_timeout + Duration::from_secs(2);
    let client = match tokio::time::timeout(bound, connector.connect(&target.hosts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(source)) => return Err(SessionError::Connect { hosts: target.hosts.clone(), source }),
        Err(_) => return Err(SessionError::Timeout { op: "connect", path: target.hosts.clone(), after: bound }),
    };
    let states = client.state_watcher();
    let client = match &target.chroot {
        None => client,
        Some(chroot) => {
            if timed("exists", chroot, op_timeout, client.check_stat(chroot)).await?.is_none() {
                let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
                timed("mkdir", chroot, op_timeout, client.mkdir(chroot, &options)).await?;
            }
            client.chroot(chroot.as_str()).map_err(|_| SessionError::BadChroot {
                chroot: chroot.clone(),
                reason: "rejected by the client".into(),
            })?
        }
    };
    Ok((client, states))
}

/// The pods dir and the persistent (initially empty) `hash` node, as the original makes them.
async fn prepare(client: &Client, prefix: &str, op_timeout: Duration) -> Result<(), SessionError> {
    let dir = paths::pods_dir(prefix);
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    timed("mkdir", &dir, op_timeout, client.mkdir(&dir, &persistent)).await?;
    let hash = paths::hash_node(prefix);
    match timed("create", &hash, op_timeout, client.create(&hash, b"", &persistent)).await {
        Ok(_) => Ok(()),
        Err(SessionError::Zk { source: zookeeper_client::Error::NodeExists, .. }) => Ok(()),
        Err(e) => Err(e),
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
            Ok(()) | Err(SessionError::Zk { source: zookeeper_client::Error::NoNode, .. }) => {
                tracing::info!(node = %path, "removed a leftover registration of this pod");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A later registration: the seq is known, so the JSON is complete before the create.
async fn register_again(client: &Client, p: &Params, seq: u64) -> Result<String, SessionError> {
    let prefix = paths::pod_node_prefix(&p.prefix, &p.key);
    let json = registration_json(&p.registration, seq)?;
    let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let (_, sequence) = timed("create", &prefix, p.op_timeout, client.create(&prefix, &json, &options)).await?;
    Ok(format!("{prefix}{sequence}"))
}

/// The first registration: its seq is the node's own ZooKeeper sequence (as in the original), yet
/// the JSON carrying it must be there at create. ZooKeeper names a sequential child after its
/// parent's `cversion`, so: read `cversion` = C, then commit a multi of
/// [create `<uuid>.` sequential with seq C, check that `<uuid>.<C>` exists]. If any pod changed
/// `pods/` in between, the node got another name, the check fails, and the whole multi is rolled
/// back: nobody ever saw the node. Then read C again and retry.
async fn register_first(client: &Client, p: &Params) -> Result<(u64, String), SessionError> {
    let dir = paths::pods_dir(&p.prefix);
    let prefix = paths::pod_node_prefix(&p.prefix, &p.key);
    let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    for attempt in 0..RESERVE_ATTEMPTS {
        let stat = timed("exists", &dir, p.op_timeout, client.check_stat(&dir)).await?.ok_or_else(|| {
            SessionError::Zk { op: "exists", path: dir.clone(), source: zookeeper_client::Error::NoNode }
        })?;
        let predicted = u64::try_from(stat.cversion).map_err(|_| SessionError::Sequence {
            dir: dir.clone(),
            reason: format!("negative child version {}", stat.cversion),
        })?;
        let node = format!("{prefix}{predicted:010}");
        let json = registration_json(&p.registration, predicted)?;
        let mut multi = client.new_multi_writer();
        multi
            .add_create(&prefix, &json, &options)
            .and_then(|_| multi.add_check_version(&node, -1))
            .map_err(|source| SessionError::Zk { op: "multi", path: node.clone(), source })?;
        match tokio::time::timeout(p.op_timeout, multi.commit()).await {
            Err(_) => return Err(SessionError::Timeout { op: "multi", path: node, after: p.op_timeout }),
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
            Ok(Err(e)) => return Err(SessionError::Zk { op: "multi", path: node, source: e.into() }),
        }
    }
    Err(SessionError::Sequence { dir, reason: format!("lost the race {RESERVE_ATTEMPTS} times in a row") })
}
