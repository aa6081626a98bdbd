//! `wait`: is the cluster ready? A pure judgement of one poll, so the rule is tested directly.
//!
//! Ready means, for every matched cluster: at least `count` pods run their process (every
//! registered pod, and at least one, when no count is given), exactly one pod leads, and its
//! state is exactly `leader` — not `leader (configuration pending)` nor `(configuring)` — so no
//! configuration round is due or running.
//!
//! Healthy (`--healthy`) also means: every pod that runs passes its sanity check, and the
//! leader's probe passes. Both come from `/info` (`sanity`, `probe`: see
//! [`ochopod_api::wire::health`]); `none` (nothing declared) passes, `pending` does not. Pods
//! that do not report them (original pods, and ours until the executor and the leader publish
//! them) are judged as the original would be: a pod that does not report `sanity` by its process
//! alone (the original turns the process off once its sanity checks fail), a leader that does
//! not report `probe` by its status, where `*` marks a problem.

use std::time::{Duration, Instant};

use ochopod_api::wire::health;
use ochopod_api::Info;
use serde_json::json;

use super::discovery::Zk;
use super::error::ToolError;
use super::fanout::{fan_out, printable, Failure, PodResult};
use super::output;
use super::reach::{pod_client, zk_target};
use super::views::{cluster_rows, document, is_up, ClusterRow};
use super::{show, Common, Report, WaitArgs};

/// What `wait` waits for.
#[derive(Clone, Copy, Debug)]
pub struct Goal<'a> {
    /// Cluster globs; every match must be ready.
    pub globs: &'a [String],
    /// Running pods needed per cluster (default: every registered pod, at least one).
    pub count: Option<usize>,
    pub timeout: Duration,
    /// Also passing sanity checks and probe.
    pub healthy: bool,
}

/// Where waiting stands, after each attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Progress<'a> {
    /// ZooKeeper does not answer yet (in a pipeline it may come up along with the pods).
    Connecting(&'a str),
    /// What keeps the clusters from being ready.
    NotReady(&'a str),
}

/// How waiting ended.
#[derive(Clone, Debug)]
pub struct Waited {
    /// The clusters once ready, or why not at the deadline.
    pub result: Result<Vec<ClusterRow>, String>,
    pub elapsed: Duration,
}

/// Polls every 250 ms until [`judge`] says ready, or gives up after the timeout with what it saw
/// last. `progress` hears about every attempt. Never reaching ZooKeeper is an error of its own.
pub async fn wait(
    common: &Common,
    goal: Goal<'_>,
    mut progress: impl FnMut(Duration, Progress<'_>),
) -> Result<Waited, ToolError> {
    let client = pod_client(common)?;
    let target = zk_target(common)?;
    let started = Instant::now();
    let deadline = started + goal.timeout;
    let connecting = async {
        loop {
            match Zk::connect(target.clone()).await {
                Ok(zk) => return zk,
                Err(e) => {
                    progress(started.elapsed(), Progress::Connecting(&e));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    };
    let Ok(zk) = tokio::time::timeout(goal.timeout, connecting).await else {
        return Err(ToolError::TimedOut(format!(
            "timed out after {:?} waiting for ZooKeeper at {target}",
            goal.timeout
        )));
    };
    let pod_timeout = common.pod_timeout.min(Duration::from_secs(2));
    let result = loop {
        let poll = async {
            let found = zk.find(goal.globs).await?;
            let results = fan_out(&found.pods, pod_timeout + Duration::from_secs(1), |address| {
                let client = client.clone();
                async move { client.info(&address, pod_timeout).await.map_err(Failure::from) }
            })
            .await;
            judge(goal.globs, &found.clusters, &results, goal.count, goal.healthy)
        };
        // A ZooKeeper that stopped answering must not hold the tool past its deadline.
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let seen = match tokio::time::timeout(remaining, poll).await {
            Ok(seen) => seen,
            Err(_) => Err(format!("no answer from ZooKeeper or the pods within {remaining:?}")),
        };
        let why = match seen {
            Ok(rows) => break Ok(rows),
            Err(why) => why,
        };
        progress(started.elapsed(), Progress::NotReady(&why));
        let now = Instant::now();
        if now >= deadline {
            break Err(format!(
                "timed out after {:?} waiting for {}; last seen: {why}",
                goal.timeout,
                globs_text(goal.globs)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250).min(deadline - now)).await;
    };
    zk.close().await;
    Ok(Waited { result, elapsed: started.elapsed() })
}

/// `ochopod wait`: a progress line on stderr (redrawn in place on a terminal, unless `NO_COLOR`
/// or `TERM=dumb`; else printed when it changes), then the ready line or the JSON document.
pub async fn run(a: WaitArgs) -> Result<(), ToolError> {
    // Redrawing in place takes escape sequences: only on a terminal that wants them.
    let redraw = output::styled(&std::io::stderr());
    let (mut connecting, mut not_ready) = (String::new(), String::from("nothing yet"));
    let goal = Goal { globs: &a.clusters, count: a.count, timeout: a.timeout, healthy: a.healthy };
    let waited = wait(&a.common, goal, |elapsed, progress| match progress {
        Progress::Connecting(e) => {
            if e != connecting {
                output::note_line(&format!("[{:.1}s] waiting: {e}", elapsed.as_secs_f64()));
                connecting = e.to_string();
            }
        }
        Progress::NotReady(why) => {
            if redraw {
                output::note(&format!("\r\x1b[2K[{:>5.1}s] waiting: {why}", elapsed.as_secs_f64()));
            } else if why != not_ready {
                output::note_line(&format!("[{:.1}s] waiting: {why}", elapsed.as_secs_f64()));
            }
            not_ready = why.to_string();
        }
    })
    .await;
    if redraw {
        output::note("\r\x1b[2K");
    }
    show(&Ready { waited: waited?, healthy: a.healthy }, a.common.json)
}

/// What `wait` reports: the clusters once ready, or why not at the deadline.
pub struct Ready {
    pub waited: Waited,
    pub healthy: bool,
}

/// `wait` without the progress line: the portal's.
pub async fn report(a: &WaitArgs) -> Result<Ready, ToolError> {
    let goal = Goal { globs: &a.clusters, count: a.count, timeout: a.timeout, healthy: a.healthy };
    Ok(Ready { waited: wait(&a.common, goal, |_, _| {}).await?, healthy: a.healthy })
}

impl Report for Ready {
    fn document(&self) -> serde_json::Value {
        let elapsed = self.waited.elapsed.as_secs_f64();
        let mut doc = match &self.waited.result {
            Ok(rows) => {
                let entries = rows.iter().map(|r| serde_json::to_value(r).unwrap_or(serde_json::Value::Null)).collect();
                document("clusters", entries, &[], &[])
            }
            Err(msg) => document("clusters", Vec::new(), &[], std::slice::from_ref(msg)),
        };
        doc["elapsed"] = json!(elapsed);
        doc
    }

    fn text(&self) -> String {
        match &self.waited.result {
            Ok(rows) => {
                let healthy = if self.healthy { " (healthy)" } else { "" };
                format!("ready after {:.1}s: {}{healthy}\n", self.waited.elapsed.as_secs_f64(), ready_line(rows))
            }
            Err(_) => String::new(),
        }
    }

    fn warnings(&self) -> &[String] {
        &[]
    }

    fn verdict(&self) -> Result<(), ToolError> {
        match &self.waited.result {
            Ok(_) => Ok(()),
            Err(msg) => Err(ToolError::TimedOut(msg.clone())),
        }
    }
}

/// One poll's judgement: `Ok` with the rows when ready, `Err` with what is missing.
pub fn judge(
    globs: &[String],
    clusters: &[String],
    results: &[PodResult<Info>],
    count: Option<usize>,
    healthy: bool,
) -> Result<Vec<ClusterRow>, String> {
    if clusters.is_empty() {
        return Err(format!("no cluster matches {} yet", globs_text(globs)));
    }
    let rows = cluster_rows(clusters, results);
    let mut missing = Vec::new();
    for row in &rows {
        let need = count.unwrap_or(row.total.max(1));
        let leaders = results
            .iter()
            .filter(|r| r.pod.cluster == row.cluster)
            .filter(|r| r.result.as_ref().is_ok_and(|i| i.state.starts_with("leader")))
            .count();
        let mut why = Vec::new();
        if row.running < need {
            why.push(format!("{}/{} running, need {need}", row.running, row.total));
        }
        match (leaders, row.state.as_deref()) {
            (0, _) => why.push("no leader".to_string()),
            (1, Some("leader")) => {}
            (1, Some(state)) => why.push(format!("leader is {state:?}")),
            (n, _) => why.push(format!("{n} pods claim to lead")),
        }
        if healthy {
            why.extend(unhealthy(&row.cluster, results));
        }
        if !why.is_empty() {
            // Worth knowing when waiting fails, but not a reason of its own: with an explicit
            // count, a dead extra pod does not keep the cluster from being ready.
            if row.unreachable > 0 {
                why.push(format!("{} unreachable", row.unreachable));
            }
            missing.push(format!("{}: {}", row.cluster, why.join(", ")));
        }
    }
    if missing.is_empty() {
        Ok(rows)
    } else {
        Err(missing.join("; "))
    }
}

/// What keeps a cluster from being healthy: pods that run but do not pass their sanity check,
/// and a leader whose probe does not pass.
fn unhealthy(cluster: &str, results: &[PodResult<Info>]) -> Vec<String> {
    let mut by_state: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut probe = None;
    for r in results.iter().filter(|r| r.pod.cluster == cluster) {
        let Ok(info) = &r.result else { continue };
        if is_up(info) {
            let state = match info.sanity.as_deref() {
                Some(health::PASSING | health::NONE) | None => None,
                Some(other) => Some(format!("sanity {}", printable(other, 32))),
            };
            if let Some(state) = state {
                by_state.entry(state).or_default().push(format!("#{}", r.pod.seq));
            }
        }
        if info.state.starts_with("leader") {
            probe = match info.probe.as_deref() {
                Some(health::PASSING | health::NONE) => None,
                Some(health::FAILING) | None if info.status.starts_with('*') => {
                    Some(format!("probe failing ({})", printable(&info.status, 80)))
                }
                None => None,
                Some(other) => Some(format!("probe {}", printable(other, 32))),
            };
        }
    }
    let mut why: Vec<String> =
        by_state.into_iter().map(|(state, pods)| format!("{state} on {}", pods.join(" "))).collect();
    why.extend(probe);
    why
}

/// The line shown once ready: `test.web 3/3 running, leader test.web #2`.
pub fn ready_line(rows: &[ClusterRow]) -> String {
    rows.iter()
        .map(|r| format!("{} {} running, leader {}", r.cluster, r.ok(), r.leader.as_deref().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn globs_text(globs: &[String]) -> String {
    if globs.is_empty() {
        "*".to_string()
    } else {
        globs.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::discovery::PodEntry;
    use crate::tools::fanout::Failure;
    use ochopod_core::Registration;

    fn judge(
        globs: &[String],
        clusters: &[String],
        results: &[PodResult<Info>],
        count: Option<usize>,
    ) -> Result<Vec<ClusterRow>, String> {
        super::judge(globs, clusters, results, count, false)
    }

    fn result(cluster: &str, seq: u64, process: &str, state: &str) -> PodResult<Info> {
        let pod = PodEntry::from_node(cluster, &format!("u.{seq:010}"), Registration { seq, ..Default::default() });
        let info = Info { process: process.into(), state: state.into(), ..Default::default() };
        PodResult { pod, result: Ok(info) }
    }

    fn clusters(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ready_when_enough_pods_run_and_the_leader_has_nothing_pending() {
        let results = vec![
            result("t.web", 1, "running", "leader"),
            result("t.web", 2, "running", "follower"),
            result("t.web", 3, "running", "follower"),
        ];
        let rows = judge(&[], &clusters(&["t.web"]), &results, Some(3)).unwrap();
        assert_eq!(ready_line(&rows), "t.web 3/3 running, leader t.web #1");
        assert!(judge(&[], &clusters(&["t.web"]), &results, None).is_ok());
        let err = judge(&[], &clusters(&["t.web"]), &results, Some(4)).unwrap_err();
        assert_eq!(err, "t.web: 3/3 running, need 4");
    }

    #[test]
    fn a_pending_or_running_round_is_not_ready() {
        for state in ["leader (configuration pending)", "leader (configuring)"] {
            let results = vec![result("t.web", 1, "running", state), result("t.web", 2, "running", "follower")];
            let err = judge(&[], &clusters(&["t.web"]), &results, Some(2)).unwrap_err();
            assert!(err.contains(state), "{err}");
        }
        let results = vec![result("t.web", 1, "running", "follower")];
        assert_eq!(judge(&[], &clusters(&["t.web"]), &results, Some(1)).unwrap_err(), "t.web: no leader");
    }

    #[test]
    fn without_a_count_every_registered_pod_must_run() {
        let mut results = vec![result("t.web", 1, "running", "leader"), result("t.web", 2, "stopped", "follower")];
        assert_eq!(judge(&[], &clusters(&["t.web"]), &results, None).unwrap_err(), "t.web: 1/2 running, need 2");
        results[1].result = Err(Failure::Unreachable("refused".into()));
        let err = judge(&[], &clusters(&["t.web"]), &results, None).unwrap_err();
        assert_eq!(err, "t.web: 1/2 running, need 2, 1 unreachable");
        // An explicit count tolerates an extra pod that is down.
        assert!(judge(&[], &clusters(&["t.web"]), &results, Some(1)).is_ok());
    }

    #[test]
    fn every_matched_cluster_must_be_ready_and_none_matched_is_not_ready() {
        let results = vec![result("t.a", 1, "running", "leader"), result("t.b", 1, "stopped", "leader (configuring)")];
        let err = judge(&[], &clusters(&["t.a", "t.b"]), &results, Some(1)).unwrap_err();
        assert_eq!(err, r#"t.b: 0/1 running, need 1, leader is "leader (configuring)""#);
        let err = judge(&["web".to_string()], &[], &[], Some(1)).unwrap_err();
        assert_eq!(err, "no cluster matches web yet");
        let empty = judge(&[], &clusters(&["t.c"]), &[], None).unwrap_err();
        assert_eq!(empty, "t.c: 0/0 running, need 1, no leader");
    }

    #[test]
    fn two_leaders_are_not_ready() {
        let results = vec![result("t.web", 1, "running", "leader"), result("t.web", 2, "running", "leader")];
        assert_eq!(judge(&[], &clusters(&["t.web"]), &results, Some(2)).unwrap_err(), "t.web: 2 pods claim to lead");
    }

    fn with(mut r: PodResult<Info>, sanity: Option<&str>, probe: Option<&str>, status: &str) -> PodResult<Info> {
        let info = r.result.as_mut().unwrap();
        info.sanity = sanity.map(str::to_string);
        info.probe = probe.map(str::to_string);
        info.status = status.to_string();
        r
    }

    #[test]
    fn healthy_also_needs_every_sanity_check_and_the_probe_to_pass() {
        let web = clusters(&["t.web"]);
        let healthy = |results: &[PodResult<Info>]| super::judge(&[], &web, results, Some(2), true);
        let good = vec![
            with(result("t.web", 1, "running", "leader"), Some("passing"), Some("passing"), "3 nodes"),
            with(result("t.web", 2, "running", "follower"), Some("none"), None, ""),
        ];
        assert!(healthy(&good).is_ok());

        let mut failing = good.clone();
        failing[1] = with(result("t.web", 2, "running", "follower"), Some("failing"), None, "");
        assert!(judge(&[], &web, &failing, Some(2)).is_ok(), "plain wait does not look at health");
        assert_eq!(healthy(&failing).unwrap_err(), "t.web: sanity failing on #2");

        let mut pending = good.clone();
        pending[0] = with(result("t.web", 1, "running", "leader"), Some("pending"), Some("pending"), "");
        assert_eq!(healthy(&pending).unwrap_err(), "t.web: sanity pending on #1, probe pending");

        let mut probe = good.clone();
        probe[0] = with(result("t.web", 1, "running", "leader"), Some("passing"), Some("failing"), "* 1 of 3 down");
        assert_eq!(healthy(&probe).unwrap_err(), "t.web: probe failing (* 1 of 3 down)");

        // Pods that say nothing (original pods) are judged as the original: sanity by the process
        // (which the original turns off when its checks fail), the probe by the `*` mark on the
        // leader's status.
        let mut silent = good.clone();
        silent[0] = with(result("t.web", 1, "running", "leader"), None, None, "* zk down");
        silent[1] = with(result("t.web", 2, "running", "follower"), None, None, "");
        assert_eq!(healthy(&silent).unwrap_err(), "t.web: probe failing (* zk down)");
        silent[0] = with(result("t.web", 1, "running", "leader"), None, None, "fine");
        assert!(healthy(&silent).is_ok());
        silent[1] = with(result("t.web", 2, "stopped", "follower"), None, None, "");
        assert_eq!(healthy(&silent).unwrap_err(), "t.web: 1/2 running, need 2");
    }
}
