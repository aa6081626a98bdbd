//! The session actor against a real ZooKeeper server.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::*;
use ochopod_config::{ZkSettings, ZkTarget};
use ochopod_core::events::{Event, EventBus};
use ochopod_core::{paths, Registration};
use ochopod_session::{GetSessionStatus, Reset, Session, SessionEvent, Shutdown};
use zookeeper_client::{Acls, CreateMode, SessionState};

const NS: &str = "test";
const CLUSTER: &str = "web";
const TIMEOUT: Duration = Duration::from_secs(10);

fn settings(connect: String, chroot: Option<&str>, session_timeout: Duration) -> ZkSettings {
    let text = format!("{connect}{}", chroot.unwrap_or(""));
    ZkSettings { target: ZkTarget::parse(&text).expect("test connect string"), session_timeout }
}

fn start_session(
    zk: ZkSettings,
    key: &str,
    registration: Registration,
    events: EventBus,
    subscribers: Vec<Recipient<SessionEvent>>,
) -> Addr<Session> {
    Session::new(zk, NS.into(), CLUSTER.into(), key.into(), registration, events, subscribers).start()
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn prefix() -> String {
    paths::cluster_prefix(NS, CLUSTER)
}

/// What a pod registers: the caller's fields, its seq, and as `zk` the hosts it connected to.
fn expected_json(r: &Registration, seq: u64, hosts: &str) -> serde_json::Value {
    let mut r = r.clone();
    r.seq = seq;
    r.zk = hosts.to_string();
    serde_json::to_value(&r).unwrap()
}

/// Every event published so far on `rx` that is a session change.
fn session_events(rx: &mut tokio::sync::broadcast::Receiver<ochopod_core::events::Stamped>) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    while let Ok(s) = rx.try_recv() {
        if let Event::Session { state, generation } = s.event {
            out.push((state, generation));
        }
    }
    out
}

async fn shutdown(addr: &Addr<Session>) {
    tokio::time::timeout(Duration::from_secs(10), addr.send(Shutdown))
        .await
        .expect("Shutdown answered in time")
        .expect("session actor alive for Shutdown");
}

#[actix::test]
async fn registrations_carry_their_json_and_a_unique_seq_from_the_create_on() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let server = start_zk();
    let obs = observer(&server.connect_string()).await;
    let dir = paths::pods_dir(&prefix());
    obs.mkdir(&dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    let sightings = watch_pods(obs.clone(), dir.clone()).await;
    let bus = EventBus::new(256);
    let mut bus_rx = bus.subscribe();

    // Many pods at once, so the sequence reservation really races (and losers guess several).
    let mut pods = Vec::new();
    for i in 0..20u16 {
        let key = new_key();
        let reg = registration(NS, CLUSTER, 31000 + i);
        let (probe, rx) = Probe::start();
        // One pod authenticates: its password must reach no node.
        let connect = match i {
            0 => format!("zk://bob:s3cret@{}", server.connect_string()),
            _ => server.connect_string(),
        };
        let zk = settings(connect, None, TIMEOUT);
        let addr = start_session(zk, &key, reg.clone(), bus.clone(), vec![probe]);
        pods.push((key, reg, addr, rx));
    }

    let mut seqs = BTreeSet::new();
    for (key, reg, addr, rx) in pods.iter_mut() {
        let up = expect_up(rx, Duration::from_secs(20)).await;
        assert_eq!(up.generation, 1);
        assert!(up.node.starts_with(&format!("{dir}/{key}.")), "{}", up.node);
        // The first registration's seq is its own node sequence, as in the original.
        assert_eq!(sequence_of(&up.node), up.seq);
        assert!(seqs.insert(up.seq), "seq {} given twice", up.seq);
        let (js, version) = read_node(&obs, &up.node).await.expect("registration node exists");
        assert_eq!(version, 0, "the JSON was written after the create");
        assert_eq!(js, expected_json(reg, up.seq, &server.connect_string()));
        let status = addr.send(GetSessionStatus).await.unwrap();
        assert_eq!(status.state, "connected");
        assert_eq!(status.generation, 1);
        assert_eq!(status.seq, Some(up.seq));
        assert_eq!(status.node.as_deref(), Some(up.node.as_str()));
    }
    assert!(exists(&obs, &paths::hash_node(&prefix())).await, "the hash node is created");

    // A reader racing the creates never saw a node without its complete JSON.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sightings.lock().unwrap().created.len() < pods.len() {
        assert!(Instant::now() < deadline, "watch saw {:?}", sightings.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let seen = sightings.lock().unwrap();
        assert_eq!(seen.created.len(), pods.len(), "only the registrations were ever created: {seen:?}");
        assert!(seen.data_changed.is_empty(), "registration data was rewritten: {:?}", seen.data_changed);
        for (path, got) in &seen.created {
            let (data, version) = got.as_ref().unwrap_or_else(|| panic!("{path} vanished"));
            assert_eq!(*version, 0, "{path}");
            assert!(!String::from_utf8_lossy(data).contains("s3cret"), "{path}: a password was registered");
            let js: serde_json::Value = serde_json::from_slice(data).expect("JSON at first sight");
            assert_eq!(js["seq"].as_u64(), Some(sequence_of(path)), "{path}: {js}");
            assert_eq!(js["ip"], "127.0.0.1");
        }
    }
    let states = session_events(&mut bus_rx);
    assert_eq!(states.iter().filter(|s| *s == &("connected".to_string(), 1)).count(), pods.len(), "{states:?}");

    for (_, _, addr, _) in &pods {
        shutdown(addr).await;
    }
}

#[actix::test]
async fn reset_re_registers_with_the_same_seq_and_removes_the_old_node() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let server = start_zk();
    let obs = observer(&server.connect_string()).await;
    let key = new_key();
    let reg = registration(NS, CLUSTER, 31000);
    let (probe, mut rx) = Probe::start();
    let addr = start_session(
        settings(server.connect_string(), None, TIMEOUT),
        &key,
        reg.clone(),
        EventBus::default(),
        vec![probe],
    );

    let first = expect_up(&mut rx, Duration::from_secs(20)).await;
    assert_eq!(first.generation, 1);
    addr.send(Reset).await.unwrap();
    expect_lost(&mut rx, 1, Duration::from_secs(5)).await;
    let second = expect_up(&mut rx, Duration::from_secs(20)).await;
    assert_eq!(second.generation, 2);
    assert_eq!(second.seq, first.seq);
    assert_ne!(second.node, first.node);
    assert_ne!(second.session.id(), first.session.id(), "a new session");
    assert!(!exists(&obs, &first.node).await, "the old node is gone");
    let (js, version) = read_node(&obs, &second.node).await.expect("new node");
    assert_eq!(version, 0);
    assert_eq!(js, expected_json(&reg, first.seq, &server.connect_string()));
    assert_eq!(nodes_of(&obs, &paths::pods_dir(&prefix()), &key).await.len(), 1);
    let status = addr.send(GetSessionStatus).await.unwrap();
    assert_eq!((status.state.as_str(), status.generation, status.seq), ("connected", 2, Some(first.seq)));

    shutdown(&addr).await;
}

#[actix::test]
async fn an_expired_session_re_registers_with_the_same_seq() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let server = start_zk();
    let connect = server.connect_string();
    let key = new_key();
    let reg = registration(NS, CLUSTER, 31000);
    let bus = EventBus::new(64);
    let mut bus_rx = bus.subscribe();
    let (probe, mut rx) = Probe::start();
    // A short timeout on purpose: the session must expire while ZooKeeper is down.
    let session_timeout = Duration::from_secs(2);
    let addr = start_session(settings(connect.clone(), None, session_timeout), &key, reg.clone(), bus, vec![probe]);
    let first = expect_up(&mut rx, Duration::from_secs(20)).await;

    // ZooKeeper stays down until the client has declared the session expired (it does so after
    // 7/5 of the timeout without contact), so the expiry is real, not simulated.
    let mut server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop();
        server
    })
    .await
    .unwrap();
    expect_lost(&mut rx, 1, Duration::from_secs(15)).await;
    let status = addr.send(GetSessionStatus).await.unwrap();
    assert_eq!((status.state.as_str(), status.generation), ("connecting", 2), "{status:?}");
    server = tokio::task::spawn_blocking(move || {
        server.restart().expect("ZooKeeper restarts");
        server
    })
    .await
    .unwrap();

    let second = expect_up(&mut rx, Duration::from_secs(20)).await;
    assert_eq!(second.generation, 2);
    assert_eq!(second.seq, first.seq);
    assert_ne!(second.session.id(), first.session.id(), "a new session");
    let obs = observer(&server.connect_string()).await;
    assert!(!exists(&obs, &first.node).await, "the expired node is gone");
    let (js, version) = read_node(&obs, &second.node).await.expect("new node");
    assert_eq!(version, 0);
    assert_eq!(js, expected_json(&reg, first.seq, &connect));
    assert_eq!(nodes_of(&obs, &paths::pods_dir(&prefix()), &key).await, [second.node.rsplit('/').next().unwrap()]);
    let states = session_events(&mut bus_rx);
    assert!(states.contains(&("expired".into(), 1)), "{states:?}");
    assert!(states.contains(&("connected".into(), 2)), "{states:?}");

    shutdown(&addr).await;
}

#[actix::test]
async fn shutdown_closes_the_session_at_once() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let server = start_zk();
    let obs = observer(&server.connect_string()).await;
    let key = new_key();
    let bus = EventBus::new(64);
    let mut bus_rx = bus.subscribe();
    let (probe, mut rx) = Probe::start();
    let zk = settings(server.connect_string(), None, Duration::from_secs(20));
    let addr = start_session(zk, &key, registration(NS, CLUSTER, 31000), bus, vec![probe]);
    let up = expect_up(&mut rx, Duration::from_secs(20)).await;
    assert!(exists(&obs, &up.node).await);

    let started = Instant::now();
    shutdown(&addr).await;
    let took = started.elapsed();
    assert!(!exists(&obs, &up.node).await, "the registration is gone when Shutdown replies");
    assert!(took < Duration::from_secs(2), "Shutdown took {took:?}");
    // The session itself is closed, not only the node deleted: every clone is gone.
    assert_eq!(up.states.peek_state(), SessionState::Closed);
    expect_lost(&mut rx, 1, Duration::from_secs(1)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while addr.connected() {
        assert!(Instant::now() < deadline, "the actor did not stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let states = session_events(&mut bus_rx);
    assert_eq!(states.last(), Some(&("closed".to_string(), 1)), "{states:?}");
}

#[actix::test]
async fn keeps_retrying_until_zookeeper_starts() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let mut server = start_zk();
    server.stop();
    let key = new_key();
    let (probe, mut rx) = Probe::start();
    let addr = start_session(
        settings(server.connect_string(), None, TIMEOUT),
        &key,
        registration(NS, CLUSTER, 31000),
        EventBus::default(),
        vec![probe],
    );

    // Several attempts fail meanwhile (the first retries come after 0.1-0.8 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = addr.send(GetSessionStatus).await.unwrap();
    assert_eq!((status.state.as_str(), status.generation, status.seq), ("connecting", 1, None));
    assert!(rx.try_recv().is_err(), "nothing is announced while ZooKeeper is down");

    let server = tokio::task::spawn_blocking(move || {
        server.restart().expect("ZooKeeper starts again");
        server
    })
    .await
    .unwrap();
    let up = expect_up(&mut rx, Duration::from_secs(20)).await;
    assert_eq!(up.generation, 1);
    let obs = observer(&server.connect_string()).await;
    let (js, _) = read_node(&obs, &up.node).await.expect("registered once ZooKeeper is up");
    assert_eq!(js["seq"].as_u64(), Some(up.seq));

    shutdown(&addr).await;
}

#[actix::test]
async fn a_chroot_of_the_target_is_created_and_used() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let server = start_zk();
    let obs = observer(&server.connect_string()).await;
    let (probe_a, mut rx_a) = Probe::start();
    let (probe_b, mut rx_b) = Probe::start();
    let key_a = new_key();
    let key_b = new_key();
    let a = start_session(
        settings(server.connect_string(), Some("/mesos"), TIMEOUT),
        &key_a,
        registration(NS, CLUSTER, 31000),
        EventBus::default(),
        vec![probe_a],
    );
    let b = start_session(
        settings(format!("{}/other/deep", server.connect_string()), None, TIMEOUT),
        &key_b,
        registration(NS, CLUSTER, 31001),
        EventBus::default(),
        vec![probe_b],
    );
    let up_a = expect_up(&mut rx_a, Duration::from_secs(20)).await;
    let up_b = expect_up(&mut rx_b, Duration::from_secs(20)).await;
    // Paths are reported relative to the chroot, as every reader through the same chroot sees them.
    assert!(up_a.node.starts_with("/ochopod/clusters/"), "{}", up_a.node);
    let (js, _) = read_node(&obs, &format!("/mesos{}", up_a.node)).await.expect("node under /mesos");
    assert_eq!(js["seq"].as_u64(), Some(up_a.seq));
    let (js, _) = read_node(&obs, &format!("/other/deep{}", up_b.node)).await.expect("node under /other/deep");
    assert_eq!(js["seq"].as_u64(), Some(up_b.seq));
    assert!(!exists(&obs, "/ochopod").await, "nothing is written outside the chroot");

    shutdown(&a).await;
    shutdown(&b).await;
    assert!(!exists(&obs, &format!("/mesos{}", up_a.node)).await);
}

#[actix::test]
async fn a_short_outage_suspends_then_resumes_the_same_session() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let server = start_zk();
    let key = new_key();
    let (probe, mut rx) = Probe::start();
    // Long enough for the client's reconnect backoff to find the restarted server in time.
    let zk = settings(server.connect_string(), None, Duration::from_secs(20));
    let addr = start_session(zk, &key, registration(NS, CLUSTER, 31000), EventBus::default(), vec![probe]);
    let up = expect_up(&mut rx, Duration::from_secs(20)).await;

    let mut server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop();
        server
    })
    .await
    .unwrap();
    match next(&mut rx, Duration::from_secs(10), "Suspended").await {
        Seen::Suspended(1) => {}
        other => panic!("expected Suspended(1), got {other:?}"),
    }
    assert_eq!(addr.send(GetSessionStatus).await.unwrap().state, "suspended");
    server = tokio::task::spawn_blocking(move || {
        server.restart().expect("ZooKeeper restarts");
        server
    })
    .await
    .unwrap();
    match next(&mut rx, Duration::from_secs(25), "Resumed").await {
        Seen::Resumed(1) => {}
        other => panic!("expected Resumed(1), got {other:?}"),
    }
    let status = addr.send(GetSessionStatus).await.unwrap();
    assert_eq!((status.state.as_str(), status.generation), ("connected", 1));
    let obs = observer(&server.connect_string()).await;
    assert!(exists(&obs, &up.node).await, "the ephemeral survived the outage");

    shutdown(&addr).await;
}
