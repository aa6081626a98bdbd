//! Shared pieces of the session tests: a probe subscriber that records what it is told (and, like
//! the leader, holds the client until `Lost`), a read-only observer of the pods dir, and waits
//! that always time out with a message.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use ochopod_core::{paths, Registration};
use ochopod_session::SessionEvent;
use tokio::sync::mpsc;
use zookeeper_client::{AddWatchMode, Client, EventType, SessionInfo, StateWatcher};

/// ZooKeeper servers are JVMs: running every test's at once on a 2-core machine makes timings
/// meaningless, so the tests of this binary take turns.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn start_zk() -> ochopod_integration::zk::ZkServer {
    ochopod_integration::zk::ZkServer::start().expect("these tests need a real ZooKeeper and could not start one")
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_test_writer()
        .try_init();
}

#[derive(Debug)]
pub enum Seen {
    Up { generation: u64, seq: u64, node: String, session: SessionInfo, states: StateWatcher },
    Suspended(u64),
    Resumed(u64),
    Lost(u64),
}

pub struct Probe {
    tx: mpsc::UnboundedSender<Seen>,
    client: Option<Client>,
}

impl Probe {
    pub fn start() -> (Recipient<SessionEvent>, mpsc::UnboundedReceiver<Seen>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Probe { tx, client: None }.start().recipient(), rx)
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<SessionEvent> for Probe {
    type Result = ();

    fn handle(&mut self, ev: SessionEvent, _: &mut Self::Context) {
        let seen = match ev {
            SessionEvent::Up { generation, client, seq, node } => {
                let ochopod_session::Link::Zk(client) = client else { panic!("these tests run on ZooKeeper") };
                let seen = Seen::Up {
                    generation,
                    seq,
                    node,
                    session: client.session().clone(),
                    states: client.state_watcher(),
                };
                self.client = Some(client);
                seen
            }
            SessionEvent::Suspended { generation } => Seen::Suspended(generation),
            SessionEvent::Resumed { generation } => Seen::Resumed(generation),
            SessionEvent::Lost { generation } => {
                self.client = None;
                Seen::Lost(generation)
            }
        };
        let _ = self.tx.send(seen);
    }
}

pub async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>, within: Duration, what: &str) -> Seen {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Some(seen)) => seen,
        Ok(None) => panic!("the probe stopped while waiting for {what}"),
        Err(_) => panic!("no session event within {within:?} while waiting for {what}"),
    }
}

pub struct Up {
    pub generation: u64,
    pub seq: u64,
    pub node: String,
    pub session: SessionInfo,
    pub states: StateWatcher,
}

/// The next event, which must be `Up`.
pub async fn expect_up(rx: &mut mpsc::UnboundedReceiver<Seen>, within: Duration) -> Up {
    match next(rx, within, "Up").await {
        Seen::Up { generation, seq, node, session, states } => Up { generation, seq, node, session, states },
        other => panic!("expected Up, got {other:?}"),
    }
}

/// The next `Lost`, skipping `Suspended`/`Resumed` of the same generation (connection blips
/// before a loss are allowed).
pub async fn expect_lost(rx: &mut mpsc::UnboundedReceiver<Seen>, generation: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(rx, left, "Lost").await {
            Seen::Lost(g) if g == generation => return,
            Seen::Suspended(g) | Seen::Resumed(g) if g == generation => continue,
            other => panic!("expected Lost({generation}), got {other:?}"),
        }
    }
}

pub fn registration(namespace: &str, cluster: &str, control_host_port: u16) -> Registration {
    let mut r = Registration {
        ip: "127.0.0.1".into(),
        public: "127.0.0.2".into(),
        node: "local".into(),
        port: "8080".into(),
        cluster: cluster.into(),
        namespace: namespace.into(),
        application: "app-1".into(),
        task: "task-1".into(),
        fwk: "local".into(),
        zk: "127.0.0.1:2181".into(),
        debug: "false".into(),
        start: "true".into(),
        local: "true".into(),
        ..Default::default()
    };
    r.ports.insert("8080".into(), control_host_port);
    r
}

pub async fn observer(connect: &str) -> Client {
    tokio::time::timeout(Duration::from_secs(10), Client::connect(connect))
        .await
        .expect("observer connect timed out")
        .expect("observer connects")
}

/// The registration at `path` (absolute, from the root), with its data version.
pub async fn read_node(zk: &Client, path: &str) -> Option<(serde_json::Value, i32)> {
    match tokio::time::timeout(Duration::from_secs(5), zk.get_data(path)).await.expect("get_data timed out") {
        Ok((data, stat)) => {
            let js = serde_json::from_slice(&data)
                .unwrap_or_else(|e| panic!("{path} holds no JSON ({e}): {:?}", String::from_utf8_lossy(&data)));
            Some((js, stat.version))
        }
        Err(zookeeper_client::Error::NoNode) => None,
        Err(e) => panic!("get_data {path}: {e}"),
    }
}

pub async fn exists(zk: &Client, path: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(5), zk.check_stat(path))
        .await
        .expect("check_stat timed out")
        .expect("check_stat")
        .is_some()
}

/// Children of the pods dir that belong to `key`.
pub async fn nodes_of(zk: &Client, pods_dir: &str, key: &str) -> Vec<String> {
    let mut v: Vec<String> = tokio::time::timeout(Duration::from_secs(5), zk.list_children(pods_dir))
        .await
        .expect("list timed out")
        .expect("list")
        .into_iter()
        .filter(|n| paths::pod_key(n) == key)
        .collect();
    v.sort();
    v
}

pub type DataAndVersion = (Vec<u8>, i32);

/// What a reader racing the pods saw: for each node-created event, the node's data read right
/// away (`None` if already gone), plus any data change (which must never happen).
#[derive(Debug, Default)]
pub struct Sightings {
    pub created: Vec<(String, Option<DataAndVersion>)>,
    pub data_changed: Vec<String>,
}

/// A persistent recursive watch on `dir` (which must exist) that records [`Sightings`].
pub async fn watch_pods(zk: Client, dir: String) -> Arc<Mutex<Sightings>> {
    let seen = Arc::new(Mutex::new(Sightings::default()));
    let mut watcher = zk.watch(&dir, AddWatchMode::PersistentRecursive).await.expect("persistent watch on pods");
    let out = Arc::clone(&seen);
    actix::spawn(async move {
        loop {
            let ev = watcher.changed().await;
            match ev.event_type {
                EventType::NodeCreated => {
                    let got = zk.get_data(&ev.path).await.ok().map(|(d, s)| (d, s.version));
                    out.lock().unwrap().created.push((ev.path, got));
                }
                EventType::NodeDataChanged => out.lock().unwrap().data_changed.push(ev.path),
                EventType::Session if ev.session_state.is_terminated() => break,
                _ => {}
            }
        }
    });
    seen
}

pub fn sequence_of(node: &str) -> u64 {
    paths::sequence_of(node).unwrap_or_else(|| panic!("{node} has no sequence"))
}
