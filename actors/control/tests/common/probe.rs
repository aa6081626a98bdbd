//! Probe actors standing in for the executor, the leader and the session: they answer the
//! fixed messages from a script and record what they received. Shared by the tests and the
//! `info_bench` example.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use ochopod_api::Task;
use ochopod_config::{ControlSettings, Secret};
use ochopod_control::{Actors, ControlState};
use ochopod_core::events::EventBus;
use ochopod_core::logring::LogRing;
use ochopod_core::Registration;
use ochopod_executor::{Command, ExecutorStatus, GetStatus, Reply};
use ochopod_leader::{GetLeaderStatus, LeaderStatus, NotLeader, Reconfigure};
use ochopod_session::{GetSessionStatus, Reset, SessionStatus};
use serde_json::json;

/// What the probes answer and what they saw; tests change it while the server runs.
#[derive(Default)]
pub struct Script {
    /// Reply and how long the command takes, per task (default: `Ok({})`, or the body for
    /// `signal`, at once).
    pub replies: Mutex<HashMap<Task, (Reply, Duration)>>,
    pub commands: Mutex<Vec<Command>>,
    pub executor: Mutex<ExecutorStatus>,
    pub leader: Mutex<LeaderStatus>,
    pub session: Mutex<SessionStatus>,
    pub not_leader: Mutex<Option<NotLeader>>,
    pub resets: AtomicUsize,
    pub reconfigures: AtomicUsize,
    /// Status queries to the leader never get an answer (a stuck actor).
    pub leader_stuck: AtomicBool,
}

impl Script {
    pub fn reply(&self, task: Task, reply: Reply, takes: Duration) {
        self.replies.lock().unwrap().insert(task, (reply, takes));
    }

    pub fn commands(&self) -> Vec<Command> {
        self.commands.lock().unwrap().clone()
    }
}

pub struct Probe(pub Arc<Script>);

impl Actor for Probe {
    type Context = Context<Self>;
}

/// Runs commands one at a time, like the real executor's FIFO: the mailbox waits meanwhile.
impl Handler<Command> for Probe {
    type Result = AtomicResponse<Self, Reply>;

    fn handle(&mut self, cmd: Command, _: &mut Context<Self>) -> Self::Result {
        let script = self.0.clone();
        let (reply, takes) = script.replies.lock().unwrap().get(&cmd.task).cloned().unwrap_or_else(|| {
            let body = if cmd.task == Task::Signal {
                cmd.body.as_ref().map_or(json!({}), |b| b.to_value())
            } else {
                json!({})
            };
            (Reply::Ok(body), Duration::ZERO)
        });
        AtomicResponse::new(Box::pin(
            async move {
                if !takes.is_zero() {
                    tokio::time::sleep(takes).await;
                }
                script.commands.lock().unwrap().push(cmd);
                reply
            }
            .into_actor(self),
        ))
    }
}

impl Handler<GetStatus> for Probe {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.0.executor.lock().unwrap().clone())
    }
}

impl Handler<GetLeaderStatus> for Probe {
    type Result = ResponseFuture<LeaderStatus>;

    fn handle(&mut self, _: GetLeaderStatus, _: &mut Context<Self>) -> Self::Result {
        if self.0.leader_stuck.load(Ordering::SeqCst) {
            return Box::pin(futures::future::pending());
        }
        let status = self.0.leader.lock().unwrap().clone();
        Box::pin(async move { status })
    }
}

impl Handler<GetSessionStatus> for Probe {
    type Result = MessageResult<GetSessionStatus>;

    fn handle(&mut self, _: GetSessionStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.0.session.lock().unwrap().clone())
    }
}

impl Handler<Reset> for Probe {
    type Result = ();

    fn handle(&mut self, _: Reset, _: &mut Context<Self>) {
        self.0.resets.fetch_add(1, Ordering::SeqCst);
    }
}

impl Handler<Reconfigure> for Probe {
    type Result = Result<(), NotLeader>;

    fn handle(&mut self, _: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        self.0.reconfigures.fetch_add(1, Ordering::SeqCst);
        match self.0.not_leader.lock().unwrap().clone() {
            Some(not) => Err(not),
            None => Ok(()),
        }
    }
}

/// An actor that stops at once, so every message to it fails as `MailboxError::Closed`.
pub struct Gone;

impl Actor for Gone {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Command> for Gone {
    type Result = MessageResult<Command>;

    fn handle(&mut self, _: Command, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Reply::Dead)
    }
}

pub fn identity() -> Registration {
    Registration {
        ip: "127.0.0.1".into(),
        public: "203.0.113.7".into(),
        node: "node-1".into(),
        ports: [("8080".to_string(), 31080u16), ("2181".to_string(), 31181u16)].into(),
        port: "8080".into(),
        seq: 0,
        cluster: "zookeeper".into(),
        namespace: "demo".into(),
        application: "demo.zookeeper".into(),
        task: "task-1".into(),
        ..Default::default()
    }
}

pub struct Options {
    pub token: Option<&'static str>,
    pub protect_reads: bool,
    pub body_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { token: None, protect_reads: false, body_limit: 4096 }
    }
}

/// A state wired to one started [`Probe`] (call inside an actix System).
pub fn state(opts: Options) -> (ControlState, Arc<Script>) {
    let script = Arc::new(Script::default());
    *script.executor.lock().unwrap() = ExecutorStatus {
        process: "running".into(),
        pid: Some(4242),
        restarts: 1,
        metrics: json!({"lag": 0}),
        epoch: Some(3),
        configurations: 2,
        ..Default::default()
    };
    *script.leader.lock().unwrap() = LeaderStatus {
        state: "leader".into(),
        status: "all good".into(),
        leader: true,
        epoch: Some(3),
        rounds_ok: 2,
        rounds_ms_total: 250,
        last_round_ms: Some(100),
        ..Default::default()
    };
    *script.session.lock().unwrap() =
        SessionStatus { state: "connected".into(), generation: 1, seq: Some(17), node: Some("/x".into()) };
    let addr = Probe(script.clone()).start();
    let actors = Actors {
        executor: addr.clone().recipient(),
        executor_status: addr.clone().recipient(),
        leader_status: addr.clone().recipient(),
        reconfigure: addr.clone().recipient(),
        session_status: addr.clone().recipient(),
        reset: addr.recipient(),
    };
    let settings = ControlSettings {
        token: opts.token.map(|t| Secret(t.to_string())),
        token_source: opts.token.map(|_| ochopod_config::TokenSource::Env("TEST".into())),
        protect_reads: opts.protect_reads,
        tls: None,
        body_limit: opts.body_limit,
        log_lines: 100,
    };
    let log = LogRing::new(settings.log_lines);
    let state = ControlState::new(actors, identity(), vec!["kafka".into()], log, EventBus::new(64), &settings);
    (state, script)
}
