//! A real etcd for tests, from Debian's `etcd-server` package: one member, or a cluster of
//! three, on free loopback ports with their data in a temp dir, every member stopped by pid on
//! drop (a test that fails or panics leaves nothing running).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::ports::free_port;
use crate::wait;
use crate::zk::stop_child;

pub const BIN: &str = "etcd";

const INSTALL_HINT: &str = "install it with `make setup` (or `apt-get update && apt-get install -y etcd-server`)";

/// Checks that the etcd server is installed, with an error saying how to install it.
pub fn check_installed() -> anyhow::Result<()> {
    match Command::new(BIN).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("the etcd server is not installed (`{BIN}` is not on the PATH): {INSTALL_HINT}"),
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain HTTP `/health`, whether or not clients speak TLS.
    metrics_port: u16,
    child: Option<Child>,
}

/// An etcd cluster of one or more members on loopback.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    token: String,
    /// Clients speak TLS: the CA, the members' certificate and key live in `dir`.
    tls: bool,
    /// Where every member listens (`127.0.0.1` unless [`Self::start_on`]).
    address: String,
}

impl EtcdCluster {
    /// One member.
    pub fn start() -> anyhow::Result<EtcdCluster> {
        Self::start_members(1)
    }

    /// `n` members forming one cluster; returns once every member serves requests.
    pub fn start_members(n: usize) -> anyhow::Result<EtcdCluster> {
        Self::start_with(n, false)
    }

    /// One member whose clients must speak TLS, with a certificate for `127.0.0.1` signed by a
    /// CA made for this cluster ([`Self::ca_path`]).
    pub fn start_tls() -> anyhow::Result<EtcdCluster> {
        Self::start_with(1, true)
    }

    /// One member listening on `address` (e.g. the host end of a test's veth, so that a network
    /// namespace reaches it).
    pub fn start_on(address: &str) -> anyhow::Result<EtcdCluster> {
        Self::start_with_on(1, false, address)
    }

    fn start_with(n: usize, tls: bool) -> anyhow::Result<EtcdCluster> {
        Self::start_with_on(n, tls, "127.0.0.1")
    }

    fn start_with_on(n: usize, tls: bool, address: &str) -> anyhow::Result<EtcdCluster> {
        check_installed()?;
        let dir = tempfile::Builder::new().prefix("ochopod-etcd-").tempdir().context("temp dir for etcd")?;
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                child: None,
            })
            .collect();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut cluster = EtcdCluster { dir, members, token, tls, address: address.to_string() };
        if tls {
            cluster.make_certificates()?;
        }
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, self.address, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.members[i].name))
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[i].name);
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path(i))?;
        let m = &self.members[i];
        let scheme = if self.tls { "https" } else { "http" };
        let a = &self.address;
        let client = format!("{scheme}://{a}:{}", m.client_port);
        let peer = format!("http://{a}:{}", m.peer_port);
        let metrics = format!("http://{a}:{}", m.metrics_port);
        let mut command = Command::new(BIN);
        if self.tls {
            let file = |name: &str| self.dir.path().join(name);
            command.arg("--cert-file").arg(file("server.pem")).arg("--key-file").arg(file("server.key"));
        }
        let child = command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-metrics-urls", &metrics])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial, "--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            // Short elections so a member's loss is over in about a second, as in tests of
            // ZooKeeper's short ticks.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting etcd; {INSTALL_HINT}"))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let port = self.members[i].metrics_port;
        let address = self.address.clone();
        let res = wait::until_blocking("etcd to serve requests", Duration::from_secs(60), || {
            if let Some(c) = self.members[i].child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("etcd exited early ({status})"));
                }
            }
            match health(&address, port) {
                Ok(body) if body.contains(r#""health":"true""#) => Ok(()),
                Ok(body) => Err(format!("answered {body:?}")),
                Err(e) => Err(e.to_string()),
            }
        });
        if let Err(e) = res {
            let log = fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            self.stop_all();
            bail!("{e}\netcd log (last lines, newest first):\n{}", tail.join("\n"));
        }
        Ok(())
    }

    /// `<address>:<port>,…` of every member.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| format!("{}:{}", self.address, m.client_port)).collect::<Vec<_>>().join(",")
    }

    /// `etcd://<every endpoint>/<prefix>` (`prefix` without its leading `/`), for `OCHOPOD_ETCD`;
    /// `etcds://…?ca=<the CA>` for a TLS cluster.
    pub fn url(&self, prefix: &str) -> String {
        let prefix = prefix.trim_start_matches('/');
        match self.tls {
            false => format!("etcd://{}/{prefix}", self.endpoints()),
            true => format!("etcds://{}/{prefix}?ca={}", self.endpoints(), self.ca_path().display()),
        }
    }

    /// The CA that signed a TLS cluster's certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA and a certificate for `127.0.0.1` signed by it, made with the `openssl` command.
    fn make_certificates(&self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
        let script = format!(
            "set -e\n\
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
               -days 2 -subj /CN=ochopod-test-etcd-ca 2>/dev/null\n\
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
               -subj /CN=127.0.0.1 2>/dev/null\n\
             printf '{ext}' > server.ext\n\
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
               -extfile server.ext 2>/dev/null\n"
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .context("running openssl (apt-get install -y openssl)")?;
        if !status.success() {
            bail!("openssl could not make the test certificates ({status})");
        }
        Ok(())
    }

    /// The client port of member `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// The index of the member that is the Raft leader now, asked of each running member.
    pub async fn leader_index(&self) -> anyhow::Result<usize> {
        for (i, m) in self.members.iter().enumerate().filter(|(_, m)| m.child.is_some()) {
            let mut c = client(&format!("{}:{}", self.address, m.client_port)).await?;
            let status = c.status().await?;
            let me = status.header().map(|h| h.member_id()).context("a status without a header")?;
            if status.leader() == me {
                return Ok(i);
            }
        }
        bail!("no member says it leads")
    }

    /// Stops member `i` (SIGTERM, SIGKILL after 5 s); its data is kept for [`Self::restart_member`].
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            stop_child(&mut child, Duration::from_secs(5));
        }
    }

    /// Starts member `i` again with its data and waits until it serves requests.
    pub fn restart_member(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop_member(i);
        self.spawn(i)?;
        self.wait_healthy(i)
    }

    fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `GET /health` on a member's metrics port.
fn health(address: &str, port: u16) -> anyhow::Result<String> {
    let addr = format!("{address}:{port}").parse().with_context(|| format!("bad address {address}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Turns etcd's authentication on with a `root` user of `password` (etcd wants a root user with
/// the root role first); from then on only [`client_as`] with those credentials can read.
pub async fn enable_auth(endpoints: &str, password: &str) -> anyhow::Result<()> {
    let mut c = client(endpoints).await?;
    c.user_add("root", password, None).await.context("adding the root user")?;
    c.user_grant_role("root", "root").await.context("granting root the root role")?;
    c.auth_enable().await.context("enabling authentication")?;
    Ok(())
}

/// An etcd client for tests and the benchmark, bounded in time.
pub async fn client(endpoints: &str) -> anyhow::Result<etcd_client::Client> {
    client_with(endpoints, None).await
}

/// [`client`] authenticated as `user`.
pub async fn client_as(endpoints: &str, user: &str, password: &str) -> anyhow::Result<etcd_client::Client> {
    client_with(endpoints, Some((user, password))).await
}

/// [`client`] over TLS, trusting the CA at `ca`.
pub async fn tls_client(endpoints: &str, ca: &std::path::Path) -> anyhow::Result<etcd_client::Client> {
    let pem = fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(pem));
    connect_with(endpoints, "https", etcd_client::ConnectOptions::new().with_tls(tls)).await
}

async fn client_with(endpoints: &str, user: Option<(&str, &str)>) -> anyhow::Result<etcd_client::Client> {
    let mut options = etcd_client::ConnectOptions::new();
    if let Some((user, password)) = user {
        options = options.with_user(user, password);
    }
    connect_with(endpoints, "http", options).await
}

async fn connect_with(
    endpoints: &str,
    scheme: &str,
    options: etcd_client::ConnectOptions,
) -> anyhow::Result<etcd_client::Client> {
    let urls: Vec<String> = endpoints.split(',').map(|e| format!("{scheme}://{e}")).collect();
    let options = options.with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(5));
    match tokio::time::timeout(Duration::from_secs(20), etcd_client::Client::connect(urls, Some(options))).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => bail!("connecting to etcd at {endpoints}: {e}"),
        Err(_) => bail!("connecting to etcd at {endpoints}: no answer within 20 s"),
    }
}

/// Every key below `prefix` with its value (as text).
pub async fn get_prefix(client: &etcd_client::Client, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut kv = client.kv_client();
    let found = kv.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())).await?;
    Ok(found
        .kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), String::from_utf8_lossy(kv.value()).into_owned()))
        .collect())
}

/// Either coordination backend, started for a run of pods: what the benchmark (and any scenario
/// run on both backends) needs to start pods against it and to read the settled state from it.
pub enum Backend {
    ZooKeeper { server: crate::zk::ZkServer, client: zookeeper_client::Client, connect: String },
    Etcd { cluster: EtcdCluster, client: Box<etcd_client::Client>, url: String },
}

/// Where [`Backend::Etcd`]'s pods keep their keys.
const BENCH_PREFIX: &str = "/ochopod";

impl Backend {
    /// A real ZooKeeper (as [`crate::zk::ZkServer::start`]) with a client for [`Backend::store`].
    pub async fn zookeeper() -> anyhow::Result<Backend> {
        let server = crate::zk::ZkServer::start()?;
        let connect = server.connect_string();
        let client = crate::settle::client(&connect).await?;
        Ok(Backend::ZooKeeper { server, client, connect })
    }

    /// A real etcd of `members` members (1 or 3) with a client for [`Backend::store`].
    pub async fn etcd(members: usize) -> anyhow::Result<Backend> {
        let cluster = EtcdCluster::start_members(members)?;
        let client = Box::new(client(&cluster.endpoints()).await?);
        let url = cluster.url(BENCH_PREFIX);
        Ok(Backend::Etcd { cluster, client, url })
    }

    /// `zookeeper` or `etcd`, for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::ZooKeeper { .. } => "zookeeper",
            Backend::Etcd { .. } => "etcd",
        }
    }

    /// A pod of declaration `yaml` on this backend: `OCHOPOD_ZK`, or `OCHOPOD_ETCD` (with a
    /// ZooKeeper address that is not there, so a pod that ignored it would never settle).
    pub fn pod_spec<'a>(&'a self, bin: &'a std::path::Path, yaml: &'a str) -> crate::pods::PodSpec<'a> {
        match self {
            Backend::ZooKeeper { connect, .. } => crate::pods::PodSpec::new(bin, connect, yaml),
            Backend::Etcd { url, .. } => crate::pods::PodSpec::new(bin, "127.0.0.1:1", yaml).env("OCHOPOD_ETCD", url),
        }
    }

    /// Where [`crate::settle::settled_on`] reads registrations, snapshot and hash.
    pub fn store(&self) -> crate::settle::Store<'_> {
        match self {
            Backend::ZooKeeper { client, .. } => crate::settle::Store::Zk(client),
            Backend::Etcd { client, .. } => crate::settle::Store::Etcd { client, root: BENCH_PREFIX },
        }
    }
}
