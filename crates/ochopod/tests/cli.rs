//! The operator tools (`ochopod ls | grep | info | log | port | poll | on | off | reset | kill |
//! signal | reconfigure | wait`) run as subprocesses against a real ZooKeeper and real pods:
//! their output, their exit codes, globs and seq selection, and failures that must show.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use zookeeper_client::{Acls, Client, CreateMode};

/// One tool run: exit code, stdout, stderr.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Data rows of a table (header skipped), split on blanks; a pod key `test.web #3` spans two
    /// cells.
    fn rows(&self) -> Vec<Vec<String>> {
        self.stdout.lines().skip(1).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

fn tool_command(zk: &ZkServer, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("OCHOPOD_ZK", zk.connect_string())
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `ochopod <args>` (ZooKeeper given through `OCHOPOD_ZK`) and waits for it, killing it if
/// it takes longer than `limit`.
fn ochopod_within(zk: &ZkServer, args: &[&str], limit: Duration) -> Run {
    run_command(tool_command(zk, args), args, limit)
}

fn run_command(mut cmd: Command, args: &[&str], limit: Duration) -> Run {
    let mut child = cmd.spawn().expect("start ochopod");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait::until_blocking(&format!("ochopod {args:?} to exit"), limit, || match child.try_wait() {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err("still running".into()),
        Err(e) => Err(e.to_string()),
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}");
        }
    };
    let run = Run { code: status.code(), stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    eprintln!("$ ochopod {}\n{}{}-> {:?}", args.join(" "), run.stdout, run.stderr, run.code);
    run
}

fn ochopod(zk: &ZkServer, args: &[&str]) -> Run {
    ochopod_within(zk, args, Duration::from_secs(60))
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// The seq of each pod, from its own /info.
async fn seqs_of(pods: &[&Pod]) -> Vec<u64> {
    let mut out = Vec::new();
    for p in pods {
        out.push(p.info().await.expect("info").seq.expect("our pods report their seq"));
    }
    out
}

/// The leader's count of successful rounds, from its Prometheus metrics.
async fn rounds_ok(pod: &Pod) -> Option<u64> {
    let text = reqwest::get(format!("http://{}/metrics", pod.address())).await.ok()?.text().await.ok()?;
    let line = text.lines().find(|l| l.starts_with(r#"ochopod_rounds_total{outcome="ok"}"#))?;
    line.split_whitespace().last()?.parse::<f64>().ok().map(|n| n as u64)
}

fn process_is(want: &'static str) -> impl Fn(&ochopod_api::Info) -> Result<(), String> {
    move |i| if i.process == want { Ok(()) } else { Err(format!("process {}", i.process)) }
}

/// Collects a child's output line by line while it runs, so a test can wait for a line.
fn collect_lines(r: impl Read + Send + 'static) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let handle = std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, handle)
}

fn yaml_with_signal_hook(cluster: &str) -> String {
    // The hook echoes the signal's body, so the reply shows what the pod received.
    format!("{}hooks:\n  signaled: cat\n", simple_yaml(cluster, ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_tools_show_clusters_and_pods_selected_by_glob_and_seq() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let web: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &simple_yaml("web", ""))).collect();
    let db = start_pod(&zk, &simple_yaml("db", ""));
    let web_refs: Vec<&Pod> = web.iter().collect();
    let leader = wait_settled(&web_refs, 3, SETTLE).await;
    wait_settled(&[&db], 1, SETTLE).await;
    let seqs = seqs_of(&web_refs).await;

    // ls: running/total and nothing else failing.
    let ls = ochopod(&zk, &["ls"]);
    assert_eq!(ls.code, Some(0));
    assert_eq!(
        ls.stdout.lines().next().map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["cluster", "ok", "status"])
    );
    let ok: BTreeMap<String, String> = ls.rows().into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(ok, BTreeMap::from([("test.db".into(), "1/1".into()), ("test.web".into(), "3/3".into())]));

    let js = ochopod(&zk, &["ls", "--json"]).json();
    assert_eq!(js["ok"], true);
    let web_row = js["clusters"].as_array().unwrap().iter().find(|c| c["cluster"] == "test.web").unwrap().clone();
    assert_eq!((web_row["running"].clone(), web_row["total"].clone()), (json!(3), json!(3)));
    assert_eq!(web_row["leader"], format!("test.web #{}", seqs[leader]));
    assert_eq!(web_row["state"], "leader");

    // A bare name means that cluster in any namespace.
    let ls_web = ochopod(&zk, &["ls", "web"]);
    assert_eq!(ls_web.rows().iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), vec!["test.web"]);

    // grep: one row per pod, with the right seqs, states and processes.
    let grep = ochopod(&zk, &["grep", "test.w*"]);
    assert_eq!(grep.code, Some(0));
    let rows = grep.rows();
    assert_eq!(rows.len(), 3, "{grep:?}");
    let shown: BTreeSet<u64> = rows.iter().map(|r| r[1].trim_start_matches('#').parse().unwrap()).collect();
    assert_eq!(shown, seqs.iter().copied().collect());
    for r in &rows {
        assert_eq!(r[0], "test.web");
        assert_eq!((r[2].as_str(), r[4].as_str()), ("127.0.0.1", "running"), "{r:?}");
    }
    let states: Vec<&str> = rows.iter().map(|r| r[5].as_str()).collect();
    assert_eq!(states.iter().filter(|s| **s == "leader").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == "follower").count(), 2, "{states:?}");

    let all = ochopod(&zk, &["grep", "--json"]).json();
    let pods = all["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 4);
    for p in pods {
        for key in ["pod", "cluster", "seq", "uuid", "address", "ip", "node", "process", "state", "error"] {
            assert!(p.get(key).is_some(), "{key} missing in {p}");
        }
        assert_eq!(p["error"], Value::Null);
    }

    // -i selects by seq (repeated or comma separated).
    let two = format!("{},{}", seqs[0], seqs[2]);
    let picked = ochopod(&zk, &["grep", "web", "-i", &two]);
    assert_eq!(picked.code, Some(0));
    let picked_seqs: BTreeSet<String> = picked.rows().iter().map(|r| r[1].clone()).collect();
    assert_eq!(picked_seqs, BTreeSet::from([format!("#{}", seqs[0]), format!("#{}", seqs[2])]));

    let one = seqs[1].to_string();
    let info = ochopod(&zk, &["info", "web", "-i", &one, "--json"]).json();
    assert_eq!(info["pods"].as_array().unwrap().len(), 1);
    assert_eq!(info["pods"][0]["info"]["seq"], seqs[1]);
    assert_eq!(info["pods"][0]["info"]["process"], "running");
    let info_text = ochopod(&zk, &["info", "web", "-i", &one]);
    assert!(info_text.stdout.starts_with(&format!("== test.web #{one} (127.0.0.1:")), "{info_text:?}");

    // port: where 8080 (the control port) is published, per pod.
    let port = ochopod(&zk, &["port", "8080", "web"]);
    assert_eq!(port.code, Some(0));
    let published: BTreeMap<String, String> = port.rows().iter().map(|r| (r[1].clone(), r[4].clone())).collect();
    let expected: BTreeMap<String, String> =
        seqs.iter().zip(&web).map(|(s, p)| (format!("#{s}"), p.control_port.to_string())).collect();
    assert_eq!(published, expected);
    let unpublished = ochopod(&zk, &["port", "9999", "web"]);
    assert_eq!(unpublished.code, Some(1));
    assert!(
        unpublished.stderr.contains("3 of 3 pods failed") && unpublished.stderr.contains("does not publish port 9999")
    );

    let poll = ochopod(&zk, &["poll", "db"]);
    assert_eq!(poll.code, Some(0));
    assert_eq!(poll.rows().len(), 1);
    assert_eq!(ochopod(&zk, &["poll", "web", "--json"]).json()["pods"].as_array().unwrap().len(), 3);

    // log: a header per pod and at most -n lines.
    let log = ochopod(&zk, &["log", "web", "-i", &one, "-n", "2"]);
    assert_eq!(log.code, Some(0));
    let lines: Vec<&str> = log.stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("== test.web #{one} ")), "{log:?}");
    assert_eq!(lines.len(), 3, "{log:?}");
    let all_lines = ochopod(&zk, &["log", "web", "-i", &one, "-l", "--json"]).json();
    assert!(all_lines["pods"][0]["lines"].as_array().unwrap().len() > 2, "{all_lines}");

    // Nothing matched: exit 1 with the reason.
    let none = ochopod(&zk, &["grep", "nope"]);
    assert_eq!(none.code, Some(1));
    assert!(none.stderr.contains("no cluster matches nope"), "{none:?}");
    let no_seq = ochopod(&zk, &["grep", "web", "-i", "99999"]);
    assert_eq!(no_seq.code, Some(1));
    assert!(no_seq.stderr.contains("no pod has seq 99999") && no_seq.stderr.contains("no pods matched"));
    // A missing seq next to a found one: the found one is shown, the exit code still says no.
    let partly = ochopod(&zk, &["grep", "web", "-i", &format!("{one},99999")]);
    assert_eq!((partly.code, partly.rows().len()), (Some(1), 1));

    // --zk wins over OCHOPOD_ZK; an unreachable ZooKeeper is an error, not a hang.
    let closed = ochopod_common::closed_port();
    let unreachable = ochopod_within(&zk, &["ls", "--zk", &format!("127.0.0.1:{closed}")], Duration::from_secs(30));
    assert_eq!(unreachable.code, Some(1));
    assert!(unreachable.stderr.contains("cannot connect to ZooKeeper"), "{unreachable:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_tools_drive_the_selected_pods_and_refuse_whole_clusters_without_force() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = yaml_with_signal_hook("web");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let leader = wait_settled(&refs, 2, SETTLE).await;
    let seqs = seqs_of(&refs).await;
    let (s0, s1) = (seqs[0].to_string(), seqs[1].to_string());

    // Whole cluster without --force: refused before anything is sent.
    let refused = ochopod(&zk, &["off", "web"]);
    assert_eq!(refused.code, Some(2));
    assert!(refused.stderr.contains("--force"), "{refused:?}");
    assert_eq!(pods[0].info().await.unwrap().process, "running");

    // off/on one pod by seq.
    let off = ochopod(&zk, &["off", "web", "-i", &s0, "-t", "10s"]);
    assert_eq!(off.code, Some(0));
    assert!(off.stdout.contains(&format!("test.web #{s0}")) && off.stdout.contains("ok (200)"), "{off:?}");
    assert!(off.stdout.contains("100% success (1/1 pods)"), "{off:?}");
    pods[0].wait_info("pod 0 stopped", Duration::from_secs(15), process_is("stopped")).await.unwrap();
    assert_eq!(pods[1].info().await.unwrap().process, "running");
    let on = ochopod(&zk, &["on", "web", "-i", &s0, "-t", "10s"]);
    assert_eq!(on.code, Some(0), "{on:?}");
    pods[0].wait_info("pod 0 running again", Duration::from_secs(15), process_is("running")).await.unwrap();

    // signal: the hook's output is each pod's reply.
    let signal = ochopod(&zk, &["signal", "web", r#"{"ping": 1}"#, "--force", "--json"]);
    assert_eq!(signal.code, Some(0), "{signal:?}");
    let replies = signal.json();
    assert_eq!(replies["pods"].as_array().unwrap().len(), 2);
    for p in replies["pods"].as_array().unwrap() {
        assert_eq!((p["code"].clone(), p["reply"].clone()), (json!(200), json!({"ping": 1})), "{p}");
    }
    let text = ochopod(&zk, &["signal", "web", "-i", &s1, "-d", r#"{"b":2}"#]);
    assert_eq!(text.code, Some(0));
    assert!(text.stdout.contains(r#"{"b":2}"#), "{text:?}");

    // reconfigure: the leader runs one more round now (its round counter says so).
    let leader = &pods[leader];
    let before = rounds_ok(leader).await;
    let reconf = ochopod(&zk, &["reconfigure", "web"]);
    assert_eq!(reconf.code, Some(0), "{reconf:?}");
    assert!(reconf.stdout.contains("round requested"), "{reconf:?}");
    wait::until("one more round on the leader", Duration::from_secs(20), || async {
        match rounds_ok(leader).await {
            Some(n) if n > before.unwrap_or(0) => Ok(()),
            other => Err(format!("rounds ok {before:?} -> {other:?}")),
        }
    })
    .await
    .unwrap();

    // reset: the pod re-registers with the same seq.
    let reset = ochopod(&zk, &["reset", "web", "-i", &s1]);
    assert_eq!(reset.code, Some(0), "{reset:?}");
    wait::until_blocking("both pods registered after the reset", Duration::from_secs(20), || {
        let g = ochopod(&zk, &["grep", "web"]);
        let shown: Vec<String> = g.rows().iter().map(|r| r[1].clone()).collect();
        if g.code == Some(0)
            && shown == vec![format!("#{}", seqs[0].min(seqs[1])), format!("#{}", seqs[0].max(seqs[1]))]
        {
            Ok(())
        } else {
            Err(format!("{g:?}"))
        }
    })
    .unwrap();
    // kill: the pod idles as dead; killing it again is still a success (410).
    let kill = ochopod(&zk, &["kill", "web", "-i", &s1, "-t", "10s"]);
    assert_eq!(kill.code, Some(0), "{kill:?}");
    pods[1].wait_info("pod 1 dead", Duration::from_secs(15), process_is("dead")).await.unwrap();
    let again = ochopod(&zk, &["kill", "web", "-i", &s1]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.contains("ok (already dead)"), "{again:?}");
    assert_eq!(pods[0].info().await.unwrap().process, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_once_the_cluster_is_settled_and_fails_on_timeout() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // Started before any pod exists: waiting for a cluster that is still to come is the CI case.
    let mut waiter =
        tool_command(&zk, &["wait", "web", "--count", "2", "--timeout", "90s"]).spawn().expect("start wait");
    let out = drain(waiter.stdout.take().unwrap());
    let (progress, err) = collect_lines(waiter.stderr.take().unwrap());
    let waiting = wait::until_blocking("wait to report that there is no cluster yet", Duration::from_secs(20), || {
        let seen = progress.lock().unwrap().clone();
        if seen.iter().any(|l| l.contains("waiting: no cluster matches web yet")) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    if let Err(e) = waiting {
        let _ = waiter.kill();
        let _ = waiter.wait();
        panic!("{e}");
    }
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &yaml)).collect();
    let status = wait::until_blocking("wait to exit", Duration::from_secs(90), || match waiter.try_wait() {
        Ok(Some(s)) => Ok(s),
        _ => Err("running".into()),
    });
    let status = status.unwrap_or_else(|e| {
        let _ = waiter.kill();
        let _ = waiter.wait();
        panic!("{e}")
    });
    // The moment it returns, the cluster must really be settled.
    let infos = infos(&pods.iter().collect::<Vec<_>>()).await.unwrap();
    err.join().unwrap();
    let stdout = out.join().unwrap();
    eprintln!("wait said:\n{stdout}{}", progress.lock().unwrap().join("\n"));
    assert_eq!(status.code(), Some(0));
    assert!(stdout.starts_with("ready after ") && stdout.contains("test.web 2/2 running"), "{stdout}");
    assert!(infos.iter().all(|i| i.process == "running"), "{infos:?}");
    assert_eq!(infos.iter().filter(|i| i.state == "leader").count(), 1, "{infos:?}");

    // Already ready: returns at once, JSON for scripts.
    let js = ochopod(&zk, &["wait", "test.web", "-c", "2", "-t", "10s", "--json"]);
    assert_eq!(js.code, Some(0));
    assert_eq!(js.json()["clusters"][0]["running"], 2);

    // A third pod never comes: exit 1 after the timeout, saying what was seen.
    let started = std::time::Instant::now();
    let timeout = ochopod(&zk, &["wait", "web", "--count", "3", "--timeout", "2s"]);
    let took = started.elapsed();
    assert_eq!(timeout.code, Some(1));
    assert!(
        timeout.stderr.contains("timed out after 2s") && timeout.stderr.contains("2/2 running, need 3"),
        "{timeout:?}"
    );
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(15), "{took:?}");

    // No ZooKeeper at all: it keeps trying until the deadline, then says so.
    let nowhere = format!("127.0.0.1:{}", ochopod_common::closed_port());
    let no_zk = ochopod(&zk, &["wait", "web", "--zk", &nowhere, "--timeout", "1s"]);
    assert_eq!(no_zk.code, Some(1));
    assert!(no_zk.stderr.contains("cannot connect to ZooKeeper"), "{no_zk:?}");
    assert!(no_zk.stderr.contains(&format!("timed out after 1s waiting for ZooKeeper at {nowhere}")), "{no_zk:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_healthy_also_needs_passing_sanity_checks_and_probe() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // A real pod whose probe fails until `probe.ok` exists in its folder.
    let probe = "  probe:\n    command: test -f probe.ok && echo fine || { echo down >&2; exit 1; }\n    every: 1s";
    let pod = start_pod(&zk, &simple_yaml("web", probe));
    wait_settled(&[&pod], 1, SETTLE).await;
    pod.wait_info("the probe to fail", Duration::from_secs(20), |i| {
        if i.status == "* down" {
            Ok(())
        } else {
            Err(format!("status {:?}", i.status))
        }
    })
    .await
    .unwrap();
    let plain = ochopod(&zk, &["wait", "web", "-c", "1", "-t", "10s"]);
    assert_eq!(plain.code, Some(0), "{plain:?}");
    let unhealthy = ochopod(&zk, &["wait", "web", "-c", "1", "-t", "2s", "--healthy"]);
    assert_eq!(unhealthy.code, Some(1), "{unhealthy:?}");
    assert!(unhealthy.stderr.contains("timed out after 2s") && unhealthy.stderr.contains("probe failing (* down)"));
    std::fs::write(pod.dir.path().join("probe.ok"), "").unwrap();
    let healthy = ochopod(&zk, &["wait", "web", "-c", "1", "-t", "30s", "--healthy"]);
    assert_eq!(healthy.code, Some(0), "{healthy:?}");
    assert!(healthy.stdout.contains("test.web 1/1 running") && healthy.stdout.contains("(healthy)"), "{healthy:?}");

    // A real pod whose sanity check fails until `sanity.ok` exists in its folder: `/info` says
    // `failing`, which `--healthy` waits past, while the process runs (plain `wait` is content).
    let sanity = "  grace: 2s\n  sanity: { command: test -f sanity.ok, every: 1s, retries: 1000000 }\n";
    let db = start_pod(&zk, &simple_yaml("db", "").replace("  grace: 2s\n", sanity));
    wait_settled(&[&db], 1, SETTLE).await;
    db.wait_info("the sanity check to fail", Duration::from_secs(20), |i| match i.sanity.as_deref() {
        Some("failing") => Ok(()),
        other => Err(format!("sanity {other:?}")),
    })
    .await
    .unwrap();
    let plain = ochopod(&zk, &["wait", "db", "-c", "1", "-t", "10s"]);
    assert_eq!(plain.code, Some(0), "{plain:?}");
    let unhealthy = ochopod(&zk, &["wait", "db", "-c", "1", "-t", "2s", "--healthy"]);
    assert_eq!(unhealthy.code, Some(1), "{unhealthy:?}");
    assert!(unhealthy.stderr.contains("test.db: sanity failing on #"), "{unhealthy:?}");
    std::fs::write(db.dir.path().join("sanity.ok"), "").unwrap();
    let healthy = ochopod(&zk, &["wait", "db", "-c", "1", "-t", "30s", "--healthy"]);
    assert_eq!(healthy.code, Some(0), "{healthy:?}");
    assert_eq!(db.info().await.unwrap().sanity.as_deref(), Some("passing"));

    // Pods that report their sanity check (`sanity` in /info): one fails, then passes.
    let leader = InfoPod::start(json!({"process": "running", "state": "leader", "status": "ok",
        "sanity": "passing", "probe": "passing"}));
    let follower = InfoPod::start(json!({"process": "running", "state": "follower", "sanity": "failing"}));
    let client = Client::connect(&zk.connect_string()).await.expect("connect");
    let dir = "/ochopod/clusters/test.api/pods";
    client.mkdir(dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    for (n, p) in [(1, &leader), (2, &follower)] {
        let reg = json!({"ip": "127.0.0.1", "port": "8080", "ports": {"8080": p.port}, "seq": n,
            "cluster": "api", "namespace": "test"});
        let mode = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
        client.create(&format!("{dir}/u{n}."), reg.to_string().as_bytes(), &mode).await.unwrap();
    }
    let plain = ochopod(&zk, &["wait", "api", "-c", "2", "-t", "10s"]);
    assert_eq!(plain.code, Some(0), "{plain:?}");
    let unhealthy = ochopod(&zk, &["wait", "api", "-c", "2", "-t", "2s", "--healthy"]);
    assert_eq!(unhealthy.code, Some(1), "{unhealthy:?}");
    assert!(unhealthy.stderr.contains("test.api: sanity failing on #2"), "{unhealthy:?}");
    follower.set("sanity", json!("passing"));
    let healthy = ochopod(&zk, &["wait", "api", "-c", "2", "-t", "10s", "--healthy"]);
    assert_eq!(healthy.code, Some(0), "{healthy:?}");
    drop(client);
}

/// A pod that answers every request with its `/info`, whose fields the test may change.
struct InfoPod {
    port: u16,
    info: Arc<Mutex<Value>>,
}

impl InfoPod {
    fn start(info: Value) -> InfoPod {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let info = Arc::new(Mutex::new(info));
        let current = info.clone();
        // Detached: it only accepts on its own port and dies with the test process.
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let _ = reader.read_exact(&mut vec![0u8; length]);
                let text = current.lock().unwrap().to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        InfoPod { port, info }
    }

    fn set(&self, key: &str, value: Value) {
        self.info.lock().unwrap()[key] = value;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_do_not_answer_are_reported_and_fail_the_command() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &simple_yaml("web", ""))).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;

    // A "ghost" cluster in ZooKeeper: a pod registered on a port nobody listens on, one with no
    // control port, and one whose node is still empty (registering). Held by this test's session.
    let client = Client::connect(&zk.connect_string()).await.expect("connect");
    let dir = "/ochopod/clusters/test.ghost/pods";
    client.mkdir(dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    let ephemeral = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let closed = ochopod_common::closed_port();
    let down = json!({"ip": "127.0.0.1", "port": "8080", "ports": {"8080": closed}, "seq": 901,
                      "cluster": "ghost", "namespace": "test", "node": "local", "public": ""});
    let portless =
        json!({"ip": "127.0.0.1", "port": "8080", "ports": {}, "seq": 902, "cluster": "ghost", "namespace": "test"});
    client.create(&format!("{dir}/aaaa."), down.to_string().as_bytes(), &ephemeral).await.unwrap();
    client.create(&format!("{dir}/bbbb."), portless.to_string().as_bytes(), &ephemeral).await.unwrap();
    client.create(&format!("{dir}/cccc."), b"", &ephemeral).await.unwrap();

    let grep = ochopod(&zk, &["grep", "web", "ghost"]);
    assert_eq!(grep.code, Some(1));
    assert_eq!(grep.rows().len(), 4, "unreachable pods keep their row: {grep:?}");
    assert!(grep.stdout.contains("unreachable") && grep.stdout.contains("no-address"), "{grep:?}");
    assert!(grep.stderr.contains("2 of 4 pods failed"), "{grep:?}");
    assert!(grep.stderr.contains(&format!("test.ghost #901 (127.0.0.1:{closed}): unreachable")), "{grep:?}");
    assert!(grep.stderr.contains("test.ghost #902: registers no control port"), "{grep:?}");
    assert!(grep.stderr.contains("skipped: no registration yet"), "the empty node is a warning: {grep:?}");

    let ls = ochopod(&zk, &["ls"]);
    assert_eq!(ls.code, Some(1));
    let ok: BTreeMap<String, String> = ls.rows().into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(ok, BTreeMap::from([("test.ghost".into(), "0/2".into()), ("test.web".into(), "2/2".into())]));

    // A command that reaches only some pods: the others did it, the exit code says not all.
    let on = ochopod(&zk, &["on", "test.*", "--force", "-t", "10s"]);
    assert_eq!(on.code, Some(1), "{on:?}");
    assert!(on.stdout.contains("50% success (2/4 pods)"), "{on:?}");
    assert_eq!(on.stdout.matches("ok (200)").count(), 2, "{on:?}");

    let js = ochopod(&zk, &["grep", "ghost", "--json"]);
    assert_eq!(js.code, Some(1));
    let doc = js.json();
    assert_eq!(doc["ok"], false);
    let failed: Vec<(String, String)> = doc["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["pod"].as_str().unwrap().to_string(), f["kind"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        failed,
        vec![("test.ghost #901".into(), "unreachable".into()), ("test.ghost #902".into(), "no-address".into())]
    );
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_follow_prints_new_lines_as_they_come() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let pod = start_pod(&zk, &simple_yaml("web", ""));
    wait_settled(&[&pod], 1, SETTLE).await;
    let seq = seqs_of(&[&pod]).await[0].to_string();

    let mut follower: Child = tool_command(&zk, &["log", "web", "-f", "-n", "1"]).spawn().expect("start log -f");
    let (lines, reader) = collect_lines(follower.stdout.take().unwrap());
    let count = || lines.lock().unwrap().len();
    let first = wait::until_blocking("the first line", Duration::from_secs(20), || {
        if count() >= 1 {
            Ok(count())
        } else {
            Err("none".into())
        }
    });
    // Something that the pod logs: stopping and starting its process.
    let off = ochopod(&zk, &["off", "web", "-i", &seq, "-t", "10s"]);
    let on = ochopod(&zk, &["on", "web", "-i", &seq, "-t", "10s"]);
    // `on` restarts the process, which the pod logs.
    let grew = wait::until_blocking("the restart to be followed", Duration::from_secs(20), || {
        let seen = lines.lock().unwrap();
        if seen.iter().skip(1).any(|l| l.contains("process started")) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    let _ = follower.kill();
    let _ = follower.wait();
    reader.join().unwrap();
    assert_eq!(first.unwrap(), 1, "-n 1 shows one line first");
    assert_eq!((off.code, on.code), (Some(0), Some(0)));
    grew.unwrap();
    // Lines carry a millisecond timestamp: a repeated one means a line was printed twice.
    let seen = lines.lock().unwrap().clone();
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len(), "printed twice: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_token_is_sent_when_configured() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = format!("{}control:\n  token_env: TEST_POD_TOKEN\n", simple_yaml("web", ""));
    let pod = Pod::start(PodSpec::new(bin(), &zk.connect_string(), &yaml).env("TEST_POD_TOKEN", "s3cret"))
        .expect("start pod");
    wait_settled(&[&pod], 1, SETTLE).await;
    let seq = seqs_of(&[&pod]).await[0].to_string();
    let args = ["signal", "web", "-i", seq.as_str(), "-t", "5s"];

    let without = ochopod(&zk, &args);
    assert_eq!(without.code, Some(1), "{without:?}");
    assert!(without.stderr.contains("HTTP 401"), "{without:?}");

    let mut from_env = tool_command(&zk, &args);
    from_env.env("OCHOPOD_TOKEN", "s3cret");
    assert_eq!(run_command(from_env, &args, Duration::from_secs(60)).code, Some(0));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let file = file.to_str().unwrap();
    let mut with_file = tool_command(&zk, &[&args[..], &["--token-file", file]].concat());
    // The file wins over a wrong token in the environment.
    with_file.env("OCHOPOD_TOKEN", "wrong");
    let run = run_command(with_file, &args, Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("s3cret") && !run.stderr.contains("s3cret"), "the token is never printed");
}

/// An original (Python) pod answers POST only and shows fewer fields; the tools must read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_pods_are_read_over_post() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let legacy = LegacyPod::start();
    let client = Client::connect(&zk.connect_string()).await.expect("connect");
    let dir = "/ochopod/clusters/marathon.legacy/pods";
    client.mkdir(dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    // The original writes every value as a string except ports and seq, and extra hints.
    let reg = json!({"application": "", "cluster": "legacy", "debug": "true", "fwk": "marathon (debug)",
        "ip": "127.0.0.1", "local": "true", "namespace": "marathon", "node": "local", "port": "8080",
        "ports": {"8080": legacy.port}, "public": "127.0.0.1", "seq": 3, "start": "true", "task": "", "zk": "x"});
    client
        .create(
            &format!("{dir}/0f1e2d3c-0000-4000-8000-000000000000."),
            reg.to_string().as_bytes(),
            &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();

    let grep = ochopod(&zk, &["grep", "legacy"]);
    assert_eq!(grep.code, Some(0), "{grep:?}");
    assert_eq!(grep.rows(), vec![vec!["marathon.legacy", "#3", "127.0.0.1", "local", "running", "follower"]]);
    let ls = ochopod(&zk, &["ls", "legacy"]);
    assert_eq!(ls.rows(), vec![vec!["marathon.legacy", "1/1"]]);
    let log = ochopod(&zk, &["log", "legacy"]);
    assert_eq!(log.code, Some(0));
    assert!(log.stdout.contains("\nINFO - hello\nINFO - world\n"), "{log:?}");
    let off = ochopod(&zk, &["off", "legacy", "--force"]);
    assert_eq!(off.code, Some(0), "{off:?}");
    let requests = legacy.requests();
    assert!(
        requests.contains(&"POST /control/off/60 body=0".to_string()),
        "empty body, as the original CLI: {requests:?}"
    );
    assert!(requests.iter().all(|r| r.starts_with("POST ")), "{requests:?}");
    drop(client);
}

/// A stand-in for an original pod's Flask server: POST-only, `{}` on errors.
struct LegacyPod {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl LegacyPod {
    fn start() -> LegacyPod {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Detached: it only accepts on its own port and dies with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let mut parts = request_line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                log.lock().unwrap().push(format!("{method} {path} body={length}"));
                let (code, reply) = match (method, path) {
                    ("POST", "/info") => (
                        200,
                        json!({"application": "", "dependencies": [], "ip": "127.0.0.1",
                        "metrics": {}, "node": "local", "port": "8080", "ports": {"8080": port}, "process": "running",
                        "public": "127.0.0.1", "state": "follower", "task": ""}),
                    ),
                    ("POST", "/log") => (200, json!(["INFO - hello\n", "INFO - world\n"])),
                    ("POST", p) if p.starts_with("/control/") => (200, json!({})),
                    ("POST", _) => (404, json!({})),
                    _ => (405, json!({})),
                };
                let text = reply.to_string();
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        LegacyPod { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

mod ochopod_common {
    use std::net::TcpListener;

    /// A loopback port with nothing listening on it (bound, then released).
    pub fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

/// Runs `ochopod <args>` with its stdout closed before it writes anything, as `| head` leaves
/// it: the tool must end quietly (no panic, nothing on stderr) with the exit code it would have
/// had (every pod here answers, so 0).
fn with_stdout_closed(zk: &ZkServer, args: &[&str]) -> Run {
    let mut child = tool_command(zk, args).spawn().expect("start ochopod");
    // The read end goes away at once, long before the tool has found its pods.
    drop(child.stdout.take());
    let err = drain(child.stderr.take().unwrap());
    let status = wait::until_blocking(&format!("ochopod {args:?} to exit"), Duration::from_secs(60), || {
        match child.try_wait() {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("still running".into()),
            Err(e) => Err(e.to_string()),
        }
    });
    let status = status.unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{e}")
    });
    Run { code: status.code(), stdout: String::new(), stderr: err.join().unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_tool_quietly() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let pod = start_pod(&zk, &simple_yaml("web", ""));
    wait_settled(&[&pod], 1, SETTLE).await;
    let commands: [&[&str]; 16] = [
        &["ls"],
        &["ls", "--json"],
        &["grep"],
        &["grep", "--json"],
        &["info", "web"],
        &["info", "web", "--json"],
        &["poll", "web"],
        &["port", "8080", "web"],
        &["port", "8080", "web", "--json"],
        &["log", "web"],
        &["log", "web", "--json"],
        &["log", "web", "-f", "-n", "1"],
        &["log", "web", "-f", "-n", "1", "--json"],
        &["reconfigure", "web"],
        &["wait", "web", "-t", "20s"],
        &["wait", "web", "-t", "20s", "--json"],
    ];
    let mut wrong = Vec::new();
    for args in commands {
        let run = with_stdout_closed(&zk, args);
        if run.code != Some(0) || !run.stderr.is_empty() {
            wrong.push(format!("ochopod {}: exit {:?}, stderr {:?}", args.join(" "), run.code, run.stderr));
        }
    }
    assert!(wrong.is_empty(), "not quiet on a closed stdout:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_follow_picks_up_pods_that_join_after_it_started() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let first = start_pod(&zk, &simple_yaml("web", ""));
    wait_settled(&[&first], 1, SETTLE).await;

    let mut follower: Child = tool_command(&zk, &["log", "web", "-f", "-n", "1"]).spawn().expect("start log -f");
    let (lines, reader) = collect_lines(follower.stdout.take().unwrap());
    let (notes, notes_reader) = collect_lines(follower.stderr.take().unwrap());
    let started = wait::until_blocking("the first line", Duration::from_secs(20), || {
        if lines.lock().unwrap().is_empty() {
            Err("none".into())
        } else {
            Ok(())
        }
    });
    let joined = match started {
        Ok(()) => {
            let second = start_pod(&zk, &simple_yaml("web", ""));
            wait_settled(&[&first, &second], 2, SETTLE).await;
            let seq = seqs_of(&[&second]).await[0];
            let prefix = format!("[test.web #{seq}] ");
            let seen = wait::until_blocking("lines of the pod that joined", Duration::from_secs(30), || {
                let seen = lines.lock().unwrap();
                if seen.iter().any(|l| l.starts_with(&prefix)) {
                    Ok(())
                } else {
                    Err(format!("{seen:?}"))
                }
            });
            seen.map(|()| seq)
        }
        Err(e) => Err(e),
    };
    let _ = follower.kill();
    let _ = follower.wait();
    reader.join().unwrap();
    notes_reader.join().unwrap();
    let seq = joined.unwrap();
    let notes = notes.lock().unwrap().clone();
    assert!(notes.iter().any(|n| n == &format!("test.web #{seq}: joined")), "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_leaves_out_clusters_whose_pods_are_all_gone() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let mut web = start_pod(&zk, &simple_yaml("web", ""));
    let db = start_pod(&zk, &simple_yaml("db", ""));
    wait_settled(&[&web], 1, SETTLE).await;
    wait_settled(&[&db], 1, SETTLE).await;

    // The web pod stops: its session closes, its registration and the snapshot it published as
    // leader go with it, and only the persistent nodes of test.web are left.
    web.signal(nix::sys::signal::Signal::SIGTERM);
    web.wait_exit(Duration::from_secs(30)).expect("the pod stops on SIGTERM");
    let client = Client::connect(&zk.connect_string()).await.expect("connect");
    wait::until("test.web to have no pod and no snapshot", Duration::from_secs(20), || async {
        let pods = client.list_children("/ochopod/clusters/test.web/pods").await.map_err(|e| e.to_string())?;
        let snapshot = client.check_stat("/ochopod/clusters/test.web/snapshot").await.map_err(|e| e.to_string())?;
        if pods.is_empty() && snapshot.is_none() {
            Ok(())
        } else {
            Err(format!("pods {pods:?}, snapshot {snapshot:?}"))
        }
    })
    .await
    .unwrap();
    drop(client);

    let ls = ochopod(&zk, &["ls"]);
    assert_eq!(ls.code, Some(0), "{ls:?}");
    assert_eq!(ls.rows(), vec![vec!["test.db", "1/1"]], "{ls:?}");
    let js = ochopod(&zk, &["ls", "--json"]).json();
    let listed: Vec<&str> = js["clusters"].as_array().unwrap().iter().filter_map(|c| c["cluster"].as_str()).collect();
    assert_eq!(listed, ["test.db"]);

    // --all lists it, marked.
    let all = ochopod(&zk, &["ls", "--all"]);
    assert_eq!(all.code, Some(0), "{all:?}");
    assert!(
        all.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["test.web", "0/0", "gone"]),
        "{all:?}"
    );

    // Naming only a cluster that is gone: nothing to list, said as the other read tools say it.
    let gone = ochopod(&zk, &["ls", "web"]);
    assert_eq!(gone.code, Some(1), "{gone:?}");
    assert!(gone.stderr.contains("no pods in test.web (ls --all lists it)"), "{gone:?}");
}

/// Runs `ochopod <args>` on a pseudo-terminal (util-linux `script`), so that its stdout and
/// stderr are terminals; returns what the terminal received.
fn on_terminal(zk: &ZkServer, args: &[&str], env: &[(&str, &str)]) -> Run {
    let line = std::iter::once(BIN).chain(args.iter().copied()).map(shell_quote).collect::<Vec<_>>().join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("OCHOPOD_ZK", zk.connect_string())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd, args, Duration::from_secs(60))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_progress_line_is_redrawn_only_on_a_terminal_without_no_color() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let args = ["wait", "nope", "-t", "1s"];
    let tty = on_terminal(&zk, &args, &[]);
    assert_eq!(tty.code, Some(1), "{tty:?}");
    assert!(tty.stdout.contains("\x1b[2K") && tty.stdout.contains("waiting: no cluster matches nope yet"), "{tty:?}");

    for (what, env) in [("NO_COLOR", ("NO_COLOR", "1")), ("TERM=dumb", ("TERM", "dumb"))] {
        let plain = on_terminal(&zk, &args, &[env]);
        assert_eq!(plain.code, Some(1), "{what}: {plain:?}");
        assert!(plain.stdout.contains("waiting: no cluster matches nope yet"), "{what}: {plain:?}");
        assert!(!plain.stdout.contains('\x1b'), "{what}: escape codes: {plain:?}");
    }
    let redirected = ochopod(&zk, &args);
    assert_eq!(redirected.code, Some(1), "{redirected:?}");
    assert!(!redirected.stderr.contains('\x1b') && !redirected.stdout.contains('\x1b'), "{redirected:?}");
}
