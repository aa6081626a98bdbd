//! What goes in and comes out of the machine: the inputs the actor feeds it and the actions it
//! asks the actor to perform.

use std::time::Duration;

use ochopod_api::Task;
use ochopod_core::events::Event;
use ochopod_core::ClusterView;
use serde_json::Value;

use crate::Reply;

/// A request's JSON body as it came: checked to be JSON, not parsed into a tree. A leader's
/// payload holds every pod of the cluster and each task reads from it only what it needs, once
/// (`check` and `ok` only their key and epoch when no hook wants the view): parsing it into a
/// `Value` first, then into the payload, then copying it into the view, cost a pod of a
/// 200-pod cluster about 7 ms of CPU a round (bench/findings.md, "Scale").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonBody(Box<str>);

impl JsonBody {
    /// `Err` says why `bytes` are not one JSON value.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| e.to_string())?;
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        Ok(JsonBody(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The body as a JSON tree.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).expect("checked to be JSON when made")
    }
}

impl From<&Value> for JsonBody {
    fn from(value: &Value) -> Self {
        JsonBody(value.to_string().into())
    }
}

/// Identifies a queued command so its reply reaches its caller.
pub type JobId = u64;
/// Generation of a spawned child.
pub type Gen = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    Initialize,
    CanConfigure,
    Configured,
    Signaled,
    TearDown,
    Finalize,
}

impl HookKind {
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Initialize => "initialize",
            HookKind::CanConfigure => "can_configure",
            HookKind::Configured => "configured",
            HookKind::Signaled => "signaled",
            HookKind::TearDown => "tear_down",
            HookKind::Finalize => "finalize",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The grace period of a stop ran out.
    Grace(Gen),
    /// The backoff after a failed exit ran out.
    Restart(Gen),
    /// Time for the next sanity check.
    Sanity(Gen),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Command {
        id: JobId,
        task: Task,
        body: Option<JsonBody>,
    },
    Shutdown {
        id: JobId,
    },
    /// `Ok(stdout)` or what went wrong.
    HookDone {
        hook: HookKind,
        result: Result<String, HookError>,
    },
    /// Rendering and writing the files of a [`Action::Configure`] finished: `Ok` with what differs
    /// from what the running process was started with (`command`, `env NAME`, `file PATH`; empty
    /// when nothing does or no process runs).
    Configured {
        result: Result<Vec<String>, String>,
    },
    Spawned {
        gen: Gen,
        pid: u32,
    },
    SpawnFailed {
        gen: Gen,
        error: String,
    },
    /// `code` when it exited, `signal` when a signal ended it.
    Exited {
        gen: Gen,
        code: Option<i32>,
        signal: Option<i32>,
    },
    TimerFired(Timer),
    /// `Ok(metrics)` (a JSON object, if the check printed one) or `Err(why it failed)`.
    SanityDone {
        gen: Gen,
        result: Result<Option<Value>, String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Reply {
        id: JobId,
        reply: Reply,
    },
    /// Run a hook; `stdin` defaults to the view as JSON. Answer with [`Input::HookDone`].
    RunHook {
        hook: HookKind,
        view: Option<Box<ClusterView>>,
        stdin: Option<String>,
    },
    /// Render the declaration against the view, write the files, keep the command for spawning.
    /// Answer with [`Input::Configured`].
    Configure {
        view: Box<ClusterView>,
    },
    /// Start the last rendered command. Answer with [`Input::Spawned`] or [`Input::SpawnFailed`]
    /// before any other input, then with [`Input::Exited`] when it ends.
    Spawn {
        gen: Gen,
    },
    /// Signal the process group led by `pgid`.
    Signal {
        pgid: u32,
        sig: Sig,
    },
    Arm {
        timer: Timer,
        delay: Duration,
    },
    /// Answer with [`Input::SanityDone`].
    RunSanity {
        gen: Gen,
    },
    Publish(Event),
}

/// Why a hook did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// It ran and failed: `status` says how (`exit code 3`, `killed by SIGKILL`), `stderr` is
    /// the end of what it printed there.
    #[error("{status}{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Failed { status: String, stderr: String },
    /// It outlived its timeout: its whole process group was killed.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// `sh` could not be started or waited for.
    #[error("{0}")]
    NotRun(String),
}
