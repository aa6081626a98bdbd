//! Real pods: the `ochopod` binary started with a declaration, on claimed ports, stopped by pid.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ochopod_api::{Info, PodClient};

use crate::ports::free_port;
use crate::wait;
use crate::zk::stop_child;

/// The folder holding the binaries of this build (`target/debug` or `target/release`), found from
/// the running executable — a test (`target/debug/deps/<test>`) or a binary (`target/release/<bin>`)
/// — so it works with any target dir and profile.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    let dir = exe.parent().expect("executable folder");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The `ochopod` binary of this build.
pub fn ochopod_bin() -> anyhow::Result<PathBuf> {
    let p = bin_dir().join("ochopod");
    if !p.exists() {
        bail!("{} is missing: build it first with `cargo build -p ochopod` (make test does)", p.display());
    }
    Ok(p)
}

/// The probe workload binary, built by `cargo build --workspace --bins` (`make test` does).
pub fn probe_bin() -> anyhow::Result<PathBuf> {
    let p = bin_dir().join("ochopod-probe");
    if !p.exists() {
        bail!("{} is missing: build it first with `cargo build -p ochopod-probe` (make test does)", p.display());
    }
    Ok(p)
}

/// A running `ochopod run` process.
pub struct Pod {
    child: Option<Child>,
    /// The host port its control API listens on (`PORT_8080`).
    pub control_port: u16,
    /// The pod's own folder: its declaration, its stdout/stderr log, anything the test puts there.
    pub dir: tempfile::TempDir,
    /// The ZooKeeper it was told to use (`OCHOPOD_ZK`).
    pub zk: String,
    client: PodClient,
}

/// How to start one pod.
pub struct PodSpec<'a> {
    pub bin: &'a Path,
    pub zk: &'a str,
    /// The YAML declaration.
    pub yaml: &'a str,
    /// Extra environment (e.g. `PORT_2181`), on top of `OCHOPOD_ZK` and `PORT_<control>`.
    pub env: Vec<(String, String)>,
    /// The container control port declared in the YAML (default 8080).
    pub control_port: u16,
}

impl<'a> PodSpec<'a> {
    pub fn new(bin: &'a Path, zk: &'a str, yaml: &'a str) -> Self {
        PodSpec { bin, zk, yaml, env: Vec::new(), control_port: 8080 }
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

impl Pod {
    pub fn start(spec: PodSpec<'_>) -> anyhow::Result<Pod> {
        let dir = tempfile::Builder::new().prefix("ochopod-pod-").tempdir()?;
        let yaml_path = dir.path().join("pod.yaml");
        fs::write(&yaml_path, spec.yaml)?;
        let host_port = free_port();
        let log = fs::File::create(dir.path().join("pod.log"))?;
        let mut cmd = Command::new(spec.bin);
        cmd.arg("run")
            .arg(&yaml_path)
            .current_dir(dir.path())
            .env("OCHOPOD_ZK", spec.zk)
            .env(format!("PORT_{}", spec.control_port), host_port.to_string())
            .env("POD_DIR", dir.path())
            // Platform detection reads files such as /.dockerenv: a test machine may be a
            // container, and a test pod must stay on loopback unless the test says otherwise.
            .env("OCHOPOD_PLATFORM_ROOT", dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", spec.bin.display()))?;
        Ok(Pod {
            child: Some(child),
            control_port: host_port,
            dir,
            zk: spec.zk.to_string(),
            client: PodClient::new(None),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.control_port)
    }

    pub fn client(&self) -> &PodClient {
        &self.client
    }

    pub async fn info(&self) -> anyhow::Result<Info> {
        Ok(self.client.info(&self.address(), Duration::from_secs(2)).await?)
    }

    /// Waits until `/info` satisfies `check` (which returns why not, for the failure message).
    pub async fn wait_info(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Info) -> Result<(), String>,
    ) -> anyhow::Result<Info> {
        wait::until(what, timeout, || async {
            let info = self.info().await.map_err(|e| e.to_string())?;
            check(&info).map(|_| info.clone()).map_err(|why| format!("{why} (info: {info:?})"))
        })
        .await
        .with_context(|| format!("pod {} log:\n{}", self.address(), self.log_tail(30)))
    }

    /// Everything the pod printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pod.log")).unwrap_or_default()
    }

    /// The last `n` lines the pod printed.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(self.dir.path().join("pod.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// Waits for the pod to exit on its own (after a signal sent by the test).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let child = self.child.as_mut().context("pod already reaped")?;
        let status = wait::until_blocking("pod exit", timeout, || match child.try_wait() {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("still running".into()),
            Err(e) => Err(e.to_string()),
        })?;
        self.child = None;
        Ok(status)
    }

    /// SIGKILL the pod and every process below it, like a container that dies: nothing gets a
    /// chance to clean up, and the supervised process (in its own process group) dies too, so a
    /// test leaves no orphan behind.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let tree = descendants(c.id());
            let _ = c.kill();
            for pid in tree {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    /// Every process below this pod (children, grandchildren…), from /proc.
    pub fn descendants(&self) -> Vec<u32> {
        descendants(self.pid())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGCONT first: a test may have left it stopped, and a stopped process ignores TERM.
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            let tree = descendants(c.id());
            stop_child(&mut c, Duration::from_secs(10));
            // A graceful stop tears the process down; whatever is left (a stuck pod, a test
            // that broke it on purpose) must not outlive the test.
            for pid in tree.into_iter().filter(|p| Path::new(&format!("/proc/{p}")).exists()) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// Every process whose ancestry leads to `root`, from /proc (parsed by `ochopod_proc::stat`).
pub fn descendants(root: u32) -> Vec<u32> {
    ochopod_proc::stat::descendants(root as i32).into_iter().map(|p| p as u32).collect()
}

/// The one-letter state of a process (`R`, `S`, `T`, `Z`…), if it exists.
pub fn state_of(pid: u32) -> Option<char> {
    ochopod_proc::stat::read(pid as i32).map(|s| s.state)
}

/// The zombies among the processes below `root`.
pub fn zombies_under(root: u32) -> Vec<u32> {
    descendants(root).into_iter().filter(|pid| state_of(*pid) == Some('Z')).collect()
}
