//! The command line: `ochopod run | validate | render`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ochopod",
    version,
    about = "Coordination runtime for containers: ZooKeeper-backed clusters that configure themselves"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log line format on stdout.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pod: register in ZooKeeper, take part in the election, supervise the process and
    /// serve the control API until SIGTERM/SIGINT (the container's ENTRYPOINT).
    Run(RunArgs),
    /// Check a pod declaration and print the validated settings; exit 2 with the error
    /// (file:line:column: field: message) if it is bad.
    Validate(ValidateArgs),
    /// Dry run: render the command, env and files of a declaration for a given cluster view,
    /// without ZooKeeper, so templates can be checked.
    Render(RenderArgs),
    /// Run the portal: a pod (cluster `portal`) serving the tools and deploy/scale/delete over
    /// HTTP behind a bearer token.
    Portal(crate::portal::PortalArgs),
    /// Deploy a cluster through a portal: validate the declaration, create the pods, return once
    /// the cluster is formed.
    Deploy(crate::portal::deploy::DeployArgs),
    /// Scale a deployed cluster through a portal (down: the highest seqs first, each stopped
    /// cleanly).
    Scale(crate::portal::deploy::ScaleArgs),
    /// Delete a deployed cluster through a portal: every pod and its ZooKeeper nodes.
    Delete(crate::portal::deploy::ScaleArgs),
    /// Serve the live dashboard on a workstation (the page `ochopod portal` serves at `/`),
    /// reading ZooKeeper and the pods directly; actions only with a token.
    Dashboard(crate::portal::dashboard::DashboardArgs),
    /// The operator tools (ls, grep, info, log, on, off, wait…).
    #[command(flatten)]
    Tool(crate::tools::Tool),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pod declaration (YAML).
    pub pod: PathBuf,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The pod declaration (YAML).
    pub pod: PathBuf,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The pod declaration (YAML).
    pub pod: PathBuf,
    /// A cluster view: the JSON a leader sends, `{"pods": {uuid: registration}, "dependencies":
    /// {entry: {uuid: registration}}, "key": "<this pod's uuid>"}`.
    #[arg(long)]
    pub cluster: PathBuf,
    /// Render as this pod (overrides the view's `key`).
    #[arg(long)]
    pub key: Option<String>,
}
