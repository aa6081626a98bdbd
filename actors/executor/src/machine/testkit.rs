//! What the machine's tests share: a policy, a driver that keeps the time, and readers of the
//! actions.

use std::time::{Duration, Instant};

use ochopod_api::Task;
use ochopod_config::RestartPolicy;
use serde_json::{json, Value};

use super::*;
use crate::testing::payload;

pub(crate) fn policy() -> Policy {
    Policy {
        sidecar: false,
        strict: false,
        start: true,
        soft: false,
        grace: Duration::from_millis(300),
        restart: RestartPolicy {
            when: ochopod_config::RestartWhen::Dependencies,
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

pub(crate) struct T {
    pub(crate) m: Machine,
    pub(crate) now: Instant,
    pub(crate) next_id: JobId,
}

impl T {
    pub(crate) fn new(p: Policy) -> Self {
        T { m: Machine::new(p, 7), now: Instant::now(), next_id: 1 }
    }
    pub(crate) fn send(&mut self, task: Task, body: Option<Value>) -> (JobId, Vec<Action>) {
        let id = self.next_id;
        self.next_id += 1;
        (id, self.m.handle(Input::Command { id, task, body: body.as_ref().map(JsonBody::from) }, self.now))
    }
    pub(crate) fn input(&mut self, i: Input) -> Vec<Action> {
        self.m.handle(i, self.now)
    }
    pub(crate) fn later(&mut self, d: Duration) {
        self.now += d;
    }
    pub(crate) fn state(&self) -> String {
        self.m.status(self.now).process
    }
    /// `on` with a payload, configure ok, spawn ok: returns the generation.
    pub(crate) fn configure_and_run(&mut self, pid: u32) -> Gen {
        let (id, a) = self.send(Task::On, Some(payload(Some(1))));
        assert!(a.iter().any(|a| matches!(a, Action::Configure { .. })), "{a:?}");
        let a = self.input(Input::Configured { result: Ok(vec![]) });
        let gen = spawn_gen(&a).expect("spawn");
        let a = self.input(Input::Spawned { gen, pid });
        assert!(a.contains(&Action::Reply { id, reply: Reply::Ok(json!({})) }), "{a:?}");
        gen
    }
}

pub(crate) fn spawn_gen(actions: &[Action]) -> Option<Gen> {
    actions.iter().find_map(|a| match a {
        Action::Spawn { gen } => Some(*gen),
        _ => None,
    })
}

pub(crate) fn reply_of(actions: &[Action], id: JobId) -> Option<Reply> {
    actions.iter().find_map(|a| match a {
        Action::Reply { id: i, reply } if *i == id => Some(reply.clone()),
        _ => None,
    })
}

pub(crate) fn restart_delay(actions: &[Action]) -> Option<Duration> {
    actions.iter().find_map(|a| match a {
        Action::Arm { timer: Timer::Restart(_), delay } => Some(*delay),
        _ => None,
    })
}

pub(crate) fn tear_down_and_finalize() -> Policy {
    let mut p = policy();
    p.hooks.tear_down = true;
    p.hooks.finalize = true;
    p
}

pub(crate) fn runs(actions: &[Action], hook: HookKind) -> bool {
    actions.iter().any(|a| matches!(a, Action::RunHook { hook: h, .. } if *h == hook))
}

/// A hook that failed with `status` and printed nothing on stderr.
pub(crate) fn failed(status: &str) -> HookError {
    HookError::Failed { status: status.into(), stderr: String::new() }
}
