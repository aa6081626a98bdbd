//! Shared fixtures for the scenario tests: a real ZooKeeper and real `ochopod` pods.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ochopod_api::Info;

pub mod pki;
pub mod portal;
pub use ochopod_integration::pods::{Pod, PodSpec};
pub use ochopod_integration::zk::ZkServer;
#[allow(unused_imports)]
pub use ochopod_integration::{settle, wait};

pub const BIN: &str = env!("CARGO_BIN_EXE_ochopod");

/// Generous: debug builds on 2 busy cores.
pub const SETTLE: Duration = Duration::from_secs(40);

pub fn bin() -> &'static Path {
    Path::new(BIN)
}

pub fn start_pod(zk: &ZkServer, yaml: &str) -> Pod {
    Pod::start(PodSpec::new(bin(), &zk.connect_string(), yaml)).expect("start pod")
}

/// A pod whose process appends `start <index>` to `starts.log` and sleeps, and whose rendered
/// `view.txt` shows what it was configured with: `<key> <index> <seq> <size> <epoch>`.
pub fn simple_yaml(cluster: &str, extra_model: &str) -> String {
    format!(
        r#"cluster: {cluster}
namespace: test
zk_session_timeout: 5s
model:
  damper: 0s
  grace: 5s
{extra_model}
process:
  command: echo "start $OCHOPOD_INDEX" >> starts.log; exec sleep 3600
  shell: true
  grace: 2s
files:
  - path: view.txt
    template: "{{{{ key }}}} {{{{ index }}}} {{{{ seq }}}} {{{{ size }}}} {{{{ epoch }}}}"
"#
    )
}

/// What `view.txt` says: (key, index, seq, size, epoch).
pub fn view_of(pod: &Pod) -> Option<(String, usize, u64, usize, String)> {
    let text = std::fs::read_to_string(pod.dir.path().join("view.txt")).ok()?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() != 5 {
        return None;
    }
    Some((f[0].to_string(), f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?, f[4].to_string()))
}

/// How many times the pod's process was started.
pub fn starts_of(pod: &Pod) -> usize {
    std::fs::read_to_string(pod.dir.path().join("starts.log")).map(|t| t.lines().count()).unwrap_or(0)
}

pub async fn infos(pods: &[&Pod]) -> Result<Vec<Info>, String> {
    let mut out = Vec::new();
    for p in pods {
        out.push(p.info().await.map_err(|e| format!("{}: {e}", p.address()))?);
    }
    Ok(out)
}

/// Waits until the pods form a settled cluster of `size` (the harness's one definition,
/// DESIGN.md §8: all running, one plain `leader`, the rest `follower`, `size` registrations and
/// `size` pods in the snapshot). Returns the index (in `pods`) of the leader; on timeout prints
/// the pods' logs and panics.
pub async fn wait_settled(pods: &[&Pod], size: usize, timeout: Duration) -> usize {
    let zk = ochopod_integration::settle::client(&pods[0].zk).await.expect("ZooKeeper");
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    match settle::wait_settled(pods[0].client(), &zk, &addresses, size, timeout, |_| true).await {
        Ok(s) => s.leader,
        Err(e) => {
            for p in pods {
                eprintln!("---- pod {} log tail:\n{}", p.address(), p.log_tail(40));
            }
            panic!("{e}");
        }
    }
}
