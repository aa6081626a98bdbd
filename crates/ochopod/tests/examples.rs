//! The examples, run for real: a ZooKeeper ensemble formed by ochopod (verified with ZooKeeper's
//! own four-letter words), a cluster that depends on it, and a sidecar.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use ochopod_integration::ports::free_port;
use ochopod_integration::zk::{four_letter, parse_mntr};
use zookeeper_client as zk;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)
}

/// The example's declaration, with a short session timeout so a killed pod leaves quickly.
fn example_yaml(name: &str) -> String {
    let text = std::fs::read_to_string(example(name).join("pod.yaml")).unwrap();
    format!("{text}\nzk_session_timeout: 5s\n")
}

/// One pod of the ensemble example and the client port of its ZooKeeper server.
struct ServerPod {
    pod: Pod,
    client: u16,
}

fn start_server(coordination: &ZkServer, yaml: &str) -> ServerPod {
    let client = free_port();
    let pod = Pod::start(
        PodSpec::new(bin(), &coordination.connect_string(), yaml)
            .env("PORT_2181", client)
            .env("PORT_2888", free_port())
            .env("PORT_3888", free_port())
            .env("EXAMPLE_DIR", example("zookeeper-ensemble").display()),
    )
    .unwrap();
    ServerPod { pod, client }
}

fn connect_string(servers: &[ServerPod]) -> String {
    servers.iter().map(|s| format!("127.0.0.1:{}", s.client)).collect::<Vec<_>>().join(",")
}

/// Waits until the servers form one ensemble of their number, as ZooKeeper itself reports it
/// (`srvr` modes, `mntr` synced followers) and as the ochopod leader's probe publishes it.
async fn wait_ensemble(servers: &[ServerPod]) {
    let n = servers.len();
    let pods: Vec<&Pod> = servers.iter().map(|s| &s.pod).collect();
    let res = wait::until(&format!("a {n}-server ensemble"), Duration::from_secs(150), || async {
        let mut leaders = 0;
        let mut followers = 0;
        let mut synced = None;
        for s in servers {
            let srvr = four_letter(s.client, "srvr").map_err(|e| format!("{}: {e}", s.client))?;
            if srvr.contains("Mode: leader") {
                leaders += 1;
                let m = parse_mntr(&four_letter(s.client, "mntr").map_err(|e| e.to_string())?);
                synced = m.get("zk_synced_followers").cloned();
            } else if srvr.contains("Mode: follower") {
                followers += 1;
            }
        }
        if (leaders, followers) != (1, n - 1) || synced != Some((n - 1).to_string()) {
            return Err(format!("{leaders} leaders, {followers} followers, synced {synced:?}"));
        }
        let infos = infos(&pods).await?;
        let status = infos.iter().find(|i| i.state == "leader").map(|i| i.status.clone());
        let want = format!("{n} servers, 1 leader, {} synced followers", n - 1);
        if status.as_deref() != Some(want.as_str()) {
            return Err(format!("ochopod status {status:?}"));
        }
        if infos.iter().any(|i| i.process != "running") {
            return Err("a process is not running".into());
        }
        Ok(())
    })
    .await;
    if let Err(e) = res {
        for p in &pods {
            eprintln!("---- pod {} log tail:\n{}", p.address(), p.log_tail(30));
        }
        panic!("{e}");
    }
}

async fn client_of(servers: &[ServerPod]) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&connect_string(servers))
        .await
        .expect("connect to the ensemble")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zookeeper_example_forms_an_ensemble_that_scales_and_survives_a_lost_server() {
    let coordination = ZkServer::start().expect("ZooKeeper for coordination");
    let yaml = example_yaml("zookeeper-ensemble");
    let mut servers: Vec<ServerPod> = (0..3).map(|_| start_server(&coordination, &yaml)).collect();
    wait_ensemble(&servers).await;

    let client = client_of(&servers).await;
    client
        .create("/written-before-scaling", b"hello", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .expect("write through the 3-server ensemble");
    drop(client);

    servers.push(start_server(&coordination, &yaml));
    servers.push(start_server(&coordination, &yaml));
    wait_ensemble(&servers).await;
    let client = client_of(&servers).await;
    let (data, _) = client.get_data("/written-before-scaling").await.expect("read after scaling to 5");
    assert_eq!(data, b"hello");
    drop(client);

    // Lose the pod whose server leads the ensemble, as a dying container: no clean-up at all.
    let leader = servers
        .iter()
        .position(|s| four_letter(s.client, "srvr").unwrap_or_default().contains("Mode: leader"))
        .unwrap();
    let mut lost = servers.remove(leader);
    lost.pod.kill();
    wait_ensemble(&servers).await;
    let client = client_of(&servers).await;
    let (data, _) = client.get_data("/written-before-scaling").await.expect("read after losing a server");
    assert_eq!(data, b"hello");
    client
        .create("/written-after-the-loss", b"still", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .expect("write after losing a server");
}

fn watcher_conf(pod: &Pod) -> Option<String> {
    std::fs::read_to_string(pod.dir.path().join("conf/zookeeper.properties")).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dependent_example_waits_for_the_ensemble_and_follows_it() {
    let coordination = ZkServer::start().expect("ZooKeeper for coordination");
    let watcher = Pod::start(
        PodSpec::new(bin(), &coordination.connect_string(), &example_yaml("dependent"))
            .env("EXAMPLE_DIR", example("dependent").display()),
    )
    .unwrap();
    watcher
        .wait_info("the watcher to lead its cluster", SETTLE, |i| {
            if i.state.starts_with("leader") {
                Ok(())
            } else {
                Err(i.state.clone())
            }
        })
        .await
        .unwrap();
    // A negative observation needs a window: nothing rendered while the ensemble does not exist.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(watcher_conf(&watcher), None);

    let yaml = example_yaml("zookeeper-ensemble");
    let mut servers = vec![start_server(&coordination, &yaml)];
    let expect = |servers: &[ServerPod]| format!("zookeeper.connect={}\n", connect_string(servers));
    let want = expect(&servers);
    wait::until("the watcher configured with one server", Duration::from_secs(90), || async {
        match watcher_conf(&watcher) {
            Some(c) if c.starts_with(&want) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    assert_eq!(watcher.info().await.unwrap().process, "running");

    servers.push(start_server(&coordination, &yaml));
    let mut sorted = servers.iter().map(|s| s.client).collect::<Vec<_>>();
    sorted.sort();
    wait::until("the watcher reconfigured with two servers", Duration::from_secs(90), || async {
        let c = watcher_conf(&watcher).unwrap_or_default();
        let line = c.lines().next().unwrap_or_default().trim_start_matches("zookeeper.connect=").to_string();
        let mut got: Vec<u16> = line.split(',').filter_map(|a| a.rsplit(':').next()?.parse().ok()).collect();
        got.sort();
        if got == sorted {
            Ok(())
        } else {
            Err(c)
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_example_renders_its_file_and_runs_its_hook_on_each_round() {
    let coordination = ZkServer::start().expect("ZooKeeper");
    let web_yaml = simple_yaml("web", "").replace("namespace: test", "namespace: demo");
    let web1 = start_pod(&coordination, &web_yaml);
    let sidecar = start_pod(&coordination, &example_yaml("sidecar"));
    let upstreams =
        |pod: &Pod| std::fs::read_to_string(pod.dir.path().join("shared/upstreams.conf")).unwrap_or_default();
    let reloads = |pod: &Pod| {
        std::fs::read_to_string(pod.dir.path().join("shared/reloads.log")).map(|t| t.lines().count()).unwrap_or(0)
    };
    let want1 = format!("server {};", web1.address());
    wait::until("the sidecar rendered one upstream", SETTLE, || async {
        let u = upstreams(&sidecar);
        if u.contains(&want1) && reloads(&sidecar) >= 1 {
            Ok(())
        } else {
            Err(u)
        }
    })
    .await
    .unwrap();
    assert_eq!(sidecar.info().await.unwrap().process, "sidecar");

    let before = reloads(&sidecar);
    let web2 = start_pod(&coordination, &web_yaml);
    let want2 = format!("server {};", web2.address());
    wait::until("the sidecar re-rendered with two upstreams and reloaded", SETTLE, || async {
        let u = upstreams(&sidecar);
        if u.contains(&want1) && u.contains(&want2) && reloads(&sidecar) > before {
            Ok(())
        } else {
            Err(u)
        }
    })
    .await
    .unwrap();
}
