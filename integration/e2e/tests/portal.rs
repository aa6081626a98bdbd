//! The portal on the Docker engine: the ZooKeeper-ensemble example deployed through the portal
//! with 3 containers, scaled to 5 (the ensemble answers `srvr`: 1 leader, 4 followers), scaled
//! back to 3 (the highest seqs went), then deleted: no container, no ZooKeeper node left. Before
//! that, a bad declaration creates nothing, and a deploy that cannot form in time removes what
//! it created.
//!
//! The portal runs on the host (`ochopod portal --platform docker`, the host CLI's binary), with
//! the test's network and labels: every container it creates carries the test's label, so the
//! run's guard removes them even if the test fails half-way.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ochopod_e2e::*;
use serde_json::Value;

const TOKEN: &str = "e2e-portal-token";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/zookeeper-ensemble/pod.yaml");

struct HostPortal(Child);

impl Drop for HostPortal {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn portal_cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(host_cli())
        .args(args)
        .env("OCHOPOD_PORTAL", url)
        .env("OCHOPOD_TOKEN", TOKEN)
        .env_remove("OCHOPOD_ZK")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", host_cli()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The cluster's containers as the engine lists them: (name, state).
fn members(run: &Run) -> Vec<String> {
    let filter = format!("label={TEST_LABEL}={}", run.id);
    docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--filter",
        "label=org.ochopod.cluster=demo.zookeeper",
        "--format",
        "{{.Names}}",
    ])
    .unwrap_or_default()
    .lines()
    .map(str::to_string)
    .collect()
}

fn mode(name: &str) -> Result<String, String> {
    let c = Container { name: name.to_string(), id: name.to_string() };
    let out = c.four(2181, "srvr")?;
    out.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::to_string)
        .ok_or_else(|| format!("{name}: srvr said {out:?}"))
}

async fn ensemble(run: &Run, size: usize) -> Vec<String> {
    until(&format!("an ensemble of {size} answering srvr"), Duration::from_secs(120), || async {
        let names = members(run);
        if names.len() != size {
            return Err(format!("{} containers", names.len()));
        }
        let modes: Result<Vec<String>, String> = names.iter().map(|n| mode(n)).collect();
        let mut modes = modes?;
        modes.sort();
        let leaders = modes.iter().filter(|m| *m == "leader").count();
        let followers = modes.iter().filter(|m| *m == "follower").count();
        if leaders == 1 && followers == size - 1 {
            Ok(modes)
        } else {
            Err(format!("modes {modes:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn seqs(url: &str) -> Vec<(u64, String)> {
    let (code, out, err) = portal_cli(url, &["grep", "demo.zookeeper", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    doc["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["seq"].as_u64().unwrap(), p["ip"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ensemble_deployed_scaled_and_deleted_through_the_portal() {
    let run = Run::new("portal");
    let net = run.network("net");
    let zk = run.coordination_zk(&net).await;
    let zk_at = format!("{}:2181", zk.ip(&net));
    let api = free_port();
    let url = format!("http://127.0.0.1:{api}");
    let root = run.dir.path().join("portal-root");
    std::fs::create_dir_all(&root).unwrap();
    let log = std::fs::File::create(run.dir.path().join("portal.log")).unwrap();
    let mut args: Vec<String> =
        ["portal", "--platform", "docker", "--network", &net.name, "--listen"].iter().map(|s| s.to_string()).collect();
    args.push(format!("127.0.0.1:{api}"));
    args.extend(["--zk".to_string(), zk_at.clone(), "--label".into(), format!("{TEST_LABEL}={}", run.id)]);
    if let Ok(r) = std::env::var("OCHOPOD_E2E_RUN") {
        args.extend(["--label".to_string(), format!("{RUN_LABEL}={r}")]);
    }
    let _portal = HostPortal(
        Command::new(host_cli())
            .args(&args)
            .env("OCHOPOD_PORTAL_TOKEN", TOKEN)
            .env("PORT_8080", free_port().to_string())
            // The host may itself be a container: the portal pod stays on the local binding.
            .env("OCHOPOD_PLATFORM_ROOT", &root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the portal"),
    );
    let portal_log = run.dir.path().join("portal.log");
    let show_log = || std::fs::read_to_string(&portal_log).unwrap_or_default();
    until("the portal to serve", Duration::from_secs(60), || async {
        get_text(&format!("{url}/healthz")).await.map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", show_log()));

    // A bad declaration creates nothing.
    let bad = run.file("bad.yaml", "cluster: zookeeper\nnamespace: demo\nmodel:\n  dampr: 2s\n");
    let (code, _, err) = portal_cli(&url, &["deploy", &bad, "--image", ZOOKEEPER, "-n", "3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.yaml:4:3"), "{err}");
    assert!(members(&run).is_empty());

    // A deploy that cannot form in time (1 s: the example's damper alone is 2 s) removes its
    // containers and its ZooKeeper nodes, and says so.
    let (code, out, err) = portal_cli(&url, &["deploy", EXAMPLE, "--image", ZOOKEEPER, "-n", "3", "-t", "1s"]);
    assert_eq!(code, 1, "a deploy that did not form: {out}{err}\n{}", show_log());
    assert!(err.contains("deploy of demo.zookeeper failed: not formed after 1s"), "{err}");
    assert!(err.contains("removed its 3 members and its ZooKeeper nodes"), "{err}");
    assert!(members(&run).is_empty(), "containers left: {:?}", members(&run));
    let (code, _, err) = portal_cli(&url, &["ls", "--all", "demo.zookeeper"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no cluster matches demo.zookeeper"), "ZooKeeper nodes left: {err}");

    let (code, out, err) = portal_cli(&url, &["deploy", EXAMPLE, "--image", ZOOKEEPER, "-n", "3", "-t", "180s"]);
    assert_eq!(code, 0, "deploy: {out}{err}\n{}", show_log());
    assert!(out.contains("demo.zookeeper: deployed, 3 members"), "{out}");
    ensemble(&run, 3).await;

    let (code, out, err) = portal_cli(&url, &["scale", "zookeeper", "5", "-t", "180s"]);
    assert_eq!(code, 0, "scale up: {out}{err}\n{}", show_log());
    ensemble(&run, 5).await;

    let before = seqs(&url);
    let mut sorted: Vec<u64> = before.iter().map(|(s, _)| *s).collect();
    sorted.sort();
    let (code, out, err) = portal_cli(&url, &["scale", "demo.zookeeper", "3", "-t", "180s"]);
    assert_eq!(code, 0, "scale down: {out}{err}\n{}", show_log());
    let after: Vec<u64> = seqs(&url).iter().map(|(s, _)| *s).collect();
    assert_eq!(after, sorted[..3].to_vec(), "the highest seqs went first");
    ensemble(&run, 3).await;

    // An unknown cluster names the ones that exist.
    let (code, _, err) = portal_cli(&url, &["delete", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the clusters that exist:") && err.contains("demo.zookeeper"), "{err}");

    let (code, out, err) = portal_cli(&url, &["delete", "zookeeper"]);
    assert_eq!(code, 0, "delete: {out}{err}\n{}", show_log());
    assert!(members(&run).is_empty(), "containers left: {:?}", members(&run));
    let (code, _, err) = portal_cli(&url, &["ls", "--all", "demo.zookeeper"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no cluster matches demo.zookeeper"), "ZooKeeper nodes left: {err}");
}
