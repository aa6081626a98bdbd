//! Finding pods: cluster globs over the children of `/ochopod/clusters`, then every pod's
//! registration, read from ZooKeeper exactly as the original tooling did (same layout, so
//! Python pods are found too).

use std::collections::BTreeSet;
use std::time::Duration;

use ochopod_core::{paths, Registration};
use serde::Serialize;
use zookeeper_client::{Client, SessionState};

/// The control port assumed for a pod that registered none (the original's default).
pub const FALLBACK_CONTROL_PORT: u16 = 8080;

/// Every ZooKeeper call is bounded: a request issued while the client is disconnected would
/// otherwise hang until the session expires.
const ZK_OP_TIMEOUT: Duration = Duration::from_secs(10);
const ZK_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect, from `--zk` / `OCHOPOD_ZK`: `[zk://][user:pass@]host:port[,host:port…][/chroot]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkTarget {
    pub hosts: String,
    pub chroot: Option<String>,
    digest: Option<String>,
}

impl std::fmt::Debug for ZkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkTarget")
            .field("hosts", &self.hosts)
            .field("chroot", &self.chroot)
            .field("digest", &self.digest.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ZkTarget {
    pub fn parse(connect: &str) -> Result<ZkTarget, String> {
        let s = connect.trim();
        let s = s.strip_prefix("zk://").unwrap_or(s);
        let (digest, rest) = match s.rsplit_once('@') {
            Some((creds, rest)) if creds.contains(':') => (Some(creds.to_string()), rest),
            Some(_) => return Err("credentials must be written `user:password@`".into()),
            None => (None, s),
        };
        let (hosts, chroot) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hosts.is_empty() || hosts.split(',').any(|h| h.trim().is_empty()) {
            return Err(format!("no ZooKeeper server in {:?}", strip_credentials(connect)));
        }
        let chroot = chroot.trim_end_matches('/');
        let chroot = if chroot.is_empty() {
            None
        } else if chroot.split('/').skip(1).any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(format!("bad chroot {chroot:?} in the ZooKeeper connect string"));
        } else {
            Some(chroot.to_string())
        };
        Ok(ZkTarget { hosts: hosts.to_string(), chroot, digest })
    }

    /// The target without credentials, for messages.
    pub fn display(&self) -> String {
        format!("{}{}", self.hosts, self.chroot.as_deref().unwrap_or(""))
    }
}

fn strip_credentials(connect: &str) -> String {
    match connect.rsplit_once('@') {
        Some((before, hosts)) => match before.find("://") {
            Some(i) => format!("{}{hosts}", &before[..i + 3]),
            None => hosts.to_string(),
        },
        None => connect.to_string(),
    }
}

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
    /// Where its control API answers (`None` when it publishes no control port).
    pub address: Option<String>,
    #[serde(skip)]
    pub registration: Registration,
}

impl PodEntry {
    pub fn from_node(cluster: &str, node_name: &str, registration: Registration) -> PodEntry {
        PodEntry {
            cluster: cluster.to_string(),
            seq: registration.seq,
            uuid: paths::pod_key(node_name).to_string(),
            address: registration.control_address(FALLBACK_CONTROL_PORT),
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
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("unreadable registration ({e})"))?;
    let has_seq = value.get("seq").is_some_and(|s| !s.is_null());
    let mut reg: Registration = serde_json::from_value(value).map_err(|e| format!("unreadable registration ({e})"))?;
    if !has_seq {
        reg.seq = paths::sequence_of(node_name).unwrap_or(0);
    }
    Ok(reg)
}

/// A read-only ZooKeeper session for one tool invocation.
pub struct Zk {
    client: Client,
    target: ZkTarget,
}

impl Zk {
    pub async fn connect(target: ZkTarget) -> Result<Zk, String> {
        let mut connector = Client::connector().with_session_timeout(Duration::from_secs(10)).with_fail_eagerly();
        if let Some(digest) = &target.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        let client = match tokio::time::timeout(ZK_CONNECT_TIMEOUT, connector.connect(&target.hosts)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("cannot connect to ZooKeeper at {}: {e}", target.display())),
            Err(_) => {
                return Err(format!(
                    "cannot connect to ZooKeeper at {}: no session within {ZK_CONNECT_TIMEOUT:?}",
                    target.display()
                ))
            }
        };
        let client = match &target.chroot {
            None => client,
            Some(chroot) => client.chroot(chroot.as_str()).map_err(|_| format!("bad ZooKeeper chroot {chroot:?}"))?,
        };
        Ok(Zk { client, target })
    }

    async fn timed<T>(
        &self,
        what: &str,
        path: &str,
        fut: impl std::future::Future<Output = Result<T, zookeeper_client::Error>>,
    ) -> Result<T, zookeeper_client::Error> {
        match tokio::time::timeout(ZK_OP_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => {
                eprintln!("warning: ZooKeeper {what} {path} got no answer within {ZK_OP_TIMEOUT:?}");
                Err(zookeeper_client::Error::Timeout)
            }
        }
    }

    /// Cluster names under `/ochopod/clusters` (none when it does not exist yet).
    pub async fn cluster_names(&self) -> Result<Vec<String>, String> {
        match self.timed("list", paths::ROOT, self.client.list_children(paths::ROOT)).await {
            Ok(mut names) => {
                names.sort();
                Ok(names)
            }
            Err(zookeeper_client::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(format!("cannot list {} on ZooKeeper {}: {e}", paths::ROOT, self.target.display())),
        }
    }

    /// The clusters matching `globs` and their pods. Nodes that cannot be read are skipped with
    /// a warning: one broken registration must not hide the rest.
    pub async fn find(&self, globs: &[String]) -> Result<Found, String> {
        let names = self.cluster_names().await?;
        let clusters = match_clusters(&names, globs);
        let mut found = Found { clusters: clusters.clone(), ..Found::default() };
        for cluster in &clusters {
            let dir = paths::pods_dir(&format!("{}/{cluster}", paths::ROOT));
            let children = match self.timed("list", &dir, self.client.list_children(&dir)).await {
                Ok(c) => c,
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => {
                    found.warnings.push(format!("{dir}: cannot list pods ({e})"));
                    continue;
                }
            };
            let reads = children.iter().map(|child| {
                let path = format!("{dir}/{child}");
                async move {
                    let data = self.timed("read", &path, self.client.get_data(&path)).await;
                    (child, path, data)
                }
            });
            for (child, path, data) in futures::future::join_all(reads).await {
                match data {
                    Ok((bytes, _)) => match parse_registration(child, &bytes) {
                        Ok(reg) => found.pods.push(PodEntry::from_node(cluster, child, reg)),
                        Err(why) => found.warnings.push(format!("{path}: skipped: {why}")),
                    },
                    // The pod left between the listing and the read.
                    Err(zookeeper_client::Error::NoNode) => {}
                    Err(e) => found.warnings.push(format!("{path}: skipped: cannot read ({e})")),
                }
            }
        }
        found.pods.sort_by(|a, b| (&a.cluster, a.seq).cmp(&(&b.cluster, b.seq)));
        Ok(found)
    }

    /// Closes the session now (rather than leaving it to expire), while the runtime still runs
    /// the client's background task.
    pub async fn close(self) {
        let mut states = self.client.state_watcher();
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut state = states.state();
            while !state.is_terminated() {
                state = states.changed().await;
            }
            state == SessionState::Closed
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn connect_strings_with_scheme_credentials_and_chroot() {
        let t = ZkTarget::parse("zk://u:p@h1:2181,h2:2181/mesos/").unwrap();
        assert_eq!(t.hosts, "h1:2181,h2:2181");
        assert_eq!(t.chroot.as_deref(), Some("/mesos"));
        assert_eq!(t.digest.as_deref(), Some("u:p"));
        assert!(!format!("{t:?}").contains("u:p"));
        assert_eq!(t.display(), "h1:2181,h2:2181/mesos");

        let t = ZkTarget::parse("127.0.0.1:2181").unwrap();
        assert_eq!((t.hosts.as_str(), t.chroot, t.digest), ("127.0.0.1:2181", None, None));
        assert_eq!(ZkTarget::parse("h:1/").unwrap().chroot, None);
    }

    #[test]
    fn bad_connect_strings_are_refused_with_the_reason() {
        assert!(ZkTarget::parse("").unwrap_err().contains("no ZooKeeper server"));
        assert!(ZkTarget::parse("zk:///chroot").unwrap_err().contains("no ZooKeeper server"));
        assert!(ZkTarget::parse("h:1,,h:2").unwrap_err().contains("no ZooKeeper server"));
        assert!(ZkTarget::parse("h:1/a//b").unwrap_err().contains("bad chroot"));
        let e = ZkTarget::parse("zk://secret@h:1").unwrap_err();
        assert!(e.contains("user:password"));
        assert!(!e.contains("secret"));
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
        let bare = PodEntry::from_node("a.b", "u.0000000042", parse_registration("u.0000000042", b"{}").unwrap());
        assert_eq!((bare.seq, bare.address), (42, None));
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

    #[test]
    fn empty_or_broken_registrations_are_skipped_with_a_reason() {
        assert!(parse_registration("u.0000000001", b"").unwrap_err().contains("registering"));
        assert!(parse_registration("u.0000000001", b"{nope").unwrap_err().contains("unreadable"));
        assert!(parse_registration("u.0000000001", br#"{"seq":"x"}"#).unwrap_err().contains("unreadable"));
        assert_eq!(parse_registration("u.0000000007", br#"{"ip":"1.2.3.4","seq":3}"#).unwrap().seq, 3);
    }

    #[test]
    fn the_registered_seq_wins_over_the_node_suffix_even_when_zero() {
        // A pod re-registered after a reset: new node suffix, same seq for life.
        assert_eq!(parse_registration("u.0000000002", br#"{"seq":0}"#).unwrap().seq, 0);
        assert_eq!(parse_registration("u.0000000002", br#"{"ip":"x"}"#).unwrap().seq, 2);
    }
}
