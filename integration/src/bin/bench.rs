//! `ochopod-bench` (`make bench`): the scenarios of DESIGN.md §8, each with the events §8
//! defines, measured against a real ZooKeeper with real release-built pods, plus the scale
//! scenarios. Median / min / max go to a markdown table (default `bench/results.md`) stamped with
//! the machine, the commit and the load; the original's column is copied from DESIGN.md §8.
//!
//! Every target of the table is a regression check: a missed one is flagged in the table and
//! the bench exits 1 after writing it (unless `--no-check`).
//!
//! Whatever follows the line [`KEEP_MARKER`] in the existing output file (the hand-written
//! footprint findings) is kept below the new table.
//!
//! Usage: ochopod-bench [--out FILE] [--runs N] [--quick] [--no-scale] [--no-check] [--bin FILE]
//!   --quick     2 runs, 10 s idle window, no 30-pod formation, no scale (a smoke run)
//!   --no-scale  skip one cluster of 200 pods and 50 clusters of 10 pods
//!   --no-check  exit 0 even when a target is missed (the table still flags it)
//!   --bin FILE  the `ochopod` binary to run (default: the one next to this bench), to compare builds
//!   --only LIST only these sections, comma-separated: formation, join, failover, registered, etcd,
//!               idle, info, scale (to compare builds on one measure); `etcd` is formation (3, 10),
//!               join and failover again on a real etcd, beside ZooKeeper's rows

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::join_all;
use nix::sys::signal::Signal;
use ochopod_core::paths;
use ochopod_integration::etcd::Backend;
use ochopod_integration::pods::{descendants, ochopod_bin, Pod};
use ochopod_integration::settle::{self, Settled};
use ochopod_integration::stamp;

/// Everything after this line in the output file is kept as it is.
const KEEP_MARKER: &str = "<!-- everything below is kept by ochopod-bench -->";

struct Opts {
    out: PathBuf,
    runs: usize,
    quick: bool,
    scale: bool,
    check: bool,
    bin: Option<PathBuf>,
    only: Option<Vec<String>>,
}

impl Opts {
    fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|s| s == section))
    }
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        out: PathBuf::from("bench/results.md"),
        runs: 5,
        quick: false,
        scale: true,
        check: true,
        bin: None,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => o.out = args.next().context("--out needs a file")?.into(),
            "--runs" => o.runs = args.next().context("--runs needs a number")?.parse()?,
            "--quick" => o.quick = true,
            "--no-scale" => o.scale = false,
            "--no-check" => o.check = false,
            "--only" => {
                o.only = Some(args.next().context("--only needs a list")?.split(',').map(String::from).collect())
            }
            "--bin" => o.bin = Some(args.next().context("--bin needs a file")?.into()),
            // Scale is part of every full run now; accepted for old command lines.
            "--scale" => {}
            other => bail!("unknown argument {other:?} (see the doc comment of integration/src/bin/bench.rs)"),
        }
    }
    if o.quick {
        o.runs = o.runs.min(2);
        o.scale = false;
    }
    Ok(o)
}

/// A bench pod as DESIGN.md §8 runs them: `sleep 3600`, damper 0, no sanity check or probe.
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

/// DESIGN.md §8's session for every timed scenario.
const SESSION: &str = "5s";
/// ochopod's default session timeout (`zk_session_timeout` left out of a declaration).
const DEFAULT_SESSION: &str = "15s";

struct Bench {
    /// ZooKeeper or etcd, with a client that reads `pods/`, `snapshot` and `hash`, connected
    /// before any timing starts.
    backend: Backend,
    bin: PathBuf,
    next_ns: std::cell::Cell<usize>,
}

impl Bench {
    fn namespace(&self) -> String {
        self.next_ns.set(self.next_ns.get() + 1);
        format!("bench{}", self.next_ns.get())
    }

    fn start(&self, ns: &str, cluster: &str, session: &str) -> anyhow::Result<Pod> {
        Pod::start(self.backend.pod_spec(&self.bin, &yaml(ns, cluster, session)))
    }

    /// The ZooKeeper client, for the scenarios measured on ZooKeeper only.
    fn zk(&self) -> anyhow::Result<&zookeeper_client::Client> {
        match &self.backend {
            Backend::ZooKeeper { client, .. } => Ok(client),
            Backend::Etcd { .. } => bail!("this scenario runs on ZooKeeper only"),
        }
    }

    /// The store's process, whose CPU the scale scenarios report.
    fn store_pid(&self) -> u32 {
        match &self.backend {
            Backend::ZooKeeper { server, .. } => server.pid().unwrap_or(0),
            Backend::Etcd { cluster, .. } => cluster.pid(0).unwrap_or(0),
        }
    }

    /// Spawned back to back; each pod with the instant it was spawned.
    fn start_many(&self, ns: &str, cluster: &str, n: usize, session: &str) -> anyhow::Result<Vec<(Pod, Instant)>> {
        (0..n).map(|_| Ok((self.start(ns, cluster, session)?, Instant::now()))).collect()
    }
}

/// Stops pods all at once (SIGTERM to every one, then each is collected), as a platform would:
/// a cluster of 200 stopped one by one would take minutes of bench time.
fn stop_all(pods: Vec<Pod>) {
    for p in &pods {
        p.signal(Signal::SIGTERM);
    }
    drop(pods);
}

/// How often a cluster of `n` is looked at: every ~50 ms like DESIGN.md §8 for big clusters,
/// finer for small ones (a look at 3 pods costs little and resolves 10 ms).
fn poll_every(n: usize) -> Duration {
    Duration::from_millis((n as u64).clamp(10, 50))
}

/// Every pod's `/info` at once: whether all say `process: running`.
async fn all_running(pods: &[&Pod]) -> bool {
    let replies = join_all(pods.iter().map(|p| p.info())).await;
    replies.iter().all(|r| r.as_ref().is_ok_and(|i| i.process == "running"))
}

/// Waits, looking every [`poll_every`], until the pods are settled with `size` (the harness's
/// one definition, DESIGN.md §8) and `accept` agrees; returns (all running, settled) as
/// durations since `t0`.
async fn observe(
    b: &Bench,
    pods: &[&Pod],
    size: usize,
    t0: Instant,
    timeout: Duration,
    accept: impl Fn(&Settled) -> bool,
) -> anyhow::Result<(f64, f64, Settled)> {
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    let http = pods[0].client();
    let every = poll_every(pods.len());
    let mut running = None;
    loop {
        if running.is_none() && all_running(pods).await {
            running = Some(t0.elapsed().as_secs_f64());
        }
        let last = if running.is_some() {
            match settle::settled_on(http, &b.backend.store(), &addresses, size).await {
                Ok(s) if accept(&s) => {
                    let done = t0.elapsed().as_secs_f64();
                    return Ok((running.unwrap_or(done), done, s));
                }
                Ok(s) => format!("settled, not as wanted (hash {})", s.hash),
                Err(e) => e,
            }
        } else {
            "not all running".to_string()
        };
        if t0.elapsed() > timeout {
            bail!("{} pods did not settle at size {size} within {timeout:?}: {last}", pods.len());
        }
        tokio::time::sleep(every).await;
    }
}

async fn settled(b: &Bench, pods: &[&Pod], size: usize) -> anyhow::Result<Settled> {
    Ok(observe(b, pods, size, Instant::now(), Duration::from_secs(120), |_| true).await?.2)
}

/// (all running, settled) for `n` pods spawned together.
async fn formation(b: &Bench, n: usize) -> anyhow::Result<(f64, f64)> {
    let ns = b.namespace();
    let t0 = Instant::now();
    let pods: Vec<Pod> = b.start_many(&ns, "form", n, SESSION)?.into_iter().map(|(p, _)| p).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let (running, done, _) = observe(b, &refs, n, t0, Duration::from_secs(120), |_| true).await?;
    stop_all(pods);
    Ok((running, done))
}

/// (running, settled(4)) for one pod joining a settled cluster of 3.
async fn join(b: &Bench) -> anyhow::Result<(f64, f64)> {
    let ns = b.namespace();
    let mut pods: Vec<Pod> = b.start_many(&ns, "join", 3, SESSION)?.into_iter().map(|(p, _)| p).collect();
    settled(b, &pods.iter().collect::<Vec<_>>(), 3).await?;
    let t0 = Instant::now();
    pods.push(b.start(&ns, "join", SESSION)?);
    let newcomer = [pods.last().context("no pod")?];
    let every = poll_every(1);
    let running = loop {
        if all_running(&newcomer).await {
            break t0.elapsed().as_secs_f64();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the joining pod never ran its process");
        }
        tokio::time::sleep(every).await;
    };
    let (_, done, _) = observe(b, &pods.iter().collect::<Vec<_>>(), 4, t0, Duration::from_secs(60), |_| true).await?;
    stop_all(pods);
    Ok((running, done))
}

/// (new leader, settled(2) with a new hash) after the leader of a settled 3-pod cluster gets
/// SIGKILL (`kill`) or SIGTERM.
async fn failover(b: &Bench, kill: bool) -> anyhow::Result<(f64, f64)> {
    let ns = b.namespace();
    let mut pods: Vec<Pod> = b.start_many(&ns, "failover", 3, SESSION)?.into_iter().map(|(p, _)| p).collect();
    let before = settled(b, &pods.iter().collect::<Vec<_>>(), 3).await?;
    let mut old = pods.remove(before.leader);
    let t0 = Instant::now();
    if kill {
        old.kill();
    } else {
        old.signal(Signal::SIGTERM);
    }
    let refs: Vec<&Pod> = pods.iter().collect();
    let new_leader = loop {
        let replies = join_all(refs.iter().map(|p| p.info())).await;
        if replies.iter().any(|r| r.as_ref().is_ok_and(|i| i.state.starts_with("leader"))) {
            break t0.elapsed().as_secs_f64();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("no new leader within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let old_hash = before.hash.clone();
    let (_, done, _) = observe(b, &refs, 2, t0, Duration::from_secs(60), |s| s.hash != old_hash).await?;
    drop(old);
    stop_all(pods);
    Ok((new_leader, done))
}

/// `n` pods spawned together: per pod, from its spawn to its znode under `pods/` with a
/// non-empty payload (matched to the pod by the control port the payload carries). Returns
/// (median pod, slowest pod).
async fn registered(b: &Bench, n: usize) -> anyhow::Result<(f64, f64)> {
    let zk = b.zk()?;
    let ns = b.namespace();
    let pods_dir = paths::pods_dir(&paths::cluster_prefix(&ns, "reg"));
    let started = b.start_many(&ns, "reg", n, SESSION)?;
    let by_port: BTreeMap<u16, Instant> = started.iter().map(|(p, t)| (p.control_port, *t)).collect();
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < n {
        if Instant::now() > deadline {
            bail!("{} of {n} pods registered within 60 s", seen.len());
        }
        let children = zk.list_children(&pods_dir).await.unwrap_or_default();
        for child in children {
            if seen.contains_key(&child) {
                continue;
            }
            let Ok((data, _)) = zk.get_data(&format!("{pods_dir}/{child}")).await else { continue };
            let at = Instant::now();
            if data.is_empty() {
                continue;
            }
            let payload: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
            let port = payload["ports"]["8080"].as_u64().unwrap_or(0) as u16;
            let spawned = by_port.get(&port).with_context(|| format!("{child}: no pod with control port {port}"))?;
            seen.insert(child, at.duration_since(*spawned).as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_all(started.into_iter().map(|(p, _)| p).collect());
    let mut v: Vec<f64> = seen.into_values().collect();
    v.sort_by(f64::total_cmp);
    Ok((v[v.len() / 2], v[v.len() - 1]))
}

// ---------------------------------------------------------------------------------------------
// /proc

fn proc_status(pid: u32, key: &str) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// (PSS, private = USS) in KiB from `/proc/<pid>/smaps_rollup`.
fn pss_private(pid: u32) -> (f64, f64) {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field("Pss:"), field("Private_Clean:") + field("Private_Dirty:"))
}

/// CPU time of each live thread of `pid`, in nanoseconds (`/proc/<pid>/task/*/schedstat`):
/// exact, where `/proc/<pid>/stat` counts 10 ms ticks and cannot resolve an idle pod.
type ThreadCpu = BTreeMap<String, u64>;

fn thread_cpu(pid: u32) -> ThreadCpu {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return ThreadCpu::new() };
    tasks
        .flatten()
        .filter_map(|t| {
            let ns = fs::read_to_string(t.path().join("schedstat")).ok()?.split_whitespace().next()?.parse().ok()?;
            Some((t.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect()
}

/// CPU used since `before` by the threads alive now (a thread that started meanwhile counts
/// whole; one that ended meanwhile is lost, which an idle pod's rare, short-lived blocking
/// threads make negligible), in seconds.
fn cpu_since(pid: u32, before: &ThreadCpu) -> f64 {
    let now = thread_cpu(pid);
    now.iter().map(|(tid, ns)| ns.saturating_sub(*before.get(tid).unwrap_or(&0))).sum::<u64>() as f64 / 1e9
}

/// utime + stime of `pid` in seconds (`/proc/<pid>/stat`, 10 ms ticks): counts the threads
/// that already ended too, for processes that did much more than idle.
fn cpu_total(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(12) + ticks(13)) / 100.0
}

/// The pod's keeper (`ochopod __ochopod-keeper`), if it has one.
fn keeper_of(pod: &Pod) -> Option<u32> {
    descendants(pod.pid()).into_iter().find(|pid| {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"__ochopod-keeper"))
    })
}

/// One idle process: what /proc says at the end of the window.
#[derive(Clone, Copy, Default)]
struct Footprint {
    rss_mib: f64,
    pss_mib: f64,
    private_mib: f64,
    threads: f64,
    cpu_pct: f64,
}

fn footprint(pid: u32, cpu_before: &ThreadCpu, window: Duration) -> Footprint {
    let (pss, private) = pss_private(pid);
    Footprint {
        rss_mib: proc_status(pid, "VmRSS:").unwrap_or(0.0) / 1024.0,
        pss_mib: pss / 1024.0,
        private_mib: private / 1024.0,
        threads: proc_status(pid, "Threads:").unwrap_or(0.0),
        cpu_pct: 100.0 * cpu_since(pid, cpu_before) / window.as_secs_f64(),
    }
}

/// Idle pods by role, one entry per pod: (session, role) → footprints, and the keepers.
struct Idle {
    pods: BTreeMap<(&'static str, &'static str), Vec<Footprint>>,
    keepers: Vec<Footprint>,
}

/// `clusters` settled 3-pod clusters per session setting (default and 5 s), nothing polling
/// them, all idle in the same `window`.
async fn idle(b: &Bench, clusters: usize, window: Duration) -> anyhow::Result<Idle> {
    let mut all = Vec::new();
    for (session, label) in [(DEFAULT_SESSION, "default 15 s"), (SESSION, "5 s")] {
        for _ in 0..clusters {
            let ns = b.namespace();
            let pods: Vec<Pod> = b.start_many(&ns, "idle", 3, session)?.into_iter().map(|(p, _)| p).collect();
            let s = settled(b, &pods.iter().collect::<Vec<_>>(), 3).await?;
            all.push((label, s.leader, pods));
        }
    }
    // The last settled check is a burst of requests: let every pod finish answering it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<Vec<(ThreadCpu, ThreadCpu)>> = all
        .iter()
        .map(|(_, _, pods)| {
            pods.iter().map(|p| (thread_cpu(p.pid()), keeper_of(p).map(thread_cpu).unwrap_or_default())).collect()
        })
        .collect();
    tokio::time::sleep(window).await;
    let mut out = Idle { pods: BTreeMap::new(), keepers: Vec::new() };
    for ((label, leader, pods), before) in all.iter().zip(before) {
        for (n, (p, (cpu, keeper_cpu))) in pods.iter().zip(before).enumerate() {
            let role = if n == *leader { "leader" } else { "follower" };
            out.pods.entry((label, role)).or_default().push(footprint(p.pid(), &cpu, window));
            if let Some(k) = keeper_of(p) {
                out.keepers.push(footprint(k, &keeper_cpu, window));
            }
        }
    }
    for (_, _, pods) in all {
        stop_all(pods);
    }
    Ok(out)
}

/// `/info` with keep-alive from `clients` concurrent connections for `window`:
/// (req/s, p50 ms, p99 ms). The client is a minimal HTTP/1.1 one over a plain socket, like wrk
/// (which DESIGN.md §8 used): it sends the request, reads the headers and `Content-Length`
/// bytes of body, and checks the status, so the client's own CPU (on the same 2 cores) takes
/// as little as it can from the pod's.
async fn info_load(b: &Bench, clients: usize, window: Duration) -> anyhow::Result<(f64, f64, f64)> {
    let ns = b.namespace();
    let pods: Vec<Pod> = b.start_many(&ns, "info", 1, SESSION)?.into_iter().map(|(p, _)| p).collect();
    settled(b, &pods.iter().collect::<Vec<_>>(), 1).await?;
    let address = pods[0].address();
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let address = address.clone();
        tasks.push(tokio::spawn(async move { keep_alive_client(&address, deadline).await }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    stop_all(pods);
    all.sort_by(f64::total_cmp);
    let pct = |q: f64| all[((all.len() as f64 - 1.0) * q) as usize];
    Ok((all.len() as f64 / window.as_secs_f64(), pct(0.5), pct(0.99)))
}

/// One keep-alive connection sending `GET /info` back to back until `deadline`: each request's
/// latency in ms. A failed request or a status other than 200 fails the run (it would flatter
/// the numbers).
async fn keep_alive_client(address: &str, deadline: Instant) -> anyhow::Result<Vec<f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(address).await?;
    conn.set_nodelay(true)?;
    let request = format!("GET /info HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut lat = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        conn.write_all(request.as_bytes()).await?;
        buf.clear();
        let (head_len, body_len) = loop {
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                bail!("/info: connection closed");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 200") {
                    bail!("/info: {}", head.lines().next().unwrap_or(""));
                }
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .context("/info: no content-length")?;
                break (end + 4, len);
            }
        };
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                bail!("/info: connection closed mid-body");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(lat)
}

/// One sequential keep-alive Python client (`http.client`), as DESIGN.md §8 measured both
/// sides with: (req/s, p50 ms, p99 ms), or why it could not run.
async fn info_python(b: &Bench, window: Duration) -> anyhow::Result<Result<(f64, f64, f64), String>> {
    const SCRIPT: &str = r#"
import http.client, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = http.client.HTTPConnection(host, port)
lat = []
end = time.perf_counter() + secs
while time.perf_counter() < end:
    t = time.perf_counter()
    c.request("GET", "/info")
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("status %d" % r.status)
    lat.append((time.perf_counter() - t) * 1000)
lat.sort()
print(len(lat) / secs, lat[len(lat) // 2], lat[int((len(lat) - 1) * 0.99)])
"#;
    let ns = b.namespace();
    let pods: Vec<Pod> = b.start_many(&ns, "info", 1, SESSION)?.into_iter().map(|(p, _)| p).collect();
    settled(b, &pods.iter().collect::<Vec<_>>(), 1).await?;
    let port = pods[0].control_port.to_string();
    let secs = window.as_secs_f64().to_string();
    let out = tokio::process::Command::new("python3").args(["-c", SCRIPT, "127.0.0.1", &port, &secs]).output().await;
    stop_all(pods);
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => return Ok(Err(format!("python3 failed: {}", String::from_utf8_lossy(&o.stderr).trim()))),
        Err(e) => return Ok(Err(format!("python3 not runnable: {e}"))),
    };
    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match v[..] {
        [rps, p50, p99] => Ok(Ok((rps, p50, p99))),
        _ => Ok(Err(format!("unexpected output {:?}", String::from_utf8_lossy(&out.stdout)))),
    }
}

// ---------------------------------------------------------------------------------------------
// Scale

struct ScaleRun {
    /// When the last pod was spawned (the harness's share of the launch).
    spawned: f64,
    running: f64,
    settled: f64,
    rss_mib: f64,
    pss_mib: f64,
    keeper_private_mib: f64,
    /// CPU seconds from launch to settled: the pods (ochopod), their keepers, ZooKeeper, the bench.
    cpu: [f64; 4],
    /// CPU seconds of the busiest pod (a leader's rounds) and of the median pod.
    cpu_busiest: f64,
    cpu_median: f64,
    /// The rounds each cluster's leader ran during the launch, from its log, the cluster with
    /// the most rounds first.
    rounds: Vec<Vec<Round>>,
}

/// A round as the leader logged it: its pods, when it started (seconds from the first spawn)
/// and how long it took.
#[derive(Clone, Copy, Debug)]
struct Round {
    pods: usize,
    start: f64,
    took: f64,
}

/// Seconds since midnight UTC of a log line's timestamp (`2026-12-01T18:25:19.703902Z …`).
fn log_time(line: &str) -> Option<f64> {
    let clock = line.split_whitespace().next()?.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let (h, m, s): (f64, f64, f64) =
        (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The rounds a pod led, from its log (`configuring … pods=N`, then `configuration complete …
/// ms=N`); `day0` is the first spawn in seconds since midnight UTC.
fn rounds_led(pod: &Pod, day0: f64) -> Vec<Round> {
    let field = |line: &str, name: &str| -> Option<f64> {
        line.split_whitespace().find_map(|w| w.strip_prefix(name)?.parse().ok())
    };
    let mut rounds: Vec<Round> = Vec::new();
    for line in pod.log().lines() {
        if line.contains(" configuring ") {
            let start = log_time(line).map_or(f64::NAN, |t| (t - day0).rem_euclid(86_400.0));
            rounds.push(Round { pods: field(line, "pods=").unwrap_or(0.0) as usize, start, took: f64::NAN });
        } else if line.contains("configuration complete") {
            if let (Some(last), Some(ms)) = (rounds.last_mut(), field(line, "ms=")) {
                last.took = ms / 1000.0;
            }
        }
    }
    rounds
}

/// `clusters` clusters of `size` pods, all spawned back to back; settled when every cluster is.
async fn scale(b: &Bench, clusters: usize, size: usize) -> anyhow::Result<ScaleRun> {
    let zk_pid = b.store_pid();
    let (zk0, own0) = (cpu_total(zk_pid), cpu_total(std::process::id()));
    let ns = b.namespace();
    let t0 = Instant::now();
    let day0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64() % 86_400.0;
    let mut groups = Vec::new();
    for c in 0..clusters {
        let pods = b.start_many(&ns, &format!("c{c}"), size, DEFAULT_SESSION)?;
        groups.push(pods.into_iter().map(|(p, _)| p).collect::<Vec<Pod>>());
    }
    let spawned = t0.elapsed().as_secs_f64();
    let results = join_all(groups.iter().map(|pods| async move {
        let refs: Vec<&Pod> = pods.iter().collect();
        observe(b, &refs, size, t0, Duration::from_secs(600), |_| true).await
    }))
    .await;
    let mut running: f64 = 0.0;
    let mut done: f64 = 0.0;
    for r in results {
        let (a, s, _) = r?;
        running = running.max(a);
        done = done.max(s);
    }
    let (zk1, own1) = (cpu_total(zk_pid), cpu_total(std::process::id()));
    let mut rounds: Vec<Vec<Round>> = groups
        .iter()
        .map(|pods| pods.iter().map(|p| rounds_led(p, day0)).max_by_key(Vec::len).unwrap_or_default())
        .collect();
    rounds.sort_by_key(|r| std::cmp::Reverse(r.len()));
    let all: Vec<Pod> = groups.into_iter().flatten().collect();
    let keepers: Vec<u32> = all.iter().filter_map(keeper_of).collect();
    let mut per_pod: Vec<f64> = all.iter().map(|p| cpu_total(p.pid())).collect();
    per_pod.sort_by(f64::total_cmp);
    let sum = |f: &dyn Fn(u32) -> f64, pids: &mut dyn Iterator<Item = u32>| pids.map(f).sum::<f64>();
    let run = ScaleRun {
        spawned,
        running,
        settled: done,
        rss_mib: sum(&|p| proc_status(p, "VmRSS:").unwrap_or(0.0), &mut all.iter().map(Pod::pid)) / 1024.0,
        pss_mib: sum(&|p| pss_private(p).0, &mut all.iter().map(Pod::pid)) / 1024.0,
        keeper_private_mib: sum(&|p| pss_private(p).1, &mut keepers.iter().copied()) / 1024.0,
        cpu: [per_pod.iter().sum(), keepers.iter().map(|k| cpu_total(*k)).sum(), zk1 - zk0, own1 - own0],
        cpu_busiest: per_pod.last().copied().unwrap_or(0.0),
        cpu_median: per_pod.get(per_pod.len() / 2).copied().unwrap_or(0.0),
        rounds,
    };
    stop_all(all);
    Ok(run)
}

/// One cluster: each round's pods, start and duration; several: the most and the median number
/// of rounds.
fn rounds_cell(rounds: &[Vec<Round>]) -> String {
    match rounds {
        [] => String::new(),
        [one] => {
            let each: Vec<String> =
                one.iter().map(|r| format!("{} at {:.2} s, {:.2} s", r.pods, r.start, r.took)).collect();
            format!("{}: {}", one.len(), each.join("; "))
        }
        many => format!("at most {}, median {} per cluster", many[0].len(), many[many.len() / 2].len()),
    }
}

// ---------------------------------------------------------------------------------------------
// The table

/// Whether a row's values meet its target.
type Check = Box<dyn Fn(&[f64]) -> bool>;

/// A target: its text, and whether the values meet it.
struct Target {
    text: String,
    met: Check,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// The median and the largest value at most `limit`.
fn at_most(limit: f64, unit: &str) -> Option<Target> {
    Some(Target { text: format!("≤ {limit} {unit} (median and max)"), met: Box::new(move |v| max(v) <= limit) })
}

fn median_at_most(limit: f64, unit: &str) -> Option<Target> {
    Some(Target { text: format!("≤ {limit} {unit} (median)"), met: Box::new(move |v| median(v) <= limit) })
}

fn median_below(limit: f64, unit: &str) -> Option<Target> {
    Some(Target { text: format!("< {limit} {unit} (median)"), met: Box::new(move |v| median(v) < limit) })
}

fn median_at_least(limit: f64, unit: &str) -> Option<Target> {
    Some(Target { text: format!("≥ {limit} {unit} (median)"), met: Box::new(move |v| median(v) >= limit) })
}

struct Row {
    name: String,
    values: Vec<f64>,
    unit: &'static str,
    target: Option<Target>,
    original: String,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn add(&mut self, name: &str, values: Vec<f64>, unit: &'static str, target: Option<Target>, original: &str) {
        eprintln!("{name}: {values:?} {unit}");
        self.rows.push(Row { name: name.into(), values, unit, target, original: original.into() });
    }

    fn missed(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.target.as_ref().is_some_and(|t| !(t.met)(&r.values))).collect()
    }

    fn markdown(&self) -> String {
        let mut s = String::from(
            "| scenario | median | min | max | runs | target | original (DESIGN.md §8) |\n|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let mut v = r.values.clone();
            v.sort_by(f64::total_cmp);
            let unit = r.unit;
            let fmt = |x: f64| {
                if x.is_nan() {
                    "—".to_string()
                } else if unit.is_empty() {
                    format!("{x:.0}")
                } else if x >= 100.0 {
                    format!("{x:.0} {unit}")
                } else if x < 0.1 && unit == "%" {
                    format!("{x:.4} {unit}")
                } else {
                    format!("{x:.3} {unit}")
                }
            };
            let target = match &r.target {
                None => String::new(),
                Some(t) if (t.met)(&r.values) => format!("{} ✓", t.text),
                Some(t) => format!("{} **✗ missed**", t.text),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {target} | {} |\n",
                r.name,
                fmt(median(&r.values)),
                fmt(*v.first().unwrap_or(&f64::NAN)),
                fmt(*v.last().unwrap_or(&f64::NAN)),
                v.len(),
                r.original
            ));
        }
        s
    }
}

/// Runs `f` `runs` times, collecting each result.
async fn repeat<T, F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        v.push(f().await?);
    }
    Ok(v)
}

fn firsts(v: &[(f64, f64)]) -> Vec<f64> {
    v.iter().map(|x| x.0).collect()
}

fn seconds(v: &[(f64, f64)]) -> Vec<f64> {
    v.iter().map(|x| x.1).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let o = opts()?;
    let began = Instant::now();
    let load_before = stamp::load();
    let bin = match &o.bin {
        Some(bin) => bin.clone(),
        None => ochopod_bin()?,
    };
    let b = Bench { backend: Backend::zookeeper().await?, bin: bin.clone(), next_ns: Default::default() };
    let mut t = Table::default();
    let runs = o.runs;

    // Formation: all running, then settled (DESIGN.md §8's two events).
    let originals = [(3, "4.38 s / 6.45 s"), (10, "9.94 s / 12.66 s"), (30, "13.69 s / 16.20 s")];
    for (n, original) in originals {
        if (o.quick && n == 30) || !o.wants("formation") {
            continue;
        }
        let v = repeat(runs, || formation(&b, n)).await?;
        let (running, settled) = original.split_once(" / ").unwrap_or((original, ""));
        t.add(&format!("{n} pods spawned together: all running"), firsts(&v), "s", None, running);
        let target = match n {
            3 => median_below(0.2, "s"),
            30 => median_below(1.0, "s"),
            _ => None,
        };
        t.add(&format!("{n} pods spawned together: settled"), seconds(&v), "s", target, settled);
    }

    if o.wants("join") {
        let v = repeat(runs, || join(&b)).await?;
        t.add("1 pod joins a settled 3-pod cluster: running", firsts(&v), "s", None, "2.51 s");
        t.add("1 pod joins a settled 3-pod cluster: settled(4)", seconds(&v), "s", median_below(0.2, "s"), "5.36 s");
    }

    if o.wants("failover") {
        let v = repeat(runs.min(3), || failover(&b, true)).await?;
        t.add("leader SIGKILL (5 s session): new leader", firsts(&v), "s", median_below(5.5, "s"), "6.16 s");
        t.add(
            "leader SIGKILL (5 s session): settled(2), new hash",
            seconds(&v),
            "s",
            median_below(6.0, "s"),
            "11.16 s",
        );
        let v = repeat(runs, || failover(&b, false)).await?;
        t.add("leader SIGTERM: new leader", firsts(&v), "s", median_below(0.5, "s"), "4.98 s");
        t.add("leader SIGTERM: settled(2), new hash", seconds(&v), "s", median_below(0.5, "s"), "9.96 s");
    }

    let reg_originals = [(3, "0.60 s"), (10, "3.76 s"), (30, "6.88 s")];
    for (n, original) in reg_originals {
        if (o.quick && n == 30) || !o.wants("registered") {
            continue;
        }
        let v = repeat(runs, || registered(&b, n)).await?;
        t.add(&format!("registered, {n} pods spawned together: median pod"), firsts(&v), "s", None, "");
        t.add(&format!("registered, {n} pods spawned together: slowest pod"), seconds(&v), "s", None, original);
    }

    // The same formation, join and failover on etcd (issue 18): one member on loopback, the
    // pods' lease as long as the ZooKeeper session (5 s), settled by the same definition read
    // from etcd. Beside the ZooKeeper rows above; no target and no original (it has no etcd).
    if o.wants("etcd") {
        let e = Bench { backend: Backend::etcd(1).await?, bin: bin.clone(), next_ns: Default::default() };
        for n in [3, 10] {
            let v = repeat(runs, || formation(&e, n)).await?;
            t.add(&format!("etcd: {n} pods spawned together: all running"), firsts(&v), "s", None, "");
            t.add(&format!("etcd: {n} pods spawned together: settled"), seconds(&v), "s", None, "");
        }
        let v = repeat(runs, || join(&e)).await?;
        t.add("etcd: 1 pod joins a settled 3-pod cluster: settled(4)", seconds(&v), "s", None, "");
        let v = repeat(runs.min(3), || failover(&e, true)).await?;
        t.add("etcd: leader SIGKILL (5 s lease): new leader", firsts(&v), "s", None, "");
        t.add("etcd: leader SIGKILL (5 s lease): settled(2), new hash", seconds(&v), "s", None, "");
        let v = repeat(runs, || failover(&e, false)).await?;
        t.add("etcd: leader SIGTERM: new leader", firsts(&v), "s", None, "");
        t.add("etcd: leader SIGTERM: settled(2), new hash", seconds(&v), "s", None, "");
    }

    // Idle footprint.
    let window = if o.quick { Duration::from_secs(10) } else { Duration::from_secs(30) };
    if o.wants("idle") {
        let idle = idle(&b, if o.quick { 1 } else { 2 }, window).await?;
        for ((session, role), pods) in &idle.pods {
            let col = |f: fn(&Footprint) -> f64| pods.iter().map(f).collect::<Vec<f64>>();
            let original =
                |follower: &'static str, leader: &'static str| if *role == "leader" { leader } else { follower };
            let (rss_o, thr_o, cpu_o) = if *session == "5 s" {
                (original("40.4 MB", "40.8 MB"), original("8", "12"), original("0.19 %", "0.39 %"))
            } else {
                ("", "", "")
            };
            let name = format!("idle {role}, {session} session");
            t.add(&format!("{name}: ochopod RSS"), col(|f| f.rss_mib), "MiB", at_most(6.0, "MiB"), rss_o);
            t.add(&format!("{name}: ochopod PSS"), col(|f| f.pss_mib), "MiB", None, "");
            t.add(&format!("{name}: ochopod private (USS)"), col(|f| f.private_mib), "MiB", None, "");
            t.add(&format!("{name}: threads"), col(|f| f.threads), "", None, thr_o);
            let cpu_target = if *session == "5 s" { median_at_most(0.05, "%") } else { median_at_most(0.02, "%") };
            t.add(&format!("{name}: CPU over {} s", window.as_secs()), col(|f| f.cpu_pct), "%", cpu_target, cpu_o);
        }
        let k = &idle.keepers;
        let kcol = |f: fn(&Footprint) -> f64| k.iter().map(f).collect::<Vec<f64>>();
        t.add("idle pod's keeper process: RSS", kcol(|f| f.rss_mib), "MiB", None, "(none)");
        t.add("idle pod's keeper process: PSS", kcol(|f| f.pss_mib), "MiB", None, "");
        t.add("idle pod's keeper process: private (USS)", kcol(|f| f.private_mib), "MiB", None, "");
        t.add(
            &format!("idle pod's keeper process: CPU over {} s", window.as_secs()),
            kcol(|f| f.cpu_pct),
            "%",
            None,
            "",
        );
    }

    // /info.
    if o.wants("info") {
        let v = repeat(runs.min(3), || info_load(&b, 1, Duration::from_secs(5))).await?;
        t.add("/info, 1 sequential keep-alive client: req/s", v.iter().map(|x| x.0).collect(), "req/s", None, "");
        t.add("/info, 1 sequential keep-alive client: p50", v.iter().map(|x| x.1).collect(), "ms", None, "");
        t.add("/info, 1 sequential keep-alive client: p99", v.iter().map(|x| x.2).collect(), "ms", None, "");
        let python = info_python(&b, Duration::from_secs(5)).await?;
        match python {
            Ok((rps, p50, p99)) => {
                t.add("/info, 1 sequential keep-alive Python client: req/s", vec![rps], "req/s", None, "383 req/s");
                t.add("/info, 1 sequential keep-alive Python client: p50", vec![p50], "ms", None, "");
                t.add("/info, 1 sequential keep-alive Python client: p99", vec![p99], "ms", None, "");
            }
            Err(why) => eprintln!("no Python client row: {why}"),
        }
        let v = repeat(runs.min(3), || info_load(&b, 4, Duration::from_secs(5))).await?;
        t.add(
            "/info, 4 concurrent keep-alive clients (same 2 cores): req/s",
            v.iter().map(|x| x.0).collect(),
            "req/s",
            median_at_least(30000.0, "req/s"),
            "564 req/s (wrk)",
        );
        t.add(
            "/info, 4 concurrent keep-alive clients: p50",
            v.iter().map(|x| x.1).collect(),
            "ms",
            None,
            "6.6 ms (wrk)",
        );
        t.add(
            "/info, 4 concurrent keep-alive clients: p99",
            v.iter().map(|x| x.2).collect(),
            "ms",
            median_below(1.0, "ms"),
            "16.7 ms (wrk)",
        );
    }

    // Scale.
    let mut scale_md = String::new();
    if o.scale && o.wants("scale") {
        scale_md.push_str(
            "\n## Scale\n\nAll pods spawned back to back by the bench (damper 0, default 15 s session), every cluster \
             looked at every 50 ms; times from the first spawn. CPU (utime + stime) is what each party used from the first \
             spawn to settled, out of 2 cores × the wall time (other work on the machine takes the rest): it shows how much of the time is ochopod's and how much the \
             harness's (spawning, polling) and ZooKeeper's.\n\n\
             | scenario | last spawn | all running | settled | target (settled) | ochopod RSS total | target (RSS) | ochopod PSS total | keepers' private total | CPU: pods / keepers / ZooKeeper / bench | CPU of the busiest pod / the median pod | rounds before settled (pods, start, duration) |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for (clusters, size, settle_target, rss_target) in [(1, 200, 1.5, Some(1.2 * 1024.0)), (50, 10, 3.0, None)] {
            let r = scale(&b, clusters, size).await?;
            let name = if clusters == 1 {
                format!("1 cluster of {size} pods")
            } else {
                format!("{clusters} clusters of {size} pods")
            };
            t.add(&format!("{name}: settled"), vec![r.settled], "s", median_at_most(settle_target, "s"), "");
            if let Some(limit) = rss_target {
                t.add(&format!("{name}: ochopod RSS total"), vec![r.rss_mib], "MiB", median_at_most(limit, "MiB"), "");
            }
            // The scale rows stay in the main table for the check; details below.
            let settle_ok = r.settled <= settle_target;
            let rss_cell = rss_target.map_or(String::new(), |l| {
                format!("≤ {:.1} GiB {}", l / 1024.0, if r.rss_mib <= l { "✓" } else { "**✗ missed**" })
            });
            scale_md.push_str(&format!(
                "| {name} | {:.2} s | {:.2} s | {:.2} s | ≤ {settle_target} s {} | {:.0} MiB | {rss_cell} | {:.0} MiB | {:.0} MiB | {:.1} / {:.1} / {:.1} / {:.1} s of {:.1} s | {:.2} s / {:.3} s | {} |\n",
                r.spawned,
                r.running,
                r.settled,
                if settle_ok { "✓" } else { "**✗ missed**" },
                r.rss_mib,
                r.pss_mib,
                r.keeper_private_mib,
                r.cpu[0],
                r.cpu[1],
                r.cpu[2],
                r.cpu[3],
                2.0 * r.settled,
                r.cpu_busiest,
                r.cpu_median,
                rounds_cell(&r.rounds)
            ));
        }
    }

    let took = began.elapsed();
    let load_after = stamp::load();
    let mut md = format!(
        "# ochopod benchmarks\n\n\
         Machine: {}. {}. Load average (1/5/15 min) before: {load_before}; after: {load_after} (other work shares \
         these cores: times are noisy). The run took {:.1} min; pods ran `{}`.\n\n\
         Release build, one real ZooKeeper 3.8 (standalone, loopback, tick 500 ms), pods are real `ochopod` \
         processes supervising `sleep 3600` with damper 0 and no sanity check or probe, spawned back to back, as \
         DESIGN.md §8 runs both sides. Events as DESIGN.md §8 defines them, through the harness's one definition \
         (`integration/src/settle.rs`): *all running* = every pod's `/info` says `process: running`; *settled* = \
         all running, exactly one plain `leader`, N registrations under `pods/` and N entries in `snapshot`; after \
         a failover, settled with a `hash` other than before. Every pod's `/info` is read in parallel each look. \
         Timed scenarios use a 5 s session like §8. The rows named `etcd:` run the same scenarios with the pods on \
         one real etcd member instead (Debian's etcd 3.4, loopback; `coordination` through `OCHOPOD_ETCD`, a 5 s \
         lease), settled by the same definition read from etcd. *Registered*: per pod, from its spawn to its znode with a \
         non-empty payload. *Idle*: settled 3-pod clusters, nothing polling them, one window; RSS, PSS, private \
         memory and threads from /proc at its end, CPU from the threads' schedstat. The pod's keeper (a second, \
         single-threaded process that ends the pod's children if ochopod is SIGKILLed; see \
         `crates/ochopod-proc/src/keeper.rs`) is reported on its own rows, not in the pod's. The original's column \
         is copied from DESIGN.md §8 (the same machine size, measured side by side; for `/info` with 4 clients \
         it used wrk; here the load is a minimal wrk-like keep-alive client inside the bench process, \
         on the same 2 cores). A target flagged ✗ makes \
         `ochopod-bench` exit 1.\n\n",
        stamp::machine(),
        stamp::commit(),
        took.as_secs_f64() / 60.0,
        b.bin.strip_prefix(stamp::repo_root()).unwrap_or(&b.bin).display()
    );
    md.push_str(&t.markdown());
    md.push_str(&scale_md);
    let missed = t.missed();
    if missed.is_empty() {
        md.push_str("\nEvery target met.\n");
    } else {
        md.push_str(&format!(
            "\nTargets missed this run: {}.\n",
            missed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join("; ")
        ));
    }
    let kept = fs::read_to_string(&o.out)
        .ok()
        .and_then(|old| old.split_once(KEEP_MARKER).map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| "\n".to_string());
    md.push('\n');
    md.push_str(KEEP_MARKER);
    md.push_str(&kept);
    if let Some(dir) = o.out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&o.out, &md)?;
    println!("{md}");
    // The store (a ZooKeeper server process) goes now: `exit` below runs no destructor.
    drop(b);
    if !missed.is_empty() {
        eprintln!("targets missed: {}", missed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join("; "));
        if o.check {
            std::process::exit(1);
        }
    }
    Ok(())
}
