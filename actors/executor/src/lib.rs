//! Executor actor: owns the pod's one sub-process.
//!
//! Theory of operation. The [`Executor`] actor owns the supervised child (or none, for a sidecar
//! declared without a `process`), the FIFO of control commands, the hooks, the rendered files, the
//! sanity checks and the restart backoff. It accepts [`Command`] (a `/control/<task>` verb with
//! its body) → [`Reply`], [`GetStatus`] → [`ExecutorStatus`], and [`Shutdown`] (tear down with
//! grace, run `finalize`, reply once nothing runs). It emits lifecycle events on the
//! [`ochopod_core::events::EventBus`] (process states, restarts, sanity results, configurations).
//!
//! All decisions live in [`machine`], a pure state machine unit-tested without processes: it
//! takes inputs (command arrived, hook done, child exited, timer fired, sanity result) and returns
//! actions (reply, run a hook, render, spawn, signal the group, arm a timer). [`actor`] performs
//! them with tokio processes and actix delayed self-messages; [`render`] turns the declaration and
//! a cluster view into argv, environment and files (minijinja, strict undefined); [`process`] runs
//! hooks and checks and spawns the child in its own process group, on top of the shared
//! `ochopod-proc` crate, whose [`reaper`] reaps orphaned zombies as PID 1 or as a child subreaper
//! without stealing the exit status of the children we await.
//!
//! Secrets: the variable the control token was read from (`control.token_env`) is removed from
//! everything the pod starts or renders: the child's environment, hooks, sanity commands and the
//! templates' `env`.
//!
//! Failure policy: a process exiting 0 finalizes the pod, which then idles as dead (410 to every
//! command, info and log still served). A failing process is restarted after a decorrelated-jitter
//! delay, reported as `crashloop` after `crashloop_after` failures in a row, and turned off after
//! `give_up_after` of them or after `retries` failed sanity checks. A failing `initialize` kills
//! the pod (as the original); a failing render only fails the command (406), the pod stays.
//! Stopping sends SIGTERM (or runs `tear_down`) to the process group, waits `grace`, then
//! SIGKILLs the group unless `soft`.

pub mod actor;
pub mod machine;
pub mod process;
pub mod render;
#[cfg(test)]
mod testing;

pub use actor::Executor;
/// Kept here for the callers that knew it as the executor's (the binary installs it).
pub use ochopod_proc::reaper;

use std::time::Duration;

use actix::prelude::*;
use ochopod_api::Task;
use serde::Serialize;
use serde_json::Value;

/// A control verb for the executor. Commands run one at a time in arrival order (FIFO); the
/// reply comes when the command has completed. The HTTP layer applies the request timeout (408);
/// a timed-out command stays queued and still runs, as in the original.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Reply")]
pub struct Command {
    pub task: Task,
    /// The raw JSON body (`None` for an empty body). For check/on/ok a leader payload
    /// (`ochopod_core::ControlPayload`); off and kill only look at a payload's epoch and ignore
    /// any other body; for signal anything.
    pub body: Option<Value>,
    pub timeout: Duration,
}

/// The outcome of a [`Command`], mapped to HTTP by the control actor.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 with this JSON body (`{}` for every task but `signal`).
    Ok(Value),
    /// 406: `can_configure`, `initialize` or the configuration failed.
    SoftFailure(String),
    /// 410: the pod is dead and idles.
    Dead,
    /// 500: a hook (`configured`, `signaled`) failed.
    HookFailure(String),
    /// 409: a command whose payload comes from an epoch older than the newest applied `on`.
    StaleEpoch { epoch: u64, newest: u64 },
    /// 400: the body is not what the task needs.
    BadRequest(String),
}

impl Reply {
    pub fn status(&self) -> u16 {
        use ochopod_api::wire::status;
        match self {
            Reply::Ok(_) => status::OK,
            Reply::SoftFailure(_) => status::SOFT_FAILURE,
            Reply::Dead => status::DEAD,
            Reply::HookFailure(_) => status::HOOK_FAILURE,
            Reply::StaleEpoch { .. } => status::CONFLICT,
            Reply::BadRequest(_) => status::BAD_REQUEST,
        }
    }
}

/// What `/info` and `/metrics` show of the executor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ExecutorStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExecutorStatus {
    /// `stopped`, `running`, `terminating`, `dead`, `backoff`, `crashloop`, or `sidecar`.
    pub process: String,
    pub pid: Option<u32>,
    pub sidecar: bool,
    /// Restarts after failures since the pod started.
    pub restarts: u64,
    /// The last sanity check's JSON object output (`{}` when none).
    pub metrics: Value,
    /// Sanity-check failures since the pod started.
    pub sanity_failures: u64,
    /// The newest epoch of an applied configuration.
    pub epoch: Option<u64>,
    /// Configurations applied (`on` with a payload that rendered successfully).
    pub configurations: u64,
    pub last_exit: Option<i32>,
}

/// Graceful stop for the pod's shutdown: tear the process down (grace, then SIGKILL unless
/// `soft`), run `finalize`, and reply once nothing is left running.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Shutdown;
