//! `ochopod run`: wires the actors once and owns the shutdown order.
//!
//! Wiring: the session tells the leader about sessions (`Recipient<SessionEvent>`); the control
//! server holds recipients for the executor, the leader and the session; nothing else knows about
//! anything else. The leader reaches every pod, itself included, over HTTP like the original.
//!
//! Shutdown (SIGTERM/SIGINT, the only signals we own): stop accepting control requests → tear
//! the child down with its grace (and `tear_down` to its end) → `finalize` → release the
//! leader's lock and watches → end whatever the pod still runs (a daemon the child detached, a
//! hook's background job, the probe) → close the ZooKeeper session while the runtime is alive
//! (peers fail over at once instead of waiting for the session to expire) → exit 0.
//!
//! Dying any other way (SIGKILL, an abort) runs none of this: when ochopod is not PID 1 a keeper
//! process, started first, ends what it left (see `ochopod_proc::keeper`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ochopod_api::PodClient;
use ochopod_control::{serve, Actors, ControlState};
use ochopod_core::events::EventBus;
use ochopod_core::logring::LogRing;
use ochopod_executor::Executor;
use ochopod_leader::Leader;
use ochopod_session::Session;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{LogFormat, RunArgs};

pub fn main(args: RunArgs, verbose: u8, format: LogFormat) -> ExitCode {
    let env = ochopod_config::process_env();
    let settings = match ochopod_config::load(&args.pod, &env) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("ochopod: {e}");
            return ExitCode::from(2);
        }
    };
    let ring = LogRing::new(settings.control.log_lines);
    crate::logging::init(verbose, settings.debug, format, ring.clone());
    keep();
    ochopod_proc::reaper::install();

    actix::System::new().block_on(run(settings, ring))
}

/// Mark everything this run will start with a fresh cookie and, unless we are PID 1 (whose
/// death ends the PID namespace), start the keeper that ends it all if we die without a
/// shutdown. Before anything is spawned.
fn keep() {
    use ochopod_proc::{keeper, tree};
    let cookie = match tree::new_cookie() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no run cookie: what the pod starts cannot be found once re-parented");
            return;
        }
    };
    tree::set_cookie(cookie.clone());
    if nix::unistd::getpid().as_raw() == 1 {
        return;
    }
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("/proc/self/exe"));
    match keeper::start(&exe, &cookie) {
        Ok(pid) => tracing::debug!(pid, "keeper started"),
        Err(e) => tracing::warn!(error = %e, "cannot start the keeper: if ochopod is killed, its children outlive it"),
    }
}

/// How long the executor's shutdown may take: the command in progress (a hook, or a stop with
/// its `tear_down` and grace), then the stop (grace and `tear_down` run side by side, and the
/// stop ends when both are over), then `finalize`, each hook bounded by its own timeout, plus a
/// margin for collecting killed groups. Past it the executor is stuck and the sweep ends it all.
fn executor_bound(settings: &ochopod_config::Settings) -> Duration {
    let h = &settings.hooks;
    let timeout = |hook: &Option<ochopod_config::Hook>| hook.as_ref().map(|h| h.timeout).unwrap_or_default();
    let grace = settings.process.as_ref().map(|p| p.grace).unwrap_or_default();
    let stop = grace.max(timeout(&h.tear_down));
    let in_progress = [&h.initialize, &h.can_configure, &h.configured, &h.signaled]
        .into_iter()
        .map(timeout)
        .max()
        .unwrap_or_default()
        .max(stop);
    in_progress + stop + timeout(&h.finalize) + Duration::from_secs(15)
}

/// After the executor's `SIGTERM`, how long leftovers get before `SIGKILL`.
const SWEEP_GRACE: Duration = Duration::from_secs(2);

async fn run(settings: Arc<ochopod_config::Settings>, ring: LogRing) -> ExitCode {
    // The handlers come first: as PID 1 an unhandled SIGTERM is ignored by the kernel, and
    // resolving the platform may wait on a metadata service.
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install the SIGTERM/SIGINT handlers");
        return ExitCode::from(1);
    };
    let stop = async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    };
    tokio::pin!(stop);

    // Where the pod runs, from its platform; missing platform data stops the pod here, before
    // anything touches ZooKeeper.
    let platform = ochopod_bindings::Platform::from_process();
    let resolved = tokio::select! {
        resolved = ochopod_bindings::resolve(&settings, &platform) => resolved,
        why = &mut stop => {
            tracing::info!(signal = why, "stopped before starting");
            return ExitCode::SUCCESS;
        }
    };
    let mut placement = match resolved {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ochopod: {e}");
            return ExitCode::from(2);
        }
    };
    // The platform may say where ZooKeeper is (Mesos agents do) when the environment did not.
    let settings = match &placement.zk {
        Some(zk) => Arc::new(ochopod_config::Settings { zk: zk.clone(), ..(*settings).clone() }),
        None => settings,
    };
    // On etcd the registration names the etcd target (without credentials), as it is registered.
    if let ochopod_config::Coordination::Etcd(etcd) = &settings.coordination {
        placement.registration.zk = etcd.target.registered();
    }
    let key = uuid::Uuid::new_v4().to_string();
    let address = placement.registration.control_address(settings.port).unwrap_or_else(|| placement.listen.to_string());
    let cluster = ochopod_core::paths::cluster_name(&settings.namespace, &settings.cluster);
    tracing::info!(%cluster, pod = %key, %address, binding = %placement.binding, zk = %placement.registration.zk, "starting");

    // Bind before anything touches ZooKeeper: a pod that cannot serve its control API must not
    // register, or the leader's rounds would fail on it.
    let listener = match std::net::TcpListener::bind(placement.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %placement.listen, error = %e, "cannot bind the control port");
            return ExitCode::from(1);
        }
    };

    let events = EventBus::default();
    let token = settings.control.token.as_ref().map(|t| t.0.clone());
    // A pod that serves TLS is in a TLS cluster: as leader it talks HTTPS to every peer.
    let pods = match &settings.control.tls {
        None => PodClient::new(token),
        Some(tls) => match PodClient::with_tls(token, tls.roots()) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!("control.tls: {e}");
                eprintln!("ochopod: control.tls: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let executor = Executor::new(settings.clone(), events.clone()).start();
    let leader = Leader::new(settings.clone(), key.clone(), address, pods, events.clone()).start();
    let session = Session::new(
        settings.zk.clone(),
        settings.namespace.clone(),
        settings.cluster.clone(),
        key,
        placement.registration.clone(),
        events.clone(),
        vec![leader.clone().recipient()],
    );
    let session = match &settings.coordination {
        ochopod_config::Coordination::ZooKeeper => session,
        ochopod_config::Coordination::Etcd(etcd) => session.on_etcd(etcd.clone()),
    }
    .start();

    let actors = Actors {
        executor: executor.clone().recipient(),
        executor_status: executor.clone().recipient(),
        leader_status: leader.clone().recipient(),
        reconfigure: leader.clone().recipient(),
        session_status: session.clone().recipient(),
        reset: session.clone().recipient(),
    };
    let dependencies = settings.model.depends_on.clone();
    let state = ControlState::new(actors, placement.registration, dependencies, ring, events, &settings.control);
    // From here on every exit goes through the shutdown order: the actors have started.
    let (code, handle) = match serve(listener, state, settings.control.tls.as_ref()) {
        Ok(server) => {
            let handle = server.handle();
            actix::spawn(server);
            let why = stop.await;
            tracing::info!(signal = why, "shutting down");
            (ExitCode::SUCCESS, Some(handle))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the control server");
            (ExitCode::from(1), None)
        }
    };
    let started = Instant::now();
    if let Some(handle) = handle {
        handle.stop(true).await;
    }
    // The executor waits out the grace and every hook itself; the bound only guards a stuck one.
    let bound = executor_bound(&settings);
    if tokio::time::timeout(bound, executor.send(ochopod_executor::Shutdown)).await.is_err() {
        tracing::warn!(bound_ms = bound.as_millis() as u64, "the executor did not finish its shutdown in time");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), leader.send(ochopod_leader::Shutdown)).await;
    // Before the session closes: peers must not fail over while something of ours still runs.
    let spare: Vec<i32> = ochopod_proc::keeper::pid().map(|p| p as i32).into_iter().collect();
    let swept = ochopod_proc::tree::sweep(ochopod_proc::tree::cookie(), &spare, SWEEP_GRACE).await;
    if !swept.found.is_empty() {
        tracing::warn!(
            found = ?swept.found,
            killed = ?swept.killed,
            survivors = ?swept.survivors,
            "ended processes the pod had left running"
        );
    }
    // Generous: the session tells its subscribers, deletes its node (bounded by its operation
    // timeout when ZooKeeper is slow) and waits for the close. Returning before it is done would
    // drop the client after the runtime stops: no close, and peers wait for the session to expire.
    let session_bound = settings.zk.session_timeout.max(Duration::from_secs(5)) + Duration::from_secs(5);
    if tokio::time::timeout(session_bound, session.send(ochopod_session::Shutdown)).await.is_err() {
        tracing::warn!("the ZooKeeper session did not close in time");
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    System::current().stop();
    code
}
