//! Shared by the leader's integration tests: one real ZooKeeper per test binary, fake pods that
//! record the control requests they get, settings built by hand, and the session played by hand
//! (a real `zookeeper_client::Client` handed to the leader in `SessionEvent::Up`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use ochopod_api::PodClient;
use ochopod_config::*;
use ochopod_core::events::{Event, EventBus, Stamped};
use ochopod_core::view::Pods;
use ochopod_core::{paths, ControlPayload, Registration};
use ochopod_integration::zk::ZkServer;
use ochopod_leader::{GetLeaderStatus, Leader, LeaderStatus};
use ochopod_session::SessionEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zookeeper_client::{Acls, Client, CreateMode};

pub const WAIT: Duration = Duration::from_secs(15);

static ZK: Mutex<Weak<ZkServer>> = Mutex::new(Weak::new());

/// The test binary's ZooKeeper: started by the first test that needs it, stopped when the last
/// test holding it ends. Fails loudly if it cannot start (never skips).
pub fn zk() -> Arc<ZkServer> {
    let mut slot = ZK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(zk) = slot.upgrade() {
        return zk;
    }
    let zk = Arc::new(ZkServer::start().unwrap_or_else(|e| panic!("cannot start ZooKeeper for the test: {e:#}")));
    *slot = Arc::downgrade(&zk);
    zk
}

pub async fn connect(zk: &ZkServer) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&zk.connect_string())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to ZooKeeper at {}: {e}", zk.connect_string()))
}

pub fn settings(namespace: &str, cluster: &str, damper: Duration) -> Settings {
    Settings {
        source: "test.yml".into(),
        cluster: cluster.into(),
        namespace: namespace.into(),
        port: 8080,
        zk: ZkSettings {
            target: ochopod_config::ZkTarget::parse("127.0.0.1:2181").unwrap(),
            session_timeout: Duration::from_secs(10),
        },
        coordination: Default::default(),
        binding: BindingKind::Local,
        debug: false,
        ports: BTreeMap::new(),
        application: String::new(),
        task: String::new(),
        model: ModelSettings {
            min_size: 1,
            depends_on: vec![],
            damper,
            sequential: false,
            full_shutdown: false,
            grace: Duration::from_secs(5),
            probe: None,
        },
        process: None,
        files: vec![],
        hooks: Hooks::default(),
        control: ControlSettings {
            token: None,
            token_source: None,
            protect_reads: false,
            tls: None,
            body_limit: 1 << 20,
            log_lines: 100,
        },
        warnings: vec![],
    }
}

/// A registration whose control API is the fake pod at `port`.
pub fn registration(namespace: &str, cluster: &str, port: u16, seq: u64) -> Registration {
    Registration {
        ip: "127.0.0.1".into(),
        public: "127.0.0.1".into(),
        node: "local".into(),
        ports: [("8080".to_string(), port)].into(),
        port: "8080".into(),
        seq,
        cluster: cluster.into(),
        namespace: namespace.into(),
        ..Default::default()
    }
}

/// Registers a pod as the session actor would (ephemeral-sequential, JSON at create).
pub async fn register(client: &Client, key: &str, reg: &Registration) -> String {
    let prefix = paths::cluster_prefix(&reg.namespace, &reg.cluster);
    let dir = paths::pods_dir(&prefix);
    client.mkdir(&dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.expect("mkdir pods");
    let node = paths::pod_node_prefix(&prefix, key);
    let data = serde_json::to_vec(reg).unwrap();
    let (_, seq) = client
        .create(&node, &data, &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()))
        .await
        .expect("register a pod");
    format!("{node}{seq}")
}

/// Writes a cluster's `snapshot` as its leader would (ephemeral of `client`'s session).
pub async fn write_snapshot(client: &Client, cluster_name: &str, pods: &Pods) {
    let prefix = format!("{}/{cluster_name}", paths::ROOT);
    client.mkdir(&prefix, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.expect("mkdir cluster");
    let path = paths::snapshot_node(&prefix);
    let data = serde_json::to_vec(pods).unwrap();
    match client.set_data(&path, &data, None).await {
        Ok(_) => {}
        Err(zookeeper_client::Error::NoNode) => {
            client
                .create(&path, &data, &CreateMode::Ephemeral.with_acls(Acls::anyone_all()))
                .await
                .expect("create snapshot");
        }
        Err(e) => panic!("write snapshot {path}: {e}"),
    }
}

pub async fn read_json(client: &Client, path: &str) -> serde_json::Value {
    let (data, _) = client.get_data(path).await.unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_slice(&data).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

pub async fn read_string(client: &Client, path: &str) -> String {
    let (data, _) = client.get_data(path).await.unwrap_or_else(|e| panic!("read {path}: {e}"));
    String::from_utf8_lossy(&data).to_string()
}

/// One control request a fake pod received.
#[derive(Clone, Debug)]
pub struct Call {
    pub pod: String,
    pub task: String,
    pub grace: String,
    pub payload: Option<ControlPayload>,
    pub at: Instant,
}

/// What every fake pod of a test records and answers.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Call>>,
    /// Codes answered once each, in order, before falling back to `sticky` or 200.
    queued: Mutex<HashMap<(String, String), VecDeque<u16>>>,
    sticky: Mutex<HashMap<(String, String), u16>>,
    delays: Mutex<HashMap<String, Duration>>,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl Recorder {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn tasks_of(&self, pod: &str) -> Vec<String> {
        self.calls().into_iter().filter(|c| c.pod == pod).map(|c| c.task).collect()
    }

    pub fn count(&self, task: &str) -> usize {
        self.calls().iter().filter(|c| c.task == task).count()
    }

    pub fn answer_once(&self, pod: &str, task: &str, code: u16) {
        self.queued.lock().unwrap().entry((pod.into(), task.into())).or_default().push_back(code);
    }

    pub fn answer_always(&self, pod: &str, task: &str, code: u16) {
        self.sticky.lock().unwrap().insert((pod.into(), task.into()), code);
    }

    /// Every request for `task` takes this long to answer.
    pub fn delay(&self, task: &str, by: Duration) {
        self.delays.lock().unwrap().insert(task.into(), by);
    }

    fn code(&self, pod: &str, task: &str) -> u16 {
        let k = (pod.to_string(), task.to_string());
        if let Some(code) = self.queued.lock().unwrap().get_mut(&k).and_then(VecDeque::pop_front) {
            return code;
        }
        self.sticky.lock().unwrap().get(&k).copied().unwrap_or(200)
    }
}

/// A pod's control API on a loopback port, answering `/control/<task>/<grace>` from the recorder.
pub struct FakePod {
    pub key: String,
    pub port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl FakePod {
    pub async fn start(key: &str, recorder: Arc<Recorder>) -> FakePod {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a fake pod");
        let port = listener.local_addr().unwrap().port();
        let pod = key.to_string();
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, pod.clone(), recorder.clone()));
            }
        });
        FakePod { key: key.into(), port, server }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(mut socket: TcpStream, pod: String, recorder: Arc<Recorder>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    while buf.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut parts = path.trim_start_matches('/').split('/');
    let (_, task, grace) =
        (parts.next(), parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let payload = serde_json::from_slice(&buf[head_end..head_end + length]).ok();
    recorder.calls.lock().unwrap().push(Call {
        pod: pod.clone(),
        task: task.clone(),
        grace,
        payload,
        at: Instant::now(),
    });
    let now = recorder.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    recorder.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let delay = recorder.delays.lock().unwrap().get(&task).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    recorder.in_flight.fetch_sub(1, Ordering::SeqCst);
    let code = recorder.code(&pod, &task);
    let reply = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// A leader for `key`, in its own ZooKeeper session, already told that the session is up.
pub struct TestLeader {
    pub addr: Addr<Leader>,
    pub client: Client,
    pub generation: u64,
    /// Everything the leader published since it started.
    pub events: tokio::sync::Mutex<tokio::sync::broadcast::Receiver<Stamped>>,
}

impl TestLeader {
    pub async fn start(zk: &ZkServer, settings: Settings, key: &str, address: &str) -> TestLeader {
        let client = connect(zk).await;
        let bus = EventBus::new(1024);
        let events = tokio::sync::Mutex::new(bus.subscribe());
        let leader = Leader::new(Arc::new(settings), key.to_string(), address.to_string(), PodClient::new(None), bus);
        let addr = leader.start();
        let generation = 1;
        addr.send(SessionEvent::Up { generation, client: client.clone().into(), seq: 1, node: String::new() })
            .await
            .expect("leader alive");
        TestLeader { addr, client, generation, events }
    }

    /// The next event published that satisfies `ok` (waiting at most [`WAIT`]).
    pub async fn wait_event(&self, what: &str, ok: impl Fn(&Event) -> bool) -> Event {
        let mut rx = self.events.lock().await;
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match rx.recv().await {
                    Ok(stamped) if ok(&stamped.event) => return stamped.event,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("waiting for {what}: {e}"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no event: {what} within {WAIT:?}"))
    }

    pub async fn status(&self) -> LeaderStatus {
        self.addr.send(GetLeaderStatus).await.expect("leader alive")
    }

    /// Waits until the status satisfies `ok`, failing with the last status seen.
    pub async fn wait_for(&self, what: &str, ok: impl Fn(&LeaderStatus) -> bool) -> LeaderStatus {
        let result = ochopod_integration::wait::until(what, WAIT, || async {
            let s = self.status().await;
            if ok(&s) {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        })
        .await;
        result.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn shutdown(&self) {
        self.addr.send(ochopod_leader::Shutdown).await.expect("leader alive");
    }
}

/// Waits until `f` holds.
pub async fn wait_until<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    ochopod_integration::wait::until(what, WAIT, || {
        let r = f();
        async move { r.ok_or_else(|| "not yet".to_string()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
