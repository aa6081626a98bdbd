//! The operator tools: find pods through ZooKeeper and drive them over their control API.
//!
//! Theory of operation: every tool is one short-lived process. It opens a read-only ZooKeeper
//! session (`--zk`, else `OCHOPOD_ZK`, else `127.0.0.1:2181`), lists the clusters under
//! `/ochopod/clusters` that match the cluster globs, reads every pod's registration, and closes
//! the session (`wait` keeps it and re-reads on each poll). It then sends one HTTP request per
//! pod, all in parallel, each with a timeout, with the bearer token when one is configured
//! (`--token-file`, else `OCHOPOD_TOKEN`), over HTTPS when `--ca` (else `OCHOPOD_CA`) names the
//! roots to trust for pods with `control.tls`, else over plain HTTP. The layout and routes are
//! the original Ochopod's, so the tools drive original Python pods too (reads go out as POST,
//! which both accept).
//!
//! Selection: cluster arguments are globs over `<namespace>.<cluster>` (`demo.web-*`); a bare
//! name without a dot means that cluster in any namespace (`zookeeper` = `*.zookeeper`). Read
//! commands default to every cluster. `-i/--seq` keeps the pods with those seqs. Commands that
//! change pods (`on`, `off`, `kill`, `reset`, `signal`) name their clusters and, without `-i`,
//! need `--force`, as the original CLI did.
//!
//! Output and exit codes: aligned tables for people, `--json` (one document with stable keys:
//! the entries, `ok`, `failed`, `problems`) for scripts. The exit code is 0 only if every
//! targeted pod succeeded; otherwise stderr says which pods failed and why (unreachable pods
//! included, never hidden) and the code is 1. Nothing matched, ZooKeeper unreachable, or a
//! `wait` that timed out: 1. Bad usage (a mutating command without `--force` or `-i`, a bad
//! token file, bad JSON): 2.
//!
//! Layout: one module per family — [`read`] (`ls`, `grep`, `info`, `poll`, `port`), [`log`],
//! [`drive`] (`on`, `off`, `kill`, `reset`, `signal`, `reconfigure`) and [`wait`] — each a set
//! of functions that return data (rows, per-pod results), which the portal calls as the CLI
//! does; [`Report`] turns that data into tables or `--json`. [`reach`] holds the sequence they
//! share (pod client → discover → fan out → outcome), [`error::ToolError`] is the one error,
//! carried by `?` up to [`error::exit`], the one place that picks messages and exit codes, and
//! [`output`] is the only code that writes.

mod args;
pub(crate) mod discovery;
mod drive;
pub(crate) mod error;
pub(crate) mod fanout;
mod log;
pub(crate) mod output;
pub(crate) mod reach;
mod read;
pub mod remote;
mod table;
pub(crate) mod views;
pub(crate) mod wait;

use std::process::ExitCode;
use std::time::Duration;

use ochopod_api::Task;
use serde_json::{json, Value};

pub use args::*;
pub use error::ToolError;

/// What a tool found or did, ready to be shown: the CLI prints [`text`](Report::text) or, with
/// `--json`, [`document`](Report::document); the portal serves the document.
pub trait Report {
    /// `--json`: one document with stable keys (the entries, `ok`, `failed`, `problems`).
    fn document(&self) -> Value;
    /// For people: an aligned table, or a section per pod.
    fn text(&self) -> String;
    /// What discovery skipped (a pod still registering…), said on stderr before the output.
    fn warnings(&self) -> &[String];
    /// Ok only when every targeted pod succeeded.
    fn verdict(&self) -> Result<(), ToolError>;
}

/// Prints a report and returns its verdict. A stdout nobody reads any more ends the output, not
/// the verdict: the exit code still says whether every pod succeeded.
fn show(report: &(impl Report + ?Sized), json: bool) -> Result<(), ToolError> {
    for w in report.warnings() {
        output::note_line(&format!("warning: {w}"));
    }
    let printed = if json { output::print_json(&report.document()) } else { output::print(&report.text()) };
    match printed {
        Ok(()) | Err(ToolError::Closed) => report.verdict(),
        Err(e) => Err(e),
    }
}

pub fn main(tool: Tool) -> ExitCode {
    error::exit(run_blocking(tool))
}

fn run_blocking(tool: Tool) -> Result<(), ToolError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ToolError::Runtime)?;
    // Everything that holds a ZooKeeper client ends inside this future, so the client's session
    // task is still driven when the client is dropped.
    runtime.block_on(run(tool))
}

async fn run(tool: Tool) -> Result<(), ToolError> {
    if let Some(portal) = tool.common().portal.clone() {
        return remote::run(tool, &portal).await;
    }
    match tool {
        Tool::Log(a) if a.follow => follow(a).await,
        Tool::Wait(a) => wait::run(a).await,
        tool => {
            let json = tool.common().json;
            show(&*report(tool).await?, json)
        }
    }
}

/// Runs a tool and returns what it found or did: the CLI shows it, the portal serves it. `log
/// -f` has no end, so it is no report (the portal streams it; see [`log::Follower`]); `wait`
/// reports once it is ready or gave up, without the progress line.
pub async fn report(tool: Tool) -> Result<Box<dyn Report>, ToolError> {
    use reach::Query;
    Ok(match tool {
        Tool::Ls(a) => Box::new(read::ls(&a.common, &a.sel.clusters, &a.sel.seq, a.all).await?),
        Tool::Grep(a) => Box::new(read::Grep(read::infos(&a.common, Query::pods(&a.sel.clusters, &a.sel.seq)).await?)),
        Tool::Info(a) => Box::new(read::Infos(read::infos(&a.common, Query::pods(&a.sel.clusters, &a.sel.seq)).await?)),
        Tool::Poll(a) => {
            Box::new(read::Metrics(read::infos(&a.common, Query::pods(&a.sel.clusters, &a.sel.seq)).await?))
        }
        Tool::Port(a) => Box::new(read::port(&a.common, Query::pods(&a.sel.clusters, &a.sel.seq), a.port).await?),
        Tool::Log(a) if a.follow => return Err(ToolError::Usage("log -f is a stream, not a report".into())),
        Tool::Log(a) => {
            let n = if a.all { None } else { Some(a.lines) };
            let outcome = log::fetch(&a.common, Query::pods(&a.sel.clusters, &a.sel.seq)).await?;
            Box::new(log::Logs { outcome, n, escape: a.escape.unwrap_or_else(output::stdout_is_terminal) })
        }
        Tool::On(a) => Box::new(drive::control(&a.common, &a.targets, Task::On, a.timeout).await?),
        Tool::Off(a) => Box::new(drive::control(&a.common, &a.targets, Task::Off, a.timeout).await?),
        Tool::Kill(a) => Box::new(drive::control(&a.common, &a.targets, Task::Kill, a.timeout).await?),
        Tool::Reset(a) => Box::new(drive::reset(&a.common, &a.targets).await?),
        Tool::Signal(a) => {
            let (clusters, body) = drive::signal_body(&a.args, a.data.as_deref()).map_err(ToolError::Usage)?;
            let targets = Targets { clusters, seq: a.seq, force: a.force };
            Box::new(drive::signal(&a.common, &targets, body.as_ref(), a.timeout).await?)
        }
        Tool::Reconfigure(a) => Box::new(drive::reconfigure(&a.common, &a.clusters, a.timeout).await?),
        Tool::Wait(a) => Box::new(wait::report(&a).await?),
    })
}

/// `log -f`: prints the tails, then every second the lines each pod added since, until
/// interrupted or until nobody reads stdout. Pods that join are followed too; a pod that stops
/// answering is reported once, and again when it is back.
async fn follow(a: LogArgs) -> Result<(), ToolError> {
    let n = if a.all { None } else { Some(a.lines) };
    let query = reach::Query::pods(&a.sel.clusters, &a.sel.seq);
    let (mut follower, first) = log::Follower::start(&a.common, query, n).await?;
    let escape = output::stdout_is_terminal();
    let mut printed = print_events(&first, follower.many(), a.common.json, escape);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while printed.is_ok() {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {}
        }
        let events = follower.poll().await;
        printed = print_events(&events, follower.many(), a.common.json, escape);
    }
    follower.close().await;
    printed
}

fn print_events(events: &[log::Event], many: bool, json: bool, escape: bool) -> Result<(), ToolError> {
    let mut out = String::new();
    for e in events {
        match e {
            log::Event::Line { pod, line } if json => {
                out.push_str(&json!({"pod": pod, "line": line}).to_string());
                out.push('\n');
            }
            log::Event::Line { pod, line } if many => out.push_str(&format!("[{pod}] {}\n", log::shown(line, escape))),
            log::Event::Line { line, .. } => {
                out.push_str(&log::shown(line, escape));
                out.push('\n');
            }
            log::Event::Joined { pod } => output::note_line(&format!("{pod}: joined")),
            log::Event::Left { pod } => output::note_line(&format!("{pod}: left")),
            log::Event::Warning(w) => output::note_line(&format!("warning: {w}")),
            log::Event::Failing { pod, failure } => output::note_line(&format!("{pod}: {failure}")),
            log::Event::Back { pod } => output::note_line(&format!("{pod}: answering again")),
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    output::print(&out)
}
