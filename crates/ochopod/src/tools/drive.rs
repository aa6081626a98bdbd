//! The drive family: `on`, `off`, `kill`, `reset`, `signal` and `reconfigure` change pods. Each
//! returns every targeted pod's reply as [`Driven`]; whole clusters need `--force` or `-i`.

use std::collections::BTreeMap;
use std::time::Duration;

use ochopod_api::client::Reply;
use ochopod_api::{Info, Task};
use serde_json::{json, Value};

use super::discovery::PodEntry;
use super::error::ToolError;
use super::fanout::{accept, fan_out, printable, Failure, PodResult};
use super::reach::{self, check_force, Outcome, Query};
use super::views::{self, pod_json};
use super::{Common, Report, Targets};

/// What a command that changes pods did: each pod's reply, and how a success reads in the table.
pub struct Driven {
    pub outcome: Outcome<Reply>,
    describe: fn(&Reply) -> String,
}

impl Report for Driven {
    fn document(&self) -> Value {
        let entries = self
            .outcome
            .results
            .iter()
            .map(|r| {
                let mut m = pod_json(&r.pod);
                let (code, reply) = match &r.result {
                    Ok(reply) => (json!(reply.code), reply.body.clone()),
                    Err(f) => (json!(f.code()), Value::Null),
                };
                m.insert("code".into(), code);
                m.insert("reply".into(), reply);
                views::insert_error(&mut m, &r.result);
                Value::Object(m)
            })
            .collect();
        self.outcome.document("pods", entries)
    }

    fn text(&self) -> String {
        let mut out = views::outcome_table(&self.outcome.results, self.describe);
        out.push_str(&views::summary(&self.outcome.results));
        out.push('\n');
        out
    }

    fn warnings(&self) -> &[String] {
        &self.outcome.warnings
    }

    fn verdict(&self) -> Result<(), ToolError> {
        self.outcome.verdict()
    }
}

/// `on`, `off`, `kill`: `POST /control/<task>/<timeout>` with an empty body, as the original CLI
/// sent (`on` without a payload restarts the stored command).
pub async fn control(common: &Common, targets: &Targets, task: Task, timeout: Duration) -> Result<Driven, ToolError> {
    check_force(task.as_str(), &targets.clusters, &targets.seq, targets.force)?;
    // A pod that is already dead has done what `kill` asks.
    let accepted: &[u16] = if task == Task::Kill { &[200, 410] } else { &[200] };
    let query = Query::pods(&targets.clusters, &targets.seq);
    let outcome =
        reach::ask(common, query, timeout.mul_f64(1.25) + Duration::from_secs(3), |client, address| async move {
            accept(client.control_raw(&address, task, timeout, None).await?, accepted)
        })
        .await?;
    Ok(Driven {
        outcome,
        describe: |r| match r.code {
            410 => "ok (already dead)".to_string(),
            code => format!("ok ({code})"),
        },
    })
}

/// `reset`: the pods drop and re-create their ZooKeeper sessions.
pub async fn reset(common: &Common, targets: &Targets) -> Result<Driven, ToolError> {
    check_force("reset", &targets.clusters, &targets.seq, targets.force)?;
    let timeout = common.pod_timeout;
    let query = Query::pods(&targets.clusters, &targets.seq);
    let outcome = reach::ask(common, query, timeout + Duration::from_secs(1), |client, address| async move {
        accept(client.call(&address, "reset", None, timeout).await?, &[200])
    })
    .await?;
    Ok(Driven { outcome, describe: |r| format!("ok ({})", r.code) })
}

/// Splits `signal`'s positional arguments into cluster globs and the JSON body (`{…}`).
pub fn signal_body(args: &[String], data: Option<&str>) -> Result<(Vec<String>, Option<Value>), String> {
    let (bodies, globs): (Vec<&String>, Vec<&String>) = args.iter().partition(|a| a.trim_start().starts_with('{'));
    let raw: Vec<&str> = bodies.iter().map(|s| s.as_str()).chain(data).collect();
    let body = match raw.as_slice() {
        [] => None,
        [one] => Some(serde_json::from_str(one).map_err(|e| format!("the signal body is not JSON ({e}): {one}"))?),
        _ => return Err("give one JSON body at most".into()),
    };
    if globs.is_empty() {
        return Err("name the clusters to signal".into());
    }
    Ok((globs.into_iter().cloned().collect(), body))
}

/// `signal`: the pods' `signaled` hook runs with `body`; its output is each pod's reply.
pub async fn signal(
    common: &Common,
    targets: &Targets,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Driven, ToolError> {
    check_force("signal", &targets.clusters, &targets.seq, targets.force)?;
    let query = Query::pods(&targets.clusters, &targets.seq);
    let outcome =
        reach::ask(common, query, timeout.mul_f64(1.25) + Duration::from_secs(3), |client, address| async move {
            accept(client.control_raw(&address, Task::Signal, timeout, body).await?, &[200])
        })
        .await?;
    Ok(Driven { outcome, describe: |r| r.body.to_string() })
}

/// `reconfigure`: per cluster, find the leader through `/info` and `POST /reconfigure` to it; a
/// follower's 409 names the leader's address, which is tried once.
pub async fn reconfigure(common: &Common, clusters: &[String], timeout: Duration) -> Result<Driven, ToolError> {
    let reached = reach::reach(common, Query::pods(clusters, &[])).await?;
    let all = reached.infos(common.pod_timeout).await;
    let (targets, problems) = leaders(&reached.targeted.found.clusters, &all);
    let found = &reached.targeted.found;
    // A follower's 409 names the leader, but a reply is the peer's word: only an address that
    // passed validation as a registered pod of the same cluster is followed (with the token).
    let known: BTreeMap<String, String> =
        found.pods.iter().filter_map(|p| Some((p.address.clone()?, p.cluster.clone()))).collect();
    let known = &known;
    let client = &reached.client;
    let results = fan_out(&targets, timeout * 2 + Duration::from_secs(2), |address| {
        let client = client.clone();
        async move {
            let reply = client.call(&address, "reconfigure", None, timeout).await?;
            let named = reply.body.get("leader").and_then(Value::as_str).map(str::to_string);
            match (reply.code, named) {
                (409, Some(leader)) if leader != address && known.get(&leader) != known.get(&address) => {
                    Err(Failure::Http {
                        code: 409,
                        error: format!(
                            "not the leader; the leader it names, \"{}\", is no registered pod of this cluster (not followed)",
                            printable(&leader, 64)
                        ),
                    })
                }
                (409, Some(leader)) if leader != address => {
                    accept(client.call(&leader, "reconfigure", None, timeout).await?, &[200])
                }
                (404, _) => {
                    Err(Failure::Http { code: 404, error: "no /reconfigure route (an original Ochopod pod?)".into() })
                }
                _ => accept(reply, &[200]),
            }
        }
    })
    .await;
    let mut all_problems = reached.targeted.problems.clone();
    all_problems.extend(problems);
    let outcome =
        Outcome { clusters: found.clusters.clone(), results, problems: all_problems, warnings: found.warnings.clone() };
    Ok(Driven { outcome, describe: |_| "round requested".to_string() })
}

/// The pod to ask in each cluster: the one that claims to lead, else (between two leaders) any
/// that answers, whose 409 names one. Clusters with neither are problems.
fn leaders(clusters: &[String], all: &Outcome<Info>) -> (Vec<PodEntry>, Vec<String>) {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for cluster in clusters {
        let mine: Vec<&PodResult<Info>> = all.results.iter().filter(|r| &r.pod.cluster == cluster).collect();
        let leader = mine.iter().find(|r| r.result.as_ref().is_ok_and(|i| i.state.starts_with("leader")));
        match leader.or_else(|| mine.iter().find(|r| r.result.is_ok())) {
            Some(r) => targets.push(r.pod.clone()),
            None if mine.is_empty() => problems.push(format!("{cluster}: no pods")),
            None => problems.push(format!("{cluster}: no pod answers /info, so no leader to ask")),
        }
    }
    (targets, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_signal_body_is_the_argument_that_starts_with_a_brace() {
        let (globs, body) = signal_body(&args(&["web", r#"{"a": 1}"#, "db-[12]"]), None).unwrap();
        assert_eq!(globs, args(&["web", "db-[12]"]));
        assert_eq!(body, Some(json!({"a": 1})));
        let (_, body) = signal_body(&args(&["web"]), Some("[1, 2]")).unwrap();
        assert_eq!(body, Some(json!([1, 2])));
        assert_eq!(signal_body(&args(&["web"]), None).unwrap().1, None);
        assert!(signal_body(&args(&["web", "{nope"]), None).unwrap_err().contains("not JSON"));
        assert!(signal_body(&args(&["web", "{}"]), Some("{}")).unwrap_err().contains("one JSON body"));
        assert!(signal_body(&args(&["{}"]), None).unwrap_err().contains("name the clusters"));
    }
}
