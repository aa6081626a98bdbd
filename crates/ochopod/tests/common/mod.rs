//! Shared fixtures for the scenario tests: a real ZooKeeper and real `ochopod` pods.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ochopod_api::Info;
pub use ochopod_integration::pods::{Pod, PodSpec};
pub use ochopod_integration::wait;
pub use ochopod_integration::zk::ZkServer;

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

/// Waits until every pod runs its process, has been configured with `size` members, and exactly
/// one pod leads with no configuration pending. Returns the index (in `pods`) of the leader.
pub async fn wait_settled(pods: &[&Pod], size: usize, timeout: Duration) -> usize {
    let res = wait::until(&format!("{} pods settled with size {size}", pods.len()), timeout, || async {
        let infos = infos(pods).await?;
        for (p, i) in pods.iter().zip(&infos) {
            if i.process != "running" {
                return Err(format!("{} process {}", p.address(), i.process));
            }
            match view_of(p) {
                Some(v) if v.3 == size => {}
                other => return Err(format!("{} view {other:?}", p.address())),
            }
        }
        let leaders: Vec<usize> =
            infos.iter().enumerate().filter(|(_, i)| i.state.starts_with("leader")).map(|(n, _)| n).collect();
        match leaders.as_slice() {
            [n] if infos[*n].state == "leader" => {}
            _ => return Err(format!("states {:?}", infos.iter().map(|i| &i.state).collect::<Vec<_>>())),
        }
        let followers = infos.iter().filter(|i| i.state == "follower").count();
        if followers != pods.len() - 1 {
            return Err(format!("{followers} followers"));
        }
        Ok(leaders[0])
    })
    .await;
    match res {
        Ok(n) => n,
        Err(e) => {
            for p in pods {
                eprintln!("---- pod {} log tail:\n{}", p.address(), p.log_tail(40));
            }
            panic!("{e}");
        }
    }
}
