//! A pod whose network disappears (its interface removed or down, as `docker network disconnect`
//! does) must stay idle and keep answering `/info` while its ZooKeeper session runs out. It used
//! to spin a core and stall every actor: the ZooKeeper client's reconnect loop never saw its
//! deadline pass when connects failed at once (see third_party/README.md).

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ochopod_integration::netns::Netns;
use ochopod_integration::zk::stop_child;

/// CPU time of a process in clock ticks (utime + stime).
fn ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("the pod is alive");
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `/info` from inside the namespace (over its loopback), or why not.
fn info_inside(net: &Netns) -> Result<serde_json::Value, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.name, "python3", "-c"])
        .arg(
            "import urllib.request, sys\n\
             sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8080/info', timeout=2).read().decode())",
        )
        .output()
        .map_err(|e| format!("python3 in the namespace: {e} (apt-get install python3)"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

struct NsPod {
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for NsPod {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_network_disappears_stays_idle_and_answers() {
    let net = Netns::create();
    let zk = ZkServer::start_on(&net.host_ip).expect("ZooKeeper on the veth's host end");
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("pod.yaml");
    fs::write(&yaml, "cluster: unplugged\nnamespace: test\nzk_session_timeout: 4s\nbinding: docker\nmodel: { damper: 0s }\nprocess: { command: sleep 3600 }\n").unwrap();
    let log = fs::File::create(dir.path().join("pod.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &net.name])
        .arg(BIN)
        .arg("run")
        .arg(&yaml)
        .current_dir(dir.path())
        .env("OCHOPOD_ZK", zk.connect_string())
        .env("OCHOPOD_DOCKER_IP", &net.ns_ip)
        .env("OCHOPOD_PLATFORM_ROOT", dir.path())
        .env("POD_DIR", dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("ip netns exec ochopod");
    let pid = child.id();
    let pod = NsPod { child: Some(child), _dir: dir };
    let log_of = || fs::read_to_string(pod._dir.path().join("pod.log")).unwrap_or_default();

    wait::until("the pod leading its cluster", SETTLE, || async {
        match info_inside(&net) {
            Ok(i) if i["state"] == "leader" && i["process"] == "running" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log_of()));

    net.unplug();
    // Past the session's deadline (4 s × 7/5) and well beyond: the pod must stay idle and answer.
    let start = Instant::now();
    let before = ticks(pid);
    let mut answers = 0;
    while start.elapsed() < Duration::from_secs(12) {
        // The client gives the server 2 s (its own start-up on a busy machine is not counted).
        let info = info_inside(&net).unwrap_or_else(|e| panic!("/info did not answer: {e}\n{}", log_of()));
        assert_eq!(info["process"], "running", "{info}");
        answers += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let used = ticks(pid) - before;
    let hz = 100; // USER_HZ on Linux
    assert!(
        used < 3 * hz,
        "the pod used {:.1} s of CPU in 12 s without a network (spinning)\n{}",
        used as f64 / hz as f64,
        log_of()
    );
    assert!(answers >= 10, "{answers} answers");
    assert!(log_of().contains("session lost"), "the session expired as it should:\n{}", log_of());
    drop(pod);
}
