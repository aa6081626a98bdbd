//! Secrets a pod is given stay with ochopod: ZooKeeper credentials from `OCHOPOD_ZK` or
//! `ochopod_zk` reach neither the child, nor the hooks, nor the probe, nor the templates' `env`,
//! nor what `ochopod render` prints.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ochopod_integration::pods::{Pod, PodSpec};
use ochopod_integration::wait;
use ochopod_integration::zk::ZkServer;

const BIN: &str = env!("CARGO_BIN_EXE_ochopod");
const PASSWORD: &str = "pa55-w0rd";

/// Every line of `path` once it has `lines` of them.
async fn lines_of(path: &Path, lines: usize) -> String {
    wait::until(&format!("{} to be written", path.display()), Duration::from_secs(40), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines && text.ends_with('\n') {
            Ok(text)
        } else {
            Err(format!("{text:?}"))
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_credentials_reach_no_child_hook_probe_or_template() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // ZooKeeper's digest provider accepts any `user:password`: the pod connects with them.
    let url = format!("zk://ochopod:{PASSWORD}@{}", zk.connect_string());
    let show = "OCHOPOD_ZK=${OCHOPOD_ZK:-unset} ochopod_zk=${ochopod_zk:-unset}";
    let yaml = format!(
        r#"cluster: secrets
namespace: test
zk_session_timeout: 5s
model:
  damper: 0s
  grace: 5s
  probe:
    command: echo "{show}" > probe.txt; echo ok
    every: 60s
process:
  command: echo "{show}" > child.txt; exec sleep 3600
  shell: true
  grace: 2s
hooks:
  configured: echo "{show}" > hook.txt
files:
  - path: template.txt
    template: "OCHOPOD_ZK={{{{ env.OCHOPOD_ZK }}}} ochopod_zk={{{{ env.ochopod_zk }}}}\n"
"#
    );
    let spec = PodSpec::new(Path::new(BIN), &url, &yaml).env("ochopod_zk", &url);
    let pod = Pod::start(spec).expect("start the pod");
    let clean = format!("zk://{}", zk.connect_string());
    let expected = format!("OCHOPOD_ZK={clean} ochopod_zk={clean}\n");
    // Every path is read before any is judged, so a failure names all that leak.
    let mut seen = Vec::new();
    for file in ["child.txt", "hook.txt", "probe.txt", "template.txt"] {
        seen.push((file, lines_of(&pod.dir.path().join(file), 1).await));
    }
    let leaks: Vec<String> =
        seen.iter().filter(|(_, text)| text.contains(PASSWORD)).map(|(file, text)| format!("{file}: {text}")).collect();
    assert!(leaks.is_empty(), "the ZooKeeper password reached:\n{}", leaks.join(""));
    for (file, text) in &seen {
        assert_eq!(text, &expected, "{file}");
    }
    let log = pod.log_tail(200);
    assert!(!log.contains(PASSWORD), "the pod logged the ZooKeeper password:\n{log}");
}

#[test]
fn render_prints_no_zookeeper_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        "cluster: web\nprocess:\n  command: run --zk {{ env.OCHOPOD_ZK }}\n  env:\n    ZK: \"{{ env.OCHOPOD_ZK }}\"\n";
    std::fs::write(dir.path().join("pod.yaml"), yaml).unwrap();
    std::fs::write(dir.path().join("cluster.json"), r#"{"key":"a","pods":{"a":{"ip":"10.0.0.1","seq":1}}}"#).unwrap();
    let out = Command::new(BIN)
        .args(["render", "pod.yaml", "--cluster", "cluster.json"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OCHOPOD_ZK", format!("zk://user:{PASSWORD}@zk1:2181/mesos"))
        .output()
        .expect("run ochopod");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!text.contains(PASSWORD), "render printed the ZooKeeper password:\n{text}");
    assert!(text.contains("command: run --zk zk://zk1:2181/mesos"), "{text}");
    assert!(text.contains("env: OCHOPOD_ZK=zk://zk1:2181/mesos"), "{text}");
}
