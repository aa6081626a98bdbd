//! The sequence every tool that talks to pods runs, written once: the pod client (token, CA),
//! the pods (ZooKeeper, then `-i`), one call per pod in parallel, and the [`Outcome`] the tool
//! reports from — as a table, as `--json`, or (the portal) as data.

use std::future::Future;
use std::time::Duration;

use ochopod_api::{Info, PodClient};
use serde_json::Value;

use super::discovery::{select_seqs, Found, Zk, ZkTarget};
use super::error::ToolError;
use super::fanout::{failures, fan_out, Failed, Failure, PodResult};
use super::views::document;
use super::wait::globs_text;
use super::Common;

/// The token, from `--token-file` or `OCHOPOD_TOKEN`; never printed.
pub fn token(common: &Common) -> Result<Option<String>, String> {
    if let Some(path) = &common.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("token file {} is empty", path.display()));
        }
        return Ok(Some(t.to_string()));
    }
    Ok(std::env::var("OCHOPOD_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

/// The client every request to a pod goes through: with the token, over HTTPS with `--ca`.
pub fn pod_client(common: &Common) -> Result<PodClient, ToolError> {
    let token = token(common).map_err(ToolError::Usage)?;
    match &common.ca {
        Some(ca) => PodClient::with_tls(token, ca).map_err(|e| ToolError::Usage(e.to_string())),
        None => Ok(PodClient::new(token)),
    }
}

/// Refuses a command that would change every pod of whole clusters unless asked for explicitly.
pub fn check_force(verb: &str, clusters: &[String], seq: &[u64], force: bool) -> Result<(), ToolError> {
    if seq.is_empty() && !force {
        return Err(ToolError::Usage(format!(
            "refusing to {verb} every pod of {}: add --force, or select pods with -i <seq>",
            clusters.join(" ")
        )));
    }
    Ok(())
}

/// Which pods a tool looks at.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// Cluster globs over `<namespace>.<cluster>` (all clusters when empty).
    pub globs: &'a [String],
    /// Only these seqs (all when empty).
    pub seq: &'a [u64],
    /// Whether matching clusters without pods is a result (`ls`) rather than an error.
    pub clusters_only: bool,
}

impl<'a> Query<'a> {
    pub fn pods(globs: &'a [String], seq: &'a [u64]) -> Self {
        Query { globs, seq, clusters_only: false }
    }
}

/// The pods to act on, after ZooKeeper and `-i`.
#[derive(Debug)]
pub struct Targeted {
    pub found: Found,
    /// Seqs asked for that matched no pod: they make the command fail.
    pub problems: Vec<String>,
}

/// `--zk`, read by the pods' own parser; a bad one is bad usage.
pub fn zk_target(common: &Common) -> Result<ZkTarget, ToolError> {
    ZkTarget::parse(&common.zk).map_err(ToolError::Usage)
}

/// Looks the pods up and closes the session. Nothing matched is an error; so is no pod at all,
/// unless the query is about clusters.
pub async fn discover(common: &Common, query: Query<'_>) -> Result<Targeted, ToolError> {
    let zk = Zk::connect(zk_target(common)?).await.map_err(ToolError::ZooKeeper)?;
    let found = zk.find(query.globs).await;
    zk.close().await;
    select(found.map_err(ToolError::ZooKeeper)?, query)
}

/// Applies `-i` to what ZooKeeper holds, and the rules on finding nothing.
pub fn select(mut found: Found, query: Query<'_>) -> Result<Targeted, ToolError> {
    if found.clusters.is_empty() {
        return Err(ToolError::NoCluster(globs_text(query.globs)));
    }
    let (pods, missing) = select_seqs(std::mem::take(&mut found.pods), query.seq);
    found.pods = pods;
    let problems: Vec<String> =
        missing.iter().map(|s| format!("no pod has seq {s} in {}", found.clusters.join(" "))).collect();
    if found.pods.is_empty() && !(query.clusters_only && query.seq.is_empty()) {
        let mut notes: Vec<String> = found.warnings.iter().map(|w| format!("warning: {w}")).collect();
        notes.extend(problems);
        return Err(ToolError::NoPods { clusters: found.clusters.join(" "), notes });
    }
    Ok(Targeted { found, problems })
}

/// The client and the pods it will talk to.
pub struct Reached {
    pub client: PodClient,
    pub targeted: Targeted,
}

/// The pod client, then the pods: everything a fan-out needs.
pub async fn reach(common: &Common, query: Query<'_>) -> Result<Reached, ToolError> {
    let client = pod_client(common)?;
    let targeted = discover(common, query).await?;
    Ok(Reached { client, targeted })
}

impl Reached {
    /// One `call(client, address)` per targeted pod, all at once, each bounded by `limit`.
    pub async fn ask<T, F, Fut>(&self, limit: Duration, call: F) -> Outcome<T>
    where
        F: Fn(PodClient, String) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let results = fan_out(&self.targeted.found.pods, limit, |address| call(self.client.clone(), address)).await;
        Outcome {
            clusters: self.targeted.found.clusters.clone(),
            results,
            problems: self.targeted.problems.clone(),
            warnings: self.targeted.found.warnings.clone(),
        }
    }

    /// Every targeted pod's `/info`.
    pub async fn infos(&self, timeout: Duration) -> Outcome<Info> {
        self.ask(timeout + Duration::from_secs(1), |client, address| async move {
            client.info(&address, timeout).await.map_err(Failure::from)
        })
        .await
    }
}

/// The whole sequence: client, pods, one call each.
pub async fn ask<T, F, Fut>(
    common: &Common,
    query: Query<'_>,
    limit: Duration,
    call: F,
) -> Result<Outcome<T>, ToolError>
where
    F: Fn(PodClient, String) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    Ok(reach(common, query).await?.ask(limit, call).await)
}

/// What a fan-out found and did: the data every tool reports from.
#[derive(Clone, Debug)]
pub struct Outcome<T> {
    /// The clusters matched, sorted (a cluster may have no pods).
    pub clusters: Vec<String>,
    /// One result per targeted pod, sorted by cluster then seq.
    pub results: Vec<PodResult<T>>,
    /// Seqs asked for that matched no pod.
    pub problems: Vec<String>,
    /// ZooKeeper nodes skipped (a pod still registering, unreadable JSON).
    pub warnings: Vec<String>,
}

impl<T> Outcome<T> {
    pub fn failed(&self) -> Vec<Failed> {
        failures(&self.results)
    }

    /// The `--json` document: `entries` under `key`, then `ok`, `failed` and `problems`.
    pub fn document(&self, key: &str, entries: Vec<Value>) -> Value {
        document(key, entries, &self.failed(), &self.problems)
    }

    /// Ok only when every targeted pod succeeded and no seq asked for was missing.
    pub fn verdict(&self) -> Result<(), ToolError> {
        verdict(self.results.len(), self.failed(), &self.problems)
    }
}

/// The end of every fan-out: which pods failed and why, as an error that the exit code follows.
pub fn verdict(targeted: usize, failed: Vec<Failed>, problems: &[String]) -> Result<(), ToolError> {
    if failed.is_empty() && problems.is_empty() {
        Ok(())
    } else {
        Err(ToolError::Pods { targeted, failed, problems: problems.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::discovery::PodEntry;
    use ochopod_core::Registration;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn changing_whole_clusters_needs_force_or_a_selection() {
        let clusters = args(&["web"]);
        let refused = check_force("off", &clusters, &[], false).unwrap_err();
        assert_eq!(refused.exit_code(), 2);
        assert!(refused.to_string().contains("refusing to off every pod of web: add --force"), "{refused}");
        assert!(check_force("off", &clusters, &[], true).is_ok());
        assert!(check_force("off", &clusters, &[3], false).is_ok());
    }

    #[test]
    fn the_token_comes_from_the_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let common = Common {
            zk: "h:1".into(),
            token_file: Some(path.clone()),
            ca: None,
            json: false,
            pod_timeout: Duration::from_secs(1),
            portal: None,
        };
        assert_eq!(token(&common), Ok(Some("s3cret".to_string())));
        std::fs::write(&path, "  \n").unwrap();
        assert!(token(&common).unwrap_err().contains("is empty"));
        let missing = Common { token_file: Some(dir.path().join("nope")), ..common };
        assert!(token(&missing).unwrap_err().contains("nope"));
    }

    fn pod(cluster: &str, seq: u64) -> PodEntry {
        PodEntry::from_node(cluster, &format!("u{seq}.{seq:010}"), Registration { seq, ..Default::default() })
    }

    #[test]
    fn finding_nothing_is_an_error_that_says_what() {
        let none = select(Found::default(), Query::pods(&args(&["web"]), &[])).unwrap_err();
        assert_eq!(none.to_string(), "no cluster matches web");
        let empty = || Found {
            clusters: args(&["t.web"]),
            pods: vec![],
            warnings: vec!["t.web/pods/x: skipped".into()],
            ..Found::default()
        };
        let no_pods = select(empty(), Query::pods(&[], &[])).unwrap_err();
        assert!(matches!(&no_pods, ToolError::NoPods { notes, .. } if notes == &["warning: t.web/pods/x: skipped"]));
        let clusters = Query { clusters_only: true, ..Query::pods(&[], &[]) };
        assert!(select(empty(), clusters).is_ok(), "ls shows clusters without pods");
        let found =
            Found { clusters: args(&["t.web"]), pods: vec![pod("t.web", 1), pod("t.web", 2)], ..Found::default() };
        let t = select(found, Query::pods(&[], &[2, 9])).unwrap();
        assert_eq!(t.found.pods.len(), 1);
        assert_eq!(t.problems, ["no pod has seq 9 in t.web"]);
    }
}
