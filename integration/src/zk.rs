//! A real ZooKeeper server for tests, from the Debian `zookeeper` package.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::ports::free_port;
use crate::wait;

/// Where the Debian package puts the server classes and its configuration folder.
pub const JAR: &str = "/usr/share/java/zookeeper.jar";
pub const CONF_DIR: &str = "/etc/zookeeper/conf";
const MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

const INSTALL_HINT: &str = "install it with `make setup` (or `apt-get update && apt-get install -y zookeeper`)";

/// A standalone ZooKeeper on `127.0.0.1:<port>` (or another address of this host), data in a
/// temp dir, stopped by pid on drop.
pub struct ZkServer {
    port: u16,
    address: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Checks that Java and the ZooKeeper jar are here, with an error saying how to install them.
pub fn check_installed() -> anyhow::Result<()> {
    if !Path::new(JAR).exists() {
        bail!("ZooKeeper is not installed ({JAR} is missing): {INSTALL_HINT}");
    }
    if Command::new("java").arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        bail!("java is not on the PATH: install a JRE (`apt-get install -y default-jre-headless`)");
    }
    Ok(())
}

impl ZkServer {
    /// Starts a server on a free loopback port and waits until it serves requests.
    pub fn start() -> anyhow::Result<ZkServer> {
        Self::start_on("127.0.0.1")
    }

    /// Starts a server listening on `address` (e.g. the host end of a test's veth, so that a
    /// network namespace reaches it) and waits until it serves requests.
    pub fn start_on(address: &str) -> anyhow::Result<ZkServer> {
        check_installed()?;
        let dir = tempfile::Builder::new().prefix("ochopod-zk-").tempdir().context("temp dir for ZooKeeper")?;
        let mut zk = ZkServer { port: free_port(), address: address.to_string(), dir, child: None };
        zk.spawn()?;
        Ok(zk)
    }

    fn cfg_path(&self) -> PathBuf {
        self.dir.path().join("zoo.cfg")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let data = self.dir.path().join("data");
        fs::create_dir_all(&data)?;
        // A short tick lets tests use short session timeouts (the server clamps them to
        // [min, max]); max is raised so the 15 s default is honoured too. The admin server is off:
        // it would take port 8080, which pods use.
        let cfg = format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\nclientPortAddress={}\n\
             minSessionTimeout=1000\nmaxSessionTimeout=60000\n4lw.commands.whitelist=*\nadmin.enableServer=false\n\
             maxClientCnxns=0\n",
            data.display(),
            self.port,
            self.address
        );
        fs::write(self.cfg_path(), cfg)?;
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("zookeeper.log"))?;
        let child = Command::new("java")
            .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k"])
            .arg("-Dzookeeper.admin.enableServer=false")
            .arg(format!("-Dzookeeper.log.dir={}", self.dir.path().display()))
            .arg("-cp")
            .arg(format!("{CONF_DIR}:{JAR}"))
            .arg(MAIN)
            .arg(self.cfg_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting java for ZooKeeper; {INSTALL_HINT}"))?;
        self.child = Some(child);
        let connect = self.connect_string();
        // `ruok` answers `imok` as soon as the port is open, before the server serves requests;
        // `srvr` reports a `Mode:` only once it does.
        let res = wait::until_blocking("ZooKeeper to serve requests", Duration::from_secs(60), || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("java exited early ({status})"));
                }
            }
            match four_letter_at(&connect, "srvr") {
                Ok(s) if s.contains("Mode:") => Ok(()),
                Ok(s) => Err(format!("answered {s:?}")),
                Err(e) => Err(e.to_string()),
            }
        });
        if let Err(e) = res {
            let log = fs::read_to_string(self.dir.path().join("zookeeper.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            self.stop();
            bail!("{e}\nZooKeeper log (last lines, newest first):\n{}", tail.join("\n"));
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `<address>:<port>`.
    pub fn connect_string(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a four-letter word (`ruok`, `srvr`, `mntr`, `dump`, `cons`…) and returns the answer.
    pub fn four_letter(&self, word: &str) -> anyhow::Result<String> {
        four_letter_at(&self.connect_string(), word)
    }

    /// Stops the server by pid (SIGTERM, then SIGKILL after 5 s) and waits for it. Data is kept,
    /// so [`ZkServer::restart`] brings back the same tree and sessions that have not expired.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(5));
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Starts the server again on the same port with no data at all: ZooKeeper restored from
    /// nothing (every session, node and sequence counter gone).
    pub fn wipe_and_restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let data = self.dir.path().join("data");
        if data.exists() {
            fs::remove_dir_all(&data).context("wiping ZooKeeper's data")?;
        }
        self.spawn()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
pub fn stop_child(child: &mut Child, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id() as i32);
    if let Ok(None) = child.try_wait() {
        let _ = kill(pid, Signal::SIGTERM);
        let gone = wait::until_blocking("process exit", grace, || match child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("still running".into()),
        });
        if gone.is_err() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    let _ = child.wait();
}

/// A four-letter word against `127.0.0.1:<port>`.
pub fn four_letter(port: u16, word: &str) -> anyhow::Result<String> {
    four_letter_at(&format!("127.0.0.1:{port}"), word)
}

pub fn four_letter_at(address: &str, word: &str) -> anyhow::Result<String> {
    let addr = address.parse().with_context(|| format!("bad address {address}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(word.as_bytes())?;
    let _ = s.shutdown(Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Parses `mntr` output (tab-separated `key value` lines).
pub fn parse_mntr(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('\t')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}
