//! The etcd backend against a real etcd (Debian's etcd-server, one member or three, started by
//! the harness on free loopback ports) and the real `ochopod` binary: registration bound to a
//! lease with a stable seq, one leader with a rising epoch, failover when the leader dies,
//! a lost lease, one etcd member down, and the settled definition the ZooKeeper tests use.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use ochopod_integration::etcd::{self, EtcdCluster};
use ochopod_integration::settle::{Settled, Store};

/// Pods on etcd: `OCHOPOD_ETCD` selects the backend; `OCHOPOD_ZK` points nowhere, so a pod that
/// talked to ZooKeeper would never settle.
fn start_on(cluster: &EtcdCluster, yaml: &str) -> Pod {
    let spec = PodSpec::new(bin(), "127.0.0.1:1", yaml).env("OCHOPOD_ETCD", cluster.url("ochopod"));
    Pod::start(spec).expect("start pod")
}

async fn settled(cluster: &EtcdCluster, pods: &[&Pod], size: usize, accept: impl Fn(&Settled) -> bool) -> Settled {
    let client = etcd::client(&cluster.endpoints()).await.expect("etcd client");
    let store = Store::Etcd { client: &client, root: "/ochopod" };
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    match settle::wait_settled_on(pods[0].client(), &store, &addresses, size, SETTLE, accept).await {
        Ok(s) => s,
        Err(e) => {
            for p in pods {
                eprintln!("---- pod {} log tail:\n{}", p.address(), p.log_tail(40));
            }
            panic!("{e}");
        }
    }
}

/// Registration keys of cluster `test.<name>`.
async fn registrations(cluster: &EtcdCluster, name: &str) -> Vec<(String, serde_json::Value)> {
    let client = etcd::client(&cluster.endpoints()).await.expect("etcd client");
    let dir = format!("/ochopod/clusters/test.{name}/pods/");
    etcd::get_prefix(&client, &dir)
        .await
        .expect("read pods")
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches(&dir).to_string(), serde_json::from_str(&v).expect("registration JSON")))
        .collect()
}

/// `ochopod <args>` with `OCHOPOD_ETCD` (and a ZooKeeper that is not there), bounded.
async fn tool(cluster: &EtcdCluster, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env("OCHOPOD_ETCD", cluster.url("ochopod"))
        .env("OCHOPOD_ZK", "127.0.0.1:1")
        .env_remove("RUST_LOG")
        .env_remove("OCHOPOD_TOKEN")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("the tool ends").expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty() || out.status.success(), "{args:?}: {stderr}");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn epoch(pod: &Pod) -> u64 {
    view_of(pod).expect("a configured pod").4.parse().expect("an epoch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_pods_register_with_a_stable_seq_and_settle_under_one_leader() {
    let server = EtcdCluster::start().expect("etcd");
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..3).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 3, |_| true).await;

    let found = registrations(&server, "web").await;
    let mut seqs: Vec<u64> = found.iter().map(|(_, r)| r["seq"].as_u64().expect("seq")).collect();
    seqs.sort();
    assert_eq!(seqs, [0, 1, 2], "one seq each, from the cluster's counter: {found:?}");
    for (key, registration) in &found {
        assert!(key.ends_with(&format!(".{:010}", registration["seq"].as_u64().unwrap())), "{key}");
        assert_eq!(registration["zk"], server.url("ochopod"), "the etcd target, as registered");
    }
    // Every pod sees one view: sizes 3, indexes 0..3, the leader's epoch.
    let leader_epoch = epoch(&pods[first.leader]);
    for p in &pods {
        let (_, _, _, size, e) = view_of(p).expect("configured");
        assert_eq!((size, e.parse::<u64>().unwrap()), (3, leader_epoch));
    }

    // The tools read etcd when OCHOPOD_ETCD is set.
    let (code, ls) = tool(&server, &["ls", "--json"]).await;
    assert_eq!(code, Some(0), "{ls}");
    let js: serde_json::Value = serde_json::from_str(&ls).expect("ls --json");
    let web = js["clusters"].as_array().unwrap().iter().find(|c| c["cluster"] == "test.web").expect("test.web listed");
    assert_eq!((web["running"].as_u64(), web["total"].as_u64()), (Some(3), Some(3)), "{js}");
    assert_eq!(web["state"], "leader", "{js}");
    let (code, grep) = tool(&server, &["grep", "web"]).await;
    assert_eq!((code, grep.lines().count()), (Some(0), 4), "a header and one row per pod:\n{grep}");
    let (code, waited) = tool(&server, &["wait", "web", "--count", "3", "--timeout", "20s"]).await;
    assert_eq!(code, Some(0), "{waited}");

    // A reset drops the lease and registers again: a new lease, the same seq.
    let follower = (first.leader + 1) % 3;
    let seq_before = pods[follower].info().await.unwrap().seq;
    let client = reqwest::Client::new();
    let reset = client.post(format!("http://{}/reset", pods[follower].address())).send().await.unwrap();
    assert!(reset.status().is_success(), "{}", reset.status());
    wait::until("the reset pod registered again", SETTLE, || async {
        let info = pods[follower].info().await.map_err(|e| e.to_string())?;
        let found = registrations(&server, "web").await;
        if found.len() == 3 && info.seq == seq_before {
            Ok(())
        } else {
            Err(format!("{} registrations, seq {:?}", found.len(), info.seq))
        }
    })
    .await
    .unwrap();
    let again = settled(&server, &refs, 3, |_| true).await;
    assert_eq!(again.leader, first.leader, "a follower's reset moves no leadership");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_killed_fails_over_with_a_higher_epoch_and_its_lease_takes_its_keys() {
    let server = EtcdCluster::start().expect("etcd");
    let yaml = simple_yaml("fo", "");
    let mut pods: Vec<Pod> = (0..3).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 3, |_| true).await;
    let old_epoch = epoch(&pods[first.leader]);

    // Killed without a shutdown: nothing revokes its lease, etcd expires it (5 s TTL).
    let killed_at = Instant::now();
    let mut dead = pods.remove(first.leader);
    dead.signal(Signal::SIGKILL);
    dead.wait_exit(Duration::from_secs(10)).expect("the leader exits");
    let refs: Vec<&Pod> = pods.iter().collect();
    let after = settled(&server, &refs, 2, |s| s.hash != first.hash).await;
    let failover = killed_at.elapsed();
    let new_epoch = epoch(&pods[after.leader]);
    assert!(new_epoch > old_epoch, "the epoch rises with each leadership: {old_epoch} → {new_epoch}");
    assert_eq!(registrations(&server, "fo").await.len(), 2, "the dead pod's lease took its registration");
    eprintln!("etcd failover after SIGKILL of the leader (lease TTL 5 s): {} ms", failover.as_millis());

    // The dead leader's epoch, replayed: refused by pods that applied the new one.
    let reply = replay_on(&pods[0], old_epoch).await;
    assert_eq!(reply.code, 409, "a stale leader's command is refused: {reply:?}");
    assert_eq!(view_of(&pods[0]).unwrap().3, 2, "the stale payload must not be applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_graceful_leader_stop_hands_over_at_once() {
    let server = EtcdCluster::start().expect("etcd");
    let yaml = simple_yaml("gr", "");
    let mut pods: Vec<Pod> = (0..2).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 2, |_| true).await;
    let stopped_at = Instant::now();
    let mut leader = pods.remove(first.leader);
    leader.signal(Signal::SIGTERM);
    let status = leader.wait_exit(Duration::from_secs(30)).expect("the leader exits");
    assert!(status.success(), "{status:?}\n{}", leader.log_tail(30));
    let refs: Vec<&Pod> = pods.iter().collect();
    settled(&server, &refs, 1, |s| s.hash != first.hash).await;
    let took = stopped_at.elapsed();
    eprintln!("etcd hand-over after SIGTERM of the leader: {} ms", took.as_millis());
    // The lease was revoked: well under the 5 s TTL plus the process's 2 s grace.
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_its_raft_leader_down_keeps_the_pods_leader_and_the_cluster_working() {
    let mut server = EtcdCluster::start_members(3).expect("3 etcd members");
    let yaml = simple_yaml("ha", "");
    let mut pods: Vec<Pod> = (0..2).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 2, |_| true).await;
    let leader_key = view_of(&pods[first.leader]).unwrap().0;
    let old_epoch = epoch(&pods[first.leader]);

    // The member that leads etcd's own Raft group: the hardest one to lose.
    let raft_leader = server.leader_index().await.expect("etcd's leader");
    server.stop_member(raft_leader);
    // The cluster still works: a third pod joins and the same leader configures it.
    pods.push(start_on(&server, &yaml));
    let refs: Vec<&Pod> = pods.iter().collect();
    let after = settled(&server, &refs, 3, |s| s.hash != first.hash).await;
    assert_eq!(view_of(&pods[after.leader]).unwrap().0, leader_key, "the leader kept its leadership");
    assert_eq!(epoch(&pods[after.leader]), old_epoch, "no new leadership, no new epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_pod_frozen_past_its_lease_comes_back_with_its_seq() {
    let server = EtcdCluster::start().expect("etcd");
    let yaml = simple_yaml("fz", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 2, |_| true).await;
    let follower = 1 - first.leader;
    let seq = pods[follower].info().await.unwrap().seq;

    // Shorter than the 5 s lease: nothing changes.
    pods[follower].signal(Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pods[follower].signal(Signal::SIGCONT);
    assert_eq!(registrations(&server, "fz").await.len(), 2);
    let same = settled(&server, &refs, 2, |_| true).await;
    assert_eq!((same.leader, same.hash.clone()), (first.leader, first.hash.clone()), "a short freeze runs no round");

    // Longer than the lease: etcd drops its keys, the leader reconfigures without it, and the
    // pod, once thawed, registers again with a new lease and the same seq.
    pods[follower].signal(Signal::SIGSTOP);
    let gone = wait::until("the frozen pod's lease to expire", Duration::from_secs(20), || async {
        let n = registrations(&server, "fz").await.len();
        if n == 1 {
            Ok(())
        } else {
            Err(format!("{n} registrations"))
        }
    })
    .await;
    pods[follower].signal(Signal::SIGCONT);
    gone.unwrap();
    let back = settled(&server, &refs, 2, |s| s.hash == first.hash).await;
    assert_eq!(back.infos[follower].seq, seq, "the same seq for the pod's whole life");
}

fn dependent_yaml(cluster: &str, depends: &str) -> String {
    format!(
        r#"cluster: {cluster}
namespace: test
zk_session_timeout: 5s
model:
  depends_on: ["{depends}"]
  damper: 1s
  grace: 5s
process:
  command: exec sleep 3600
  shell: true
  grace: 2s
files:
  - path: deps.txt
    template: "{{{{ grep(\"{depends}\", 8080) }}}}"
"#
    )
}

fn deps_of(pod: &Pod) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(pod.dir.path().join("deps.txt")).ok()?;
    Some(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

async fn wait_deps(pods: &[&Pod], n: usize) {
    for pod in pods {
        wait::until(&format!("{} configured with {n} db pods", pod.address()), SETTLE, || async {
            match deps_of(pod) {
                Some(d) if d.len() == n => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pod.log_tail(30)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_dependencies_by_relative_absolute_and_glob_names_follow_their_snapshots() {
    let server = EtcdCluster::start().expect("etcd");
    let relative = start_on(&server, &dependent_yaml("app-r", "db"));
    let absolute = start_on(&server, &dependent_yaml("app-a", "/test.db"));
    let glob = start_on(&server, &dependent_yaml("app-g", "d*"));
    let db_yaml = simple_yaml("db", "");
    let mut dbs = vec![start_on(&server, &db_yaml)];
    settled(&server, &[&dbs[0]], 1, |_| true).await;
    wait_deps(&[&relative, &absolute, &glob], 1).await;

    // The watches (no polling) carry each change of the db snapshot to every dependent.
    dbs.push(start_on(&server, &db_yaml));
    let refs: Vec<&Pod> = dbs.iter().collect();
    settled(&server, &refs, 2, |_| true).await;
    wait_deps(&[&relative, &absolute, &glob], 2).await;
}

async fn metric(pod: &Pod, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", pod.address())).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

async fn all_in_state(pods: &[Pod], state: &str) -> Result<(), String> {
    for p in pods {
        if metric(p, &format!("ochopod_zk_session_state{{state=\"{state}\"}}")).await != 1.0 {
            return Err(format!("{} not {state}", p.address()));
        }
    }
    Ok(())
}

async fn seqs_of(server: &EtcdCluster, cluster: &str) -> Vec<u64> {
    let mut seqs: Vec<u64> =
        registrations(server, cluster).await.iter().map(|(_, r)| r["seq"].as_u64().expect("seq")).collect();
    seqs.sort();
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_short_outage_keeps_every_lease_and_runs_no_round() {
    let mut server = EtcdCluster::start().expect("etcd");
    // A 10 s lease: pods suspend after 5 s without an answer and expire after 10.
    let yaml = simple_yaml("web", "").replace("zk_session_timeout: 5s", "zk_session_timeout: 10s");
    let pods: Vec<Pod> = (0..3).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 3, |_| true).await;
    let rounds = metric(&pods[first.leader], "ochopod_rounds_total{outcome=\"ok\"}").await;
    let mut generations = Vec::new();
    for p in &pods {
        generations.push(metric(p, "ochopod_zk_session_generation").await);
    }
    let down = Instant::now();
    server.stop_member(0);
    wait::until("every session suspended", Duration::from_secs(15), || all_in_state(&pods, "suspended")).await.unwrap();
    server.restart_member(0).expect("etcd back with its data");
    let outage = down.elapsed();
    wait::until("every session connected again", Duration::from_secs(20), || all_in_state(&pods, "connected"))
        .await
        .unwrap();
    eprintln!("etcd down {outage:?}: every lease kept");
    let mut after = Vec::new();
    for p in &pods {
        after.push(metric(p, "ochopod_zk_session_generation").await);
    }
    assert_eq!(after, generations, "a pod took a new lease instead of keeping its own");
    let again = settled(&server, &refs, 3, |_| true).await;
    assert_eq!(again.leader, first.leader, "leadership moved after a short outage");
    assert_eq!(
        metric(&pods[first.leader], "ochopod_rounds_total{outcome=\"ok\"}").await,
        rounds,
        "a spurious round ran"
    );
    assert_eq!(pods.iter().map(starts_of).collect::<Vec<_>>(), vec![1, 1, 1], "a process was restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_an_outage_longer_than_the_lease_reforms_the_cluster_with_the_same_seqs() {
    let mut server = EtcdCluster::start().expect("etcd");
    let yaml = simple_yaml("lo", "");
    let pods: Vec<Pod> = (0..3).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 3, |_| true).await;
    let seqs = seqs_of(&server, "lo").await;
    server.stop_member(0);
    // No answer for a whole 5 s lease: every pod gives its session up and starts another.
    wait::until("every pod on a new generation", Duration::from_secs(30), || async {
        for p in &pods {
            if metric(p, "ochopod_zk_session_generation").await < 2.0 {
                return Err(format!("{} still on its first lease", p.address()));
            }
        }
        Ok(())
    })
    .await
    .unwrap();
    server.restart_member(0).expect("etcd back with its data");
    let back = Instant::now();
    let again = settled(&server, &refs, 3, |_| true).await;
    eprintln!("re-formed {:?} after etcd came back (old leases expire within the 5 s TTL)", back.elapsed());
    assert_eq!(seqs_of(&server, "lo").await, seqs, "every pod kept its seq for life");
    assert_eq!(again.hash, first.hash, "the same pods, the same configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_leader_killed_during_a_round_is_replaced_and_the_round_completes() {
    let server = EtcdCluster::start().expect("etcd");
    let yaml = format!(
        "{}hooks:\n  initialize: sleep 1.5\n",
        simple_yaml("mr", "  sequential: true").replace("damper: 0s", "damper: 2s")
    );
    let mut pods: Vec<Pod> = (0..3).map(|_| start_on(&server, &yaml)).collect();
    let leader = wait::until("a leader configuring", SETTLE, || async {
        for (n, p) in pods.iter().enumerate() {
            if p.info().await.map_err(|e| e.to_string())?.state == "leader (configuring)" {
                return Ok(n);
            }
        }
        Err("no round yet".to_string())
    })
    .await
    .unwrap();
    // The dying leader's epoch is at least the lowest contender's create revision.
    let client = etcd::client(&server.endpoints()).await.unwrap();
    let mut kv = client.kv_client();
    let dir = "/ochopod/clusters/test.mr/coordinator/";
    let queue = kv.get(dir, Some(ochopod_etcd::etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    let old_epoch = queue.kvs().iter().map(|kv| kv.create_revision() as u64).min().unwrap();
    pods[leader].kill();
    pods.remove(leader);
    let killed = Instant::now();
    let refs: Vec<&Pod> = pods.iter().collect();
    settled(&server, &refs, 2, |_| true).await;
    eprintln!("etcd: settled at 2 {:?} after the leader died mid-round", killed.elapsed());
    for p in &pods {
        let (_, _, _, size, epoch) = view_of(p).unwrap();
        assert_eq!(size, 2);
        assert!(epoch.parse::<u64>().unwrap() > old_epoch, "epoch {epoch} not newer than {old_epoch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_credentials_are_used_but_never_registered_shown_or_passed_on() {
    let server = EtcdCluster::start().expect("etcd");
    const PASSWORD: &str = "s3cret-pw";
    etcd::enable_auth(&server.endpoints(), PASSWORD).await.expect("etcd authentication on");
    let url = format!("etcd://root:{PASSWORD}@{}/ochopod", server.endpoints());
    let yaml = simple_yaml("sec", "").replace("command: echo", "command: env > env.txt; echo");
    let pods: Vec<Pod> = (0..2)
        .map(|_| Pod::start(PodSpec::new(bin(), "127.0.0.1:1", &yaml).env("OCHOPOD_ETCD", &url)).expect("start pod"))
        .collect();
    let client = etcd::client_as(&server.endpoints(), "root", PASSWORD).await.expect("an authenticated client");
    let store = Store::Etcd { client: &client, root: "/ochopod" };
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    settle::wait_settled_on(pods[0].client(), &store, &addresses, 2, SETTLE, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pods[0].log_tail(30)));
    // Without the credentials etcd refuses: they really are used.
    let anonymous = etcd::client(&server.endpoints()).await.unwrap();
    assert!(etcd::get_prefix(&anonymous, "/ochopod/").await.is_err(), "etcd answered without credentials");

    let stored = etcd::get_prefix(&client, "/ochopod/").await.unwrap();
    assert!(!stored.is_empty());
    for (key, value) in &stored {
        assert!(!value.contains(PASSWORD) && !key.contains(PASSWORD), "{key} holds the password: {value}");
    }
    let clean = format!("etcd://{}/ochopod", server.endpoints());
    for pod in &pods {
        let info = reqwest::get(format!("http://{}/info", pod.address())).await.unwrap().text().await.unwrap();
        assert!(!info.contains(PASSWORD), "/info shows the password: {info}");
        let log = std::fs::read_to_string(pod.dir.path().join("pod.log")).unwrap();
        assert!(!log.contains(PASSWORD), "the log shows the password");
        let env = std::fs::read_to_string(pod.dir.path().join("env.txt")).unwrap();
        assert!(!env.contains(PASSWORD), "the process got the password");
        assert!(env.lines().any(|l| l == format!("OCHOPOD_ETCD={clean}")), "OCHOPOD_ETCD passed on without it:\n{env}");
    }
}

/// Scenario bodies run on both backends (the harness's [`etcd::Backend`]), so that etcd is held
/// to the outcomes ZooKeeper gives: one macro, one test per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_zookeeper {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::etcd::Backend::zookeeper().await.expect("ZooKeeper")).await
                }
            )*
        }
        mod on_etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::etcd::Backend::etcd(1).await.expect("etcd")).await
                }
            )*
        }
    };
}

on_both_backends!(a_killed_leader_is_replaced_under_a_newer_epoch_and_its_commands_refused, a_reset_keeps_the_seq);

async fn settled_on(backend: &etcd::Backend, pods: &[&Pod], size: usize, accept: impl Fn(&Settled) -> bool) -> Settled {
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    settle::wait_settled_on(pods[0].client(), &backend.store(), &addresses, size, SETTLE, accept)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", backend.name(), pods[0].log_tail(30)))
}

async fn a_killed_leader_is_replaced_under_a_newer_epoch_and_its_commands_refused(backend: etcd::Backend) {
    let yaml = simple_yaml("both", "");
    let mut pods: Vec<Pod> = (0..3).map(|_| Pod::start(backend.pod_spec(bin(), &yaml)).expect("pod")).collect();
    let started = Instant::now();
    let first = settled_on(&backend, &pods.iter().collect::<Vec<_>>(), 3, |_| true).await;
    let formed = started.elapsed();
    let old_epoch = epoch(&pods[first.leader]);
    let mut dead = pods.remove(first.leader);
    dead.kill();
    let killed = Instant::now();
    let after = settled_on(&backend, &pods.iter().collect::<Vec<_>>(), 2, |s| s.hash != first.hash).await;
    eprintln!(
        "{}: 3 pods formed in {} ms; failover after SIGKILL of the leader (5 s session/lease) {} ms",
        backend.name(),
        formed.as_millis(),
        killed.elapsed().as_millis()
    );
    assert!(epoch(&pods[after.leader]) > old_epoch, "{}: the epoch did not rise", backend.name());
    let reply = replay_on(&pods[0], old_epoch).await;
    assert_eq!(reply.code, 409, "{}: a stale leader's command was not refused: {reply:?}", backend.name());
}

async fn a_reset_keeps_the_seq(backend: etcd::Backend) {
    let yaml = simple_yaml("rst", "");
    let pods: Vec<Pod> = (0..3).map(|_| Pod::start(backend.pod_spec(bin(), &yaml)).expect("pod")).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled_on(&backend, &refs, 3, |_| true).await;
    let follower = (first.leader + 1) % 3;
    let before = pods[follower].info().await.unwrap();
    let reply = pods[follower].client().call(&pods[follower].address(), "reset", None, Duration::from_secs(10)).await;
    assert_eq!(reply.unwrap().code, 200);
    wait::until("the reset pod on its second session", SETTLE, || async {
        let generation = metric(&pods[follower], "ochopod_zk_session_generation").await;
        if generation >= 2.0 {
            Ok(())
        } else {
            Err(format!("generation {generation}"))
        }
    })
    .await
    .unwrap();
    let again = settled_on(&backend, &refs, 3, |_| true).await;
    let after = pods[follower].info().await.unwrap();
    assert_eq!(after.seq, before.seq, "{}: a reset changed the seq", backend.name());
    assert_eq!(again.leader, first.leader, "{}: a follower's reset moved leadership", backend.name());
    assert_eq!(again.hash, first.hash, "{}: the same pods, the same configuration", backend.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_forms_a_cluster_and_plain_clients_are_refused() {
    let server = EtcdCluster::start_tls().expect("etcd with TLS");
    let yaml = simple_yaml("tls", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_on(&server, &yaml)).collect();
    let client = etcd::tls_client(&server.endpoints(), &server.ca_path()).await.expect("a TLS client");
    let store = Store::Etcd { client: &client, root: "/ochopod" };
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    settle::wait_settled_on(pods[0].client(), &store, &addresses, 2, SETTLE, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pods[0].log_tail(30)));
    let stored = etcd::get_prefix(&client, "/ochopod/clusters/test.tls/pods/").await.unwrap();
    assert_eq!(stored.len(), 2);
    // The members speak TLS only: a plain client gets nothing.
    let plain = tokio::time::timeout(Duration::from_secs(10), async {
        let c = etcd::client(&server.endpoints()).await?;
        etcd::get_prefix(&c, "/ochopod/").await
    })
    .await;
    assert!(!matches!(plain, Ok(Ok(_))), "a plain-text client was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watches_drive_rounds_through_the_damper() {
    let server = EtcdCluster::start().expect("etcd");
    let yaml = simple_yaml("dmp", "").replace("damper: 0s", "damper: 3s");
    let mut pods: Vec<Pod> = (0..2).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&server, &refs, 2, |_| true).await;
    let ok = "ochopod_rounds_total{outcome=\"ok\"}";
    let rounds = metric(&pods[first.leader], ok).await;

    // A pod that registers and leaves (a clean stop revokes its lease) within the damper: the
    // state is back to the configured one before the damper elapses, so no round.
    let mut passing = start_on(&server, &yaml);
    wait::until("the passing pod registered", SETTLE, || async {
        let n = registrations(&server, "dmp").await.len();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{n} registrations"))
        }
    })
    .await
    .unwrap();
    let seen_at = Instant::now();
    passing.signal(Signal::SIGTERM);
    passing.wait_exit(Duration::from_secs(10)).expect("the passing pod stops");
    assert!(seen_at.elapsed() < Duration::from_secs(3), "the pod took longer than the damper to leave");
    assert_eq!(registrations(&server, "dmp").await.len(), 2);
    // A negative observation needs a window: twice the damper without a round.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(metric(&pods[first.leader], ok).await, rounds, "a change reverted within the damper ran a round");

    // A pod that stays: the watch sees it, the damper elapses, one round configures all three.
    pods.push(start_on(&server, &yaml));
    let refs: Vec<&Pod> = pods.iter().collect();
    let after = settled(&server, &refs, 3, |s| s.hash != first.hash).await;
    assert_eq!(after.leader, first.leader);
    assert_eq!(metric(&pods[first.leader], ok).await, rounds + 1.0, "one round for the new pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keys_that_are_no_registration_are_left_out() {
    let server = EtcdCluster::start().expect("etcd");
    let client = etcd::client(&server.endpoints()).await.unwrap();
    let mut kv = client.kv_client();
    // What anyone who can write to etcd could put there: broken JSON, a registration steering
    // the leader elsewhere.
    let pods = "/ochopod/clusters/test.hx/pods/";
    kv.put(format!("{pods}garbage.0000000090"), "{nope", None).await.unwrap();
    let steer = serde_json::json!({"ip": "127.0.0.1:1/steal?", "port": "8080", "ports": {"8080": 1}, "seq": 91});
    kv.put(format!("{pods}steer.0000000091"), steer.to_string(), None).await.unwrap();
    let yaml = simple_yaml("hx", "");
    let hx: Vec<Pod> = (0..2).map(|_| start_on(&server, &yaml)).collect();
    let refs: Vec<&Pod> = hx.iter().collect();
    // Settled with the two real pods (settle counts usable registrations only), configured with 2.
    let s = settled(&server, &refs, 2, |_| true).await;
    for p in &hx {
        assert_eq!(view_of(p).expect("configured").3, 2, "a bad key counted as a pod");
    }
    let log = std::fs::read_to_string(hx[s.leader].dir.path().join("pod.log")).unwrap();
    assert!(log.contains("ignoring an invalid registration"), "the leader says what it left out");
}

/// An `on` with a dead leader's `epoch`, as that leader would have sent it to `pod`.
async fn replay_on(pod: &Pod, epoch: u64) -> ochopod_api::client::Reply {
    let (key, ..) = view_of(pod).unwrap();
    let info = pod.info().await.unwrap();
    let stale = serde_json::json!({
        "pods": { key.clone(): { "ip": info.ip, "ports": info.ports, "port": info.port, "seq": info.seq } },
        "dependencies": {}, "key": key, "epoch": epoch
    });
    pod.client().call(&pod.address(), "control/on/5", Some(&stale), Duration::from_secs(10)).await.unwrap()
}
