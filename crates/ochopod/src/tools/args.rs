//! The tools' command line: what each tool takes (clap), shared by every family.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum Tool {
    /// Clusters: running/total pods and the leader's status (clusters whose pods are all gone:
    /// with --all).
    Ls(LsArgs),
    /// Pods: cluster, seq, ip, node, process and state.
    Grep(ReadArgs),
    /// Each pod's full /info.
    Info(ReadArgs),
    /// The last lines of each pod's log; -f follows.
    Log(LogArgs),
    /// Where each pod publishes a container port (host ip, public ip, host port).
    Port(PortArgs),
    /// Each pod's metrics (the output of its last sanity check).
    Poll(ReadArgs),
    /// Start the process again with its last configuration (no reconfiguration).
    On(ControlArgs),
    /// Stop the process gracefully; the pod stays registered.
    Off(ControlArgs),
    /// Drop and re-create the pods' ZooKeeper sessions (same seq; the process is untouched).
    Reset(ResetArgs),
    /// Stop the process for good: the pod idles as dead (410) until its container goes.
    Kill(ControlArgs),
    /// Run the pods' `signaled` hook with a JSON body and print each reply.
    Signal(SignalArgs),
    /// Ask each cluster's leader to run a configuration round now.
    Reconfigure(ReconfigureArgs),
    /// Wait until clusters have N running pods and no pending configuration (for CI); with
    /// --healthy, also passing sanity checks and probe.
    Wait(WaitArgs),
}

impl Tool {
    /// The options every tool takes.
    pub fn common(&self) -> &Common {
        match self {
            Tool::Ls(a) => &a.common,
            Tool::Grep(a) | Tool::Info(a) | Tool::Poll(a) => &a.common,
            Tool::Log(a) => &a.common,
            Tool::Port(a) => &a.common,
            Tool::On(a) | Tool::Off(a) | Tool::Kill(a) => &a.common,
            Tool::Reset(a) => &a.common,
            Tool::Signal(a) => &a.common,
            Tool::Reconfigure(a) => &a.common,
            Tool::Wait(a) => &a.common,
        }
    }
}

/// Options every tool takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// ZooKeeper: `host:port[,host:port…]`, optionally `zk://…/chroot`.
    #[arg(long, env = "OCHOPOD_ZK", default_value = "127.0.0.1:2181", value_name = "CONNECT")]
    pub zk: String,
    /// Read the control token from this file (default: env OCHOPOD_TOKEN); sent as a bearer token.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Talk HTTPS to the pods, trusting only the certificates in this PEM file: the CA of the
    /// pods' `control.tls`, or their shared certificate. Without it, plain HTTP.
    #[arg(long, env = "OCHOPOD_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// How long each pod may take to answer a read (`5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub pod_timeout: Duration,
    /// Go through this portal (`http[s]://host:port`) instead of ZooKeeper and the pods: same
    /// output and exit codes. The token (`--token-file`, `OCHOPOD_TOKEN`) and `--ca` are then the
    /// portal's.
    #[arg(long, env = "OCHOPOD_PORTAL", value_name = "URL")]
    pub portal: Option<String>,
}

/// Which pods a read command looks at.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Cluster globs over `<namespace>.<cluster>` (default: all); `web` means `*.web`.
    #[arg(value_name = "CLUSTER")]
    pub clusters: Vec<String>,
    /// Only the pods with these seqs (`-i 3 -i 5` or `-i 3,5`).
    #[arg(short = 'i', long = "seq", value_name = "SEQ", value_delimiter = ',')]
    pub seq: Vec<u64>,
}

/// Which pods a command that changes them targets: clusters are required.
#[derive(Debug, Clone, Args)]
pub struct Targets {
    /// Cluster globs over `<namespace>.<cluster>`; `web` means `*.web`.
    #[arg(value_name = "CLUSTER", required = true)]
    pub clusters: Vec<String>,
    /// Only the pods with these seqs (`-i 3 -i 5` or `-i 3,5`).
    #[arg(short = 'i', long = "seq", value_name = "SEQ", value_delimiter = ',')]
    pub seq: Vec<u64>,
    /// Act on every pod of the clusters when no `-i` is given.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub sel: Selection,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub sel: Selection,
    /// Also list the clusters whose pods are all gone (no pod and no leader's snapshot left in
    /// ZooKeeper), marked `gone`.
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub sel: Selection,
    /// How many of the last lines to show.
    #[arg(short = 'n', long, default_value_t = 16, value_name = "N")]
    pub lines: usize,
    /// Show every line the pod keeps.
    #[arg(short = 'l', long, conflicts_with = "lines")]
    pub all: bool,
    /// Keep printing new lines (polls every second) until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Whether lines are shown escaped: for stdout when unset; the portal sets its client's.
    #[arg(skip)]
    pub escape: Option<bool>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container port.
    pub port: u16,
    #[command(flatten)]
    pub sel: Selection,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// How long each pod may take (sent to the pod, which answers 408 past it).
    #[arg(short = 't', long, default_value = "60s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub timeout: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub targets: Targets,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct SignalArgs {
    /// Cluster globs, and optionally the JSON object to send (the argument starting with `{`).
    #[arg(value_name = "CLUSTER|JSON", required = true)]
    pub args: Vec<String>,
    /// The JSON body to send (any JSON value), instead of a `{…}` argument.
    #[arg(short = 'd', long, value_name = "JSON")]
    pub data: Option<String>,
    /// Only the pods with these seqs (`-i 3 -i 5` or `-i 3,5`).
    #[arg(short = 'i', long = "seq", value_name = "SEQ", value_delimiter = ',')]
    pub seq: Vec<u64>,
    /// Act on every pod of the clusters when no `-i` is given.
    #[arg(long)]
    pub force: bool,
    /// How long each pod's hook may take.
    #[arg(short = 't', long, default_value = "60s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub timeout: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ReconfigureArgs {
    /// Cluster globs over `<namespace>.<cluster>`; `web` means `*.web`.
    #[arg(value_name = "CLUSTER", required = true)]
    pub clusters: Vec<String>,
    /// How long the leader may take to answer.
    #[arg(short = 't', long, default_value = "30s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub timeout: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Cluster globs over `<namespace>.<cluster>`; `web` means `*.web`. Every match must be ready.
    #[arg(value_name = "CLUSTER", required = true)]
    pub clusters: Vec<String>,
    /// Running pods needed per cluster (default: every registered pod, at least one).
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<usize>,
    /// Give up (exit 1) after this long.
    #[arg(short = 't', long, default_value = "60s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub timeout: Duration,
    /// Also require every running pod's sanity check and the leader's probe to pass.
    #[arg(long)]
    pub healthy: bool,
    #[command(flatten)]
    pub common: Common,
}

/// `30s`, `500ms`, `2m`, `1m30s`; a bare number is seconds, as the original CLI's `-t 60` was.
pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return t.parse::<u64>().map(Duration::from_secs).map_err(|e| format!("{t:?}: {e}"));
    }
    ochopod_config::duration::parse_duration(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        tool: Tool,
    }

    fn parse(args: &[&str]) -> Result<Tool, clap::Error> {
        Cli::try_parse_from(std::iter::once("ochopod").chain(args.iter().copied())).map(|c| c.tool)
    }

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration_arg("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration_arg("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration_arg("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration_arg("60"), Ok(Duration::from_secs(60)));
        assert!(parse_duration_arg("soon").is_err());
    }

    #[test]
    fn seqs_are_given_repeated_or_comma_separated() {
        let Tool::Grep(a) = parse(&["grep", "web", "-i", "3,5", "-i", "7", "--zk", "h:1"]).unwrap() else {
            panic!("grep")
        };
        assert_eq!(a.sel.seq, vec![3, 5, 7]);
        assert_eq!(a.sel.clusters, vec!["web"]);
        assert_eq!(a.common.zk, "h:1");
        assert!(parse(&["grep", "-i", "x"]).is_err());
    }

    #[test]
    fn mutating_commands_require_clusters() {
        assert!(parse(&["on"]).is_err());
        assert!(parse(&["kill", "--force"]).is_err());
        let Tool::Off(a) = parse(&["off", "web", "--force", "-t", "5"]).unwrap() else { panic!("off") };
        assert!(a.targets.force);
        assert_eq!(a.timeout, Duration::from_secs(5));
    }

    #[test]
    fn wait_takes_a_count_and_a_timeout() {
        let Tool::Wait(a) = parse(&["wait", "demo.*", "--count", "3", "--timeout", "30s"]).unwrap() else {
            panic!("wait")
        };
        assert_eq!((a.count, a.timeout, a.healthy), (Some(3), Duration::from_secs(30), false));
        assert!(parse(&["wait"]).is_err());
        let Tool::Wait(a) = parse(&["wait", "web", "--healthy"]).unwrap() else { panic!("wait") };
        assert!(a.healthy);
    }

    #[test]
    fn ls_lists_gone_clusters_only_when_asked() {
        let Tool::Ls(a) = parse(&["ls", "web"]).unwrap() else { panic!("ls") };
        assert!(!a.all);
        let Tool::Ls(a) = parse(&["ls", "-a"]).unwrap() else { panic!("ls") };
        assert!(a.all && a.sel.clusters.is_empty());
    }

    #[test]
    fn log_and_port_options() {
        let Tool::Log(a) = parse(&["log", "-f", "-n", "3"]).unwrap() else { panic!("log") };
        assert!(a.follow && !a.all);
        assert_eq!(a.lines, 3);
        let Tool::Port(a) = parse(&["port", "2181", "zookeeper", "-j"]).unwrap() else { panic!("port") };
        assert_eq!((a.port, a.sel.clusters.as_slice(), a.common.json), (2181, &["zookeeper".to_string()][..], true));
    }
}
