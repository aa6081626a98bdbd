//! "Settled", defined once (DESIGN.md §8) for the benchmark and every test that waits for a
//! formed cluster: every pod's process runs, exactly one pod's state is plain `leader` (not
//! configuring, not pending) and every other is `follower`, `pods/` holds N registrations (nodes
//! that are no usable registration do not count) and `snapshot` N entries. The `hash` that was written comes back, so a failover can wait for a
//! settled cluster with a *new* hash.

use std::time::Duration;

use futures::future::join_all;
use ochopod_api::{Info, PodClient};
use ochopod_core::paths;
use zookeeper_client as zk;

use crate::wait;

/// A settled cluster, as seen by [`settled_now`].
#[derive(Clone, Debug)]
pub struct Settled {
    /// Index (in the addresses given) of the leader.
    pub leader: usize,
    /// The `hash` node's content.
    pub hash: String,
    /// Every pod's `/info`, in the addresses' order.
    pub infos: Vec<Info>,
}

/// One look at the cluster of the pods at `addresses` (control API), read through `http` (plain
/// or TLS) and the ZooKeeper client `zk`. `Err` says what is not settled yet.
pub async fn settled_now(
    http: &PodClient,
    zk: &zk::Client,
    addresses: &[String],
    size: usize,
) -> Result<Settled, String> {
    settled_on(http, &Store::Zk(zk), addresses, size).await
}

/// Where a settled cluster's registrations, snapshot and hash are read: the same definition on
/// either backend.
#[derive(Clone, Copy)]
pub enum Store<'a> {
    Zk(&'a zk::Client),
    /// An etcd client and the pods' key prefix (`/ochopod` unless their URL says otherwise).
    Etcd {
        client: &'a etcd_client::Client,
        root: &'a str,
    },
}

/// [`settled_now`] on either backend.
pub async fn settled_on(
    http: &PodClient,
    store: &Store<'_>,
    addresses: &[String],
    size: usize,
) -> Result<Settled, String> {
    // Every pod at once (DESIGN.md §8 polls them in parallel): one look at 200 pods costs one
    // round trip, not 200, so the time measured is the cluster's, not the poller's.
    let replies = join_all(addresses.iter().map(|a| http.info(a, Duration::from_secs(3)))).await;
    let mut infos = Vec::with_capacity(addresses.len());
    for (address, reply) in addresses.iter().zip(replies) {
        let info = reply.map_err(|e| format!("{address}: {e}"))?;
        if info.process != "running" {
            return Err(format!("{address} process {}", info.process));
        }
        infos.push(info);
    }
    let leaders: Vec<usize> = (0..infos.len()).filter(|&n| infos[n].state == "leader").collect();
    let followers = infos.iter().filter(|i| i.state == "follower").count();
    let [leader] = leaders[..] else {
        return Err(format!("states {:?}", infos.iter().map(|i| &i.state).collect::<Vec<_>>()));
    };
    if followers + 1 != infos.len() {
        return Err(format!("states {:?}", infos.iter().map(|i| &i.state).collect::<Vec<_>>()));
    }
    let zk = match store {
        Store::Zk(zk) => *zk,
        Store::Etcd { client, root } => {
            let (hash, registered, entries) = etcd_state(client, root, &infos[leader]).await?;
            if registered != size {
                return Err(format!("{registered} registrations, want {size}"));
            }
            if entries != size {
                return Err(format!("{entries} pods in the snapshot, want {size}"));
            }
            return Ok(Settled { leader, hash, infos });
        }
    };
    let prefix = paths::cluster_prefix(&infos[leader].namespace, &infos[leader].cluster);
    let pods_dir = paths::pods_dir(&prefix);
    let children = zk.list_children(&pods_dir).await.map_err(|e| format!("list {pods_dir}: {e}"))?;
    let mut registered = children.len();
    if registered != size {
        // Nodes that are no usable registration (a test's hostile ones) are no pods.
        registered = 0;
        for child in &children {
            let Ok((data, _)) = zk.get_data(&format!("{pods_dir}/{child}")).await else { continue };
            let usable = serde_json::from_slice::<ochopod_core::Registration>(&data)
                .is_ok_and(|r| r.validate(r.port.parse().unwrap_or(8080)).is_ok());
            registered += usize::from(usable);
        }
    }
    if registered != size {
        return Err(format!("{registered} registrations under {pods_dir}, want {size}"));
    }
    let snapshot_node = paths::snapshot_node(&prefix);
    let (snapshot, _) = zk.get_data(&snapshot_node).await.map_err(|e| format!("get {snapshot_node}: {e}"))?;
    let entries = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&snapshot)
        .map_err(|e| format!("{snapshot_node}: {e}"))?
        .len();
    if entries != size {
        return Err(format!("{entries} pods in {snapshot_node}, want {size}"));
    }
    let hash_node = paths::hash_node(&prefix);
    let (hash, _) = zk.get_data(&hash_node).await.map_err(|e| format!("get {hash_node}: {e}"))?;
    Ok(Settled { leader, hash: String::from_utf8_lossy(&hash).into_owned(), infos })
}

/// The hash, the usable registrations and the snapshot's entries of `info`'s cluster on etcd.
async fn etcd_state(client: &etcd_client::Client, root: &str, info: &Info) -> Result<(String, usize, usize), String> {
    let prefix = format!("{root}/clusters/{}.{}", info.namespace, info.cluster);
    let pods = crate::etcd::get_prefix(client, &format!("{prefix}/pods/")).await.map_err(|e| e.to_string())?;
    let registered = pods
        .iter()
        .filter(|(_, v)| {
            serde_json::from_str::<ochopod_core::Registration>(v)
                .is_ok_and(|r| r.validate(r.port.parse().unwrap_or(8080)).is_ok())
        })
        .count();
    let one = |key: String| async move {
        let found = crate::etcd::get_prefix(client, &key).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(found.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v))
    };
    let snapshot = one(paths::snapshot_node(&prefix)).await?.ok_or_else(|| format!("no {prefix}/snapshot"))?;
    let entries = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&snapshot)
        .map_err(|e| format!("{prefix}/snapshot: {e}"))?
        .len();
    let hash = one(paths::hash_node(&prefix)).await?.unwrap_or_default();
    Ok((hash, registered, entries))
}

/// [`wait_settled`] on either backend.
pub async fn wait_settled_on(
    http: &PodClient,
    store: &Store<'_>,
    addresses: &[String],
    size: usize,
    timeout: Duration,
    accept: impl Fn(&Settled) -> bool,
) -> anyhow::Result<Settled> {
    wait::until(&format!("{} pods settled with {size} registered", addresses.len()), timeout, || async {
        let settled = settled_on(http, store, addresses, size).await?;
        if accept(&settled) {
            Ok(settled)
        } else {
            Err(format!("settled, but not as wanted (hash {})", settled.hash))
        }
    })
    .await
}

/// Waits (bounded by `timeout`) until [`settled_now`] holds and `accept` agrees (e.g. a hash
/// other than the one before a failover); the error names the last observation.
pub async fn wait_settled(
    http: &PodClient,
    zk: &zk::Client,
    addresses: &[String],
    size: usize,
    timeout: Duration,
    accept: impl Fn(&Settled) -> bool,
) -> anyhow::Result<Settled> {
    wait_settled_on(http, &Store::Zk(zk), addresses, size, timeout, accept).await
}

/// A ZooKeeper client for [`settled_now`], bounded in time.
pub async fn client(connect: &str) -> anyhow::Result<zk::Client> {
    let connecting = zk::Client::connector().with_session_timeout(Duration::from_secs(10)).connect(connect);
    match tokio::time::timeout(Duration::from_secs(20), connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => anyhow::bail!("connecting to ZooKeeper at {connect}: {e}"),
        Err(_) => anyhow::bail!("connecting to ZooKeeper at {connect}: no session within 20 s"),
    }
}
