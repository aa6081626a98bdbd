//! `ochopod portal`: one endpoint that hosts the tools and deploys, scales and deletes clusters.
//!
//! Theory of operation: `ochopod portal` is an ochopod pod like any other (cluster `portal`,
//! registered in ZooKeeper or etcd, listed by `ochopod ls portal`): it writes a declaration whose
//! process is `ochopod portal --serve` with the same arguments, and runs it with `ochopod run`. The pod
//! supervises the server (restarting it if it dies, tearing it down on SIGTERM) exactly as it
//! supervises any process, and nothing in the pod's wiring knows about portals. The server
//! ([`server`]) answers HTTP (HTTPS with `--tls-cert/--tls-key`) behind a bearer token:
//! `/v1/<tool>` runs a tool with the same library function the CLI runs ([`crate::tools::report`]),
//! `/v1/events` streams every watched pod's `/events` as one SSE stream ([`events`]), and
//! `/v1/deploy|scale|delete|platform` drive the platform ([`deploy`], `ochopod-platform`), and
//! `/` is the live dashboard ([`dashboard`]), also served alone by `ochopod dashboard`.
//! The portal reaches ZooKeeper (`--zk`), or etcd when `OCHOPOD_ETCD` is set (the portal pod
//! then registers there, and deploys pods that coordinate there: `--deploy-etcd`), and the pods
//! (their token: `--pod-token-file` or `OCHOPOD_TOKEN`; their CA: `--ca`); its clients need only
//! the portal. A pod process gets `OCHOPOD_ZK` and `OCHOPOD_ETCD` without their credentials, so
//! the pod hands its server the full targets in 0600 files of its private folder (`--zk-file`,
//! `--deploy-zk-file`, `--etcd-file`, `--deploy-etcd-file`), never on the command line. The portal pod's own control API takes the
//! pods' token (else the portal's), like any pod's.

pub mod dashboard;
pub mod deploy;
mod events;
mod follow;
mod hub;
mod server;
pub(crate) mod stream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::cli::{LogFormat, RunArgs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlatformKind {
    Docker,
    Kubernetes,
    /// No platform: the tools only.
    None,
}

#[derive(Clone, Debug, Args)]
pub struct PortalArgs {
    /// Where the API listens.
    #[arg(long, default_value = "0.0.0.0:9000", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The bearer token clients must send, read from this file (default: env OCHOPOD_PORTAL_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The pods' control token, read from this file (default: env OCHOPOD_TOKEN).
    #[arg(long, value_name = "PATH")]
    pub pod_token_file: Option<PathBuf>,
    /// ZooKeeper, where the pods are found (and where the portal registers); unused when
    /// `OCHOPOD_ETCD` selects etcd.
    #[arg(long, env = "OCHOPOD_ZK", default_value = "127.0.0.1:2181", value_name = "CONNECT")]
    pub zk: String,
    /// The CA that signs the pods' control certificates (`control.tls`); plain HTTP without it.
    #[arg(long, env = "OCHOPOD_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM), and `--tls-key`.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where `deploy` creates pods.
    #[arg(long, value_enum, default_value_t = PlatformKind::Docker)]
    pub platform: PlatformKind,
    /// Docker: the network deployed containers join (the portal's own, so that it reaches them).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// A label `k=v` for every container the portal creates; it manages only those that carry
    /// them all. Repeatable.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The ZooKeeper deployed pods get as `OCHOPOD_ZK` (default: `--zk`).
    #[arg(long, value_name = "CONNECT")]
    pub deploy_zk: Option<String>,
    /// The etcd deployed pods get as `OCHOPOD_ETCD`, credentials included (default: the portal's
    /// own `OCHOPOD_ETCD`): when the portal coordinates through etcd, so do the pods it deploys.
    /// Never logged or shown; `ochopod portal` passes it to its server in a private file.
    #[arg(long, value_name = "URL", value_parser = parse_secret)]
    pub deploy_etcd: Option<ochopod_config::Secret>,
    /// `--deploy-etcd`, read from this file.
    #[arg(long, value_name = "PATH", conflicts_with = "deploy_etcd")]
    pub deploy_etcd_file: Option<PathBuf>,
    /// `--zk` and `--deploy-zk`, read from these files: what `ochopod portal` writes (0600, in
    /// its private folder) for its server, whose `OCHOPOD_ZK` comes without credentials like
    /// any pod process's, so that credentials are never on a command line.
    #[arg(long, value_name = "PATH")]
    pub zk_file: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub deploy_zk_file: Option<PathBuf>,
    /// The etcd the server reads, credentials included, from this file instead of
    /// `OCHOPOD_ETCD`: what `ochopod portal` writes (0600, in its private folder) for its
    /// server, whose `OCHOPOD_ETCD` comes without credentials like any pod process's.
    #[arg(long, value_name = "PATH")]
    pub etcd_file: Option<PathBuf>,
    /// The portal pod's namespace.
    #[arg(long, default_value = "local")]
    pub namespace: String,
    /// The portal pod's control port.
    #[arg(long, default_value_t = 8080)]
    pub control_port: u16,
    /// Serve the API in this process, without the pod around it (what the pod runs).
    #[arg(long)]
    pub serve: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected k=v, got {text:?}")),
    }
}

fn parse_secret(text: &str) -> Result<ochopod_config::Secret, String> {
    Ok(ochopod_config::Secret(text.trim().to_string()))
}

impl PortalArgs {
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }
}

pub fn main(args: PortalArgs, verbose: u8, format: LogFormat) -> ExitCode {
    if args.serve {
        return server::main(args);
    }
    let own_etcd = std::env::var(ochopod_config::etcd::ENV).ok().filter(|u| !u.trim().is_empty());
    if let Err(e) = server::deploys_where_it_reads(&args, own_etcd.is_some() || args.etcd_file.is_some()) {
        eprintln!("ochopod portal: {e}");
        return ExitCode::from(2);
    }
    // The pod: a declaration whose process is this command with --serve.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ochopod"));
    let dir = std::env::temp_dir().join(format!("ochopod-portal-{}", std::process::id()));
    let mut argv: Vec<String> = vec![exe.display().to_string(), "portal".into(), "--serve".into()];
    let mut rest = std::env::args().skip_while(|a| a != "portal").skip(1);
    while let Some(a) = rest.next() {
        // Verbosity and the log format are the pod's; the server logs to its stdout anyway.
        // `--zk`, `--deploy-zk` and `--deploy-etcd` may carry credentials: they reach the server
        // in files (below).
        const IN_FILES: [&str; 4] = ["--log-format", "--deploy-etcd", "--zk", "--deploy-zk"];
        if IN_FILES.contains(&a.as_str()) {
            rest.next();
            continue;
        }
        if IN_FILES.iter().any(|o| a.starts_with(&format!("{o}=")))
            || (a.starts_with("-v") && a.chars().skip(1).all(|c| c == 'v'))
        {
            continue;
        }
        argv.push(a);
    }
    // The server's environment is a pod process's: `OCHOPOD_ETCD` without its credentials. The
    // URL it needs (and the one deployed pods get) go in files only its owner reads.
    let mut private: Vec<(&str, String)> = vec![("zk", args.zk.clone())];
    argv.extend(["--zk-file".into(), dir.join("zk").display().to_string()]);
    if let Some(zk) = &args.deploy_zk {
        private.push(("deploy-zk", zk.clone()));
        argv.extend(["--deploy-zk-file".into(), dir.join("deploy-zk").display().to_string()]);
    }
    if let Some(url) = own_etcd.filter(|_| args.etcd_file.is_none()) {
        private.push(("etcd", url));
        argv.extend(["--etcd-file".into(), dir.join("etcd").display().to_string()]);
    }
    if let Some(url) = &args.deploy_etcd {
        private.push(("deploy-etcd", url.0.clone()));
        argv.extend(["--deploy-etcd-file".into(), dir.join("deploy-etcd").display().to_string()]);
    }
    let command = shell_words::join(&argv).replace("{{", "{{ '{{' }}").replace("{%", "{{ '{%' }}");
    // The pod's control API is behind a token like any pod's: the pods' (`--pod-token-file`,
    // `OCHOPOD_TOKEN`), else the portal's own, so that it is never open.
    let token =
        [(args.pod_token_file.as_deref(), "OCHOPOD_TOKEN"), (args.token_file.as_deref(), "OCHOPOD_PORTAL_TOKEN")]
            .into_iter()
            .map(|(file, env)| server::read_token(file, env))
            .find(|t| !matches!(t, Ok(t) if t.is_empty()));
    let token = match token {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            eprintln!("ochopod portal: {e}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!(
                "ochopod portal: the portal needs a token for its clients: --token-file PATH or OCHOPOD_PORTAL_TOKEN"
            );
            return ExitCode::from(2);
        }
    };
    // The server runs where the command was given, so that relative paths (--tls-cert…) hold.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let declaration = format!(
        "cluster: portal\nnamespace: {ns}\nzk: {zk}\nport: {control}\nports: [{api}]\n\
         control:\n  token_file: control-token\nprocess:\n  command: {command}\n  cwd: {cwd}\n  pipe_output: true\n",
        ns = serde_json::to_string(&args.namespace).unwrap_or_default(),
        zk = serde_json::to_string(&args.zk).unwrap_or_default(),
        control = args.control_port,
        api = args.listen.port(),
        command = serde_json::to_string(&command).unwrap_or_default(),
        cwd = serde_json::to_string(&cwd.display().to_string()).unwrap_or_default(),
    );
    private.push(("control-token", token));
    if let Err(e) = write_private(&dir, &declaration, &private) {
        eprintln!("ochopod portal: cannot write its declaration in {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    // The pod registers where `--zk` says (its declaration's `zk`): `OCHOPOD_ZK` would win
    // over the declaration, and `--zk` given on the command line wins over `OCHOPOD_ZK`. Still
    // one thread here, before the runtime starts.
    std::env::set_var("OCHOPOD_ZK", &args.zk);
    std::env::remove_var("ochopod_zk");
    let code = crate::run::main(RunArgs { pod: dir.join("pod.yaml") }, verbose, format);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// The pod's folder, readable by its owner only, with its declaration and its secrets (the
/// control token, the ZooKeeper and etcd targets with their credentials), each created 0600.
fn write_private(dir: &std::path::Path, declaration: &str, secrets: &[(&str, String)]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::write(dir.join("pod.yaml"), declaration)?;
    for (name, secret) in secrets {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        file.write_all(secret.as_bytes())?;
    }
    Ok(())
}
