//! One configuration round (DESIGN §4), over two small traits so that a unit test can fake the
//! pods' HTTP replies and the lock ownership:
//!
//! 1. `check` every pod: 410 (dead) pods are dropped, 409 (the pod applied a newer epoch than
//!    ours) ends the round with [`RoundError::Stale`], any other reply or no reply aborts;
//! 2. `off` every live pod if `full_shutdown` (replies only logged);
//! 3. `on` every live pod, in parallel or one at a time in sorted-key order: all must answer 200;
//! 4. `ok` every live pod, waiting for the replies (as the original does, so `configured` hooks
//!    have run when the caller writes `snapshot` and `hash`); failures are only logged.
//!
//! Every pod gets the same pods and dependencies, its own `key` and the round's `epoch`. Before
//! each phase (and before each pod when sequential) the [`Fence`] is asked whether we still hold
//! the lock in the current session: a leader that lost it must not push configuration.
//! Writing `snapshot` and `hash` is the caller's job (it needs ZooKeeper).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use ochopod_api::wire::status;
use ochopod_api::{Bytes, ClientError, Task};
use ochopod_core::events::RoundFailureKind;
use ochopod_core::view::Pods;

/// A pod's reply to a control request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    /// With a 409: the newest epoch the pod applied (its reply's `newest`).
    pub newest: Option<u64>,
}

impl Answer {
    pub fn code(code: u16) -> Self {
        Answer { code, newest: None }
    }
}

/// Why a control request got no answer the round can read; each names the address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("{address}: unreachable ({reason})")]
    Unreachable { address: String, reason: String },
    #[error("{address}: no reply within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("{address}: unexpected reply ({reason})")]
    BadReply { address: String, reason: String },
    #[error("{address}: reply larger than {limit} bytes")]
    TooLarge { address: String, limit: usize },
}

impl From<ClientError> for SendError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { address, source } => {
                SendError::Unreachable { address, reason: source.to_string() }
            }
            ClientError::Timeout { address, timeout } => SendError::Timeout { address, timeout },
            ClientError::BadReply { address, source } => SendError::BadReply { address, reason: source.to_string() },
            ClientError::TooLarge { address, limit } => SendError::TooLarge { address, limit },
        }
    }
}

impl SendError {
    pub fn kind(&self) -> RoundFailureKind {
        match self {
            SendError::Unreachable { .. } => RoundFailureKind::Unreachable,
            SendError::Timeout { .. } => RoundFailureKind::Timeout,
            SendError::BadReply { .. } => RoundFailureKind::BadReply,
            SendError::TooLarge { .. } => RoundFailureKind::TooLarge,
        }
    }
}

/// Sends one control request with its payload (an [`ochopod_core::ControlPayload`] serialised as JSON);
/// `Ok(answer)` or why there was no answer.
pub trait Control: Send + Sync {
    fn control(
        &self,
        address: String,
        task: Task,
        grace: Duration,
        payload: Bytes,
    ) -> impl Future<Output = Result<Answer, SendError>> + Send + 'static;
}

impl Control for ochopod_api::PodClient {
    fn control(
        &self,
        address: String,
        task: Task,
        grace: Duration,
        payload: Bytes,
    ) -> impl Future<Output = Result<Answer, SendError>> + Send + 'static {
        let client = self.clone();
        async move {
            let reply = client.control_serialized(&address, task, grace, payload).await?;
            let newest = (reply.code == 409).then(|| reply.body.get("newest").and_then(|n| n.as_u64())).flatten();
            Ok(Answer { code: reply.code, newest })
        }
    }
}

/// Whether we may still act as leader (lock held, session connected, same generation).
pub trait Fence: Send + Sync {
    fn holds(&self) -> impl Future<Output = bool> + Send;
}

#[derive(Clone, Debug)]
pub struct RoundInput {
    pub pods: Pods,
    pub dependencies: BTreeMap<String, Pods>,
    pub epoch: u64,
    pub grace: Duration,
    pub sequential: bool,
    pub full_shutdown: bool,
    /// The control port of pods that registered without one (ours).
    pub fallback_port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RoundOutcome {
    /// The live pods that accepted `on`.
    pub configured: Pods,
    /// Keys that answered 410 to `check`.
    pub dropped: Vec<String>,
}

/// Why one pod failed a phase.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    /// It answered, with a code the phase does not accept.
    #[error("answered {0}")]
    Answered(u16),
    #[error(transparent)]
    NoAnswer(#[from] SendError),
}

impl PodError {
    pub fn kind(&self) -> RoundFailureKind {
        match self {
            PodError::Answered(status::HOOK_FAILURE) => RoundFailureKind::HookFailed,
            PodError::Answered(_) => RoundFailureKind::Refused,
            PodError::NoAnswer(e) => e.kind(),
        }
    }

    /// The HTTP code of a refusal.
    pub fn code(&self) -> Option<u16> {
        match self {
            PodError::Answered(code) => Some(*code),
            PodError::NoAnswer(_) => None,
        }
    }
}

/// One pod that did not answer 200.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFailure {
    pub key: String,
    pub address: String,
    pub error: PodError,
}

impl std::fmt::Display for PodFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {} ({}): {}", self.key, self.address, self.error)
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RoundError {
    #[error("no longer leader before `{0}`: round abandoned")]
    Fenced(Task),
    #[error("pod {key} does not expose its control port (registration has no host port for it)")]
    NoControlPort { key: String },
    #[error("{} pod(s) failed the `{task}` phase: {}", .failures.len(), join(.failures))]
    Failed { task: Task, failures: Vec<PodFailure> },
    /// Pods applied a newer epoch than ours: our epoch is behind (ZooKeeper lost its data, or
    /// `coordinator/` was reset) or we are a stale leader. The caller tells them apart by a
    /// fenced write.
    #[error("pods {} already applied epoch {newest}, newer than ours ({ours})", .keys.join(", "))]
    Stale { newest: u64, ours: u64, keys: Vec<String> },
}

impl RoundError {
    /// What kind of failure this is, for `/events` and `/metrics`: a phase that several pods
    /// failed is named after the first of them (in key order).
    pub fn kind(&self) -> RoundFailureKind {
        match self {
            RoundError::Fenced(_) => RoundFailureKind::Fenced,
            RoundError::NoControlPort { .. } => RoundFailureKind::NoControlPort,
            RoundError::Failed { failures, .. } => {
                failures.first().map_or(RoundFailureKind::Refused, |f| f.error.kind())
            }
            RoundError::Stale { .. } => RoundFailureKind::Stale,
        }
    }

    /// The HTTP code of the first refusal, if the round failed on one.
    pub fn code(&self) -> Option<u16> {
        match self {
            RoundError::Failed { failures, .. } => failures.first().and_then(|f| f.error.code()),
            _ => None,
        }
    }
}

fn join(failures: &[PodFailure]) -> String {
    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

struct Target {
    key: String,
    address: String,
}

pub async fn run<C: Control, F: Fence>(control: &C, fence: &F, input: &RoundInput) -> Result<RoundOutcome, RoundError> {
    let mut targets = Vec::with_capacity(input.pods.len());
    for (key, registration) in &input.pods {
        let address = registration
            .control_address(input.fallback_port)
            .ok_or_else(|| RoundError::NoControlPort { key: key.clone() })?;
        targets.push(Target { key: key.clone(), address });
    }

    // `can_configure` sees every registered pod, dead ones included (as in the original).
    let checks = phase(control, fence, input, &input.pods, &targets, Task::Check).await?;
    let mut dropped = Vec::new();
    let mut failures = Vec::new();
    let mut stale: Option<(u64, Vec<String>)> = None;
    for (target, reply) in targets.iter().zip(checks) {
        match reply {
            Ok(Answer { code: 200, .. }) => {}
            Ok(Answer { code: 410, .. }) => {
                tracing::info!(pod = %target.key, address = %target.address, "pod is dead (410), dropped from the round");
                dropped.push(target.key.clone());
            }
            Ok(Answer { code: 409, newest: Some(newest) }) if newest > input.epoch => {
                let (highest, keys) = stale.get_or_insert((newest, Vec::new()));
                *highest = (*highest).max(newest);
                keys.push(target.key.clone());
            }
            Ok(Answer { code, .. }) => failures.push(failure(target, Task::Check, PodError::Answered(code))),
            Err(e) => failures.push(failure(target, Task::Check, e.into())),
        }
    }
    if let Some((newest, keys)) = stale {
        return Err(RoundError::Stale { newest, ours: input.epoch, keys });
    }
    if !failures.is_empty() {
        return Err(RoundError::Failed { task: Task::Check, failures });
    }

    let live: Pods =
        input.pods.iter().filter(|(k, _)| !dropped.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let targets: Vec<Target> = targets.into_iter().filter(|t| live.contains_key(&t.key)).collect();
    if targets.is_empty() {
        return Ok(RoundOutcome { configured: live, dropped });
    }

    if input.full_shutdown {
        let offs = phase(control, fence, input, &live, &targets, Task::Off).await?;
        for (target, reply) in targets.iter().zip(offs) {
            match reply {
                Ok(Answer { code: 200, .. }) => {}
                Ok(Answer { code, .. }) => {
                    tracing::warn!(pod = %target.key, address = %target.address, code, "`off` failed, going on")
                }
                Err(e) => {
                    tracing::warn!(pod = %target.key, address = %target.address, error = %e, "`off` failed, going on")
                }
            }
        }
    }

    let ons = phase(control, fence, input, &live, &targets, Task::On).await?;
    let failures: Vec<PodFailure> = targets
        .iter()
        .zip(ons)
        .filter_map(|(target, reply)| match reply {
            Ok(Answer { code: 200, .. }) => None,
            Ok(Answer { code, .. }) => Some(failure(target, Task::On, PodError::Answered(code))),
            Err(e) => Some(failure(target, Task::On, e.into())),
        })
        .collect();
    if !failures.is_empty() {
        return Err(RoundError::Failed { task: Task::On, failures });
    }

    // `ok` runs the `configured` hooks. Its failures change nothing (the pods are configured),
    // but the round waits for them so that the cluster reports settled once the hooks ran.
    let oks = phase(control, fence, input, &live, &targets, Task::Ok).await?;
    for (target, reply) in targets.iter().zip(oks) {
        match reply {
            Ok(Answer { code: 200, .. }) => {}
            Ok(Answer { code, .. }) => {
                tracing::warn!(pod = %target.key, address = %target.address, code, "`ok` failed")
            }
            Err(e) => tracing::warn!(pod = %target.key, address = %target.address, error = %e, "`ok` failed"),
        }
    }
    Ok(RoundOutcome { configured: live, dropped })
}

fn failure(target: &Target, task: Task, error: PodError) -> PodFailure {
    tracing::warn!(pod = %target.key, address = %target.address, %task, %error, "control request failed");
    PodFailure { key: target.key.clone(), address: target.address.clone(), error }
}

/// A phase's payloads: every pod gets the same pods, dependencies and epoch, and its own `key`.
/// The shared part is serialised once per phase and each pod's body is that plus its key: one
/// clone and one serialisation of the whole pod list per pod made a round of N pods O(N²) in
/// the leader's CPU and allocations (bench/findings.md, "Scale").
struct PhasePayload {
    /// `{"pods":…,"dependencies":…,"epoch":…` without its closing brace.
    shared: Vec<u8>,
}

/// The fields of an [`ochopod_core::ControlPayload`] that every pod of a round shares, borrowed.
#[derive(serde::Serialize)]
struct Shared<'a> {
    pods: &'a Pods,
    dependencies: &'a BTreeMap<String, Pods>,
    epoch: u64,
}

impl PhasePayload {
    fn new(input: &RoundInput, pods: &Pods) -> Self {
        let shared = Shared { pods, dependencies: &input.dependencies, epoch: input.epoch };
        // Maps with string keys, strings and numbers: serialising them cannot fail.
        let mut shared = serde_json::to_vec(&shared).expect("a cluster payload serialises");
        shared.pop(); // the closing `}`
        PhasePayload { shared }
    }

    /// The body for the pod `key`: the same JSON object as `ControlPayload` serialises.
    fn for_key(&self, key: &str) -> Bytes {
        let key = serde_json::to_string(key).expect("a string serialises");
        let mut body = Vec::with_capacity(self.shared.len() + key.len() + 8);
        body.extend_from_slice(&self.shared);
        body.extend_from_slice(b",\"key\":");
        body.extend_from_slice(key.as_bytes());
        body.push(b'}');
        Bytes::from(body)
    }
}

/// Sends `task` to every target and returns the replies in target order.
async fn phase<C: Control, F: Fence>(
    control: &C,
    fence: &F,
    input: &RoundInput,
    pods: &Pods,
    targets: &[Target],
    task: Task,
) -> Result<Vec<Result<Answer, SendError>>, RoundError> {
    if !fence.holds().await {
        return Err(RoundError::Fenced(task));
    }
    let payload = PhasePayload::new(input, pods);
    let send = |t: &Target| control.control(t.address.clone(), task, input.grace, payload.for_key(&t.key));
    if !input.sequential {
        return Ok(join_all(targets.iter().map(send)).await);
    }
    let mut replies = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        if i > 0 && !fence.holds().await {
            return Err(RoundError::Fenced(task));
        }
        replies.push(send(target).await);
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use ochopod_core::{ControlPayload, Registration};

    /// Records every request and answers from a table (`(address, task)` → code; 200 otherwise;
    /// a missing host answers an error).
    #[derive(Clone, Default)]
    struct FakePods {
        codes: HashMap<(String, Task), u16>,
        /// `newest` of a 409 reply, by address.
        newest: HashMap<String, u64>,
        unreachable: Vec<String>,
        calls: Arc<Mutex<Vec<(String, Task, ControlPayload)>>>,
        in_flight: Arc<AtomicUsize>,
        max_in_flight: Arc<AtomicUsize>,
    }

    impl Control for FakePods {
        fn control(
            &self,
            address: String,
            task: Task,
            _grace: Duration,
            payload: Bytes,
        ) -> impl Future<Output = Result<Answer, SendError>> + Send + 'static {
            let me = self.clone();
            // What a pod reads: the body must be a whole `ControlPayload`.
            let payload: ControlPayload = serde_json::from_slice(&payload).expect("a control payload");
            async move {
                me.calls.lock().unwrap().push((address.clone(), task, payload));
                let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                me.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                me.in_flight.fetch_sub(1, Ordering::SeqCst);
                if me.unreachable.contains(&address) {
                    return Err(SendError::Unreachable { address, reason: "connection refused".into() });
                }
                let code = *me.codes.get(&(address.clone(), task)).unwrap_or(&200);
                Ok(Answer { code, newest: me.newest.get(&address).copied().filter(|_| code == 409) })
            }
        }
    }

    impl FakePods {
        fn tasks(&self) -> Vec<(String, Task)> {
            self.calls.lock().unwrap().iter().map(|(a, t, _)| (a.clone(), *t)).collect()
        }
    }

    struct Flag(AtomicBool);

    impl Fence for Flag {
        fn holds(&self) -> impl Future<Output = bool> + Send {
            let v = self.0.load(Ordering::SeqCst);
            async move { v }
        }
    }

    fn holding() -> Flag {
        Flag(AtomicBool::new(true))
    }

    fn input(keys: &[&str]) -> RoundInput {
        let pods = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let port = 9000 + i as u16;
                let reg = Registration {
                    ip: "127.0.0.1".into(),
                    port: "8080".into(),
                    ports: [("8080".to_string(), port)].into(),
                    ..Default::default()
                };
                (k.to_string(), reg)
            })
            .collect();
        RoundInput {
            pods,
            dependencies: BTreeMap::new(),
            epoch: 7,
            grace: Duration::from_secs(1),
            sequential: false,
            full_shutdown: false,
            fallback_port: 8080,
        }
    }

    fn addr(i: u16) -> String {
        format!("127.0.0.1:{}", 9000 + i)
    }

    async fn settle(fake: &FakePods, n: usize) {
        for _ in 0..200 {
            if fake.calls.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn a_phase_payload_is_the_control_payload_of_each_pod() {
        let mut input = input(&["a", "b\"\\c"]);
        input.dependencies.insert("db".into(), input.pods.clone());
        let payload = PhasePayload::new(&input, &input.pods);
        for key in input.pods.keys() {
            let body = payload.for_key(key);
            let read: ControlPayload = serde_json::from_slice(&body).unwrap();
            let expected = ControlPayload {
                pods: input.pods.clone(),
                dependencies: input.dependencies.clone(),
                key: key.clone(),
                epoch: Some(input.epoch),
            };
            assert_eq!(read, expected);
            // The same JSON object as the struct serialises (key order aside).
            let as_value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(as_value, serde_json::to_value(&expected).unwrap());
        }
    }

    #[tokio::test]
    async fn phases_run_in_order_with_one_payload_per_pod() {
        let fake = FakePods::default();
        let out = run(&fake, &holding(), &input(&["a", "b"])).await.unwrap();
        assert_eq!(out.configured.len(), 2);
        settle(&fake, 6).await;
        let tasks: Vec<Task> = fake.tasks().iter().map(|(_, t)| *t).collect();
        assert_eq!(tasks, vec![Task::Check, Task::Check, Task::On, Task::On, Task::Ok, Task::Ok]);
        for (address, _, payload) in fake.calls.lock().unwrap().iter() {
            let expected = if *address == addr(0) { "a" } else { "b" };
            assert_eq!(payload.key, expected);
            assert_eq!(payload.epoch, Some(7));
            assert_eq!(payload.pods.len(), 2);
        }
    }

    #[tokio::test]
    async fn dead_pods_are_dropped_after_check() {
        let mut fake = FakePods::default();
        fake.codes.insert((addr(1), Task::Check), 410);
        let out = run(&fake, &holding(), &input(&["a", "b", "c"])).await.unwrap();
        assert_eq!(out.dropped, vec!["b".to_string()]);
        assert_eq!(out.configured.keys().collect::<Vec<_>>(), vec!["a", "c"]);
        settle(&fake, 7).await;
        let calls = fake.calls.lock().unwrap();
        assert!(calls.iter().all(|(a, t, _)| *t == Task::Check || *a != addr(1)), "no `on` to the dead pod");
        let on = calls.iter().find(|(_, t, _)| *t == Task::On).unwrap();
        assert_eq!(on.2.pods.keys().collect::<Vec<_>>(), vec!["a", "c"]);
        let check = calls.iter().find(|(_, t, _)| *t == Task::Check).unwrap();
        assert_eq!(check.2.pods.len(), 3, "check sees every registered pod");
    }

    #[tokio::test]
    async fn a_failed_check_aborts_before_any_on() {
        let mut fake = FakePods::default();
        fake.codes.insert((addr(0), Task::Check), 500);
        fake.unreachable.push(addr(1));
        let err = run(&fake, &holding(), &input(&["a", "b"])).await.unwrap_err();
        match &err {
            RoundError::Failed { task: Task::Check, failures } => {
                assert_eq!(failures[0].key, "a");
                assert_eq!(failures[0].error, PodError::Answered(500));
                assert_eq!(failures[0].error.kind(), RoundFailureKind::HookFailed);
                assert_eq!(failures[1].error.kind(), RoundFailureKind::Unreachable);
                assert!(failures[1].error.to_string().contains("unreachable"), "{}", failures[1].error);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("pod a"));
        assert!(fake.tasks().iter().all(|(_, t)| *t == Task::Check));
    }

    #[tokio::test]
    async fn pods_that_applied_a_newer_epoch_end_the_round_as_stale() {
        let mut fake = FakePods::default();
        fake.codes.insert((addr(0), Task::Check), 409);
        fake.newest.insert(addr(0), 42);
        fake.codes.insert((addr(1), Task::Check), 409);
        fake.newest.insert(addr(1), 40);
        let err = run(&fake, &holding(), &input(&["a", "b", "c"])).await.unwrap_err();
        assert_eq!(err, RoundError::Stale { newest: 42, ours: 7, keys: vec!["a".into(), "b".into()] });
        assert!(fake.tasks().iter().all(|(_, t)| *t == Task::Check), "nothing pushed with a stale epoch");
    }

    #[tokio::test]
    async fn the_round_ends_after_the_ok_replies_whatever_they_say() {
        let mut fake = FakePods::default();
        fake.codes.insert((addr(1), Task::Ok), 500);
        let out = run(&fake, &holding(), &input(&["a", "b"])).await.unwrap();
        assert_eq!(out.configured.len(), 2);
        // No waiting: every `ok` was answered before `run` returned.
        assert_eq!(fake.tasks().iter().filter(|(_, t)| *t == Task::Ok).count(), 2);
        assert_eq!(fake.in_flight.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_on_fails_the_round() {
        let mut fake = FakePods::default();
        fake.codes.insert((addr(1), Task::On), 406);
        let err = run(&fake, &holding(), &input(&["a", "b"])).await.unwrap_err();
        assert!(matches!(err, RoundError::Failed { task: Task::On, .. }));
        assert!(!fake.tasks().iter().any(|(_, t)| *t == Task::Ok));
    }

    #[tokio::test]
    async fn sequential_sends_one_at_a_time_in_key_order() {
        let fake = FakePods::default();
        let mut inp = input(&["a", "b", "c"]);
        inp.sequential = true;
        inp.full_shutdown = true;
        run(&fake, &holding(), &inp).await.unwrap();
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
        let ons: Vec<String> = fake.tasks().into_iter().filter(|(_, t)| *t == Task::On).map(|(a, _)| a).collect();
        assert_eq!(ons, vec![addr(0), addr(1), addr(2)]);
        assert_eq!(fake.tasks().iter().filter(|(_, t)| *t == Task::Off).count(), 3);
    }

    #[tokio::test]
    async fn parallel_sends_at_once() {
        let fake = FakePods::default();
        run(&fake, &holding(), &input(&["a", "b", "c"])).await.unwrap();
        assert!(fake.max_in_flight.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn a_lost_lock_stops_the_round_before_the_next_phase() {
        struct AfterChecks(AtomicUsize);
        impl Fence for AfterChecks {
            fn holds(&self) -> impl Future<Output = bool> + Send {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                async move { n == 0 }
            }
        }
        let fake = FakePods::default();
        let err = run(&fake, &AfterChecks(AtomicUsize::new(0)), &input(&["a"])).await.unwrap_err();
        assert_eq!(err, RoundError::Fenced(Task::On));
        assert!(fake.tasks().iter().all(|(_, t)| *t == Task::Check));
        let none = run(&fake, &Flag(AtomicBool::new(false)), &input(&["a"])).await.unwrap_err();
        assert_eq!(none, RoundError::Fenced(Task::Check));
    }

    #[tokio::test]
    async fn a_pod_without_control_port_aborts_naming_it() {
        let fake = FakePods::default();
        let mut inp = input(&["a"]);
        inp.pods.get_mut("a").unwrap().ports.clear();
        let err = run(&fake, &holding(), &inp).await.unwrap_err();
        assert_eq!(err, RoundError::NoControlPort { key: "a".into() });
        assert!(fake.tasks().is_empty());
    }

    #[test]
    fn failures_name_their_kind_and_the_code_of_a_refusal() {
        let address = "10.0.0.1:8080".to_string();
        let cases = [
            (PodError::Answered(406), RoundFailureKind::Refused, Some(406)),
            (PodError::Answered(500), RoundFailureKind::HookFailed, Some(500)),
            (
                SendError::Timeout { address: address.clone(), timeout: Duration::from_secs(1) }.into(),
                RoundFailureKind::Timeout,
                None,
            ),
            (
                SendError::Unreachable { address: address.clone(), reason: "refused".into() }.into(),
                RoundFailureKind::Unreachable,
                None,
            ),
            (SendError::TooLarge { address: address.clone(), limit: 4 }.into(), RoundFailureKind::TooLarge, None),
            (
                SendError::BadReply { address: address.clone(), reason: "not HTTP".into() }.into(),
                RoundFailureKind::BadReply,
                None,
            ),
        ];
        for (error, kind, code) in cases {
            let round = RoundError::Failed {
                task: Task::On,
                failures: vec![PodFailure { key: "a".into(), address: address.clone(), error: error.clone() }],
            };
            assert_eq!((round.kind(), round.code()), (kind, code), "{error}");
        }
        assert_eq!(PodError::Answered(406).to_string(), "answered 406");
        let timeout: PodError = SendError::Timeout { address, timeout: Duration::from_secs(1) }.into();
        assert_eq!(timeout.to_string(), "10.0.0.1:8080: no reply within 1s");
        assert_eq!(RoundError::Fenced(Task::On).kind(), RoundFailureKind::Fenced);
    }
}
