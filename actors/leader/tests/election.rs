//! Election against a real ZooKeeper: one leader among contenders, followers name it, a graceful
//! shutdown hands over at once, and a kazoo (Python) contender shares the queue.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ochopod_core::paths;
use ochopod_leader::{election, NotLeader, Reconfigure};
use zookeeper_client::{Acls, CreateMode};

#[actix::test]
async fn one_contender_leads_the_other_names_it_and_takes_over_on_shutdown() {
    let zk = zk();
    let ns = "t-election";
    let a = TestLeader::start(&zk, settings(ns, "web", Duration::from_secs(60)), &uuid(), "10.0.0.1:8080").await;
    let b = TestLeader::start(&zk, settings(ns, "web", Duration::from_secs(60)), &uuid(), "10.0.0.2:8080").await;

    let statuses = ochopod_integration::wait::until("exactly one leader", WAIT, || async {
        let (sa, sb) = (a.status().await, b.status().await);
        let lock_nodes = a.client.list_children(&paths::coordinator_dir(&paths::cluster_prefix(ns, "web"))).await;
        match (sa.leader, sb.leader, lock_nodes.map(|c| c.len())) {
            (true, false, Ok(2)) | (false, true, Ok(2)) => Ok((sa, sb)),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let (leader, follower, leader_address) =
        if statuses.0.leader { (a, b, "10.0.0.1:8080") } else { (b, a, "10.0.0.2:8080") };
    let ls = leader.status().await;
    assert!(ls.state.starts_with("leader"), "{ls:?}");
    assert!(ls.epoch.is_some());
    let fs = follower.status().await;
    assert_eq!((fs.state.as_str(), fs.status.as_str(), fs.epoch), ("follower", "", None));

    let refused = follower.addr.send(Reconfigure).await.unwrap();
    assert_eq!(refused, Err(NotLeader { leader: Some(leader_address.to_string()) }));

    // Lock nodes follow the kazoo naming and carry our JSON.
    let coordinator = paths::coordinator_dir(&paths::cluster_prefix(ns, "web"));
    let children = leader.client.list_children(&coordinator).await.unwrap();
    let queue = election::queue(&children);
    assert_eq!(queue.len(), 2);
    assert_eq!(ls.epoch, Some(queue[0].seq), "the epoch is the lock's sequence");
    for c in &queue {
        let (hex, _) = c.name.split_once("__lock__").unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let (data, _) = leader.client.get_data(&format!("{coordinator}/{}", queue[0].name)).await.unwrap();
    assert_eq!(election::LockData::parse(&data).unwrap().address, leader_address);

    // A graceful shutdown deletes the lock node: the follower leads at once, while the old
    // leader's session is still open.
    let old_client = leader.client.clone();
    let t0 = Instant::now();
    leader.shutdown().await;
    let s = follower.wait_for("the follower to lead", |s| s.leader).await;
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3), "hand-over took {took:?}");
    assert_eq!(s.epoch, Some(queue[1].seq));
    assert_eq!(old_client.list_children(&coordinator).await.unwrap().len(), 1);
    eprintln!("hand-over after Shutdown: {took:?}");
    follower.shutdown().await;
}

#[actix::test]
async fn a_kazoo_contender_ahead_in_the_queue_holds_the_lock() {
    let zk = zk();
    let ns = "t-kazoo";
    let python = connect(&zk).await;
    let coordinator = paths::coordinator_dir(&paths::cluster_prefix(ns, "web"));
    python.mkdir(&coordinator, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    let prefix = election::lock_prefix(&coordinator, &uuid::Uuid::new_v4().simple().to_string());
    // kazoo writes no data in its lock node.
    let (_, seq) =
        python.create(&prefix, b"", &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all())).await.unwrap();
    let kazoo_node = format!("{prefix}{seq}");

    let ours = TestLeader::start(&zk, settings(ns, "web", Duration::from_secs(60)), &uuid(), "10.0.0.3:8080").await;
    ochopod_integration::wait::until("our contender queued", WAIT, || async {
        let n = python.list_children(&coordinator).await.map(|c| c.len()).unwrap_or(0);
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} contenders"))
        }
    })
    .await
    .unwrap();
    assert_eq!(ours.status().await.state, "follower");
    assert_eq!(ours.addr.send(Reconfigure).await.unwrap(), Err(NotLeader { leader: None }));

    python.delete(&kazoo_node, None).await.unwrap();
    let s = ours.wait_for("ours to lead once the kazoo node is gone", |s| s.leader).await;
    assert!(s.epoch.unwrap() > seq.into_i64() as u64);
    ours.shutdown().await;
}

#[actix::test]
async fn a_lost_session_drops_leadership_and_a_new_one_contends_again() {
    let zk = zk();
    let ns = "t-lost";
    let l = TestLeader::start(&zk, settings(ns, "web", Duration::from_secs(60)), &uuid(), "10.0.0.4:8080").await;
    let first = l.wait_for("leadership", |s| s.leader).await;
    l.addr.send(ochopod_session::SessionEvent::Lost { generation: 1 }).await.unwrap();
    assert_eq!(l.status().await.state, "follower");
    // The old session really ends (the leader dropped its clones; the test holds the last one),
    // as after an expiry, then a new session comes up.
    let TestLeader { addr, client, events, .. } = l;
    drop(client);
    let fresh = connect(&zk).await;
    let coordinator = paths::coordinator_dir(&paths::cluster_prefix(ns, "web"));
    ochopod_integration::wait::until("the old lock node gone", WAIT, || async {
        match fresh.list_children(&coordinator).await {
            Ok(c) if c.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let l = TestLeader { addr, client: fresh.clone(), generation: 2, events };
    l.addr
        .send(ochopod_session::SessionEvent::Up { generation: 2, client: fresh.into(), seq: 1, node: String::new() })
        .await
        .unwrap();
    // Events of the dead generation are ignored.
    l.addr.send(ochopod_session::SessionEvent::Suspended { generation: 1 }).await.unwrap();
    let second = l.wait_for("leadership in the new session", |s| s.leader).await;
    assert!(second.epoch > first.epoch, "a new lock node, a newer epoch");
    l.shutdown().await;
}
