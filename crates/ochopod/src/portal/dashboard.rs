//! The live dashboard: one static page (`dashboard/index.html`, embedded with `include_str!`)
//! whose data comes from three read routes and whose actions go through the portal's own API.
//!
//! Theory of operation: the page is plain HTML, CSS and JavaScript, served as is at `/` (no
//! template logic here, no build step, and a `Content-Security-Policy` that lets it talk to this
//! server only). It asks `GET /v1/dashboard` for every cluster at once (each pod's `/info`, the
//! cluster's hash and when it changed, and the round history), answered from the snapshot of the
//! process's [`super::hub`], which follows each pod's `/events` once (however many pages are
//! open) and reads again only what its events say is out of date; then it listens to
//! `GET /v1/dashboard/events`, the hub's events. On an event the page updates what it can at
//! once (a pod gone, a new leader, a round started) and asks again for that cluster's state
//! (`{"cluster", "changed": true}`: pods came or went). `GET /v1/dashboard/log` is the tail
//! of one pod's log (the tool `log`). Actions (reconfigure, off/on/reset) are `POST /v1/<tool>`,
//! the routes every client uses.
//!
//! Who may do what: the portal (`ochopod portal`) needs its token for everything but `/` and
//! `/healthz`, so a page there asks for the token (or takes it from `#token=…`) and, once it can
//! read, may act. `ochopod dashboard --zk …` serves the same routes on a workstation (loopback by
//! default) without a pod around it: reads are open there ([`OpenReads`]), and actions exist
//! only when it was started with a token and the page presents it. `GET /v1/dashboard` says
//! whether the caller may act (`actions`), and the page offers no action otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use ochopod_api::Info;
use ochopod_core::deps::Dependency;

use super::hub::hub;
use super::server::{authorize, globs_of, ApiError, Portal};
use crate::tools::discovery::match_clusters;
use crate::tools::fanout::PodResult;
use crate::tools::{Common, LogArgs, Selection, Tool};

/// The page, embedded: what `/` serves, byte for byte.
pub const PAGE: &str = include_str!("dashboard/index.html");

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
        let open = req.app_data::<web::Data<OpenReads>>().is_some();
        std::future::ready(authorize(req, open).map(|actions| Reader { actions }))
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
    /// Comma-separated globs of the clusters whose pods are wanted (all when absent, none when
    /// empty): the page's first request asks for the selected cluster's only.
    pods: Option<String>,
}

/// `GET /v1/dashboard?clusters=a,b[&pods=c]`: every matching cluster with its pods, hash and rounds, from
/// the hub's snapshot (what its events said is out of date is read live first).
async fn state(
    reader: Reader,
    portal: web::Data<Portal>,
    query: web::Query<StateQuery>,
) -> Result<HttpResponse, ApiError> {
    let globs = globs_of(query.clusters.as_deref());
    let started = std::time::Instant::now();
    hub().start(&portal.common)?;
    let (body, pods) = hub()
        .view(&globs, Duration::from_secs(10), |shown| {
            let mut clusters = clusters_of(&shown.live, shown.names, &shown.pods, &shown.hashes, shown.rounds);
            if let Some(wanted) = query.pods.as_deref() {
                let wanted = globs_of(Some(wanted));
                for c in &mut clusters {
                    if wanted.is_empty() || match_clusters(&[c.cluster.to_string()], &wanted).is_empty() {
                        c.pods = None;
                    }
                }
            }
            let body = serde_json::to_vec(&StateView { actions: reader.actions, clusters, warnings: shown.warnings });
            (body, shown.pods.len())
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "zookeeper", e))?;
    let body = body.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    tracing::debug!(pods, ms = started.elapsed().as_millis(), "dashboard state");
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
    /// When the hash node was last written (unix milliseconds); `None` when the store keeps no
    /// write time (etcd), so that the page says unknown rather than 1970.
    hash_ms: Option<i64>,
    depends_on: Vec<String>,
    dependents: Vec<String>,
    rounds: Vec<Value>,
    /// Absent when the request did not ask for this cluster's pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pods: Option<Vec<PodView<'a>>>,
}

/// Groups the pods by cluster, with what the page shows of each: the leader, its probe and
/// status, the hash and when it changed, the dependencies both ways, the rounds.
fn clusters_of<'a>(
    live: &'a [String],
    names: &[String],
    results: &[&'a PodResult<Info>],
    hashes: &'a BTreeMap<&str, (String, i64)>,
    mut rounds: BTreeMap<String, Vec<Value>>,
) -> Vec<ClusterView<'a>> {
    let mut out: Vec<ClusterView<'a>> = Vec::new();
    for cluster in live {
        let mine: Vec<&PodResult<Info>> = results.iter().copied().filter(|r| &r.pod.cluster == cluster).collect();
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
            hash_ms: hash.map(|(_, ms)| *ms).filter(|ms| *ms > 0),
            depends_on: declared.into_iter().collect(),
            dependents: Vec::new(),
            rounds: rounds.remove(cluster).unwrap_or_default(),
            pods: Some(mine.iter().map(|r| PodView::of(r)).collect()),
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

/// `GET /v1/dashboard/events`: the hub's messages, `{"pod", "event"}`, `{"pod", "watching"}`,
/// `{"cluster", "changed": true}`, `{"warning"}`; `{"resync": true}` when this client fell behind.
async fn events(_: Reader, portal: web::Data<Portal>) -> Result<HttpResponse, ApiError> {
    hub().start(&portal.common)?;
    Ok(super::events::sse(hub().subscribe(), Vec::new(), Vec::new()))
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
    /// ZooKeeper, where the pods are found (etcd when `OCHOPOD_ETCD` is set).
    #[arg(long, env = "OCHOPOD_ZK", default_value = "127.0.0.1:2181", value_name = "CONNECT")]
    pub zk: String,
    /// The CA that signs the pods' control certificates (`control.tls`).
    #[arg(long, env = "OCHOPOD_CA", value_name = "PATH")]
    pub ca: Option<std::path::PathBuf>,
}

pub fn main(args: DashboardArgs) -> ExitCode {
    super::server::init_logs("warn");
    let token = match super::server::read_token(args.token_file.as_deref(), "OCHOPOD_PORTAL_TOKEN") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ochopod dashboard: {e}");
            return ExitCode::from(2);
        }
    };
    let common = match super::server::common(&args.zk, args.pod_token_file.clone(), args.ca.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ochopod dashboard: {e}");
            return ExitCode::from(2);
        }
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
        deploy_etcd: None,
        deploy_etcd_file: None,
        etcd_file: None,
        zk_file: None,
        deploy_zk_file: None,
        namespace: "local".into(),
        control_port: 0,
        serve: true,
    };
    let how =
        if token.is_empty() { "read only (no token)" } else { "actions with the token (open …/#token=<token>)" };
    let banner = format!("ochopod dashboard: http://{}/ — {how}", args.listen);
    let portal = Portal { token, common, args: portal_args, platform: None, deploy_etcd: None };
    actix_web::rt::System::new().block_on(super::server::serve("ochopod dashboard", portal, true, None, banner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let pods = [
            pod("t.db", 1, "leader", &[]),
            pod("t.web", 1, "follower", &["db"]),
            pod("t.web", 2, "leader", &["db"]),
            down,
        ];
        let hashes = [("t.web", ("aa:bb".to_string(), 7))].into();
        let pods: Vec<&PodResult<Info>> = pods.iter().collect();
        let out = serde_json::to_value(clusters_of(&names, &names, &pods, &hashes, BTreeMap::new())).unwrap();
        assert_eq!(out[1]["leader"], "t.web #2");
        assert_eq!(out[1]["probe"], "passing");
        assert_eq!(out[1]["depends_on"], json!(["t.db"]));
        assert_eq!(out[0]["dependents"], json!(["t.web"]));
        assert_eq!((out[1]["running"].as_u64(), out[1]["total"].as_u64()), (Some(2), Some(3)));
        assert_eq!((&out[1]["hash"], &out[1]["hash_ms"]), (&json!("aa:bb"), &json!(7)));
        assert_eq!(out[0]["hash"], Value::Null);
        // etcd keeps no write time (0): unknown, not the epoch.
        let hashes = [("t.web", ("aa:bb".to_string(), 0))].into();
        let out = serde_json::to_value(clusters_of(&names, &names, &pods, &hashes, BTreeMap::new())).unwrap();
        assert_eq!((&out[1]["hash"], &out[1]["hash_ms"]), (&json!("aa:bb"), &Value::Null));
        let unreachable = &out[1]["pods"][2];
        assert_eq!((&unreachable["seq"], &unreachable["process"]), (&json!(3), &Value::Null));
        assert!(unreachable["error"].as_str().unwrap().contains("Connection refused"), "{unreachable}");
    }
}
