//! Cluster formation over a real ZooKeeper with real pods (issue: session and leader actors).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pods_form_one_cluster_with_a_consistent_view() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    wait_settled(&refs, 3, SETTLE).await;

    let views: Vec<_> = pods.iter().map(|p| view_of(p).unwrap()).collect();
    let indexes: BTreeSet<usize> = views.iter().map(|v| v.1).collect();
    assert_eq!(indexes, BTreeSet::from([0, 1, 2]), "indexes {views:?}");
    let seqs: BTreeSet<u64> = views.iter().map(|v| v.2).collect();
    assert_eq!(seqs.len(), 3, "seqs must be distinct: {views:?}");
    let epochs: BTreeSet<&String> = views.iter().map(|v| &v.4).collect();
    assert_eq!(epochs.len(), 1, "every pod got the same epoch: {views:?}");
    // The index is the position of the key among the sorted keys, as in the original.
    let mut keys: Vec<&String> = views.iter().map(|v| &v.0).collect();
    keys.sort();
    for v in &views {
        assert_eq!(keys[v.1], &v.0);
    }
    // /info reports the seq each pod was configured with.
    for (p, v) in pods.iter().zip(&views) {
        assert_eq!(p.info().await.unwrap().seq, Some(v.2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_pod_joins_without_restarting_the_others() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let mut pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 3, SETTLE).await;
    let before: Vec<usize> = pods.iter().map(starts_of).collect();
    assert_eq!(before, vec![1, 1, 1]);

    let joined = Instant::now();
    pods.push(start_pod(&zk, &yaml));
    wait_settled(&pods.iter().collect::<Vec<_>>(), 4, SETTLE).await;
    eprintln!("4th pod configured {:?} after it started", joined.elapsed());
    // strict: false, so a membership change does not bounce the running processes.
    let after: Vec<usize> = pods.iter().map(starts_of).collect();
    assert_eq!(after, vec![1, 1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_after_its_session_expires() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let mut pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    let leader = wait_settled(&pods.iter().collect::<Vec<_>>(), 3, SETTLE).await;

    let killed = Instant::now();
    pods[leader].kill();
    pods.remove(leader);
    let survivors: Vec<&Pod> = pods.iter().collect();
    wait_settled(&survivors, 2, SETTLE).await;
    let took = killed.elapsed();
    eprintln!("new leader and cluster of 2 settled {took:?} after SIGKILL (session timeout 5 s)");
    // Not before the dead leader's session (5 s) expired, and not much after.
    assert!(took >= Duration::from_secs(4), "failover before the session could expire: {took:?}");
    assert!(took < Duration::from_secs(20), "failover too slow: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_is_replaced_within_a_second() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let mut pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    let leader = wait_settled(&pods.iter().collect::<Vec<_>>(), 3, SETTLE).await;

    let mut old = pods.remove(leader);
    let stopped = Instant::now();
    old.signal(Signal::SIGTERM);
    let new_leader = wait::until("a new leader", Duration::from_secs(10), || async {
        for p in &pods {
            if p.info().await.map_err(|e| e.to_string())?.state.starts_with("leader") {
                return Ok(p.address());
            }
        }
        Err("no leader yet".to_string())
    })
    .await
    .unwrap();
    let took = stopped.elapsed();
    eprintln!("{new_leader} leads {took:?} after the old leader got SIGTERM");
    let status = old.wait_exit(Duration::from_secs(10)).expect("old leader exits");
    assert!(status.success(), "ochopod exits 0 after SIGTERM: {status}");
    assert!(took < Duration::from_secs(1), "graceful failover took {took:?}");
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_joins_after_another_one_left() {
    // Once a pod has left, ZooKeeper's reported child version counts its delete too: a new pod
    // must still register (it once retried forever here).
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let mut pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &yaml)).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let mut gone = pods.remove(0);
    gone.signal(Signal::SIGTERM);
    gone.wait_exit(Duration::from_secs(15)).unwrap();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 1, SETTLE).await;
    pods.push(start_pod(&zk, &yaml));
    pods.push(start_pod(&zk, &yaml));
    wait_settled(&pods.iter().collect::<Vec<_>>(), 3, SETTLE).await;
    let seqs: BTreeSet<u64> = pods.iter().map(|p| view_of(p).unwrap().2).collect();
    assert_eq!(seqs.len(), 3, "seqs stay unique");
}
