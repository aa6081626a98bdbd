//! Each tool: discover, fan out, print, and decide the exit code.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ochopod_api::{Info, PodClient, Task};
use serde_json::{json, Value};

use super::discovery::{select_seqs, Found, PodEntry, Zk, ZkTarget};
use super::fanout::{accept, failures, fan_out, printable, unaddressed, verdict, Failed, Failure, PodResult};
use super::views::{self, document, pod_json};
use super::wait::{globs_text, judge, ready_line};
use super::{Common, Tool};

/// Bad usage: the command was not run at all.
const USAGE: u8 = 2;

pub async fn run(tool: Tool) -> ExitCode {
    match tool {
        Tool::Ls(a) => ls(&a.sel.clusters, &a.sel.seq, &a.common).await,
        Tool::Grep(a) => grep(&a.sel.clusters, &a.sel.seq, &a.common).await,
        Tool::Info(a) => info(&a.sel.clusters, &a.sel.seq, &a.common).await,
        Tool::Poll(a) => poll(&a.sel.clusters, &a.sel.seq, &a.common).await,
        Tool::Log(a) => log(a).await,
        Tool::Port(a) => port(a).await,
        Tool::On(a) => control("on", Task::On, a).await,
        Tool::Off(a) => control("off", Task::Off, a).await,
        Tool::Kill(a) => control("kill", Task::Kill, a).await,
        Tool::Reset(a) => reset(a).await,
        Tool::Signal(a) => signal(a).await,
        Tool::Reconfigure(a) => reconfigure(a).await,
        Tool::Wait(a) => wait(a).await,
    }
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(USAGE)
}

fn failed(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// The token, from `--token-file` or `OCHOPOD_TOKEN`; never printed.
fn token(common: &Common) -> Result<Option<String>, String> {
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

fn pod_client(common: &Common) -> Result<PodClient, ExitCode> {
    let token = token(common).map_err(usage)?;
    match &common.ca {
        Some(ca) => PodClient::with_tls(token, ca).map_err(usage),
        None => Ok(PodClient::new(token)),
    }
}

/// Refuses a command that would change every pod of whole clusters unless asked for explicitly.
fn check_force(verb: &str, clusters: &[String], seq: &[u64], force: bool) -> Result<(), ExitCode> {
    if seq.is_empty() && !force {
        return Err(usage(format!(
            "refusing to {verb} every pod of {}: add --force, or select pods with -i <seq>",
            clusters.join(" ")
        )));
    }
    Ok(())
}

/// Pods to act on, after ZooKeeper and `-i`; the seqs that matched nothing come back as problems.
struct Targeted {
    found: Found,
    problems: Vec<String>,
}

/// Looks the pods up and closes the session. An empty result is an error (exit 1) unless
/// `allow_no_pods` (`ls` shows clusters with no pods as `0/0`).
async fn discover(common: &Common, globs: &[String], seq: &[u64], allow_no_pods: bool) -> Result<Targeted, ExitCode> {
    let target = ZkTarget::parse(&common.zk).map_err(usage)?;
    let zk = Zk::connect(target).await.map_err(failed)?;
    let found = zk.find(globs).await;
    zk.close().await;
    let mut found = found.map_err(failed)?;
    for w in &found.warnings {
        eprintln!("warning: {w}");
    }
    if found.clusters.is_empty() {
        return Err(failed(format!("no cluster matches {}", globs_text(globs))));
    }
    let (pods, missing) = select_seqs(std::mem::take(&mut found.pods), seq);
    found.pods = pods;
    let problems: Vec<String> =
        missing.iter().map(|s| format!("no pod has seq {s} in {}", found.clusters.join(" "))).collect();
    if found.pods.is_empty() && !(allow_no_pods && seq.is_empty()) {
        for p in &problems {
            eprintln!("{p}");
        }
        return Err(failed(format!("no pods matched in {}", found.clusters.join(" "))));
    }
    Ok(Targeted { found, problems })
}

async fn infos(client: &PodClient, pods: &[PodEntry], timeout: Duration) -> Vec<PodResult<Info>> {
    fan_out(pods, timeout + Duration::from_secs(1), |address| {
        let client = client.clone();
        async move { client.info(&address, timeout).await.map_err(Failure::from) }
    })
    .await
}

fn print_json(doc: &Value) {
    println!("{}", serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string()));
}

async fn read_all(
    globs: &[String],
    seq: &[u64],
    common: &Common,
    allow_no_pods: bool,
) -> Result<(Targeted, Vec<PodResult<Info>>), ExitCode> {
    let client = pod_client(common)?;
    let t = discover(common, globs, seq, allow_no_pods).await?;
    let results = infos(&client, &t.found.pods, common.pod_timeout).await;
    Ok((t, results))
}

async fn ls(globs: &[String], seq: &[u64], common: &Common) -> ExitCode {
    let (t, results) = match read_all(globs, seq, common, true).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let rows = views::cluster_rows(&t.found.clusters, &results);
    let failed = failures(&results);
    if common.json {
        let entries = rows.iter().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)).collect();
        print_json(&document("clusters", entries, &failed, &t.problems));
    } else {
        print!("{}", views::ls_table(&rows));
    }
    verdict(results.len(), &failed, &t.problems)
}

async fn grep(globs: &[String], seq: &[u64], common: &Common) -> ExitCode {
    let (t, results) = match read_all(globs, seq, common, false).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let failed = failures(&results);
    if common.json {
        print_json(&document("pods", views::grep_json(&results), &failed, &t.problems));
    } else {
        print!("{}", views::grep_table(&results));
    }
    verdict(results.len(), &failed, &t.problems)
}

async fn info(globs: &[String], seq: &[u64], common: &Common) -> ExitCode {
    let (t, results) = match read_all(globs, seq, common, false).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let failed = failures(&results);
    if common.json {
        let entries = results
            .iter()
            .map(|r| {
                let mut m = pod_json(&r.pod);
                let info = r.result.as_ref().ok().and_then(|i| serde_json::to_value(i).ok());
                m.insert("info".into(), info.unwrap_or(Value::Null));
                views::insert_error(&mut m, &r.result);
                Value::Object(m)
            })
            .collect();
        print_json(&document("pods", entries, &failed, &t.problems));
    } else {
        for r in &results {
            println!("{}", header(&r.pod));
            match &r.result {
                Ok(i) => {
                    let v = serde_json::to_value(i).unwrap_or(Value::Null);
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                Err(f) => println!("failed: {f}"),
            }
        }
    }
    verdict(results.len(), &failed, &t.problems)
}

fn header(pod: &PodEntry) -> String {
    let place = match (&pod.address, &pod.invalid) {
        (Some(a), _) => a.as_str(),
        (None, Some(_)) => "invalid registration",
        (None, None) => "no control port",
    };
    format!("== {} ({place}) ==", pod.key())
}

async fn poll(globs: &[String], seq: &[u64], common: &Common) -> ExitCode {
    let (t, results) = match read_all(globs, seq, common, false).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let failed = failures(&results);
    if common.json {
        let entries = results
            .iter()
            .map(|r| {
                let mut m = pod_json(&r.pod);
                m.insert("metrics".into(), r.result.as_ref().map_or(Value::Null, |i| i.metrics.clone()));
                views::insert_error(&mut m, &r.result);
                Value::Object(m)
            })
            .collect();
        print_json(&document("pods", entries, &failed, &t.problems));
    } else {
        print!("{}", views::poll_table(&results));
    }
    verdict(results.len(), &failed, &t.problems)
}

async fn port(a: super::PortArgs) -> ExitCode {
    let t = match discover(&a.common, &a.sel.clusters, &a.sel.seq, false).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let rows = views::port_rows(&t.found.pods, a.port);
    let failed: Vec<Failed> = rows
        .iter()
        .filter(|r| r.port.is_none())
        .map(|r| Failed {
            pod: r.pod.clone(),
            failure: if r.pod.invalid.is_some() { unaddressed(&r.pod) } else { Failure::Unpublished(a.port) },
        })
        .collect();
    if a.common.json {
        print_json(&document("pods", views::port_json(&rows), &failed, &t.problems));
    } else {
        print!("{}", views::port_table(&rows));
    }
    verdict(rows.len(), &failed, &t.problems)
}

async fn fetch_logs(client: &PodClient, pods: &[PodEntry], timeout: Duration) -> Vec<PodResult<Vec<String>>> {
    fan_out(pods, timeout + Duration::from_secs(1), |address| {
        let client = client.clone();
        async move {
            let reply = client.call(&address, "log", None, timeout).await?;
            views::parse_log(&accept(reply, &[200])?.body)
        }
    })
    .await
}

async fn log(a: super::LogArgs) -> ExitCode {
    let client = match pod_client(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let t = match discover(&a.common, &a.sel.clusters, &a.sel.seq, false).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let n = if a.all { None } else { Some(a.lines) };
    let pods = &t.found.pods;
    let results = fetch_logs(&client, pods, a.common.pod_timeout).await;
    let failed = failures(&results);
    if a.follow {
        return follow(&client, pods, results, n, &a.common).await;
    }
    if a.common.json {
        let entries = results
            .iter()
            .map(|r| {
                let mut m = pod_json(&r.pod);
                let lines = r.result.as_ref().map_or(Value::Null, |l| json!(views::tail(l, n)));
                m.insert("lines".into(), lines);
                views::insert_error(&mut m, &r.result);
                Value::Object(m)
            })
            .collect();
        print_json(&document("pods", entries, &failed, &t.problems));
    } else {
        for r in &results {
            println!("{}", header(&r.pod));
            match &r.result {
                Ok(lines) => views::tail(lines, n).iter().for_each(|l| println!("{l}")),
                Err(f) => println!("failed: {f}"),
            }
        }
    }
    verdict(results.len(), &failed, &t.problems)
}

/// `log -f`: prints the tail, then every second the lines each pod added since. Runs until
/// interrupted; a pod that stops answering is reported once, and again when it is back.
async fn follow(
    client: &PodClient,
    pods: &[PodEntry],
    first: Vec<PodResult<Vec<String>>>,
    n: Option<usize>,
    common: &Common,
) -> ExitCode {
    let prefix = pods.len() > 1;
    let emit = |pod: &PodEntry, line: &str| {
        if common.json {
            println!("{}", json!({"pod": pod.key(), "line": line}));
        } else if prefix {
            println!("[{}] {line}", pod.key());
        } else {
            println!("{line}");
        }
    };
    let mut seen: Vec<Option<Vec<String>>> = Vec::with_capacity(first.len());
    for r in &first {
        match &r.result {
            Ok(lines) => {
                views::tail(lines, n).iter().for_each(|l| emit(&r.pod, l));
                seen.push(Some(lines.clone()));
            }
            Err(f) => {
                eprintln!("{}: {f}", r.pod.key());
                seen.push(None);
            }
        }
    }
    let _ = std::io::stdout().flush();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            _ = tick.tick() => {}
        }
        let results = fetch_logs(client, pods, common.pod_timeout).await;
        for (r, prev) in results.iter().zip(seen.iter_mut()) {
            match (&r.result, prev.as_ref()) {
                (Ok(lines), Some(before)) => views::new_lines(before, lines).iter().for_each(|l| emit(&r.pod, l)),
                (Ok(lines), None) => {
                    eprintln!("{}: answering again", r.pod.key());
                    views::tail(lines, n).iter().for_each(|l| emit(&r.pod, l));
                }
                (Err(f), Some(_)) => eprintln!("{}: {f}", r.pod.key()),
                (Err(_), None) => {}
            }
            *prev = r.result.as_ref().ok().cloned();
        }
        let _ = std::io::stdout().flush();
    }
}

/// Prints a mutating command's outcome (table + summary, or JSON) and returns the exit code.
fn report_outcomes(
    results: &[PodResult<ochopod_api::client::Reply>],
    problems: &[String],
    json: bool,
    describe: impl Fn(&ochopod_api::client::Reply) -> String,
) -> ExitCode {
    let failed = failures(results);
    if json {
        let entries = results
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
        print_json(&document("pods", entries, &failed, problems));
    } else {
        print!("{}", views::outcome_table(results, describe));
        println!("{}", views::summary(results));
    }
    verdict(results.len(), &failed, problems)
}

/// `on`, `off`, `kill`: `POST /control/<task>/<timeout>` with an empty body, as the original CLI
/// sent (`on` without a payload restarts the stored command).
async fn control(verb: &str, task: Task, a: super::ControlArgs) -> ExitCode {
    if let Err(code) = check_force(verb, &a.targets.clusters, &a.targets.seq, a.targets.force) {
        return code;
    }
    let client = match pod_client(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let t = match discover(&a.common, &a.targets.clusters, &a.targets.seq, false).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    // A pod that is already dead has done what `kill` asks.
    let accepted: &[u16] = if task == Task::Kill { &[200, 410] } else { &[200] };
    let timeout = a.timeout;
    let results = fan_out(&t.found.pods, timeout.mul_f64(1.25) + Duration::from_secs(3), |address| {
        let client = client.clone();
        async move { accept(client.control_raw(&address, task, timeout, None).await?, accepted) }
    })
    .await;
    report_outcomes(&results, &t.problems, a.common.json, |r| match r.code {
        410 => "ok (already dead)".to_string(),
        code => format!("ok ({code})"),
    })
}

async fn reset(a: super::ResetArgs) -> ExitCode {
    if let Err(code) = check_force("reset", &a.targets.clusters, &a.targets.seq, a.targets.force) {
        return code;
    }
    let client = match pod_client(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let t = match discover(&a.common, &a.targets.clusters, &a.targets.seq, false).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let timeout = a.common.pod_timeout;
    let results = fan_out(&t.found.pods, timeout + Duration::from_secs(1), |address| {
        let client = client.clone();
        async move { accept(client.call(&address, "reset", None, timeout).await?, &[200]) }
    })
    .await;
    report_outcomes(&results, &t.problems, a.common.json, |r| format!("ok ({})", r.code))
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

async fn signal(a: super::SignalArgs) -> ExitCode {
    let (globs, body) = match signal_body(&a.args, a.data.as_deref()) {
        Ok(x) => x,
        Err(e) => return usage(e),
    };
    if let Err(code) = check_force("signal", &globs, &a.seq, a.force) {
        return code;
    }
    let client = match pod_client(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let t = match discover(&a.common, &globs, &a.seq, false).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let timeout = a.timeout;
    let body = &body;
    let results = fan_out(&t.found.pods, timeout.mul_f64(1.25) + Duration::from_secs(3), |address| {
        let client = client.clone();
        async move { accept(client.control_raw(&address, Task::Signal, timeout, body.as_ref()).await?, &[200]) }
    })
    .await;
    report_outcomes(&results, &t.problems, a.common.json, |r| r.body.to_string())
}

/// `reconfigure`: per cluster, find the leader through `/info` and `POST /reconfigure` to it; a
/// follower's 409 names the leader's address, which is tried once.
async fn reconfigure(a: super::ReconfigureArgs) -> ExitCode {
    let client = match pod_client(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let t = match discover(&a.common, &a.clusters, &[], false).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    let all = infos(&client, &t.found.pods, a.common.pod_timeout).await;
    let mut problems = t.problems.clone();
    let mut targets: Vec<PodEntry> = Vec::new();
    for cluster in &t.found.clusters {
        let mine: Vec<&PodResult<Info>> = all.iter().filter(|r| &r.pod.cluster == cluster).collect();
        let leader = mine.iter().find(|r| r.result.as_ref().is_ok_and(|i| i.state.starts_with("leader")));
        // No pod claims to lead (between two leaders): ask any that answers; its 409 names one.
        match leader.or_else(|| mine.iter().find(|r| r.result.is_ok())) {
            Some(r) => targets.push(r.pod.clone()),
            None if mine.is_empty() => problems.push(format!("{cluster}: no pods")),
            None => problems.push(format!("{cluster}: no pod answers /info, so no leader to ask")),
        }
    }
    // A follower's 409 names the leader, but a reply is the peer's word: only an address that
    // passed validation as a registered pod of the same cluster is followed (with the token).
    let known: std::collections::BTreeMap<String, String> =
        t.found.pods.iter().filter_map(|p| Some((p.address.clone()?, p.cluster.clone()))).collect();
    let known = &known;
    let timeout = a.timeout;
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
    report_outcomes(&results, &problems, a.common.json, |_| "round requested".to_string())
}

/// `wait`: polls every 250 ms until [`judge`] says ready, or gives up after the timeout with
/// what it saw last. On a terminal the progress line is redrawn in place; otherwise each new
/// observation is printed once.
async fn wait(a: super::WaitArgs) -> ExitCode {
    let client = match pod_client(&a.common) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let target = match ZkTarget::parse(&a.common.zk) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let started = Instant::now();
    let deadline = started + a.timeout;
    // In a pipeline ZooKeeper may come up along with the pods: keep trying until the deadline.
    let connecting = async {
        let mut last = String::new();
        loop {
            match Zk::connect(target.clone()).await {
                Ok(zk) => return zk,
                Err(e) => {
                    if e != last {
                        eprintln!("[{:.1}s] waiting: {e}", started.elapsed().as_secs_f64());
                        last = e;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    };
    let zk = match tokio::time::timeout(a.timeout, connecting).await {
        Ok(zk) => zk,
        Err(_) => return failed(format!("timed out after {:?} waiting for ZooKeeper at {target}", a.timeout)),
    };
    let tty = std::io::stderr().is_terminal();
    let pod_timeout = a.common.pod_timeout.min(Duration::from_secs(2));
    let mut last = String::from("nothing yet");
    let outcome = loop {
        let poll = async {
            let found = zk.find(&a.clusters).await?;
            let results = infos(&client, &found.pods, pod_timeout).await;
            judge(&a.clusters, &found.clusters, &results, a.count, a.healthy)
        };
        // A ZooKeeper that stopped answering must not hold the tool past its deadline.
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let seen = match tokio::time::timeout(remaining, poll).await {
            Ok(seen) => seen,
            Err(_) => Err(format!("no answer from ZooKeeper or the pods within {remaining:?}")),
        };
        match seen {
            Ok(rows) => break Ok(rows),
            Err(why) => {
                if tty {
                    eprint!("\r\x1b[2K[{:>5.1}s] waiting: {why}", started.elapsed().as_secs_f64());
                } else if why != last {
                    eprintln!("[{:.1}s] waiting: {why}", started.elapsed().as_secs_f64());
                }
                last = why;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(last);
        }
        tokio::time::sleep(Duration::from_millis(250).min(deadline - now)).await;
    };
    zk.close().await;
    if tty {
        eprint!("\r\x1b[2K");
    }
    let elapsed = started.elapsed().as_secs_f64();
    match outcome {
        Ok(rows) => {
            if a.common.json {
                let entries = rows.iter().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)).collect();
                let mut doc = document("clusters", entries, &[], &[]);
                doc["elapsed"] = json!(elapsed);
                print_json(&doc);
            } else {
                let healthy = if a.healthy { " (healthy)" } else { "" };
                println!("ready after {elapsed:.1}s: {}{healthy}", ready_line(&rows));
            }
            ExitCode::SUCCESS
        }
        Err(last) => {
            let msg =
                format!("timed out after {:?} waiting for {}; last seen: {last}", a.timeout, globs_text(&a.clusters));
            if a.common.json {
                let mut doc = document("clusters", Vec::new(), &[], std::slice::from_ref(&msg));
                doc["elapsed"] = json!(elapsed);
                print_json(&doc);
            }
            failed(msg)
        }
    }
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

    #[test]
    fn changing_whole_clusters_needs_force_or_a_selection() {
        let clusters = args(&["web"]);
        assert_eq!(check_force("off", &clusters, &[], false), Err(ExitCode::from(USAGE)));
        assert_eq!(check_force("off", &clusters, &[], true), Ok(()));
        assert_eq!(check_force("off", &clusters, &[3], false), Ok(()));
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
        };
        assert_eq!(token(&common), Ok(Some("s3cret".to_string())));
        std::fs::write(&path, "  \n").unwrap();
        assert!(token(&common).unwrap_err().contains("is empty"));
        let missing = Common { token_file: Some(dir.path().join("nope")), ..common };
        assert!(token(&missing).unwrap_err().contains("nope"));
    }
}
