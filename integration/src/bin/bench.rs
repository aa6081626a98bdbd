//! `ochopod-bench` (`make bench`): the numbers of DESIGN.md §8, measured against a real ZooKeeper
//! with real release-built pods, each scenario run several times; median / min / max go to a
//! markdown table (default `bench/results.md`) with the machine and the commit.
//!
//! Usage: ochopod-bench [--out FILE] [--runs N] [--quick] [--scale]
//!   --quick  fewer runs and no 30-pod formation (a smoke run)
//!   --scale  also one cluster of 200 pods and 50 clusters of 10 pods

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use ochopod_integration::pods::{ochopod_bin, Pod, PodSpec};
use ochopod_integration::settle;
use ochopod_integration::zk::ZkServer;
use zookeeper_client as zk;

struct Opts {
    out: PathBuf,
    runs: usize,
    quick: bool,
    scale: bool,
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts { out: PathBuf::from("bench/results.md"), runs: 5, quick: false, scale: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => o.out = args.next().context("--out needs a file")?.into(),
            "--runs" => o.runs = args.next().context("--runs needs a number")?.parse()?,
            "--quick" => o.quick = true,
            "--scale" => o.scale = true,
            other => bail!("unknown argument {other:?} (see the doc comment of integration/src/bin/bench.rs)"),
        }
    }
    if o.quick {
        o.runs = o.runs.min(2);
    }
    Ok(o)
}

/// A bench pod: sleeps, renders its view size, forms with no damper.
fn yaml(namespace: &str, cluster: &str, session: &str) -> String {
    format!(
        r#"cluster: {cluster}
namespace: {namespace}
zk_session_timeout: {session}
model:
  damper: 0s
  grace: 10s
process:
  command: sleep 3600
  grace: 2s
files:
  - path: size.txt
    template: "{{{{ size }}}}"
"#
    )
}

struct Bench {
    zk: ZkServer,
    /// Reads `pods/` and `snapshot` for the settled check; connected before any timing starts.
    client: zk::Client,
    bin: PathBuf,
    next_ns: usize,
}

impl Bench {
    fn namespace(&mut self) -> String {
        self.next_ns += 1;
        format!("bench{}", self.next_ns)
    }

    fn start(&self, ns: &str, cluster: &str, session: &str) -> anyhow::Result<Pod> {
        Pod::start(PodSpec::new(&self.bin, &self.zk.connect_string(), &yaml(ns, cluster, session)))
    }

    fn start_many(&self, ns: &str, cluster: &str, n: usize, session: &str) -> anyhow::Result<Vec<Pod>> {
        (0..n).map(|_| self.start(ns, cluster, session)).collect()
    }
}

/// Polls (every 10 ms) until the pods are settled with `size` (the harness's one definition,
/// DESIGN.md §8). Returns the leader's position.
async fn settled(zk: &zk::Client, pods: &[&Pod], size: usize, timeout: Duration) -> anyhow::Result<usize> {
    let start = Instant::now();
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    let http = pods[0].client();
    loop {
        let last = match settle::settled_now(http, zk, &addresses, size).await {
            Ok(s) => return Ok(s.leader),
            Err(e) => e,
        };
        if start.elapsed() > timeout {
            bail!("{} pods did not settle at size {size} within {timeout:?}: {last}", pods.len());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn leader_among(pods: &[&Pod], timeout: Duration) -> anyhow::Result<usize> {
    let start = Instant::now();
    loop {
        for (n, p) in pods.iter().enumerate() {
            if p.info().await.map(|i| i.state.starts_with("leader")).unwrap_or(false) {
                return Ok(n);
            }
        }
        if start.elapsed() > timeout {
            bail!("no new leader within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn formation(b: &mut Bench, n: usize) -> anyhow::Result<f64> {
    let ns = b.namespace();
    let t = Instant::now();
    let pods = b.start_many(&ns, "form", n, "15s")?;
    let refs: Vec<&Pod> = pods.iter().collect();
    settled(&b.client, &refs, n, Duration::from_secs(120)).await?;
    Ok(t.elapsed().as_secs_f64())
}

async fn join(b: &mut Bench) -> anyhow::Result<f64> {
    let ns = b.namespace();
    let mut pods = b.start_many(&ns, "join", 3, "15s")?;
    settled(&b.client, &pods.iter().collect::<Vec<_>>(), 3, Duration::from_secs(60)).await?;
    let t = Instant::now();
    pods.push(b.start(&ns, "join", "15s")?);
    settled(&b.client, &pods.iter().collect::<Vec<_>>(), 4, Duration::from_secs(60)).await?;
    Ok(t.elapsed().as_secs_f64())
}

/// (new leader, settled) after the leader is SIGKILLed or SIGTERMed.
async fn failover(b: &mut Bench, session: &str, kill: bool) -> anyhow::Result<(f64, f64)> {
    let ns = b.namespace();
    let mut pods = b.start_many(&ns, "failover", 3, session)?;
    let leader = settled(&b.client, &pods.iter().collect::<Vec<_>>(), 3, Duration::from_secs(60)).await?;
    let mut old = pods.remove(leader);
    let t = Instant::now();
    if kill {
        old.kill();
    } else {
        old.signal(Signal::SIGTERM);
    }
    let refs: Vec<&Pod> = pods.iter().collect();
    leader_among(&refs, Duration::from_secs(60)).await?;
    let new_leader = t.elapsed().as_secs_f64();
    settled(&b.client, &refs, 2, Duration::from_secs(60)).await?;
    let done = t.elapsed().as_secs_f64();
    drop(old);
    Ok((new_leader, done))
}

fn proc_status(pid: u32, key: &str) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of every thread of `pid`, in nanoseconds (`/proc/<pid>/task/*/schedstat`): exact,
/// where `/proc/<pid>/stat` counts 10 ms ticks and cannot resolve an idle pod.
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for t in tasks.flatten() {
        let s = fs::read_to_string(t.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Per idle pod: (RSS MiB, threads, CPU % over the window).
async fn idle(b: &mut Bench, window: Duration) -> anyhow::Result<Vec<(f64, f64, f64)>> {
    let ns = b.namespace();
    let pods = b.start_many(&ns, "idle", 3, "15s")?;
    settled(&b.client, &pods.iter().collect::<Vec<_>>(), 3, Duration::from_secs(60)).await?;
    let before: Vec<u64> = pods.iter().map(|p| cpu_ns(p.pid()).unwrap_or(0)).collect();
    tokio::time::sleep(window).await;
    Ok(pods
        .iter()
        .zip(before)
        .map(|(p, b)| {
            let rss = proc_status(p.pid(), "VmRSS:").unwrap_or(0.0) / 1024.0;
            let threads = proc_status(p.pid(), "Threads:").unwrap_or(0.0);
            let used = cpu_ns(p.pid()).unwrap_or(b).saturating_sub(b) as f64 / 1e9;
            (rss, threads, 100.0 * used / window.as_secs_f64())
        })
        .collect())
}

/// /info with keep-alive from `clients` concurrent connections for `window`: (req/s, p50 ms, p99 ms).
async fn info_throughput(b: &mut Bench, clients: usize, window: Duration) -> anyhow::Result<(f64, f64, f64)> {
    let ns = b.namespace();
    let pods = b.start_many(&ns, "info", 1, "15s")?;
    settled(&b.client, &pods.iter().collect::<Vec<_>>(), 1, Duration::from_secs(60)).await?;
    let url = format!("http://{}/info", pods[0].address());
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = http.get(&url).send().await;
                // A failed request would flatter the numbers: stop the run instead.
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    other => return Err(format!("/info failed: {other:?}")),
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?.map_err(anyhow::Error::msg)?);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| all[((all.len() as f64 - 1.0) * q) as usize];
    Ok((all.len() as f64 / window.as_secs_f64(), pct(0.5), pct(0.99)))
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, Vec<f64>, String, String, String)>,
}

impl Table {
    fn add(&mut self, name: &str, values: Vec<f64>, unit: &str, target: &str, original: &str) {
        eprintln!("{name}: {values:?} {unit}");
        self.rows.push((name.into(), values, unit.into(), target.into(), original.into()));
    }

    fn markdown(&self) -> String {
        let mut s = String::from(
            "| scenario | median | min | max | runs | target | original |\n|---|---|---|---|---|---|---|\n",
        );
        for (name, v, unit, target, original) in &self.rows {
            let mut v = v.clone();
            v.sort_by(|a, b| a.total_cmp(b));
            let med = if v.is_empty() { f64::NAN } else { v[v.len() / 2] };
            let fmt = |x: f64| if x >= 100.0 { format!("{x:.0} {unit}") } else { format!("{x:.3} {unit}") };
            s.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {target} | {original} |\n",
                fmt(med),
                fmt(*v.first().unwrap_or(&f64::NAN)),
                fmt(*v.last().unwrap_or(&f64::NAN)),
                v.len()
            ));
        }
        s
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores, {mem:.1} GiB memory, commit {commit}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let o = opts()?;
    let zk = ZkServer::start()?;
    let client = settle::client(&zk.connect_string()).await?;
    let mut b = Bench { zk, client, bin: ochopod_bin()?, next_ns: 0 };
    let mut t = Table::default();
    let runs = o.runs;

    for (n, target, original) in [(3, "< 0.2 s", "6.3 s"), (10, "", "7.0 s"), (30, "< 1 s", "9.9 s")] {
        if o.quick && n == 30 {
            continue;
        }
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(formation(&mut b, n).await?);
        }
        t.add(&format!("formation, {n} pods started together (damper 0)"), v, "s", target, original);
    }
    let mut v = Vec::new();
    for _ in 0..runs {
        v.push(join(&mut b).await?);
    }
    t.add("1 pod joins a formed 3-pod cluster", v, "s", "< 0.2 s", "3.2 s");

    for (session, label) in [("15s", "default 15 s"), ("5s", "5 s")] {
        let mut new_leader = Vec::new();
        let mut done = Vec::new();
        for _ in 0..runs.min(3) {
            let (a, s) = failover(&mut b, session, true).await?;
            new_leader.push(a);
            done.push(s);
        }
        let st: f64 = session.trim_end_matches('s').parse()?;
        t.add(
            &format!("leader SIGKILLed, session {label}: new leader"),
            new_leader,
            "s",
            &format!("< {:.1} s", st + 0.5),
            if st == 5.0 { "4.9 s" } else { "" },
        );
        t.add(
            &format!("leader SIGKILLed, session {label}: settled"),
            done,
            "s",
            &format!("< {:.1} s", st + 1.0),
            if st == 5.0 { "9.7 s" } else { "" },
        );
    }
    let mut new_leader = Vec::new();
    for _ in 0..runs {
        new_leader.push(failover(&mut b, "15s", false).await?.0);
    }
    t.add("leader stopped with SIGTERM: new leader", new_leader, "s", "< 0.5 s", "");

    let window = if o.quick { Duration::from_secs(10) } else { Duration::from_secs(30) };
    let idle = idle(&mut b, window).await?;
    t.add("idle pod RSS", idle.iter().map(|x| x.0).collect(), "MiB", "< 10 MiB", "~40 MB");
    t.add("idle pod threads", idle.iter().map(|x| x.1).collect(), "", "", "8–12");
    t.add(
        &format!("idle pod CPU over {} s", window.as_secs()),
        idle.iter().map(|x| x.2).collect(),
        "%",
        "< 0.05 %",
        "~0.2 %",
    );

    let mut rps = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for _ in 0..runs.min(3) {
        let (r, a, c) = info_throughput(&mut b, 4, Duration::from_secs(5)).await?;
        rps.push(r);
        p50.push(a);
        p99.push(c);
    }
    t.add("/info, 4 keep-alive clients (client on the same 2 cores)", rps, "req/s", "≥ 20000 req/s", "~860 req/s");
    t.add("/info latency p50", p50, "ms", "", "1.2 ms");
    t.add("/info latency p99", p99, "ms", "< 5 ms", "");

    let mut scale_notes = BTreeMap::new();
    if o.scale {
        scale_notes = scale(&mut b).await?;
    }

    let mut md = format!(
        "# ochopod benchmarks\n\nMachine: {}. Release build, one real ZooKeeper 3.8 (standalone, loopback), pods are \
         real `ochopod` processes supervising `sleep`. Times are from spawning the pods to every pod's `/info` \
         saying `running` with one `leader` and every pod configured with the full membership. The original's \
         numbers are from DESIGN.md §8 (same machine size).\n\n",
        machine()
    );
    md.push_str(&t.markdown());
    if !scale_notes.is_empty() {
        md.push_str("\n## Scale\n\n| scenario | result |\n|---|---|\n");
        for (k, v) in scale_notes {
            md.push_str(&format!("| {k} | {v} |\n"));
        }
    }
    if let Some(dir) = o.out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&o.out, &md)?;
    println!("{md}");
    Ok(())
}

fn total_rss_mib(pods: &[Pod]) -> f64 {
    pods.iter().map(|p| proc_status(p.pid(), "VmRSS:").unwrap_or(0.0)).sum::<f64>() / 1024.0
}

async fn scale(b: &mut Bench) -> anyhow::Result<BTreeMap<String, String>> {
    let mut notes = BTreeMap::new();
    let ns = b.namespace();
    let t = Instant::now();
    let pods = b.start_many(&ns, "big", 200, "30s")?;
    settled(&b.client, &pods.iter().collect::<Vec<_>>(), 200, Duration::from_secs(600)).await?;
    notes.insert(
        "1 cluster of 200 pods".to_string(),
        format!("settled in {:.2} s; ochopod RSS total {:.0} MiB", t.elapsed().as_secs_f64(), total_rss_mib(&pods)),
    );
    drop(pods);
    let ns = b.namespace();
    let t = Instant::now();
    let mut clusters = Vec::new();
    for c in 0..50 {
        clusters.push(b.start_many(&ns, &format!("c{c}"), 10, "30s")?);
    }
    for pods in &clusters {
        settled(&b.client, &pods.iter().collect::<Vec<_>>(), 10, Duration::from_secs(600)).await?;
    }
    let all: Vec<Pod> = clusters.into_iter().flatten().collect();
    notes.insert(
        "50 clusters of 10 pods".to_string(),
        format!("settled in {:.2} s; ochopod RSS total {:.0} MiB", t.elapsed().as_secs_f64(), total_rss_mib(&all)),
    );
    Ok(notes)
}
