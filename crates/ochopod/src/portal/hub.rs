//! The event hub: one per server process, started by the first client that needs it (the
//! dashboard, `GET /v1/events`), then for the life of the process.
//!
//! Theory of operation: a lookup every 2 s (one session with the store, ZooKeeper or etcd, kept)
//! finds every pod and every cluster's hash; each pod's `/events` is followed once, however many
//! clients listen, over the pods' TLS with the CA the tools use when `--ca` is given
//! ([`super::stream`]), and fanned out through a broadcast channel. The hub also keeps a snapshot: per cluster its hash and, per
//! pod, the latest `/info` it read. An event from a pod (or its stream ending) marks that pod
//! out of date and a refresher reads its `/info` again a moment later; a `round` that ends marks
//! the cluster's hash out of date. `GET /v1/dashboard` answers from the snapshot, reading live
//! only what is out of date, so a page's data costs no fan-out to every pod. The first lookup
//! reads each cluster's pods' `/info` as soon as that cluster is found, clusters in parallel.
//! Memory is bounded: at most [`MAX_PODS`] pods are kept (the rest are reported, not shown),
//! a pod's metrics over [`MAX_METRICS`] bytes are replaced by a note, [`ROUNDS_KEPT`] rounds per
//! cluster, and each followed stream holds a 2 KiB buffer and one event of at most
//! [`MAX_EVENT`] bytes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use ochopod_api::{Info, PodClient};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, Notify};

use crate::tools::discovery::{match_clusters, PodEntry, Zk, ZkTarget};
use crate::tools::fanout::{Failure, PodResult};
use crate::tools::reach;
use crate::tools::{Common, ToolError};

/// Rounds kept per cluster.
pub const ROUNDS_KEPT: usize = 20;
/// Pods kept in the snapshot; a lookup that finds more warns and leaves the rest out.
pub const MAX_PODS: usize = 5000;
/// A pod's `metrics` kept up to this size (serialized); larger ones are replaced by a note.
pub const MAX_METRICS: usize = 16 << 10;
/// The longest event a pod may send; past it the stream is dropped (and followed again).
pub const MAX_EVENT: usize = 64 << 10;
/// `/info` requests (and hash reads) in flight at once, for the snapshot.
const INFO_AT_ONCE: usize = 32;
/// How long a lookup waits before the next.
const LOOKUP_EVERY: Duration = Duration::from_secs(2);

/// One message to the clients: its JSON text and the cluster it is about, if any.
#[derive(Debug)]
pub struct Relayed {
    pub cluster: Option<String>,
    pub text: String,
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Relayed>>,
    state: Mutex<State>,
    started: OnceLock<Started>,
    /// Wakes the refresher: something in the snapshot is out of date.
    stale: Notify,
    /// Wakes those waiting for the first lookup to be done.
    ready: tokio::sync::watch::Sender<bool>,
}

/// What the hub follows with, fixed at its start.
struct Started {
    /// The pods' token and CA (the tools' own client).
    client: PodClient,
    timeout: Duration,
    /// The lookup's session, shared with the routes that read a hash live.
    zk: Mutex<Option<Arc<Zk>>>,
    /// [`INFO_AT_ONCE`] reads in flight at most, whoever asks (the lookup, a route, the
    /// refresher): hundreds of connections at once would cost megabytes of buffers.
    reads: tokio::sync::Semaphore,
}

#[derive(Default)]
struct State {
    /// Per cluster, the newest last.
    rounds: BTreeMap<String, VecDeque<Value>>,
    /// Every cluster name (dependencies resolve against them).
    names: Vec<String>,
    clusters: BTreeMap<String, Cluster>,
    /// What the last lookup skipped, or why it failed.
    warnings: Vec<String>,
}

#[derive(Default)]
struct Cluster {
    hash: Option<(String, i64)>,
    /// A round ended since the hash was read.
    hash_stale: bool,
    /// Sorted by seq.
    pods: Vec<Pod>,
}

struct Pod {
    /// Its registration and its latest `/info` (or why there is none).
    seen: PodResult<Info>,
    /// `/info` was read at least once.
    read: bool,
    /// Bumped by every event of the pod.
    version: u64,
    /// The version `seen` was read at: out of date unless equal to `version`.
    read_at: u64,
}

impl Pod {
    fn new(entry: PodEntry) -> Pod {
        let seen = PodResult { pod: entry, result: Err(Failure::Unreachable("not read yet".into())) };
        Pod { seen, read: false, version: 0, read_at: 0 }
    }

    fn entry(&self) -> &PodEntry {
        &self.seen.pod
    }

    fn stale(&self) -> bool {
        !self.read || self.read_at != self.version
    }

    fn store(&mut self, result: Result<Info, Failure>, version: u64) {
        self.seen.result = result;
        self.read = true;
        self.read_at = version;
    }
}

/// The hub of this process.
pub fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        tx: broadcast::channel(1024).0,
        state: Mutex::default(),
        started: OnceLock::new(),
        stale: Notify::new(),
        ready: tokio::sync::watch::channel(false).0,
    })
}

/// What `GET /v1/dashboard` shows of the clusters it asked for, borrowed from the snapshot.
pub struct Shown<'a> {
    /// Every cluster name (dependencies resolve against them).
    pub names: &'a [String],
    /// The matching clusters.
    pub live: Vec<String>,
    /// Their pods, by cluster then seq: the registration and the latest `/info`.
    pub pods: Vec<&'a PodResult<Info>>,
    pub hashes: BTreeMap<&'a str, (String, i64)>,
    pub rounds: BTreeMap<String, Vec<Value>>,
    pub warnings: &'a [String],
}

/// Something to read live: a pod's `/info` or a cluster's hash.
enum Read {
    Info { cluster: String, uuid: String, address: Option<String>, version: u64 },
    Hash(String),
}

enum Got {
    Info { cluster: String, uuid: String, version: u64, result: Box<Result<Info, Failure>> },
    Hash(String, Option<(String, i64)>),
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts following the pods (once; later calls do nothing).
    pub fn start(&'static self, common: &Common) -> Result<(), ToolError> {
        if self.started.get().is_some() {
            return Ok(());
        }
        let target = reach::zk_target(common)?;
        let client = reach::pod_client(common)?;
        let started = Started {
            client,
            timeout: common.pod_timeout,
            zk: Mutex::new(None),
            reads: tokio::sync::Semaphore::new(INFO_AT_ONCE),
        };
        if self.started.set(started).is_err() {
            return Ok(());
        }
        let (tx, from_pods) = mpsc::channel::<Value>(1024);
        actix_web::rt::spawn(self.watch(target, tx));
        actix_web::rt::spawn(self.record(from_pods));
        actix_web::rt::spawn(self.refresh());
        Ok(())
    }

    /// A receiver of every message; [`Hub::start`] first.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Relayed>> {
        self.tx.subscribe()
    }

    /// The pods followed now whose cluster matches `globs`, as `{"pod", "watching": true}`.
    pub fn watched(&self, globs: &[String]) -> Vec<Value> {
        let state = self.lock();
        let names: Vec<String> = state.clusters.keys().cloned().collect();
        match_clusters(&names, globs)
            .iter()
            .flat_map(|c| state.clusters[c].pods.iter().filter(|p| p.entry().address.is_some()))
            .map(|p| json!({"pod": p.entry().key(), "watching": true}))
            .collect()
    }

    /// Waits (at most `limit`) for the first lookup and the first `/info` of every pod it found.
    async fn wait_ready(&self, limit: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        tokio::time::timeout(limit, ready.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok())
    }

    /// `show` of the clusters matching `globs` in the snapshot, after what was out of date was
    /// read live; `show` runs with the snapshot locked (nothing is copied). An error when the
    /// first lookup is not done within `limit` (the coordination store down).
    pub async fn view<R>(
        &self,
        globs: &[String],
        limit: Duration,
        show: impl FnOnce(Shown<'_>) -> R,
    ) -> Result<R, String> {
        if !self.wait_ready(limit).await {
            let why = self.lock().warnings.join("; ");
            return Err(if why.is_empty() { "no lookup of the pods yet".to_string() } else { why });
        }
        let reads: Vec<Read> = {
            let state = self.lock();
            let matched = match_clusters(&state.names, globs);
            matched.iter().filter_map(|c| state.clusters.get_key_value(c)).flat_map(|(c, k)| stale_of(c, k)).collect()
        };
        if !reads.is_empty() {
            let got = self.read(reads).await;
            self.store(got);
        }
        let state = self.lock();
        let live: Vec<String> =
            match_clusters(&state.names, globs).into_iter().filter(|c| state.clusters.contains_key(c)).collect();
        let clusters: Vec<(&str, &Cluster)> = live.iter().map(|c| (c.as_str(), &state.clusters[c])).collect();
        let shown = Shown {
            names: &state.names,
            pods: clusters.iter().flat_map(|(_, k)| k.pods.iter().map(|p| &p.seen)).collect(),
            hashes: clusters.iter().filter_map(|(c, k)| k.hash.clone().map(|h| (*c, h))).collect(),
            rounds: live
                .iter()
                .filter_map(|c| state.rounds.get(c).map(|r| (c.clone(), r.iter().cloned().collect())))
                .collect(),
            warnings: &state.warnings,
            live: live.clone(),
        };
        Ok(show(shown))
    }

    /// Reads `/info`s and hashes, [`INFO_AT_ONCE`] at a time (all callers together).
    async fn read(&self, reads: Vec<Read>) -> Vec<Got> {
        let Some(started) = self.started.get() else { return Vec::new() };
        let zk = started.zk.lock().unwrap_or_else(|e| e.into_inner()).clone();
        futures::stream::iter(reads)
            .map(|r| {
                let zk = zk.clone();
                async move {
                    let _permit = started.reads.acquire().await;
                    match r {
                        Read::Info { cluster, uuid, address, version } => {
                            let result = match address {
                                Some(a) => started.client.info(&a, started.timeout).await.map_err(Failure::from),
                                None => Err(Failure::NoAddress),
                            };
                            Got::Info { cluster, uuid, version, result: Box::new(result.map(trimmed)) }
                        }
                        Read::Hash(c) => {
                            let hash = match &zk {
                                Some(zk) => zk.hash(&c).await,
                                None => None,
                            };
                            Got::Hash(c, hash)
                        }
                    }
                }
            })
            .buffer_unordered(INFO_AT_ONCE)
            .collect()
            .await
    }

    fn store(&self, got: Vec<Got>) {
        let mut state = self.lock();
        for g in got {
            match g {
                Got::Info { cluster, uuid, version, result } => {
                    let pod = state
                        .clusters
                        .get_mut(&cluster)
                        .and_then(|c| c.pods.iter_mut().find(|p| p.entry().uuid == uuid));
                    if let Some(pod) = pod {
                        pod.store(*result, version);
                    }
                }
                Got::Hash(cluster, hash) => {
                    if let Some(c) = state.clusters.get_mut(&cluster) {
                        c.hash = hash;
                        c.hash_stale = false;
                    }
                }
            }
        }
    }

    /// Reads again, a moment after events said so, what is out of date.
    async fn refresh(&'static self) {
        loop {
            self.stale.notified().await;
            // Events come in bursts (a round touches every pod): one read per pod for the burst.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let reads: Vec<Read> = {
                let state = self.lock();
                state.clusters.iter().flat_map(|(name, c)| stale_of(name, c)).collect()
            };
            if !reads.is_empty() {
                let got = self.read(reads).await;
                self.store(got);
            }
        }
    }

    /// Keeps what the pods say: their rounds, and which pods (and hashes) are out of date; then
    /// passes it on to the clients.
    async fn record(&'static self, mut from_pods: mpsc::Receiver<Value>) {
        while let Some(v) = from_pods.recv().await {
            let cluster = v["pod"].as_str().map(|p| p.rsplit_once(" #").map_or(p, |(c, _)| c).to_string());
            let cluster = cluster.or_else(|| v["cluster"].as_str().map(String::from));
            if let (Some(pod), Some(cluster)) = (v["pod"].as_str(), &cluster) {
                let mut state = self.lock();
                let event = v.get("event");
                if let Some(event) = event.filter(|e| e["event"] == "round") {
                    let list = state.rounds.entry(cluster.clone()).or_default();
                    record_round(list, pod, event);
                }
                let ended = event.is_some_and(|e| e["event"] == "round" && e["phase"] != "started");
                let changed = event.is_some() || v["watching"] == false;
                if let Some(c) = state.clusters.get_mut(cluster) {
                    c.hash_stale |= ended;
                    let seq = pod.rsplit_once(" #").and_then(|(_, s)| s.parse::<u64>().ok());
                    for p in c.pods.iter_mut().filter(|p| changed && Some(p.entry().seq) == seq) {
                        p.version += 1;
                    }
                }
                drop(state);
                if changed {
                    self.stale.notify_one();
                }
            }
            let _ = self.tx.send(Arc::new(Relayed { cluster, text: v.to_string() }));
        }
    }

    /// Looks every pod up every 2 s, keeps the snapshot's pods and hashes, and follows each new
    /// pod's `/events`, for the life of the process.
    async fn watch(&'static self, target: ZkTarget, tx: mpsc::Sender<Value>) {
        let Some(started) = self.started.get() else { return };
        let (done_tx, mut done_rx) = mpsc::channel::<String>(64);
        let mut followed: BTreeSet<String> = BTreeSet::new();
        let mut zk: Option<Arc<Zk>> = None;
        loop {
            while let Ok(gone) = done_rx.try_recv() {
                followed.remove(&gone);
            }
            if zk.is_none() {
                match Zk::connect(target.clone()).await {
                    Ok(z) => {
                        let z = Arc::new(z);
                        *started.zk.lock().unwrap_or_else(|e| e.into_inner()) = Some(z.clone());
                        zk = Some(z);
                    }
                    Err(e) => {
                        let warning = format!("{}: {e}", crate::tools::discovery::store_label(&target));
                        self.lock().warnings = vec![warning.clone()];
                        let _ = tx.send(json!({"warning": warning})).await;
                    }
                }
            }
            if let Some(z) = zk.clone() {
                match self.lookup(&z).await {
                    Ok(pods) => {
                        for (address, key) in pods {
                            if followed.insert(address.clone()) {
                                let follow = follow(started.client.clone(), address, key, tx.clone());
                                let done = done_tx.clone();
                                actix_web::rt::spawn(async move {
                                    let address = follow.await;
                                    let _ = done.send(address).await;
                                });
                            }
                        }
                    }
                    Err(e) => {
                        self.lock().warnings = vec![e.clone()];
                        let _ = tx.send(json!({"warning": e})).await;
                        *started.zk.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        if let Some(z) = zk.take() {
                            if let Ok(z) = Arc::try_unwrap(z) {
                                z.close().await;
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(LOOKUP_EVERY).await;
        }
    }

    /// One lookup: every cluster's pods and hash, each cluster's pods' `/info` read as soon as
    /// they are found when the snapshot has none of them yet. Returns the pods to follow.
    async fn lookup(&'static self, zk: &Zk) -> Result<Vec<(String, String)>, String> {
        let names = zk.cluster_names().await?;
        let first = !*self.ready.borrow();
        let scans = futures::future::join_all(names.iter().map(|c| async move {
            let (found, hash) = futures::join!(zk.find(std::slice::from_ref(c)), zk.hash(c));
            let found = found?;
            // The first time, read this cluster's pods at once, while the others are looked up.
            let reads: Vec<Read> = if first {
                found
                    .pods
                    .iter()
                    .map(|p| Read::Info {
                        cluster: c.clone(),
                        uuid: p.uuid.clone(),
                        address: p.address.clone(),
                        version: 0,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let got = self.read(reads).await;
            Ok::<_, String>((c, found, hash, got))
        }))
        .await;
        let mut follow = Vec::new();
        let mut warnings = Vec::new();
        let mut changed = Vec::new();
        let (mut kept, mut left_out) = (0usize, 0usize);
        {
            let mut state = self.lock();
            let mut clusters = BTreeMap::new();
            for scan in scans {
                let (name, found, hash, got) = scan?;
                warnings.extend(found.warnings);
                if found.gone.contains(name) {
                    continue;
                }
                let mut old = state.clusters.remove(name).unwrap_or_default();
                let mut pods = Vec::with_capacity(found.pods.len());
                for entry in found.pods {
                    if kept >= MAX_PODS {
                        left_out += 1;
                        continue;
                    }
                    kept += 1;
                    if let Some(address) = &entry.address {
                        follow.push((address.clone(), entry.key()));
                    }
                    let known = old
                        .pods
                        .iter()
                        .position(|p| p.entry().uuid == entry.uuid && p.entry().address == entry.address);
                    match known {
                        Some(i) => {
                            let mut pod = old.pods.swap_remove(i);
                            pod.seen.pod = entry;
                            pods.push(pod);
                        }
                        None => pods.push(Pod::new(entry)),
                    }
                }
                for g in got {
                    if let Got::Info { uuid, result, .. } = g {
                        if let Some(p) = pods.iter_mut().find(|p| p.entry().uuid == uuid && !p.read) {
                            p.store(*result, 0);
                        }
                    }
                }
                if !old.pods.is_empty() || pods.iter().any(|p| !p.read) {
                    changed.push(name.clone());
                }
                let hash_stale = old.hash_stale && old.hash == hash;
                clusters.insert(name.clone(), Cluster { hash, hash_stale, pods });
            }
            for gone in state.clusters.keys() {
                changed.push(gone.clone());
            }
            if left_out > 0 {
                warnings.push(format!("{left_out} pods left out: the dashboard keeps {MAX_PODS} at most"));
            }
            state.clusters = clusters;
            state.names = names;
            state.warnings = warnings;
        }
        self.ready.send_replace(true);
        if !changed.is_empty() {
            self.stale.notify_one();
        }
        for c in changed {
            let text = json!({"cluster": c, "changed": true}).to_string();
            let _ = self.tx.send(Arc::new(Relayed { cluster: Some(c), text }));
        }
        Ok(follow)
    }
}

/// What is out of date in one cluster.
fn stale_of(name: &str, c: &Cluster) -> Vec<Read> {
    let mut reads: Vec<Read> = c
        .pods
        .iter()
        .filter(|p| p.stale())
        .map(|p| Read::Info {
            cluster: name.to_string(),
            uuid: p.entry().uuid.clone(),
            address: p.entry().address.clone(),
            version: p.version,
        })
        .collect();
    if c.hash_stale {
        reads.push(Read::Hash(name.to_string()));
    }
    reads
}

/// An `/info` as kept: metrics over [`MAX_METRICS`] bytes replaced by a note.
fn trimmed(mut info: Info) -> Info {
    let size = serde_json::to_vec(&info.metrics).map_or(0, |v| v.len());
    if size > MAX_METRICS {
        info.metrics = json!({"note": format!("{size} bytes of metrics, over the dashboard's {MAX_METRICS}")});
    }
    info
}

/// Keeps a `round` event in its cluster's history: `started` opens an entry, `done` or `failed`
/// closes the last one the same pod opened (or opens one, when the start was missed).
pub fn record_round(list: &mut VecDeque<Value>, pod: &str, event: &Value) {
    let phase = event["phase"].as_str().unwrap_or("");
    let open = list.iter_mut().rev().find(|r| r["leader"] == pod && r["phase"] == "started");
    match (phase, open) {
        ("started", _) | (_, None) => {
            let at = event["at_ms"].as_u64().unwrap_or(0);
            let started = at.saturating_sub(event["duration_ms"].as_u64().unwrap_or(0));
            list.push_back(json!({
                "leader": pod, "started_ms": started, "epoch": event["epoch"], "reason": event["reason"],
                "pods": event["pods"], "phase": phase, "duration_ms": event["duration_ms"],
                "error": event["error"], "failure": event["failure"], "code": event["code"],
            }));
            while list.len() > ROUNDS_KEPT {
                list.pop_front();
            }
        }
        (_, Some(round)) => {
            for key in ["phase", "duration_ms", "error", "failure", "code"] {
                round[key] = event.get(key).cloned().unwrap_or(Value::Null);
            }
            if phase == "done" {
                round["pods"] = event["pods"].clone();
            }
        }
    }
}

/// Relays one pod's `/events` (`{"pod", "watching": true}` once it answered) until its stream
/// ends (the pod died or left) or cannot be opened, then says so (`"watching": false`).
async fn follow(client: PodClient, address: String, pod: String, tx: mpsc::Sender<Value>) -> String {
    if let Err(e) = relay(&client, &address, &pod, &tx).await {
        tracing::debug!(%pod, %e, "events stream ended");
    }
    let _ = tx.send(json!({"pod": pod, "watching": false})).await;
    address
}

async fn relay(client: &PodClient, address: &str, pod: &str, tx: &mpsc::Sender<Value>) -> std::io::Result<()> {
    // Boxed: a task per pod holds this future for as long as the stream lasts, and the connect
    // and handshake states need not stay in it.
    let (code, mut body) =
        Box::pin(super::stream::request(client, address, "GET", "/events", None, Duration::from_secs(5))).await?;
    if code != 200 {
        return Err(std::io::Error::other(format!("answered {code}")));
    }
    if tx.send(json!({"pod": pod, "watching": true})).await.is_err() {
        return Ok(());
    }
    while let Some(line) = body.line(MAX_EVENT).await? {
        if let Some(data) = line.strip_prefix("data:") {
            let event: Value = serde_json::from_str(data.trim()).unwrap_or_else(|_| json!(data.trim()));
            if tx.send(json!({"pod": pod, "event": event})).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_open_on_started_close_on_done_and_keep_the_newest() {
        let mut list = VecDeque::new();
        let started = json!({"event": "round", "phase": "started", "epoch": 3, "pods": 3, "at_ms": 1000,
            "duration_ms": null, "error": null, "reason": "reconfiguration requested"});
        record_round(&mut list, "t.web #1", &started);
        let done = json!({"event": "round", "phase": "done", "epoch": 3, "pods": 3, "at_ms": 1040, "duration_ms": 40,
            "error": null});
        record_round(&mut list, "t.web #1", &done);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["phase"], "done");
        assert_eq!(list[0]["reason"], "reconfiguration requested");
        assert_eq!((list[0]["started_ms"].as_u64(), list[0]["duration_ms"].as_u64()), (Some(1000), Some(40)));
        let failed = json!({"event": "round", "phase": "failed", "epoch": 4, "pods": 0, "at_ms": 5000,
            "duration_ms": 100, "error": "t.web #2 (127.0.0.1:1): answered 406", "failure": "refused", "code": 406});
        record_round(&mut list, "t.web #2", &failed);
        assert_eq!(list.len(), 2, "a failure whose start was missed is still a round");
        assert_eq!((list[1]["started_ms"].as_u64(), list[1]["code"].as_u64()), (Some(4900), Some(406)));
        for _ in 0..30 {
            record_round(&mut list, "t.web #1", &started);
        }
        assert_eq!(list.len(), ROUNDS_KEPT);
    }

    #[test]
    fn huge_metrics_are_kept_as_a_note() {
        let small = Info { metrics: json!({"lag": 1}), ..Default::default() };
        assert_eq!(trimmed(small).metrics, json!({"lag": 1}));
        let big = Info { metrics: json!({"blob": "x".repeat(MAX_METRICS)}), ..Default::default() };
        let kept = trimmed(big).metrics;
        assert!(kept["note"].as_str().unwrap().contains("bytes of metrics"), "{kept}");
    }
}
