//! Configuration rounds against a real ZooKeeper and fake pods (loopback HTTP servers that record
//! every control request and answer chosen codes).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ochopod_config::{Probe, ProcessSettings, RestartPolicy};
use ochopod_core::events::{Event, RoundFailureKind};
use ochopod_core::hash::state_hash;
use ochopod_core::paths;
use ochopod_core::view::Pods;
use ochopod_leader::Reconfigure;
use ochopod_session::SessionEvent;

const DAMPER: Duration = Duration::from_millis(400);

/// A cluster of fake pods, registered in ZooKeeper by one "pods" session; the leader acts as the
/// first pod.
struct Cluster {
    ns: String,
    recorder: Arc<Recorder>,
    pods: Vec<FakePod>,
    nodes: Vec<String>,
    registrations: Pods,
    registrar: zookeeper_client::Client,
}

impl Cluster {
    async fn start(zk: &ochopod_integration::zk::ZkServer, ns: &str, n: usize) -> Cluster {
        let recorder = Arc::new(Recorder::default());
        let registrar = connect(zk).await;
        let mut keys: Vec<String> = (0..n).map(|_| uuid()).collect();
        keys.sort();
        let mut c =
            Cluster { ns: ns.into(), recorder, pods: vec![], nodes: vec![], registrations: Pods::new(), registrar };
        for key in keys {
            let pod = FakePod::start(&key, c.recorder.clone()).await;
            let reg = registration(ns, "web", pod.port, c.pods.len() as u64 + 1);
            c.nodes.push(register(&c.registrar, &key, &reg).await);
            c.registrations.insert(key, reg);
            c.pods.push(pod);
        }
        c
    }

    fn key(&self, i: usize) -> String {
        self.pods[i].key.clone()
    }

    fn prefix(&self) -> String {
        paths::cluster_prefix(&self.ns, "web")
    }

    async fn leader(&self, zk: &ochopod_integration::zk::ZkServer, settings: ochopod_config::Settings) -> TestLeader {
        let l = TestLeader::start(zk, settings, &self.key(0), &self.pods[0].address()).await;
        l.wait_for("leadership", |s| s.leader).await;
        l
    }

    async fn snapshot_keys(&self) -> Vec<String> {
        let js = read_json(&self.registrar, &paths::snapshot_node(&self.prefix())).await;
        let mut keys: Vec<String> = js.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[actix::test]
async fn a_round_checks_then_configures_then_acknowledges_every_pod_and_stores_the_hash() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-round", 3).await;
    let t0 = Instant::now();
    let leader = c.leader(&zk, settings("t-round", "web", DAMPER)).await;
    let s = leader.wait_for("a round", |s| s.rounds_ok == 1).await;
    let elapsed = t0.elapsed();
    assert!(elapsed >= DAMPER, "the damper was not waited ({elapsed:?})");
    wait_until("every `ok`", || (c.recorder.count("ok") == 3).then_some(())).await;

    let calls = c.recorder.calls();
    let order: Vec<&str> = calls.iter().map(|c| c.task.as_str()).collect();
    assert_eq!(order, ["check", "check", "check", "on", "on", "on", "ok", "ok", "ok"], "phases in order");
    for pod in &c.pods {
        assert_eq!(c.recorder.tasks_of(&pod.key), ["check", "on", "ok"]);
    }
    for call in &calls {
        let p = call.payload.as_ref().expect("every request carries the payload");
        assert_eq!(p.pods, c.registrations, "same pods for everyone");
        assert_eq!(p.key, call.pod, "each pod gets its own key");
        assert_eq!(p.epoch, s.epoch, "the round's epoch");
        assert_eq!(call.grace, "5");
    }
    assert_eq!(c.snapshot_keys().await, c.registrations.keys().cloned().collect::<Vec<_>>());
    let hash = read_string(&c.registrar, &paths::hash_node(&c.prefix())).await;
    assert_eq!(hash, state_hash(&c.registrations, &BTreeMap::new()));
    let s = leader.wait_for("state leader", |s| s.state == "leader").await;
    assert_eq!(s.rounds_failed, 0);
    assert!(s.last_round_ms.is_some());
    eprintln!("3 pods: leadership → configured in {elapsed:?} (damper {DAMPER:?}), round {:?} ms", s.last_round_ms);
    leader.shutdown().await;
}

#[actix::test]
async fn a_pod_that_leaves_and_comes_back_within_the_damper_causes_no_round() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-flap", 2).await;
    let damper = Duration::from_millis(1500);
    let leader = c.leader(&zk, settings("t-flap", "web", damper)).await;
    leader.wait_for("the first round", |s| s.rounds_ok == 1).await;
    wait_until("every `ok`", || (c.recorder.count("ok") == 2).then_some(())).await;
    let before = c.recorder.calls().len();

    c.registrar.delete(&c.nodes[1], None).await.unwrap();
    leader.wait_for("a pending configuration", |s| s.state == "leader (configuration pending)").await;
    register(&c.registrar, &c.key(1), &c.registrations[&c.key(1)]).await;
    leader.wait_for("the pending configuration cancelled", |s| s.state == "leader").await;
    // Past the damper's end: still no request, no round.
    tokio::time::sleep(damper + Duration::from_millis(500)).await;
    assert_eq!(c.recorder.calls().len(), before);
    assert_eq!(leader.status().await.rounds_ok, 1);
    assert_eq!(c.snapshot_keys().await.len(), 2);
    leader.shutdown().await;
}

#[actix::test]
async fn a_dead_pod_is_dropped_from_the_round_and_the_snapshot() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-dead", 3).await;
    c.recorder.answer_always(&c.key(2), "check", 410);
    let leader = c.leader(&zk, settings("t-dead", "web", DAMPER)).await;
    leader.wait_for("a round", |s| s.rounds_ok == 1).await;
    wait_until("every `ok`", || (c.recorder.count("ok") == 2).then_some(())).await;
    assert_eq!(c.recorder.tasks_of(&c.key(2)), ["check"]);
    let on = c.recorder.calls().into_iter().find(|c| c.task == "on").unwrap();
    assert_eq!(on.payload.unwrap().pods.len(), 2);
    assert_eq!(c.snapshot_keys().await, vec![c.key(0), c.key(1)]);
    // The dead pod is remembered: it causes no further round while it stays registered.
    tokio::time::sleep(DAMPER * 2).await;
    assert_eq!(leader.status().await.rounds_ok, 1);
    leader.shutdown().await;
}

#[actix::test]
async fn a_failed_check_aborts_the_round_and_it_is_retried_after_the_damper() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-retry", 2).await;
    c.recorder.answer_once(&c.key(1), "check", 500);
    let leader = c.leader(&zk, settings("t-retry", "web", DAMPER)).await;
    let s = leader.wait_for("a failed round", |s| s.rounds_failed == 1).await;
    assert_eq!(s.state, "leader (configuration pending)");
    // `/events` and `/metrics` say what kind of failure it was, with the pod's HTTP code.
    let failed =
        leader.wait_event("the failed round", |e| matches!(e, Event::Round { phase, .. } if phase == "failed")).await;
    let Event::Round { failure, code, error, .. } = failed else { unreachable!() };
    assert_eq!((failure, code), (Some(RoundFailureKind::HookFailed), Some(500)), "{error:?}");
    assert!(error.is_some_and(|e| e.contains("answered 500")));
    assert_eq!(s.failures, [(RoundFailureKind::HookFailed, 1)].into());
    assert_eq!(s.refusals, [(500, 1)].into());
    assert_eq!(c.recorder.count("on"), 0, "no `on` after a failed check");
    leader.wait_for("the retry", |s| s.rounds_ok == 1).await;
    let retry = c.recorder.calls().into_iter().filter(|c| c.task == "check").nth(2).expect("a second check round");
    assert!(retry.at.duration_since(c.recorder.calls()[0].at) >= DAMPER, "the retry waits the damper");
    assert_eq!(c.recorder.count("on"), 2);
    leader.shutdown().await;
}

#[actix::test]
async fn sequential_rounds_send_on_one_pod_at_a_time_in_key_order() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-seq", 3).await;
    c.recorder.delay("on", Duration::from_millis(150));
    let mut s = settings("t-seq", "web", DAMPER);
    s.model.sequential = true;
    let leader = c.leader(&zk, s).await;
    leader.wait_for("a round", |s| s.rounds_ok == 1).await;
    let ons: Vec<String> = c.recorder.calls().into_iter().filter(|c| c.task == "on").map(|c| c.pod).collect();
    assert_eq!(ons, vec![c.key(0), c.key(1), c.key(2)]);
    assert_eq!(c.recorder.max_in_flight.load(Ordering::SeqCst), 1, "never two requests at once");
    leader.shutdown().await;
}

#[actix::test]
async fn reconfigure_runs_a_round_even_with_an_unchanged_hash() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-reconf", 2).await;
    let leader = c.leader(&zk, settings("t-reconf", "web", Duration::from_secs(30))).await;
    // A 30 s damper: the only way to a round within the test is `/reconfigure`.
    leader.wait_for("a pending first configuration", |s| s.state == "leader (configuration pending)").await;
    assert_eq!(leader.addr.send(Reconfigure).await.unwrap(), Ok(()));
    leader.wait_for("the first round", |s| s.rounds_ok == 1).await;
    let hash = read_string(&c.registrar, &paths::hash_node(&c.prefix())).await;
    assert_eq!(leader.addr.send(Reconfigure).await.unwrap(), Ok(()));
    leader.wait_for("a second round", |s| s.rounds_ok == 2).await;
    assert_eq!(c.recorder.count("on"), 4);
    assert_eq!(read_string(&c.registrar, &paths::hash_node(&c.prefix())).await, hash);
    leader.shutdown().await;
}

#[actix::test]
async fn a_suspended_leader_sends_nothing_and_resumes_after_reconnection() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-suspend", 2).await;
    let leader = c.leader(&zk, settings("t-suspend", "web", DAMPER)).await;
    leader.wait_for("the first round", |s| s.rounds_ok == 1).await;
    wait_until("every `ok`", || (c.recorder.count("ok") == 2).then_some(())).await;
    let before = c.recorder.calls().len();

    let pod = FakePod::start(&uuid(), c.recorder.clone()).await;
    register(&c.registrar, &pod.key, &registration("t-suspend", "web", pod.port, 9)).await;
    leader.wait_for("a pending configuration", |s| s.state == "leader (configuration pending)").await;
    leader.addr.send(SessionEvent::Suspended { generation: leader.generation }).await.unwrap();
    let s = leader.status().await;
    assert_eq!((s.state.as_str(), s.leader), ("follower", false));
    tokio::time::sleep(DAMPER * 3).await;
    assert_eq!(c.recorder.calls().len(), before, "no request while suspended");

    leader.addr.send(SessionEvent::Resumed { generation: leader.generation }).await.unwrap();
    leader.wait_for("leading again", |s| s.leader).await;
    wait_until("the new pod configured", || c.recorder.tasks_of(&pod.key).contains(&"on".to_string()).then_some(()))
        .await;
    leader.shutdown().await;
}

#[actix::test]
async fn the_probe_runs_after_the_round_and_its_output_is_the_status() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-probe", 2).await;
    let mut s = settings("t-probe", "web", DAMPER);
    let command = r#"echo "starting"; key=$(grep -o '"key":"[^"]*"' | head -n 1); echo "$OCHOPOD_SIZE pods, $key""#;
    s.model.probe =
        Some(Probe { command: command.into(), every: Duration::from_secs(60), timeout: Duration::from_secs(5) });
    let leader = c.leader(&zk, s).await;
    let expected = format!("2 pods, \"key\":\"{}\"", c.key(0));
    let st = leader.wait_for("the probe's status", |s| s.status == expected).await;
    assert_eq!(st.state, "leader");
    leader.shutdown().await;
}

/// The probe runs where the process and the hooks do: `process.cwd` when set (it ran in the
/// declaration's folder whatever `process.cwd` said).
#[actix::test]
async fn the_probe_runs_in_process_cwd() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-probe-cwd", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut s = settings("t-probe-cwd", "web", DAMPER);
    s.source = dir.path().join("pod.yml");
    s.process = Some(ProcessSettings {
        command: "sleep 1".into(),
        shell: false,
        cwd: Some("work".into()),
        env: BTreeMap::new(),
        strict: false,
        start: true,
        pipe_output: false,
        grace: Duration::from_secs(1),
        soft: false,
        sanity: None,
        restart: RestartPolicy {
            when: ochopod_config::RestartWhen::Dependencies,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            crashloop_after: 5,
            reset_after: Duration::from_secs(1),
            give_up_after: 0,
        },
    });
    s.model.probe =
        Some(Probe { command: "pwd -P".into(), every: Duration::from_secs(60), timeout: Duration::from_secs(5) });
    let leader = c.leader(&zk, s).await;
    let expected = work.canonicalize().unwrap().display().to_string();
    let st = leader.wait_for("the probe's status", |s| s.status.starts_with('/')).await;
    assert_eq!(st.status, expected);
    leader.shutdown().await;
}

#[actix::test]
async fn a_new_leader_with_the_same_state_runs_no_round_and_keeps_the_snapshot() {
    let zk = zk();
    let c = Cluster::start(&zk, "t-failover", 2).await;
    let first = c.leader(&zk, settings("t-failover", "web", DAMPER)).await;
    first.wait_for("the first round", |s| s.rounds_ok == 1).await;
    wait_until("every `ok`", || (c.recorder.count("ok") == 2).then_some(())).await;
    let before = c.recorder.calls().len();
    let second = TestLeader::start(&zk, settings("t-failover", "web", DAMPER), &c.key(1), &c.pods[1].address()).await;
    ochopod_integration::wait::until("the second contender queued", WAIT, || async {
        let n = c.registrar.list_children(&paths::coordinator_dir(&c.prefix())).await.map(|v| v.len()).unwrap_or(0);
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await
    .unwrap();

    first.shutdown().await;
    second.wait_for("the take-over", |s| s.leader && s.state == "leader").await;
    // The old session is still open: the snapshot must already belong to the new leader, so it
    // survives the old session's end.
    let (_, stat) = c.registrar.get_data(&paths::snapshot_node(&c.prefix())).await.unwrap();
    assert_eq!(stat.ephemeral_owner, second.client.session_id().0);
    drop(first);
    tokio::time::sleep(DAMPER * 3).await;
    assert_eq!(c.recorder.calls().len(), before, "same state, same hash: no round");
    assert_eq!(second.status().await.rounds_ok, 0);
    assert_eq!(c.snapshot_keys().await.len(), 2);
    second.shutdown().await;
}
