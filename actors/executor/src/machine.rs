//! The executor's state machine, without processes, timers or threads.
//!
//! [`Machine::handle`] takes one [`Input`] (a command arrived, a hook finished, the child spawned
//! or exited, a timer fired, a sanity check answered) and the current time, and returns the
//! [`Action`]s the actor must perform (reply, run a hook, render, spawn, signal the group, arm a
//! timer, run a check, publish an event). Results of actions come back as inputs.
//!
//! Commands run one at a time in FIFO order. A command becomes a [`Job`]: a list of steps planned
//! when the command reaches the head of the queue (so it sees the state left by the commands
//! before it), executed one by one; a step that needs the outside world (a hook, the process to
//! stop) parks the job until its result arrives. Internal work (finalize after exit 0, turning
//! the process off after failed sanity checks, killing the pod after a failed `initialize`) is a
//! job too, queued in front of the waiting commands.
//!
//! Every spawned child gets a generation number; exits, timers and sanity results carry it, and
//! anything about an older generation is ignored, so a late exit of a replaced child never
//! triggers a restart.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ochopod_api::Task;
use ochopod_config::{RestartPolicy, Settings};
use ochopod_core::events::Event;
use ochopod_core::{ClusterView, ControlPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ExecutorStatus, Reply};

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
        body: Option<Value>,
    },
    Shutdown {
        id: JobId,
    },
    /// `Ok(stdout)` or `Err(what went wrong)`.
    HookDone {
        hook: HookKind,
        result: Result<String, String>,
    },
    /// Rendering and writing the files of a [`Action::Configure`] finished.
    Configured {
        result: Result<(), String>,
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

/// The parts of the settings the machine decides with.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub sidecar: bool,
    pub strict: bool,
    pub start: bool,
    pub soft: bool,
    pub grace: Duration,
    pub restart: RestartPolicy,
    /// `(every, retries)`.
    pub sanity: Option<(Duration, u32)>,
    pub hooks: HookSet,
}

/// Which hooks are declared.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HookSet {
    pub initialize: bool,
    pub can_configure: bool,
    pub configured: bool,
    pub signaled: bool,
    pub tear_down: bool,
    pub finalize: bool,
}

impl HookSet {
    fn has(&self, hook: HookKind) -> bool {
        match hook {
            HookKind::Initialize => self.initialize,
            HookKind::CanConfigure => self.can_configure,
            HookKind::Configured => self.configured,
            HookKind::Signaled => self.signaled,
            HookKind::TearDown => self.tear_down,
            HookKind::Finalize => self.finalize,
        }
    }
}

impl Policy {
    pub fn from_settings(s: &Settings) -> Self {
        let h = &s.hooks;
        let hooks = HookSet {
            initialize: h.initialize.is_some(),
            can_configure: h.can_configure.is_some(),
            configured: h.configured.is_some(),
            signaled: h.signaled.is_some(),
            tear_down: h.tear_down.is_some(),
            finalize: h.finalize.is_some(),
        };
        match &s.process {
            Some(p) => Policy {
                sidecar: false,
                strict: p.strict,
                start: p.start,
                soft: p.soft,
                grace: p.grace,
                restart: p.restart.clone(),
                sanity: p.sanity.as_ref().map(|s| (s.every, s.retries)),
                hooks,
            },
            None => Policy {
                sidecar: true,
                strict: false,
                start: false,
                soft: false,
                grace: Duration::ZERO,
                restart: RestartPolicy {
                    initial_delay: Duration::ZERO,
                    max_delay: Duration::ZERO,
                    crashloop_after: 0,
                    reset_after: Duration::ZERO,
                    give_up_after: 0,
                },
                sanity: None,
                hooks,
            },
        }
    }
}

/// Decorrelated-jitter backoff: `sleep = min(max, rand(initial, prev × 3))`, `prev` starting at
/// `initial`. Spreads restarts of many pods apart while still growing quickly.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    prev: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, prev: initial }
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let lo = self.initial.as_micros() as u64;
        let hi = (self.prev.as_micros() as u64).saturating_mul(3);
        let pick = if hi > lo { rng.random_range(lo..=hi) } else { lo };
        let delay = Duration::from_micros(pick).min(self.max.max(self.initial));
        self.prev = delay;
        delay
    }

    pub fn reset(&mut self) {
        self.prev = self.initial;
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Proc {
    Idle,
    /// Spawn requested; the actor answers before anything else happens.
    Starting {
        gen: Gen,
    },
    Running {
        gen: Gen,
        pid: u32,
        since: Instant,
    },
    Terminating {
        gen: Gen,
        pid: u32,
        killed: bool,
    },
    /// Waiting to restart the child of generation `gen`, which failed.
    Backoff {
        gen: Gen,
    },
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum OnFail {
    /// 406 with the message.
    Soft,
    /// 406, then stop, finalize and die (a failed `initialize`, as the original).
    SoftAndKill,
    /// 500 with the message.
    Hook,
    /// Logged only (`finalize`).
    Log,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Hook {
        hook: HookKind,
        view: Option<Box<ClusterView>>,
        stdin: Option<String>,
        fail: OnFail,
        reply_output: bool,
    },
    Configure {
        view: Box<ClusterView>,
    },
    Stop,
    /// Start the process. `restart`: a running one is stopped and started again. `manual`: a
    /// body-less `on`, which starts even with `start: false`.
    Start {
        restart: bool,
        manual: bool,
    },
    Die,
}

#[derive(Clone, Debug, PartialEq)]
enum Wait {
    Hook { hook: HookKind, fail: OnFail, reply_output: bool },
    Configure { view: Box<ClusterView> },
    Stopped,
    Spawned,
}

#[derive(Clone, Debug, PartialEq)]
enum Origin {
    Command(Task, Option<Value>),
    Shutdown,
    Internal(&'static str, VecDeque<Step>),
}

#[derive(Clone, Debug)]
struct Job {
    /// `None` for internal jobs: nobody waits for their reply.
    id: Option<JobId>,
    origin: Origin,
    steps: VecDeque<Step>,
    waiting: Option<Wait>,
    reply: Reply,
}

pub struct Machine {
    policy: Policy,
    rng: StdRng,
    backoff: Backoff,
    proc: Proc,
    queue: VecDeque<Job>,
    job: Option<Job>,
    next_gen: Gen,
    initialized: bool,
    /// A configuration was applied: there is a command to (re)start.
    configured: bool,
    /// The view of the last applied configuration (for `ok`, `signal`, hooks' stdin).
    last_view: Option<Box<ClusterView>>,
    last_dependencies: Option<BTreeMap<String, Vec<ochopod_core::view::PodEntry>>>,
    newest_epoch: Option<u64>,
    /// A child was spawned at least once (the original's `pids > 0`): leader `on`s then start
    /// the process even with `start: false`.
    ever_spawned: bool,
    /// `tear_down` runs: a stop is over only once it ended too, so nothing (`finalize`, a
    /// restart, the pod's exit) overlaps it.
    tearing_down: bool,
    consecutive_failures: u32,
    restarts: u64,
    sanity_streak: u32,
    sanity_failures: u64,
    metrics: Value,
    configurations: u64,
    last_exit: Option<i32>,
}

impl Machine {
    pub fn new(policy: Policy, seed: u64) -> Self {
        let backoff = Backoff::new(policy.restart.initial_delay, policy.restart.max_delay);
        Machine {
            policy,
            rng: StdRng::seed_from_u64(seed),
            backoff,
            proc: Proc::Idle,
            queue: VecDeque::new(),
            job: None,
            next_gen: 1,
            initialized: false,
            configured: false,
            last_view: None,
            last_dependencies: None,
            newest_epoch: None,
            ever_spawned: false,
            tearing_down: false,
            consecutive_failures: 0,
            restarts: 0,
            sanity_streak: 0,
            sanity_failures: 0,
            metrics: json!({}),
            configurations: 0,
            last_exit: None,
        }
    }

    /// The view of the last applied configuration.
    pub fn last_view(&self) -> Option<&ClusterView> {
        self.last_view.as_deref()
    }

    /// The pid of the live child, if any (for signalling on the way out).
    pub fn pid(&self) -> Option<u32> {
        match self.proc {
            Proc::Running { pid, .. } | Proc::Terminating { pid, .. } => Some(pid),
            _ => None,
        }
    }

    fn crashlooping(&self, now: Instant) -> bool {
        let n = self.policy.restart.crashloop_after;
        if n == 0 || self.consecutive_failures < n {
            return false;
        }
        match self.proc {
            Proc::Backoff { .. } => true,
            Proc::Running { since, .. } => now.duration_since(since) < self.policy.restart.reset_after,
            _ => false,
        }
    }

    fn label(&self, now: Instant) -> &'static str {
        match self.proc {
            Proc::Dead => "dead",
            _ if self.policy.sidecar => "sidecar",
            _ if self.crashlooping(now) => "crashloop",
            Proc::Idle => "stopped",
            Proc::Starting { .. } | Proc::Running { .. } => "running",
            Proc::Terminating { .. } => "terminating",
            Proc::Backoff { .. } => "backoff",
        }
    }

    pub fn status(&self, now: Instant) -> ExecutorStatus {
        ExecutorStatus {
            process: self.label(now).to_string(),
            pid: self.pid(),
            sidecar: self.policy.sidecar,
            restarts: self.restarts,
            metrics: self.metrics.clone(),
            sanity_failures: self.sanity_failures,
            epoch: self.newest_epoch,
            configurations: self.configurations,
            last_exit: self.last_exit,
        }
    }

    fn set_proc(&mut self, proc: Proc, now: Instant, out: &mut Vec<Action>) {
        if matches!(proc, Proc::Idle | Proc::Dead) {
            self.metrics = json!({});
        }
        let before = self.label(now);
        self.proc = proc;
        let after = self.label(now);
        // `Starting` is resolved before anyone can look: announce the `Running` that follows.
        let announce = match self.proc {
            Proc::Starting { .. } => false,
            Proc::Running { .. } => true,
            _ => before != after,
        };
        if announce {
            out.push(Action::Publish(Event::Process { state: after.to_string(), pid: self.pid() }));
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Command { id, task, body } => self.queue.push_back(Job {
                id: Some(id),
                origin: Origin::Command(task, body),
                steps: VecDeque::new(),
                waiting: None,
                reply: Reply::Ok(json!({})),
            }),
            // The pod is going away: nothing queued behind should run first.
            Input::Shutdown { id } => self.queue.push_front(Job {
                id: Some(id),
                origin: Origin::Shutdown,
                steps: VecDeque::new(),
                waiting: None,
                reply: Reply::Ok(json!({})),
            }),
            Input::HookDone { hook, result } => self.on_hook_done(hook, result, &mut out),
            Input::Configured { result } => self.on_configured(result, &mut out),
            Input::Spawned { gen, pid } => self.on_spawned(gen, pid, now, &mut out),
            Input::SpawnFailed { gen, error } => self.on_spawn_failed(gen, error, now, &mut out),
            Input::Exited { gen, code, signal } => self.on_exited(gen, code, signal, now, &mut out),
            Input::TimerFired(timer) => self.on_timer(timer, now, &mut out),
            Input::SanityDone { gen, result } => self.on_sanity(gen, result, &mut out),
        }
        self.run(now, &mut out);
        out
    }

    fn internal(&mut self, what: &'static str, steps: Vec<Step>) {
        let steps: VecDeque<Step> = steps.into();
        self.queue.push_front(Job {
            id: None,
            origin: Origin::Internal(what, steps),
            steps: VecDeque::new(),
            waiting: None,
            reply: Reply::Ok(json!({})),
        });
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        if let Some(job) = self.job.take() {
            if let Some(id) = job.id {
                out.push(Action::Reply { id, reply: job.reply });
            } else if !matches!(job.reply, Reply::Ok(_)) {
                tracing::warn!(reply = ?job.reply, "internal step failed");
            }
        }
    }

    /// Fail the current job: reply with `reply` and drop its remaining steps.
    fn fail(&mut self, reply: Reply, out: &mut Vec<Action>) {
        if let Some(job) = self.job.as_mut() {
            job.reply = reply;
            job.steps.clear();
            job.waiting = None;
        }
        self.finish(out);
    }

    /// Execute steps until one has to wait for the outside world or the queue is empty.
    fn run(&mut self, now: Instant, out: &mut Vec<Action>) {
        loop {
            if self.job.is_none() {
                let Some(mut job) = self.queue.pop_front() else { return };
                if self.proc == Proc::Dead {
                    let reply =
                        if matches!(job.origin, Origin::Command(..)) { Reply::Dead } else { Reply::Ok(json!({})) };
                    if let Some(id) = job.id {
                        out.push(Action::Reply { id, reply });
                    }
                    continue;
                }
                match self.plan(&job.origin) {
                    Ok(steps) => job.steps = steps,
                    Err(reply) => {
                        if let Some(id) = job.id {
                            out.push(Action::Reply { id, reply });
                        }
                        continue;
                    }
                }
                self.job = Some(job);
            }
            let Some(job) = self.job.as_mut() else { return };
            if job.waiting.is_some() {
                return;
            }
            let Some(step) = job.steps.pop_front() else {
                self.finish(out);
                continue;
            };
            self.step(step, now, out);
        }
    }

    fn payload(body: &Option<Value>) -> Result<Option<Box<ClusterView>>, Reply> {
        let Some(body) = body else { return Ok(None) };
        let payload = ControlPayload::deserialize(body)
            .map_err(|e| Reply::BadRequest(format!("the body is not a cluster payload: {e}")))?;
        ClusterView::from_payload(&payload).map(|v| Some(Box::new(v))).map_err(|e| Reply::BadRequest(e.to_string()))
    }

    /// The epoch of a body that is a leader payload carrying one. Anything else (`{}` from an
    /// old script, an original leader's payload) carries none.
    fn epoch_of(body: &Option<Value>) -> Option<u64> {
        ControlPayload::deserialize(body.as_ref()?).ok()?.epoch
    }

    /// Refuse a command from a leader older than the newest applied configuration: a deposed
    /// leader must not stop, kill or reconfigure what its successor set up.
    fn fence(&self, epoch: Option<u64>) -> Result<(), Reply> {
        match (epoch, self.newest_epoch) {
            (Some(epoch), Some(newest)) if epoch < newest => Err(Reply::StaleEpoch { epoch, newest }),
            _ => Ok(()),
        }
    }

    fn hook(hook: HookKind, view: Option<Box<ClusterView>>, fail: OnFail) -> Step {
        Step::Hook { hook, view, stdin: None, fail, reply_output: false }
    }

    /// Turn a command into steps, seeing the state its predecessors left.
    fn plan(&mut self, origin: &Origin) -> Result<VecDeque<Step>, Reply> {
        let hooks = self.policy.hooks;
        let mut steps = VecDeque::new();
        match origin {
            Origin::Internal(_, s) => return Ok(s.clone()),
            Origin::Shutdown => {
                steps.extend([
                    Step::Stop,
                    Self::hook(HookKind::Finalize, self.last_view.clone(), OnFail::Log),
                    Step::Die,
                ]);
            }
            Origin::Command(task, body) => match task {
                Task::Check => {
                    // As the original: a check that cannot build the cluster is a soft failure, so
                    // a leader simply retries the round.
                    let view = match Self::payload(body) {
                        Ok(Some(view)) => view,
                        Ok(None) => {
                            return Err(Reply::SoftFailure(
                                "check needs the cluster payload (pods, dependencies, key)".into(),
                            ))
                        }
                        Err(Reply::BadRequest(e)) => return Err(Reply::SoftFailure(e)),
                        Err(other) => return Err(other),
                    };
                    self.fence(view.epoch)?;
                    if hooks.can_configure {
                        steps.push_back(Self::hook(HookKind::CanConfigure, Some(view), OnFail::Soft));
                    }
                }
                Task::On => match Self::payload(body)? {
                    Some(view) => {
                        // The epoch rises only once applied (see `on_configured`): a failed `on`
                        // must not fence out the leader that will retry it.
                        self.fence(view.epoch)?;
                        if !self.initialized {
                            if hooks.initialize {
                                steps.push_back(Self::hook(
                                    HookKind::Initialize,
                                    Some(view.clone()),
                                    OnFail::SoftAndKill,
                                ));
                            } else {
                                self.initialized = true;
                            }
                        }
                        let changed = self.last_dependencies.as_ref() != Some(&view.dependencies);
                        steps.push_back(Step::Configure { view });
                        steps.push_back(Step::Start { restart: self.policy.strict || changed, manual: false });
                    }
                    None if !self.configured => {
                        return Err(Reply::SoftFailure(
                            "nothing to start: this pod was never configured (on needs the cluster payload first)"
                                .into(),
                        ))
                    }
                    None => steps.push_back(Step::Start { restart: false, manual: true }),
                },
                // Old scripts and curl send `{}` or anything: only a leader payload's epoch counts.
                Task::Off => {
                    self.fence(Self::epoch_of(body))?;
                    steps.push_back(Step::Stop);
                }
                Task::Ok => {
                    let view = Self::payload(body)?;
                    self.fence(view.as_ref().and_then(|v| v.epoch))?;
                    let view = view.or_else(|| self.last_view.clone());
                    if hooks.configured {
                        let view = view.ok_or_else(|| {
                            Reply::HookFailure("ok received out of context: this pod was never configured".into())
                        })?;
                        steps.push_back(Self::hook(HookKind::Configured, Some(view), OnFail::Hook));
                    }
                }
                Task::Kill => {
                    self.fence(Self::epoch_of(body))?;
                    steps.extend([
                        Step::Stop,
                        Self::hook(HookKind::Finalize, self.last_view.clone(), OnFail::Log),
                        Step::Die,
                    ]);
                }
                Task::Signal => {
                    if hooks.signaled {
                        let stdin = body.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".into());
                        steps.push_back(Step::Hook {
                            hook: HookKind::Signaled,
                            view: self.last_view.clone(),
                            stdin: Some(stdin),
                            fail: OnFail::Hook,
                            reply_output: true,
                        });
                    }
                }
            },
        }
        Ok(steps)
    }

    fn wait(&mut self, wait: Wait) {
        if let Some(job) = self.job.as_mut() {
            job.waiting = Some(wait);
        }
    }

    fn step(&mut self, step: Step, now: Instant, out: &mut Vec<Action>) {
        match step {
            Step::Hook { hook, view, stdin, fail, reply_output } => {
                if !self.policy.hooks.has(hook) {
                    return;
                }
                out.push(Action::RunHook { hook, view, stdin });
                self.wait(Wait::Hook { hook, fail, reply_output });
            }
            Step::Configure { view } => {
                out.push(Action::Configure { view: view.clone() });
                self.wait(Wait::Configure { view });
            }
            Step::Stop => self.stop(now, out),
            Step::Start { restart, manual } => self.start(restart, manual, now, out),
            Step::Die => {
                self.set_proc(Proc::Dead, now, out);
                tracing::info!("the pod is dead and idles (410 to control, info and log still served)");
            }
        }
    }

    fn stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.proc.clone() {
            Proc::Running { gen, pid, .. } => {
                self.set_proc(Proc::Terminating { gen, pid, killed: false }, now, out);
                if self.policy.hooks.tear_down {
                    // Bounded by its own timeout; the grace runs meanwhile and bounds the child.
                    out.push(Action::RunHook { hook: HookKind::TearDown, view: self.last_view.clone(), stdin: None });
                    self.tearing_down = true;
                } else {
                    out.push(Action::Signal { pgid: pid, sig: Sig::Term });
                }
                out.push(Action::Arm { timer: Timer::Grace(gen), delay: self.policy.grace });
                self.wait(Wait::Stopped);
            }
            Proc::Terminating { .. } => self.wait(Wait::Stopped),
            Proc::Backoff { .. } => self.set_proc(Proc::Idle, now, out),
            Proc::Idle | Proc::Starting { .. } | Proc::Dead => {}
        }
        if self.tearing_down {
            self.wait(Wait::Stopped);
        }
    }

    /// A stop is over when the child is gone (or left running, `soft`) and `tear_down` ended.
    fn stopped(&mut self) {
        let over = !self.tearing_down && !matches!(self.proc, Proc::Terminating { .. });
        if over && self.waiting() == Some(&Wait::Stopped) {
            self.resume();
        }
    }

    /// `tear_down` ended (done, failed, or cut by its timeout). If it did not do its job and
    /// the child still runs, SIGTERM it; the grace timer still bounds it.
    fn tear_down_done(&mut self, result: Result<String, String>, out: &mut Vec<Action>) {
        self.tearing_down = false;
        if let Err(e) = &result {
            match self.proc {
                Proc::Terminating { pid, killed: false, .. } => {
                    tracing::warn!(error = %e, "tear_down failed: sending SIGTERM to the process group");
                    out.push(Action::Signal { pgid: pid, sig: Sig::Term });
                }
                _ => tracing::warn!(error = %e, "tear_down failed"),
            }
        }
        self.stopped();
    }

    fn start(&mut self, restart: bool, manual: bool, now: Instant, out: &mut Vec<Action>) {
        if self.policy.sidecar {
            return;
        }
        match self.proc {
            Proc::Running { .. } if restart => {
                // Stop first, then come back to this step.
                if let Some(job) = self.job.as_mut() {
                    job.steps.push_front(Step::Start { restart: false, manual });
                }
                self.stop(now, out);
            }
            Proc::Running { .. } | Proc::Starting { .. } | Proc::Terminating { .. } | Proc::Dead => {}
            Proc::Backoff { .. } if !restart && !manual => {}
            Proc::Backoff { .. } | Proc::Idle => {
                if manual || self.policy.start || self.ever_spawned {
                    if manual {
                        // An operator asked for it: start afresh rather than as a crash loop.
                        self.consecutive_failures = 0;
                        self.backoff.reset();
                    }
                    self.spawn(now, out);
                    self.wait(Wait::Spawned);
                } else {
                    tracing::info!("configured; not starting the process (start: false) until a body-less on");
                }
            }
        }
    }

    fn spawn(&mut self, now: Instant, out: &mut Vec<Action>) {
        let gen = self.next_gen;
        self.next_gen += 1;
        self.set_proc(Proc::Starting { gen }, now, out);
        out.push(Action::Spawn { gen });
    }

    fn waiting(&self) -> Option<&Wait> {
        self.job.as_ref().and_then(|j| j.waiting.as_ref())
    }

    fn resume(&mut self) {
        if let Some(job) = self.job.as_mut() {
            job.waiting = None;
        }
    }

    fn on_hook_done(&mut self, hook: HookKind, result: Result<String, String>, out: &mut Vec<Action>) {
        if hook == HookKind::TearDown && self.tearing_down {
            self.tear_down_done(result, out);
            return;
        }
        let Some(Wait::Hook { hook: waited, fail, reply_output }) = self.waiting().cloned() else {
            Self::stray_hook(hook);
            return;
        };
        if waited != hook {
            Self::stray_hook(hook);
            return;
        }
        self.resume();
        match result {
            Ok(stdout) => {
                if hook == HookKind::Initialize {
                    self.initialized = true;
                }
                if reply_output {
                    let reply = match stdout.trim() {
                        "" => Reply::Ok(json!({})),
                        text => match serde_json::from_str::<Value>(text) {
                            Ok(v @ Value::Object(_)) => Reply::Ok(v),
                            Ok(_) => Reply::HookFailure(format!("{} printed JSON that is not an object", hook.name())),
                            Err(e) => {
                                Reply::HookFailure(format!("{} printed something that is not JSON: {e}", hook.name()))
                            }
                        },
                    };
                    if let Some(job) = self.job.as_mut() {
                        job.reply = reply;
                    }
                }
            }
            Err(e) => {
                let message = format!("{} failed: {e}", hook.name());
                match fail {
                    OnFail::Log => tracing::warn!(hook = hook.name(), error = %e, "hook failed (ignored)"),
                    OnFail::Soft => self.fail(Reply::SoftFailure(message), out),
                    OnFail::Hook => self.fail(Reply::HookFailure(message), out),
                    OnFail::SoftAndKill => {
                        tracing::error!(hook = hook.name(), error = %e, "initialize failed: the pod kills itself");
                        self.fail(Reply::SoftFailure(message), out);
                        self.internal(
                            "kill after a failed initialize",
                            vec![Step::Stop, Self::hook(HookKind::Finalize, None, OnFail::Log), Step::Die],
                        );
                    }
                }
            }
        }
    }

    /// A hook nobody waits for (every hook is waited for: this is only defensive).
    fn stray_hook(hook: HookKind) {
        tracing::debug!(hook = hook.name(), "result of a hook nobody waits for ignored");
    }

    fn on_configured(&mut self, result: Result<(), String>, out: &mut Vec<Action>) {
        let Some(Wait::Configure { view }) = self.waiting().cloned() else { return };
        self.resume();
        match result {
            Ok(()) => {
                self.configured = true;
                self.configurations += 1;
                if view.epoch.is_some() {
                    self.newest_epoch = view.epoch.max(self.newest_epoch);
                }
                self.last_dependencies = Some(view.dependencies.clone());
                out.push(Action::Publish(Event::Configured { epoch: view.epoch, index: view.index, size: view.size }));
                self.last_view = Some(view);
            }
            Err(e) => self.fail(Reply::SoftFailure(format!("configuration failed: {e}")), out),
        }
    }

    fn on_spawned(&mut self, gen: Gen, pid: u32, now: Instant, out: &mut Vec<Action>) {
        if self.proc != (Proc::Starting { gen }) {
            return;
        }
        self.ever_spawned = true;
        self.sanity_streak = 0;
        self.set_proc(Proc::Running { gen, pid, since: now }, now, out);
        if let Some((every, _)) = self.policy.sanity {
            out.push(Action::Arm { timer: Timer::Sanity(gen), delay: every });
        }
        if self.waiting() == Some(&Wait::Spawned) {
            self.resume();
        }
    }

    fn on_spawn_failed(&mut self, gen: Gen, error: String, now: Instant, out: &mut Vec<Action>) {
        if self.proc != (Proc::Starting { gen }) {
            return;
        }
        tracing::error!(%error, "cannot start the process");
        if self.waiting() == Some(&Wait::Spawned) {
            self.set_proc(Proc::Idle, now, out);
            self.fail(Reply::SoftFailure(format!("cannot start the process: {error}")), out);
        } else {
            // A restart that cannot even spawn counts as one more failure.
            self.set_proc(Proc::Idle, now, out);
            self.failed(gen, None, Duration::ZERO, now, out);
        }
    }

    fn on_exited(&mut self, gen: Gen, code: Option<i32>, signal: Option<i32>, now: Instant, out: &mut Vec<Action>) {
        let exit = code.or(signal.map(|s| -s));
        match self.proc.clone() {
            Proc::Running { gen: g, pid, since } if g == gen => {
                self.last_exit = exit;
                // Whatever the child left in its group goes with it.
                if !self.policy.soft {
                    out.push(Action::Signal { pgid: pid, sig: Sig::Kill });
                }
                self.set_proc(Proc::Idle, now, out);
                if code == Some(0) {
                    tracing::info!(pid, "the process exited 0: finalizing, the pod will idle as dead");
                    self.internal(
                        "finalize after exit 0",
                        vec![Self::hook(HookKind::Finalize, self.last_view.clone(), OnFail::Log), Step::Die],
                    );
                } else {
                    tracing::warn!(pid, code, signal, "the process failed");
                    self.failed(gen, exit, now.duration_since(since), now, out);
                }
            }
            Proc::Terminating { gen: g, pid, .. } if g == gen => {
                self.last_exit = exit;
                if !self.policy.soft {
                    out.push(Action::Signal { pgid: pid, sig: Sig::Kill });
                }
                self.set_proc(Proc::Idle, now, out);
                self.stopped();
            }
            _ => tracing::debug!(gen, "exit of a replaced child ignored"),
        }
    }

    /// A failed run (non-zero exit, a signal we did not send, a failed respawn): back off and
    /// restart, or give up.
    fn failed(&mut self, gen: Gen, exit: Option<i32>, ran: Duration, now: Instant, out: &mut Vec<Action>) {
        let policy = &self.policy.restart;
        if ran >= policy.reset_after && !policy.reset_after.is_zero() {
            self.consecutive_failures = 0;
            self.backoff.reset();
        }
        self.consecutive_failures += 1;
        if policy.give_up_after > 0 && self.consecutive_failures >= policy.give_up_after {
            tracing::error!(failures = self.consecutive_failures, "too many failures in a row: the process stays off");
            return;
        }
        self.restarts += 1;
        let delay = self.backoff.next(&mut self.rng);
        self.set_proc(Proc::Backoff { gen }, now, out);
        out.push(Action::Publish(Event::Restart {
            restarts: self.restarts,
            delay_ms: delay.as_millis() as u64,
            exit_code: exit,
        }));
        out.push(Action::Arm { timer: Timer::Restart(gen), delay });
    }

    fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) {
        match (timer, self.proc.clone()) {
            (Timer::Grace(g), Proc::Terminating { gen, pid, killed: false }) if g == gen => {
                if self.policy.soft {
                    tracing::warn!(pid, "grace expired: soft, so no SIGKILL (leaking pid {pid})");
                    self.set_proc(Proc::Idle, now, out);
                    self.stopped();
                } else {
                    tracing::warn!(pid, "grace expired: SIGKILL to the process group");
                    self.proc = Proc::Terminating { gen, pid, killed: true };
                    out.push(Action::Signal { pgid: pid, sig: Sig::Kill });
                }
            }
            (Timer::Restart(g), Proc::Backoff { gen }) if g == gen => {
                self.spawn(now, out);
            }
            (Timer::Sanity(g), Proc::Running { gen, .. }) if g == gen => out.push(Action::RunSanity { gen }),
            _ => {}
        }
    }

    fn on_sanity(&mut self, gen: Gen, result: Result<Option<Value>, String>, out: &mut Vec<Action>) {
        if !matches!(self.proc, Proc::Running { gen: g, .. } if g == gen) {
            return;
        }
        let Some((every, retries)) = self.policy.sanity else { return };
        match result {
            Ok(metrics) => {
                if self.sanity_streak > 0 {
                    out.push(Action::Publish(Event::Sanity { failures: 0, error: None }));
                }
                self.sanity_streak = 0;
                if let Some(m) = metrics {
                    self.metrics = m;
                }
                out.push(Action::Arm { timer: Timer::Sanity(gen), delay: every });
            }
            Err(e) => {
                self.sanity_streak += 1;
                self.sanity_failures += 1;
                tracing::warn!(failures = self.sanity_streak, retries, error = %e, "sanity check failed");
                out.push(Action::Publish(Event::Sanity { failures: self.sanity_streak, error: Some(e) }));
                if self.sanity_streak >= retries.max(1) {
                    tracing::error!("too many failed sanity checks: turning the process off");
                    self.sanity_streak = 0;
                    self.internal("off after failed sanity checks", vec![Step::Stop]);
                } else {
                    out.push(Action::Arm { timer: Timer::Sanity(gen), delay: every });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::payload;

    fn policy() -> Policy {
        Policy {
            sidecar: false,
            strict: false,
            start: true,
            soft: false,
            grace: Duration::from_millis(300),
            restart: RestartPolicy {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(2),
                crashloop_after: 3,
                reset_after: Duration::from_secs(10),
                give_up_after: 0,
            },
            sanity: None,
            hooks: HookSet::default(),
        }
    }

    struct T {
        m: Machine,
        now: Instant,
        next_id: JobId,
    }

    impl T {
        fn new(p: Policy) -> Self {
            T { m: Machine::new(p, 7), now: Instant::now(), next_id: 1 }
        }
        fn send(&mut self, task: Task, body: Option<Value>) -> (JobId, Vec<Action>) {
            let id = self.next_id;
            self.next_id += 1;
            (id, self.m.handle(Input::Command { id, task, body }, self.now))
        }
        fn input(&mut self, i: Input) -> Vec<Action> {
            self.m.handle(i, self.now)
        }
        fn later(&mut self, d: Duration) {
            self.now += d;
        }
        fn state(&self) -> String {
            self.m.status(self.now).process
        }
        /// `on` with a payload, configure ok, spawn ok: returns the generation.
        fn configure_and_run(&mut self, pid: u32) -> Gen {
            let (id, a) = self.send(Task::On, Some(payload(Some(1))));
            assert!(a.iter().any(|a| matches!(a, Action::Configure { .. })), "{a:?}");
            let a = self.input(Input::Configured { result: Ok(()) });
            let gen = spawn_gen(&a).expect("spawn");
            let a = self.input(Input::Spawned { gen, pid });
            assert!(a.contains(&Action::Reply { id, reply: Reply::Ok(json!({})) }), "{a:?}");
            gen
        }
    }

    fn spawn_gen(actions: &[Action]) -> Option<Gen> {
        actions.iter().find_map(|a| match a {
            Action::Spawn { gen } => Some(*gen),
            _ => None,
        })
    }

    fn reply_of(actions: &[Action], id: JobId) -> Option<Reply> {
        actions.iter().find_map(|a| match a {
            Action::Reply { id: i, reply } if *i == id => Some(reply.clone()),
            _ => None,
        })
    }

    fn restart_delay(actions: &[Action]) -> Option<Duration> {
        actions.iter().find_map(|a| match a {
            Action::Arm { timer: Timer::Restart(_), delay } => Some(*delay),
            _ => None,
        })
    }

    #[test]
    fn on_with_a_payload_configures_then_starts() {
        let mut t = T::new(policy());
        assert_eq!(t.state(), "stopped");
        t.configure_and_run(10);
        assert_eq!(t.state(), "running");
        let s = t.m.status(t.now);
        assert_eq!((s.pid, s.configurations, s.epoch), (Some(10), 1, Some(1)));
    }

    #[test]
    fn check_without_a_usable_body_is_a_soft_failure_and_on_with_one_a_bad_request() {
        let mut t = T::new(policy());
        let (id, a) = t.send(Task::Check, None);
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(_))));
        let (id, a) = t.send(Task::Check, Some(json!({"pods": 3})));
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(m)) if m.contains("invalid type")), "{a:?}");
        let (id, a) = t.send(Task::Check, Some(json!({})));
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(_))), "{a:?}");
        let mut p = payload(None);
        p["key"] = json!("nope");
        let (id, a) = t.send(Task::On, Some(p));
        assert!(matches!(reply_of(&a, id), Some(Reply::BadRequest(m)) if m.contains("nope")));
        let (id, a) = t.send(Task::On, Some(json!({})));
        assert!(matches!(reply_of(&a, id), Some(Reply::BadRequest(_))), "{a:?}");
        let (id, a) = t.send(Task::Check, Some(payload(None)));
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
    }

    #[test]
    fn off_and_kill_ignore_a_body_that_is_not_a_leader_payload() {
        let mut t = T::new(policy());
        let gen = t.configure_and_run(10);
        // What old scripts and `curl -d '{}'` send.
        let (id, a) = t.send(Task::Off, Some(json!({})));
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "{a:?}");
        let a = t.input(Input::Exited { gen, code: None, signal: Some(15) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        let (id, a) = t.send(Task::Off, Some(json!(["not", "an", "object"])));
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        let (id, a) = t.send(Task::Kill, Some(json!({"pods": "junk"})));
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert_eq!(t.state(), "dead");
    }

    #[test]
    fn every_task_from_a_stale_epoch_gets_409_and_changes_nothing() {
        let mut p = policy();
        p.hooks.can_configure = true;
        p.hooks.configured = true;
        let mut t = T::new(p);
        t.configure_and_run(10);
        let (id, _) = t.send(Task::On, Some(payload(Some(5))));
        let a = t.input(Input::Configured { result: Ok(()) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        let before = t.m.status(t.now);
        for task in [Task::Check, Task::On, Task::Off, Task::Ok, Task::Kill] {
            let (id, a) = t.send(task, Some(payload(Some(3))));
            assert_eq!(a, vec![Action::Reply { id, reply: Reply::StaleEpoch { epoch: 3, newest: 5 } }], "{task}");
        }
        // The epoch alone is enough to fence off and kill.
        let (id, a) = t.send(Task::Kill, Some(json!({"epoch": 4})));
        assert_eq!(a, vec![Action::Reply { id, reply: Reply::StaleEpoch { epoch: 4, newest: 5 } }]);
        assert_eq!(t.m.status(t.now), before);
        // The current epoch is not stale.
        let (_, a) = t.send(Task::Off, Some(payload(Some(5))));
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "{a:?}");
    }

    #[test]
    fn the_epoch_rises_only_once_an_on_is_applied() {
        let mut t = T::new(policy());
        let (id, a) = t.send(Task::On, Some(payload(Some(5))));
        assert!(a.iter().any(|a| matches!(a, Action::Configure { .. })), "{a:?}");
        assert_eq!(t.m.status(t.now).epoch, None, "raised when planned");
        let a = t.input(Input::Configured { result: Err("cannot write".into()) });
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(_))));
        assert_eq!(t.m.status(t.now).epoch, None, "raised by a failed on");
        let (id, a) = t.send(Task::On, Some(payload(Some(3))));
        assert!(a.iter().any(|a| matches!(a, Action::Configure { .. })), "an older epoch is fine: {a:?}");
        t.input(Input::Configured { result: Ok(()) });
        assert_eq!(t.m.status(t.now).epoch, Some(3));
        let a = t.input(Input::Spawned { gen: 1, pid: 10 });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        let (id, a) = t.send(Task::Check, Some(payload(Some(2))));
        assert_eq!(reply_of(&a, id), Some(Reply::StaleEpoch { epoch: 2, newest: 3 }));
    }

    #[test]
    fn can_configure_failure_is_a_soft_failure() {
        let mut p = policy();
        p.hooks.can_configure = true;
        let mut t = T::new(p);
        let (id, a) = t.send(Task::Check, Some(payload(None)));
        assert!(matches!(&a[..], [Action::RunHook { hook: HookKind::CanConfigure, .. }]), "{a:?}");
        let a = t.input(Input::HookDone { hook: HookKind::CanConfigure, result: Err("exit 3: not yet".into()) });
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(m)) if m.contains("not yet")));
        assert_eq!(t.state(), "stopped");
    }

    #[test]
    fn a_body_less_on_before_any_configuration_is_a_soft_failure_and_the_pod_lives() {
        let mut t = T::new(policy());
        let (id, a) = t.send(Task::On, None);
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(_))));
        assert_eq!(t.state(), "stopped");
        let (id, a) = t.send(Task::Off, None);
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
    }

    #[test]
    fn commands_wait_in_fifo_order_while_one_is_in_progress() {
        let mut p = policy();
        p.hooks.configured = true;
        let mut t = T::new(p);
        t.configure_and_run(10);
        let (ok, a) = t.send(Task::Ok, None);
        assert!(matches!(&a[..], [Action::RunHook { hook: HookKind::Configured, .. }]));
        let (off, a) = t.send(Task::Off, None);
        assert!(a.is_empty(), "off must wait behind ok: {a:?}");
        let a = t.input(Input::HookDone { hook: HookKind::Configured, result: Err("boom".into()) });
        assert!(matches!(reply_of(&a, ok), Some(Reply::HookFailure(m)) if m.contains("boom")));
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "{a:?}");
        assert_eq!(reply_of(&a, off), None);
        let a = t.input(Input::Exited { gen: 1, code: Some(0), signal: None });
        assert_eq!(reply_of(&a, off), Some(Reply::Ok(json!({}))));
        assert_eq!(t.state(), "stopped", "a stop we asked for is not an exit 0");
    }

    #[test]
    fn a_stale_epoch_is_refused_and_changes_nothing() {
        let mut t = T::new(policy());
        t.configure_and_run(10);
        let (id, a) = t.send(Task::On, Some(payload(Some(5))));
        t.input(Input::Configured { result: Ok(()) });
        assert!(reply_of(&a, id).is_none());
        let (id, a) = t.send(Task::On, Some(payload(Some(3))));
        assert_eq!(reply_of(&a, id), Some(Reply::StaleEpoch { epoch: 3, newest: 5 }));
        let (id, a) = t.send(Task::On, Some(payload(None)));
        assert!(a.iter().any(|a| matches!(a, Action::Configure { .. })), "no epoch (an original leader) is accepted");
        let a2 = t.input(Input::Configured { result: Ok(()) });
        assert_eq!(reply_of(&a2, id), Some(Reply::Ok(json!({}))));
        assert_eq!(t.m.status(t.now).epoch, Some(5));
    }

    #[test]
    fn a_running_process_restarts_only_when_strict_or_dependencies_changed() {
        let mut t = T::new(policy());
        t.configure_and_run(10);
        let (id, _) = t.send(Task::On, Some(payload(Some(2))));
        let a = t.input(Input::Configured { result: Ok(()) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert!(!a.iter().any(|a| matches!(a, Action::Signal { .. } | Action::Spawn { .. })), "{a:?}");

        let mut changed = payload(Some(3));
        changed["dependencies"]["zookeeper"] = json!({});
        let (id, _) = t.send(Task::On, Some(changed));
        let a = t.input(Input::Configured { result: Ok(()) });
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "{a:?}");
        let a = t.input(Input::Exited { gen: 1, code: None, signal: Some(15) });
        let gen = spawn_gen(&a).unwrap();
        let a = t.input(Input::Spawned { gen, pid: 11 });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert_eq!(t.m.status(t.now).restarts, 0, "a restart we asked for is not a failure");

        let mut p = policy();
        p.strict = true;
        let mut t = T::new(p);
        t.configure_and_run(10);
        t.send(Task::On, Some(payload(Some(2))));
        let a = t.input(Input::Configured { result: Ok(()) });
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "strict restarts: {a:?}");
    }

    #[test]
    fn start_false_configures_without_starting_until_a_body_less_on() {
        let mut p = policy();
        p.start = false;
        let mut t = T::new(p);
        let (id, _) = t.send(Task::On, Some(payload(None)));
        let a = t.input(Input::Configured { result: Ok(()) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert!(spawn_gen(&a).is_none());
        assert_eq!(t.state(), "stopped");
        let (_, a) = t.send(Task::On, None);
        let gen = spawn_gen(&a).expect("a body-less on starts it");
        t.input(Input::Spawned { gen, pid: 3 });
        assert_eq!(t.state(), "running");
    }

    #[test]
    fn exit_zero_finalizes_and_the_pod_is_dead() {
        let mut p = policy();
        p.hooks.finalize = true;
        let mut t = T::new(p);
        let gen = t.configure_and_run(10);
        let a = t.input(Input::Exited { gen, code: Some(0), signal: None });
        assert!(a.iter().any(|a| matches!(a, Action::RunHook { hook: HookKind::Finalize, .. })), "{a:?}");
        let a = t.input(Input::HookDone { hook: HookKind::Finalize, result: Err("ignored".into()) });
        assert!(a.contains(&Action::Publish(Event::Process { state: "dead".into(), pid: None })), "{a:?}");
        for task in Task::ALL {
            let (id, a) = t.send(task, None);
            assert_eq!(reply_of(&a, id), Some(Reply::Dead), "{task}");
        }
        assert_eq!(t.m.status(t.now).last_exit, Some(0));
    }

    #[test]
    fn failures_back_off_with_growing_capped_delays_and_report_a_crash_loop() {
        let mut t = T::new(policy());
        let mut gen = t.configure_and_run(10);
        let mut delays = vec![];
        for i in 0..6 {
            let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
            let d = restart_delay(&a).expect("restart armed");
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_secs(2), "{d:?}");
            delays.push(d);
            assert_eq!(t.state(), if i + 1 >= 3 { "crashloop" } else { "backoff" });
            let a = t.input(Input::TimerFired(Timer::Restart(gen)));
            gen = spawn_gen(&a).expect("respawn");
            t.input(Input::Spawned { gen, pid: 20 + i });
            t.later(Duration::from_millis(100));
        }
        assert_eq!(t.m.status(t.now).restarts, 6);
        assert_eq!(t.m.status(t.now).last_exit, Some(1));
        // A long healthy run resets the streak.
        t.later(Duration::from_secs(11));
        assert_eq!(t.state(), "running");
        let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
        assert!(restart_delay(&a).unwrap() <= Duration::from_millis(150));
        assert_eq!(t.state(), "backoff");
    }

    #[test]
    fn backoff_grows_on_average_and_stays_capped() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut sums = [0f64; 8];
        for _ in 0..2000 {
            let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
            for s in sums.iter_mut() {
                let d = b.next(&mut rng);
                assert!(d >= Duration::from_millis(10) && d <= Duration::from_secs(1));
                *s += d.as_secs_f64();
            }
        }
        assert!(sums.windows(2).all(|w| w[1] > w[0]), "{sums:?}");
    }

    #[test]
    fn a_late_exit_of_a_replaced_child_is_ignored() {
        let mut t = T::new(policy());
        let gen = t.configure_and_run(10);
        let a = t.input(Input::Exited { gen: gen + 100, code: Some(1), signal: None });
        assert!(a.is_empty());
        let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
        assert!(restart_delay(&a).is_some());
        let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
        assert!(a.is_empty(), "a second exit for the same child is stale: {a:?}");
        assert!(t.input(Input::TimerFired(Timer::Restart(gen + 1))).is_empty());
    }

    #[test]
    fn give_up_after_turns_the_process_off() {
        let mut p = policy();
        p.restart.give_up_after = 2;
        let mut t = T::new(p);
        let gen = t.configure_and_run(10);
        t.input(Input::Exited { gen, code: Some(1), signal: None });
        let a = t.input(Input::TimerFired(Timer::Restart(gen)));
        let gen = spawn_gen(&a).unwrap();
        t.input(Input::Spawned { gen, pid: 11 });
        let a = t.input(Input::Exited { gen, code: Some(1), signal: None });
        assert!(restart_delay(&a).is_none());
        assert_eq!(t.state(), "stopped");
    }

    #[test]
    fn grace_then_sigkill_unless_soft() {
        let mut t = T::new(policy());
        let gen = t.configure_and_run(10);
        let (id, a) = t.send(Task::Off, None);
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }));
        assert!(a.contains(&Action::Arm { timer: Timer::Grace(gen), delay: Duration::from_millis(300) }));
        assert_eq!(t.state(), "terminating");
        let a = t.input(Input::TimerFired(Timer::Grace(gen)));
        assert_eq!(a, vec![Action::Signal { pgid: 10, sig: Sig::Kill }]);
        let a = t.input(Input::Exited { gen, code: None, signal: Some(9) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert_eq!(t.state(), "stopped");

        let mut p = policy();
        p.soft = true;
        let mut t = T::new(p);
        let gen = t.configure_and_run(10);
        let (id, _) = t.send(Task::Off, None);
        let a = t.input(Input::TimerFired(Timer::Grace(gen)));
        assert!(!a.iter().any(|a| matches!(a, Action::Signal { .. })), "{a:?}");
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert!(t.input(Input::Exited { gen, code: Some(0), signal: None }).is_empty());
    }

    #[test]
    fn tear_down_replaces_sigterm_and_falls_back_to_it_on_failure() {
        let mut p = policy();
        p.hooks.tear_down = true;
        let mut t = T::new(p);
        t.configure_and_run(10);
        let (_, a) = t.send(Task::Off, None);
        assert!(a.iter().any(|a| matches!(a, Action::RunHook { hook: HookKind::TearDown, .. })));
        assert!(!a.iter().any(|a| matches!(a, Action::Signal { .. })));
        let a = t.input(Input::HookDone { hook: HookKind::TearDown, result: Err("exit 1".into()) });
        assert_eq!(a, vec![Action::Signal { pgid: 10, sig: Sig::Term }]);
    }

    fn tear_down_and_finalize() -> Policy {
        let mut p = policy();
        p.hooks.tear_down = true;
        p.hooks.finalize = true;
        p
    }

    fn runs(actions: &[Action], hook: HookKind) -> bool {
        actions.iter().any(|a| matches!(a, Action::RunHook { hook: h, .. } if *h == hook))
    }

    #[test]
    fn finalize_waits_for_a_tear_down_that_outlives_the_grace_and_the_child() {
        let mut t = T::new(tear_down_and_finalize());
        let gen = t.configure_and_run(10);
        let a = t.input(Input::Shutdown { id: 99 });
        assert!(runs(&a, HookKind::TearDown), "{a:?}");
        assert!(a.contains(&Action::Arm { timer: Timer::Grace(gen), delay: Duration::from_millis(300) }), "{a:?}");
        let a = t.input(Input::TimerFired(Timer::Grace(gen)));
        assert_eq!(a, vec![Action::Signal { pgid: 10, sig: Sig::Kill }], "the grace still bounds the child");
        let a = t.input(Input::Exited { gen, code: None, signal: Some(9) });
        assert!(!runs(&a, HookKind::Finalize), "finalize overlaps tear_down: {a:?}");
        assert_eq!(reply_of(&a, 99), None);
        assert_eq!(t.state(), "stopped");
        let a = t.input(Input::HookDone { hook: HookKind::TearDown, result: Ok(String::new()) });
        assert!(runs(&a, HookKind::Finalize), "{a:?}");
        assert_eq!(reply_of(&a, 99), None, "finalize still runs");
        let a = t.input(Input::HookDone { hook: HookKind::Finalize, result: Ok(String::new()) });
        assert_eq!(reply_of(&a, 99), Some(Reply::Ok(json!({}))));
        assert_eq!(t.state(), "dead");
    }

    #[test]
    fn a_restart_waits_for_tear_down_too() {
        let mut p = tear_down_and_finalize();
        p.strict = true;
        let mut t = T::new(p);
        let gen = t.configure_and_run(10);
        let (id, _) = t.send(Task::On, Some(payload(Some(2))));
        let a = t.input(Input::Configured { result: Ok(()) });
        assert!(runs(&a, HookKind::TearDown), "{a:?}");
        let a = t.input(Input::Exited { gen, code: Some(0), signal: None });
        assert!(spawn_gen(&a).is_none(), "started again while tear_down runs: {a:?}");
        let a = t.input(Input::HookDone { hook: HookKind::TearDown, result: Ok(String::new()) });
        let gen = spawn_gen(&a).expect("started once tear_down ended");
        let a = t.input(Input::Spawned { gen, pid: 11 });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
    }

    #[test]
    fn a_tear_down_cut_by_its_timeout_falls_back_to_sigterm_unless_the_child_was_killed() {
        let mut t = T::new(tear_down_and_finalize());
        let gen = t.configure_and_run(10);
        t.input(Input::Shutdown { id: 99 });
        let a = t.input(Input::HookDone { hook: HookKind::TearDown, result: Err("timed out after 1s".into()) });
        assert_eq!(a, vec![Action::Signal { pgid: 10, sig: Sig::Term }]);
        let a = t.input(Input::Exited { gen, code: None, signal: Some(15) });
        assert!(runs(&a, HookKind::Finalize), "{a:?}");

        let mut t = T::new(tear_down_and_finalize());
        let gen = t.configure_and_run(10);
        t.input(Input::Shutdown { id: 99 });
        t.input(Input::TimerFired(Timer::Grace(gen)));
        t.input(Input::Exited { gen, code: None, signal: Some(9) });
        let a = t.input(Input::HookDone { hook: HookKind::TearDown, result: Err("timed out after 1s".into()) });
        assert!(!a.iter().any(|a| matches!(a, Action::Signal { .. })), "the group is gone already: {a:?}");
        assert!(runs(&a, HookKind::Finalize), "{a:?}");
    }

    #[test]
    fn with_soft_the_stop_still_waits_for_tear_down() {
        let mut p = tear_down_and_finalize();
        p.soft = true;
        let mut t = T::new(p);
        let gen = t.configure_and_run(10);
        t.input(Input::Shutdown { id: 99 });
        let a = t.input(Input::TimerFired(Timer::Grace(gen)));
        assert!(!runs(&a, HookKind::Finalize), "{a:?}");
        let a = t.input(Input::HookDone { hook: HookKind::TearDown, result: Ok(String::new()) });
        assert!(runs(&a, HookKind::Finalize), "{a:?}");
    }

    #[test]
    fn kill_stops_finalizes_and_dies() {
        let mut t = T::new(policy());
        let gen = t.configure_and_run(10);
        let (id, _) = t.send(Task::Kill, None);
        let (later, a) = t.send(Task::Check, Some(payload(None)));
        assert!(reply_of(&a, later).is_none());
        let a = t.input(Input::Exited { gen, code: None, signal: Some(15) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert_eq!(reply_of(&a, later), Some(Reply::Dead));
        assert_eq!(t.state(), "dead");
    }

    #[test]
    fn a_failed_initialize_is_a_soft_failure_and_kills_the_pod() {
        let mut p = policy();
        p.hooks.initialize = true;
        let mut t = T::new(p);
        let (id, a) = t.send(Task::On, Some(payload(None)));
        assert!(matches!(&a[..], [Action::RunHook { hook: HookKind::Initialize, .. }]));
        let a = t.input(Input::HookDone { hook: HookKind::Initialize, result: Err("exit 1".into()) });
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(_))));
        assert_eq!(t.state(), "dead");
    }

    #[test]
    fn initialize_runs_once() {
        let mut p = policy();
        p.hooks.initialize = true;
        let mut t = T::new(p);
        t.send(Task::On, Some(payload(None)));
        t.input(Input::HookDone { hook: HookKind::Initialize, result: Ok(String::new()) });
        let a = t.input(Input::Configured { result: Ok(()) });
        let gen = spawn_gen(&a).unwrap();
        t.input(Input::Spawned { gen, pid: 4 });
        let (_, a) = t.send(Task::On, Some(payload(None)));
        assert!(matches!(&a[..], [Action::Configure { .. }]), "{a:?}");
    }

    #[test]
    fn a_render_failure_is_a_soft_failure_and_the_pod_lives() {
        let mut t = T::new(policy());
        let (id, _) = t.send(Task::On, Some(payload(None)));
        let a = t.input(Input::Configured { result: Err("template process.command: undefined".into()) });
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(m)) if m.contains("undefined")));
        assert_eq!(t.state(), "stopped");
        assert_eq!(t.m.status(t.now).configurations, 0);
    }

    #[test]
    fn signal_replies_with_the_hook_output() {
        let mut p = policy();
        p.hooks.signaled = true;
        let mut t = T::new(p);
        let (id, a) = t.send(Task::Signal, Some(json!({"x": 1})));
        assert!(
            matches!(&a[..], [Action::RunHook { hook: HookKind::Signaled, stdin: Some(s), .. }] if s == r#"{"x":1}"#)
        );
        let a = t.input(Input::HookDone { hook: HookKind::Signaled, result: Ok("{\"y\": 2}\n".into()) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({"y": 2}))));
        let (id, _) = t.send(Task::Signal, None);
        let a = t.input(Input::HookDone { hook: HookKind::Signaled, result: Ok("not json".into()) });
        assert!(matches!(reply_of(&a, id), Some(Reply::HookFailure(_))));
        let mut t = T::new(policy());
        let (id, a) = t.send(Task::Signal, Some(json!("anything")));
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
    }

    #[test]
    fn failed_sanity_checks_turn_the_process_off_after_the_retries() {
        let mut p = policy();
        p.sanity = Some((Duration::from_millis(100), 2));
        let mut t = T::new(p);
        let (_, a) = t.send(Task::On, Some(payload(None)));
        assert!(!a.iter().any(|a| matches!(a, Action::RunSanity { .. })));
        let a = t.input(Input::Configured { result: Ok(()) });
        let gen = spawn_gen(&a).unwrap();
        let a = t.input(Input::Spawned { gen, pid: 10 });
        assert!(a.contains(&Action::Arm { timer: Timer::Sanity(gen), delay: Duration::from_millis(100) }));
        assert_eq!(t.input(Input::TimerFired(Timer::Sanity(gen))), vec![Action::RunSanity { gen }]);
        t.input(Input::SanityDone { gen, result: Ok(Some(json!({"up": 1}))) });
        assert_eq!(t.m.status(t.now).metrics, json!({"up": 1}));
        let a = t.input(Input::SanityDone { gen, result: Err("refused".into()) });
        assert!(!a.iter().any(|a| matches!(a, Action::Signal { .. })));
        let a = t.input(Input::SanityDone { gen, result: Err("refused".into()) });
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "{a:?}");
        t.input(Input::Exited { gen, code: None, signal: Some(15) });
        assert_eq!(t.state(), "stopped");
        assert_eq!(t.m.status(t.now).sanity_failures, 2);
    }

    #[test]
    fn a_sidecar_configures_and_runs_hooks_without_a_process() {
        let mut p = policy();
        p.sidecar = true;
        p.hooks.configured = true;
        let mut t = T::new(p);
        assert_eq!(t.state(), "sidecar");
        for epoch in 1..=2 {
            let (id, a) = t.send(Task::On, Some(payload(Some(epoch))));
            assert!(matches!(&a[..], [Action::Configure { .. }]));
            let a = t.input(Input::Configured { result: Ok(()) });
            assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
            assert!(spawn_gen(&a).is_none());
        }
        let (_, a) = t.send(Task::Ok, None);
        assert!(matches!(&a[..], [Action::RunHook { hook: HookKind::Configured, .. }]));
        t.input(Input::HookDone { hook: HookKind::Configured, result: Ok(String::new()) });
        let (id, a) = t.send(Task::Kill, None);
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert_eq!(t.state(), "dead");
    }

    #[test]
    fn shutdown_jumps_the_queue_and_later_commands_get_dead() {
        let mut t = T::new(policy());
        let gen = t.configure_and_run(10);
        let (off, _) = t.send(Task::Off, None);
        let (on, _) = t.send(Task::On, None);
        let a = t.m.handle(Input::Shutdown { id: 99 }, t.now);
        assert!(a.is_empty());
        let a = t.input(Input::Exited { gen, code: None, signal: Some(15) });
        assert_eq!(reply_of(&a, off), Some(Reply::Ok(json!({}))));
        assert_eq!(reply_of(&a, 99), Some(Reply::Ok(json!({}))));
        assert_eq!(reply_of(&a, on), Some(Reply::Dead));
    }
}
