//! Configuration rounds over a real ZooKeeper with real pods: damper, dependencies, fencing,
//! and what a pod registers.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use zookeeper_client as zk;

/// `ochopod_rounds_total{outcome="ok"}` from a pod's /metrics.
async fn rounds_ok(pod: &Pod) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", pod.address())).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("ochopod_rounds_total{outcome=\"ok\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no rounds metric in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_loses_its_session_and_returns_within_the_damper_causes_no_round() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "").replace("damper: 0s", "damper: 4s");
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let leader = wait_settled(&refs, 3, SETTLE).await;
    let follower = (leader + 1) % 3;
    let rounds = rounds_ok(&pods[leader]).await;
    let nodes_before = pod_nodes(&zk, "web").await;
    let flap = "cluster back to its configured state, no round";
    let flaps = |lines: &[String]| lines.iter().filter(|l| l.contains(flap)).count();
    let flaps_before = flaps(&log_of(&pods[leader]).await);

    // /reset drops the follower's session (its znode vanishes) and registers it again.
    let reply =
        pods[follower].client().call(&pods[follower].address(), "reset", None, Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.code, 200);
    // The leader notices the pod leave (the damper starts) and then come back within it: it
    // says so in its log.
    wait::until("the leader to cancel the pending round", Duration::from_secs(15), || async {
        let lines = log_of(&pods[leader]).await;
        if flaps(&lines) > flaps_before {
            Ok(())
        } else {
            Err(format!("{} log lines, none about the flap", lines.len()))
        }
    })
    .await
    .unwrap();
    // Past the damper: still no new round, and no process restarted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rounds_ok(&pods[leader]).await, rounds, "a round ran for a transient session loss");
    assert_eq!(pods.iter().map(starts_of).collect::<Vec<_>>(), vec![1, 1, 1]);
    wait_settled(&refs, 3, SETTLE).await;
    // The follower really lost its session: its znode was re-created (another ZooKeeper
    // sequence in the name) under the same uuid, with the same seq in its JSON.
    let nodes_after = pod_nodes(&zk, "web").await;
    let changed: Vec<_> = nodes_after.iter().filter(|n| !nodes_before.contains(n)).collect();
    assert_eq!(changed.len(), 1, "before {nodes_before:?} after {nodes_after:?}");
    let (name, seq) = changed[0];
    let old = nodes_before.iter().find(|(n, _)| pods_key(n) == pods_key(name)).expect("same uuid as before");
    assert_eq!(old.1, *seq);
}

/// `(node name, seq in its JSON)` of every registration of a cluster of namespace `test`.
async fn pod_nodes(zk_server: &ZkServer, cluster: &str) -> Vec<(String, u64)> {
    let client = zk::Client::connect(&zk_server.connect_string()).await.unwrap();
    let dir = format!("/ochopod/clusters/test.{cluster}/pods");
    let mut out = Vec::new();
    for child in client.list_children(&dir).await.unwrap() {
        let (data, _) = client.get_data(&format!("{dir}/{child}")).await.unwrap();
        let js: serde_json::Value = serde_json::from_slice(&data).unwrap();
        out.push((child, js["seq"].as_u64().unwrap()));
    }
    out.sort();
    out
}

/// A pod's `/log` lines.
async fn log_of(pod: &Pod) -> Vec<String> {
    let reply = pod.client().call(&pod.address(), "log", None, Duration::from_secs(2)).await.unwrap();
    serde_json::from_value(reply.body).unwrap()
}

fn dependent_yaml(cluster: &str, depends: &str) -> String {
    format!(
        r#"cluster: {cluster}
namespace: test
zk_session_timeout: 5s
model:
  depends_on: ["{depends}"]
  damper: 0s
  grace: 5s
process:
  command: exec sleep 3600
  shell: true
  grace: 2s
files:
  - path: view.txt
    template: "{{{{ key }}}} {{{{ index }}}} {{{{ seq }}}} {{{{ size }}}} {{{{ epoch }}}}"
  - path: deps.txt
    template: "{{{{ grep(\"{depends}\", 8080) }}}}"
"#
    )
}

fn deps_of(pod: &Pod) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(pod.dir.path().join("deps.txt")).ok()?;
    Some(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_cluster_waits_for_its_dependency_and_follows_its_changes() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let app = start_pod(&zk, &dependent_yaml("app", "db"));
    // Elected, but with no `db` snapshot it must not configure.
    app.wait_info("the app pod to lead", SETTLE, |i| {
        if i.state.starts_with("leader") {
            Ok(())
        } else {
            Err(i.state.clone())
        }
    })
    .await
    .unwrap();
    // A negative observation needs a window: two seconds without a configuration.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(view_of(&app), None, "app configured before its dependency existed");
    assert_eq!(app.info().await.unwrap().process, "stopped");

    let db_yaml = simple_yaml("db", "");
    let db1 = start_pod(&zk, &db_yaml);
    wait_settled(&[&db1], 1, SETTLE).await;

    wait::until("app configured with 1 db pod", SETTLE, || async {
        match deps_of(&app) {
            Some(d) if d.len() == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    assert_eq!(deps_of(&app).unwrap(), vec![db1.address()]);

    let db2 = start_pod(&zk, &db_yaml);
    wait_settled(&[&db1, &db2], 2, SETTLE).await;
    wait::until("app reconfigured with 2 db pods", SETTLE, || async {
        match deps_of(&app) {
            Some(d) if d.len() == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_dependencies_merge_every_matching_cluster() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let a = start_pod(&zk, &simple_yaml("db-a", ""));
    let b = start_pod(&zk, &simple_yaml("db-b", ""));
    wait_settled(&[&a], 1, SETTLE).await;
    wait_settled(&[&b], 1, SETTLE).await;
    let app = start_pod(&zk, &dependent_yaml("app", "db-*"));
    wait::until("app configured with both db clusters", SETTLE, || async {
        match deps_of(&app) {
            Some(d) if d.len() == 2 => Ok(d),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let mut got = deps_of(&app).unwrap();
    got.sort();
    let mut want = vec![a.address(), b.address()];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_from_a_stale_epoch_gets_409() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let mut pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    let leader = wait_settled(&pods.iter().collect::<Vec<_>>(), 3, SETTLE).await;
    let first_epoch: u64 = view_of(&pods[0]).unwrap().4.parse().expect("an epoch in the payload");

    // A new leader takes over with a newer epoch and reconfigures the survivors.
    let mut old = pods.remove(leader);
    old.signal(Signal::SIGTERM);
    old.wait_exit(Duration::from_secs(15)).unwrap();
    let refs: Vec<&Pod> = pods.iter().collect();
    wait_settled(&refs, 2, SETTLE).await;
    let (key, _, _, _, epoch) = view_of(&pods[0]).unwrap();
    let epoch: u64 = epoch.parse().unwrap();
    assert!(epoch > first_epoch, "the new leader's epoch {epoch} is not newer than {first_epoch}");

    // The old leader's epoch, replayed: refused, and nothing changes.
    let info = pods[0].info().await.unwrap();
    let stale = serde_json::json!({
        "pods": { key.clone(): { "ip": info.ip, "ports": info.ports, "port": info.port, "seq": info.seq } },
        "dependencies": {}, "key": key, "epoch": first_epoch
    });
    let reply =
        pods[0].client().call(&pods[0].address(), "control/on/5", Some(&stale), Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.code, 409, "stale on answered {reply:?}");
    assert_eq!(view_of(&pods[0]).unwrap().3, 2, "the stale payload must not be applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_holds_the_documented_fields_and_no_secret() {
    let zk_server = ZkServer::start().expect("ZooKeeper");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cr3t-token-value\n").unwrap();
    let yaml = format!("{}control:\n  token_file: {}\n", simple_yaml("web", ""), token_file.display());
    let pod = Pod::start(
        PodSpec::new(bin(), &zk_server.connect_string(), &yaml)
            .env("ochopod_token", "another-secret")
            .env("ochopod_application", "my-app"),
    )
    .unwrap();
    // Mutating routes now need the token, reads do not.
    pod.wait_info("the pod to run", SETTLE, |i| if i.process == "running" { Ok(()) } else { Err(i.process.clone()) })
        .await
        .unwrap();

    let client = zk::Client::connect(&zk_server.connect_string()).await.unwrap();
    let dir = "/ochopod/clusters/test.web/pods";
    let (children, _) = client.list_children(dir).await.map(|c| (c, ())).unwrap();
    assert_eq!(children.len(), 1, "{children:?}");
    let (data, _) = client.get_data(&format!("{dir}/{}", children[0])).await.unwrap();
    let raw = String::from_utf8(data).unwrap();
    assert!(!raw.contains("s3cr3t") && !raw.contains("another-secret"), "a secret was registered: {raw}");
    let js: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let fields: std::collections::BTreeSet<&str> = js.as_object().unwrap().keys().map(String::as_str).collect();
    let expected = [
        "application",
        "cluster",
        "debug",
        "fwk",
        "ip",
        "local",
        "namespace",
        "node",
        "port",
        "ports",
        "public",
        "seq",
        "start",
        "task",
        "zk",
    ];
    assert_eq!(fields, expected.into_iter().collect());
    assert_eq!(js["cluster"], "web");
    assert_eq!(js["namespace"], "test");
    assert_eq!(js["application"], "my-app");
    assert_eq!(js["port"], "8080");
    assert_eq!(js["ports"]["8080"], pod.control_port);
    assert!(js["seq"].is_u64());
    assert!(children[0].starts_with(&format!("{}.", pods_key(&children[0]))));

    let info = reqwest::Client::new()
        .post(format!("http://{}/info", pod.address()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!info.contains("s3cr3t") && !info.contains("another-secret"), "a secret in /info: {info}");
    let unauthorised = pod.client().call(&pod.address(), "control/off/5", None, Duration::from_secs(5)).await.unwrap();
    assert_eq!(unauthorised.code, 401);
}

fn pods_key(node: &str) -> &str {
    ochopod_core::paths::pod_key(node)
}
