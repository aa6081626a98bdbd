//! The job queue: a command becomes a [`Job`], a list of steps planned when it reaches the head
//! of the queue (so that it sees the state its predecessors left) and run one by one; a step that
//! needs the outside world parks the job. Planning applies the epoch fence: a command from a
//! leader older than the newest applied configuration is refused whole.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use ochopod_api::Task;
use ochopod_config::RestartWhen;
use ochopod_core::view::ViewError;
use ochopod_core::{ClusterView, ControlPayload};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

use super::{Action, HookKind, JobId, JsonBody, Machine, Proc};
use crate::Reply;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum OnFail {
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
pub(super) enum Step {
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
pub(super) enum Wait {
    Hook { hook: HookKind, fail: OnFail, reply_output: bool },
    Configure { view: Box<ClusterView> },
    Stopped,
    Spawned,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Origin {
    Command(Task, Option<JsonBody>),
    Shutdown,
    Internal(&'static str, VecDeque<Step>),
}

#[derive(Clone, Debug)]
pub(super) struct Job {
    /// `None` for internal jobs: nobody waits for their reply.
    pub(super) id: Option<JobId>,
    pub(super) origin: Origin,
    pub(super) steps: VecDeque<Step>,
    pub(super) waiting: Option<Wait>,
    pub(super) reply: Reply,
}

impl Machine {
    pub(super) fn internal(&mut self, what: &'static str, steps: Vec<Step>) {
        let steps: VecDeque<Step> = steps.into();
        self.queue.push_front(Job {
            id: None,
            origin: Origin::Internal(what, steps),
            steps: VecDeque::new(),
            waiting: None,
            reply: Reply::Ok(json!({})),
        });
    }

    pub(super) fn finish(&mut self, out: &mut Vec<Action>) {
        if let Some(job) = self.job.take() {
            if let Some(id) = job.id {
                out.push(Action::Reply { id, reply: job.reply });
            } else if !matches!(job.reply, Reply::Ok(_)) {
                tracing::warn!(reply = ?job.reply, "internal step failed");
            }
        }
    }

    /// Fail the current job: reply with `reply` and drop its remaining steps.
    pub(super) fn fail(&mut self, reply: Reply, out: &mut Vec<Action>) {
        if let Some(job) = self.job.as_mut() {
            job.reply = reply;
            job.steps.clear();
            job.waiting = None;
        }
        self.finish(out);
    }

    /// Execute steps until one has to wait for the outside world or the queue is empty.
    pub(super) fn run(&mut self, now: Instant, out: &mut Vec<Action>) {
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

    pub(super) fn payload(body: &Option<JsonBody>) -> Result<Option<Box<ClusterView>>, Reply> {
        let Some(body) = body else { return Ok(None) };
        let payload: ControlPayload = serde_json::from_str(body.as_str())
            .map_err(|e| Reply::BadRequest(format!("the body is not a cluster payload: {e}")))?;
        ClusterView::from_owned_payload(payload)
            .map(|v| Some(Box::new(v)))
            .map_err(|e| Reply::BadRequest(e.to_string()))
    }

    /// What `check` and `ok` need of a leader payload when no hook reads the view: that its
    /// key is one of its pods, and its epoch (`Ok(None)` without a body). The registrations are
    /// skipped, not read: `on` reads them.
    pub(super) fn addressed(body: &Option<JsonBody>) -> Result<Option<Option<u64>>, Reply> {
        #[derive(Deserialize)]
        struct Addressed {
            #[serde(default)]
            pods: BTreeMap<String, IgnoredAny>,
            #[serde(default)]
            key: String,
            #[serde(default)]
            epoch: Option<u64>,
        }
        let Some(body) = body else { return Ok(None) };
        let payload: Addressed = serde_json::from_str(body.as_str())
            .map_err(|e| Reply::BadRequest(format!("the body is not a cluster payload: {e}")))?;
        if !payload.pods.contains_key(&payload.key) {
            return Err(Reply::BadRequest(ViewError::UnknownKey(payload.key).to_string()));
        }
        Ok(Some(payload.epoch))
    }

    /// The epoch of a body that is a leader payload carrying one. Anything else (`{}` from an
    /// old script, an original leader's payload) carries none.
    pub(super) fn epoch_of(body: &Option<JsonBody>) -> Option<u64> {
        #[derive(Deserialize)]
        struct Epoch {
            #[serde(default)]
            epoch: Option<u64>,
        }
        serde_json::from_str::<Epoch>(body.as_ref()?.as_str()).ok()?.epoch
    }

    /// Refuse a command from a leader older than the newest applied configuration: a deposed
    /// leader must not stop, kill or reconfigure what its successor set up.
    pub(super) fn fence(&self, epoch: Option<u64>) -> Result<(), Reply> {
        match (epoch, self.newest_epoch) {
            (Some(epoch), Some(newest)) if epoch < newest => Err(Reply::StaleEpoch { epoch, newest }),
            _ => Ok(()),
        }
    }

    pub(super) fn hook(hook: HookKind, view: Option<Box<ClusterView>>, fail: OnFail) -> Step {
        Step::Hook { hook, view, stdin: None, fail, reply_output: false }
    }

    /// Turn a command into steps, seeing the state its predecessors left.
    pub(super) fn plan(&mut self, origin: &Origin) -> Result<VecDeque<Step>, Reply> {
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
                    let soft = |reply| match reply {
                        Reply::BadRequest(e) => Reply::SoftFailure(e),
                        other => other,
                    };
                    let missing =
                        || Reply::SoftFailure("check needs the cluster payload (pods, dependencies, key)".into());
                    if hooks.can_configure {
                        let view = Self::payload(body).map_err(soft)?.ok_or_else(missing)?;
                        self.fence(view.epoch)?;
                        steps.push_back(Self::hook(HookKind::CanConfigure, Some(view), OnFail::Soft));
                    } else {
                        let epoch = Self::addressed(body).map_err(soft)?.ok_or_else(missing)?;
                        self.fence(epoch)?;
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
                        // With `restart: changed` the render decides (see `on_configured`).
                        let restart = match self.policy.restart.when {
                            _ if self.policy.strict => true,
                            RestartWhen::Always => true,
                            RestartWhen::Dependencies => self.last_dependencies.as_ref() != Some(&view.dependencies),
                            RestartWhen::Changed => false,
                        };
                        steps.push_back(Step::Configure { view });
                        steps.push_back(Step::Start { restart, manual: false });
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
                    if hooks.configured {
                        let view = Self::payload(body)?;
                        self.fence(view.as_ref().and_then(|v| v.epoch))?;
                        let view = view.or_else(|| self.last_view.clone()).ok_or_else(|| {
                            Reply::HookFailure("ok received out of context: this pod was never configured".into())
                        })?;
                        steps.push_back(Self::hook(HookKind::Configured, Some(view), OnFail::Hook));
                    } else {
                        self.fence(Self::addressed(body)?.flatten())?;
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
                        let stdin = body.as_ref().map(|b| b.to_value().to_string()).unwrap_or_else(|| "{}".into());
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
}

#[cfg(test)]
mod tests {
    use ochopod_api::Task;
    use serde_json::json;

    use super::*;
    use crate::machine::testkit::*;
    use crate::machine::*;
    use crate::testing::payload;

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
        let a = t.input(Input::Configured { result: Ok(vec![]) });
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
        t.input(Input::Configured { result: Ok(vec![]) });
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
        let a = t.input(Input::HookDone {
            hook: HookKind::CanConfigure,
            result: Err(HookError::Failed { status: "exit code 3".into(), stderr: "not yet".into() }),
        });
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
        let a = t.input(Input::HookDone { hook: HookKind::Configured, result: Err(failed("boom")) });
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
        t.input(Input::Configured { result: Ok(vec![]) });
        assert!(reply_of(&a, id).is_none());
        let (id, a) = t.send(Task::On, Some(payload(Some(3))));
        assert_eq!(reply_of(&a, id), Some(Reply::StaleEpoch { epoch: 3, newest: 5 }));
        let (id, a) = t.send(Task::On, Some(payload(None)));
        assert!(a.iter().any(|a| matches!(a, Action::Configure { .. })), "no epoch (an original leader) is accepted");
        let a2 = t.input(Input::Configured { result: Ok(vec![]) });
        assert_eq!(reply_of(&a2, id), Some(Reply::Ok(json!({}))));
        assert_eq!(t.m.status(t.now).epoch, Some(5));
    }

    #[test]
    fn a_running_process_restarts_only_when_strict_or_dependencies_changed() {
        let mut t = T::new(policy());
        t.configure_and_run(10);
        let (id, _) = t.send(Task::On, Some(payload(Some(2))));
        let a = t.input(Input::Configured { result: Ok(vec![]) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert!(!a.iter().any(|a| matches!(a, Action::Signal { .. } | Action::Spawn { .. })), "{a:?}");

        let mut changed = payload(Some(3));
        changed["dependencies"]["zookeeper"] = json!({});
        let (id, _) = t.send(Task::On, Some(changed));
        let a = t.input(Input::Configured { result: Ok(vec![]) });
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
        let a = t.input(Input::Configured { result: Ok(vec![]) });
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "strict restarts: {a:?}");
    }

    #[test]
    fn with_restart_changed_only_a_changed_input_restarts_never_a_dependency_alone() {
        let mut p = policy();
        p.restart.when = RestartWhen::Changed;
        let mut t = T::new(p);
        t.configure_and_run(10);
        let configured = |a: &[Action]| {
            a.iter()
                .find_map(|a| match a {
                    Action::Publish(Event::Configured { changed, restart, .. }) => Some((changed.clone(), *restart)),
                    _ => None,
                })
                .expect("a configured event")
        };
        // A dependency moved, but nothing the process was started with changed.
        let mut moved = payload(Some(2));
        moved["dependencies"]["zookeeper"] = json!({});
        let (id, _) = t.send(Task::On, Some(moved.clone()));
        let a = t.input(Input::Configured { result: Ok(vec![]) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert!(!a.iter().any(|a| matches!(a, Action::Signal { .. } | Action::Spawn { .. })), "{a:?}");
        assert_eq!(configured(&a), (vec![], false));

        // The same view, but a rendered file differs: restart, and say which input.
        let (id, _) = t.send(Task::On, Some(moved));
        let a = t.input(Input::Configured { result: Ok(vec!["file conf/a.cfg".into()]) });
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "{a:?}");
        assert_eq!(configured(&a), (vec!["file conf/a.cfg".to_string()], true));
        let a = t.input(Input::Exited { gen: 1, code: None, signal: Some(15) });
        let gen = spawn_gen(&a).unwrap();
        let a = t.input(Input::Spawned { gen, pid: 11 });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));

        // Today's default restarts on the moved dependency and reports the inputs too.
        let mut t = T::new(policy());
        t.configure_and_run(10);
        let mut moved = payload(Some(2));
        moved["dependencies"]["zookeeper"] = json!({});
        t.send(Task::On, Some(moved));
        let a = t.input(Input::Configured { result: Ok(vec![]) });
        assert!(a.contains(&Action::Signal { pgid: 10, sig: Sig::Term }), "{a:?}");
        assert_eq!(configured(&a), (vec![], true));
    }

    #[test]
    fn start_false_configures_without_starting_until_a_body_less_on() {
        let mut p = policy();
        p.start = false;
        let mut t = T::new(p);
        let (id, _) = t.send(Task::On, Some(payload(None)));
        let a = t.input(Input::Configured { result: Ok(vec![]) });
        assert_eq!(reply_of(&a, id), Some(Reply::Ok(json!({}))));
        assert!(spawn_gen(&a).is_none());
        assert_eq!(t.state(), "stopped");
        let (_, a) = t.send(Task::On, None);
        let gen = spawn_gen(&a).expect("a body-less on starts it");
        t.input(Input::Spawned { gen, pid: 3 });
        assert_eq!(t.state(), "running");
    }

    #[test]
    fn a_failed_initialize_is_a_soft_failure_and_kills_the_pod() {
        let mut p = policy();
        p.hooks.initialize = true;
        let mut t = T::new(p);
        let (id, a) = t.send(Task::On, Some(payload(None)));
        assert!(matches!(&a[..], [Action::RunHook { hook: HookKind::Initialize, .. }]));
        let a = t.input(Input::HookDone { hook: HookKind::Initialize, result: Err(failed("exit code 1")) });
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
        let a = t.input(Input::Configured { result: Ok(vec![]) });
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
    fn a_sidecar_configures_and_runs_hooks_without_a_process() {
        let mut p = policy();
        p.sidecar = true;
        p.hooks.configured = true;
        let mut t = T::new(p);
        assert_eq!(t.state(), "sidecar");
        for epoch in 1..=2 {
            let (id, a) = t.send(Task::On, Some(payload(Some(epoch))));
            assert!(matches!(&a[..], [Action::Configure { .. }]));
            let a = t.input(Input::Configured { result: Ok(vec![]) });
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
