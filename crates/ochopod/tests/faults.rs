//! Fault injection with real processes: each test injects one failure and asserts the outcome
//! and the time bound it promises. Each records its row of bench/reliability.md (measured
//! bound, stamped) through `ochopod_integration::reliability` when `OCHOPOD_WRITE_BENCH=1`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use ochopod_integration::reliability;
use zookeeper_client as zk;

async fn metric(pod: &Pod, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", pod.address())).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

async fn rounds_ok(pod: &Pod) -> f64 {
    metric(pod, "ochopod_rounds_total{outcome=\"ok\"}").await
}

/// Records the test's row in bench/reliability.md (only with `OCHOPOD_WRITE_BENCH=1`).
fn record(order: u32, id: &str, injected: &str, asserted: &str, measured: String, bound: &str) {
    let row = reliability::Row { order, id, injected, asserted, measured, bound };
    reliability::record(row).expect("writing the reliability row");
}

/// Every registration's ZooKeeper session (its ephemeral owner), by node name.
async fn session_owners(connect: &str, cluster: &str) -> std::collections::BTreeMap<String, i64> {
    let client = zk::Client::connect(connect).await.unwrap();
    let dir = format!("/ochopod/clusters/test.{cluster}/pods");
    let mut owners = std::collections::BTreeMap::new();
    for child in client.list_children(&dir).await.unwrap() {
        if let Ok((_, stat)) = client.get_data(&format!("{dir}/{child}")).await {
            owners.insert(child, stat.ephemeral_owner);
        }
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_zookeeper_outage_restarts_nothing_and_runs_no_round() {
    let mut zk = ZkServer::start().expect("ZooKeeper");
    // The default 15 s session outlives a short outage and the client's reconnect backoff.
    let yaml = simple_yaml("web", "").replace("zk_session_timeout: 5s", "zk_session_timeout: 15s");
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let leader = wait_settled(&refs, 3, SETTLE).await;
    let rounds = rounds_ok(&pods[leader]).await;
    // What "the same session" means, seen from both sides: the pod's session generation (a new
    // one starts after every loss) and the ZooKeeper session that owns its registration.
    let mut generations = Vec::new();
    for p in &pods {
        generations.push(metric(p, "ochopod_zk_session_generation").await);
    }
    let owners = session_owners(&zk.connect_string(), "web").await;
    assert_eq!(owners.len(), 3);

    let down = Instant::now();
    zk.stop();
    // Every pod sees the connection go (the leader stops leading while suspended)…
    wait::until("every session suspended", Duration::from_secs(10), || async {
        for p in &pods {
            if metric(p, "ochopod_zk_session_state{state=\"suspended\"}").await != 1.0 {
                return Err(format!("{} not suspended", p.address()));
            }
        }
        Ok(())
    })
    .await
    .unwrap();
    zk.restart().expect("ZooKeeper back on the same port");
    let outage = down.elapsed();
    let back = Instant::now();
    eprintln!("ZooKeeper was down {outage:?}");
    // Every pod's session comes back (same session: its registration is kept).
    wait::until("every session connected again", Duration::from_secs(20), || async {
        for p in &pods {
            if metric(p, "ochopod_zk_session_state{state=\"connected\"}").await != 1.0 {
                return Err(format!("{} not connected", p.address()));
            }
        }
        Ok(())
    })
    .await
    .unwrap();
    let reconnected = back.elapsed();
    let mut after = Vec::new();
    for p in &pods {
        after.push(metric(p, "ochopod_zk_session_generation").await);
    }
    assert_eq!(after, generations, "a pod opened a new session instead of resuming its own");
    assert_eq!(
        session_owners(&zk.connect_string(), "web").await,
        owners,
        "a registration is owned by another ZooKeeper session after the outage"
    );
    assert_eq!(wait_settled(&refs, 3, SETTLE).await, leader, "leadership moved after a short outage");
    assert_eq!(rounds_ok(&pods[leader]).await, rounds, "a spurious round ran");
    assert_eq!(pods.iter().map(starts_of).collect::<Vec<_>>(), vec![1, 1, 1], "a process was restarted");
    record(
        10,
        "zookeeper-outage",
        "ZooKeeper server stopped and restarted (short outage, 15 s sessions)",
        "every pod sees its session suspended, then the same session resumes: each pod's session \
         generation is unchanged and every registration is owned by the same ZooKeeper session id \
         as before; the same leader; no round (rounds counter unchanged); no process restarted",
        format!(
            "outage {:.2} s; all 3 sessions connected {:.2} s after the restart; session generations {:?} before and after",
            outage.as_secs_f64(),
            reconnected.as_secs_f64(),
            generations.iter().map(|g| *g as u64).collect::<Vec<_>>()
        ),
        "20 s to reconnect",
    );
}

async fn registered_seqs(zk_server: &ZkServer, cluster: &str) -> Vec<u64> {
    let client = zk::Client::connect(&zk_server.connect_string()).await.unwrap();
    let dir = format!("/ochopod/clusters/test.{cluster}/pods");
    let mut seqs = Vec::new();
    for child in client.list_children(&dir).await.unwrap() {
        if let Ok((data, _)) = client.get_data(&format!("{dir}/{child}")).await {
            let js: serde_json::Value = serde_json::from_slice(&data).unwrap();
            seqs.push(js["seq"].as_u64().unwrap());
        }
    }
    seqs.sort();
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_frozen_past_its_session_rejoins_with_the_same_seq() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let leader = wait_settled(&refs, 3, SETTLE).await;
    let frozen = (leader + 1) % 3;
    let seq = view_of(&pods[frozen]).unwrap().2;
    let all_seqs = registered_seqs(&zk, "web").await;

    // Frozen like a long GC pause: its session (5 s) expires and the cluster shrinks.
    pods[frozen].signal(Signal::SIGSTOP);
    let others: Vec<&Pod> = pods.iter().enumerate().filter(|(n, _)| *n != frozen).map(|(_, p)| p).collect();
    wait_settled(&others, 2, SETTLE).await;
    let resumed = Instant::now();
    pods[frozen].signal(Signal::SIGCONT);

    wait_settled(&refs, 3, SETTLE).await;
    let back = resumed.elapsed();
    eprintln!("frozen pod back in the cluster {back:?} after SIGCONT");
    assert_eq!(view_of(&pods[frozen]).unwrap().2, seq, "the pod came back with another seq");
    assert_eq!(registered_seqs(&zk, "web").await, all_seqs);
    record(
        20,
        "frozen-pod",
        "a follower frozen with SIGSTOP past its 5 s session, then SIGCONT",
        "the others settle at size 2 while it is frozen; after SIGCONT it re-registers with the \
         same seq (registrations in ZooKeeper: same set of seqs) and the cluster settles at size 3 again",
        format!("settled at 3 again {:.2} s after SIGCONT", back.as_secs_f64()),
        "40 s",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_during_a_round_is_replaced_and_the_round_completes() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // A slow first `on` everywhere (initialize sleeps), sent one pod at a time: a round of three
    // takes seconds, long enough to kill the leader in the middle of it.
    let yaml = format!(
        "{}hooks:\n  initialize: sleep 1.5\n",
        simple_yaml("web", "  sequential: true").replace("damper: 0s", "damper: 2s")
    );
    let mut pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
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
    // The dying leader's epoch is the sequence of the lowest lock node.
    let client = zk::Client::connect(&zk.connect_string()).await.unwrap();
    let locks = client.list_children("/ochopod/clusters/test.web/coordinator").await.unwrap();
    let old_epoch = locks.iter().filter_map(|n| ochopod_core::paths::sequence_of(n)).min().unwrap() as f64;
    drop(client);
    pods[leader].kill();
    pods.remove(leader);
    let killed = Instant::now();
    let new_leader = wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let converged = killed.elapsed();
    eprintln!("converged {converged:?} after the leader died mid-round");
    // The new leader ran the round to completion, under a newer epoch, which every pod took.
    assert!(rounds_ok(&pods[new_leader]).await >= 1.0);
    for p in &pods {
        let (_, _, _, size, epoch) = view_of(p).unwrap();
        assert_eq!(size, 2);
        assert!(epoch.parse::<f64>().unwrap() > old_epoch, "epoch {epoch} not newer than {old_epoch}");
    }
    record(
        30,
        "leader-killed-mid-round",
        "the leader SIGKILLed in the middle of a round (sequential, slow `initialize`)",
        "a new leader completes a round under a newer epoch; every survivor is configured with that epoch and size 2",
        format!(
            "settled at 2 {:.2} s after the kill (5 s session + 2 s damper + the slow round)",
            converged.as_secs_f64()
        ),
        "40 s",
    );
}

/// Kills a process and everything below it when the test ends, passed or failed.
struct TreeGuard(u32);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        for pid in ochopod_integration::pods::descendants(self.0).into_iter().chain([self.0]) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_ochopod_reaps_orphans_and_shuts_down_on_sigterm() {
    let zk = ZkServer::start().expect("ZooKeeper");
    if std::process::Command::new("unshare").arg("--version").output().is_err() {
        panic!("unshare is missing: install util-linux (apt-get install -y util-linux)");
    }
    // The process leaves an orphan behind every second: a child that exits at once after its
    // parent (the shell) detaches it. As pid 1, ochopod inherits and must reap them.
    let yaml = simple_yaml("pid1", "").replace(
        r#"command: echo "start $OCHOPOD_INDEX" >> starts.log; exec sleep 3600"#,
        r#"command: echo "start $OCHOPOD_INDEX" >> starts.log; while true; do (sh -c 'sleep 0.1' &) ; sleep 0.5; done"#,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pod.yaml"), &yaml).unwrap();
    let port = ochopod_integration::ports::free_port();
    let mut child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(BIN)
        .args(["run", "pod.yaml"])
        .current_dir(dir.path())
        .env("OCHOPOD_ZK", zk.connect_string())
        .env("PORT_8080", port.to_string())
        .stdout(std::fs::File::create(dir.path().join("pod.log")).unwrap())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let unshare = child.id();
    let _guard = TreeGuard(unshare);
    let client = ochopod_api::PodClient::new(None);
    let address = format!("127.0.0.1:{port}");
    wait::until("the pid-1 pod to run its process", SETTLE, || async {
        let i = client.info(&address, Duration::from_secs(2)).await.map_err(|e| e.to_string())?;
        if i.process == "running" {
            Ok(())
        } else {
            Err(i.process)
        }
    })
    .await
    .unwrap();
    // Orphans come and go for a few seconds; none may linger as a zombie.
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut seen_zombie_twice = Vec::new();
    let mut previous = Vec::new();
    while Instant::now() < deadline {
        let now = ochopod_integration::pods::zombies_under(unshare);
        seen_zombie_twice.extend(now.iter().filter(|p| previous.contains(*p)).copied());
        previous = now;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(seen_zombie_twice.is_empty(), "zombies were not reaped: {seen_zombie_twice:?}");

    // ochopod is pid 1 in there: SIGTERM to it (through unshare's child) shuts down gracefully.
    let ochopod = ochopod_integration::pods::descendants(unshare).into_iter().next().expect("ochopod below unshare");
    let term = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(ochopod as i32), Signal::SIGTERM).unwrap();
    let status = wait::until_blocking("the pid-1 pod to exit", Duration::from_secs(20), || match child.try_wait() {
        Ok(Some(s)) => Ok(s),
        _ => Err("running".into()),
    })
    .unwrap();
    let exited = term.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(ochopod_integration::pods::descendants(unshare).is_empty());
    record(
        60,
        "pid-1",
        "ochopod as PID 1 (new PID namespace) with a process that orphans a child every 0.5 s",
        "no zombie survives two observations 0.7 s apart (4 s of orphans); SIGTERM to PID 1 gives a graceful exit 0",
        format!("no lasting zombie; exit 0 {:.2} s after SIGTERM", exited.as_secs_f64()),
        "20 s to exit",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_zookeeper_mid_round_sends_no_further_step() {
    let mut zk = ZkServer::start().expect("ZooKeeper");
    // `check` takes 3 s on every pod (the can_configure hook), which leaves time to cut
    // ZooKeeper between the round's `check` and its `on`.
    let yaml = format!(
        "{}hooks:\n  can_configure: sleep 3\n",
        simple_yaml("web", "").replace("zk_session_timeout: 5s", "zk_session_timeout: 20s")
    );
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    wait::until("a leader in the check phase", SETTLE, || async {
        for p in &pods {
            if p.info().await.map_err(|e| e.to_string())?.state == "leader (configuring)" {
                return Ok(());
            }
        }
        Err("no round yet".to_string())
    })
    .await
    .unwrap();
    zk.stop();
    let cut = Instant::now();
    // Past the end of the `check` phase, with the session suspended: no pod may have been told
    // `on` (a pod renders view.txt when it is). A negative observation needs a window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for p in &pods {
        assert_eq!(view_of(p), None, "{} was configured while its leader had no ZooKeeper", p.address());
    }
    zk.restart().expect("ZooKeeper back");
    // Same sessions come back: the leader resumes and completes a round.
    wait_settled(&pods.iter().collect::<Vec<_>>(), 3, SETTLE).await;
    let configured = cut.elapsed();
    eprintln!("configured {configured:?} after ZooKeeper was cut mid-round");
    record(
        40,
        "zookeeper-cut-mid-round",
        "ZooKeeper cut while the leader is between `check` and `on`",
        "no pod is told `on` while the leader's session is suspended (nothing configured during a 5 s window); \
         once ZooKeeper is back the round completes",
        format!(
            "settled at 3 {:.2} s after the cut (of which 5 s observed with nothing configured)",
            configured.as_secs_f64()
        ),
        "40 s",
    );
}
