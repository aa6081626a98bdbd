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

/// `redis-cli -p <port> <args…>`, its output trimmed.
fn redis(port: u16, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("redis-cli: {e} (install it: apt-get install -y redis-server, or `make setup`)"))?;
    if !out.status.success() {
        return Err(format!("redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The first line of `ROLE`: `master`, `slave` (or an error).
fn role(port: u16) -> String {
    redis(port, &["role"]).map(|r| r.lines().next().unwrap_or("").to_string()).unwrap_or_else(|e| e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_example_replaces_a_dead_primary_without_restarting_anyone() {
    let coordination = ZkServer::start().expect("ZooKeeper for coordination");
    let yaml = example_yaml("redis-replicas");
    let mut pods: Vec<(Pod, u16)> = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let pod =
            Pod::start(PodSpec::new(bin(), &coordination.connect_string(), &yaml).env("PORT_6379", port)).unwrap();
        pods.push((pod, port));
    }
    let refs: Vec<&Pod> = pods.iter().map(|(p, _)| p).collect();
    wait_settled(&refs, 3, SETTLE).await;

    // The oldest pod (lowest seq) is the primary, the others replicate it.
    let seqs: Vec<u64> = infos(&refs).await.unwrap().iter().map(|i| i.seq.unwrap()).collect();
    let oldest = (0..3).min_by_key(|&n| seqs[n]).unwrap();
    let ports: Vec<u16> = pods.iter().map(|(_, p)| *p).collect();
    wait::until("one primary and two replicas", SETTLE, || async {
        let roles: Vec<String> = ports.iter().map(|p| role(*p)).collect();
        let want: Vec<&str> = (0..3).map(|n| if n == oldest { "master" } else { "slave" }).collect();
        if roles == want {
            Ok(())
        } else {
            Err(format!("roles {roles:?}, want {want:?}"))
        }
    })
    .await
    .unwrap();
    assert_eq!(redis(ports[oldest], &["set", "k", "v1"]).unwrap(), "OK");
    for n in (0..3).filter(|&n| n != oldest) {
        let port = ports[n];
        wait::until("the replica to serve the write", SETTLE, || async {
            match redis(port, &["get", "k"]) {
                Ok(v) if v == "v1" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap();
    }
    let survivors_pids: Vec<u32> = (0..3)
        .filter(|&n| n != oldest)
        .map(|n| redis(ports[n], &["info", "server"]).unwrap())
        .map(|info| info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().parse().unwrap())
        .collect();

    // The primary's pod dies like a container: the next oldest takes over, and both survivors
    // keep the server process they had.
    let (mut dead, _) = pods.remove(oldest);
    dead.kill();
    let ports: Vec<u16> = pods.iter().map(|(_, p)| *p).collect();
    let refs: Vec<&Pod> = pods.iter().map(|(p, _)| p).collect();
    wait_settled(&refs, 2, Duration::from_secs(60)).await;
    let seqs: Vec<u64> = infos(&refs).await.unwrap().iter().map(|i| i.seq.unwrap()).collect();
    let next = (0..2).min_by_key(|&n| seqs[n]).unwrap();
    let replica = 1 - next;
    wait::until("the next oldest promoted, the other following it", SETTLE, || async {
        let roles = (role(ports[next]), role(ports[replica]));
        let master_port = redis(ports[replica], &["info", "replication"])
            .ok()
            .and_then(|i| i.lines().find_map(|l| l.strip_prefix("master_port:")).map(|p| p.trim().to_string()));
        if roles == ("master".to_string(), "slave".to_string()) && master_port == Some(ports[next].to_string()) {
            Ok(())
        } else {
            Err(format!("roles {roles:?}, replica's master port {master_port:?}"))
        }
    })
    .await
    .unwrap();
    assert_eq!(redis(ports[next], &["set", "k", "v2"]).unwrap(), "OK");
    wait::until("the replica to serve the new primary's write", SETTLE, || async {
        match redis(ports[replica], &["get", "k"]) {
            Ok(v) if v == "v2" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let pids_now: Vec<u32> = [next, replica]
        .iter()
        .map(|&n| redis(ports[n], &["info", "server"]).unwrap())
        .map(|info| info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().parse().unwrap())
        .collect();
    let mut before = survivors_pids.clone();
    let mut after = pids_now.clone();
    before.sort();
    after.sort();
    assert_eq!(before, after, "a survivor's server was restarted");
    let leader = infos(&refs).await.unwrap().into_iter().find(|i| i.state == "leader").unwrap();
    wait::until("the probe to show the roles", SETTLE, || async {
        let status =
            infos(&refs).await?.into_iter().find(|i| i.state == "leader").map(|i| i.status).unwrap_or_default();
        if status == "2 pods: master slave" {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e} (leader {})", leader.ip));
}

fn start_dynamic(coordination: &ZkServer, yaml: &str) -> ServerPod {
    let client = free_port();
    let pod = Pod::start(
        PodSpec::new(bin(), &coordination.connect_string(), yaml)
            .env("PORT_2181", client)
            .env("PORT_2888", free_port())
            .env("PORT_3888", free_port())
            .env("ZK_SUPER_PASSWORD", "s3cret-super"),
    )
    .unwrap();
    ServerPod { pod, client }
}

/// The pid of the ZooKeeper server (java) a pod runs.
fn java_pid(s: &ServerPod) -> Option<u32> {
    s.pod.descendants().into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("QuorumPeerMain"))
            .unwrap_or(false)
    })
}

/// Waits until the ensemble's voters are exactly `servers` (its `/zookeeper/config`), one of them
/// leads with the others as synced followers (`srvr`, `mntr`).
async fn wait_voters(servers: &[ServerPod]) {
    let n = servers.len();
    let res = wait::until(&format!("an ensemble of exactly {n} voters"), Duration::from_secs(150), || async {
        let mut leaders = 0;
        let mut synced = None;
        for s in servers {
            let srvr = four_letter(s.client, "srvr").map_err(|e| format!("{}: {e}", s.client))?;
            if srvr.contains("Mode: leader") {
                leaders += 1;
                let m = parse_mntr(&four_letter(s.client, "mntr").map_err(|e| e.to_string())?);
                synced = m.get("zk_synced_followers").cloned();
            }
        }
        if leaders != 1 || synced != Some((n - 1).to_string()) {
            return Err(format!("{leaders} leaders, synced followers {synced:?}"));
        }
        let client = tokio::time::timeout(Duration::from_secs(10), client_of(servers))
            .await
            .map_err(|_| "no client session".to_string())?;
        let (config, _) = client.get_data("/zookeeper/config").await.map_err(|e| e.to_string())?;
        let config = String::from_utf8_lossy(&config).to_string();
        let voters: Vec<&str> = config.lines().filter(|l| l.starts_with("server.")).collect();
        let wanted: Vec<String> = servers.iter().map(|s| format!(";127.0.0.1:{}", s.client)).collect();
        if voters.len() != n || !wanted.iter().all(|w| voters.iter().any(|v| v.ends_with(w.as_str()))) {
            return Err(format!("/zookeeper/config:\n{config}"));
        }
        Ok(())
    })
    .await;
    if let Err(e) = res {
        for s in servers {
            eprintln!("---- pod {} log tail:\n{}", s.pod.address(), s.pod.log_tail(30));
        }
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamic_zookeeper_example_adds_and_removes_voters_without_restarting_anyone() {
    let coordination = ZkServer::start().expect("ZooKeeper for coordination");
    let yaml = example_yaml("zookeeper-dynamic");
    let mut servers: Vec<ServerPod> = (0..3).map(|_| start_dynamic(&coordination, &yaml)).collect();
    wait_voters(&servers).await;
    let first_pids: Vec<Option<u32>> = servers.iter().map(java_pid).collect();
    assert!(first_pids.iter().all(Option::is_some), "{first_pids:?}");
    let client = client_of(&servers).await;
    client
        .create("/written-by-three", b"hello", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .expect("write through the 3-voter ensemble");
    drop(client);

    // Two more pods: they join as voters, and the three first servers keep running as they were.
    servers.push(start_dynamic(&coordination, &yaml));
    servers.push(start_dynamic(&coordination, &yaml));
    wait_voters(&servers).await;
    let now: Vec<Option<u32>> = servers[..3].iter().map(java_pid).collect();
    assert_eq!(now, first_pids, "a member was restarted to grow the ensemble");
    let client = client_of(&servers).await;
    assert_eq!(client.get_data("/written-by-three").await.expect("read from five").0, b"hello");
    drop(client);

    // A member that is not the oldest dies: it leaves the voters, nobody restarts.
    let mut lost = servers.remove(1);
    lost.pod.kill();
    wait_voters(&servers).await;
    let pids: Vec<Option<u32>> = [0, 1].iter().map(|&n| java_pid(&servers[n])).collect();
    assert_eq!(pids, vec![first_pids[0], first_pids[2]], "a survivor was restarted");
    let client = client_of(&servers).await;
    client
        .create("/written-by-four", b"still", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .expect("write after the loss");
}
