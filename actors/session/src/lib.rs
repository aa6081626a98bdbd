//! Session actor: the coordination session (ZooKeeper, or an etcd lease) and the pod's registration.
//!
//! # Theory of operation
//!
//! What follows is told for ZooKeeper, the default. On etcd ([`Session::on_etcd`]) the same actor
//! runs the same generations with a lease instead of a session (`etcd.rs`: the seq from the
//! cluster's counter key, taken in the transaction that creates the registration), and subscribers
//! get the same events with a [`Link::Etcd`]; the common vocabulary is in `link.rs`.
//!
//! [`Session`] owns the pod's one long-lived `zookeeper_client::Client` and its registration node
//! `/ochopod/clusters/<namespace>.<cluster>/pods/<uuid>.<sequence>`. Each session it establishes is
//! a *generation* (1, 2, 3…): on start, and again after every loss or [`Reset`], it connects
//! through `ochopod_zk::connect` to the target the config crate parsed and checked at load (so a
//! retry is never about bad settings), retrying with capped, jittered backoff while ZooKeeper is
//! unreachable and logging every failure. It then creates the pods dir and the persistent `hash`
//! node, registers, and sends [`SessionEvent::Up`] with a clone of the client to every subscriber.
//! Then it follows the client's state: `Disconnected` → [`SessionEvent::Suspended`], back to
//! `SyncConnected` (same session) → [`SessionEvent::Resumed`], `Expired`/`Closed`/`AuthFailed` →
//! [`SessionEvent::Lost`] and a new generation. Every spawned future and self-message carries its
//! generation, and anything from an older one is dropped. Each change is also published as
//! `Event::Session` on the event bus.
//!
//! ## The registration and its `seq`
//!
//! The JSON is written *at create*, never create-then-set (the original's window with an empty node
//! makes a leader's scan fail). It is the caller's [`ochopod_core::Registration`] with `seq` set and
//! nothing else (see [`plan::registration_json`]). `seq` is fixed for the pod's life: on
//! re-registration the node gets a new ZooKeeper sequence but the JSON keeps the first `seq`.
//!
//! The first `seq` is, as in the original, the ZooKeeper sequence of the pod's first node under
//! `pods/`, so it is unique and increasing across the cluster, Python pods included (they draw from
//! the same counter). The difficulty is that the JSON must hold the sequence before ZooKeeper has
//! assigned it. ZooKeeper names a sequential child after the count of children ever created
//! under the parent (derived from `cversion` and the number of children, since the reported
//! `cversion` also counts deletes), so the actor computes that count C and commits one multi: create `pods/<uuid>.` (sequential) with `seq: C`,
//! plus a check that `pods/<uuid>.<C>` exists. If another pod touched `pods/` in between, the node
//! got a different name, the check fails and ZooKeeper rolls back the whole multi, so no reader
//! ever sees it; the actor reads C again and retries. Rejected alternatives: create then set
//! (the original race); a separate counter node (its values would collide with Python pods' seqs
//! in a mixed cluster); a throw-away "ticket" node under `pods/` (every leader, Python ones too,
//! would read it as a pod).
//!
//! ## Closing
//!
//! [`Shutdown`] closes the session while the runtime is alive: it tells subscribers `Lost` (and
//! waits, bounded, for them to handle it, so they drop their clones), deletes the registration,
//! drops its own client, and waits up to 3 s for the state to reach `Closed` before replying and
//! stopping. No `Client` clone stays in the actor or its futures afterwards, which avoids the
//! `no spawner` panic of dropping zookeeper-client objects during runtime shutdown and lets peers
//! see the pod leave at once rather than after the session timeout. [`Reset`] does the same to the
//! current generation (without waiting) and starts the next one.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use ochopod_core::events::{Event, EventBus};
use ochopod_core::{paths, Registration};
use serde::Serialize;
use tracing::Instrument;
mod etcd;
pub mod link;
pub mod plan;
mod zk;

pub use link::{Link, LinkState};

use plan::{Backoff, Phase, Transition};

/// Emitted to every subscriber (`Recipient<SessionEvent>`, wired in `run.rs`). Each session
/// gets a new, increasing `generation`; subscribers drop events of older generations.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SessionEvent {
    /// Connected and registered. `client` (the backend's session) is valid for this generation
    /// only; `node` is the full path (or key) of the pod's registration; `seq` is the pod's
    /// life-long sequence.
    Up { generation: u64, client: Link, seq: u64, node: String },
    /// Connection lost; the session may still come back. Leader duties must stop now.
    Suspended { generation: u64 },
    /// Reconnected within the same session (ephemerals and watches kept).
    Resumed { generation: u64 },
    /// The session is gone (expired, closed, reset). A new `Up` follows unless shutting down.
    Lost { generation: u64 },
}

/// Errors of one attempt to establish a generation; all are logged and retried with backoff.
/// None is about the settings: the target was checked at load, so retrying can succeed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Connecting or a call (named, with its path) failed or timed out.
    #[error(transparent)]
    Zk(#[from] ochopod_zk::ZkError),
    /// The same, on etcd.
    #[error(transparent)]
    Etcd(ochopod_etcd::EtcdError),
    #[error("cannot take a sequence under {dir}: {reason}")]
    Sequence { dir: String, reason: String },
    #[error("cannot serialise the registration: {0}")]
    Json(#[from] serde_json::Error),
}

/// How long `Shutdown` waits for the client to report `Closed`.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How long `Shutdown` waits for each subscriber to handle `Lost` (and drop its client clone).
const SUBSCRIBER_WAIT: Duration = Duration::from_secs(1);
const RETRY_INITIAL: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub struct Session {
    params: link::Params,
    /// Namespace and cluster, to place the keys of another backend ([`Session::on_etcd`]).
    names: (String, String),
    events: EventBus,
    subscribers: Vec<Recipient<SessionEvent>>,
    span: tracing::Span,
    /// The generation being established or live; futures and self-messages of others are stale.
    generation: u64,
    phase: Phase,
    /// Whether `Up` went out for `generation`, so `Lost` is only sent for a session subscribers saw.
    announced: bool,
    /// Set by the first registration, then reused for the pod's whole life.
    seq: Option<u64>,
    node: Option<String>,
    /// The actor's only client; taken out (and so dropped) on loss, reset and shutdown.
    client: Option<Link>,
    /// The connect-and-register future; cancelled on reset/shutdown so the client it may hold
    /// dies with it.
    establishing: Option<SpawnHandle>,
    /// The loop turning client state changes into `StateChanged` self-messages.
    watching: Option<SpawnHandle>,
    shutting_down: bool,
}

impl Session {
    pub fn new(
        zk: ochopod_config::ZkSettings,
        namespace: String,
        cluster: String,
        key: String,
        registration: Registration,
        events: EventBus,
        subscribers: Vec<Recipient<SessionEvent>>,
    ) -> Self {
        let span = tracing::info_span!("session", cluster = %paths::cluster_name(&namespace, &cluster), pod = %key);
        let params = Arc::new(zk::Params {
            target: zk.target,
            session_timeout: zk.session_timeout,
            // Registration takes a few round trips; waiting longer than this means the
            // connection is gone and a fresh attempt is the faster way out.
            op_timeout: zk.session_timeout.clamp(Duration::from_secs(2), Duration::from_secs(5)),
            prefix: paths::cluster_prefix(&namespace, &cluster),
            key,
            registration,
        });
        Session {
            params: link::Params::Zk(params),
            names: (namespace, cluster),
            events,
            subscribers,
            span,
            generation: 0,
            phase: Phase::Connecting,
            announced: false,
            seq: None,
            node: None,
            client: None,
            establishing: None,
            watching: None,
            shutting_down: false,
        }
    }

    /// Coordinate through etcd instead of ZooKeeper: a lease instead of a session, the same
    /// events, the same registration under `<prefix>/clusters/<namespace>.<cluster>/pods/`.
    pub fn on_etcd(mut self, etcd: ochopod_config::EtcdSettings) -> Self {
        let link::Params::Zk(zk) = &self.params else { return self };
        let (namespace, cluster) = self.names.clone();
        self.params = link::Params::Etcd(Arc::new(etcd::Params {
            prefix: ochopod_etcd::keys::cluster_prefix(&etcd.target.prefix, &namespace, &cluster),
            target: etcd.target,
            lease_ttl: etcd.lease_ttl,
            op_timeout: zk.op_timeout,
            key: zk.key.clone(),
            registration: zk.registration.clone(),
        }));
        self
    }

    fn publish(&self, state: &str) {
        self.events.publish(Event::Session { state: state.to_string(), generation: self.generation });
    }

    fn tell(&self, event: SessionEvent) {
        for s in &self.subscribers {
            s.do_send(event.clone());
        }
    }

    fn cancel_futures(&mut self, ctx: &mut Context<Self>) {
        for handle in [self.establishing.take(), self.watching.take()].into_iter().flatten() {
            ctx.cancel_future(handle);
        }
    }

    /// Starts generation `generation + 1`. `retire` is the previous generation's client and node:
    /// the node is deleted first so peers see the old registration go before the new one comes.
    fn establish(&mut self, ctx: &mut Context<Self>, retire: Option<(Link, Option<String>)>) {
        self.generation += 1;
        self.phase = Phase::Connecting;
        self.announced = false;
        let generation = self.generation;
        let params = self.params.clone();
        let seq = self.seq;
        let fut = async move {
            if let Some((client, node)) = retire {
                if let Some(node) = node {
                    client.delete(&node, params.op_timeout()).await;
                }
                client.retire(params.op_timeout()).await;
            }
            let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
            loop {
                match params.establish(seq).await {
                    Ok(registered) => return registered,
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(generation, error = %e, retry_in_ms = delay.as_millis() as u64, "{} session not established", params.backend());
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        .instrument(self.span.clone());
        let handle = ctx.spawn(fut.into_actor(self).map(move |registered, act, ctx| {
            act.registered(ctx, generation, registered);
        }));
        self.establishing = Some(handle);
    }

    fn registered(&mut self, ctx: &mut Context<Self>, generation: u64, r: link::Registered) {
        if generation != self.generation || self.shutting_down {
            return; // dropping `r` closes that session and its node with it
        }
        let _enter = self.span.clone().entered();
        self.establishing = None;
        let seq = *self.seq.get_or_insert(r.seq);
        self.node = Some(r.node.clone());
        self.phase = Phase::Connected;
        self.announced = true;
        tracing::info!(generation, seq, node = %r.node, session = %r.link.session_id(), "registered");
        self.tell(SessionEvent::Up { generation, client: r.link.clone(), seq, node: r.node });
        self.publish(Phase::Connected.as_str());
        self.client = Some(r.link);

        let mut states = r.states;
        let me = ctx.address().downgrade();
        let watch = async move {
            loop {
                let state = states.changed().await;
                let Some(me) = me.upgrade() else { break };
                me.do_send(StateChanged { generation, state });
                if state.is_terminal() {
                    break;
                }
            }
        };
        self.watching = Some(ctx.spawn(watch.into_actor(self)));
    }

    /// The current generation ended by itself (expired, closed, auth failed).
    fn lost(&mut self, ctx: &mut Context<Self>, expired: bool) {
        self.cancel_futures(ctx);
        self.client = None;
        self.node = None;
        self.phase = if expired { Phase::Expired } else { Phase::Closed };
        tracing::warn!(
            generation = self.generation,
            state = self.phase.as_str(),
            "{} session lost",
            self.params.backend()
        );
        if self.announced {
            self.tell(SessionEvent::Lost { generation: self.generation });
        }
        self.publish(self.phase.as_str());
        if !self.shutting_down {
            self.establish(ctx, None);
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(parent: &self.span, target = %self.params.target(), "connecting to {}", self.params.backend());
        self.establish(ctx, None);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::info!(parent: &self.span, generation = self.generation, "session actor stopped");
    }
}

/// A state change of generation `generation`'s client.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct StateChanged {
    generation: u64,
    state: LinkState,
}

impl Handler<StateChanged> for Session {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, ctx: &mut Self::Context) {
        if msg.generation != self.generation || self.shutting_down {
            return;
        }
        let _enter = self.span.clone().entered();
        match self.phase.on_state(msg.state) {
            Transition::Suspend => {
                self.phase = Phase::Suspended;
                tracing::warn!(generation = msg.generation, state = ?msg.state, "{} connection lost; session may come back", self.params.backend());
                self.tell(SessionEvent::Suspended { generation: msg.generation });
                self.publish(Phase::Suspended.as_str());
            }
            Transition::Resume => {
                self.phase = Phase::Connected;
                tracing::info!(
                    generation = msg.generation,
                    "{} connection back within the same session",
                    self.params.backend()
                );
                self.tell(SessionEvent::Resumed { generation: msg.generation });
                self.publish(Phase::Connected.as_str());
            }
            Transition::Lose { expired } => self.lost(ctx, expired),
            Transition::Nothing => {}
        }
    }
}

/// Drop the session and register again with a new one (same uuid and seq); the process is
/// untouched. Backs `/reset`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Reset;

impl Handler<Reset> for Session {
    type Result = ();

    fn handle(&mut self, _: Reset, ctx: &mut Self::Context) {
        if self.shutting_down {
            return;
        }
        let _enter = self.span.clone().entered();
        tracing::info!(generation = self.generation, "resetting the {} session", self.params.backend());
        self.cancel_futures(ctx);
        let retire = self.client.take().map(|c| (c, self.node.take()));
        self.node = None;
        self.phase = Phase::Closed;
        if self.announced {
            self.tell(SessionEvent::Lost { generation: self.generation });
        }
        self.publish(Phase::Closed.as_str());
        self.establish(ctx, retire);
    }
}

/// Close the session while the runtime is alive, so peers see the pod leave at once; replies
/// once closed (or after a short timeout).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Session {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let first = !self.shutting_down;
        self.shutting_down = true;
        self.cancel_futures(ctx);
        let generation = self.generation;
        let client = self.client.take();
        let node = self.node.take();
        let was = self.phase;
        self.phase = Phase::Closed;
        let subscribers = if self.announced { self.subscribers.clone() } else { Vec::new() };
        self.announced = false;
        let op_timeout = self.params.op_timeout();
        let backend = self.params.backend();
        if first {
            tracing::info!(parent: &self.span, generation, state = was.as_str(), "closing the {} session", self.params.backend());
        }
        let fut = async move {
            // Subscribers hold clones of the client; the session only closes once every clone is
            // gone, so they hear `Lost` (and drop theirs) before ours goes.
            for s in subscribers {
                if tokio::time::timeout(SUBSCRIBER_WAIT, s.send(SessionEvent::Lost { generation })).await.is_err() {
                    tracing::warn!("a subscriber did not handle Lost in time; the session may close late");
                }
            }
            let Some(client) = client else { return };
            // Deleting explicitly makes the node go even if some clone keeps the session open.
            if let Some(node) = node {
                client.delete(&node, op_timeout).await;
            }
            match client.close(CLOSE_WAIT).await {
                Some(state) => tracing::info!(%state, "{backend} session closed"),
                None => tracing::warn!("{backend} session not closed within {CLOSE_WAIT:?}; it will expire"),
            }
        }
        .instrument(self.span.clone());
        Box::pin(fut.into_actor(self).map(move |(), act, ctx| {
            if first {
                act.publish(Phase::Closed.as_str());
            }
            ctx.stop();
        }))
    }
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "SessionStatus")]
pub struct GetSessionStatus;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionStatus {
    /// `connecting`, `connected`, `suspended`, `expired`, `closed`.
    pub state: String,
    pub generation: u64,
    pub seq: Option<u64>,
    pub node: Option<String>,
}

impl Handler<GetSessionStatus> for Session {
    type Result = MessageResult<GetSessionStatus>;

    fn handle(&mut self, _: GetSessionStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(SessionStatus {
            state: self.phase.as_str().to_string(),
            generation: self.generation,
            seq: self.seq,
            node: self.node.clone(),
        })
    }
}
