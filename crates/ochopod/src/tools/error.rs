//! The one error of the tools, and the one place that turns it into a message and an exit code.
//!
//! Every tool returns `Result<(), ToolError>` and every step in it uses `?`; [`exit`] is the only
//! code that prints an error or picks an exit code: 2 for bad usage (nothing was run), 0 when
//! nobody reads stdout any more (`| head`), 1 for everything else.

use std::process::ExitCode;

use super::fanout::{report, Failed};
use super::output;

/// Why a tool did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad usage: a mutating command without `--force` or `-i`, a bad token file or CA, bad JSON,
    /// a bad `--zk`. Nothing was sent to any pod.
    #[error("{0}")]
    Usage(String),
    /// ZooKeeper could not be reached or read.
    #[error("{0}")]
    ZooKeeper(String),
    /// No cluster matches the globs (shown as given, `*` for none).
    #[error("no cluster matches {0}")]
    NoCluster(String),
    /// Clusters matched, but no pod in them does (or none with the seqs asked for). `notes` are
    /// what discovery had to say first: skipped nodes, seqs that matched nothing.
    #[error("no pods matched in {clusters}")]
    NoPods { clusters: String, notes: Vec<String> },
    /// `ls` matched only clusters whose pods are all gone.
    #[error("no pods in {} (ls --all lists {})", .0.join(" "), if .0.len() == 1 { "it" } else { "them" })]
    Gone(Vec<String>),
    /// Some targeted pods failed, or seqs asked for matched nothing: the report names them.
    #[error("{}", report(*.targeted, .failed, .problems))]
    Pods { targeted: usize, failed: Vec<Failed>, problems: Vec<String> },
    /// `wait` gave up.
    #[error("{0}")]
    TimedOut(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write to stdout: {0}")]
    Output(#[source] std::io::Error),
    /// Nobody reads stdout any more (`| head` is done): there is nothing left to say.
    #[error("stdout closed")]
    Closed,
    /// A portal ran the tool and says how it ended: its stderr text and exit code, as they are.
    #[error("{}", .message.trim_end().trim_start_matches("error: "))]
    Remote { message: String, code: u8 },
    /// The portal could not be reached, or did not answer as a portal.
    #[error("portal {0}")]
    Portal(String),
}

/// Bad usage: the command was not run at all.
const USAGE: u8 = 2;

impl ToolError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ToolError::Usage(_) => USAGE,
            ToolError::Closed => 0,
            ToolError::Remote { code, .. } => *code,
            _ => 1,
        }
    }

    /// A name for the kind, in the portal's JSON errors.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::Usage(_) => "usage",
            ToolError::ZooKeeper(_) => "zookeeper",
            ToolError::NoCluster(_) => "no_cluster",
            ToolError::NoPods { .. } => "no_pods",
            ToolError::Gone(_) => "gone",
            ToolError::Pods { .. } => "pods_failed",
            ToolError::TimedOut(_) => "timed_out",
            ToolError::Runtime(_) | ToolError::Output(_) | ToolError::Closed => "internal",
            ToolError::Remote { .. } => "remote",
            ToolError::Portal(_) => "portal",
        }
    }

    /// What stderr says: the report as it is for failed pods, `error: …` otherwise.
    pub fn message(&self) -> String {
        match self {
            ToolError::Closed => String::new(),
            ToolError::Remote { message, .. } => message.clone(),
            ToolError::Pods { .. } => self.to_string(),
            ToolError::NoPods { notes, .. } => {
                let mut out: String = notes.iter().map(|n| format!("{n}\n")).collect();
                out.push_str(&format!("error: {self}\n"));
                out
            }
            _ => format!("error: {self}\n"),
        }
    }
}

/// The end of every tool: the message on stderr and the exit code.
pub fn exit(result: Result<(), ToolError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::note(&e.message());
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_2_a_closed_stdout_is_quiet_and_the_rest_is_1() {
        assert_eq!(ToolError::Usage("x".into()).exit_code(), 2);
        assert_eq!((ToolError::Closed.exit_code(), ToolError::Closed.message()), (0, String::new()));
        let none = ToolError::NoCluster("web".into());
        assert_eq!((none.exit_code(), none.message()), (1, "error: no cluster matches web\n".to_string()));
        let no_pods = ToolError::NoPods { clusters: "a.b".into(), notes: vec!["no pod has seq 9 in a.b".into()] };
        assert_eq!(no_pods.message(), "no pod has seq 9 in a.b\nerror: no pods matched in a.b\n");
        let pods = ToolError::Pods { targeted: 2, failed: vec![], problems: vec!["no pod has seq 9".into()] };
        assert_eq!((pods.exit_code(), pods.message()), (1, "no pod has seq 9\n".to_string()));
        let gone = ToolError::Gone(vec!["a.b".into()]);
        assert_eq!((gone.exit_code(), gone.message()), (1, "error: no pods in a.b (ls --all lists it)\n".to_string()));
        assert_eq!(
            ToolError::Gone(vec!["a.b".into(), "a.c".into()]).to_string(),
            "no pods in a.b a.c (ls --all lists them)"
        );
    }
}
