//! Chaos scenarios with real processes: a churn of random crashes, stops and joins that must end
//! in one consistent cluster with nothing left behind, and a pod cut off from ZooKeeper by a
//! network namespace that must be dropped after its session expires and come back when the link
//! heals. Each asserts the outcome and the time bound it promises.
//!
//! Knobs (environment): `OCHOPOD_CHURN_SECS` (default 30; `make soak` runs longer) and
//! `OCHOPOD_CHURN_SEED` (printed by every run, so a failing sequence can be replayed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ochopod_api::PodClient;
use ochopod_core::paths;
use ochopod_integration::netns::Netns;
use ochopod_integration::pods::descendants;
use ochopod_integration::reliability;
use ochopod_integration::zk::stop_child;
use zookeeper_client as zk;

/// The session timeout of every pod here (`simple_yaml`'s): how long a dead pod stays registered.
const SESSION: Duration = Duration::from_secs(5);
/// Slack on top of what the runtime promises, for debug builds sharing 2 cores with other tests.
const MARGIN: Duration = Duration::from_secs(25);
/// Every process a pod starts inherits this variable (the executor passes the pod's environment
/// on), so leftovers can be found in /proc whatever their command line.
const MARK_VAR: &str = "OCHOPOD_CHAOS_MARK";

// ---------------------------------------------------------------------------------------------
// Members: host pods (the harness's) and the namespaced pod (this file's) seen the same way.

trait Member {
    /// Where the test reaches its control API, which is also where the pod registered itself.
    fn address(&self) -> String;
    fn dir(&self) -> &Path;
    fn log_tail(&self, n: usize) -> String;
}

impl Member for Pod {
    fn address(&self) -> String {
        Pod::address(self)
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
    fn log_tail(&self, n: usize) -> String {
        Pod::log_tail(self, n)
    }
}

/// `view.txt` (see `simple_yaml`): (key, index, seq, size, epoch).
fn view_in(dir: &Path) -> Option<(String, usize, u64, usize, u64)> {
    let text = fs::read_to_string(dir.join("view.txt")).ok()?;
    let f: Vec<&str> = text.split_whitespace().collect();
    match f.as_slice() {
        [key, index, seq, size, epoch] => {
            Some((key.to_string(), index.parse().ok()?, seq.parse().ok()?, size.parse().ok()?, epoch.parse().ok()?))
        }
        _ => None,
    }
}

fn starts_in(dir: &Path) -> usize {
    fs::read_to_string(dir.join("starts.log")).map(|t| t.lines().count()).unwrap_or(0)
}

fn dump_logs(members: &[&dyn Member]) {
    for m in members {
        eprintln!("---- pod {} log tail:\n{}", m.address(), m.log_tail(40));
    }
}

/// One registration under `pods/`, keyed by the pod's uuid.
#[derive(Debug, Clone, PartialEq)]
struct Registered {
    seq: u64,
    /// `ip:<control port as peers reach it>`.
    address: String,
}

async fn registered(client: &zk::Client, prefix: &str) -> Result<BTreeMap<String, Registered>, String> {
    let dir = paths::pods_dir(prefix);
    let mut out = BTreeMap::new();
    for child in client.list_children(&dir).await.map_err(|e| format!("list {dir}: {e}"))? {
        // A child may vanish between the listing and the read (its session just expired).
        let Ok((data, _)) = client.get_data(&format!("{dir}/{child}")).await else { continue };
        let js: serde_json::Value = serde_json::from_slice(&data).map_err(|e| format!("{child}: {e}"))?;
        let port = js["port"].as_str().unwrap_or_default();
        let address = format!("{}:{}", js["ip"].as_str().unwrap_or_default(), js["ports"][port]);
        let seq = js["seq"].as_u64().ok_or_else(|| format!("{child}: no seq in {js}"))?;
        out.insert(paths::pod_key(&child).to_string(), Registered { seq, address });
    }
    Ok(out)
}

/// The lock contenders' sequences, lowest (the leader's, its epoch) first.
async fn contenders(client: &zk::Client, prefix: &str) -> Result<Vec<u64>, String> {
    let dir = paths::coordinator_dir(prefix);
    let children = client.list_children(&dir).await.map_err(|e| format!("list {dir}: {e}"))?;
    let mut seqs: Vec<u64> = children.iter().filter_map(|c| paths::sequence_of(c)).collect();
    seqs.sort();
    Ok(seqs)
}

#[derive(Debug)]
struct Converged {
    /// Index in the members of the one leader.
    leader: usize,
    epoch: u64,
    /// Seq of each member, in the members' order.
    seqs: Vec<u64>,
}

/// One look at the cluster: `Ok` only if it is converged on exactly `members`:
/// - every member runs its process, exactly one is `leader` and the rest `follower`;
/// - every member was configured with `members.len()` pods, at the same epoch, which is the
///   current leader's (the lowest lock contender's), with distinct keys and indexes in key order;
/// - `pods/` holds exactly the members' registrations (key, seq and address as each was told),
///   and `coordinator/` exactly one contender per member: the dead are gone.
async fn converged(
    http: &PodClient,
    client: &zk::Client,
    prefix: &str,
    members: &[&dyn Member],
) -> Result<Converged, String> {
    let n = members.len();
    // Settled as everywhere else, then what a churn must not leave behind.
    let addresses: Vec<String> = members.iter().map(|m| m.address()).collect();
    let settled = settle::settled_now(http, client, &addresses, n).await?;
    let mut views = Vec::with_capacity(n);
    for m in members {
        match view_in(m.dir()) {
            Some(v) if v.3 == n => views.push(v),
            other => return Err(format!("{} view {other:?}, want size {n}", m.address())),
        }
    }
    let epochs: BTreeSet<u64> = views.iter().map(|v| v.4).collect();
    if epochs.len() != 1 {
        return Err(format!("epochs differ: {views:?}"));
    }
    let mut keys: Vec<&String> = views.iter().map(|v| &v.0).collect();
    keys.sort();
    keys.dedup();
    if keys.len() != n || views.iter().any(|v| keys[v.1] != &v.0) {
        return Err(format!("keys or indexes inconsistent: {views:?}"));
    }
    let regs = registered(client, prefix).await?;
    let expected: BTreeMap<String, Registered> =
        members.iter().zip(&views).map(|(m, v)| (v.0.clone(), Registered { seq: v.2, address: m.address() })).collect();
    if regs != expected {
        return Err(format!("registrations {regs:?}, want {expected:?}"));
    }
    let locks = contenders(client, prefix).await?;
    let epoch = views[0].4;
    if locks.len() != n || locks[0] != epoch {
        return Err(format!("lock contenders {locks:?} for {n} pods configured at epoch {epoch}"));
    }
    Ok(Converged { leader: settled.leader, epoch, seqs: views.iter().map(|v| v.2).collect() })
}

/// Waits (polling every 100 ms, bounded by `timeout`) until [`converged`] holds; on timeout
/// prints the members' logs and panics with the last observation.
async fn wait_converged(
    what: &str,
    http: &PodClient,
    client: &zk::Client,
    prefix: &str,
    members: &[&dyn Member],
    timeout: Duration,
) -> (Converged, Duration) {
    let start = Instant::now();
    let res = wait::until(what, timeout, || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        converged(http, client, prefix, members).await
    })
    .await;
    match res {
        Ok(c) => (c, start.elapsed()),
        Err(e) => {
            dump_logs(members);
            dump_zk(client, prefix).await;
            panic!("{e}");
        }
    }
}

/// What ZooKeeper holds for the cluster, for a failure message.
async fn dump_zk(client: &zk::Client, prefix: &str) {
    for dir in [paths::pods_dir(prefix), paths::coordinator_dir(prefix)] {
        let stat = client.check_stat(&dir).await;
        let children = client.list_children(&dir).await;
        eprintln!("---- {dir}: stat {stat:?}\n     children {children:?}");
    }
}

async fn zk_client(connect: &str) -> zk::Client {
    zk::Client::connect(connect).await.unwrap_or_else(|e| panic!("test client to ZooKeeper at {connect}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Processes: crashing a pod without a race, leftovers and zombies.

/// SIGKILL the pod's whole tree like a dying container. The pod is frozen first: `Pod::kill`
/// lists the tree and then kills, and a pod in the middle of a round could spawn a child in
/// between, which would escape as an orphan the runtime is not to blame for.
fn crash(pod: &mut Pod) {
    pod.signal(Signal::SIGSTOP);
    let pid = pod.pid();
    let _ =
        wait::until_blocking(
            "the pod to freeze",
            Duration::from_secs(3),
            || match ochopod_integration::pods::state_of(pid) {
                Some('T') | Some('t') | None => Ok(()),
                other => Err(format!("state {other:?}")),
            },
        );
    pod.kill();
}

/// Processes (other than zombies, which have no environment left) whose environment holds
/// `MARK_VAR=<prefix>…`, with their command lines.
fn marked_processes(prefix: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARK_VAR}={prefix}");
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv.starts_with(needle.as_bytes())))
                .unwrap_or(false)
        })
        .map(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_string())
        })
        .collect()
}

/// No process of the run `prefix` is left, once any just killed are reaped by their new parent.
async fn assert_nothing_left(prefix: &str) {
    let left = wait::until("no process of any pod left", Duration::from_secs(10), || async {
        let left = marked_processes(prefix);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    if let Err(e) = left {
        panic!("orphans: {e}");
    }
}

fn zombies_under(root: u32) -> BTreeSet<u32> {
    ochopod_integration::pods::zombies_under(root).into_iter().collect()
}

/// Zombies below the test process that stay zombies for a second: another test of this binary
/// may have a child that just exited and is about to be reaped.
async fn lasting_zombies() -> BTreeSet<u32> {
    let me = std::process::id();
    let first = zombies_under(me);
    if first.is_empty() {
        return first;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    zombies_under(me).intersection(&first).copied().collect()
}

/// A tiny seeded generator (splitmix64): the sequence of a run is replayable from its seed,
/// without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

fn marked_pod(zk: &str, yaml: &str, mark: &str) -> Pod {
    Pod::start(PodSpec::new(bin(), zk, yaml).env(MARK_VAR, mark)).expect("start pod")
}

/// Waits for pods sent SIGTERM to exit, all at once (each on a blocking thread), and returns
/// them with how they exited.
async fn wait_exits(pods: Vec<Pod>, timeout: Duration) -> Vec<(Pod, anyhow::Result<ExitStatus>)> {
    let handles: Vec<_> = pods
        .into_iter()
        .map(|mut p| {
            tokio::task::spawn_blocking(move || {
                let status = p.wait_exit(timeout);
                (p, status)
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("waiting thread"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Churn.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Start,
    Crash,
    CrashLeader,
    Stop,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_random_kills_and_joins_converges() {
    let secs = env_u64("OCHOPOD_CHURN_SECS", 30);
    let seed = env_u64("OCHOPOD_CHURN_SEED", 0x0c40_90d5);
    eprintln!("churn for {secs} s with OCHOPOD_CHURN_SEED={seed}");
    let mut rng = Rng(seed);
    let zk_server = ZkServer::start().expect("ZooKeeper");
    let client = zk_client(&zk_server.connect_string()).await;
    let http = PodClient::new(None);
    let prefix = paths::cluster_prefix("test", "churn");
    let run = format!("churn-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let yaml = simple_yaml("churn", "");
    let mut started = 0usize;
    let mut start = || {
        started += 1;
        marked_pod(&zk_server.connect_string(), &yaml, &format!("{run}-{started}"))
    };

    let mut live: Vec<Pod> = (0..3).map(|_| start()).collect();
    {
        let members: Vec<&dyn Member> = live.iter().map(|p| p as &dyn Member).collect();
        let (_, took) = wait_converged("the first 3 pods", &http, &client, &prefix, &members, SETTLE).await;
        eprintln!("3 pods converged in {took:?}");
    }

    // Pods sent SIGTERM and not yet exited, and how the others exited.
    let mut stopping: Vec<Pod> = Vec::new();
    let mut stopped: Vec<(Pod, anyhow::Result<ExitStatus>)> = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let churn = Instant::now();
    let mut last_action = churn;
    while churn.elapsed() < Duration::from_secs(secs) {
        let mut still = Vec::new();
        for mut p in stopping.drain(..) {
            match p.wait_exit(Duration::ZERO) {
                Ok(status) => stopped.push((p, Ok(status))),
                Err(_) => still.push(p),
            }
        }
        stopping = still;

        let action = match live.len() {
            ..=2 => Action::Start,
            6.. => [Action::Crash, Action::CrashLeader, Action::Stop][rng.below(3)],
            _ => match rng.below(10) {
                0..=4 => Action::Start,
                5..=6 => Action::Crash,
                7 => Action::CrashLeader,
                _ => Action::Stop,
            },
        };
        let mut victim = rng.below(live.len());
        if action == Action::CrashLeader {
            // Whoever says it leads right now; mid-election nobody may: then a random one.
            for (n, p) in live.iter().enumerate() {
                if p.info().await.is_ok_and(|i| i.state.starts_with("leader")) {
                    victim = n;
                }
            }
        }
        let at = churn.elapsed().as_secs_f64();
        match action {
            Action::Start => {
                live.push(start());
                eprintln!("{at:6.2}s start -> {} pods", live.len());
            }
            Action::Crash | Action::CrashLeader => {
                let mut p = live.remove(victim);
                eprintln!("{at:6.2}s {action:?} {} -> {} pods", p.address(), live.len());
                crash(&mut p);
            }
            Action::Stop => {
                let p = live.remove(victim);
                eprintln!("{at:6.2}s stop {} -> {} pods", p.address(), live.len());
                p.signal(Signal::SIGTERM);
                stopping.push(p);
            }
        }
        last_action = Instant::now();
        *counts.entry(format!("{action:?}")).or_default() += 1;
        tokio::time::sleep(rng.millis(500, 3000)).await;
    }
    eprintln!("churn done: {counts:?}, {} pods live, {started} pods started in all", live.len());

    // A graceful stop must end, with success, while the rest of the cluster churns.
    stopped.extend(wait_exits(std::mem::take(&mut stopping), Duration::from_secs(30)).await);
    for (p, status) in &stopped {
        match status {
            Ok(s) if s.success() => {}
            other => {
                dump_logs(&[p as &dyn Member]);
                panic!("pod {} stopped with SIGTERM exited {other:?}", p.address());
            }
        }
    }

    // Dead pods leave when their session expires; then one round configures everyone.
    let members: Vec<&dyn Member> = live.iter().map(|p| p as &dyn Member).collect();
    let (c, took) = wait_converged(
        &format!("the {} live pods to converge after the churn", live.len()),
        &http,
        &client,
        &prefix,
        &members,
        SESSION + MARGIN + Duration::from_secs(15),
    )
    .await;
    let converged_after = last_action.elapsed();
    eprintln!(
        "converged {:?} after the last action ({took:?} of waiting): {} pods, leader {}, epoch {}, seqs {:?}",
        converged_after,
        live.len(),
        live[c.leader].address(),
        c.epoch,
        c.seqs
    );

    // The scan below must see what it looks for: each live pod and its process (sh, then sleep).
    let marked: BTreeSet<u32> = marked_processes(&run).into_iter().map(|(pid, _)| pid).collect();
    for p in &live {
        let tree: BTreeSet<u32> = descendants(p.pid()).into_iter().chain([p.pid()]).collect();
        assert!(
            tree.len() >= 2 && tree.is_subset(&marked),
            "pod {} tree {tree:?} not all marked in {marked:?}",
            p.address()
        );
    }

    // Stop everything the way a platform would (SIGTERM, all at once): every pod exits cleanly
    // and nothing any of them started outlives it.
    for p in &live {
        p.signal(Signal::SIGTERM);
    }
    for (p, status) in wait_exits(std::mem::take(&mut live), Duration::from_secs(30)).await {
        match status {
            Ok(s) if s.success() => {}
            other => {
                dump_logs(&[&p as &dyn Member]);
                panic!("pod {} exited {other:?} on SIGTERM", p.address());
            }
        }
    }
    assert_nothing_left(&run).await;
    let zombies = lasting_zombies().await;
    assert!(zombies.is_empty(), "zombies below the test process: {zombies:?}");
    let actions: usize = counts.values().sum();
    let detail: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let row = reliability::Row {
        order: 70,
        id: "churn",
        injected: "churn: random crashes (leader included), graceful stops and joins, 2–6 pods alive",
        asserted: "every stopped pod exits 0; at the end exactly one leader, every live pod running and configured \
                   with the same, latest epoch and the full membership; the registrations are exactly the live pods; \
                   after the stop, no process of the run is left and no zombie",
        measured: format!(
            "{secs} s (seed {seed}): {actions} actions ({}); converged {:.2} s after the last action",
            detail.join(", "),
            converged_after.as_secs_f64()
        ),
        bound: "45 s after the last action",
    };
    reliability::record(row).expect("writing the reliability row");
}

// ---------------------------------------------------------------------------------------------
// 2. A pod cut off from ZooKeeper by a network namespace.

/// `ochopod run` inside the namespace with the docker binding: it registers the namespace's
/// address (`OCHOPOD_DOCKER_IP`) and listens on `0.0.0.0:8080` there, the unremapped control
/// port, which the host reaches across the veth.
struct NsPod {
    child: Option<Child>,
    dir: tempfile::TempDir,
    address: String,
}

impl NsPod {
    fn start(ns: &Netns, zk: &str, yaml: &str, mark: &str) -> NsPod {
        let dir = tempfile::Builder::new().prefix("ochopod-pod-").tempdir().unwrap();
        let yaml_path = dir.path().join("pod.yaml");
        fs::write(&yaml_path, format!("{yaml}binding: docker\n")).unwrap();
        let log = fs::File::create(dir.path().join("pod.log")).unwrap();
        // `ip netns exec` execs the command, so the child is ochopod itself.
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(BIN)
            .arg("run")
            .arg(&yaml_path)
            .current_dir(dir.path())
            .env("OCHOPOD_ZK", zk)
            .env("OCHOPOD_DOCKER_IP", &ns.ns_ip)
            .env("OCHOPOD_PLATFORM_ROOT", dir.path())
            .env("POD_DIR", dir.path())
            .env(MARK_VAR, mark)
            .env_remove("PORT_8080")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ip netns exec ochopod");
        NsPod { child: Some(child), dir, address: format!("{}:8080", ns.ns_ip) }
    }
}

impl Member for NsPod {
    fn address(&self) -> String {
        self.address.clone()
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
    fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(self.dir.path().join("pod.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for NsPod {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let tree = descendants(c.id());
            stop_child(&mut c, Duration::from_secs(10));
            for pid in tree.into_iter().filter(|p| PathBuf::from(format!("/proc/{p}")).exists()) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_cut_off_from_zookeeper_is_dropped_and_comes_back() {
    // Declared first, dropped last: the pods and ZooKeeper stop before the network goes.
    let net = Netns::create();
    let zk_server = ZkServer::start_on(&net.host_ip).expect("ZooKeeper on the veth's host end");
    let connect = zk_server.connect_string();
    let client = zk_client(&connect).await;
    let http = PodClient::new(None);
    let prefix = paths::cluster_prefix("test", "part");
    let damper = Duration::from_secs(1);
    let yaml = simple_yaml("part", "").replace("damper: 0s", "damper: 1s");
    let run = format!("part-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    eprintln!("namespace {} ({}), ZooKeeper at {}", net.name, net.ns_ip, connect);

    // The host pods register 127.0.0.1, which a leader inside the namespace could not reach:
    // they start first and settle, so one of them holds the lowest lock, and the namespaced pod,
    // whose contenders always come later, never leads.
    let host: Vec<Pod> = (0..2).map(|n| marked_pod(&connect, &yaml, &format!("{run}-{n}"))).collect();
    let host_members: Vec<&dyn Member> = host.iter().map(|p| p as &dyn Member).collect();
    wait_converged("the 2 host pods", &http, &client, &prefix, &host_members, SETTLE).await;
    let cut_off = NsPod::start(&net, &connect, &yaml, &format!("{run}-ns"));
    let all: Vec<&dyn Member> = host.iter().map(|p| p as &dyn Member).chain([&cut_off as &dyn Member]).collect();
    let (before, took) = wait_converged("3 pods, one in the namespace", &http, &client, &prefix, &all, SETTLE).await;
    eprintln!("the namespaced pod joined in {took:?}");
    assert!(before.leader < 2, "the namespaced pod leads: {before:?}");

    net.cut();
    let (during, dropped) = wait_converged(
        "the 2 host pods to drop the cut-off one",
        &http,
        &client,
        &prefix,
        &host_members,
        SESSION + damper + MARGIN,
    )
    .await;
    eprintln!("cut-off pod dropped {dropped:?} after the cut (session {SESSION:?} + damper {damper:?})");
    assert_eq!(during.leader, before.leader, "leadership moved between the host pods");

    net.heal();
    let (after, back) =
        wait_converged("the cut-off pod to come back", &http, &client, &prefix, &all, SESSION + damper + MARGIN).await;
    eprintln!("cut-off pod back {back:?} after the link healed");
    assert_eq!(after.seqs, before.seqs, "a pod came back with another seq");
    assert_eq!(after.leader, before.leader);
    // Being dropped and re-added reconfigures, it does not restart anyone's process.
    let starts: Vec<usize> = all.iter().map(|m| starts_in(m.dir())).collect();
    assert_eq!(starts, vec![1, 1, 1], "processes restarted");

    // Stopped by pid, inside the namespace too, and nothing left behind.
    drop(all);
    drop(host_members);
    drop(cut_off);
    drop(host);
    assert_nothing_left(&run).await;
    let row = reliability::Row {
        order: 50,
        id: "partition",
        injected: "one pod cut off from ZooKeeper (its own network namespace, veth link set down)",
        asserted: "the two others settle without it (same leader); when the link heals it re-registers with the \
                   same seq, no process was restarted, the cluster settles at 3",
        measured: format!(
            "dropped {:.2} s after the cut (5 s session + 1 s damper); back {:.2} s after the heal",
            dropped.as_secs_f64(),
            back.as_secs_f64()
        ),
        bound: "31 s each (session + damper + 25 s)",
    };
    reliability::record(row).expect("writing the reliability row");
}
