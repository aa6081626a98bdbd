//! The executor actor: drives the [`Machine`] with real processes, hooks and timers.
//!
//! Every message becomes an [`Input`]; every [`Action`] the machine returns is performed here.
//! Spawning and signalling are quick and synchronous, so their results go straight back to the
//! machine; rendering and writing the files (templates of bounded but real work, a disk maybe
//! slow) run on a thread of their own, and they, hooks, sanity checks and child exits are futures
//! spawned on the actor's context; timers are delayed self-notifications. The mailbox is never blocked: a command's handler parks its
//! reply channel and returns at once, and the reply is sent when the machine says the command
//! completed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use ochopod_api::Task;
use ochopod_config::{Hook, Settings};
use ochopod_core::events::{Event, EventBus};
use ochopod_core::ClusterView;
use ochopod_proc::Shell;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::machine::{Action, HookError, HookKind, Input, JobId, JsonBody, Machine, Policy};
use crate::process::{http_client, run_hook, run_sanity, signal_group, spawn_child};
use crate::render::{changed_inputs, mask, render, write_files, Rendered};

pub struct Executor {
    settings: Arc<Settings>,
    events: EventBus,
    machine: Machine,
    /// Reply channels of the commands in the machine's queue, by job id.
    waiting: HashMap<JobId, oneshot::Sender<Reply>>,
    /// The shutdown requests waiting for the pod to be dead.
    shutdowns: HashMap<JobId, oneshot::Sender<()>>,
    next_id: JobId,
    /// The pod's own environment, read once, as [`Settings::pod_env`] lets processes see it: the
    /// base of the child's, the hooks' and the template `env`.
    env: BTreeMap<String, String>,
    /// Secret variables, also removed from what hooks and checks inherit from ochopod itself.
    hidden: Vec<String>,
    /// The client of HTTP sanity checks, built at the first one.
    http: Option<Result<reqwest::Client, String>>,
    /// The last successful configuration: what a spawn starts.
    rendered: Option<Rendered>,
    /// What the current (or last) child was started with, for `restart: changed`.
    started: Option<Rendered>,
    /// Where the child, hooks and checks run: [`Settings::run_dir`].
    cwd: Option<PathBuf>,
}

impl Executor {
    pub fn new(settings: Arc<Settings>, events: EventBus) -> Self {
        // Not `std::env::vars()`: it panics on a variable that is not UTF-8.
        let env = ochopod_config::process_env();
        Self::with_env(settings, events, env)
    }

    /// As [`Executor::new`] with the pod environment given (tests, `ochopod render`).
    pub fn with_env(settings: Arc<Settings>, events: EventBus, env: BTreeMap<String, String>) -> Self {
        let machine = Machine::new(Policy::from_settings(&settings), rand::random());
        let cwd = settings.run_dir();
        let ochopod_config::PodEnv { vars: env, hidden } = settings.pod_env(&env);
        Executor {
            settings,
            events,
            machine,
            waiting: HashMap::new(),
            shutdowns: HashMap::new(),
            next_id: 1,
            env,
            hidden,
            http: None,
            rendered: None,
            started: None,
            cwd,
        }
    }

    /// A hook or sanity command: the pod's environment plus `env`, never a hidden variable.
    fn shell(&self, command: &str, timeout: std::time::Duration, env: BTreeMap<String, String>) -> Shell {
        let mut shell = Shell::new(command, timeout).envs(env).cwd(self.cwd.clone());
        for name in &self.hidden {
            shell = shell.env_remove(name.clone());
        }
        shell
    }

    fn hook(&self, hook: HookKind) -> Option<&Hook> {
        let h = &self.settings.hooks;
        match hook {
            HookKind::Initialize => h.initialize.as_ref(),
            HookKind::CanConfigure => h.can_configure.as_ref(),
            HookKind::Configured => h.configured.as_ref(),
            HookKind::Signaled => h.signaled.as_ref(),
            HookKind::TearDown => h.tear_down.as_ref(),
            HookKind::Finalize => h.finalize.as_ref(),
        }
    }

    fn next_id(&mut self) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Feed one input to the machine and perform what it asks, including the inputs that
    /// synchronous actions produce.
    fn drive(&mut self, ctx: &mut Context<Self>, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for action in self.machine.handle(input, Instant::now()) {
                if let Some(next) = self.perform(ctx, action) {
                    inputs.push_back(next);
                }
            }
        }
    }

    fn perform(&mut self, ctx: &mut Context<Self>, action: Action) -> Option<Input> {
        match action {
            Action::Reply { id, reply } => {
                if let Some(tx) = self.waiting.remove(&id) {
                    // The caller may have given up (HTTP timeout): the command still ran.
                    let _ = tx.send(reply);
                } else if let Some(tx) = self.shutdowns.remove(&id) {
                    let _ = tx.send(());
                }
                None
            }
            Action::RunHook { hook, view, stdin } => {
                let Some(h) = self.hook(hook).cloned() else {
                    return Some(Input::HookDone { hook, result: Ok(String::new()) });
                };
                let stdin = stdin.unwrap_or_else(|| view_json(view.as_deref()));
                let mut env = self.env.clone();
                env.extend(self.settings.ochopod_vars(view.as_deref()));
                // What the original handed `tear_down` and `signaled` (the Popen), as a pid.
                if let Some(pid) = self.machine.pid() {
                    env.insert("OCHOPOD_PID".into(), pid.to_string());
                }
                // What the hook prints goes to the pod's log (stdout, `/log`) under its name.
                let shell = self.shell(&h.command, h.timeout, env).stdin(stdin).log_output(hook.name());
                tracing::debug!(hook = hook.name(), "running hook");
                let fut = async move { run_hook(&shell).await };
                let timeout_ms = h.timeout.as_millis() as u64;
                ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
                    if matches!(result, Err(HookError::TimedOut(_))) {
                        tracing::warn!(
                            hook = hook.name(),
                            timeout_ms,
                            "hook cut by its timeout: its process group was killed"
                        );
                        act.events.publish(Event::HookTimedOut { hook: hook.name().to_string(), timeout_ms });
                    } else if let Err(e) = &result {
                        tracing::warn!(hook = hook.name(), error = %e, "hook failed");
                    }
                    act.drive(ctx, Input::HookDone { hook, result });
                }));
                None
            }
            Action::Configure { view } => {
                // Rendering runs templates, which may be slow (their work is bounded by
                // `render::FUEL`), and writing may block on the disk: both happen on a thread of
                // their own, so the actor keeps answering (`/info`, a shutdown) meanwhile. A plain
                // thread, not the blocking pool: the runtime waits for the pool's tasks when it
                // shuts down, and the pod must be able to exit whatever a template does. The
                // FIFO order holds: the machine waits for `Configured` before it runs anything
                // else of this or any later command.
                let (tx, rx) = oneshot::channel();
                let (settings, env) = (self.settings.clone(), self.env.clone());
                let (epoch, index, size) = (view.epoch, view.index, view.size);
                let work = move || {
                    let rendered = render(&settings, view, &env).map_err(|e| e.to_string());
                    let written = rendered.and_then(|r| write_files(&r.files, &settings.work_dir()).map(|()| r));
                    let _ = tx.send(written);
                };
                if let Err(e) = std::thread::Builder::new().name("ochopod-render".into()).spawn(work) {
                    let error = format!("cannot start rendering: {e}");
                    tracing::warn!(%error, "configuration failed");
                    return Some(Input::Configured { result: Err(error) });
                }
                ctx.spawn(rx.into_actor(self).map(move |done, act, ctx| {
                    let result = match done {
                        Ok(Ok(rendered)) => {
                            tracing::info!(index, size, epoch = ?epoch, "configured");
                            let changed = match (&act.started, act.machine.pid()) {
                                (Some(before), Some(_)) => changed_inputs(&act.settings, before, &rendered),
                                _ => Vec::new(),
                            };
                            act.rendered = Some(rendered);
                            Ok(changed)
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err("the rendering thread ended without an answer".to_string()),
                    };
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "configuration failed");
                    }
                    act.drive(ctx, Input::Configured { result });
                    // The payload, the view's copies and the rendering are freed: give their
                    // pages back (a pod of a large cluster holds them otherwise).
                    ochopod_proc::memory::release_free_memory();
                }));
                None
            }
            Action::Spawn { gen } => Some(self.spawn(ctx, gen)),
            Action::Signal { pgid, sig } => {
                tracing::debug!(pgid, ?sig, "signalling the process group");
                signal_group(pgid, sig);
                None
            }
            Action::Arm { timer, delay } => {
                ctx.run_later(delay, move |act, ctx| act.drive(ctx, Input::TimerFired(timer)));
                None
            }
            Action::RunSanity { gen } => {
                let sanity = self.settings.process.as_ref().and_then(|p| p.sanity.clone());
                let check = self.rendered.as_ref().and_then(|r| r.sanity.clone());
                let (Some(sanity), Some(check)) = (sanity, check) else {
                    return Some(Input::SanityDone { gen, result: Ok(None) });
                };
                let mut env = self.env.clone();
                env.extend(self.settings.ochopod_vars(self.machine.last_view()));
                let shell = self.shell("", sanity.timeout, env);
                let http = self.http.get_or_insert_with(http_client).clone();
                let fut = async move { run_sanity(&check, &http, shell).await };
                ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
                    act.drive(ctx, Input::SanityDone { gen, result });
                }));
                None
            }
            Action::Publish(event) => {
                self.events.publish(event);
                None
            }
        }
    }

    fn spawn(&mut self, ctx: &mut Context<Self>, gen: u64) -> Input {
        let Some(rendered) = &self.rendered else {
            return Input::SpawnFailed { gen, error: "nothing to start: never configured".into() };
        };
        let pipe = self.settings.process.as_ref().is_some_and(|p| p.pipe_output);
        match spawn_child(&rendered.argv, &rendered.env, self.cwd.as_deref(), pipe) {
            Ok((mut child, owned)) => {
                let pid = child.id().unwrap_or(0);
                if self.settings.debug {
                    tracing::info!(pid, argv = ?rendered.argv, "process started");
                } else {
                    // `/log` is served to anyone who reaches the control port.
                    let argv: Vec<String> = rendered.argv.iter().map(|a| mask(a, &rendered.env)).collect();
                    tracing::info!(pid, ?argv, "process started");
                }
                self.started = Some(rendered.clone());
                let wait = async move {
                    let status = child.wait().await;
                    drop(owned);
                    status
                };
                ctx.spawn(wait.into_actor(self).map(move |status, act, ctx| {
                    use std::os::unix::process::ExitStatusExt;
                    let (code, signal) = match status {
                        Ok(s) => (s.code(), s.signal()),
                        Err(e) => {
                            tracing::error!(pid, error = %e, "lost the process's exit status");
                            (None, None)
                        }
                    };
                    tracing::info!(pid, ?code, ?signal, "process exited");
                    act.drive(ctx, Input::Exited { gen, code, signal });
                }));
                Input::Spawned { gen, pid }
            }
            Err(e) => Input::SpawnFailed { gen, error: e.to_string() },
        }
    }
}

fn view_json(view: Option<&ClusterView>) -> String {
    view.and_then(|v| serde_json::to_string(v).ok()).unwrap_or_else(|| "{}".to_string())
}

impl Actor for Executor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let status = self.machine.status(Instant::now());
        tracing::debug!(process = %status.process, "executor started");
    }
}

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
    pub body: Option<JsonBody>,
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

/// A control verb: queued, answered when it completed (see [`Command`]).
impl Handler<Command> for Executor {
    type Result = ResponseFuture<Reply>;

    fn handle(&mut self, msg: Command, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id();
        self.waiting.insert(id, tx);
        tracing::debug!(task = %msg.task, id, "command queued");
        self.drive(ctx, Input::Command { id, task: msg.task, body: msg.body });
        Box::pin(async move { rx.await.unwrap_or_else(|_| Reply::SoftFailure("the executor stopped".into())) })
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
    /// The sanity check right now (`ochopod_api::wire::health`): `none` when none is declared,
    /// `pending` until a check finished since the last spawn, then `passing` or `failing` as the
    /// last one did. `None` only in statuses built by hand (tests).
    pub sanity: Option<&'static str>,
    /// Hooks that failed or could not run, and hooks cut by their timeout, since the pod started.
    pub hook_failures: u64,
    pub hook_timeouts: u64,
    /// The newest epoch of an applied configuration.
    pub epoch: Option<u64>,
    /// Configurations applied (`on` with a payload that rendered successfully).
    pub configurations: u64,
    pub last_exit: Option<i32>,
}

/// What `/info` and `/metrics` show.
impl Handler<GetStatus> for Executor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.machine.status(Instant::now()))
    }
}

/// Graceful stop for the pod's shutdown: tear the process down (grace, then SIGKILL unless
/// `soft`), run `finalize`, and reply once nothing is left running.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Tear down, finalize, and answer once nothing runs any more.
impl Handler<Shutdown> for Executor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id();
        self.shutdowns.insert(id, tx);
        self.drive(ctx, Input::Shutdown { id });
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
