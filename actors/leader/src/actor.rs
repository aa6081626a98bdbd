//! The leader actor: drives the election, the watches, the planner, the rounds and the probe.
//!
//! Handlers are synchronous; everything that waits (ZooKeeper, HTTP, the probe) runs as a tokio
//! task that reports back with a message tagged with the `token` it was started under. The token
//! changes whenever that work becomes stale (suspension, session loss, lost lock, shutdown), the
//! tasks of the old token are aborted, and a late report of theirs is dropped on arrival.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ochopod_api::wire::health;
use ochopod_api::PodClient;
use ochopod_config::{PodEnv, Settings};
use ochopod_core::deps::Dependency;
use ochopod_core::events::{Event, EventBus, RoundFailureKind};
use ochopod_core::hash::state_hash;
use ochopod_core::view::Pods;
use ochopod_core::{paths, ClusterView, ControlPayload};
use ochopod_session::{Link, SessionEvent};
use serde::Serialize;

use crate::coord::{self, CoordError, CoordFence};
use crate::election::LockData;
use crate::plan::{Decision, Planner, RoundPlan, RoundResult};
use crate::probe;
use crate::round::{self, RoundError, RoundInput, RoundOutcome};
use crate::zk::{ElectionEvent, LockNode, Takeover};

/// How long `Shutdown` waits for the deletion of our lock node.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Leader {
    settings: Arc<Settings>,
    key: String,
    /// Stored in our lock node so that followers can name us.
    address: String,
    pods: PodClient,
    events: EventBus,
    /// `/ochopod/clusters/<ns>.<cluster>` (ZooKeeper), set again by each session's backend.
    prefix: String,
    dependencies: Vec<Dependency>,
    session: Option<SessionCtx>,
    /// Our contender node in the current session, kept across a suspension so that we keep our
    /// place in the queue.
    lock: Option<LockNode>,
    /// Unique per session: finds our node again if a create's reply was lost.
    contender: String,
    lead: Option<Lead>,
    token: u64,
    /// Tasks of the current token; dropping them aborts them (and drops their `Client` clones).
    tasks: Vec<AbortOnDrop>,
    stats: Stats,
    /// After `Shutdown`: later session events must not restart anything.
    stopped: bool,
    /// Registrations refused so far, so each is warned about once, not on every scan.
    refused: BTreeSet<String>,
    /// What the probe gets of ochopod's environment, read once ([`Settings::pod_env`]).
    env: PodEnv,
}

struct SessionCtx {
    generation: u64,
    client: Link,
    connected: bool,
}

/// Leader-only state, dropped the moment leadership stops.
struct Lead {
    epoch: u64,
    lock: LockNode,
    planner: Planner,
    damper: Option<SpawnHandle>,
    probe_timer: Option<SpawnHandle>,
    probe_running: bool,
    /// A round finished while the probe ran: probe again once it is done.
    probe_again: bool,
    /// Cleared when leadership stops; the round's fence reads it between steps.
    active: Arc<AtomicBool>,
    /// The last configured state as the leader's own payload: the probe's input.
    last_payload: Option<ControlPayload>,
    /// A snapshot republish in flight, aborted by a newer write so that an older content never
    /// lands after a newer one (requests reach ZooKeeper in the order they are issued).
    publishing: Option<AbortOnDrop>,
}

#[derive(Default)]
struct Stats {
    rounds_ok: u64,
    rounds_failed: u64,
    last_round_ms: Option<u64>,
    rounds_ms_total: u64,
    /// Failed rounds by kind, and refusals by the HTTP code the pod answered.
    failures: BTreeMap<RoundFailureKind, u64>,
    refusals: BTreeMap<u16, u64>,
}

impl Stats {
    fn failed(&mut self, failure: &RoundFailure) {
        self.rounds_failed += 1;
        *self.failures.entry(failure.kind()).or_default() += 1;
        if let Some(code) = failure.code() {
            *self.refusals.entry(code).or_default() += 1;
        }
    }
}

struct AbortOnDrop<T = ()>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Leader {
    pub fn new(settings: Arc<Settings>, key: String, address: String, pods: PodClient, events: EventBus) -> Self {
        let prefix = paths::cluster_prefix(&settings.namespace, &settings.cluster);
        let own = paths::cluster_name(&settings.namespace, &settings.cluster);
        let dependencies = settings
            .model
            .depends_on
            .iter()
            .map(|entry| Dependency::resolve(entry, &settings.namespace, &settings.cluster))
            // As in the original: our own snapshot is what we write, depending on it would gate
            // the first round forever and feed every round back into the next.
            .filter(|d| match d {
                Dependency::Exact { cluster, entry } if *cluster == own => {
                    tracing::warn!(dependency = %entry, "ignoring a dependency on our own cluster");
                    false
                }
                _ => true,
            })
            .collect();
        let settings_env = settings.pod_env(&ochopod_config::process_env());
        Leader {
            settings,
            key,
            address,
            pods,
            events,
            prefix,
            dependencies,
            session: None,
            lock: None,
            contender: String::new(),
            lead: None,
            token: 0,
            tasks: Vec::new(),
            stats: Stats::default(),
            stopped: false,
            refused: BTreeSet::new(),
            env: settings_env,
        }
    }

    /// Leaves out registrations that cannot be used safely (see `Registration::validate`): one
    /// bad node must not abort every round, and its `ip` must never reach a URL or a peer's file.
    fn admit(&mut self, pods: Pods) -> Pods {
        let fallback = self.settings.port;
        let mut admitted = Pods::new();
        let mut refused = BTreeSet::new();
        for (key, registration) in pods {
            match registration.validate(fallback) {
                Ok(_) => {
                    admitted.insert(key, registration);
                }
                Err(e) => {
                    if !self.refused.contains(&key) {
                        tracing::warn!(cluster = %self.prefix, pod = %key.escape_default(), error = %e, "ignoring an invalid registration");
                    }
                    refused.insert(key);
                }
            }
        }
        self.refused = refused;
        admitted
    }

    fn client(&self) -> Option<Link> {
        self.session.as_ref().filter(|s| s.connected).map(|s| s.client.clone())
    }

    fn spawn(&mut self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(AbortOnDrop(tokio::spawn(work)));
    }

    /// Stops every task and timer and, if leading, leadership itself. The lock node is kept.
    fn stop_work(&mut self, ctx: &mut Context<Self>, why: &str) {
        self.token += 1;
        self.tasks.clear();
        if let Some(lead) = self.lead.take() {
            lead.active.store(false, Ordering::SeqCst);
            for handle in [lead.damper, lead.probe_timer].into_iter().flatten() {
                ctx.cancel_future(handle);
            }
            tracing::warn!(cluster = %self.prefix, epoch = lead.epoch, "stopped leading: {why}");
            self.events.publish(Event::Leadership { leader: false, epoch: Some(lead.epoch) });
        }
    }

    fn contend(&mut self, ctx: &mut Context<Self>) {
        let Some(client) = self.client() else { return };
        let (addr, token) = (ctx.address(), self.token);
        let data =
            serde_json::to_vec(&LockData { key: self.key.clone(), address: self.address.clone() }).unwrap_or_default();
        let work = coord::contend(
            client,
            self.prefix.clone(),
            self.contender.clone(),
            data,
            self.lock.clone(),
            move |event| addr.do_send(Election { token, event }),
        );
        self.spawn(work);
    }

    fn start_leading(&mut self, lock: LockNode, ctx: &mut Context<Self>) {
        let Some(client) = self.client() else { return };
        let epoch = lock.seq;
        let entries = self.dependencies.iter().map(|d| d.entry().to_string());
        self.lead = Some(Lead {
            epoch,
            lock: lock.clone(),
            planner: Planner::new(self.settings.model.damper, entries).with_min_size(self.settings.model.min_size),
            damper: None,
            probe_timer: None,
            probe_running: false,
            probe_again: false,
            active: Arc::new(AtomicBool::new(true)),
            last_payload: None,
            publishing: None,
        });
        tracing::info!(cluster = %self.prefix, lock = epoch, "elected, taking over");

        let (addr, token) = (ctx.address(), self.token);
        let (c, prefix, a) = (client.clone(), self.prefix.clone(), addr.clone());
        self.spawn(async move {
            loop {
                match coord::take_over(&c, &lock, &prefix).await {
                    Ok(found) => return a.do_send(Observed { token, what: Observation::TookOver(found) }),
                    Err(e) if e.is_fenced() => return a.do_send(Observed { token, what: Observation::Fenced }),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the stored hash and snapshot: retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let a = addr.clone();
        self.spawn(coord::watch_local(client.clone(), self.prefix.clone(), move |pods| {
            a.do_send(Observed { token, what: Observation::Local(pods) })
        }));
        for dependency in self.dependencies.clone() {
            let (a, entry) = (addr.clone(), dependency.entry().to_string());
            self.spawn(coord::watch_dependency(client.clone(), dependency, move |read| {
                a.do_send(Observed { token, what: Observation::Dependency(entry.clone(), read) })
            }));
        }
    }

    fn apply(&mut self, decision: Decision, ctx: &mut Context<Self>) {
        let token = self.token;
        let Some(lead) = self.lead.as_mut() else { return };
        match decision {
            Decision::Nothing => {}
            Decision::Arm(at) => {
                if let Some(h) = lead.damper.take() {
                    ctx.cancel_future(h);
                }
                let delay = at.saturating_duration_since(Instant::now());
                tracing::info!(cluster = %self.prefix, "configuration in {:.1} seconds", delay.as_secs_f64());
                lead.damper = Some(ctx.run_later(delay, move |act, ctx| {
                    if act.token != token {
                        return;
                    }
                    let Some(lead) = act.lead.as_mut() else { return };
                    lead.damper = None;
                    let decision = lead.planner.damper_elapsed(Instant::now());
                    act.apply(decision, ctx);
                }));
            }
            Decision::Settle { publish } => {
                if let Some(h) = lead.damper.take() {
                    tracing::info!(cluster = %self.prefix, "cluster back to its configured state, no round");
                    ctx.cancel_future(h);
                }
                if lead.last_payload.is_none() {
                    if let Some((pods, dependencies)) = lead.planner.current() {
                        lead.last_payload = Some(self_payload(&self.key, pods, dependencies, lead.epoch));
                        self.probe_now(ctx);
                    }
                }
                if let Some(pods) = publish {
                    self.publish_snapshot(pods, ctx);
                }
            }
            Decision::Round(plan) => {
                if let Some(h) = lead.damper.take() {
                    ctx.cancel_future(h);
                }
                self.start_round(plan, ctx);
            }
        }
    }

    fn publish_snapshot(&mut self, pods: Pods, ctx: &mut Context<Self>) {
        let (Some(client), Some(lead)) = (self.client(), self.lead.as_mut()) else { return };
        let (addr, token, lock, prefix) = (ctx.address(), self.token, lead.lock.clone(), self.prefix.clone());
        lead.publishing = Some(AbortOnDrop(tokio::spawn(async move {
            let result = coord::publish(&client, &lock, &prefix, &pods, None).await.map(|_| pods);
            addr.do_send(Published { token, result });
        })));
    }

    fn start_round(&mut self, plan: RoundPlan, ctx: &mut Context<Self>) {
        let (Some(client), Some(lead)) = (self.client(), self.lead.as_mut()) else { return };
        lead.publishing = None;
        let model = &self.settings.model;
        let input = RoundInput {
            pods: plan.pods,
            dependencies: plan.dependencies,
            epoch: lead.epoch,
            grace: model.grace,
            sequential: model.sequential,
            full_shutdown: model.full_shutdown,
            fallback_port: self.settings.port,
        };
        tracing::info!(cluster = %self.prefix, epoch = lead.epoch, pods = input.pods.len(), reason = %plan.reason, "configuring");
        self.events.publish(Event::Round {
            phase: "started".into(),
            epoch: lead.epoch,
            pods: input.pods.len(),
            duration_ms: None,
            error: None,
            failure: None,
            code: None,
            reason: Some(plan.reason.clone()),
        });
        let fence = CoordFence::new(&client, &lead.lock, lead.active.clone());
        let (control, lock, prefix) = (self.pods.clone(), lead.lock.clone(), self.prefix.clone());
        let (addr, token) = (ctx.address(), self.token);
        let dependencies = input.dependencies.clone();
        self.spawn(async move {
            // The round runs in a task of its own so that a panic in it is reported as a failed
            // round (retried later) instead of leaving the leader `configuring` forever.
            let mut round = AbortOnDrop(tokio::spawn(async move {
                let outcome = match round::run(&control, &fence, &input).await {
                    Ok(outcome) => outcome,
                    Err(RoundError::Stale { newest, ours, keys }) => {
                        return Err(RoundFailure::Stale { newest, ours, keys });
                    }
                    Err(e) => return Err(RoundFailure::Round(e)),
                };
                // The last step of the round, fenced like the others (and by the transaction).
                let hash = state_hash(&outcome.configured, &input.dependencies);
                coord::publish(&client, &lock, &prefix, &outcome.configured, Some(&hash))
                    .await
                    .map_err(RoundFailure::Zk)?;
                Ok((outcome, hash))
            }));
            let result = (&mut round.0).await.unwrap_or_else(|e| Err(RoundFailure::Internal(e.to_string())));
            addr.do_send(RoundDone { token, dependencies, result });
        });
    }

    /// Runs the probe now (or as soon as the one running is done).
    fn probe_now(&mut self, ctx: &mut Context<Self>) {
        let Some(probe) = self.settings.model.probe.clone() else { return };
        let Some(lead) = self.lead.as_mut() else { return };
        let Some(payload) = lead.last_payload.clone() else { return };
        if lead.probe_running {
            lead.probe_again = true;
            return;
        }
        if let Some(h) = lead.probe_timer.take() {
            ctx.cancel_future(h);
        }
        lead.probe_running = true;
        // The leader itself may be out of the configured pods (dead): then the raw payload.
        let stdin = match ClusterView::from_payload(&payload) {
            Ok(view) => serde_json::to_string(&view),
            Err(_) => serde_json::to_string(&payload),
        }
        .unwrap_or_default();
        let mut vars = self.settings.ochopod_vars(None);
        vars.insert("OCHOPOD_KEY".to_string(), self.key.clone());
        vars.insert("OCHOPOD_SIZE".to_string(), payload.pods.len().to_string());
        vars.insert("OCHOPOD_EPOCH".to_string(), lead.epoch.to_string());
        vars.insert("OCHOPOD_LEADER".to_string(), "true".to_string());
        let shell = probe::shell(&self.settings, &probe, &self.env, vars, stdin);
        let (addr, token) = (ctx.address(), self.token);
        self.spawn(async move {
            let status = probe::run(shell).await;
            addr.do_send(ProbeDone { token, status });
        });
    }

    fn status(&self) -> LeaderStatus {
        let stats = &self.stats;
        let (state, status, epoch) = match &self.lead {
            Some(lead) => {
                let (state, status) = lead.planner.state(Instant::now());
                (state, status, Some(lead.epoch))
            }
            None => ("follower".to_string(), String::new(), None),
        };
        let probe = self.lead.as_ref().map(|lead| match (&self.settings.model.probe, lead.planner.probe_passing()) {
            (None, _) => health::NONE,
            (Some(_), None) => health::PENDING,
            (Some(_), Some(true)) => health::PASSING,
            (Some(_), Some(false)) => health::FAILING,
        });
        LeaderStatus {
            state,
            status,
            leader: self.lead.is_some(),
            epoch,
            probe,
            rounds_ok: stats.rounds_ok,
            rounds_failed: stats.rounds_failed,
            last_round_ms: stats.last_round_ms,
            rounds_ms_total: stats.rounds_ms_total,
            failures: stats.failures.clone(),
            refusals: stats.refusals.clone(),
        }
    }
}

fn self_payload(key: &str, pods: Pods, dependencies: BTreeMap<String, Pods>, epoch: u64) -> ControlPayload {
    ControlPayload { pods, dependencies, key: key.to_string(), epoch: Some(epoch) }
}

impl Actor for Leader {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.tasks.clear();
    }
}

/// Session changes drive everything: `Up` starts contending, `Suspended` stops every leader duty
/// at once (keeping our place in the queue), `Resumed` looks at the queue again, `Lost` forgets
/// the session and its lock node (gone with it).
impl Handler<SessionEvent> for Leader {
    type Result = ();

    fn handle(&mut self, event: SessionEvent, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        let current = self.session.as_ref().map(|s| s.generation);
        match event {
            SessionEvent::Up { generation, client, .. } => {
                if current.is_some_and(|g| generation < g) {
                    return;
                }
                self.stop_work(ctx, "new session");
                self.lock = None;
                self.contender = uuid::Uuid::new_v4().simple().to_string();
                self.prefix = client.cluster_prefix(&self.settings.namespace, &self.settings.cluster);
                self.session = Some(SessionCtx { generation, client, connected: true });
                self.contend(ctx);
            }
            SessionEvent::Suspended { generation } if current == Some(generation) => {
                self.stop_work(ctx, "session suspended");
                if let Some(s) = self.session.as_mut() {
                    s.connected = false;
                }
            }
            SessionEvent::Resumed { generation } if current == Some(generation) => {
                if let Some(s) = self.session.as_mut() {
                    if !s.connected {
                        s.connected = true;
                        self.stop_work(ctx, "session resumed");
                        self.contend(ctx);
                    }
                }
            }
            SessionEvent::Lost { generation } if current.is_some_and(|g| generation >= g) => {
                self.stop_work(ctx, "session lost");
                self.lock = None;
                self.session = None;
            }
            _ => {}
        }
    }
}

/// Run a configuration round now, even if the hash did not change (`POST /reconfigure`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), NotLeader>")]
pub struct Reconfigure;

/// `/reconfigure` on a follower: 409, naming the leader when known.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotLeader {
    /// The leader's control address `ip:port`, if it could be read.
    pub leader: Option<String>,
}

impl Handler<Reconfigure> for Leader {
    type Result = ResponseFuture<Result<(), NotLeader>>;

    fn handle(&mut self, _: Reconfigure, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(lead) = self.lead.as_mut() {
            tracing::info!(cluster = %self.prefix, "reconfiguration requested");
            let decision = lead.planner.reconfigure(Instant::now());
            self.apply(decision, ctx);
            return Box::pin(async { Ok(()) });
        }
        let client = self.client();
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let leader = match client {
                Some(c) => coord::leader_address(&c, &prefix).await,
                None => None,
            };
            Err(NotLeader { leader })
        })
    }
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "LeaderStatus")]
pub struct GetLeaderStatus;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeaderStatus {
    /// `follower`, `leader`, `leader (configuration pending)`, `leader (configuring)`.
    pub state: String,
    /// Cluster status on the leader (probe output, `* configuring N pods`…), `""` otherwise.
    pub status: String,
    pub leader: bool,
    /// The fencing epoch of the current leadership.
    pub epoch: Option<u64>,
    /// On the leader: its probe right now (`ochopod_api::health`).
    pub probe: Option<&'static str>,
    pub rounds_ok: u64,
    pub rounds_failed: u64,
    pub last_round_ms: Option<u64>,
    /// Sum of the durations of every finished round, for the metrics' average.
    pub rounds_ms_total: u64,
    /// Failed rounds by kind (`/metrics`' `reason`).
    pub failures: BTreeMap<RoundFailureKind, u64>,
    /// Rounds that failed on a pod's refusal, by the HTTP code it answered.
    pub refusals: BTreeMap<u16, u64>,
}

impl Handler<GetLeaderStatus> for Leader {
    type Result = MessageResult<GetLeaderStatus>;

    fn handle(&mut self, _: GetLeaderStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Stop leading and release every ZooKeeper handle (lock, watches, client clones) while the
/// runtime is alive; replies once released.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Leader {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.stopped = true;
        self.stop_work(ctx, "shutting down");
        let lock = self.lock.take();
        let session = self.session.take();
        Box::pin(async move {
            // Deleting our node hands the lock over at once, before the session even closes.
            if let (Some(lock), Some(s)) = (lock, session) {
                if s.connected {
                    if let Ok(Err(e)) =
                        tokio::time::timeout(RELEASE_TIMEOUT, coord::delete_lock(&s.client, &lock)).await
                    {
                        tracing::warn!(error = %e, "could not delete our lock node; it goes with the session");
                    }
                }
            }
        })
    }
}

/// A report of the contention task.
#[derive(Message)]
#[rtype(result = "()")]
struct Election {
    token: u64,
    event: ElectionEvent,
}

impl Handler<Election> for Leader {
    type Result = ();

    fn handle(&mut self, msg: Election, ctx: &mut Context<Self>) {
        if msg.token != self.token {
            return;
        }
        match msg.event {
            ElectionEvent::Queued(node) => {
                tracing::info!(node = %node.path, "contending for leadership");
                self.lock = Some(node);
            }
            ElectionEvent::Elected(node) => {
                self.lock = Some(node.clone());
                self.start_leading(node, ctx);
            }
            ElectionEvent::LockLost => {
                self.stop_work(ctx, "our lock node is gone");
                self.lock = None;
                self.contend(ctx);
            }
        }
    }
}

enum Observation {
    TookOver(Takeover),
    /// The takeover found our lock gone: we are not leader.
    Fenced,
    Local(Pods),
    /// A dependency's pods, or why its snapshot cannot be used.
    Dependency(String, Result<Option<Pods>, String>),
}

/// What the watches saw while leading.
#[derive(Message)]
#[rtype(result = "()")]
struct Observed {
    token: u64,
    what: Observation,
}

impl Handler<Observed> for Leader {
    type Result = ();

    fn handle(&mut self, msg: Observed, ctx: &mut Context<Self>) {
        if msg.token != self.token {
            return;
        }
        let Some(lead) = self.lead.as_mut() else { return };
        let now = Instant::now();
        let decision = match msg.what {
            Observation::TookOver(found) => {
                if found.epoch != lead.epoch {
                    tracing::warn!(
                        cluster = %self.prefix, lock = lead.epoch, epoch = found.epoch,
                        "the lock sequence is behind the cluster's highest epoch (coordinator/ was recreated): leading above it"
                    );
                }
                lead.epoch = found.epoch;
                tracing::info!(cluster = %self.prefix, epoch = lead.epoch, "leading");
                self.events.publish(Event::Leadership { leader: true, epoch: Some(lead.epoch) });
                if let Some(pods) = found.published {
                    lead.planner.published(pods);
                }
                lead.planner.stored_hash(found.hash, now)
            }
            Observation::Fenced => {
                self.stop_work(ctx, "our lock node is gone");
                self.lock = None;
                return self.contend(ctx);
            }
            Observation::Local(pods) => {
                tracing::debug!(pods = pods.len(), "cluster pods changed");
                let pods = self.admit(pods);
                let Some(lead) = self.lead.as_mut() else { return };
                lead.planner.local(pods, now)
            }
            Observation::Dependency(entry, Ok(pods)) => {
                tracing::debug!(dependency = %entry, pods = ?pods.as_ref().map(|p| p.len()), "dependency changed");
                lead.planner.dependency(&entry, pods, now)
            }
            Observation::Dependency(entry, Err(error)) => {
                tracing::warn!(dependency = %entry, %error, "unusable dependency snapshot: keeping its last good view");
                self.events.publish(Event::Warning { message: format!("dependency {entry}: {error}") });
                Decision::Nothing
            }
        };
        self.apply(decision, ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct RoundDone {
    token: u64,
    dependencies: BTreeMap<String, Pods>,
    result: Result<(RoundOutcome, String), RoundFailure>,
}

/// Why a round failed, as `/events`, `/metrics` and the log tell it.
#[derive(Debug, thiserror::Error)]
enum RoundFailure {
    /// Pods applied a newer epoch than ours.
    #[error("pods {} applied epoch {newest}, newer than ours ({ours})", .keys.join(", "))]
    Stale { newest: u64, ours: u64, keys: Vec<String> },
    #[error(transparent)]
    Round(RoundError),
    /// Writing `snapshot` and `hash`, the round's last step.
    #[error(transparent)]
    Zk(CoordError),
    /// After a `Stale`: the fenced write of a higher epoch failed.
    #[error("{why}; could not raise our epoch: {error}")]
    EpochNotRaised { why: String, error: CoordError },
    /// The round's task panicked or was cancelled.
    #[error("the round task failed: {0}")]
    Internal(String),
}

impl RoundFailure {
    fn kind(&self) -> RoundFailureKind {
        match self {
            RoundFailure::Stale { .. } => RoundFailureKind::Stale,
            RoundFailure::Round(e) => e.kind(),
            RoundFailure::Zk(e) | RoundFailure::EpochNotRaised { error: e, .. } if e.is_fenced() => {
                RoundFailureKind::Fenced
            }
            RoundFailure::Zk(e) | RoundFailure::EpochNotRaised { error: e, .. } => e.kind(),
            RoundFailure::Internal(_) => RoundFailureKind::Internal,
        }
    }

    /// The HTTP code of a pod's refusal.
    fn code(&self) -> Option<u16> {
        match self {
            RoundFailure::Round(e) => e.code(),
            _ => None,
        }
    }
}

impl Handler<RoundDone> for Leader {
    type Result = ();

    fn handle(&mut self, msg: RoundDone, ctx: &mut Context<Self>) {
        if msg.token != self.token {
            return;
        }
        let Some(lead) = self.lead.as_mut() else { return };
        let ms = lead.planner.round_started().map_or(0, |t| t.elapsed().as_millis() as u64);
        self.stats.last_round_ms = Some(ms);
        self.stats.rounds_ms_total += ms;
        let now = Instant::now();
        let decision = match msg.result {
            Ok((outcome, hash)) => {
                self.stats.rounds_ok += 1;
                let n = outcome.configured.len();
                tracing::info!(cluster = %self.prefix, epoch = lead.epoch, ms, "configuration complete ({n} pods alive)");
                self.events.publish(Event::Round {
                    phase: "done".into(),
                    epoch: lead.epoch,
                    pods: n,
                    duration_ms: Some(ms),
                    error: None,
                    failure: None,
                    code: None,
                    reason: None,
                });
                lead.last_payload =
                    Some(self_payload(&self.key, outcome.configured.clone(), msg.dependencies, lead.epoch));
                let result = RoundResult::Done { configured: outcome.configured, dropped: outcome.dropped, hash };
                let decision = lead.planner.round_finished(result, now);
                self.probe_now(ctx);
                // The round's requests and replies are freed: give their pages back.
                ochopod_proc::memory::release_free_memory();
                decision
            }
            Err(failure @ RoundFailure::Stale { newest, ours, .. }) if ours == lead.epoch => {
                // Either ZooKeeper lost the epoch (restored from nothing: the lock sequence
                // restarted below what pods applied) or we are a stale leader. Only the leader can
                // record a higher epoch (a write fenced by our lock node), so that write tells
                // them apart: it fails for a stale leader, which then steps down.
                let error = failure.to_string();
                self.stats.failed(&failure);
                self.events.publish(Event::Round {
                    phase: "failed".into(),
                    epoch: lead.epoch,
                    pods: 0,
                    duration_ms: Some(ms),
                    error: Some(error.clone()),
                    failure: Some(failure.kind()),
                    code: None,
                    reason: None,
                });
                let lock = lead.lock.clone();
                let Some(client) = self.client() else { return };
                let (addr, token, prefix) = (ctx.address(), self.token, self.prefix.clone());
                let epoch = newest.saturating_add(1);
                tracing::warn!(cluster = %self.prefix, %error, "raising our epoch to {epoch} if we still hold the lock");
                self.spawn(async move {
                    let raised = coord::record_epoch(&client, &lock, &prefix, epoch).await;
                    addr.do_send(EpochRaised { token, epoch, raised, why: error });
                });
                return;
            }
            Err(failure) => {
                self.round_failed(failure, ms, ctx);
                return;
            }
        };
        self.apply(decision, ctx);
    }
}

impl Leader {
    fn round_failed(&mut self, failure: RoundFailure, ms: u64, ctx: &mut Context<Self>) {
        let Some(lead) = self.lead.as_mut() else { return };
        self.stats.failed(&failure);
        let error = failure.to_string();
        self.events.publish(Event::Round {
            phase: "failed".into(),
            epoch: lead.epoch,
            pods: 0,
            duration_ms: Some(ms),
            error: Some(error.clone()),
            failure: Some(failure.kind()),
            code: failure.code(),
            reason: None,
        });
        let decision = lead.planner.round_finished(RoundResult::Failed { error: error.clone() }, Instant::now());
        if let Decision::Arm(at) = decision {
            let retry = at.saturating_duration_since(Instant::now()).as_secs_f64();
            tracing::warn!(cluster = %self.prefix, epoch = lead.epoch, %error, "configuration failed, retrying in {retry:.1} seconds");
        }
        self.apply(decision, ctx);
    }
}

/// The fenced write of a higher epoch after pods refused ours as stale.
#[derive(Message)]
#[rtype(result = "()")]
struct EpochRaised {
    token: u64,
    epoch: u64,
    raised: Result<(), CoordError>,
    why: String,
}

impl Handler<EpochRaised> for Leader {
    type Result = ();

    fn handle(&mut self, msg: EpochRaised, ctx: &mut Context<Self>) {
        if msg.token != self.token || self.lead.is_none() {
            return;
        }
        if let Err(error) = msg.raised {
            // Not the leader any more (fenced), or ZooKeeper did not answer: a failed round,
            // retried later; a fenced leader is stopped by its lock watch.
            return self.round_failed(RoundFailure::EpochNotRaised { why: msg.why, error }, 0, ctx);
        }
        let Some(lead) = self.lead.as_mut() else { return };
        tracing::warn!(cluster = %self.prefix, from = lead.epoch, to = msg.epoch, "epoch raised above what pods applied");
        lead.epoch = msg.epoch;
        self.events.publish(Event::Leadership { leader: true, epoch: Some(msg.epoch) });
        let decision = lead.planner.round_finished(RoundResult::EpochRaised, Instant::now());
        self.apply(decision, ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Published {
    token: u64,
    result: Result<Pods, CoordError>,
}

impl Handler<Published> for Leader {
    type Result = ();

    fn handle(&mut self, msg: Published, _: &mut Context<Self>) {
        if msg.token != self.token {
            return;
        }
        let Some(lead) = self.lead.as_mut() else { return };
        match msg.result {
            Ok(pods) => lead.planner.published(pods),
            Err(error) => tracing::warn!(%error, "could not republish the snapshot"),
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ProbeDone {
    token: u64,
    status: String,
}

impl Handler<ProbeDone> for Leader {
    type Result = ();

    fn handle(&mut self, msg: ProbeDone, ctx: &mut Context<Self>) {
        if msg.token != self.token {
            return;
        }
        let Some(every) = self.settings.model.probe.as_ref().map(|p| p.every) else { return };
        let Some(lead) = self.lead.as_mut() else { return };
        lead.probe_running = false;
        lead.planner.set_probe_status(msg.status);
        if std::mem::take(&mut lead.probe_again) {
            return self.probe_now(ctx);
        }
        let token = self.token;
        lead.probe_timer = Some(ctx.run_later(every, move |act, ctx| {
            if act.token == token {
                if let Some(lead) = act.lead.as_mut() {
                    lead.probe_timer = None;
                }
                act.probe_now(ctx);
            }
        }));
    }
}
