//! Control actor: the pod's HTTP control API (actix-web), wire-compatible with the original.
//!
//! Theory of operation: this crate owns no pod state. Every route translates one HTTP request
//! into one message to the actor that owns the answer, and the answer back into HTTP:
//!
//! | route | message | recipient |
//! |---|---|---|
//! | `POST /control/<task>[/<timeout>]` | `Command` | executor |
//! | `GET/POST /info`, `/metrics` | `GetStatus`, `GetLeaderStatus`, `GetSessionStatus` | all three |
//! | `POST /reset` | `Reset` | session |
//! | `POST /reconfigure` | `Reconfigure` | leader |
//! | `GET/POST /log` | — (reads the shared [`LogRing`]) | |
//! | `GET/POST /events` | — (subscribes to the [`EventBus`]) | |
//!
//! The other actors are held as `Recipient`s (see [`Actors`]), so tests substitute probe actors
//! and this crate depends only on their message types. Read-only routes never hang: each status
//! query is bounded by [`ControlState::query_timeout`] and `/info` answers with what is known.
//! A control command is sent from a detached task, so that when the HTTP timeout (408) fires the
//! command stays queued and still runs, as in the original (actix drops a message whose
//! requester went away, so awaiting it in the handler alone would cancel it). An executor that
//! is gone (the pod is shutting down) answers 410, like the original's dead actor, so a leader
//! drops the pod from its round.
//!
//! Mutating routes (`/control/*`, `/reset`, `/reconfigure`) require `Authorization: Bearer
//! <token>` when a token is configured; reads require it only with `protect_reads`. Every error
//! is a JSON [`ochopod_api::ErrorBody`]: unknown routes (404), wrong methods (405), malformed JSON
//! (400 naming the parser's message), oversized bodies on mutating routes (413; read-only
//! routes never buffer a body, they ignore it as the original did). The reply mapping
//! ([`reply::control_reply`]), the `/info` assembly ([`info::build_info`]) and the Prometheus
//! rendering ([`metrics::render`]) are plain functions, unit-tested without a server.
//!
//! [`serve`] runs the routes of [`configure`] on a listener the caller bound (port 0 in tests),
//! with optional TLS (rustls, ring provider). It never installs signal handlers: the binary owns
//! SIGTERM and stops the returned [`actix_web::dev::Server`] first in its shutdown order.

mod auth;
pub mod error;
pub mod info;
pub mod metrics;
pub mod reply;
mod routes;
mod sse;
pub mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use actix_web::{web, App, HttpServer};
use ochopod_config::{ControlSettings, Secret};
use ochopod_core::events::EventBus;
use ochopod_core::logring::LogRing;
use ochopod_core::Registration;
use ochopod_executor::{Command, GetStatus};
use ochopod_leader::{GetLeaderStatus, Reconfigure};
use ochopod_session::{GetSessionStatus, Reset};

pub use error::ControlError;
pub use routes::configure;

/// Default body limit when none is configured: a leader payload for a few hundred pods.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Open `/events` streams at most: each holds a connection (a file descriptor) for as long as
/// the client likes; past this a new one gets 503 and `/info` keeps answering.
pub const MAX_EVENT_STREAMS: usize = 64;
/// `/log` replies being built or sent at once: each holds a copy of the ring until the client
/// has read it, so slow readers are bounded to this many copies; more get 503.
pub const MAX_LOG_READERS: usize = 4;
/// Connections the server holds at once (each a file descriptor; the usual limit is 1024).
pub const MAX_CONNECTIONS: usize = 256;

/// The messages the control API sends, wired once in `run.rs`.
#[derive(Clone)]
pub struct Actors {
    pub executor: Recipient<Command>,
    pub executor_status: Recipient<GetStatus>,
    pub leader_status: Recipient<GetLeaderStatus>,
    pub reconfigure: Recipient<Reconfigure>,
    pub session_status: Recipient<GetSessionStatus>,
    pub reset: Recipient<Reset>,
}

/// Everything the routes read; shared by every worker as `web::Data<ControlState>`.
pub struct ControlState {
    pub executor: Recipient<Command>,
    pub executor_status: Recipient<GetStatus>,
    pub leader_status: Recipient<GetLeaderStatus>,
    pub reconfigure: Recipient<Reconfigure>,
    pub session_status: Recipient<GetSessionStatus>,
    pub reset: Recipient<Reset>,
    /// The static part of the registration: ip, public, node, ports, port, application, task,
    /// cluster, namespace (`seq` comes live from the session).
    pub identity: Registration,
    /// The `depends_on` entries as declared.
    pub dependencies: Vec<String>,
    pub log: LogRing,
    pub events: EventBus,
    pub token: Option<Secret>,
    pub protect_reads: bool,
    pub body_limit: usize,
    pub started: Instant,
    /// Bound on each status query, so `/info` and `/metrics` answer even if an actor is stuck.
    pub query_timeout: Duration,
    /// Comment lines on `/events` at this period keep proxies from closing an idle stream and
    /// let the server notice a client that went away.
    pub sse_keepalive: Duration,
    /// Open `/events` streams, for `/metrics` (and for tests to see a stream end).
    sse_clients: Arc<AtomicUsize>,
    /// Permits for the `/log` replies in flight ([`MAX_LOG_READERS`]).
    pub log_readers: Arc<tokio::sync::Semaphore>,
}

impl ControlState {
    pub fn new(
        actors: Actors,
        identity: Registration,
        dependencies: Vec<String>,
        log: LogRing,
        events: EventBus,
        settings: &ControlSettings,
    ) -> Self {
        let Actors { executor, executor_status, leader_status, reconfigure, session_status, reset } = actors;
        ControlState {
            executor,
            executor_status,
            leader_status,
            reconfigure,
            session_status,
            reset,
            identity,
            dependencies,
            log,
            events,
            token: settings.token.clone(),
            protect_reads: settings.protect_reads,
            body_limit: if settings.body_limit == 0 { DEFAULT_BODY_LIMIT } else { settings.body_limit },
            started: Instant::now(),
            query_timeout: Duration::from_secs(1),
            sse_keepalive: Duration::from_secs(15),
            sse_clients: Arc::new(AtomicUsize::new(0)),
            log_readers: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_READERS)),
        }
    }

    /// How many `/events` streams are open right now.
    pub fn sse_clients(&self) -> usize {
        self.sse_clients.load(Ordering::Relaxed)
    }

    /// A handle on the same counter, readable after the state moved into the server.
    pub fn sse_counter(&self) -> Arc<AtomicUsize> {
        self.sse_clients.clone()
    }
}

/// Serve [`configure`]'s routes on `listener` (already bound by the caller), over TLS when
/// `tls` is set. The returned server runs once awaited or spawned; stop it with its handle.
pub fn serve(
    listener: std::net::TcpListener,
    state: ControlState,
    tls: Option<&ochopod_config::Tls>,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        // One worker serves a control API well past 20,000 req/s; each extra worker is another
        // thread, another runtime and a timer that wakes an idle pod several times a second.
        .workers(1)
        .max_connections(MAX_CONNECTIONS)
        // The binary owns SIGTERM/SIGINT and stops this server first in its shutdown order.
        .disable_signals()
        // In-flight control commands keep running in the executor; no need to hold the port.
        .shutdown_timeout(2);
    let server = match tls {
        Some(tls) => {
            let config = tls::server_config(tls).map_err(std::io::Error::other)?;
            server.listen_rustls_0_23(listener, config)?
        }
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
