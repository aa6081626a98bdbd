//! What used to wedge a cluster or let an attacker steer the leader, against a real ZooKeeper
//! and real pods (issue 13): ZooKeeper restored from nothing, a refusing pod, bad registrations,
//! a persistent node in `coordinator/`, an unusable dependency snapshot, `ok` replies awaited,
//! and `model.min_size`.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use zookeeper_client as zk;

async fn client(server: &ZkServer) -> zk::Client {
    zk::Client::connect(&server.connect_string()).await.expect("a ZooKeeper client")
}

fn log_of(pod: &Pod) -> String {
    std::fs::read_to_string(pod.dir.path().join("pod.log")).unwrap_or_default()
}

/// `ochopod_rounds_total{outcome="…"}` from a pod's /metrics.
async fn rounds(pod: &Pod, outcome: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", pod.address())).await.unwrap().text().await.unwrap();
    let prefix = format!("ochopod_rounds_total{{outcome=\"{outcome}\"}}");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

fn epoch_of(pod: &Pod) -> u64 {
    view_of(pod).expect("a configured pod").4.parse().expect("an epoch in the payload")
}

/// Registers a fake pod as a persistent node, as anyone who can write to ZooKeeper could.
async fn register(client: &zk::Client, cluster: &str, registration: serde_json::Value) {
    let dir = format!("/ochopod/clusters/test.{cluster}/pods");
    client.mkdir(&dir, &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.unwrap();
    let uuid = uuid::Uuid::new_v4();
    let options = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    client.create(&format!("{dir}/{uuid}."), registration.to_string().as_bytes(), &options).await.unwrap();
}

/// A loopback listener that counts the connections it gets (and what they sent).
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<String>>,
}

impl Trap {
    fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hits, seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(String::new())));
        let (h, s) = (hits.clone(), seen.clone());
        // Detached: it ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                stream.set_read_timeout(Some(Duration::from_millis(500))).ok();
                let mut buf = [0u8; 4096];
                if let Ok(n) = stream.read(&mut buf) {
                    s.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Trap { port, hits, seen }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_restored_from_nothing_does_not_wedge_the_cluster() {
    let mut server = ZkServer::start().expect("ZooKeeper");
    // Push the lock sequence up first, so that the pods apply an epoch far above the one a fresh
    // `coordinator/` gives.
    {
        let c = client(&server).await;
        let coordinator = "/ochopod/clusters/test.wipe/coordinator";
        c.mkdir(coordinator, &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.unwrap();
        let options = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        for _ in 0..20 {
            let (_, seq) = c.create(&format!("{coordinator}/filler-"), b"", &options).await.unwrap();
            c.delete(&format!("{coordinator}/filler-{seq}"), None).await.unwrap();
        }
    }
    let yaml = simple_yaml("wipe", "");
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    wait_settled(&refs, 3, SETTLE).await;
    let before = epoch_of(&pods[0]);
    assert!(before >= 20, "the pods applied epoch {before}");

    server.wipe_and_restart().expect("ZooKeeper back, empty");
    // Every session is gone with the data: the pods register again, a leader is elected with a
    // lock sequence below `before`, and must still configure the cluster.
    let res = wait::until("the cluster formed again above the old epoch", Duration::from_secs(60), || async {
        let c = client(&server).await;
        let hash = c.get_data("/ochopod/clusters/test.wipe/hash").await.map_err(|e| e.to_string())?.0;
        if hash.is_empty() {
            return Err("no hash yet".into());
        }
        let epochs: Vec<u64> = pods.iter().filter_map(|p| view_of(p).and_then(|v| v.4.parse().ok())).collect();
        if epochs.len() == 3 && epochs.iter().all(|e| *e > before) {
            Ok(epochs)
        } else {
            Err(format!("epochs {epochs:?}"))
        }
    })
    .await;
    if let Err(e) = res {
        for p in &pods {
            eprintln!("---- {}:\n{}", p.address(), p.log_tail(30));
        }
        panic!("{e}");
    }
    wait_settled(&refs, 3, SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_pod_makes_the_leader_back_off_not_spin() {
    let server = ZkServer::start().expect("ZooKeeper");
    let yaml = format!("{}hooks:\n  can_configure: echo 'not ready' >&2; exit 1\n", simple_yaml("refuse", ""));
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&server, &yaml)).collect();
    // Subscribe to both pods' events before anything is decided: whoever leads reports there.
    let mut streams = Vec::new();
    for p in &pods {
        let stream = wait::until("the /events stream", SETTLE, || async {
            reqwest::get(format!("http://{}/events", p.address())).await.map_err(|e| e.to_string())
        })
        .await
        .unwrap();
        streams.push(stream);
    }
    let leader = wait::until("a leader with a failed round", SETTLE, || async {
        for (n, p) in pods.iter().enumerate() {
            let info = p.info().await.map_err(|e| e.to_string())?;
            if info.state.starts_with("leader") && info.status.contains("configuration failed") {
                return Ok(n);
            }
        }
        Err("no leader reporting a failure yet".to_string())
    })
    .await
    .unwrap();
    let info = pods[leader].info().await.unwrap();
    assert!(info.status.contains("406"), "the reason is in /info: {:?}", info.status);

    // A fixed window, then a bound: without backoff this was ~170 rounds a second.
    let first = rounds(&pods[leader], "failed").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let more = rounds(&pods[leader], "failed").await - first;
    assert!(more <= 12, "{more} failed rounds in 6 s: the leader spins");

    // And /events says why.
    let mut stream = streams.swap_remove(leader);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut seen = String::new();
    let event = loop {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { panic!("no failed round event on /events; got {seen:?}") };
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(line) = seen.lines().find(|l| l.contains("\"phase\":\"failed\"") && l.ends_with('}')) {
            break line.to_string();
        }
    };
    assert!(event.contains("406"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_registrations_are_skipped_and_never_contacted() {
    let server = ZkServer::start().expect("ZooKeeper");
    let trap = Trap::start();
    let c = client(&server).await;
    let base = |ip: &str, ports: serde_json::Value| serde_json::json!({"ip": ip, "port": "8080", "ports": ports, "seq": 90, "cluster": "bad", "namespace": "test"});
    // The URL the leader built from this one used to be http://127.0.0.1:<trap>/steal?:1/control/…
    register(&c, "bad", base(&format!("127.0.0.1:{}/steal?", trap.port), serde_json::json!({"8080": 1}))).await;
    register(&c, "bad", base("127.0.0.1", serde_json::json!({"2181": 2181}))).await; // no control port
    register(&c, "bad", base("127.0.0.1", serde_json::json!({"8080": 0}))).await; // port 0
    register(&c, "bad", base("not an address", serde_json::json!({"8080": trap.port}))).await;

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cr3t-token-value\n").unwrap();
    let yaml = format!("{}control:\n  token_file: {}\n", simple_yaml("bad", ""), token_file.display());
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    // The two real pods are configured, with each other only.
    wait_settled(&refs, 2, SETTLE).await;
    for p in &pods {
        let view = std::fs::read_to_string(p.dir.path().join("view.txt")).unwrap();
        assert!(!view.contains("steal"), "{view}");
    }
    assert_eq!(trap.hits.load(Ordering::SeqCst), 0, "the leader connected to the trap: {}", trap.seen.lock().unwrap());
    let logs: String = pods.iter().map(log_of).collect();
    let warnings =
        logs.lines().filter(|l| l.contains("WARN") && l.contains("ignoring an invalid registration")).count();
    assert!(warnings >= 4, "each bad registration is warned about:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_node_in_coordinator_does_not_stop_the_election() {
    let server = ZkServer::start().expect("ZooKeeper");
    let c = client(&server).await;
    let coordinator = "/ochopod/clusters/test.stuck/coordinator";
    c.mkdir(coordinator, &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.unwrap();
    // Named like a contender, lowest in the queue, and never going away with a session.
    let squatter = format!("{coordinator}/{}__lock__0000000000", "0".repeat(32));
    c.create(&squatter, b"", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.unwrap();
    let yaml = simple_yaml("stuck", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&server, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    wait_settled(&refs, 2, SETTLE).await;
    let logs: String = pods.iter().map(log_of).collect();
    assert!(logs.contains("persistent node in coordinator/"), "the squatter is reported:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_dependency_snapshot_keeps_the_last_good_view() {
    let server = ZkServer::start().expect("ZooKeeper");
    let db = start_pod(&server, &simple_yaml("db", ""));
    wait_settled(&[&db], 1, SETTLE).await;
    let app_yaml = simple_yaml("app", "  depends_on: [db]")
        .replace("files:\n", "files:\n  - path: db.txt\n    template: \"{{ dependencies['db'] | length }}\"\n");
    let app = start_pod(&server, &app_yaml);
    wait_settled(&[&app], 1, SETTLE).await;
    let db_count = || std::fs::read_to_string(app.dir.path().join("db.txt")).unwrap_or_default();
    assert_eq!(db_count(), "1");
    let rounds_before = rounds(&app, "ok").await;

    let c = client(&server).await;
    c.set_data("/ochopod/clusters/test.db/snapshot", b"{not json", None).await.unwrap();
    wait::until("the app's leader to report the unusable snapshot", SETTLE, || async {
        if log_of(&app).contains("unusable dependency snapshot") {
            Ok(())
        } else {
            Err(format!("db.txt says {:?}", db_count()))
        }
    })
    .await
    .unwrap();
    assert_eq!(db_count(), "1", "the dependents were reconfigured with no db pods");
    assert_eq!(rounds(&app, "ok").await, rounds_before, "a round ran on an unreadable snapshot");
    assert_eq!(app.info().await.unwrap().state, "leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_settled_only_after_its_configured_hooks_ran() {
    let server = ZkServer::start().expect("ZooKeeper");
    let yaml = format!("{}hooks:\n  configured: sleep 2; touch configured.done\n", simple_yaml("hooks", ""));
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&server, &yaml)).collect();
    let c = client(&server).await;
    wait::until("the hash written", SETTLE, || async {
        match c.get_data("/ochopod/clusters/test.hooks/hash").await {
            Ok((hash, _)) if !hash.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    for p in &pods {
        assert!(p.dir.path().join("configured.done").exists(), "the hash was written before `configured` ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_round_before_min_size_pods_are_registered() {
    let server = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("min", "  min_size: 3")
        .replace("echo \"start $OCHOPOD_INDEX\"", "echo \"start $OCHOPOD_INDEX $OCHOPOD_SIZE\"")
        .replace("process:\n", "process:\n  strict: true\n");
    let first = start_pod(&server, &yaml);
    let waiting = |n: usize| {
        let first = &first;
        async move {
            wait::until(&format!("the leader waiting with {n} registered"), SETTLE, || async {
                let info = first.info().await.map_err(|e| e.to_string())?;
                let want = format!("* waiting for 3 pods ({n} registered)");
                if info.status == want {
                    Ok(())
                } else {
                    Err(format!("{} / {}", info.state, info.status))
                }
            })
            .await
            .unwrap()
        }
    };
    waiting(1).await;
    let second = start_pod(&server, &yaml);
    waiting(2).await;
    let third = start_pod(&server, &yaml);
    wait_settled(&[&first, &second, &third], 3, SETTLE).await;
    for p in [&first, &second, &third] {
        let starts = std::fs::read_to_string(p.dir.path().join("starts.log")).unwrap();
        assert!(starts.lines().all(|l| l.ends_with(" 3")), "started with fewer than 3 members: {starts}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let server = ZkServer::start().expect("ZooKeeper");
    let pod = start_pod(&server, &simple_yaml("plain", ""));
    wait_settled(&[&pod], 1, SETTLE).await;
    let log = log_of(&pod);
    assert!(log.contains("configuration complete"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in a redirected log:\n{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_hash_is_the_one_the_original_computes() {
    use std::io::Write;
    let server = ZkServer::start().expect("ZooKeeper");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&server, &simple_yaml("hashed", ""))).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let c = client(&server).await;
    let (snapshot, _) = c.get_data("/ochopod/clusters/test.hashed/snapshot").await.unwrap();
    let (hash, _) = c.get_data("/ochopod/clusters/test.hashed/hash").await.unwrap();
    // What the original's leader does with the same pods (`reactive.py`'s `_md5`, sort_keys=True).
    let script = "import sys, json, hashlib\n\
                  s = {'local': json.load(sys.stdin)}\n\
                  d = hashlib.md5(json.dumps(s, sort_keys=True).encode()).digest()\n\
                  print(':'.join('%02x' % b for b in d))";
    let mut python = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to check the hash against the original's: apt-get install python3");
    python.stdin.take().unwrap().write_all(&snapshot).unwrap();
    let out = python.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&hash), String::from_utf8_lossy(&out.stdout).trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_hook_reads_on_stdin_renders_the_same_with_ochopod_render() {
    let server = ZkServer::start().expect("ZooKeeper");
    let yaml = format!("{}hooks:\n  configured: cat > seen.json\n", simple_yaml("stdin", ""));
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&server, &yaml)).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let dir = pods[0].dir.path();
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("seen.json")).unwrap()).expect("the hook read JSON");
    assert!(seen["pods"].is_array() && seen["pods"][0]["key"].is_string(), "{seen}");
    let out = std::process::Command::new(bin())
        .arg("render")
        .arg(dir.join("pod.yaml"))
        .arg("--cluster")
        .arg(dir.join("seen.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8_lossy(&out.stdout).to_string();
    let view = std::fs::read_to_string(dir.join("view.txt")).unwrap();
    assert!(rendered.contains(&view), "render shows {rendered}\nthe pod has {view}");
}
