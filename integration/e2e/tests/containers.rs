//! The end-to-end scenarios of `make e2e` (issue 12): pods as containers on the machine's Docker
//! engine, ochopod as PID 1 (or a sidecar), the images of `make image`, a coordination ZooKeeper
//! container and a network of the test's own. Each scenario asserts with the systems' own tools
//! run inside the containers (`srvr`, `mntr`, `ps`, `/events` on loopback) or with a request to
//! the app, and leaves nothing behind ([`Run`]'s guard); a failing one prints every container's
//! log.

use std::time::{Duration, Instant};

use ochopod_e2e::*;
use serde_json::Value;

/// The light pods' ZooKeeper session timeout: what a killed pod costs before it is dropped.
const SESSION: Duration = Duration::from_secs(4);
/// Generous bounds for formation on 2 busy cores; the timed claims have their own, tight ones.
const SETTLE: Duration = Duration::from_secs(90);

/// A light pod (the runtime image) of `cluster`. With `publish`, its control and web ports are
/// published on free host ports and announced the way a platform that remaps ports does
/// (`PORT_<n>` and the host's address, `OCHOPOD_DOCKER_IP`); otherwise peers use its own address.
fn light_pod(run: &Run, net: &Net, zk: &str, decl: &str, i: usize, publish: bool) -> Pod {
    let mut spec = Spec::new(&format!("pod{i}"), OCHOPOD)
        .network(net)
        .hostname(&format!("pod-{i}"))
        .env("OCHOPOD_ZK", zk)
        .mount(format!("{decl}:/e2e/pod.yaml:ro"));
    let mut control = None;
    if publish {
        let (hc, hs) = (free_port(), free_port());
        spec = spec
            .publish(hc, 8080)
            .publish(hs, 9000)
            .env("PORT_8080", hc)
            .env("PORT_9000", hs)
            .env("OCHOPOD_DOCKER_IP", net.gateway);
        control = Some(format!("http://{}:{hc}", net.gateway));
    }
    let c = run.start(spec.cmd(&["run", "/e2e/pod.yaml"]));
    let control = control.unwrap_or_else(|| format!("http://{}:8080", c.ip(net)));
    Pod { c, control }
}

fn zk_address(zk: &Container, net: &Net) -> String {
    format!("{}:2181", zk.ip(net))
}

async fn no_zombies(pods: &[&Pod]) {
    until("no zombie in any pod", Duration::from_secs(5), || async {
        for p in pods {
            let z = p.c.zombies();
            if !z.is_empty() {
                return Err(format!("{}: zombies {z:?}\n{:?}", p.c.name, p.c.processes()));
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `srvr`'s `Mode:` of the ZooKeeper server in a pod.
fn mode(c: &Container) -> Result<String, String> {
    let out = c.four(2181, "srvr")?;
    out.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::to_string)
        .ok_or_else(|| format!("{}: srvr said {out:?}", c.name))
}

/// `mntr`'s `zk_synced_followers` on the ZooKeeper leader.
fn synced_followers(c: &Container) -> Result<usize, String> {
    let out = c.four(2181, "mntr")?;
    out.lines()
        .find_map(|l| l.strip_prefix("zk_synced_followers\t"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{}: mntr said {out:?}", c.name))
}

fn zk_cli(c: &Container, args: &str) -> Result<String, String> {
    c.exec(&["bash", "-c", &format!("/usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181 {args} 2>&1")])
}

/// Scenario 1: Kubernetes-style addressing (each pod its own address, the downward API's
/// variables, no remap). Three ensemble pods form a ZooKeeper ensemble; two more containers
/// scale it to five; a znode written before is read after, on a new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_forms_and_scales_from_3_to_5() {
    let run = Run::new("ensemble");
    let net = run.network("net");
    let zk = run.coordination_zk(&net).await;
    let zk_at = zk_address(&zk, &net);
    let prefix = net.gateway.octets();
    let start = |i: u8| {
        // What Kubernetes hands a container: its own address and names through the downward API.
        let ip = format!("{}.{}.{}.{}", prefix[0], prefix[1], prefix[2], 10 + i);
        let c = run.start(
            Spec::new(&format!("zk{i}"), ZOOKEEPER)
                .network(&net)
                .arg("--ip")
                .arg(ip.clone())
                .hostname(&format!("zookeeper-{i}"))
                .env("OCHOPOD_ZK", &zk_at)
                .env("POD_IP", &ip)
                .env("POD_NAME", format!("zookeeper-{i}"))
                .env("POD_NAMESPACE", "e2e")
                .env("NODE_NAME", "docker")
                .env("HOST_IP", net.gateway),
        );
        Pod { c, control: format!("http://{ip}:8080") }
    };
    let mut pods: Vec<Pod> = (1..=3).map(start).collect();

    let healthy = |n: usize, pods: Vec<Pod>| async move {
        until(&format!("a healthy {n}-server ensemble"), Duration::from_secs(240), || async {
            let mut leaders = Vec::new();
            for p in &pods {
                let info = p.info().await?;
                if info["process"] != "running" {
                    return Err(format!("{}: process {}", p.c.name, info["process"]));
                }
                match mode(&p.c)?.as_str() {
                    "leader" => leaders.push(p),
                    "follower" => {}
                    m => return Err(format!("{}: mode {m}", p.c.name)),
                }
            }
            let [leader] = leaders.as_slice() else { return Err(format!("{} ZooKeeper leaders", leaders.len())) };
            let synced = synced_followers(&leader.c)?;
            if synced != n - 1 {
                return Err(format!("{synced} synced followers"));
            }
            // The ochopod leader's probe (mntr on every server) says the same.
            let statuses: Vec<String> = {
                let mut s = Vec::new();
                for p in &pods {
                    s.push(p.info().await?["status"].as_str().unwrap_or("").to_string());
                }
                s
            };
            let want = format!("{n} servers, 1 leader, {} synced followers", n - 1);
            if !statuses.contains(&want) {
                return Err(format!("probe statuses {statuses:?}"));
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    };

    let t = Instant::now();
    healthy(3, pods.clone()).await;
    eprintln!("3 servers healthy in {:?}", t.elapsed());
    // The kubernetes binding registered each pod's own address and its container ports.
    let info = pods[0].info().await.unwrap();
    assert_eq!(info["ip"], pods[0].control.trim_start_matches("http://").trim_end_matches(":8080"));
    assert_eq!(info["ports"]["2181"], 2181);
    assert_eq!(info["task"], "zookeeper-1");

    let created = zk_cli(&pods[0].c, "create /e2e survived").unwrap();
    assert!(created.contains("Created /e2e"), "{created}");

    let t = Instant::now();
    pods.extend((4..=5).map(start));
    healthy(5, pods.clone()).await;
    eprintln!("5 servers healthy in {:?}", t.elapsed());
    let got = zk_cli(&pods[4].c, "get /e2e").unwrap();
    assert!(got.lines().any(|l| l.trim() == "survived"), "a new member reads the znode: {got}");
    // A check or the probe may have exited a moment ago: PID 1 must reap it, not at once.
    no_zombies(&pods.iter().collect::<Vec<_>>()).await;
}

/// Scenario 2: Marathon-style remapping. Each pod's control and web ports are published on free
/// host ports and announced as `PORT_<n>` with the host's address: the docker binding registers
/// them, the leader configures every pod at its remapped port, and the CLI on the host drives
/// them through the same ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remapped_ports_reach_every_pod_and_the_host_cli_drives_them() {
    let run = Run::new("remap");
    let net = run.network("net");
    let zk = run.coordination_zk(&net).await;
    let zk_at = zk_address(&zk, &net);
    let decl = run.file("pod.yaml", &light_yaml("remap", SESSION));
    let pods: Vec<Pod> = (1..=3).map(|i| light_pod(&run, &net, &zk_at, &decl, i, true)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    settled(&refs, true, SETTLE).await;

    // The registrations, as the host CLI reads them from ZooKeeper.
    let (code, out, err) = cli(&["grep", "e2e.remap", "--zk", &zk_at, "--json"]);
    assert_eq!(code, 0, "ochopod grep: {out}{err}");
    let found: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let addresses: Vec<&str> =
        found["pods"].as_array().into_iter().flatten().filter_map(|p| p["address"].as_str()).collect();
    for (i, p) in pods.iter().enumerate() {
        let info = p.info().await.unwrap();
        let hc: u16 = p.control.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(info["ip"], net.gateway.to_string(), "registered at the host's address");
        assert_eq!(info["ports"]["8080"], hc, "control port remapped: {info}");
        assert_eq!(info["node"], format!("pod-{}", i + 1), "node is the container's hostname");
        let address = format!("{}:{hc}", net.gateway);
        assert!(addresses.contains(&address.as_str()), "grep lists {address}: {found}");
        // The web port, as published, serves what this pod was configured with.
        let hs = info["ports"]["9000"].as_u64().unwrap();
        let page = get_text(&format!("http://{}:{hs}/", net.gateway)).await.unwrap();
        assert_eq!(page, format!("pod {} of 3", info["seq"]), "{}", p.c.name);
    }

    // The CLI drives one pod: off, then on, through its remapped control port.
    let seq = pods[1].info().await.unwrap()["seq"].as_u64().unwrap().to_string();
    let (code, out, err) = cli(&["off", "e2e.remap", "-i", &seq, "--zk", &zk_at]);
    assert_eq!(code, 0, "ochopod off: {out}{err}");
    assert_eq!(pods[1].info().await.unwrap()["process"], "stopped");
    let (code, out, err) = cli(&["on", "e2e.remap", "-i", &seq, "--zk", &zk_at]);
    assert_eq!(code, 0, "ochopod on: {out}{err}");
    until("the pod to run again", Duration::from_secs(20), || async {
        match pods[1].info().await?["process"].as_str() {
            Some("running") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let (code, out, err) = cli(&["ls", "e2e.remap", "--zk", &zk_at]);
    assert_eq!(code, 0, "ochopod ls: {out}{err}");
    assert!(out.contains("3/3"), "{out}");
}

/// Scenario 3: `docker stop` of the leader's container: it exits 0 within its grace with its
/// process tree torn down, and a survivor leads within 1 s. `docker kill` (SIGKILL of PID 1) of
/// the next leader: a survivor leads within the session timeout + 0.5 s. No zombie anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_stopped_and_killed() {
    let run = Run::new("failover");
    let net = run.network("net");
    let zk = run.coordination_zk(&net).await;
    let zk_at = zk_address(&zk, &net);
    let decl = run.file("pod.yaml", &light_yaml("failover", SESSION));
    let pods: Vec<Pod> = (1..=3).map(|i| light_pod(&run, &net, &zk_at, &decl, i, false)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let leader = settled(&refs, true, SETTLE).await;
    // PID 1 reaped the orphan the process left behind.
    no_zombies(&refs).await;
    let tree = pods[leader].c.processes();
    assert!(tree.iter().any(|p| p.0 == 1 && p.2.contains("ochopod run")), "ochopod is PID 1: {tree:?}");
    assert!(tree.iter().any(|p| p.2.contains("httpd")) && tree.iter().any(|p| p.2.contains("sleep 3600")), "{tree:?}");

    // docker stop: SIGTERM to PID 1, SIGKILL after 30 s (never reached: the grace is 3 s).
    let stopped = &pods[leader].c;
    let (res, took) = timed(|| docker(&["stop", "-t", "30", &stopped.name]));
    res.unwrap();
    let after_stop = Instant::now();
    let rest: Vec<&Pod> = pods.iter().enumerate().filter(|(k, _)| *k != leader).map(|(_, p)| p).collect();
    until("a new leader after docker stop", Duration::from_secs(10), || async {
        for p in &rest {
            if p.info().await?["state"].as_str().is_some_and(|s| s.starts_with("leader")) {
                return Ok(());
            }
        }
        Err("no leader yet".into())
    })
    .await
    .unwrap();
    let handover = after_stop.elapsed();
    eprintln!("docker stop took {took:?}; new leader {handover:?} after");
    assert_eq!(stopped.state(), ("exited".to_string(), 0), "the stopped pod exits 0");
    assert!(took < Duration::from_secs(8), "stopped within the grace (3 s) and the session close: {took:?}");
    assert!(handover <= Duration::from_secs(1), "new leader {handover:?} after the container exited");
    // The shutdown order ran to its end: SIGTERM received, the process (group) torn down and
    // seen to exit, the session closed, then exit.
    let logs = stopped.logs();
    let after_term = logs.split_once("shutting down").map(|(_, rest)| rest).unwrap_or_else(|| panic!("{logs}"));
    let exited = after_term.find("process exited").unwrap_or_else(|| panic!("no process exit: {logs}"));
    let closed = after_term.find("ZooKeeper session closed").unwrap_or_else(|| panic!("{logs}"));
    assert!(exited < closed && after_term.contains("stopped elapsed_ms"), "{logs}");
    let rest_pods: Vec<Pod> = rest.iter().map(|p| (*p).clone()).collect();
    let rest: Vec<&Pod> = rest_pods.iter().collect();
    let leader2 = settled(&rest, true, SETTLE).await;

    // docker kill: SIGKILL of PID 1; the session has to expire on the ZooKeeper side.
    let killed = &rest[leader2].c;
    docker(&["kill", &killed.name]).unwrap();
    let after_kill = Instant::now();
    let survivor = rest[1 - leader2];
    until("a new leader after docker kill", SESSION + Duration::from_secs(10), || async {
        match survivor.info().await?["state"].as_str() {
            Some(s) if s.starts_with("leader") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let failover = after_kill.elapsed();
    eprintln!("docker kill: new leader {failover:?} after (session {SESSION:?})");
    assert!(failover <= SESSION + Duration::from_millis(500), "{failover:?}");
    settled(&[survivor], true, SETTLE).await;
    no_zombies(&[survivor]).await;
}

/// One pod's leadership, from its events: `[start, end)` in unix ms and the epoch.
#[derive(Debug)]
struct Reign {
    pod: String,
    epoch: u64,
    start: u64,
    end: u64,
}

/// Leadership periods from a pod's events. A pod acts as leader from `leadership leader:true`
/// until `leadership leader:false` or its session stops being connected (leader work stops at
/// once then). `leading` says whether it led when the events started.
fn reigns(pod: &str, events: &[Value], leading: Option<u64>) -> Vec<Reign> {
    let mut out = Vec::new();
    let mut current: Option<(u64, u64)> = leading.map(|epoch| (0, epoch));
    for e in events {
        let at = e["at_ms"].as_u64().unwrap_or(0);
        let ends = match e["event"].as_str() {
            Some("leadership") if e["leader"] == true => {
                if let Some((start, epoch)) = current.take() {
                    out.push(Reign { pod: pod.into(), epoch, start, end: at });
                }
                current = Some((at, e["epoch"].as_u64().unwrap_or(0)));
                false
            }
            Some("leadership") => true,
            Some("session") => e["state"] != "connected",
            _ => false,
        };
        if ends {
            if let Some((start, epoch)) = current.take() {
                out.push(Reign { pod: pod.into(), epoch, start, end: at });
            }
        }
    }
    if let Some((start, epoch)) = current {
        out.push(Reign { pod: pod.into(), epoch, start, end: u64::MAX });
    }
    out
}

/// Scenario 4: the leader is cut off its network (`docker network disconnect`) for longer than
/// the session timeout, then reconnected at its address. The others drop it and elect a new
/// leader; its process keeps running (the declaration does not say otherwise); it rejoins with
/// the same seq; at no moment do two pods act as leader, and epochs only rise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_is_dropped_and_rejoins_with_its_seq() {
    let run = Run::new("partition");
    let net = run.network("net");
    let zk = run.coordination_zk(&net).await;
    let zk_at = zk_address(&zk, &net);
    let decl = run.file("pod.yaml", &light_yaml("partition", SESSION));
    let pods: Vec<Pod> = (1..=3).map(|i| light_pod(&run, &net, &zk_at, &decl, i, false)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let leader = settled(&refs, true, SETTLE).await;
    let events: Vec<Events> = pods.iter().map(|p| p.c.follow_events(8080)).collect();
    let (seq, _, epoch0) = pods[leader].view().unwrap();
    let epoch0: u64 = epoch0.parse().unwrap();
    let cut = &pods[leader];
    let ip = cut.c.ip(&net);
    let workload =
        |p: &Pod| p.c.processes().into_iter().find(|(_, _, cmd)| cmd.contains("sleep 3600")).map(|(pid, _, _)| pid);
    let pid_before = workload(cut).expect("the cut pod's process");

    docker(&["network", "disconnect", &net.name, &cut.c.name]).unwrap();
    let t_cut = Instant::now();
    let rest: Vec<&Pod> = pods.iter().enumerate().filter(|(k, _)| *k != leader).map(|(_, p)| p).collect();
    settled(&rest, true, SETTLE).await;
    eprintln!("the other two settled without it {:?} after the cut", t_cut.elapsed());
    // Cut off for longer than the session timeout, whatever the others did.
    while t_cut.elapsed() < SESSION + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(workload(cut), Some(pid_before), "its process is kept while cut off");

    docker(&["network", "connect", "--ip", &ip.to_string(), &net.name, &cut.c.name]).unwrap();
    let t_back = Instant::now();
    settled(&refs, true, SETTLE).await;
    eprintln!("all three settled {:?} after the reconnection", t_back.elapsed());
    let (seq_after, size, _) = cut.view().unwrap();
    assert_eq!((seq_after, size), (seq, 3), "rejoined with the same seq");
    assert_eq!(cut.info().await.unwrap()["seq"], seq);
    assert_eq!(workload(cut), Some(pid_before), "the same process throughout (never restarted)");
    let states: Vec<Value> = events[leader].of("process");
    assert!(states.is_empty(), "the cut pod's process never changed state: {states:?}");

    // Leadership periods never overlap, and each leader's epoch is above the one before.
    let mut all = Vec::new();
    for (k, e) in events.iter().enumerate() {
        all.extend(reigns(&e.pod, &e.all(), (k == leader).then_some(epoch0)));
    }
    all.sort_by_key(|r| r.start);
    eprintln!("leadership: {all:?}");
    assert!(all.len() >= 2, "the cut leader's reign and a new one: {all:?}");
    for w in all.windows(2) {
        assert!(w[0].end <= w[1].start, "{} and {} led at once: {:?} and {:?}", w[0].pod, w[1].pod, w[0], w[1]);
        assert!(w[1].epoch > w[0].epoch, "epochs rise: {:?} then {:?}", w[0], w[1]);
    }
    // No round by the cut pod while it was cut off.
    let cut_rounds = events[leader].of("round");
    assert!(
        cut_rounds.iter().all(|r| r["epoch"].as_u64() != Some(epoch0) || r["phase"] != "started"),
        "the cut leader started a round: {cut_rounds:?}"
    );
    no_zombies(&refs).await;
}

/// Scenario 5: a sidecar. An nginx proxy container and an ochopod sidecar sharing its network
/// and process namespaces and a volume: the sidecar renders the proxy's upstreams from the `web`
/// cluster and makes nginx reload; when `web` scales from 1 to 2, the proxy serves both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_reloads_the_app_when_its_dependency_scales() {
    let run = Run::new("sidecar");
    let net = run.network("net");
    let zk = run.coordination_zk(&net).await;
    let zk_at = zk_address(&zk, &net);
    // A `web` pod: a web server answering its name, and the example's registration-only sidecar
    // (web.yaml) in its network namespace.
    let web = |i: u32| {
        let script = format!(
            "mkdir -p /srv && echo 'hello from web-{i}' > /srv/index.html && exec python3 -m http.server -d /srv 8080"
        );
        let app = run.start(
            Spec::new(&format!("web{i}"), SIDECAR)
                .network(&net)
                .hostname(&format!("web-{i}"))
                .arg("--entrypoint")
                .arg("bash")
                .cmd(&["-c", &script]),
        );
        run.start(
            Spec::new(&format!("web{i}-ochopod"), SIDECAR)
                .arg("--network")
                .arg(format!("container:{}", app.name))
                .env("OCHOPOD_ZK", &zk_at)
                .cmd(&["/opt/ochopod/web.yaml"]),
        );
        app
    };
    web(1);

    let shared = run.volume("shared");
    let proxy = run.start(
        Spec::new("proxy", SIDECAR)
            .network(&net)
            .hostname("proxy")
            .mount(format!("{shared}:/etc/nginx/ochopod"))
            .arg("--entrypoint")
            .arg("bash")
            .cmd(&["/opt/ochopod/proxy.sh"]),
    );
    run.start(
        Spec::new("proxy-ochopod", SIDECAR)
            .arg("--network")
            .arg(format!("container:{}", proxy.name))
            .arg("--pid")
            .arg(format!("container:{}", proxy.name))
            .mount(format!("{shared}:/opt/ochopod/shared"))
            .env("OCHOPOD_ZK", &zk_at)
            .env("RELOAD_NGINX", "1"),
    );
    let url = format!("http://{}:8000/", proxy.ip(&net));
    let answers = |want: Vec<&'static str>| {
        let url = url.clone();
        async move {
            until(&format!("the proxy to serve {want:?}"), SETTLE, || async {
                let mut seen = Vec::new();
                for _ in 0..4 {
                    seen.push(get_text(&url).await?.trim().to_string());
                }
                if want.iter().all(|w| seen.iter().any(|s| s == w)) && seen.iter().all(|s| want.contains(&s.as_str())) {
                    Ok(())
                } else {
                    Err(format!("{seen:?}"))
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    };
    let t = Instant::now();
    answers(vec!["hello from web-1"]).await;
    eprintln!("the proxy served web-1 {:?} after it started", t.elapsed());
    let t = Instant::now();
    web(2);
    answers(vec!["hello from web-1", "hello from web-2"]).await;
    eprintln!("the proxy served both {:?} after web-2 started", t.elapsed());
    let reloads = proxy.exec(&["cat", "/etc/nginx/ochopod/reloads.log"]).unwrap();
    assert!(reloads.lines().count() >= 2, "{reloads}");
    // nginx was reloaded, never restarted: its master is still the container's first process.
    let master = proxy.processes().into_iter().find(|p| p.0 == 1).map(|p| p.2).unwrap_or_default();
    assert!(master.starts_with("nginx: master"), "PID 1 of the proxy: {master}");
}

/// Scenario 6: `ochopod reconfigure` on the host, against the published control ports, starts a
/// round that every pod's events show (a `configured` with the round's epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_cli_reconfigure_runs_a_round_on_every_pod() {
    let run = Run::new("reconfigure");
    let net = run.network("net");
    let zk = run.coordination_zk(&net).await;
    let zk_at = zk_address(&zk, &net);
    let decl = run.file("pod.yaml", &light_yaml("reconfigure", SESSION));
    let pods: Vec<Pod> = (1..=3).map(|i| light_pod(&run, &net, &zk_at, &decl, i, true)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let leader = settled(&refs, true, SETTLE).await;
    let events: Vec<Events> = pods.iter().map(|p| p.c.follow_events(8080)).collect();
    // The streams are open once each pod counts a subscriber.
    until("every /events stream open", Duration::from_secs(10), || async {
        for p in &pods {
            let m = get_text(&format!("{}/metrics", p.control)).await?;
            if !m.lines().any(|l| l.starts_with("ochopod_event_subscribers") && !l.ends_with(" 0")) {
                return Err(format!("{}: no subscriber yet", p.c.name));
            }
        }
        Ok(())
    })
    .await
    .unwrap();
    let (_, _, before) = pods[leader].view().unwrap();

    let (code, out, err) = cli(&["reconfigure", "e2e.reconfigure", "--zk", &zk_at]);
    assert_eq!(code, 0, "ochopod reconfigure: {out}{err}");
    let epoch = until("a finished round on the leader", Duration::from_secs(20), || async {
        events[leader]
            .of("round")
            .iter()
            .find(|r| r["phase"] == "done")
            .and_then(|r| r["epoch"].as_u64())
            .ok_or_else(|| format!("{:?}", events[leader].all()))
    })
    .await
    .unwrap();
    assert_eq!(before, epoch.to_string(), "the same leader: the same epoch");
    until("a configured event on every pod", Duration::from_secs(20), || async {
        for e in &events {
            if !e.of("configured").iter().any(|c| c["epoch"].as_u64() == Some(epoch) && c["size"] == 3) {
                return Err(format!("{}: {:?}", e.pod, e.all()));
            }
        }
        Ok(())
    })
    .await
    .unwrap();
}
