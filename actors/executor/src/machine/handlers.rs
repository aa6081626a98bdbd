//! Each step performed and each result of the outside world taken in: stopping (grace,
//! `tear_down`, SIGKILL), starting, hooks done, the child spawned or gone, timers, sanity checks.

use std::time::{Duration, Instant};

use ochopod_api::wire::health;
use ochopod_core::events::Event;
use serde_json::{json, Value};

use ochopod_config::RestartWhen;

use super::plan::{OnFail, Origin, Step, Wait};
use super::{Action, Gen, HookError, HookKind, Machine, Proc, Sig, Timer};
use crate::Reply;

impl Machine {
    pub(super) fn wait(&mut self, wait: Wait) {
        if let Some(job) = self.job.as_mut() {
            job.waiting = Some(wait);
        }
    }

    pub(super) fn step(&mut self, step: Step, now: Instant, out: &mut Vec<Action>) {
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
                // Said only when the pod stays up dead (exit 0, `kill`); at shutdown it is leaving.
                if self.job.as_ref().is_some_and(|j| j.origin == Origin::Shutdown) {
                    tracing::debug!("the executor is done: the pod shuts down");
                } else {
                    tracing::info!("the pod is dead and idles (410 to control, info and log still served)");
                }
            }
        }
    }

    pub(super) fn stop(&mut self, now: Instant, out: &mut Vec<Action>) {
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
    pub(super) fn stopped(&mut self) {
        let over = !self.tearing_down && !matches!(self.proc, Proc::Terminating { .. });
        if over && self.waiting() == Some(&Wait::Stopped) {
            self.resume();
        }
    }

    /// `tear_down` ended (done, failed, or cut by its timeout). If it did not do its job and
    /// the child still runs, SIGTERM it; the grace timer still bounds it.
    pub(super) fn tear_down_done(&mut self, result: Result<String, HookError>, out: &mut Vec<Action>) {
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

    pub(super) fn start(&mut self, restart: bool, manual: bool, now: Instant, out: &mut Vec<Action>) {
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

    pub(super) fn spawn(&mut self, now: Instant, out: &mut Vec<Action>) {
        let gen = self.next_gen;
        self.next_gen += 1;
        self.set_proc(Proc::Starting { gen }, now, out);
        out.push(Action::Spawn { gen });
    }

    pub(super) fn waiting(&self) -> Option<&Wait> {
        self.job.as_ref().and_then(|j| j.waiting.as_ref())
    }

    pub(super) fn resume(&mut self) {
        if let Some(job) = self.job.as_mut() {
            job.waiting = None;
        }
    }

    pub(super) fn on_hook_done(&mut self, hook: HookKind, result: Result<String, HookError>, out: &mut Vec<Action>) {
        match &result {
            Err(HookError::TimedOut(_)) => self.hook_timeouts += 1,
            Err(_) => self.hook_failures += 1,
            Ok(_) => {}
        }
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
    pub(super) fn stray_hook(hook: HookKind) {
        tracing::debug!(hook = hook.name(), "result of a hook nobody waits for ignored");
    }

    pub(super) fn on_configured(&mut self, result: Result<Vec<String>, String>, out: &mut Vec<Action>) {
        let Some(Wait::Configure { view }) = self.waiting().cloned() else { return };
        self.resume();
        match result {
            Ok(changed) => {
                self.configured = true;
                self.configurations += 1;
                if view.epoch.is_some() {
                    self.newest_epoch = view.epoch.max(self.newest_epoch);
                }
                self.last_dependencies = Some(view.dependencies.clone());
                let restart = self.decide_restart(&changed);
                out.push(Action::Publish(Event::Configured {
                    epoch: view.epoch,
                    index: view.index,
                    size: view.size,
                    changed,
                    restart,
                }));
                self.last_view = Some(view);
            }
            Err(e) => self.fail(Reply::SoftFailure(format!("configuration failed: {e}")), out),
        }
    }

    /// Whether the `Start` step after this configuration restarts the running process: with
    /// `restart: changed` that is decided here, now that the render says what `changed`; the
    /// other policies decided when the command was planned. Logged either way with the reason.
    fn decide_restart(&mut self, changed: &[String]) -> bool {
        let when = self.policy.restart.when;
        let decide_now = when == RestartWhen::Changed && !self.policy.strict;
        let Some(Step::Start { restart, .. }) = self.job.as_mut().and_then(|j| j.steps.front_mut()) else {
            return false;
        };
        if decide_now {
            *restart = !changed.is_empty();
        }
        let restart = *restart;
        if !matches!(self.proc, Proc::Running { .. }) {
            return false;
        }
        let inputs = changed.join(", ");
        match (restart, when) {
            (true, _) if self.policy.strict => tracing::info!(changed = %inputs, "restarting the process (strict)"),
            (true, RestartWhen::Always) => {
                tracing::info!(changed = %inputs, "restarting the process (restart: always)")
            }
            (true, RestartWhen::Dependencies) => {
                tracing::info!(changed = %inputs, "restarting the process: the dependencies changed")
            }
            (true, RestartWhen::Changed) => {
                tracing::info!(changed = %inputs, "restarting the process: what it was started with changed")
            }
            (false, RestartWhen::Changed) => {
                tracing::info!("the process keeps running: nothing it was started with changed")
            }
            (false, _) if !changed.is_empty() => tracing::info!(
                changed = %inputs,
                "the process keeps running (the dependencies did not change) though it was started with other inputs"
            ),
            (false, _) => {}
        }
        restart
    }

    pub(super) fn on_spawned(&mut self, gen: Gen, pid: u32, now: Instant, out: &mut Vec<Action>) {
        if self.proc != (Proc::Starting { gen }) {
            return;
        }
        self.ever_spawned = true;
        self.sanity_streak = 0;
        if self.policy.sanity.is_some() {
            self.sanity_health = health::PENDING;
        }
        self.set_proc(Proc::Running { gen, pid, since: now }, now, out);
        if let Some((every, _)) = self.policy.sanity {
            out.push(Action::Arm { timer: Timer::Sanity(gen), delay: every });
        }
        if self.waiting() == Some(&Wait::Spawned) {
            self.resume();
        }
    }

    pub(super) fn on_spawn_failed(&mut self, gen: Gen, error: String, now: Instant, out: &mut Vec<Action>) {
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

    pub(super) fn on_exited(
        &mut self,
        gen: Gen,
        code: Option<i32>,
        signal: Option<i32>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
    pub(super) fn failed(&mut self, gen: Gen, exit: Option<i32>, ran: Duration, now: Instant, out: &mut Vec<Action>) {
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

    pub(super) fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) {
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

    pub(super) fn on_sanity(&mut self, gen: Gen, result: Result<Option<Value>, String>, out: &mut Vec<Action>) {
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
                self.sanity_health = health::PASSING;
                if let Some(m) = metrics {
                    self.metrics = m;
                }
                out.push(Action::Arm { timer: Timer::Sanity(gen), delay: every });
            }
            Err(e) => {
                self.sanity_streak += 1;
                self.sanity_failures += 1;
                self.sanity_health = health::FAILING;
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
    use std::time::Duration;

    use ochopod_api::Task;
    use serde_json::json;

    use super::*;
    use crate::machine::testkit::*;
    use crate::machine::*;
    use crate::testing::payload;

    #[test]
    fn exit_zero_finalizes_and_the_pod_is_dead() {
        let mut p = policy();
        p.hooks.finalize = true;
        let mut t = T::new(p);
        let gen = t.configure_and_run(10);
        let a = t.input(Input::Exited { gen, code: Some(0), signal: None });
        assert!(a.iter().any(|a| matches!(a, Action::RunHook { hook: HookKind::Finalize, .. })), "{a:?}");
        let a = t.input(Input::HookDone { hook: HookKind::Finalize, result: Err(failed("ignored")) });
        assert!(a.contains(&Action::Publish(Event::Process { state: "dead".into(), pid: None })), "{a:?}");
        for task in Task::ALL {
            let (id, a) = t.send(task, None);
            assert_eq!(reply_of(&a, id), Some(Reply::Dead), "{task}");
        }
        assert_eq!(t.m.status(t.now).last_exit, Some(0));
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
        let a = t.input(Input::HookDone { hook: HookKind::TearDown, result: Err(failed("exit code 1")) });
        assert_eq!(a, vec![Action::Signal { pgid: 10, sig: Sig::Term }]);
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
        let a = t.input(Input::Configured { result: Ok(vec![]) });
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
        let a = t.input(Input::HookDone {
            hook: HookKind::TearDown,
            result: Err(HookError::TimedOut(Duration::from_secs(1))),
        });
        assert_eq!(a, vec![Action::Signal { pgid: 10, sig: Sig::Term }]);
        let a = t.input(Input::Exited { gen, code: None, signal: Some(15) });
        assert!(runs(&a, HookKind::Finalize), "{a:?}");

        let mut t = T::new(tear_down_and_finalize());
        let gen = t.configure_and_run(10);
        t.input(Input::Shutdown { id: 99 });
        t.input(Input::TimerFired(Timer::Grace(gen)));
        t.input(Input::Exited { gen, code: None, signal: Some(9) });
        let a = t.input(Input::HookDone {
            hook: HookKind::TearDown,
            result: Err(HookError::TimedOut(Duration::from_secs(1))),
        });
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
    fn a_shutdown_abandons_a_configuration_still_rendering() {
        let mut t = T::new(policy());
        let gen = t.configure_and_run(10);
        let (id, a) = t.send(Task::On, Some(payload(Some(2))));
        assert!(a.iter().any(|a| matches!(a, Action::Configure { .. })), "{a:?}");
        let a = t.input(Input::Shutdown { id: 99 });
        assert!(matches!(reply_of(&a, id), Some(Reply::SoftFailure(m)) if m.contains("shutting down")), "{a:?}");
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "the stop starts at once: {a:?}");
        // The render's late answer changes nothing.
        assert!(t.input(Input::Configured { result: Ok(vec!["command".into()]) }).is_empty());
        let a = t.input(Input::Exited { gen, code: None, signal: Some(15) });
        assert_eq!(reply_of(&a, 99), Some(Reply::Ok(json!({}))));
        assert_eq!(t.state(), "dead");
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
    fn the_sanity_health_is_none_pending_passing_or_failing() {
        let t = T::new(policy());
        assert_eq!(t.m.status(t.now).sanity, Some("none"));
        let mut p = policy();
        p.sanity = Some((Duration::from_millis(100), 5));
        let mut t = T::new(p);
        let sanity = |t: &T| t.m.status(t.now).sanity.unwrap();
        let gen = t.configure_and_run(10);
        assert_eq!(sanity(&t), "pending");
        t.input(Input::SanityDone { gen, result: Err("refused".into()) });
        assert_eq!(sanity(&t), "failing");
        t.input(Input::SanityDone { gen, result: Ok(None) });
        assert_eq!(sanity(&t), "passing");
        // A new child has not been checked yet.
        t.input(Input::Exited { gen, code: Some(1), signal: None });
        let a = t.input(Input::TimerFired(Timer::Restart(gen)));
        let gen = spawn_gen(&a).unwrap();
        t.input(Input::Spawned { gen, pid: 11 });
        assert_eq!(sanity(&t), "pending");
    }

    #[test]
    fn failed_sanity_checks_turn_the_process_off_after_the_retries() {
        let mut p = policy();
        p.sanity = Some((Duration::from_millis(100), 2));
        let mut t = T::new(p);
        let (_, a) = t.send(Task::On, Some(payload(None)));
        assert!(!a.iter().any(|a| matches!(a, Action::RunSanity { .. })));
        let a = t.input(Input::Configured { result: Ok(vec![]) });
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
}
