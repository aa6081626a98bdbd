//! Platform bindings: where a pod runs, learnt from the platform that started it.
//!
//! # Theory of operation
//!
//! [`resolve`] runs once, before any actor starts. It picks a binding (the `binding:` of the
//! declaration, or [`detect`]ed from the [`Platform`]), asks it what it can learn — address,
//! public address, node, ports as peers reach them, platform ids, where ZooKeeper is, and where the
//! control server must listen — and [`assemble`]s the same [`Registration`] fields for every
//! binding. Nothing here keeps state, watches anything or retries: a platform that does not say
//! where the pod runs is a deployment mistake, reported as one [`BindingError`] that names the
//! binding and the variable, file or endpoint that is missing or malformed, and the pod exits
//! before touching ZooKeeper.
//!
//! Every input comes through [`Platform`] (an environment map, a root folder the platform files
//! are read under, the EC2 metadata address), so tests feed recorded platforms without touching
//! the process environment or the network beyond loopback.
//!
//! | binding | ip / node / public | ports | ids | ZooKeeper | listens on |
//! |---|---|---|---|---|---|
//! | local | 127.0.0.1 / `local` | `PORT_<n>` remaps | settings | settings | 127.0.0.1:*remapped* control port |
//! | kubernetes | `POD_IP` / `NODE_NAME` / `HOST_IP` | container ports, identity | `POD_NAME`, `POD_NAMESPACE` | `OCHOPOD_ZK_SERVICE` | 0.0.0.0:control port |
//! | marathon | `HOST` / `HOST` / `HOST` | `PORT_<n>` | `MARATHON_APP_ID`, `MESOS_TASK_ID` | Mesos files | 0.0.0.0:control port |
//! | ec2 | metadata `local-ipv4` / `instance-id` / `public-ipv4` | `PORT_<n>` | Marathon's if present | Mesos files if present | 0.0.0.0:control port |
//! | docker | first non-loopback address / `HOSTNAME` / same | `PORT_<n>` | `HOSTNAME` | settings | 0.0.0.0:control port |
//!
//! ZooKeeper: `OCHOPOD_ZK` / `ochopod_zk` (already applied by the config crate) always win; a
//! platform's answer comes next and is returned in [`Placement::zk`]; the declaration's `zk:` last.
//! Credentials are kept for the client but never registered.

mod docker;
mod ec2;
mod kubernetes;
mod marathon;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ochopod_config::{BindingKind, Settings, ZkSettings, ZkTarget};
use ochopod_core::Registration;

pub use docker::local_addresses;

/// The EC2 instance metadata service (link-local, only reachable from the instance).
pub const EC2_METADATA: &str = "http://169.254.169.254";
/// Metadata requests are local to the instance: a slow answer means "not on EC2".
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything a binding may look at. Production reads the process ([`Platform::from_process`]);
/// tests build one from a recorded environment and a temporary root.
#[derive(Clone, Debug)]
pub struct Platform {
    pub env: BTreeMap<String, String>,
    /// Platform files are read under it (`<root>/etc/mesos/zk`, `<root>/.dockerenv`): `/` in
    /// production, `OCHOPOD_PLATFORM_ROOT` to test the binary against recorded files.
    pub root: PathBuf,
    /// Base URL of the EC2 instance metadata (`OCHOPOD_EC2_METADATA` overrides it).
    pub ec2_metadata: String,
    /// Per-request timeout of the metadata calls.
    pub timeout: Duration,
}

impl Platform {
    /// The platform this process runs on.
    pub fn from_process() -> Self {
        let env = ochopod_config::process_env();
        let root = env.get("OCHOPOD_PLATFORM_ROOT").filter(|r| !r.trim().is_empty()).map_or("/".into(), PathBuf::from);
        Platform::new(env, root)
    }

    /// A platform from a recorded environment and a root folder; the metadata address follows
    /// `OCHOPOD_EC2_METADATA` in that environment, as in production.
    pub fn new(env: BTreeMap<String, String>, root: impl Into<PathBuf>) -> Self {
        let ec2_metadata = env
            .get("OCHOPOD_EC2_METADATA")
            .filter(|u| !u.trim().is_empty())
            .map_or_else(|| EC2_METADATA.to_string(), |u| u.trim().trim_end_matches('/').to_string());
        Platform { env, root: root.into(), ec2_metadata, timeout: DEFAULT_TIMEOUT }
    }

    /// A variable, with blank values read as unset (platform templates often leave them empty).
    fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// `path` (absolute, as on the platform) under [`Platform::root`].
    fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// Where the pod runs, as the rest of ochopod needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Every registration field but `seq`, which the session assigns.
    pub registration: Registration,
    /// Where the control server binds.
    pub listen: SocketAddr,
    /// Where ZooKeeper is, when the platform said so and `OCHOPOD_ZK`/`ochopod_zk` did not:
    /// use it instead of `settings.zk`.
    pub zk: Option<ZkSettings>,
    /// The binding used (`local`, `kubernetes`, `marathon`, `ec2`, `docker`), also registered as `fwk`.
    pub binding: String,
}

/// The platform did not say where the pod runs. The message names the binding and what is
/// missing or malformed, and how to provide it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("{binding} binding: {what} is not set ({hint})")]
    Missing { binding: &'static str, what: String, hint: String },
    #[error("{binding} binding: {what} is malformed: {detail}")]
    Malformed { binding: &'static str, what: String, detail: String },
    #[error("{binding} binding: cannot read {path}: {detail}")]
    Unreadable { binding: &'static str, path: String, detail: String },
    #[error(
        "ec2 binding: instance metadata at {url}: {detail} (not on EC2? OCHOPOD_EC2_METADATA overrides the address)"
    )]
    Metadata { url: String, detail: String },
    #[error("{binding} binding: {detail}")]
    Unusable { binding: &'static str, detail: String },
}

impl BindingError {
    fn missing(binding: &'static str, what: impl Into<String>, hint: impl Into<String>) -> Self {
        BindingError::Missing { binding, what: what.into(), hint: hint.into() }
    }
    fn malformed(binding: &'static str, what: impl Into<String>, detail: impl Into<String>) -> Self {
        BindingError::Malformed { binding, what: what.into(), detail: detail.into() }
    }
}

/// What one binding learnt; [`assemble`] turns it into the same fields for every binding.
#[derive(Clone, Debug, PartialEq)]
struct Found {
    binding: &'static str,
    ip: IpAddr,
    public: String,
    node: String,
    /// Container port → the port peers reach it on at `ip`.
    ports: BTreeMap<u16, u16>,
    /// Platform ids; `None` keeps the declaration's.
    application: Option<String>,
    task: Option<String>,
    zk: Option<ZkTarget>,
    listen: SocketAddr,
}

/// Which binding to use and why (for the log).
pub fn detect(settings: &Settings, platform: &Platform) -> (BindingKind, &'static str) {
    if settings.binding != BindingKind::Auto {
        return (settings.binding, "selected by the declaration");
    }
    if platform.var("KUBERNETES_SERVICE_HOST").is_some() || platform.var("POD_IP").is_some() {
        return (BindingKind::Kubernetes, "KUBERNETES_SERVICE_HOST or POD_IP is set");
    }
    if platform.var("MARATHON_APP_ID").is_some() || platform.var("MESOS_TASK_ID").is_some() {
        return (BindingKind::Marathon, "MARATHON_APP_ID or MESOS_TASK_ID is set");
    }
    // EC2 is never probed: an unanswered link-local request costs a timeout everywhere else.
    if platform.file("/.dockerenv").exists() {
        if docker::control_port_remapped(settings) && platform.var(docker::IP_VAR).is_none() {
            // Peers could not reach a remapped port at the container's own address; a remapped
            // control port without a host address is the one-host layout of the local binding.
            return (
                BindingKind::Local,
                "in a container, but the control port is remapped and OCHOPOD_DOCKER_IP is unset",
            );
        }
        return (BindingKind::Docker, "/.dockerenv exists");
    }
    (BindingKind::Local, "no platform detected")
}

/// Learns where the pod runs. Errors when the selected platform does not say so.
pub async fn resolve(settings: &Settings, platform: &Platform) -> Result<Placement, BindingError> {
    let (kind, why) = detect(settings, platform);
    tracing::info!(binding = binding_name(kind), reason = why, "platform binding");
    let found = match kind {
        BindingKind::Auto | BindingKind::Local => local(settings),
        BindingKind::Kubernetes => kubernetes::resolve(settings, platform)?,
        BindingKind::Marathon => marathon::resolve(settings, platform).await?,
        BindingKind::Ec2 => ec2::resolve(settings, platform).await?,
        BindingKind::Docker => docker::resolve(settings, platform)?,
    };
    Ok(assemble(settings, platform, found))
}

pub fn binding_name(kind: BindingKind) -> &'static str {
    match kind {
        BindingKind::Auto | BindingKind::Local => "local",
        BindingKind::Kubernetes => "kubernetes",
        BindingKind::Marathon => "marathon",
        BindingKind::Ec2 => "ec2",
        BindingKind::Docker => "docker",
    }
}

/// Several pods share one host: each listens on loopback at its remapped control port, which is
/// what peers are told to use.
fn local(settings: &Settings) -> Found {
    let control = settings.ports.get(&settings.port).copied().unwrap_or(settings.port);
    Found {
        binding: "local",
        ip: Ipv4Addr::LOCALHOST.into(),
        public: Ipv4Addr::LOCALHOST.to_string(),
        node: "local".into(),
        ports: settings.ports.clone(),
        application: None,
        task: None,
        zk: None,
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, control)),
    }
}

/// Behind a platform the control server listens on the container's port, which the platform
/// publishes (or not) on the host.
fn listen_all(settings: &Settings) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port))
}

/// Whether `settings.zk` came from `OCHOPOD_ZK`/`ochopod_zk`: then the operator said where
/// ZooKeeper is and no platform guess replaces it.
fn zk_set_by_env(platform: &Platform) -> bool {
    platform.var("OCHOPOD_ZK").is_some() || platform.var("ochopod_zk").is_some()
}

fn assemble(settings: &Settings, platform: &Platform, found: Found) -> Placement {
    let zk = match found.zk {
        Some(t) if zk_set_by_env(platform) => {
            tracing::info!(platform_zk = %t, "OCHOPOD_ZK/ochopod_zk wins over the platform's ZooKeeper");
            None
        }
        Some(t) => Some(ZkSettings { target: t, session_timeout: settings.zk.session_timeout }),
        None => None,
    };
    let effective = zk.as_ref().unwrap_or(&settings.zk);
    let registration = Registration {
        ip: found.ip.to_string(),
        public: found.public,
        node: found.node,
        ports: found.ports.iter().map(|(c, h)| (c.to_string(), *h)).collect(),
        port: settings.port.to_string(),
        seq: 0,
        cluster: settings.cluster.clone(),
        namespace: settings.namespace.clone(),
        application: found.application.unwrap_or_else(|| settings.application.clone()),
        task: found.task.unwrap_or_else(|| settings.task.clone()),
        fwk: found.binding.into(),
        zk: registered_zk(&effective.target),
        debug: Registration::flag(settings.debug),
        start: Registration::flag(settings.process.as_ref().is_none_or(|p| p.start)),
        local: Registration::flag(found.binding == "local"),
        extra: Default::default(),
    };
    Placement { registration, listen: found.listen, zk, binding: found.binding.into() }
}

/// The registered `zk` field: [`ZkTarget::registered`], the hosts only (no credentials, no
/// chroot), as the original registered the network location. The session writes the same.
pub fn registered_zk(target: &ZkTarget) -> String {
    target.registered()
}

/// Reads a platform file; `Ok(None)` when it does not exist.
fn read_optional(binding: &'static str, path: &Path) -> Result<Option<String>, BindingError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BindingError::Unreadable { binding, path: path.display().to_string(), detail: e.to_string() }),
    }
}

fn parse_ip(binding: &'static str, what: &str, value: &str) -> Result<IpAddr, BindingError> {
    value
        .trim()
        .parse()
        .map_err(|_| BindingError::malformed(binding, what, format!("expected an IP address, got `{value}`")))
}

#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::path::Path;

    use ochopod_config::Settings;

    pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Settings through the real pipeline, so `PORT_<n>` and `OCHOPOD_ZK` apply as in production.
    pub fn settings(yaml: &str, env: &BTreeMap<String, String>) -> Settings {
        ochopod_config::parse_str(Path::new("pod.yaml"), yaml, env).expect("test declaration")
    }

    pub const YAML: &str = "cluster: zookeeper\nnamespace: demo\nports: [2181, 2888]\nzk: 127.0.0.1:2181\n";

    pub fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn placement(yaml: &str, pairs: &[(&str, &str)], root: &Path) -> Result<Placement, BindingError> {
        let env = env(pairs);
        let settings = settings(yaml, &env);
        let platform = Platform::new(env, root);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(resolve(&settings, &platform))
    }

    #[test]
    fn local_listens_on_the_remapped_control_port() {
        let root = tempfile::tempdir().unwrap();
        let p = placement(YAML, &[("PORT_8080", "31000"), ("PORT_2181", "31001"), ("ochopod_task", "t")], root.path())
            .unwrap();
        let expected = Registration {
            ip: "127.0.0.1".into(),
            public: "127.0.0.1".into(),
            node: "local".into(),
            ports: [("2181", 31001), ("2888", 2888), ("8080", 31000)].map(|(c, h)| (c.to_string(), h)).into(),
            port: "8080".into(),
            seq: 0,
            cluster: "zookeeper".into(),
            namespace: "demo".into(),
            application: "".into(),
            task: "t".into(),
            fwk: "local".into(),
            zk: "127.0.0.1:2181".into(),
            debug: "false".into(),
            start: "true".into(),
            local: "true".into(),
            extra: Default::default(),
        };
        assert_eq!(
            p,
            Placement {
                registration: expected,
                listen: "127.0.0.1:31000".parse().unwrap(),
                zk: None,
                binding: "local".into()
            }
        );
    }

    #[test]
    fn detection_order() {
        let root = tempfile::tempdir().unwrap();
        let kind = |pairs: &[(&str, &str)], yaml: &str| {
            let env = env(pairs);
            detect(&settings(yaml, &env), &Platform::new(env, root.path())).0
        };
        assert_eq!(kind(&[], YAML), BindingKind::Local);
        write(root.path(), "/.dockerenv", "");
        assert_eq!(kind(&[], YAML), BindingKind::Docker);
        // A remapped control port in a container is the one-host demo layout, unless an address is given.
        assert_eq!(kind(&[("PORT_8080", "31000")], YAML), BindingKind::Local);
        assert_eq!(kind(&[("PORT_8080", "31000"), ("OCHOPOD_DOCKER_IP", "127.0.0.5")], YAML), BindingKind::Docker);
        assert_eq!(kind(&[("MESOS_TASK_ID", "t")], YAML), BindingKind::Marathon);
        assert_eq!(kind(&[("MARATHON_APP_ID", "/a"), ("POD_IP", "127.0.0.2")], YAML), BindingKind::Kubernetes);
        assert_eq!(kind(&[("KUBERNETES_SERVICE_HOST", "127.0.0.9")], YAML), BindingKind::Kubernetes);
        // Explicit choices are taken as they are; `ochopod_local` forces local (config crate).
        assert_eq!(kind(&[("KUBERNETES_SERVICE_HOST", "h")], &format!("{YAML}binding: ec2\n")), BindingKind::Ec2);
        assert_eq!(kind(&[("KUBERNETES_SERVICE_HOST", "h"), ("ochopod_local", "true")], YAML), BindingKind::Local);
    }

    #[test]
    fn credentials_are_never_registered() {
        let target = ZkTarget::parse("zk://u:secret@10.0.0.1:2181,10.0.0.2:2181/mesos").unwrap();
        assert_eq!(registered_zk(&target), "10.0.0.1:2181,10.0.0.2:2181");
        assert_eq!(registered_zk(&ZkTarget::parse("127.0.0.1:2181").unwrap()), "127.0.0.1:2181");
        let root = tempfile::tempdir().unwrap();
        let p = placement(YAML, &[("OCHOPOD_ZK", "zk://user:secret@127.0.0.1:2181/x")], root.path()).unwrap();
        assert_eq!(p.registration.zk, "127.0.0.1:2181");
        assert!(!format!("{:?}", p.registration).contains("secret"));
        assert_eq!(p.zk, None, "the settings already hold what the env said");
    }

    #[test]
    fn platform_reads_the_metadata_override() {
        let p = Platform::new(env(&[("OCHOPOD_EC2_METADATA", "http://127.0.0.1:9/")]), "/");
        assert_eq!(p.ec2_metadata, "http://127.0.0.1:9");
        assert_eq!(Platform::new(env(&[]), "/").ec2_metadata, EC2_METADATA);
        assert_eq!(Platform::new(env(&[]), "/").timeout, Duration::from_secs(1));
    }
}
