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
//!
//! The module's files follow its concerns: `vocabulary` (what goes in and comes out), `policy`
//! (the settings the machine decides with: restarts and hooks), `plan` (the job queue: a command
//! turned into steps, behind the epoch fence) and `handlers` (each step performed, each result of
//! the outside world taken in).

mod handlers;
mod plan;
mod policy;
#[cfg(test)]
mod testkit;
mod vocabulary;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use ochopod_api::wire::health;
use ochopod_core::events::Event;
use ochopod_core::ClusterView;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::{ExecutorStatus, Reply};
use plan::{Job, Origin};
pub use policy::{Backoff, HookSet, Policy};
pub use vocabulary::{Action, Gen, HookError, HookKind, Input, JobId, JsonBody, Sig, Timer};

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
    /// The sanity check right now, as `/info` shows it (`ochopod_api::wire::health`).
    sanity_health: &'static str,
    /// Hooks that failed (or could not run), and hooks cut by their timeout.
    hook_failures: u64,
    hook_timeouts: u64,
    metrics: Value,
    configurations: u64,
    last_exit: Option<i32>,
}

impl Machine {
    pub fn new(policy: Policy, seed: u64) -> Self {
        let backoff = Backoff::new(policy.restart.initial_delay, policy.restart.max_delay);
        let sanity_health = if policy.sanity.is_some() { health::PENDING } else { health::NONE };
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
            sanity_health,
            hook_failures: 0,
            hook_timeouts: 0,
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
            sanity: Some(self.sanity_health),
            hook_failures: self.hook_failures,
            hook_timeouts: self.hook_timeouts,
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
            // The pod is going away: nothing queued behind should run first, and a configuration
            // still rendering is abandoned (a template may take its time; the shutdown may not).
            Input::Shutdown { id } => {
                if matches!(self.waiting(), Some(plan::Wait::Configure { .. })) {
                    tracing::warn!("the pod is shutting down: the configuration being rendered is abandoned");
                    self.fail(Reply::SoftFailure("the pod is shutting down: configuration abandoned".into()), &mut out);
                }
                self.queue.push_front(Job {
                    id: Some(id),
                    origin: Origin::Shutdown,
                    steps: VecDeque::new(),
                    waiting: None,
                    reply: Reply::Ok(json!({})),
                })
            }
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
}
