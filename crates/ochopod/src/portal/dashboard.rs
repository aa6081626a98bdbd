//! The live dashboard: one static page (`dashboard/index.html`, embedded with `include_str!`)
//! whose data comes from three read routes and whose actions go through the portal's own API.
//!
//! Theory of operation: the page is plain HTML, CSS and JavaScript, served as is at `/` (no
//! template logic here, no build step, and a `Content-Security-Policy` that lets it talk to this
//! server only). It asks `GET /v1/dashboard` for every cluster at once (each pod's `/info`
//! through [`crate::tools::report`], the tool `info` runs, plus the cluster's hash and when it
//! changed, read from ZooKeeper, and the round history kept here), then listens to
//! `GET /v1/dashboard/events`: the events of every pod, relayed by one [`Hub`] per process that
//! follows each pod's `/events` once (however many pages are open) and remembers the last rounds
//! of each cluster. On an event the page updates what it can at once (a pod gone, a new leader,
//! a round started) and asks again for that cluster's state. `GET /v1/dashboard/log` is the tail
//! of one pod's log (the tool `log`). Actions (reconfigure, off/on/reset) are `POST /v1/<tool>`,
//! the routes every client uses.
//!
//! Who may do what: the portal (`ochopod portal`) needs its token for everything but `/` and
//! `/healthz`, so a page there asks for the token (or takes it from `#token=…`) and, once it can
//! read, may act. `ochopod dashboard --zk …` serves the same routes on a workstation (loopback by
//! default) without a pod around it: reads are open there ([`OpenReads`]), and actions exist
//! only when it was started with a token and the page presents it. `GET /v1/dashboard` says
//! whether the caller may act (`actions`), and the page offers no action otherwise.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use ochopod_api::{Info, PodClient};
use ochopod_core::deps::Dependency;

use super::server::{token_matches, ApiError, Portal};
use crate::tools::discovery::{match_clusters, Found, PodEntry, Zk};
use crate::tools::fanout::PodResult;
use crate::tools::reach::{self, Outcome};
use crate::tools::{Common, LogArgs, Selection, Tool, ToolError};

/// The page, embedded: what `/` serves, byte for byte.
pub const PAGE: &str = include_str!("dashboard/index.html");

/// Rounds kept per cluster.
const ROUNDS_KEPT: usize = 20;

/// Reads need no token (`ochopod dashboard` on a workstation); actions still do.
#[derive(Clone, Copy, Debug)]
pub struct OpenReads;

/// May read the dashboard's data; `actions` when the request carried the token.
pub struct Reader {
    pub actions: bool,
}

impl actix_web::FromRequest for Reader {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok());
        let actions = req.app_data::<web::Data<Portal>>().is_some_and(|p| token_matches(&p.token, presented));
        let open = req.app_data::<web::Data<OpenReads>>().is_some();
        std::future::ready(if actions || open {
            Ok(Reader { actions })
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            ))
        })
    }
}

/// The dashboard's routes, added to the portal's by [`super::server::configure`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page))
        .route("/v1/dashboard", web::get().to(state))
        .route("/v1/dashboard/events", web::get().to(events))
        .route("/v1/dashboard/log", web::get().to(log));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        // The page talks to this server and nothing else.
        .insert_header((
            "content-security-policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
             img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(PAGE)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// Comma-separated cluster globs (every cluster when absent).
    clusters: Option<String>,
}

fn globs_of(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("").split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect()
}

/// `GET /v1/dashboard?clusters=a,b`: every matching cluster with its pods, hash and rounds. One
/// ZooKeeper session finds the pods (with the tools' own lookup and selection) and reads the
/// hashes while the pods' `/info` is asked, as `ochopod info` asks it, a few clusters at a time.
async fn state(
    reader: Reader,
    portal: web::Data<Portal>,
    query: web::Query<StateQuery>,
) -> Result<HttpResponse, ApiError> {
    let globs = globs_of(query.clusters.as_deref());
    let started = std::time::Instant::now();
    let common = &portal.common;
    let client = reach::pod_client(common)?;
    let zk = Zk::connect(reach::zk_target(common)?).await.map_err(ToolError::ZooKeeper)?;
    let looked = async {
        let names = zk.cluster_names().await.map_err(ToolError::ZooKeeper)?;
        // The tools' lookup, one cluster per call and all at once: ZooKeeper answers the
        // pipelined requests of one session in a few round trips instead of one per cluster.
        let matched = match_clusters(&names, &globs);
        let scans = futures::future::join_all(matched.iter().map(|c| zk.find(std::slice::from_ref(c)))).await;
        let mut found = Found { clusters: matched, ..Found::default() };
        for scan in scans {
            let scan = scan.map_err(ToolError::ZooKeeper)?;
            found.pods.extend(scan.pods);
            found.warnings.extend(scan.warnings);
            found.gone.extend(scan.gone);
        }
        Ok::<_, ToolError>((found, names))
    }
    .await;
    let (found, names) = match looked {
        Ok(l) => l,
        Err(e) => {
            zk.close().await;
            return Err(e.into());
        }
    };
    let looked_ms = started.elapsed().as_millis();
    let gone = found.gone.clone();
    let live: Vec<String> = found.clusters.iter().filter(|c| !gone.contains(c)).cloned().collect();
    let query = reach::Query { globs: &globs, seq: &[], clusters_only: true };
    let body = match reach::select(found, query) {
        Ok(targeted) => {
            let hashes = futures::future::join_all(live.iter().map(|c| zk.hash(c)));
            let (outcome, hashes) = futures::join!(infos(client, targeted, common.pod_timeout), hashes);
            let hashes: BTreeMap<&str, (String, i64)> =
                live.iter().zip(hashes).filter_map(|(c, h)| h.map(|h| (c.as_str(), h))).collect();
            let asked_ms = started.elapsed().as_millis();
            let clusters = clusters_of(&live, &names, &outcome.results, &hashes, hub().rounds_of(&live));
            tracing::debug!(
                clusters = live.len(),
                pods = outcome.results.len(),
                looked_ms,
                asked_ms,
                "dashboard state"
            );
            serde_json::to_vec(&StateView { actions: reader.actions, clusters, warnings: &outcome.warnings })
        }
        Err(ToolError::NoCluster(_)) => {
            serde_json::to_vec(&StateView { actions: reader.actions, clusters: Vec::new(), warnings: &[] })
        }
        Err(e) => {
            zk.close().await;
            return Err(e.into());
        }
    };
    zk.close().await;
    let body = body.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(HttpResponse::Ok().content_type("application/json").insert_header(("cache-control", "no-store")).body(body))
}

/// `GET /v1/dashboard`'s answer.
#[derive(Debug, Serialize)]
struct StateView<'a> {
    /// Whether this caller may act (it presented the token).
    actions: bool,
    clusters: Vec<ClusterView<'a>>,
    /// What discovery skipped (a pod still registering…).
    warnings: &'a [String],
}

/// Clusters whose pods are asked at once: `ochopod info` asks every pod together, which on
/// hundreds of pods means hundreds of connections (and their buffers) at the same moment; a few
/// clusters at a time keep the portal's memory flat for the same answer.
const CLUSTERS_AT_ONCE: usize = 4;

/// Every targeted pod's `/info` (what `ochopod info` asks), a few clusters at a time.
async fn infos(client: PodClient, targeted: reach::Targeted, timeout: std::time::Duration) -> Outcome<Info> {
    let reach::Targeted { found, problems } = targeted;
    let mut by_cluster: BTreeMap<String, Vec<PodEntry>> = BTreeMap::new();
    for pod in found.pods {
        by_cluster.entry(pod.cluster.clone()).or_default().push(pod);
    }
    let asks = by_cluster.into_values().map(|pods| {
        let targeted = reach::Targeted { found: Found { pods, ..Found::default() }, problems: Vec::new() };
        let reached = reach::Reached { client: client.clone(), targeted };
        async move { reached.infos(timeout).await.results }
    });
    let mut results: Vec<PodResult<Info>> =
        futures::stream::iter(asks).buffer_unordered(CLUSTERS_AT_ONCE).concat().await;
    results.sort_by(|a, b| (&a.pod.cluster, a.pod.seq).cmp(&(&b.pod.cluster, b.pod.seq)));
    Outcome { clusters: found.clusters, results, problems, warnings: found.warnings }
}

/// What the page shows of a pod: its registration and its `/info`, or why it did not answer.
/// Borrowed from the replies and serialized once: hundreds of pods, no copy.
#[derive(Debug, Serialize)]
struct PodView<'a> {
    pod: String,
    seq: u64,
    uuid: &'a str,
    address: Option<&'a str>,
    ports: &'a BTreeMap<String, u16>,
    error: Option<String>,
    process: Option<&'a str>,
    state: Option<&'a str>,
    restarts: Option<u64>,
    epoch: Option<u64>,
    metrics: Option<&'a Value>,
    sanity: Option<&'a str>,
    uptime: Option<f64>,
}

impl<'a> PodView<'a> {
    fn of(r: &'a PodResult<Info>) -> PodView<'a> {
        let info = r.result.as_ref().ok();
        PodView {
            pod: r.pod.key(),
            seq: r.pod.seq,
            uuid: &r.pod.uuid,
            address: r.pod.address.as_deref(),
            ports: info.map_or(&r.pod.registration.ports, |i| &i.ports),
            error: r.result.as_ref().err().map(ToString::to_string),
            process: info.map(|i| i.process.as_str()),
            state: info.map(|i| i.state.as_str()),
            restarts: info.and_then(|i| i.restarts),
            epoch: info.and_then(|i| i.epoch),
            metrics: info.map(|i| &i.metrics),
            sanity: info.and_then(|i| i.sanity.as_deref()),
            uptime: info.and_then(|i| i.uptime),
        }
    }
}

/// What the page shows of a cluster.
#[derive(Debug, Serialize)]
struct ClusterView<'a> {
    cluster: &'a str,
    /// Pods whose process runs (a sidecar once configured), as `ochopod ls` counts them.
    running: usize,
    total: usize,
    leader: Option<String>,
    leader_state: Option<&'a str>,
    status: Option<&'a str>,
    probe: Option<&'a str>,
    hash: Option<&'a str>,
    /// When the hash node was last written (unix milliseconds).
    hash_ms: Option<i64>,
    depends_on: Vec<String>,
    dependents: Vec<String>,
    rounds: Vec<Value>,
    pods: Vec<PodView<'a>>,
}

/// Groups the pods by cluster, with what the page shows of each: the leader, its probe and
/// status, the hash and when it changed, the dependencies both ways, the rounds.
fn clusters_of<'a>(
    live: &'a [String],
    names: &[String],
    results: &'a [PodResult<Info>],
    hashes: &'a BTreeMap<&str, (String, i64)>,
    mut rounds: BTreeMap<String, Vec<Value>>,
) -> Vec<ClusterView<'a>> {
    let mut out: Vec<ClusterView<'a>> = Vec::new();
    for cluster in live {
        let mine: Vec<&PodResult<Info>> = results.iter().filter(|r| &r.pod.cluster == cluster).collect();
        let infos: Vec<(&PodResult<Info>, &Info)> =
            mine.iter().filter_map(|r| r.result.as_ref().ok().map(|i| (*r, i))).collect();
        let leader = infos.iter().find(|(_, i)| i.state.starts_with("leader"));
        // The declared entries, resolved against the clusters that exist, as a pod resolves them.
        let declared: BTreeSet<String> = infos
            .iter()
            .find(|(_, i)| !i.dependencies.is_empty())
            .map(|(_, i)| {
                let (ns, own) = cluster.split_once('.').unwrap_or(("", cluster));
                i.dependencies
                    .iter()
                    .flat_map(|entry| Dependency::resolve(entry, ns, own).matching(names.iter().map(String::as_str)))
                    .collect()
            })
            .unwrap_or_default();
        let hash = hashes.get(cluster.as_str());
        out.push(ClusterView {
            cluster,
            running: infos.iter().filter(|(_, i)| crate::tools::views::is_up(i)).count(),
            total: mine.len(),
            leader: leader.map(|(r, _)| r.pod.key()),
            leader_state: leader.map(|(_, i)| i.state.as_str()),
            status: leader.map(|(_, i)| i.status.as_str()),
            probe: leader.and_then(|(_, i)| i.probe.as_deref()),
            hash: hash.map(|(h, _)| h.as_str()),
            hash_ms: hash.map(|(_, ms)| *ms),
            depends_on: declared.into_iter().collect(),
            dependents: Vec::new(),
            rounds: rounds.remove(cluster).unwrap_or_default(),
            pods: mine.iter().map(|r| PodView::of(r)).collect(),
        });
    }
    let depends: Vec<(String, Vec<String>)> =
        out.iter().map(|c| (c.cluster.to_string(), c.depends_on.clone())).collect();
    for view in &mut out {
        view.dependents =
            depends.iter().filter(|(_, d)| d.iter().any(|n| n == view.cluster)).map(|(c, _)| c.clone()).collect();
    }
    out
}

/// `GET /v1/dashboard/events`: every pod's events, `{"pod", "event"}` or `{"pod", "watching"}`,
/// as the portal's `/v1/events` relays them; `{"resync": true}` when this client fell behind.
async fn events(_: Reader, portal: web::Data<Portal>) -> Result<HttpResponse, ApiError> {
    let rx = hub().subscribe(&portal.common).map_err(ApiError::bad)?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let frame = match rx.recv().await {
            Ok(text) => format!("data: {text}\n\n"),
            Err(broadcast::error::RecvError::Lagged(_)) => "data: {\"resync\":true}\n\n".to_string(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(web::Bytes::from(frame)), rx))
    });
    let greeting = futures::stream::once(async { Ok(web::Bytes::from_static(b": subscribed\n\n")) });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(greeting.chain(stream)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    cluster: String,
    seq: u64,
    lines: Option<usize>,
}

/// `GET /v1/dashboard/log?cluster=ns.c&seq=3&lines=200`: the tail of one pod's log.
async fn log(_: Reader, portal: web::Data<Portal>, query: web::Query<LogQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let tool = Tool::Log(LogArgs {
        sel: Selection { clusters: vec![q.cluster], seq: vec![q.seq] },
        lines: q.lines.unwrap_or(200).min(2000),
        all: false,
        follow: false,
        escape: Some(false),
        common: Common { json: true, ..portal.common.clone() },
    });
    let report = crate::tools::report(tool).await?;
    let doc = report.document();
    Ok(HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(&doc["pods"][0]))
}

/// Follows every pod's `/events` once for the whole process, however many pages are open, and
/// keeps the last rounds of each cluster (so that a page opened later shows them too).
pub struct Hub {
    tx: broadcast::Sender<Arc<str>>,
    /// Per cluster, the newest last.
    rounds: Mutex<BTreeMap<String, VecDeque<Value>>>,
    started: Mutex<bool>,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub { tx: broadcast::channel(1024).0, rounds: Mutex::default(), started: Mutex::new(false) })
}

impl Hub {
    /// A receiver of every event; the first subscriber starts following the pods.
    fn subscribe(&'static self, common: &Common) -> Result<broadcast::Receiver<Arc<str>>, String> {
        let rx = self.tx.subscribe();
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if !*started {
            let target = ochopod_config::ZkTarget::parse(&common.zk)?;
            let token = reach::token(common)?.map(|t| Arc::from(t.as_str()));
            let (tx, mut from_pods) = mpsc::channel::<Value>(1024);
            if common.ca.is_some() {
                let _ = tx.try_send(
                    json!({"warning": "the dashboard does not follow /events from pods with control.tls yet"}),
                );
            } else {
                actix_web::rt::spawn(watch(target, token, tx));
            }
            actix_web::rt::spawn(async move {
                while let Some(v) = from_pods.recv().await {
                    self.record(&v);
                    let _ = self.tx.send(Arc::from(v.to_string()));
                }
            });
            *started = true;
        }
        Ok(rx)
    }

    /// Keeps a `round` event in its cluster's history: `started` opens an entry, `done` or
    /// `failed` closes the last one the same pod opened (or opens one, when the start was missed).
    fn record(&self, v: &Value) {
        let (Some(pod), Some(event)) = (v["pod"].as_str(), v.get("event")) else { return };
        if event["event"] != "round" {
            return;
        }
        let cluster = pod.rsplit_once(" #").map_or(pod, |(c, _)| c).to_string();
        let mut rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        let list = rounds.entry(cluster).or_default();
        record_round(list, pod, event);
    }

    fn rounds_of(&self, clusters: &[String]) -> BTreeMap<String, Vec<Value>> {
        let rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        clusters.iter().filter_map(|c| rounds.get(c).map(|r| (c.clone(), r.iter().cloned().collect()))).collect()
    }
}

fn record_round(list: &mut VecDeque<Value>, pod: &str, event: &Value) {
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

/// Looks every pod up every 2 s and follows each new one's `/events`, for the life of the server.
async fn watch(target: ochopod_config::ZkTarget, token: Option<Arc<str>>, tx: mpsc::Sender<Value>) {
    let (done_tx, mut done_rx) = mpsc::channel::<String>(64);
    let mut followed: BTreeSet<String> = BTreeSet::new();
    let mut zk: Option<Zk> = None;
    loop {
        while let Ok(gone) = done_rx.try_recv() {
            followed.remove(&gone);
        }
        if zk.is_none() {
            match Zk::connect(target.clone()).await {
                Ok(z) => zk = Some(z),
                Err(e) => {
                    let _ = tx.send(json!({"warning": format!("ZooKeeper: {e}")})).await;
                }
            }
        }
        if let Some(z) = &zk {
            match z.find(&[]).await {
                Ok(found) => {
                    for pod in found.pods {
                        let Some(address) = pod.address.clone() else { continue };
                        if followed.insert(address.clone()) {
                            let follow = follow(address, pod.key(), token.clone(), tx.clone());
                            let done = done_tx.clone();
                            actix_web::rt::spawn(async move {
                                let address = follow.await;
                                let _ = done.send(address).await;
                            });
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(json!({"warning": e})).await;
                    if let Some(z) = zk.take() {
                        z.close().await;
                    }
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// The longest event a pod may send; past it the stream is dropped (and looked up again).
const MAX_EVENT: usize = 64 << 10;

/// Relays one pod's `/events` until its stream ends (the pod died or left), then says so. A
/// plain HTTP/1.1 request on a socket with a 2 KiB buffer: hundreds of pods cost little memory.
async fn follow(address: String, pod: String, token: Option<Arc<str>>, tx: mpsc::Sender<Value>) -> String {
    if tx.send(json!({"pod": pod, "watching": true})).await.is_ok() {
        let relayed = relay(&address, &pod, token.as_deref(), &tx).await;
        if let Err(e) = relayed {
            tracing::debug!(%pod, %e, "events stream ended");
        }
        let _ = tx.send(json!({"pod": pod, "watching": false})).await;
    }
    address
}

/// One line of at most [`MAX_EVENT`] bytes, with its newline.
async fn read_line(io: &mut tokio::io::BufReader<tokio::net::TcpStream>, line: &mut String) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    line.clear();
    let n = (&mut *io).take(MAX_EVENT as u64).read_line(line).await?;
    if n == 0 || !line.ends_with('\n') {
        return Err(std::io::Error::other("the stream ended"));
    }
    Ok(())
}

async fn relay(address: &str, pod: &str, token: Option<&str>, tx: &mpsc::Sender<Value>) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = |what: &str| std::io::Error::other(what.to_string());
    let stream = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| bad("connect timed out"))??;
    let mut io = tokio::io::BufReader::with_capacity(2048, stream);
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET /events HTTP/1.1\r\nhost: {address}\r\naccept: text/event-stream\r\n{auth}\r\n");
    io.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    read_line(&mut io, &mut line).await?;
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(bad(&format!("answered {}", line.trim())));
    }
    let mut chunked = false;
    loop {
        read_line(&mut io, &mut line).await?;
        let header = line.trim().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
    }
    let mut pending = String::new();
    loop {
        if chunked {
            read_line(&mut io, &mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                return Ok(());
            }
            if pending.len() + size > MAX_EVENT {
                return Err(bad("event too large"));
            }
            let mut chunk = vec![0; size + 2];
            io.read_exact(&mut chunk).await?;
            chunk.truncate(size);
            pending.push_str(&String::from_utf8_lossy(&chunk));
        } else {
            read_line(&mut io, &mut line).await?;
            pending.push_str(&line);
        }
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                let event: Value = serde_json::from_str(data.trim()).unwrap_or_else(|_| json!(data.trim()));
                if tx.send(json!({"pod": pod, "event": event})).await.is_err() {
                    return Ok(());
                }
            }
        }
        if pending.len() > MAX_EVENT {
            return Err(bad("event too large"));
        }
    }
}

/// `ochopod dashboard`: the page and its routes on a workstation, without a portal.
#[derive(Clone, Debug, clap::Args)]
pub struct DashboardArgs {
    /// Where the page is served (loopback: anyone who reaches it can read the clusters).
    #[arg(long, default_value = "127.0.0.1:9001", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Allow actions (reconfigure, off/on/reset) to a page that presents this token, read from
    /// this file (default: env OCHOPOD_PORTAL_TOKEN); without one the page only reads.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
    /// The pods' control token, read from this file (default: env OCHOPOD_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub pod_token_file: Option<std::path::PathBuf>,
    /// ZooKeeper, where the pods are found.
    #[arg(long, env = "OCHOPOD_ZK", default_value = "127.0.0.1:2181", value_name = "CONNECT")]
    pub zk: String,
    /// The CA that signs the pods' control certificates (`control.tls`).
    #[arg(long, env = "OCHOPOD_CA", value_name = "PATH")]
    pub ca: Option<std::path::PathBuf>,
}

pub fn main(args: DashboardArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let token = match &args.token_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                eprintln!("ochopod dashboard: --token-file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => std::env::var("OCHOPOD_PORTAL_TOKEN").unwrap_or_default().trim().to_string(),
    };
    if let Err(e) = ochopod_config::ZkTarget::parse(&args.zk) {
        eprintln!("ochopod dashboard: --zk {}: {e}", args.zk);
        return ExitCode::from(2);
    }
    let common = Common {
        zk: args.zk.clone(),
        token_file: args.pod_token_file.clone(),
        ca: args.ca.clone(),
        json: true,
        pod_timeout: std::time::Duration::from_secs(5),
        portal: None,
    };
    let portal_args = super::PortalArgs {
        listen: args.listen,
        token_file: None,
        pod_token_file: args.pod_token_file.clone(),
        zk: args.zk.clone(),
        ca: args.ca.clone(),
        tls_cert: None,
        tls_key: None,
        platform: super::PlatformKind::None,
        network: None,
        labels: Vec::new(),
        deploy_zk: None,
        namespace: "local".into(),
        control_port: 0,
        serve: true,
    };
    let actions = !token.is_empty();
    actix_web::rt::System::new().block_on(async move {
        let portal = web::Data::new(Portal { token, common, args: portal_args, platform: None });
        let open = web::Data::new(OpenReads);
        let server = HttpServer::new(move || {
            App::new().app_data(portal.clone()).app_data(open.clone()).configure(super::server::configure)
        })
        .workers(2)
        .disable_signals()
        .bind(args.listen);
        let server = match server {
            Ok(s) => s.run(),
            Err(e) => {
                eprintln!("ochopod dashboard: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(1);
            }
        };
        let how = if actions { "actions with the token (open …/#token=<token>)" } else { "read only (no token)" };
        eprintln!("ochopod dashboard: http://{}/ — {how}", args.listen);
        let handle = server.handle();
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
            }
            handle.stop(false).await;
        };
        tokio::select! {
            r = server => if let Err(e) = r { eprintln!("ochopod dashboard: {e}"); return ExitCode::from(1); },
            _ = stop => {},
        }
        ExitCode::SUCCESS
    })
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
    fn clusters_name_their_leader_and_dependencies_both_ways() {
        use crate::tools::discovery::PodEntry;
        use crate::tools::fanout::Failure;
        let pod = |cluster: &str, seq: u64, state: &str, deps: &[&str]| {
            let reg = ochopod_core::Registration {
                ip: "127.0.0.1".into(),
                port: "8080".into(),
                ports: [("8080".to_string(), 9000 + seq as u16)].into(),
                seq,
                ..Default::default()
            };
            let info = Info {
                process: "running".into(),
                state: state.into(),
                status: "ok".into(),
                probe: Some("passing".into()),
                dependencies: deps.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            };
            PodResult { pod: PodEntry::from_node(cluster, &format!("u{seq}.{seq:010}"), reg), result: Ok(info) }
        };
        let names = vec!["t.db".to_string(), "t.web".to_string()];
        let mut down = pod("t.web", 3, "follower", &[]);
        down.result = Err(Failure::Unreachable("Connection refused".into()));
        let pods = vec![
            pod("t.db", 1, "leader", &[]),
            pod("t.web", 1, "follower", &["db"]),
            pod("t.web", 2, "leader", &["db"]),
            down,
        ];
        let hashes = [("t.web", ("aa:bb".to_string(), 7))].into();
        let out = serde_json::to_value(clusters_of(&names, &names, &pods, &hashes, BTreeMap::new())).unwrap();
        assert_eq!(out[1]["leader"], "t.web #2");
        assert_eq!(out[1]["probe"], "passing");
        assert_eq!(out[1]["depends_on"], json!(["t.db"]));
        assert_eq!(out[0]["dependents"], json!(["t.web"]));
        assert_eq!((out[1]["running"].as_u64(), out[1]["total"].as_u64()), (Some(2), Some(3)));
        assert_eq!((&out[1]["hash"], &out[1]["hash_ms"]), (&json!("aa:bb"), &json!(7)));
        assert_eq!(out[0]["hash"], Value::Null);
        let unreachable = &out[1]["pods"][2];
        assert_eq!((&unreachable["seq"], &unreachable["process"]), (&json!(3), &Value::Null));
        assert!(unreachable["error"].as_str().unwrap().contains("Connection refused"), "{unreachable}");
    }
}
