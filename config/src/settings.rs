//! Validated settings: what the rest of ochopod reads. Built once, before any actor starts, from
//! the raw YAML plus environment overrides (see `load`). Every field has a real type and every
//! default is a named function, so a reader sees at once what a pod does when a key is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    /// The YAML file these settings came from (for messages).
    pub source: PathBuf,
    pub cluster: String,
    pub namespace: String,
    /// The control port inside the container. The pod listens on its remapped host port
    /// (`ports[port]`) in local mode, where several pods share one host.
    pub port: u16,
    pub zk: ZkSettings,
    /// Which store the pod coordinates through: ZooKeeper (`zk`, the default) or etcd
    /// (`coordination:`, `OCHOPOD_ETCD`); shown by `validate` without credentials.
    #[serde(skip)]
    pub coordination: crate::Coordination,
    pub binding: BindingKind,
    pub debug: bool,
    /// Container port → host port: every port the pod exposes (the control port always
    /// included), remapped by `PORT_<n>` variables as a container platform does.
    pub ports: BTreeMap<u16, u16>,
    /// Registered as `application` / `task` (platform ids; the binding may override them).
    pub application: String,
    pub task: String,
    pub model: ModelSettings,
    /// `None`: a sidecar, which runs no child but still renders files and runs hooks.
    pub process: Option<ProcessSettings>,
    /// Rendered from the cluster view on every configuration, with or without a process.
    pub files: Vec<FileTemplate>,
    pub hooks: Hooks,
    pub control: ControlSettings,
    /// What is accepted but should be fixed (a token file others can read…), said once the
    /// logs are up (`run`) or on stderr (`validate`).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZkSettings {
    /// Hosts, chroot and credentials, parsed and checked at load (the credentials redacted in
    /// `Debug`, skipped by `Serialize`).
    pub target: crate::ZkTarget,
    /// ≥ 10 s by default: shorter timeouts get declared expired by the client's reconnect backoff.
    pub session_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    Auto,
    Local,
    Marathon,
    Kubernetes,
    Ec2,
    Docker,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSettings {
    /// Relative, `/absolute` or glob cluster names.
    pub depends_on: Vec<String>,
    /// Delay between a detected change and the round; a change reverted within it causes none.
    pub damper: Duration,
    /// One pod at a time in sorted-key order instead of all in parallel.
    pub sequential: bool,
    /// No round until this many live pods are registered: a system that bootstraps from a
    /// static member list must not form with the first pod that showed up.
    pub min_size: usize,
    /// `off` on every pod before `on`.
    pub full_shutdown: bool,
    /// Per-request timeout of a round (the leader waits `grace × 1.25`).
    pub grace: Duration,
    /// Leader-only: its output becomes the cluster status.
    pub probe: Option<Probe>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    /// Shell command; the cluster view as JSON on stdin, `OCHOPOD_*` in the env.
    pub command: String,
    pub every: Duration,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessSettings {
    /// Template; argv-split with shell quoting rules unless `shell`.
    pub command: String,
    pub shell: bool,
    pub cwd: Option<PathBuf>,
    /// Values are templates.
    pub env: BTreeMap<String, String>,
    /// Restart on every leader `on`, not only when the dependencies changed (`restart.when` is
    /// then `always`).
    pub strict: bool,
    /// `false`: configure without starting until a body-less `on`.
    pub start: bool,
    pub pipe_output: bool,
    /// SIGTERM (or `tear_down`) → wait `grace` → SIGKILL unless `soft`.
    pub grace: Duration,
    pub soft: bool,
    pub sanity: Option<Sanity>,
    pub restart: RestartPolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileTemplate {
    /// Relative paths are resolved against the process `cwd` (or the YAML file's folder).
    pub path: PathBuf,
    pub template: String,
    /// Unix permission bits, e.g. `0o644`.
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sanity {
    pub check: SanityCheck,
    pub every: Duration,
    /// Consecutive failures tolerated before the process is turned off.
    pub retries: u32,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SanityCheck {
    /// Shell command; exit 0 = healthy; JSON object on stdout = the pod's metrics.
    Command(String),
    /// HTTP GET; 2xx = healthy; a JSON object body = the pod's metrics. Template (ports).
    Http(String),
    /// TCP connect to `host:port`. Template (ports).
    Tcp(String),
}

/// When a configuration round restarts a process that runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartWhen {
    /// When the dependencies changed (the original's behaviour): scaling the pod's own cluster
    /// bounces nobody.
    #[default]
    Dependencies,
    /// On every round (`strict: true`).
    Always,
    /// Only when what the process was started with changed: its rendered command line, its
    /// environment (`OCHOPOD_EPOCH` aside: a new leader is no new configuration) or the content
    /// or mode of a rendered file. A dependency the templates do not use can move freely.
    Changed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RestartPolicy {
    /// When a round restarts the running process (failures restart it whatever this says).
    pub when: RestartWhen,
    /// First restart delay; later delays grow with decorrelated jitter up to `max_delay`.
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// This many failures in a row (without `reset_after` of healthy running) = crash loop.
    pub crashloop_after: u32,
    /// A run this long resets the failure count.
    pub reset_after: Duration,
    /// After this many failures in a row the process is turned off (0 = never).
    pub give_up_after: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Hooks {
    pub initialize: Option<Hook>,
    pub can_configure: Option<Hook>,
    pub configured: Option<Hook>,
    pub signaled: Option<Hook>,
    pub tear_down: Option<Hook>,
    pub finalize: Option<Hook>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hook {
    /// Shell command (run with `sh -c`), cluster view as JSON on stdin.
    pub command: String,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ControlSettings {
    /// The bearer token for mutating routes. Never serialised, never logged, never registered.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// Where the token came from (shown `file /path`, `env NAME`), safe to show.
    pub token_source: Option<crate::TokenSource>,
    /// Also require the token on read-only routes.
    pub protect_reads: bool,
    pub tls: Option<Tls>,
    pub body_limit: usize,
    pub log_lines: usize,
}

/// TLS on the control port. The leader then talks HTTPS to its peers, trusting only
/// [`Tls::roots`]; peers are reached by IP, so their certificates need no IP SANs (the chain is
/// verified, not the name: see `ochopod_api::tls`). Every pod of a cluster must serve TLS.
/// Paths are resolved against the declaration's folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tls {
    /// This pod's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA (PEM) that signs the peers' control certificates. Without it the pod trusts its own
    /// `cert`: the usual small-cluster setup where every pod shares one self-signed certificate.
    pub ca: Option<PathBuf>,
}

impl Tls {
    /// The PEM file whose certificates are the only roots trusted for peers.
    pub fn roots(&self) -> &Path {
        self.ca.as_deref().unwrap_or(&self.cert)
    }
}

/// A secret string whose `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub mod defaults {
    use std::time::Duration;

    pub const NAMESPACE: &str = "local";
    pub const PORT: u16 = 8080;
    pub const ZK: &str = "127.0.0.1:2181";
    pub fn session_timeout() -> Duration {
        Duration::from_secs(15)
    }
    /// ZooKeeper's default minimum session is 2 ticks of 2 s; shorter timeouts get negotiated up
    /// anyway, so asking for them only hides what the pod really gets.
    pub fn min_session_timeout() -> Duration {
        Duration::from_secs(4)
    }
    pub fn damper() -> Duration {
        Duration::from_secs(10)
    }
    pub fn model_grace() -> Duration {
        Duration::from_secs(60)
    }
    pub fn probe_every() -> Duration {
        Duration::from_secs(30)
    }
    pub fn probe_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub const START: bool = true;
    /// Child output goes to the pod log (and `/log`), so one place shows both.
    pub const PIPE_OUTPUT: bool = true;
    pub fn process_grace() -> Duration {
        Duration::from_secs(60)
    }
    pub fn sanity_every() -> Duration {
        Duration::from_secs(60)
    }
    pub const SANITY_RETRIES: u32 = 3;
    pub fn sanity_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn hook_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn restart_initial() -> Duration {
        Duration::from_millis(500)
    }
    pub fn restart_max() -> Duration {
        Duration::from_secs(30)
    }
    pub const CRASHLOOP_AFTER: u32 = 5;
    pub fn restart_reset_after() -> Duration {
        Duration::from_secs(60)
    }
    pub const GIVE_UP_AFTER: u32 = 0;
    pub const BODY_LIMIT: usize = 1 << 20;
    pub const LOG_LINES: usize = 1000;
}
