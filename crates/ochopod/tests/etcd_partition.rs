//! A pod's connection to etcd cut (its network namespace's link taken down), shorter and longer
//! than its lease: a short cut keeps the lease, the leadership and the configuration; a long one
//! lets etcd drop the lease, and once the link is back the pod registers again with its seq.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use ochopod_etcd::etcd_client;
use ochopod_integration::etcd::{self, EtcdCluster};
use ochopod_integration::netns::Netns;
use ochopod_integration::settle::Store;
use ochopod_integration::zk::stop_child;

/// The pod in the namespace, stopped (and reaped) when the test ends, passed or failed.
struct NsPod {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for NsPod {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
    }
}

/// Its registration: (key, lease, seq), if any.
async fn registration(client: &etcd_client::Client) -> Option<(String, i64, u64)> {
    let mut kv = client.kv_client();
    let dir = "/ochopod/clusters/test.cut/pods/";
    let found = kv.get(dir, Some(etcd_client::GetOptions::new().with_prefix())).await.ok()?;
    let kv = found.kvs().first()?;
    let value: serde_json::Value = serde_json::from_slice(kv.value()).ok()?;
    Some((String::from_utf8_lossy(kv.key()).into_owned(), kv.lease(), value["seq"].as_u64()?))
}

async fn metric(address: &str, name: &str) -> Result<f64, String> {
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_etcd_link_cut_shorter_then_longer_than_its_lease() {
    let net = Netns::create();
    let server = EtcdCluster::start_on(&net.host_ip).expect("etcd on the veth's host end");
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("pod.yaml");
    fs::write(
        &yaml,
        "cluster: cut\nnamespace: test\nzk_session_timeout: 6s\nbinding: docker\nmodel: { damper: 0s }\nprocess: { command: sleep 3600 }\n",
    )
    .unwrap();
    let log = fs::File::create(dir.path().join("pod.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &net.name])
        .arg(BIN)
        .arg("run")
        .arg(&yaml)
        .current_dir(dir.path())
        .env("OCHOPOD_ETCD", server.url("ochopod"))
        .env("OCHOPOD_ZK", "127.0.0.1:1")
        .env("OCHOPOD_DOCKER_IP", &net.ns_ip)
        .env("OCHOPOD_PLATFORM_ROOT", dir.path())
        .env("POD_DIR", dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("ip netns exec ochopod");
    let pod = NsPod { child: Some(child), dir };
    let log_of = || fs::read_to_string(pod.dir.path().join("pod.log")).unwrap_or_default();
    let address = format!("{}:8080", net.ns_ip);
    let client = etcd::client(&server.endpoints()).await.unwrap();
    let store = Store::Etcd { client: &client, root: "/ochopod" };
    let http = ochopod_api::PodClient::new(None);
    let addresses = vec![address.clone()];
    let first = settle::wait_settled_on(&http, &store, &addresses, 1, SETTLE, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", log_of()));
    let (key, lease, seq) = registration(&client).await.expect("registered");
    let rounds = metric(&address, "ochopod_rounds_total{outcome=\"ok\"}").await.unwrap();

    // Shorter than the lease (6 s): the keep-alives resume on the same lease.
    net.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.heal();
    wait::until("the pod connected on its first lease", SETTLE, || async {
        let connected = metric(&address, "ochopod_zk_session_state{state=\"connected\"}").await;
        if connected == Ok(1.0) {
            Ok(())
        } else {
            Err(format!("{connected:?}"))
        }
    })
    .await
    .unwrap();
    assert_eq!(metric(&address, "ochopod_zk_session_generation").await.unwrap(), 1.0, "{}", log_of());
    assert_eq!(registration(&client).await, Some((key.clone(), lease, seq)), "the same key on the same lease");
    let again = settle::wait_settled_on(&http, &store, &addresses, 1, SETTLE, |_| true).await.unwrap();
    assert_eq!(again.hash, first.hash);
    assert_eq!(metric(&address, "ochopod_rounds_total{outcome=\"ok\"}").await.unwrap(), rounds, "no round");

    // Longer than the lease: etcd drops it (and the registration with it)…
    net.cut();
    wait::until("etcd to drop the cut pod's lease", Duration::from_secs(30), || async {
        match registration(&client).await {
            None => Ok(()),
            Some(found) => Err(format!("{found:?} still there")),
        }
    })
    .await
    .unwrap();
    net.heal();
    // …and the pod, back, registers again under a new lease with the same seq.
    let back = settle::wait_settled_on(&http, &store, &addresses, 1, SETTLE, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", log_of()));
    let (key_after, lease_after, seq_after) = registration(&client).await.expect("registered again");
    assert_eq!((key_after, seq_after), (key, seq), "the same key and seq for the pod's life");
    assert_ne!(lease_after, lease, "a new lease");
    assert!(metric(&address, "ochopod_zk_session_generation").await.unwrap() >= 2.0);
    assert_eq!(back.hash, first.hash, "the same pod, the same configuration");
    drop(pod);
}
