//! The harness of `make e2e`: pods as containers on a real Docker engine, driven through the
//! Docker CLI.
//!
//! # Theory of operation
//!
//! A [`Run`] owns every engine resource of one test the way the process harness owns ZooKeeper:
//! each container, network and volume it creates carries two labels, the run of `make e2e`
//! (`org.ochopod.e2e=<run>`, from `OCHOPOD_E2E_RUN`) and the test (`org.ochopod.e2e.test=<id>`).
//! Dropping the `Run` — at the end of the test or while a failing assertion unwinds — prints the
//! logs of every container when the test failed, then removes everything that carries the test's
//! label. `make e2e` removes what carries the run's label once more at the end, for a test process
//! killed before its guard could run.
//!
//! The images are the ones `make image` builds: a test never builds or pulls one. Containers
//! are reached from the host at their address on the test's own network (or at the ports they
//! publish), and observed with the system's own tools run inside them (`docker exec`: `srvr`,
//! `ps`, the pod's `/events` through loopback, which works even while a container is cut off).
//!
//! The Docker CLI rather than an API crate: every step is a command an operator would type,
//! printed in a failure, and the engine here (20.10, API 1.41) is older than current clients
//! assume.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use ochopod_integration::wait::until;

/// The runtime image: the binary, its libraries, CA certificates and busybox.
pub const OCHOPOD: &str = "ochopod:latest";
/// The Debian base (ZooKeeper, a JRE, python3, nginx, procps): the coordination ZooKeeper.
pub const BASE: &str = "ochopod-base:latest";
/// examples/zookeeper-ensemble/Dockerfile.
pub const ZOOKEEPER: &str = "ochopod-zookeeper:latest";
/// examples/sidecar/Dockerfile.
pub const SIDECAR: &str = "ochopod-sidecar:latest";
/// examples/dependent/Dockerfile.
pub const WATCHER: &str = "ochopod-watcher:latest";

pub const RUN_LABEL: &str = "org.ochopod.e2e";
pub const TEST_LABEL: &str = "org.ochopod.e2e.test";

/// No engine command may hang a test: each is cut off after this long.
const DOCKER_TIMEOUT: &str = "120";

/// Runs `docker <args>` (cut off after two minutes); its trimmed stdout, or an error holding the
/// command and its stderr.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["-k", "5", DOCKER_TIMEOUT, "docker"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`docker`], panicking with the command on failure: for steps the test cannot go on without.
pub fn must(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One test's engine resources; see the crate documentation.
pub struct Run {
    /// `e2e-<test>-<nonce>`: prefixes every name, and is the value of the test label.
    pub id: String,
    run: String,
    /// Declarations and other files bind-mounted into containers.
    pub dir: tempfile::TempDir,
}

impl Run {
    /// Checks the engine and the images, or fails with what to install or build.
    pub fn new(test: &str) -> Run {
        if let Err(e) = docker(&["info", "--format", "{{.ServerVersion}}"]) {
            panic!(
                "the end-to-end suite needs a running Docker engine that this user may use: {e}\n\
                 install it with `apt-get install docker.io` (and start it: `systemctl start docker`), \
                 then run `make e2e`"
            );
        }
        for image in [OCHOPOD, BASE, ZOOKEEPER, SIDECAR, WATCHER] {
            if docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_err() {
                panic!("image {image} is missing: run `make image` first (`make e2e` does)");
            }
        }
        let nonce = format!("{:x}", (unix_ms() % 0xff_ffff) ^ u64::from(std::process::id()));
        let run = std::env::var("OCHOPOD_E2E_RUN").unwrap_or_else(|_| format!("adhoc-{nonce}"));
        Run { id: format!("e2e-{test}-{nonce}"), run, dir: tempfile::tempdir().expect("temp dir") }
    }

    fn labels(&self) -> [String; 4] {
        ["--label".into(), format!("{RUN_LABEL}={}", self.run), "--label".into(), format!("{TEST_LABEL}={}", self.id)]
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.id)
    }

    /// A user-defined bridge network with a subnet of its own (so a container reconnected after
    /// a partition gets its address back), removed with the run.
    pub fn network(&self, what: &str) -> Net {
        let name = self.name(what);
        let mut last = String::new();
        // A /24 in 172.29.0.0/16 not taken by another network (another run, another engineer's).
        for attempt in 0..32u64 {
            let third = (unix_ms() / 7 + attempt * 37 + u64::from(std::process::id())) % 256;
            let subnet = format!("172.29.{third}.0/24");
            let gateway = Ipv4Addr::new(172, 29, third as u8, 1);
            let mut args: Vec<String> = vec!["network".into(), "create".into()];
            args.extend(self.labels());
            args.extend(["--subnet".into(), subnet.clone(), "--gateway".into(), gateway.to_string(), name.clone()]);
            match docker(&args.iter().map(String::as_str).collect::<Vec<_>>()) {
                Ok(_) => return Net { name, gateway },
                Err(e) => last = e,
            }
        }
        panic!("no free subnet for network {name}: {last}");
    }

    /// A named volume, removed with the run.
    pub fn volume(&self, what: &str) -> String {
        let name = self.name(what);
        let mut args: Vec<String> = vec!["volume".into(), "create".into()];
        args.extend(self.labels());
        args.push(name.clone());
        must(&args.iter().map(String::as_str).collect::<Vec<_>>());
        name
    }

    /// Writes `text` under the run's folder, for a bind mount; returns the host path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a file for a bind mount");
        path.display().to_string()
    }

    /// Starts a container (detached) from `spec`.
    pub fn start(&self, spec: Spec) -> Container {
        let name = self.name(&spec.what);
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.clone()];
        args.extend(self.labels());
        args.extend(spec.args);
        args.push(spec.image);
        args.extend(spec.cmd);
        let id = must(&args.iter().map(String::as_str).collect::<Vec<_>>());
        Container { name, id }
    }

    /// The coordination ZooKeeper the pods register in: a standalone server of the Debian base,
    /// with a short tick so that sessions expire close to their timeout. Returns once it serves.
    pub async fn coordination_zk(&self, net: &Net) -> Container {
        let script = "mkdir -p /tmp/zk && printf '%s\\n' tickTime=250 dataDir=/tmp/zk clientPort=2181 \
                      maxSessionTimeout=60000 4lw.commands.whitelist=* admin.enableServer=false > /tmp/zoo.cfg && \
                      exec java -Xmx128m -XX:+UseSerialGC -Dzookeeper.root.logger=WARN,CONSOLE \
                      -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
                      org.apache.zookeeper.server.quorum.QuorumPeerMain /tmp/zoo.cfg";
        let zk = self.start(Spec::new("zk", BASE).network(net).hostname("zk").cmd(&["bash", "-c", script]));
        until("the coordination ZooKeeper to serve", Duration::from_secs(60), || async {
            match zk.four(2181, "ruok") {
                Ok(r) if r.contains("imok") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        zk
    }

    /// Every container of this test, oldest first.
    pub fn containers(&self) -> Vec<String> {
        let filter = format!("label={TEST_LABEL}={}", self.id);
        let mut names: Vec<String> = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        names.reverse();
        names
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let filter = format!("label={TEST_LABEL}={}", self.id);
        if std::thread::panicking() {
            for name in self.containers() {
                let state = docker(&["inspect", "--format", "{{.State.Status}} exit {{.State.ExitCode}}", &name])
                    .unwrap_or_default();
                let logs = Command::new("docker")
                    .args(["logs", "--tail", "80", &name])
                    .output()
                    .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
                    .unwrap_or_default();
                eprintln!("---- container {name} ({state}), last 80 lines:\n{logs}");
            }
        }
        // Containers first: a network or volume in use cannot be removed.
        let ids = docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(&ids);
            if let Err(e) = docker(&args) {
                eprintln!("cleanup: {e}");
            }
        }
        for kind in ["network", "volume"] {
            let names = docker(&[kind, "ls", "-q", "--filter", &filter]).unwrap_or_default();
            for name in names.split_whitespace() {
                if let Err(e) = docker(&[kind, "rm", name]) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
    }
}

/// A network of the run.
#[derive(Clone, Debug)]
pub struct Net {
    pub name: String,
    /// The host's address on this network: where published ports are reached from containers.
    pub gateway: Ipv4Addr,
}

/// What to start: `docker run` arguments in the order given, then the image and its command.
#[derive(Clone, Debug)]
pub struct Spec {
    what: String,
    image: String,
    args: Vec<String>,
    cmd: Vec<String>,
}

impl Spec {
    pub fn new(what: &str, image: &str) -> Spec {
        Spec { what: what.into(), image: image.into(), args: Vec::new(), cmd: Vec::new() }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn network(self, net: &Net) -> Self {
        self.arg("--network").arg(net.name.clone())
    }
    pub fn hostname(self, h: &str) -> Self {
        self.arg("--hostname").arg(h)
    }
    pub fn env(self, k: &str, v: impl std::fmt::Display) -> Self {
        self.arg("-e").arg(format!("{k}={v}"))
    }
    /// `-v <source>:<target>[:ro]`.
    pub fn mount(self, m: impl Into<String>) -> Self {
        self.arg("-v").arg(m)
    }
    /// Publishes a container port on a given host port (on every host address).
    pub fn publish(self, host: u16, container: u16) -> Self {
        self.arg("-p").arg(format!("{host}:{container}"))
    }
    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// A started container.
#[derive(Clone, Debug)]
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    /// `docker exec <container> <cmd>`: its stdout.
    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend(cmd);
        docker(&args)
    }

    /// A ZooKeeper four-letter word to `127.0.0.1:<port>` inside the container (bash's /dev/tcp),
    /// cut off after 5 s: a server that accepted but is still starting may never answer.
    pub fn four(&self, port: u16, word: &str) -> Result<String, String> {
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && printf {word} >&3 && cat <&3");
        self.exec(&["timeout", "5", "bash", "-c", &script])
    }

    /// The container's address on `net`.
    pub fn ip(&self, net: &Net) -> Ipv4Addr {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}", net.name);
        let ip = must(&["inspect", "--format", &format, &self.name]);
        ip.parse().unwrap_or_else(|_| panic!("{}: no address on {} ({ip:?})", self.name, net.name))
    }

    /// `State.Status` (`running`, `exited`…) and `State.ExitCode`.
    pub fn state(&self) -> (String, i64) {
        let s = must(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", &self.name]);
        let (status, code) = s.split_once(' ').unwrap_or((&s, "-1"));
        (status.to_string(), code.parse().unwrap_or(-1))
    }

    pub fn logs(&self) -> String {
        Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_default()
    }

    /// Processes inside, from `ps` in the container: `(pid, stat, command line)`.
    pub fn processes(&self) -> Vec<(u32, String, String)> {
        // busybox's ps (the runtime image has no procps) takes the same -o list.
        let out = self
            .exec(&["ps", "-o", "pid,stat,args"])
            .or_else(|_| self.exec(&["busybox", "ps", "-o", "pid,stat,args"]))
            .unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.to_string(), f.collect::<Vec<_>>().join(" ")))
            })
            .collect()
    }

    /// Zombies inside the container (`Z` in `ps`), as `pid stat command` lines.
    pub fn zombies(&self) -> Vec<String> {
        self.processes()
            .into_iter()
            .filter(|(_, stat, _)| stat.starts_with('Z'))
            .map(|(pid, stat, comm)| format!("{pid} {stat} {comm}"))
            .collect()
    }

    /// Follows the pod's `/events` from inside the container (busybox wget on loopback), so the
    /// stream survives the container being cut off from its network.
    pub fn follow_events(&self, control_port: u16) -> Events {
        let url = format!("http://127.0.0.1:{control_port}/events");
        let mut child = Command::new("docker")
            .args(["exec", &self.name, "busybox", "wget", "-q", "-O", "-", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker exec for /events");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(json) = line.strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(json.trim()) {
                        sink.lock().unwrap().push(v);
                    }
                }
            }
        });
        Events { pod: self.name.clone(), seen, child }
    }
}

/// A pod's `/events`, as received so far.
pub struct Events {
    pub pod: String,
    seen: Arc<Mutex<Vec<Value>>>,
    child: Child,
}

impl Events {
    pub fn all(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
    /// The events named `kind` (`leadership`, `round`, `configured`…).
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.all().into_iter().filter(|e| e["event"] == kind).collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET <url>` as JSON, with a short timeout.
pub async fn get_json(url: &str) -> Result<Value, String> {
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string())?;
    let reply = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = reply.status();
    let text = reply.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))
}

/// `GET <url>` as text.
pub async fn get_text(url: &str) -> Result<String, String> {
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string())?;
    let reply = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
    reply.text().await.map_err(|e| format!("{url}: {e}"))
}

/// A free TCP port on the host, for `-p <port>:<container port>` (what a scheduler that hands
/// out host ports does).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("0.0.0.0", 0)).and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The `ochopod` binary on the host (the CLI): `OCHOPOD_BIN`, else the release build that
/// `make image` put into the image.
pub fn host_cli() -> String {
    std::env::var("OCHOPOD_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/ochopod").to_string())
}

/// Runs the host CLI; `(exit code, stdout, stderr)`.
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(host_cli())
        .args(args)
        .env_remove("OCHOPOD_ZK")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} {}: {e} (make image builds it)", host_cli(), args.join(" ")));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The declaration of the tests' light pods (the runtime image, busybox for the process): a
/// process tree that leaves an orphan behind for PID 1 to reap, a rendered `view.txt`
/// (`<key> <index> <seq> <size> <epoch>`), and a web page on 9000 saying which pod it is.
pub fn light_yaml(cluster: &str, session: Duration) -> String {
    format!(
        r#"cluster: {cluster}
namespace: e2e
ports: [9000]
zk_session_timeout: {session}s
model:
  damper: 0s
  grace: 10s
process:
  # A tree (a shell, a web server, a sleep) and an orphan: `(sleep &)` exits at once and its
  # child is re-parented to PID 1, which must reap it.
  command: busybox httpd -f -p 9000 -h www & (busybox sleep 0.3 &); busybox sleep 3600; wait
  shell: true
  grace: 3s
files:
  - path: view.txt
    template: "{{{{ key }}}} {{{{ index }}}} {{{{ seq }}}} {{{{ size }}}} {{{{ epoch }}}}"
  - path: www/index.html
    template: "pod {{{{ seq }}}} of {{{{ size }}}}"
"#,
        session = session.as_secs()
    )
}

/// A pod as the tests see it: its container and where the host reaches its control API.
#[derive(Clone, Debug)]
pub struct Pod {
    pub c: Container,
    /// `http://<address>:<port>` of the control API, from the host.
    pub control: String,
}

impl Pod {
    pub async fn info(&self) -> Result<Value, String> {
        get_json(&format!("{}/info", self.control)).await
    }

    /// `/info` through loopback inside the container: answers while it is cut off.
    pub fn info_inside(&self) -> Result<Value, String> {
        let out = self.c.exec(&["busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/info"])?;
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    }

    /// What the light pod's `view.txt` says: (seq, size, epoch).
    pub fn view(&self) -> Result<(u64, usize, String), String> {
        let text = self.c.exec(&["busybox", "cat", "/e2e/view.txt"])?;
        let f: Vec<&str> = text.split_whitespace().collect();
        match f.as_slice() {
            [_, _, seq, size, epoch] => {
                Ok((seq.parse().map_err(|_| text.clone())?, size.parse().map_err(|_| text.clone())?, epoch.to_string()))
            }
            _ => Err(format!("view.txt: {text:?}")),
        }
    }
}

/// Waits until every pod runs its process, exactly one leads with nothing pending and the others
/// follow, and (for light pods) each was configured with `pods.len()` members. Returns the
/// leader's index in `pods`.
pub async fn settled(pods: &[&Pod], light: bool, timeout: Duration) -> usize {
    let n = pods.len();
    until(&format!("{n} pods settled"), timeout, || async {
        let mut leader = None;
        for (k, p) in pods.iter().enumerate() {
            let info = p.info().await?;
            if info["process"] != "running" {
                return Err(format!("{}: process {}", p.c.name, info["process"]));
            }
            match info["state"].as_str() {
                Some("leader") if leader.is_none() => leader = Some(k),
                Some("follower") => {}
                other => return Err(format!("{}: state {other:?}", p.c.name)),
            }
            if light {
                let (_, size, _) = p.view()?;
                if size != n {
                    return Err(format!("{}: configured with {size} pods", p.c.name));
                }
            }
        }
        leader.ok_or_else(|| "no leader".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Measures how long `f` takes.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed())
}
