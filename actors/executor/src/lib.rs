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
//! a cluster view into argv, environment and files (minijinja, strict undefined, each template's
//! work bounded by fuel and its output capped; rendered and written on a thread of their own so
//! the actor never waits on a template), and says which of them changed since the child started
//! (`restart: changed`); [`process`] runs
//! hooks and checks and spawns the child in its own process group, on top of the shared
//! `ochopod-proc` crate, whose reaper reaps orphaned zombies as PID 1 or as a child subreaper
//! without stealing the exit status of the children we await.
//!
//! Secrets and places: what the child, hooks, sanity commands and the templates' `env` see of
//! ochopod's environment, and the folder they run in, is the config's pod-wide policy
//! ([`ochopod_config::Settings::pod_env`], [`ochopod_config::Settings::run_dir`]): no control
//! token variable, no ZooKeeper credentials.
//!
//! Failure policy: a process exiting 0 finalizes the pod, which then idles as dead (410 to every
//! command, info and log still served). A failing process is restarted after a decorrelated-jitter
//! delay, reported as `crashloop` after `crashloop_after` failures in a row, and turned off after
//! `give_up_after` of them or after `retries` failed sanity checks. A failing `initialize` kills
//! the pod (as the original); a failing render only fails the command (406), the pod stays.
//! Stopping sends SIGTERM (or runs `tear_down`) to the process group, waits `grace`, then
//! SIGKILLs the group unless `soft`; the stop is over once the child is gone and `tear_down` has
//! ended (each hook is bounded by its own timeout; a cut one is reported as `hook_timed_out`), so
//! `finalize` or a restart never overlaps it. A shutdown abandons a configuration still rendering.
//!
//! Logs: what hooks print goes to the log under their name; the logged command line has the
//! values of environment variables masked unless `debug` is on (`/log` is served to whoever
//! reaches the port).

pub mod actor;
pub mod machine;
pub mod process;
pub mod render;
/// Fixtures shared by the unit tests and the process-level tests in `tests/` (the `testing`
/// feature, which only the dev-dependency on this crate turns on).
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

pub use actor::{Command, Executor, ExecutorStatus, GetStatus, Reply, Shutdown};
pub use machine::JsonBody;
