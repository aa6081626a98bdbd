//! Shared fixtures of the executor's process-level tests: the probe workload, a declaration, a
//! cluster payload, the probe's record, and waiting for conditions with a timeout.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use ochopod_api::Task;
use ochopod_config::*;
use ochopod_core::events::{Event, EventBus};
use ochopod_executor::{Command, Executor, ExecutorStatus, GetStatus, JsonBody, Reply};
use serde_json::{json, Value};

/// The probe binary, built once per test binary with the same cargo.
pub fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "ochopod-probe"])
            .current_dir(&root)
            .status()
            .expect("cannot run cargo to build ochopod-probe");
        assert!(status.success(), "cargo build -p ochopod-probe failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let path = target.join("debug/ochopod-probe");
        assert!(path.exists(), "{} is missing after the build", path.display());
        path.canonicalize().unwrap()
    })
}

pub fn run<F: std::future::Future<Output = ()>>(f: F) {
    // Orphans of the probes come back to the test process and get reaped, as in a real pod.
    ochopod_proc::reaper::install();
    System::new().block_on(f);
}

/// A test's temp folder, its declaration and where the probe records.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub settings: Settings,
}

impl Fixture {
    /// A declaration whose command is `probe <args>` (a template), recording into the fixture.
    pub fn new(args: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let command = format!("{} {args}", probe().display());
        let mut settings = base_settings(dir.path(), Some(&command));
        let record = dir.path().join("record.jsonl");
        settings.process.as_mut().unwrap().env.insert("PROBE_RECORD".into(), record.display().to_string());
        Fixture { dir, settings }
    }

    pub fn sidecar() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = base_settings(dir.path(), None);
        Fixture { dir, settings }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn process(&mut self) -> &mut ProcessSettings {
        self.settings.process.as_mut().unwrap()
    }

    pub fn hook(command: &str) -> Option<Hook> {
        Some(Hook { command: command.into(), timeout: Duration::from_secs(5) })
    }

    pub fn start(&self) -> (Addr<Executor>, EventBus) {
        self.start_with_env(&[])
    }

    /// As [`Fixture::start`], with more variables in the pod's environment.
    pub fn start_with_env(&self, extra: &[(&str, &str)]) -> (Addr<Executor>, EventBus) {
        let events = EventBus::new(1024);
        let mut env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k == "PATH" || k == "HOME").collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let addr = Executor::with_env(Arc::new(self.settings.clone()), events.clone(), env).start();
        (addr, events)
    }

    /// Everything the probe(s) recorded so far.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("record.jsonl")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["event"] == kind).collect()
    }

    pub async fn wait_records(&self, what: &str, timeout: Duration, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.records();
            if f(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the probe recorded {r:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The unit tests' declaration, anchored in `dir`, with a short backoff cap so restart tests
/// see several restarts quickly.
fn base_settings(dir: &Path, command: Option<&str>) -> Settings {
    let mut settings = ochopod_executor::testing::settings(command);
    settings.source = dir.join("pod.yml");
    if let Some(p) = settings.process.as_mut() {
        p.restart.max_delay = Duration::from_millis(500);
    }
    settings
}

fn reg(ip: &str, seq: u64, ports: &[(u16, u16)]) -> Value {
    let ports: BTreeMap<String, u16> = ports.iter().map(|(c, h)| (c.to_string(), *h)).collect();
    json!({"ip": ip, "public": ip, "seq": seq, "ports": ports, "port": "8080", "cluster": "web", "namespace": "test"})
}

/// Pods `a` and `b` (this pod: index 1, seq 7) and a `zookeeper` dependency.
pub fn payload(epoch: Option<u64>) -> Value {
    let mut p = json!({
        "pods": {
            "b": reg("127.0.0.1", 7, &[(8080, 8080), (2888, 2888)]),
            "a": reg("127.0.0.2", 9, &[(8080, 8080), (2888, 2888)]),
        },
        "dependencies": {"zookeeper": {
            "z1": reg("10.0.1.1", 1, &[(2181, 31001)]),
            "z2": reg("10.0.1.2", 2, &[(2181, 31002)]),
        }},
        "key": "b",
    });
    if let Some(e) = epoch {
        p["epoch"] = json!(e);
    }
    p
}

pub async fn send(addr: &Addr<Executor>, task: Task, body: Option<Value>) -> Reply {
    let cmd = Command { task, body: body.as_ref().map(JsonBody::from) };
    tokio::time::timeout(Duration::from_secs(15), addr.send(cmd))
        .await
        .unwrap_or_else(|_| panic!("{task} got no reply within 15 s"))
        .expect("the executor is gone")
}

pub fn ok() -> Reply {
    Reply::Ok(json!({}))
}

pub async fn status(addr: &Addr<Executor>) -> ExecutorStatus {
    addr.send(GetStatus).await.expect("the executor is gone")
}

pub async fn wait_status(
    addr: &Addr<Executor>,
    what: &str,
    timeout: Duration,
    f: impl Fn(&ExecutorStatus) -> bool,
) -> ExecutorStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(addr).await;
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; status {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every event published so far on a subscription.
pub fn drain(rx: &mut tokio::sync::broadcast::Receiver<ochopod_core::events::Stamped>) -> Vec<Event> {
    let mut out = vec![];
    while let Ok(s) = rx.try_recv() {
        out.push(s.event);
    }
    out
}

/// Alive and not a zombie.
pub fn alive(pid: i64) -> bool {
    ochopod_proc::stat::alive(pid as i32)
}

pub async fn wait_gone(pid: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} is still alive after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kill what a test left running (a leaked `soft` child).
pub fn kill_group(pgid: i64) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), nix::sys::signal::Signal::SIGKILL);
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
