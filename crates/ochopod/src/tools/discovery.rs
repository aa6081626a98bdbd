//! Finding pods: cluster globs over the children of `/ochopod/clusters`, then every pod's
//! registration, read from ZooKeeper exactly as the original tooling did (same layout, so
//! Python pods are found too). Connecting, bounding calls and scanning `pods/` are the shared
//! `ochopod_zk` ones the pods themselves use. With `OCHOPOD_ETCD` set, the same reads go to etcd
//! (`ochopod_etcd`, the same layout below the target's prefix).

use std::collections::BTreeSet;
use std::time::Duration;

use ochopod_core::{paths, InvalidRegistration, Registration};
use ochopod_zk::{scan_pods, timed, ConnectOptions, SkipReason};
use serde::Serialize;
use zookeeper_client::Client;

/// The control port assumed for a pod that registered none (the original's default).
pub const FALLBACK_CONTROL_PORT: u16 = 8080;

/// Every ZooKeeper call is bounded: a request issued while the client is disconnected would
/// otherwise hang until the session expires.
const ZK_OP_TIMEOUT: Duration = Duration::from_secs(10);
const ZK_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect, from `--zk` / `OCHOPOD_ZK`: `[zk://][user:pass@]host:port[,host:port…][/chroot]`,
/// read by the same parser as a pod's declaration.
pub use ochopod_config::ZkTarget;

/// A bare name without a dot (`zookeeper`) means that cluster in any namespace (`*.zookeeper`):
/// every cluster name is `<namespace>.<cluster>`, so such a glob could never match as written.
pub fn normalise_glob(glob: &str) -> String {
    if glob.contains('.') {
        glob.to_string()
    } else {
        format!("*.{glob}")
    }
}

/// The cluster names matching any of `globs` (all of them when `globs` is empty), sorted.
pub fn match_clusters(names: &[String], globs: &[String]) -> Vec<String> {
    let patterns: Vec<String> = globs.iter().map(|g| normalise_glob(g)).collect();
    let matched: BTreeSet<&String> = names
        .iter()
        .filter(|n| patterns.is_empty() || patterns.iter().any(|p| ochopod_core::deps::glob_match(p, n)))
        .collect();
    matched.into_iter().cloned().collect()
}

/// One pod as found in ZooKeeper.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PodEntry {
    /// `<namespace>.<cluster>`, from the cluster node's name.
    pub cluster: String,
    pub seq: u64,
    /// The pod's key: the uuid part of its node name.
    pub uuid: String,
    /// Where its control API answers: only for a registration that passed
    /// [`Registration::validate`], so that no request (and no token) ever goes to an address an
    /// attacker spelled into the registration. `None` when it publishes no control port or is
    /// invalid.
    pub address: Option<String>,
    /// Why the registration cannot be used, when it cannot (a missing control port is not
    /// counted here: it is [`address`](Self::address) `None` alone, as it always was).
    #[serde(skip)]
    pub invalid: Option<InvalidRegistration>,
    #[serde(skip)]
    pub registration: Registration,
}

impl PodEntry {
    pub fn from_node(cluster: &str, node_name: &str, registration: Registration) -> PodEntry {
        let (address, invalid) = match registration.validate(FALLBACK_CONTROL_PORT) {
            Ok(address) => (Some(address), None),
            Err(InvalidRegistration::NoControlPort(_)) => (None, None),
            Err(why) => (None, Some(why)),
        };
        PodEntry {
            cluster: cluster.to_string(),
            seq: registration.seq,
            uuid: paths::pod_key(node_name).to_string(),
            address,
            invalid,
            registration,
        }
    }

    /// `<namespace>.<cluster> #<seq>`, as the original tools showed pods.
    pub fn key(&self) -> String {
        format!("{} #{}", self.cluster, self.seq)
    }
}

/// Keeps the pods whose seq is listed (all when `seqs` is empty); also returns the seqs that
/// matched no pod, so that a typo is reported instead of silently doing less.
pub fn select_seqs(pods: Vec<PodEntry>, seqs: &[u64]) -> (Vec<PodEntry>, Vec<u64>) {
    if seqs.is_empty() {
        return (pods, Vec::new());
    }
    let missing: Vec<u64> = seqs
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|s| !pods.iter().any(|p| p.seq == *s))
        .collect();
    let kept = pods.into_iter().filter(|p| seqs.contains(&p.seq)).collect();
    (kept, missing)
}

/// What a lookup found.
#[derive(Debug, Default)]
pub struct Found {
    /// Matched cluster names, sorted (a cluster may have no pods).
    pub clusters: Vec<String>,
    /// Their pods, sorted by cluster then seq.
    pub pods: Vec<PodEntry>,
    /// Nodes skipped (empty while a pod registers, unreadable JSON…), one line each.
    pub warnings: Vec<String>,
    /// Matched clusters that are gone: no pod node left under `pods/` and no snapshot (the
    /// leader's ephemeral node), only the persistent nodes a cluster leaves behind.
    pub gone: Vec<String>,
}

/// A read-only session for one tool invocation: ZooKeeper (`--zk`/`OCHOPOD_ZK`), or etcd when
/// `OCHOPOD_ETCD` names an etcd cluster, as it does for pods.
pub struct Zk {
    store: Store,
}

enum Store {
    Zk { client: Client, target: ZkTarget },
    Etcd { client: Box<ochopod_etcd::etcd_client::Client>, target: ochopod_config::EtcdTarget },
}

impl Zk {
    pub async fn connect(target: ZkTarget) -> Result<Zk, String> {
        if let Some(etcd) = etcd_target()? {
            let client =
                ochopod_etcd::connect(&etcd, ZK_CONNECT_TIMEOUT, ZK_OP_TIMEOUT).await.map_err(|e| e.to_string())?;
            return Ok(Zk { store: Store::Etcd { client: Box::new(client), target: etcd } });
        }
        let options = ConnectOptions {
            session_timeout: Duration::from_secs(10),
            connect_timeout: ZK_CONNECT_TIMEOUT,
            op_timeout: ZK_OP_TIMEOUT,
            // A read-only tool writes nothing, not even a missing chroot.
            create_chroot: false,
        };
        let (client, _) = ochopod_zk::connect(&target, &options).await.map_err(|e| e.to_string())?;
        Ok(Zk { store: Store::Zk { client, target } })
    }

    /// Cluster names under `/ochopod/clusters` (none when it does not exist yet).
    pub async fn cluster_names(&self) -> Result<Vec<String>, String> {
        let (client, target) = match &self.store {
            Store::Zk { client, target } => (client, target),
            Store::Etcd { client, target } => return etcd_cluster_names(client, target).await,
        };
        match timed("list", paths::ROOT, ZK_OP_TIMEOUT, client.list_children(paths::ROOT)).await {
            Ok(mut names) => {
                names.sort();
                Ok(names)
            }
            Err(e) if e.is_no_node() => Ok(Vec::new()),
            Err(e) => Err(format!("cannot list {} on ZooKeeper {}: {e}", paths::ROOT, target)),
        }
    }

    /// The clusters matching `globs` and their pods. Nodes that cannot be read are skipped with
    /// a warning: one broken registration must not hide the rest.
    pub async fn find(&self, globs: &[String]) -> Result<Found, String> {
        let names = self.cluster_names().await?;
        let clusters = match_clusters(&names, globs);
        let mut found = Found { clusters: clusters.clone(), ..Found::default() };
        for cluster in &clusters {
            let prefix = self.prefix(cluster);
            let dir = paths::pods_dir(&prefix);
            let scanned = match &self.store {
                Store::Zk { client, .. } => {
                    scan_pods(client, &dir, ZK_OP_TIMEOUT).await.map_err(|e| (e.is_no_node(), e.to_string()))
                }
                Store::Etcd { client, .. } => {
                    ochopod_etcd::scan_pods(client, &prefix, ZK_OP_TIMEOUT).await.map_err(|e| (false, e.to_string()))
                }
            };
            let scan = match scanned {
                Ok(scan) => scan,
                Err((true, _)) => {
                    if self.is_gone(&prefix).await {
                        found.gone.push(cluster.clone());
                    }
                    continue;
                }
                Err((false, e)) => {
                    found.warnings.push(format!("{dir}: cannot list pods ({e})"));
                    continue;
                }
            };
            let left = scan.skipped.iter().filter(|s| !matches!(s.reason, SkipReason::Vanished)).count();
            if scan.pods.is_empty() && left == 0 && self.is_gone(&prefix).await {
                found.gone.push(cluster.clone());
            }
            for skipped in &scan.skipped {
                // A pod that left between the listing and the read is simply gone.
                if !matches!(skipped.reason, SkipReason::Vanished) {
                    found.warnings.push(skipped.to_string());
                }
            }
            for pod in scan.pods.into_values() {
                found.pods.push(PodEntry::from_node(cluster, &pod.node, pod.registration));
            }
        }
        found.pods.sort_by(|a, b| (&a.cluster, a.seq).cmp(&(&b.cluster, b.seq)));
        Ok(found)
    }

    /// Where `cluster`'s nodes (or keys) live.
    fn prefix(&self, cluster: &str) -> String {
        match &self.store {
            Store::Zk { .. } => format!("{}/{cluster}", paths::ROOT),
            Store::Etcd { target, .. } => format!("{}{cluster}", ochopod_etcd::keys::clusters(&target.prefix)),
        }
    }

    /// One value (and its ZooKeeper mtime; 0 on etcd, which keeps no write time).
    async fn get(&self, key: &str) -> Option<(Vec<u8>, i64)> {
        match &self.store {
            Store::Zk { client, .. } => {
                let (data, stat) = timed("get", key, ZK_OP_TIMEOUT, client.get_data(key)).await.ok()?;
                Some((data, stat.mtime))
            }
            Store::Etcd { client, .. } => {
                let mut kv = client.kv_client();
                let read = ochopod_etcd::timed("get", key, ZK_OP_TIMEOUT, kv.get(key, None)).await.ok()?;
                read.kvs().first().map(|kv| (kv.value().to_vec(), 0))
            }
        }
    }

    /// Whether the cluster under `prefix` has no snapshot either: no leader is left to publish
    /// one. In doubt (the store does not say), it is not gone.
    async fn is_gone(&self, prefix: &str) -> bool {
        let snapshot = paths::snapshot_node(prefix);
        match &self.store {
            Store::Zk { client, .. } => {
                matches!(timed("exists", &snapshot, ZK_OP_TIMEOUT, client.check_stat(&snapshot)).await, Ok(None))
            }
            Store::Etcd { client, .. } => {
                let mut kv = client.kv_client();
                let read = ochopod_etcd::timed("get", &snapshot, ZK_OP_TIMEOUT, kv.get(snapshot.as_str(), None)).await;
                matches!(read, Ok(r) if r.kvs().is_empty())
            }
        }
    }

    /// The keys of the pods the cluster's leader last configured (its `snapshot`), or `None`
    /// while no leader published one.
    pub async fn snapshot_keys(&self, cluster: &str) -> Option<BTreeSet<String>> {
        let (data, _) = self.get(&paths::snapshot_node(&self.prefix(cluster))).await?;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&data).ok()?;
        Some(map.keys().cloned().collect())
    }

    /// The cluster's hash (what its leader last configured) and when it was last written (unix
    /// milliseconds; 0 on etcd), or `None` while no round completed.
    pub async fn hash(&self, cluster: &str) -> Option<(String, i64)> {
        let (data, mtime) = self.get(&paths::hash_node(&self.prefix(cluster))).await?;
        Some((String::from_utf8_lossy(&data).into_owned(), mtime))
    }

    /// Deletes `/ochopod/clusters/<cluster>` and everything under it (the portal's `delete`,
    /// once the cluster's pods are gone); on etcd, every key below `<prefix>/clusters/<cluster>/`
    /// in one request. On ZooKeeper, a node that a pod creates meanwhile fails the call.
    pub async fn purge(&self, cluster: &str) -> Result<usize, String> {
        let root = self.prefix(cluster);
        let client = match &self.store {
            Store::Zk { client, .. } => client,
            Store::Etcd { client, .. } => {
                let mut kv = client.kv_client();
                let options = ochopod_etcd::etcd_client::DeleteOptions::new().with_prefix();
                let dir = format!("{root}/");
                let deleted =
                    ochopod_etcd::timed("delete", &dir, ZK_OP_TIMEOUT, kv.delete(dir.as_str(), Some(options)))
                        .await
                        .map_err(|e| format!("cannot delete {dir}: {e}"))?;
                return Ok(deleted.deleted().max(0) as usize);
            }
        };
        let mut order = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(node) = stack.pop() {
            match timed("list", &node, ZK_OP_TIMEOUT, client.list_children(&node)).await {
                Ok(children) => stack.extend(children.into_iter().map(|c| format!("{node}/{c}"))),
                Err(e) if e.is_no_node() => continue,
                Err(e) => return Err(format!("cannot list {node}: {e}")),
            }
            order.push(node);
        }
        let mut deleted = 0;
        // Children before their parents: the reverse of the order they were found in.
        for node in order.iter().rev() {
            match timed("delete", node, ZK_OP_TIMEOUT, client.delete(node, None)).await {
                Ok(()) => deleted += 1,
                Err(e) if e.is_no_node() => {}
                Err(e) => return Err(format!("cannot delete {node}: {e}")),
            }
        }
        Ok(deleted)
    }

    /// Closes the session now (rather than leaving it to expire), while the runtime still runs
    /// the client's background task.
    pub async fn close(self) {
        if let Store::Zk { client, .. } = self.store {
            ochopod_zk::close(client, Duration::from_secs(2)).await;
        }
    }
}

/// The store the tools read, for messages: `ZooKeeper <hosts>`, or `the coordination store
/// (etcd etcd://<hosts>/<prefix>)` when `OCHOPOD_ETCD` selects etcd; never the credentials.
pub fn store_label(zk: &ZkTarget) -> String {
    match etcd_target() {
        Ok(Some(etcd)) => format!("the coordination store (etcd {etcd})"),
        Ok(None) => format!("ZooKeeper {zk}"),
        Err(_) => format!("the coordination store ({} does not parse)", ochopod_config::etcd::ENV),
    }
}

/// What a cluster leaves in the store: `etcd keys`, or `ZooKeeper nodes`.
pub fn store_nodes() -> &'static str {
    match etcd_target() {
        Ok(Some(_)) => "etcd keys",
        _ => "ZooKeeper nodes",
    }
}

/// `OCHOPOD_ETCD`, when set: the tools then read etcd, as the pods it selects do.
fn etcd_target() -> Result<Option<ochopod_config::EtcdTarget>, String> {
    match std::env::var(ochopod_config::etcd::ENV) {
        Ok(v) if !v.trim().is_empty() => {
            ochopod_config::EtcdTarget::parse(&v).map(Some).map_err(|e| format!("{}: {e}", ochopod_config::etcd::ENV))
        }
        _ => Ok(None),
    }
}

/// Cluster names on etcd: the distinct `<namespace>.<cluster>` below `<prefix>/clusters/`.
async fn etcd_cluster_names(
    client: &ochopod_etcd::etcd_client::Client,
    target: &ochopod_config::EtcdTarget,
) -> Result<Vec<String>, String> {
    let dir = ochopod_etcd::keys::clusters(&target.prefix);
    let mut kv = client.kv_client();
    let options = ochopod_etcd::etcd_client::GetOptions::new().with_prefix().with_keys_only().with_limit(100_000);
    let listed = ochopod_etcd::timed("get", &dir, ZK_OP_TIMEOUT, kv.get(dir.as_str(), Some(options)))
        .await
        .map_err(|e| format!("cannot list {dir} on etcd {target}: {e}"))?;
    let names: BTreeSet<String> = listed
        .kvs()
        .iter()
        .filter_map(|kv| {
            ochopod_etcd::keys::cluster_of(&target.prefix, &String::from_utf8_lossy(kv.key())).map(str::to_owned)
        })
        .collect();
    Ok(names.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tools_read_connect_strings_with_the_pods_parser() {
        let t = ZkTarget::parse("zk://u:p@h1:2181,h2:2181/mesos/").unwrap();
        assert_eq!((t.hosts.as_str(), t.chroot.as_deref()), ("h1:2181,h2:2181", Some("/mesos")));
        assert!(!format!("{t:?}").contains("u:p"));
        assert_eq!(t.to_string(), "h1:2181,h2:2181/mesos");
        // What a pod would refuse at load, the tools refuse too, without echoing the password.
        let e = ZkTarget::parse("zk://secret@h:1").unwrap_err();
        assert!(e.contains("user:password") && !e.contains("secret"), "{e}");
        assert!(ZkTarget::parse("h:1,,h:2").is_err());
    }

    #[test]
    fn a_bare_name_matches_that_cluster_in_every_namespace() {
        assert_eq!(normalise_glob("zookeeper"), "*.zookeeper");
        assert_eq!(normalise_glob("web-*"), "*.web-*");
        assert_eq!(normalise_glob("demo.web"), "demo.web");
        let all = names(&["demo.zookeeper", "prod.zookeeper", "demo.kafka", "demo.zookeeper-old"]);
        assert_eq!(match_clusters(&all, &names(&["zookeeper"])), names(&["demo.zookeeper", "prod.zookeeper"]));
    }

    #[test]
    fn globs_select_over_namespace_and_cluster() {
        let all = names(&["demo.web-1", "demo.web-2", "demo.db", "prod.web-1"]);
        assert_eq!(match_clusters(&all, &[]), names(&["demo.db", "demo.web-1", "demo.web-2", "prod.web-1"]));
        assert_eq!(match_clusters(&all, &names(&["demo.web-*"])), names(&["demo.web-1", "demo.web-2"]));
        assert_eq!(
            match_clusters(&all, &names(&["*.web-1", "demo.db"])),
            names(&["demo.db", "demo.web-1", "prod.web-1"])
        );
        assert_eq!(
            match_clusters(&all, &names(&["demo.web-[12]", "demo.web-1"])),
            names(&["demo.web-1", "demo.web-2"])
        );
        assert!(match_clusters(&all, &names(&["nope"])).is_empty());
    }

    fn pod(cluster: &str, seq: u64) -> PodEntry {
        let reg = Registration {
            ip: "10.0.0.1".into(),
            port: "8080".into(),
            ports: [("8080".to_string(), 1024)].into(),
            seq,
            ..Default::default()
        };
        PodEntry::from_node(cluster, &format!("7c9e6679-7425-40de-944b-e07fc1f90ae7.{seq:010}"), reg)
    }

    #[test]
    fn pods_are_keyed_and_addressed_like_the_original() {
        let p = pod("demo.web", 12);
        assert_eq!(p.key(), "demo.web #12");
        assert_eq!(p.uuid, "7c9e6679-7425-40de-944b-e07fc1f90ae7");
        assert_eq!(p.address.as_deref(), Some("10.0.0.1:1024"));
        let reg = ochopod_zk::parse_registration("u.0000000042", b"{}").unwrap();
        let bare = PodEntry::from_node("a.b", "u.0000000042", reg);
        assert_eq!((bare.seq, bare.address), (42, None));
    }

    #[test]
    fn an_invalid_registration_gets_no_address_and_says_why() {
        let mut p = pod("demo.web", 3);
        p.registration.ip = "127.0.0.1:18099/steal?".into();
        let p = PodEntry::from_node("demo.web", "u.0000000003", p.registration);
        assert_eq!(p.address, None);
        let why = p.invalid.expect("invalid").to_string();
        assert!(why.contains("`ip`") && why.contains("steal?"), "{why}");
        // No control port published: no address, as before, and not called invalid.
        let mut reg = pod("demo.web", 4).registration;
        reg.ports.clear();
        let portless = PodEntry::from_node("demo.web", "u.0000000004", reg);
        assert_eq!((portless.address, portless.invalid), (None, None));
    }

    #[test]
    fn seq_selection_keeps_the_listed_pods_and_names_the_missing_ones() {
        let pods = vec![pod("a.b", 1), pod("a.b", 2), pod("a.c", 2), pod("a.c", 3)];
        let (kept, missing) = select_seqs(pods.clone(), &[]);
        assert_eq!((kept.len(), missing), (4, vec![]));
        let (kept, missing) = select_seqs(pods, &[2, 9, 9]);
        assert_eq!(kept.iter().map(PodEntry::key).collect::<Vec<_>>(), vec!["a.b #2", "a.c #2"]);
        assert_eq!(missing, vec![9]);
    }
}
