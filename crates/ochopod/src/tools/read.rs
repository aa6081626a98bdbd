//! The read family: `ls`, `grep`, `info`, `poll` (each pod's `/info`, shown four ways) and `port`
//! (registrations only, no request). Each function returns data; the [`Report`] impls shape it
//! for people and for `--json`.

use ochopod_api::Info;
use serde_json::Value;

use super::discovery::PodEntry;
use super::error::ToolError;
use super::fanout::{unaddressed, Failed, Failure};
use super::reach::{self, discover, Outcome, Query};
use super::views::{self, pod_json, ClusterRow, PortRow};
use super::{Common, Report};

/// Every selected pod's `/info`: what `grep`, `info` and `poll` show.
pub async fn infos(common: &Common, query: Query<'_>) -> Result<Outcome<Info>, ToolError> {
    Ok(reach::reach(common, query).await?.infos(common.pod_timeout).await)
}

/// `ls`: one row per cluster, from its pods' `/info`.
#[derive(Clone, Debug)]
pub struct Listing {
    pub rows: Vec<ClusterRow>,
    pub outcome: Outcome<Info>,
}

/// Clusters whose pods are all gone are left out unless `all`, where they are marked; when every
/// cluster matched is gone, there is nothing to list ([`ToolError::Gone`]).
pub async fn ls(common: &Common, globs: &[String], seq: &[u64], all: bool) -> Result<Listing, ToolError> {
    let query = Query { clusters_only: true, ..Query::pods(globs, seq) };
    let reached = reach::reach(common, query).await?;
    let gone = reached.targeted.found.gone.clone();
    let outcome = reached.infos(common.pod_timeout).await;
    let mut rows = views::cluster_rows(&outcome.clusters, &outcome.results);
    for row in &mut rows {
        row.gone = gone.contains(&row.cluster);
    }
    if !all {
        rows.retain(|r| !r.gone);
        if rows.is_empty() && !gone.is_empty() {
            return Err(ToolError::Gone(gone));
        }
    }
    Ok(Listing { rows, outcome })
}

impl Report for Listing {
    fn document(&self) -> Value {
        let entries = self.rows.iter().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)).collect();
        self.outcome.document("clusters", entries)
    }

    fn text(&self) -> String {
        views::ls_table(&self.rows)
    }

    fn warnings(&self) -> &[String] {
        &self.outcome.warnings
    }

    fn verdict(&self) -> Result<(), ToolError> {
        self.outcome.verdict()
    }
}

/// `grep`: one row per pod (cluster, seq, ip, node, process, state).
pub struct Grep(pub Outcome<Info>);

impl Report for Grep {
    fn document(&self) -> Value {
        self.0.document("pods", views::grep_json(&self.0.results))
    }

    fn text(&self) -> String {
        views::grep_table(&self.0.results)
    }

    fn warnings(&self) -> &[String] {
        &self.0.warnings
    }

    fn verdict(&self) -> Result<(), ToolError> {
        self.0.verdict()
    }
}

/// `info`: each pod's whole `/info`.
pub struct Infos(pub Outcome<Info>);

impl Report for Infos {
    fn document(&self) -> Value {
        let entries = self
            .0
            .results
            .iter()
            .map(|r| {
                let mut m = pod_json(&r.pod);
                let info = r.result.as_ref().ok().and_then(|i| serde_json::to_value(i).ok());
                m.insert("info".into(), info.unwrap_or(Value::Null));
                views::insert_error(&mut m, &r.result);
                Value::Object(m)
            })
            .collect();
        self.0.document("pods", entries)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for r in &self.0.results {
            out.push_str(&header(&r.pod));
            out.push('\n');
            match &r.result {
                Ok(i) => {
                    let v = serde_json::to_value(i).unwrap_or(Value::Null);
                    out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                Err(f) => out.push_str(&format!("failed: {f}")),
            }
            out.push('\n');
        }
        out
    }

    fn warnings(&self) -> &[String] {
        &self.0.warnings
    }

    fn verdict(&self) -> Result<(), ToolError> {
        self.0.verdict()
    }
}

/// `== <cluster> #<seq> (<address>) ==`, above each pod's section in `info` and `log`.
pub fn header(pod: &PodEntry) -> String {
    let place = match (&pod.address, &pod.invalid) {
        (Some(a), _) => a.as_str(),
        (None, Some(_)) => "invalid registration",
        (None, None) => "no control port",
    };
    format!("== {} ({place}) ==", pod.key())
}

/// `poll`: each pod's metrics (the output of its last sanity check).
pub struct Metrics(pub Outcome<Info>);

impl Report for Metrics {
    fn document(&self) -> Value {
        let entries = self
            .0
            .results
            .iter()
            .map(|r| {
                let mut m = pod_json(&r.pod);
                m.insert("metrics".into(), r.result.as_ref().map_or(Value::Null, |i| i.metrics.clone()));
                views::insert_error(&mut m, &r.result);
                Value::Object(m)
            })
            .collect();
        self.0.document("pods", entries)
    }

    fn text(&self) -> String {
        views::poll_table(&self.0.results)
    }

    fn warnings(&self) -> &[String] {
        &self.0.warnings
    }

    fn verdict(&self) -> Result<(), ToolError> {
        self.0.verdict()
    }
}

/// `port <n>`: where each pod publishes container port `n`, read from the registrations alone.
#[derive(Clone, Debug)]
pub struct Ports {
    pub port: u16,
    pub rows: Vec<PortRow>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

pub async fn port(common: &Common, query: Query<'_>, port: u16) -> Result<Ports, ToolError> {
    let t = discover(common, query).await?;
    let rows = views::port_rows(&t.found.pods, port);
    Ok(Ports { port, rows, problems: t.problems, warnings: t.found.warnings })
}

impl Ports {
    /// A pod that does not publish the port failed (an invalid registration publishes nothing).
    pub fn failed(&self) -> Vec<Failed> {
        self.rows
            .iter()
            .filter(|r| r.port.is_none())
            .map(|r| Failed {
                pod: r.pod.clone(),
                failure: if r.pod.invalid.is_some() { unaddressed(&r.pod) } else { Failure::Unpublished(self.port) },
            })
            .collect()
    }
}

impl Report for Ports {
    fn document(&self) -> Value {
        views::document("pods", views::port_json(&self.rows), &self.failed(), &self.problems)
    }

    fn text(&self) -> String {
        views::port_table(&self.rows)
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn verdict(&self) -> Result<(), ToolError> {
        reach::verdict(self.rows.len(), self.failed(), &self.problems)
    }
}
