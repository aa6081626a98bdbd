//! What the read commands show, as pure functions of the pods found and their `/info` replies,
//! so the shapes of the tables and of `--json` are tested without pods.

use std::collections::BTreeMap;

use ochopod_api::Info;
use serde::Serialize;
use serde_json::{json, Value};

use super::discovery::PodEntry;
use super::fanout::{printable, Failure, PodResult};
use super::table;

/// One row of `ls`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterRow {
    pub cluster: String,
    /// Pods whose process is `running`.
    pub running: usize,
    /// Pods registered in ZooKeeper, reachable or not.
    pub total: usize,
    /// The leader's status (probe output, `* configuring…`); `""` when none.
    pub status: String,
    /// The pod that reports itself leader, and its state.
    pub leader: Option<String>,
    pub state: Option<String>,
    /// Pods that did not answer `/info` (invalid registrations included).
    pub unreachable: usize,
    /// Pods whose registration is invalid, so they were not asked.
    pub invalid: usize,
    /// No pod and no leader's snapshot left (listed with `ls --all` only; absent from the JSON
    /// of a cluster that is not gone).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
}

impl ClusterRow {
    pub fn ok(&self) -> String {
        format!("{}/{}", self.running, self.total)
    }
}

/// Groups `/info` replies per cluster. Clusters without pods still get a row (`0/0`); `ls`
/// marks the gone ones.
pub fn cluster_rows(clusters: &[String], results: &[PodResult<Info>]) -> Vec<ClusterRow> {
    clusters
        .iter()
        .map(|cluster| {
            let mine: Vec<&PodResult<Info>> = results.iter().filter(|r| &r.pod.cluster == cluster).collect();
            let infos: Vec<(&PodEntry, &Info)> =
                mine.iter().filter_map(|r| r.result.as_ref().ok().map(|i| (&r.pod, i))).collect();
            let leader = infos.iter().find(|(_, i)| i.state.starts_with("leader"));
            // The original showed the last non-empty status; the leader's is the one that counts,
            // and only the leader sets one, so prefer it and fall back to any.
            let status = leader
                .map(|(_, i)| i.status.clone())
                .filter(|s| !s.is_empty())
                .or_else(|| infos.iter().rev().map(|(_, i)| i.status.clone()).find(|s| !s.is_empty()))
                .unwrap_or_default();
            ClusterRow {
                cluster: cluster.clone(),
                running: infos.iter().filter(|(_, i)| is_up(i)).count(),
                total: mine.len(),
                status,
                leader: leader.map(|(p, _)| p.key()),
                state: leader.map(|(_, i)| i.state.clone()),
                unreachable: mine.len() - infos.len(),
                invalid: mine.iter().filter(|r| r.pod.invalid.is_some()).count(),
                gone: false,
            }
        })
        .collect()
}

/// A pod counts as up when its process runs, or, for a sidecar (no process), once it has
/// accepted a configuration.
pub fn is_up(info: &Info) -> bool {
    info.process == "running" || (info.process == "sidecar" && info.epoch.is_some())
}

pub fn ls_table(rows: &[ClusterRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let status = match r.invalid {
                _ if r.gone => "gone".to_string(),
                0 => r.status.clone(),
                n => {
                    let note = format!("[{n} invalid registration{}]", if n == 1 { "" } else { "s" });
                    if r.status.is_empty() {
                        note
                    } else {
                        format!("{} {note}", r.status)
                    }
                }
            };
            vec![r.cluster.clone(), r.ok(), status]
        })
        .collect();
    table::render(&["cluster", "ok", "status"], &cells)
}

/// A registration's value as shown in a table: peers write what they like there.
pub fn shown(value: &str) -> String {
    printable(value, 64)
}

/// The pod fields every `--json` entry starts with.
pub fn pod_json(pod: &PodEntry) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("pod".into(), json!(pod.key()));
    m.insert("cluster".into(), json!(pod.cluster));
    m.insert("seq".into(), json!(pod.seq));
    m.insert("uuid".into(), json!(pod.uuid));
    m.insert("address".into(), json!(pod.address));
    m
}

/// `grep`: one row per pod; pods that did not answer keep their row, marked with the reason.
pub fn grep_table(results: &[PodResult<Info>]) -> String {
    let cells: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let reg = &r.pod.registration;
            match &r.result {
                Ok(i) => vec![
                    r.pod.key(),
                    shown(&non_empty(&i.ip, &reg.ip)),
                    shown(&non_empty(&i.node, &reg.node)),
                    shown(&i.process),
                    shown(&i.state),
                ],
                Err(f) => vec![r.pod.key(), shown(&reg.ip), shown(&reg.node), "?".into(), f.kind().to_string()],
            }
        })
        .collect();
    table::render(&["pod", "ip", "node", "process", "state"], &cells)
}

pub fn grep_json(results: &[PodResult<Info>]) -> Vec<Value> {
    results
        .iter()
        .map(|r| {
            let mut m = pod_json(&r.pod);
            let reg = &r.pod.registration;
            let (ip, node, process, state) = match &r.result {
                Ok(i) => (non_empty(&i.ip, &reg.ip), non_empty(&i.node, &reg.node), json!(i.process), json!(i.state)),
                Err(_) => (reg.ip.clone(), reg.node.clone(), Value::Null, Value::Null),
            };
            m.insert("ip".into(), json!(ip));
            m.insert("node".into(), json!(node));
            m.insert("process".into(), process);
            m.insert("state".into(), state);
            insert_error(&mut m, &r.result);
            Value::Object(m)
        })
        .collect()
}

fn non_empty(a: &str, b: &str) -> String {
    if a.is_empty() { b } else { a }.to_string()
}

/// `"error": null` on success, the reason otherwise, so every entry has the same keys.
pub fn insert_error<T>(m: &mut serde_json::Map<String, Value>, result: &Result<T, Failure>) {
    m.insert("error".into(), result.as_ref().err().map_or(Value::Null, |f| json!(f.to_string())));
}

/// `port <n>`: where each pod publishes container port `n`, from its registration.
#[derive(Clone, Debug, PartialEq)]
pub struct PortRow {
    pub pod: PodEntry,
    pub port: Option<u16>,
}

/// An invalid registration publishes nothing: its address cannot be trusted.
pub fn port_rows(pods: &[PodEntry], container_port: u16) -> Vec<PortRow> {
    pods.iter()
        .map(|p| PortRow {
            pod: p.clone(),
            port: p.invalid.is_none().then(|| p.registration.host_port(container_port)).flatten(),
        })
        .collect()
}

pub fn port_table(rows: &[PortRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let reg = &r.pod.registration;
            vec![
                r.pod.key(),
                shown(&reg.ip),
                shown(&reg.public),
                r.port.map_or_else(|| "-".to_string(), |p| p.to_string()),
            ]
        })
        .collect();
    table::render(&["pod", "ip", "public", "port"], &cells)
}

pub fn port_json(rows: &[PortRow]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut m = pod_json(&r.pod);
            m.insert("ip".into(), json!(r.pod.registration.ip));
            m.insert("public".into(), json!(r.pod.registration.public));
            m.insert("port".into(), json!(r.port));
            Value::Object(m)
        })
        .collect()
}

/// `poll`: each pod's metrics (its last sanity check output) as compact JSON.
pub fn poll_table(results: &[PodResult<Info>]) -> String {
    let cells: Vec<Vec<String>> = results
        .iter()
        .map(|r| match &r.result {
            Ok(i) => vec![r.pod.key(), metrics_text(&i.metrics)],
            Err(f) => vec![r.pod.key(), format!("? ({f})")],
        })
        .collect();
    table::render(&["pod", "metrics"], &cells)
}

fn metrics_text(v: &Value) -> String {
    match v {
        Value::Null => "{}".into(),
        other => other.to_string(),
    }
}

/// A mutating command's outcome per pod, as a table with a `result` column.
pub fn outcome_table<T>(results: &[PodResult<T>], describe: impl Fn(&T) -> String) -> String {
    let cells: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let address = r.pod.address.clone().unwrap_or_else(|| "-".into());
            let result = match &r.result {
                Ok(t) => describe(t),
                Err(f) => format!("failed: {f}"),
            };
            vec![r.pod.key(), address, result]
        })
        .collect();
    table::render(&["pod", "address", "result"], &cells)
}

/// Counts of a fan-out, the line people read after a mutating command.
pub fn summary<T>(results: &[PodResult<T>]) -> String {
    let ok = results.iter().filter(|r| r.result.is_ok()).count();
    let pct = if results.is_empty() { 0 } else { ok * 100 / results.len() };
    format!("{pct}% success ({ok}/{} pods)", results.len())
}

/// The `--json` document of every command: the entries under `key`, `ok`, and the failures.
pub fn document(key: &str, entries: Vec<Value>, failed: &[super::fanout::Failed], problems: &[String]) -> Value {
    let mut m = BTreeMap::new();
    m.insert(key.to_string(), Value::Array(entries));
    m.insert("ok".to_string(), json!(failed.is_empty() && problems.is_empty()));
    m.insert("failed".to_string(), Value::Array(failed.iter().map(|f| f.json()).collect()));
    m.insert("problems".to_string(), json!(problems));
    json!(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ochopod_core::Registration;

    fn pod(cluster: &str, seq: u64) -> PodEntry {
        let reg = Registration {
            ip: "127.0.0.1".into(),
            node: "local".into(),
            public: "1.2.3.4".into(),
            port: "8080".into(),
            ports: [("8080".to_string(), 9000 + seq as u16), ("2181".to_string(), 3000 + seq as u16)].into(),
            seq,
            ..Default::default()
        };
        PodEntry::from_node(cluster, &format!("u{seq}.{seq:010}"), reg)
    }

    fn info(process: &str, state: &str, status: &str) -> Info {
        Info {
            ip: "127.0.0.1".into(),
            node: "local".into(),
            process: process.into(),
            state: state.into(),
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_configured_sidecar_counts_as_up_and_an_unconfigured_one_does_not() {
        let configured = Info { epoch: Some(3), ..info("sidecar", "leader", "") };
        assert!(is_up(&configured));
        assert!(!is_up(&info("sidecar", "follower", "")));
        assert!(is_up(&info("running", "follower", "")));
        assert!(!is_up(&info("backoff", "follower", "")));
    }

    fn ok(p: PodEntry, i: Info) -> PodResult<Info> {
        PodResult { pod: p, result: Ok(i) }
    }

    fn down(p: PodEntry) -> PodResult<Info> {
        PodResult { pod: p, result: Err(Failure::Unreachable("Connection refused".into())) }
    }

    #[test]
    fn ls_counts_running_over_registered_and_shows_the_leaders_status() {
        let results = vec![
            ok(pod("t.web", 1), info("running", "follower", "")),
            ok(pod("t.web", 2), info("running", "leader", "3 zk nodes")),
            ok(pod("t.web", 3), info("running", "follower", "")),
            ok(pod("t.db", 1), info("stopped", "leader (configuration pending)", "* configuration in 3.0 seconds")),
            down(pod("t.db", 2)),
        ];
        let clusters = vec!["t.db".to_string(), "t.empty".to_string(), "t.web".to_string()];
        let rows = cluster_rows(&clusters, &results);
        assert_eq!(rows[2].ok(), "3/3");
        assert_eq!(rows[2].status, "3 zk nodes");
        assert_eq!(rows[2].leader.as_deref(), Some("t.web #2"));
        assert_eq!(rows[0].ok(), "0/2");
        assert_eq!(rows[0].unreachable, 1);
        assert_eq!(rows[0].state.as_deref(), Some("leader (configuration pending)"));
        assert_eq!(rows[1].ok(), "0/0");
        assert_eq!(
            ls_table(&rows),
            "cluster  ok   status\n\
             t.db     0/2  * configuration in 3.0 seconds\n\
             t.empty  0/0\n\
             t.web    3/3  3 zk nodes\n"
        );
        let gone = ClusterRow { gone: true, ..rows[1].clone() };
        assert_eq!(ls_table(std::slice::from_ref(&gone)), "cluster  ok   status\nt.empty  0/0  gone\n");
        assert_eq!(serde_json::to_value(&gone).unwrap()["gone"], true);
        let js = serde_json::to_value(&rows[2]).unwrap();
        let keys: Vec<&String> = js.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["cluster", "invalid", "leader", "running", "state", "status", "total", "unreachable"]);
    }

    #[test]
    fn grep_keeps_unreachable_pods_in_sight() {
        let results = vec![ok(pod("t.web", 1), info("running", "leader", "")), down(pod("t.web", 7))];
        assert_eq!(
            grep_table(&results),
            "pod       ip         node   process  state\n\
             t.web #1  127.0.0.1  local  running  leader\n\
             t.web #7  127.0.0.1  local  ?        unreachable\n"
        );
        let js = grep_json(&results);
        assert_eq!(js[0]["pod"], "t.web #1");
        assert_eq!(js[0]["seq"], 1);
        assert_eq!(js[0]["cluster"], "t.web");
        assert_eq!(js[0]["process"], "running");
        assert_eq!(js[0]["error"], Value::Null);
        assert_eq!(js[1]["process"], Value::Null);
        assert_eq!(js[1]["error"], "unreachable (Connection refused)");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&js[0]), keys(&js[1]));
    }

    #[test]
    fn an_invalid_registration_keeps_its_row_and_is_named_with_escaped_values() {
        let mut reg = pod("t.web", 5).registration;
        reg.ip = "127.0.0.1:1/steal?\x1b[2J".into();
        let bad = PodEntry::from_node("t.web", "u5.0000000005", reg);
        let why = bad.invalid.clone().unwrap().to_string();
        let results = vec![
            ok(pod("t.web", 1), info("running", "leader", "fine")),
            PodResult { pod: bad.clone(), result: Err(Failure::Invalid(why)) },
        ];
        let rows = cluster_rows(&["t.web".to_string()], &results);
        assert_eq!((rows[0].ok(), rows[0].invalid, rows[0].unreachable), ("1/2".to_string(), 1, 1));
        assert_eq!(ls_table(&rows), "cluster  ok   status\nt.web    1/2  fine [1 invalid registration]\n");
        let table = grep_table(&results);
        assert!(table.contains("t.web #5  127.0.0.1:1/steal?\\u{1b}[2J"), "{table}");
        assert!(table.contains("invalid-registration"), "{table}");
        assert!(!table.contains('\x1b'), "{table}");
        let rows = port_rows(&[bad], 8080);
        assert_eq!(rows[0].port, None, "an invalid registration publishes nothing");
    }

    #[test]
    fn port_shows_the_published_host_port_or_a_dash() {
        let mut p = pod("t.zk", 2);
        p.registration.ports.remove("2181");
        let rows = port_rows(&[pod("t.zk", 1), p], 2181);
        assert_eq!(rows[0].port, Some(3001));
        assert_eq!(rows[1].port, None);
        assert_eq!(
            port_table(&rows),
            "pod      ip         public   port\n\
             t.zk #1  127.0.0.1  1.2.3.4  3001\n\
             t.zk #2  127.0.0.1  1.2.3.4  -\n"
        );
        assert_eq!(port_json(&rows)[1]["port"], Value::Null);
    }

    #[test]
    fn outcomes_and_summary_of_a_mutating_command() {
        let results: Vec<PodResult<u16>> = vec![
            PodResult { pod: pod("t.web", 1), result: Ok(200) },
            PodResult { pod: pod("t.web", 2), result: Err(Failure::Http { code: 406, error: "nope".into() }) },
        ];
        assert_eq!(
            outcome_table(&results, |c| format!("ok ({c})")),
            "pod       address         result\n\
             t.web #1  127.0.0.1:9001  ok (200)\n\
             t.web #2  127.0.0.1:9002  failed: HTTP 406: nope\n"
        );
        assert_eq!(summary(&results), "50% success (1/2 pods)");
    }

    #[test]
    fn the_json_document_has_stable_keys() {
        let doc = document("pods", vec![json!({"pod": "a.b #1"})], &[], &[]);
        assert_eq!(doc, json!({"pods": [{"pod": "a.b #1"}], "ok": true, "failed": [], "problems": []}));
        let doc = document("pods", vec![], &[], &["no pod has seq 4".into()]);
        assert_eq!(doc["ok"], false);
    }
}
