//! Dependencies against a real ZooKeeper: an exact dependency gates the first round until its
//! snapshot exists and triggers one when it changes; a glob merges every matching cluster.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ochopod_core::view::Pods;

const DAMPER: Duration = Duration::from_millis(300);

fn dep_pods(ns: &str, cluster: &str, ports: &[u16]) -> Pods {
    ports.iter().map(|p| (uuid(), registration(ns, cluster, *p, *p as u64))).collect()
}

#[actix::test]
async fn no_round_before_the_dependency_snapshot_exists_and_a_new_one_when_it_changes() {
    let zk = zk();
    let ns = "t-deps";
    let recorder = Arc::new(Recorder::default());
    let pod = FakePod::start(&uuid(), recorder.clone()).await;
    let registrar = connect(&zk).await;
    register(&registrar, &pod.key, &registration(ns, "kafka", pod.port, 1)).await;
    let mut s = settings(ns, "kafka", DAMPER);
    s.model.depends_on = vec!["zookeeper".into()];
    let leader = TestLeader::start(&zk, s, &pod.key, &pod.address()).await;
    let st = leader.wait_for("waiting for the dependency", |s| s.status == "* waiting for zookeeper").await;
    assert_eq!(st.state, "leader (configuration pending)");
    tokio::time::sleep(DAMPER * 3).await;
    assert!(recorder.calls().is_empty(), "no round without the dependency's snapshot");

    let zk_leader = connect(&zk).await;
    let first = dep_pods(ns, "zookeeper", &[2181, 2182]);
    write_snapshot(&zk_leader, &format!("{ns}.zookeeper"), &first).await;
    leader.wait_for("a round", |s| s.rounds_ok == 1).await;
    let on = recorder.calls().into_iter().find(|c| c.task == "on").unwrap().payload.unwrap();
    assert_eq!(on.dependencies["zookeeper"], first);

    let mut second = first.clone();
    second.extend(dep_pods(ns, "zookeeper", &[2183]));
    write_snapshot(&zk_leader, &format!("{ns}.zookeeper"), &second).await;
    leader.wait_for("a round for the changed dependency", |s| s.rounds_ok == 2).await;
    let on = recorder.calls().into_iter().filter(|c| c.task == "on").nth(1).unwrap().payload.unwrap();
    assert_eq!(on.dependencies["zookeeper"], second);
    leader.shutdown().await;
}

#[actix::test]
async fn an_absolute_glob_merges_every_matching_cluster_but_its_own() {
    let zk = zk();
    let ns = "t-glob";
    let others = connect(&zk).await;
    let a = dep_pods("t-globsvc", "db-a", &[5432]);
    let b = dep_pods("t-globsvc", "db-b", &[5433, 5434]);
    write_snapshot(&others, "t-globsvc.db-a", &a).await;
    write_snapshot(&others, "t-globsvc.db-b", &b).await;
    write_snapshot(&others, "t-globsvc.web", &dep_pods("t-globsvc", "web", &[80])).await;

    let recorder = Arc::new(Recorder::default());
    let pod = FakePod::start(&uuid(), recorder.clone()).await;
    register(&others, &pod.key, &registration(ns, "app", pod.port, 1)).await;
    let mut s = settings(ns, "app", DAMPER);
    s.model.depends_on = vec!["/t-globsvc.db-*".into()];
    let leader = TestLeader::start(&zk, s, &pod.key, &pod.address()).await;
    leader.wait_for("a round", |s| s.rounds_ok == 1).await;
    let on = recorder.calls().into_iter().find(|c| c.task == "on").unwrap().payload.unwrap();
    let mut both = a.clone();
    both.extend(b.clone());
    assert_eq!(on.dependencies["/t-globsvc.db-*"], both);

    // A new matching cluster appears: another round with its pods merged in.
    let c = dep_pods("t-globsvc", "db-c", &[5435]);
    write_snapshot(&others, "t-globsvc.db-c", &c).await;
    leader.wait_for("a round for the new match", |s| s.rounds_ok == 2).await;
    let on = recorder.calls().into_iter().filter(|c| c.task == "on").nth(1).unwrap().payload.unwrap();
    both.extend(c);
    assert_eq!(on.dependencies["/t-globsvc.db-*"], both);
    leader.shutdown().await;
}

#[actix::test]
async fn a_relative_glob_never_matches_its_own_cluster() {
    let zk = zk();
    let ns = "t-glob-own";
    let others = connect(&zk).await;
    let b = dep_pods(ns, "web-b", &[81]);
    write_snapshot(&others, &format!("{ns}.web-b"), &b).await;

    let recorder = Arc::new(Recorder::default());
    let pod = FakePod::start(&uuid(), recorder.clone()).await;
    register(&others, &pod.key, &registration(ns, "web-a", pod.port, 1)).await;
    let mut s = settings(ns, "web-a", DAMPER);
    s.model.depends_on = vec!["web-*".into()];
    let leader = TestLeader::start(&zk, s, &pod.key, &pod.address()).await;
    leader.wait_for("a round", |s| s.rounds_ok == 1).await;
    let on = recorder.calls().into_iter().find(|c| c.task == "on").unwrap().payload.unwrap();
    assert_eq!(on.dependencies["web-*"], b, "only web-b: our own snapshot is not a dependency");
    // Our own snapshot was written by the round: were it matched, it would loop into new rounds.
    tokio::time::sleep(DAMPER * 3).await;
    assert_eq!(leader.status().await.rounds_ok, 1);
    leader.shutdown().await;
}
