//! The leader's etcd protocol against a real etcd (the harness's, Debian's etcd-server): the
//! fenced writes fail once the lock key is gone or was created again, contenders lead in their
//! arrival order with rising epochs, and a lost lease takes the contender's key with it.

use std::time::Duration;

use ochopod_config::EtcdTarget;
use ochopod_core::view::Pods;
use ochopod_etcd::Session;
use ochopod_integration::etcd::{self, EtcdCluster};
use ochopod_leader::etcd as leader_etcd;
use ochopod_leader::zk::{ElectionEvent, LockNode};
use tokio::sync::mpsc;

const TTL: Duration = Duration::from_secs(4);

async fn session(server: &EtcdCluster) -> Session {
    let target = EtcdTarget::parse(&server.url("ochopod")).unwrap();
    Session::start(&target, TTL, Duration::from_secs(5)).await.expect("a lease")
}

async fn lock_key(s: &Session, key: &str) -> LockNode {
    let mut kv = s.client.kv_client();
    let options = etcd_client::PutOptions::new().with_lease(s.lease);
    kv.put(key, "{}", Some(options)).await.unwrap();
    let read = kv.get(key, None).await.unwrap();
    let created = read.kvs()[0].create_revision() as u64;
    LockNode { path: key.to_string(), name: "x".into(), seq: created, version: 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_hash_are_written_only_while_the_lock_key_is_ours() {
    let server = EtcdCluster::start().expect("etcd");
    let s = session(&server).await;
    let prefix = "/ochopod/clusters/t.fence";
    let lock = lock_key(&s, &format!("{prefix}/coordinator/aa")).await;
    leader_etcd::publish(&s, &lock, prefix, &Pods::new(), Some("h1")).await.expect("leading: written");
    leader_etcd::record_epoch(&s, &lock, prefix, lock.seq).await.expect("leading: epoch recorded");

    // The key deleted (lease lost, or by hand): nothing is written, and the error says fenced.
    let mut kv = s.client.kv_client();
    kv.delete(lock.path.as_str(), None).await.unwrap();
    let err = leader_etcd::publish(&s, &lock, prefix, &Pods::new(), Some("h2")).await.unwrap_err();
    assert!(matches!(err, ochopod_etcd::EtcdError::Fenced { .. }), "{err}");
    let err = leader_etcd::record_epoch(&s, &lock, prefix, lock.seq + 10).await.unwrap_err();
    assert!(matches!(err, ochopod_etcd::EtcdError::Fenced { .. }), "{err}");
    // Created again (another leadership): still not ours.
    lock_key(&s, &lock.path).await;
    let err = leader_etcd::publish(&s, &lock, prefix, &Pods::new(), Some("h3")).await.unwrap_err();
    assert!(matches!(err, ochopod_etcd::EtcdError::Fenced { .. }), "{err}");

    let client = etcd::client(&server.endpoints()).await.unwrap();
    let stored = etcd::get_prefix(&client, &format!("{prefix}/")).await.unwrap();
    let get = |k: &str| stored.iter().find(|(key, _)| key == &format!("{prefix}/{k}")).map(|(_, v)| v.clone());
    assert_eq!(get("hash").as_deref(), Some("h1"), "only the leading write landed");
    assert_eq!(get("epoch"), Some(lock.seq.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_lead_in_arrival_order_with_rising_epochs() {
    let server = EtcdCluster::start().expect("etcd");
    let prefix = "/ochopod/clusters/t.queue".to_string();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, ElectionEvent)>();
    let mut sessions = Vec::new();
    let mut tasks = Vec::new();
    // An election reported while the others were still queueing.
    let mut early = Vec::new();
    for n in 0..3 {
        let s = session(&server).await;
        sessions.push(s.clone());
        let tx = tx.clone();
        let hex = format!("{n:032x}");
        tasks.push(tokio::spawn(leader_etcd::contend(s, prefix.clone(), hex, b"{}".to_vec(), None, move |e| {
            let _ = tx.send((n, e));
        })));
        // Arrival order: each queues before the next starts.
        loop {
            let (who, event) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
            match event {
                ElectionEvent::Queued(_) if who == n => break,
                ElectionEvent::Elected(node) => early.push((who, node.seq)),
                _ => {}
            }
        }
    }
    let mut elected = Vec::new();
    for round in 0..3 {
        let (who, epoch) = match early.pop() {
            Some(found) => found,
            None => loop {
                let (who, event) = tokio::time::timeout(Duration::from_secs(15), rx.recv()).await.unwrap().unwrap();
                if let ElectionEvent::Elected(node) = event {
                    break (who, node.seq);
                }
            },
        };
        elected.push((who, epoch));
        if round < 2 {
            // The leader goes (its lease revoked, as at a clean shutdown): the next one leads.
            sessions[who].clone().close().await;
        }
    }
    assert_eq!(elected.iter().map(|(w, _)| *w).collect::<Vec<_>>(), [0, 1, 2], "fair order: {elected:?}");
    assert!(elected.windows(2).all(|w| w[1].1 > w[0].1), "epochs rise: {elected:?}");
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_left_to_expire_takes_its_keys_and_reports_expired() {
    let server = EtcdCluster::start().expect("etcd");
    let s = session(&server).await;
    let key = "/ochopod/clusters/t.lease/pods/u.0000000000";
    lock_key(&s, key).await;
    // Keep-alives stop (as for a pod that died): etcd drops the lease after its TTL.
    let mut lease = s.client.lease_client();
    let id = s.lease;
    let client = etcd::client(&server.endpoints()).await.unwrap();
    drop(s);
    let started = std::time::Instant::now();
    ochopod_integration::wait::until("the key to go with its lease", TTL * 3, || async {
        let found = etcd::get_prefix(&client, key).await.map_err(|e| e.to_string())?;
        if found.is_empty() {
            Ok(())
        } else {
            Err("still there".to_string())
        }
    })
    .await
    .unwrap();
    assert!(started.elapsed() >= TTL / 2, "gone after about the TTL, not at once: {:?}", started.elapsed());
    let ttl = lease.time_to_live(id, None).await.unwrap().ttl();
    assert_eq!(ttl, -1, "etcd says the lease is gone");
}
