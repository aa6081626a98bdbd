//! Deploy, scale and delete clusters on the portal's platform, and the CLI commands that ask
//! for them (`ochopod deploy | scale | delete`, through `--portal`).
//!
//! Deploy: the declaration is validated first (the `file:line:column` messages of `ochopod
//! validate`) and nothing is created if it is bad; a cluster that already has members is
//! refused. The members are created, then the call waits until the cluster is formed: as many
//! pods registered as asked for, one leader, nothing pending, and the leader's snapshot holding
//! exactly the registered pods. A deploy that fails or times out removes what it created (its
//! containers, then its nodes in the coordination store) and says what was missing. Scale down
//! stops the highest seqs first (the registration's seq, matched to members by address), one at
//! a time, each through a clean stop. Delete removes every member, then the cluster's ZooKeeper
//! nodes (its etcd keys). Members coordinate where the portal does: `OCHOPOD_ZK`
//! (`--deploy-zk`, else `--zk`), or `OCHOPOD_ETCD` (`--deploy-etcd`, else the portal's own,
//! credentials included) when the portal is on etcd.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use clap::Args;
use ochopod_platform::{Member, Platform, PlatformError, Spec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::server::{body, ApiError, Authorized, Portal};
use super::{PlatformKind, PortalArgs};
use crate::tools::discovery::{match_clusters, store_label, store_nodes, Zk};
use crate::tools::wait::judge;
use crate::tools::{Common, ToolError};

/// The platform the portal was started with.
pub async fn platform(args: &PortalArgs) -> Result<Option<Arc<dyn Platform>>, String> {
    Ok(match args.platform {
        PlatformKind::None => None,
        PlatformKind::Kubernetes => {
            // The namespace is the kubeconfig context's, or the portal pod's own (service account).
            let config = ochopod_platform::kubernetes::Config { namespace: None, labels: args.labels() };
            Some(Arc::new(ochopod_platform::kubernetes::Kubernetes::connect(config).await.map_err(|e| e.to_string())?))
        }
        PlatformKind::Docker => {
            let config = ochopod_platform::docker::Config { network: args.network.clone(), labels: args.labels() };
            Some(Arc::new(ochopod_platform::docker::Docker::connect(config).await.map_err(|e| e.to_string())?))
        }
    })
}

/// The cluster names the coordination store holds (for errors that name what exists).
pub async fn cluster_names(common: &Common) -> Result<Vec<String>, String> {
    let zk = Zk::connect(crate::tools::reach::zk_target(common).map_err(|e| e.to_string())?).await?;
    let names = zk.cluster_names().await;
    zk.close().await;
    names
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployRequest {
    /// The pod declaration (YAML text).
    pub declaration: String,
    /// The name errors give the declaration (`pod.yaml`).
    pub source: Option<String>,
    pub image: String,
    pub count: usize,
    /// `docker` (the portal's platform when absent).
    pub platform: Option<String>,
    /// Where the declaration goes in each container (default `/opt/ochopod/pod.yaml`).
    pub path: Option<String>,
    /// Extra environment for the pods.
    pub env: BTreeMap<String, String>,
    /// How long forming may take (default `120s`).
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleRequest {
    /// `<namespace>.<cluster>`, or a bare cluster name.
    pub cluster: String,
    pub count: Option<usize>,
    pub timeout: Option<String>,
}

fn platform_error(e: PlatformError) -> ApiError {
    match e {
        PlatformError::Unsupported(m) => ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", m),
        e => ApiError::new(StatusCode::BAD_GATEWAY, "platform", e.to_string()),
    }
}

fn the_platform(portal: &Portal, asked: Option<&str>) -> Result<Arc<dyn Platform>, ApiError> {
    let platform = portal.platform.clone().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", "this portal runs with --platform none")
    })?;
    match asked {
        Some(name) if name != platform.name() => Err(ApiError::bad(format!(
            "platform {name:?}: this portal deploys on {} (ochopod portal --platform)",
            platform.name()
        ))),
        _ => Ok(platform),
    }
}

fn timeout_of(text: &Option<String>, default: u64) -> Result<Duration, ApiError> {
    match text {
        Some(t) => crate::tools::parse_duration_arg(t).map_err(|e| ApiError::bad(format!("timeout {t:?}: {e}"))),
        None => Ok(Duration::from_secs(default)),
    }
}

/// Checks a deploy and turns it into a spec, before anything is created.
pub fn spec_of(r: &DeployRequest) -> Result<(Spec, ochopod_config::Settings), ApiError> {
    if r.image.trim().is_empty() {
        return Err(ApiError::bad("`image` is required: the image the pods run"));
    }
    if r.count == 0 {
        return Err(ApiError::bad("`count` must be at least 1"));
    }
    let source = r.source.clone().unwrap_or_else(|| "pod.yaml".into());
    let settings = ochopod_config::parse_str(Path::new(&source), &r.declaration, &r.env)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_declaration", e.to_string()))?;
    let path = r.path.clone().unwrap_or_else(|| "/opt/ochopod/pod.yaml".into());
    if !path.starts_with('/') {
        return Err(ApiError::bad(format!("path {path:?} is not absolute")));
    }
    let mut ports: Vec<u16> = settings.ports.keys().copied().collect();
    if !ports.contains(&settings.port) {
        ports.insert(0, settings.port);
    }
    let grace = settings.process.as_ref().map_or(Duration::from_secs(10), |p| p.grace);
    let spec = Spec {
        cluster: format!("{}.{}", settings.namespace, settings.cluster),
        image: r.image.clone(),
        declaration: r.declaration.clone(),
        path,
        env: r.env.clone(),
        ports,
        grace_secs: grace.as_secs() + 5,
    };
    Ok((spec, settings))
}

/// Where deployed members coordinate, added to the variables the request gave them (which win):
/// `OCHOPOD_ETCD` (credentials included: the members need them) when the portal deploys onto
/// etcd, else `OCHOPOD_ZK`.
pub fn member_env(env: &mut BTreeMap<String, String>, etcd: Option<&ochopod_config::Secret>, zk: &str) {
    match etcd {
        Some(url) => env.entry(ochopod_config::etcd::ENV.into()).or_insert_with(|| url.0.clone()),
        None => env.entry("OCHOPOD_ZK".into()).or_insert_with(|| zk.to_string()),
    };
}

/// Waits until `cluster` is formed with exactly `count` pods; `Err` says what was missing.
async fn formed(common: &Common, cluster: &str, count: usize, timeout: Duration) -> Result<String, String> {
    let target = crate::tools::reach::zk_target(common).map_err(|e| e.to_string())?;
    let client = crate::tools::reach::pod_client(common).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let label = crate::tools::discovery::store_label(&target);
    let zk =
        tokio::time::timeout(timeout, Zk::connect(target)).await.map_err(|_| format!("no answer from {label}"))??;
    let globs = vec![cluster.to_string()];
    let result = loop {
        let seen: Result<String, String> = async {
            let found = zk.find(&globs).await?;
            if found.pods.len() != count {
                return Err(format!("{} of {count} pods registered", found.pods.len()));
            }
            let results = crate::tools::fanout::fan_out(&found.pods, Duration::from_secs(3), |address| {
                let client = client.clone();
                async move { client.info(&address, Duration::from_secs(2)).await.map_err(Into::into) }
            })
            .await;
            let rows = judge(&globs, &found.clusters, &results, Some(count), false)?;
            let keys: std::collections::BTreeSet<String> = found.pods.iter().map(|p| p.uuid.clone()).collect();
            match zk.snapshot_keys(cluster).await {
                Some(s) if s == keys => Ok(crate::tools::wait::ready_line(&rows)),
                _ => Err("the leader has not configured every registered pod yet".into()),
            }
        }
        .await;
        let last = match seen {
            Ok(line) => break Ok(line),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            break Err(format!("not formed after {timeout:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    zk.close().await;
    result
}

/// Removes the nodes (etcd: the keys) of a cluster whose pods are gone.
async fn purge(common: &Common, cluster: &str) -> Result<usize, String> {
    let zk = Zk::connect(crate::tools::reach::zk_target(common).map_err(|e| e.to_string())?).await?;
    // A pod's ephemeral node lasts until its session closes: a few tries.
    let mut result = Err(String::new());
    for _ in 0..20 {
        result = zk.purge(cluster).await;
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    zk.close().await;
    result
}

/// The cluster a scale or delete names: exact, or a bare name in any namespace; else 404 with
/// the clusters that exist.
async fn resolve(portal: &Portal, platform: &dyn Platform, name: &str) -> Result<String, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad("`cluster` is required"));
    }
    let members = platform.list(None).await.map_err(platform_error)?;
    let mut deployed: Vec<String> = members.iter().map(|m| m.cluster.clone()).collect();
    deployed.dedup();
    let matched = match_clusters(&deployed, &[name.to_string()]);
    match matched.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            let mut known = deployed.clone();
            known.extend(cluster_names(&portal.common).await.unwrap_or_default());
            known.sort();
            known.dedup();
            let list = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_cluster",
                format!("no cluster {name} deployed by this portal; the clusters that exist: {list}"),
            )
            .with("clusters", known))
        }
        many => Err(ApiError::bad(format!("{name} matches several clusters: {}; name one", many.join(", ")))),
    }
}

pub async fn deploy_route(
    _: Authorized,
    portal: web::Data<Portal>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: DeployRequest = body(&bytes)?;
    // The declaration first: a bad one is refused before anything else is even looked at.
    let (mut spec, _) = spec_of(&r)?;
    let timeout = timeout_of(&r.timeout, 120)?;
    let platform = the_platform(&portal, r.platform.as_deref())?;
    let zk = portal.args.deploy_zk.clone().unwrap_or_else(|| portal.args.zk.clone());
    member_env(&mut spec.env, portal.deploy_etcd.as_ref(), &zk);
    let existing = platform.list(Some(&spec.cluster)).await.map_err(platform_error)?;
    if !existing.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("{} is already deployed ({} members): scale it, or delete it first", spec.cluster, existing.len()),
        ));
    }
    let started = Instant::now();
    let outcome = match platform.create(&spec, r.count).await {
        Ok(members) => formed(&portal.common, &spec.cluster, r.count, timeout).await.map(|line| (members, line)),
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok((members, line)) => Ok(HttpResponse::Ok().json(json!({
            "cluster": spec.cluster, "members": members, "ready": line, "elapsed": started.elapsed().as_secs_f64(),
        }))),
        Err(why) => {
            let removed = platform.delete(&spec.cluster).await.map(|m| m.len());
            let purged = purge(&portal.common, &spec.cluster).await;
            let cleanup = match (removed, purged) {
                (Ok(n), Ok(_)) => format!("removed its {n} members and its {}", store_nodes()),
                (r, p) => format!("cleanup incomplete: members {r:?}, {} {p:?}", store_nodes()),
            };
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "deploy_failed",
                format!("deploy of {} failed: {why}; {cleanup}", spec.cluster),
            ))
        }
    }
}

pub async fn scale_route(
    _: Authorized,
    portal: web::Data<Portal>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ScaleRequest = body(&bytes)?;
    let count = r.count.ok_or_else(|| ApiError::bad("`count` is required: the number of pods wanted"))?;
    if count == 0 {
        return Err(ApiError::bad("`count` must be at least 1 (delete removes a cluster)"));
    }
    let timeout = timeout_of(&r.timeout, 120)?;
    let platform = the_platform(&portal, None)?;
    let cluster = resolve(&portal, &*platform, &r.cluster).await?;
    let members = platform.list(Some(&cluster)).await.map_err(platform_error)?;
    // Highest seq first: the registrations' seqs, matched to members by address.
    let mut first = Vec::new();
    if count < members.len() {
        let zk = Zk::connect(crate::tools::reach::zk_target(&portal.common)?)
            .await
            .map_err(|e| ApiError::from(ToolError::ZooKeeper(e)))?;
        let found = zk.find(std::slice::from_ref(&cluster)).await;
        zk.close().await;
        let mut pods = found.map_err(|e| ApiError::from(ToolError::ZooKeeper(e)))?.pods;
        pods.sort_by_key(|p| std::cmp::Reverse(p.seq));
        for pod in pods {
            if let Some(m) = members.iter().find(|m| m.ip.as_deref() == Some(pod.registration.ip.as_str())) {
                first.push(m.id.clone());
            }
        }
    }
    let started = Instant::now();
    let now = platform.scale(&cluster, count, &first).await.map_err(platform_error)?;
    let line = formed(&portal.common, &cluster, count, timeout).await.map_err(|why| {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "not_formed",
            format!("{cluster} scaled to {count} members but {why}"),
        )
    })?;
    Ok(HttpResponse::Ok()
        .json(json!({"cluster": cluster, "members": now, "ready": line, "elapsed": started.elapsed().as_secs_f64()})))
}

pub async fn delete_route(
    _: Authorized,
    portal: web::Data<Portal>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ScaleRequest = body(&bytes)?;
    let platform = the_platform(&portal, None)?;
    let cluster = resolve(&portal, &*platform, &r.cluster).await?;
    let removed = platform.delete(&cluster).await.map_err(platform_error)?;
    let nodes = purge(&portal.common, &cluster).await.map_err(|e| {
        let store = crate::tools::reach::zk_target(&portal.common).map(|t| store_label(&t)).unwrap_or_default();
        ApiError::new(StatusCode::BAD_GATEWAY, "zookeeper", format!("{cluster}: members removed, but {store}: {e}"))
    })?;
    // `zookeeper_nodes_deleted` as before (the count of etcd keys on etcd); `store` says which.
    Ok(HttpResponse::Ok().json(json!({
        "cluster": cluster, "removed": removed, "zookeeper_nodes_deleted": nodes, "store": store_nodes(),
    })))
}

pub async fn platform_route(_: Authorized, portal: web::Data<Portal>) -> Result<HttpResponse, ApiError> {
    let platform = the_platform(&portal, None)?;
    let members: Vec<Member> = platform.list(None).await.map_err(platform_error)?;
    Ok(HttpResponse::Ok().json(json!({"platform": platform.name(), "members": members})))
}

/// `ochopod deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The pod declaration (YAML).
    pub pod: std::path::PathBuf,
    /// The image the pods run (its entrypoint is replaced by `ochopod run <path>`).
    #[arg(long)]
    pub image: String,
    /// How many pods.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub count: usize,
    /// `docker` or `kubernetes` (default: the portal's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Where the declaration goes in each container.
    #[arg(long, default_value = "/opt/ochopod/pod.yaml")]
    pub path: String,
    /// Environment for the pods, `K=V`; repeatable.
    #[arg(short = 'e', long = "env", value_name = "K=V", value_parser = super::parse_label)]
    pub env: Vec<(String, String)>,
    /// How long forming may take.
    #[arg(short = 't', long, default_value = "120s")]
    pub timeout: String,
    /// Print what would be created instead (Kubernetes: the objects to `kubectl apply -f`).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: Common,
}

/// `ochopod scale` and `ochopod delete`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// `<namespace>.<cluster>`, or a bare cluster name.
    pub cluster: String,
    /// How many pods (scale only).
    pub count: Option<usize>,
    #[arg(short = 't', long, default_value = "120s")]
    pub timeout: String,
    #[command(flatten)]
    pub common: Common,
}

fn portal_of(common: &Common) -> Result<String, ToolError> {
    common
        .portal
        .clone()
        .ok_or_else(|| ToolError::Usage("this command goes through a portal: --portal URL (or OCHOPOD_PORTAL)".into()))
}

fn show(answer: &Value, json: bool, what: &str) -> Result<(), ToolError> {
    if json {
        return crate::tools::output::print_json(answer);
    }
    let members = answer.get("members").or_else(|| answer.get("removed")).and_then(Value::as_array).map_or(0, Vec::len);
    let cluster = answer["cluster"].as_str().unwrap_or("?");
    let line = match answer.get("ready").and_then(Value::as_str) {
        Some(ready) => format!("{cluster}: {what}, {members} members; {ready}\n"),
        None => {
            let nodes = answer["store"].as_str().unwrap_or("ZooKeeper nodes");
            format!("{cluster}: {what}, {members} members removed, its {nodes} deleted\n")
        }
    };
    crate::tools::output::print(&line)
}

async fn cli_deploy(a: DeployArgs) -> Result<(), ToolError> {
    let text = std::fs::read_to_string(&a.pod).map_err(|e| ToolError::Usage(format!("{}: {e}", a.pod.display())))?;
    let request = DeployRequest {
        declaration: text,
        source: Some(a.pod.display().to_string()),
        image: a.image.clone(),
        count: a.count,
        platform: a.platform.clone(),
        path: Some(a.path.clone()),
        env: a.env.iter().cloned().collect(),
        timeout: Some(a.timeout.clone()),
    };
    // Refused here, before the portal is even asked, with `ochopod validate`'s message.
    let (spec, _) = spec_of(&request).map_err(|e| ToolError::Usage(e.to_string()))?;
    if a.dry_run {
        let objects = match a.platform.as_deref() {
            Some("kubernetes") => ochopod_platform::kubernetes::objects(&spec, a.count),
            _ => json!({"spec": spec, "count": a.count}),
        };
        return crate::tools::output::print_json(&objects);
    }
    let url = portal_of(&a.common)?;
    let timeout = crate::tools::parse_duration_arg(&a.timeout).map_err(ToolError::Usage)?;
    let body = serde_json::to_value(&request).map_err(|e| ToolError::Usage(e.to_string()))?;
    let answer =
        crate::tools::remote::post(&a.common, &url, "v1/deploy", &body, timeout * 2 + Duration::from_secs(60)).await?;
    show(&answer, a.common.json, "deployed")
}

async fn cli_scale(a: ScaleArgs, delete: bool) -> Result<(), ToolError> {
    let url = portal_of(&a.common)?;
    if !delete && a.count.is_none() {
        return Err(ToolError::Usage("scale needs the number of pods: ochopod scale <cluster> <count>".into()));
    }
    let timeout = crate::tools::parse_duration_arg(&a.timeout).map_err(ToolError::Usage)?;
    let request = ScaleRequest { cluster: a.cluster.clone(), count: a.count, timeout: Some(a.timeout.clone()) };
    let body = serde_json::to_value(&request).map_err(|e| ToolError::Usage(e.to_string()))?;
    let route = if delete { "v1/delete" } else { "v1/scale" };
    // A scale down stops members one at a time, each within its grace.
    let answer =
        crate::tools::remote::post(&a.common, &url, route, &body, timeout * 3 + Duration::from_secs(300)).await?;
    show(&answer, a.common.json, if delete { "deleted" } else { "scaled" })
}

fn block_on(f: impl std::future::Future<Output = Result<(), ToolError>>) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return crate::tools::error::exit(Err(ToolError::Runtime(e))),
    };
    crate::tools::error::exit(runtime.block_on(f))
}

pub fn deploy_main(a: DeployArgs) -> std::process::ExitCode {
    block_on(cli_deploy(a))
}

pub fn scale_main(a: ScaleArgs, delete: bool) -> std::process::ExitCode {
    block_on(cli_scale(a, delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_coordinate_where_the_portal_does() {
        let on_etcd = ochopod_config::Secret("etcd://root:pw@10.0.0.1:2379/ochopod".into());
        let mut env = BTreeMap::from([("APP".to_string(), "1".to_string())]);
        member_env(&mut env, Some(&on_etcd), "zk:2181");
        assert_eq!(env["OCHOPOD_ETCD"], "etcd://root:pw@10.0.0.1:2379/ochopod", "credentials included");
        assert!(!env.contains_key("OCHOPOD_ZK"), "{env:?}");
        assert_eq!(env["APP"], "1");
        let mut env = BTreeMap::new();
        member_env(&mut env, None, "zk:2181");
        assert_eq!((env.get("OCHOPOD_ZK").map(String::as_str), env.get("OCHOPOD_ETCD")), (Some("zk:2181"), None));
        // What the request sets itself wins.
        let mut env = BTreeMap::from([("OCHOPOD_ETCD".to_string(), "etcd://other:2379".to_string())]);
        member_env(&mut env, Some(&on_etcd), "zk:2181");
        assert_eq!(env["OCHOPOD_ETCD"], "etcd://other:2379");
    }
}
