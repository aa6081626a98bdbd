//! Platform bindings end to end: `ochopod run` fed a recorded platform (environment, files under
//! `OCHOPOD_PLATFORM_ROOT`, a loopback stand-in for the EC2 metadata) registers what that platform
//! said in a real ZooKeeper, and its leader reaches it at the registered address. Every recorded
//! address is a loopback one (127.0.0.2…5): the leader POSTs to the registered ip.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ochopod_integration::ports::free_port;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zookeeper_client as zk;

/// A pod whose control port is `port` inside the "container", with one more exposed port.
fn yaml(cluster: &str, port: u16, binding: &str) -> String {
    format!(
        r#"cluster: {cluster}
namespace: test
port: {port}
ports: [2181]
binding: {binding}
zk_session_timeout: 5s
model:
  damper: 0s
  grace: 5s
process:
  command: exec sleep 3600
  shell: true
  grace: 2s
"#
    )
}

/// The only registration of `cluster`, read under `chroot` ("" for none), once it exists.
async fn registration(zk_server: &ZkServer, chroot: &str, cluster: &str) -> Value {
    let client = zk::Client::connect(&format!("{}{chroot}", zk_server.connect_string())).await.expect("zk client");
    let dir = format!("/ochopod/clusters/test.{cluster}/pods");
    let raw = wait::until(&format!("a registration under {chroot}{dir}"), SETTLE, || async {
        let children = client.list_children(&dir).await.map_err(|e| e.to_string())?;
        let [child] = children.as_slice() else { return Err(format!("children {children:?}")) };
        let (data, _) = client.get_data(&format!("{dir}/{child}")).await.map_err(|e| e.to_string())?;
        String::from_utf8(data).map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("registration is not JSON ({e}): {raw}"))
}

/// Every registered field but `seq` (assigned by ZooKeeper), which must be a number.
fn without_seq(mut reg: Value) -> Value {
    let seq = reg.as_object_mut().and_then(|o| o.remove("seq"));
    assert!(seq.as_ref().is_some_and(Value::is_u64), "seq {seq:?}");
    reg
}

/// The leader configured the pod through the registered `ip:ports[port]`: that address works.
async fn wait_configured_at(pod: &Pod, address: &str) {
    let res = wait::until(&format!("the pod at {address} to lead and run its process"), SETTLE, || async {
        let info = pod.client().info(address, Duration::from_secs(2)).await.map_err(|e| e.to_string())?;
        if info.process == "running" && info.state == "leader" {
            Ok(())
        } else {
            Err(format!("process {}, state {}", info.process, info.state))
        }
    })
    .await;
    if let Err(e) = res {
        panic!("{e}\n---- pod log:\n{}", pod.log_tail(40));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_pod_registers_its_downward_api_identity_and_container_ports() {
    let zk_server = ZkServer::start().expect("ZooKeeper");
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = yaml("k8s", port, "auto");
    let pod = Pod::start(
        PodSpec { control_port: port, ..PodSpec::new(bin(), "", &yaml) }
            .env("OCHOPOD_PLATFORM_ROOT", root.path().display())
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.9")
            .env("POD_IP", "127.0.0.2")
            .env("POD_NAME", "k8s-0")
            .env("POD_NAMESPACE", "kube-ns")
            .env("NODE_NAME", "node-a")
            .env("HOSTNAME", "k8s-0")
            // Where ZooKeeper is comes from its Kubernetes service, not from OCHOPOD_ZK.
            .env("OCHOPOD_ZK_SERVICE", "ochopod-zk")
            .env("OCHOPOD_ZK_SERVICE_HOST", "127.0.0.1")
            .env("OCHOPOD_ZK_SERVICE_PORT", zk_server.port())
            // Kubernetes does not remap: a stray PORT_<n> must not leak into the registration.
            .env("PORT_2181", free_port()),
    )
    .expect("start pod");

    let reg = without_seq(registration(&zk_server, "", "k8s").await);
    assert_eq!(
        reg,
        json!({
            "ip": "127.0.0.2", "public": "127.0.0.2", "node": "node-a",
            "ports": {port.to_string(): port, "2181": 2181}, "port": port.to_string(),
            "cluster": "k8s", "namespace": "test", "application": "kube-ns", "task": "k8s-0",
            "fwk": "kubernetes", "zk": format!("127.0.0.1:{}", zk_server.port()),
            "debug": "false", "start": "true", "local": "false",
        })
    );
    wait_configured_at(&pod, &format!("127.0.0.2:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marathon_task_registers_in_the_mesos_zookeeper_under_its_chroot() {
    let zk_server = ZkServer::start().expect("ZooKeeper");
    let root = tempfile::tempdir().unwrap();
    let mesos = root.path().join("etc/mesos");
    std::fs::create_dir_all(&mesos).unwrap();
    std::fs::write(mesos.join("zk"), format!("zk://127.0.0.1:{}/mesos\n", zk_server.port())).unwrap();
    let port = free_port();
    let remapped_2181 = free_port();
    let yaml = yaml("web", port, "auto");
    let pod = Pod::start(
        PodSpec { control_port: port, ..PodSpec::new(bin(), "", &yaml) }
            .env("OCHOPOD_PLATFORM_ROOT", root.path().display())
            // Empty = unset (the original's default): the Mesos files say where ZooKeeper is.
            .env("OCHOPOD_ZK", "")
            .env("MARATHON_APP_ID", "/test/web")
            .env("MESOS_TASK_ID", "test_web.4c27a1f2")
            .env("HOST", "127.0.0.3")
            // No NAT here: the host port of the control port is the container port.
            .env(&format!("PORT_{port}"), port)
            .env("PORT_2181", remapped_2181),
    )
    .expect("start pod");

    let reg = without_seq(registration(&zk_server, "/mesos", "web").await);
    assert_eq!(
        reg,
        json!({
            "ip": "127.0.0.3", "public": "127.0.0.3", "node": "127.0.0.3",
            "ports": {port.to_string(): port, "2181": remapped_2181}, "port": port.to_string(),
            "cluster": "web", "namespace": "test", "application": "test/web", "task": "test_web.4c27a1f2",
            // The network location only, as the original registered it: no chroot, no credentials.
            "fwk": "marathon", "zk": format!("127.0.0.1:{}", zk_server.port()),
            "debug": "false", "start": "true", "local": "false",
        })
    );
    // Unlike the original, nothing is written at the root of the Mesos ensemble.
    let client = zk::Client::connect(&zk_server.connect_string()).await.unwrap();
    assert!(client.check_stat("/ochopod").await.unwrap().is_none(), "/ochopod exists outside the chroot");
    wait_configured_at(&pod, &format!("127.0.0.3:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_container_registers_its_address_and_hostname() {
    let zk_server = ZkServer::start().expect("ZooKeeper");
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join(".dockerenv"), "").unwrap();
    let port = free_port();
    let yaml = yaml("box", port, "auto");
    let pod = Pod::start(
        PodSpec { control_port: port, ..PodSpec::new(bin(), &zk_server.connect_string(), &yaml) }
            .env("OCHOPOD_PLATFORM_ROOT", root.path().display())
            // The address peers reach the container at; the recorded container stays on loopback.
            .env("OCHOPOD_DOCKER_IP", "127.0.0.6")
            .env("HOSTNAME", "3f2a9c1b7d10")
            .env(&format!("PORT_{port}"), port),
    )
    .expect("start pod");

    let reg = without_seq(registration(&zk_server, "", "box").await);
    assert_eq!(
        reg,
        json!({
            "ip": "127.0.0.6", "public": "127.0.0.6", "node": "3f2a9c1b7d10",
            "ports": {port.to_string(): port, "2181": 2181}, "port": port.to_string(),
            "cluster": "box", "namespace": "test", "application": "", "task": "3f2a9c1b7d10",
            "fwk": "docker", "zk": zk_server.connect_string(),
            "debug": "false", "start": "true", "local": "false",
        })
    );
    wait_configured_at(&pod, &format!("127.0.0.6:{port}")).await;
}

/// A recorded IMDSv2 endpoint on loopback: a token for a PUT with a TTL, then the items for
/// GETs that carry that token (401 otherwise).
async fn metadata_server(items: BTreeMap<&'static str, &'static str>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let items = items.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let (status, body) = match (method, path) {
                    ("put", "/latest/api/token") if head.contains("x-aws-ec2-metadata-token-ttl-seconds:") => {
                        (200, "e2e-token")
                    }
                    ("get", _) if !head.contains("x-aws-ec2-metadata-token: e2e-token") => (401, ""),
                    ("get", p) => match p.strip_prefix("/latest/meta-data/").and_then(|i| items.get(i)) {
                        Some(v) => (200, *v),
                        None => (404, ""),
                    },
                    _ => (400, ""),
                };
                let rsp =
                    format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(rsp.as_bytes()).await;
            });
        }
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_instance_registers_what_its_metadata_says() {
    let zk_server = ZkServer::start().expect("ZooKeeper");
    let (metadata, server) = metadata_server(BTreeMap::from([
        ("local-ipv4", "127.0.0.4"),
        ("instance-id", "i-0e2e0e2e"),
        ("public-ipv4", "127.0.0.5"),
    ]))
    .await;
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = yaml("db", port, "ec2");
    let pod = Pod::start(
        PodSpec { control_port: port, ..PodSpec::new(bin(), &zk_server.connect_string(), &yaml) }
            .env("OCHOPOD_PLATFORM_ROOT", root.path().display())
            .env("OCHOPOD_EC2_METADATA", &metadata)
            .env(&format!("PORT_{port}"), port),
    )
    .expect("start pod");

    let reg = without_seq(registration(&zk_server, "", "db").await);
    assert_eq!(
        reg,
        json!({
            "ip": "127.0.0.4", "public": "127.0.0.5", "node": "i-0e2e0e2e",
            "ports": {port.to_string(): port, "2181": 2181}, "port": port.to_string(),
            "cluster": "db", "namespace": "test", "application": "", "task": "",
            "fwk": "ec2", "zk": zk_server.connect_string(),
            "debug": "false", "start": "true", "local": "false",
        })
    );
    wait_configured_at(&pod, &format!("127.0.0.4:{port}")).await;
    drop(pod);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_platform_data_stops_the_pod_before_it_registers() {
    let zk_server = ZkServer::start().expect("ZooKeeper");
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = yaml("broken", port, "kubernetes");
    let mut pod = Pod::start(
        PodSpec { control_port: port, ..PodSpec::new(bin(), &zk_server.connect_string(), &yaml) }
            .env("OCHOPOD_PLATFORM_ROOT", root.path().display())
            .env("POD_NAME", "broken-0"),
    )
    .expect("start pod");
    let status = pod.wait_exit(Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}\n{}", pod.log_tail(20)));
    assert!(!status.success(), "exit {status:?}");
    let log = pod.log_tail(50);
    assert!(
        log.contains("kubernetes binding: POD_IP is not set (expose it with the downward API: fieldRef status.podIP)"),
        "the error is not in the pod's output:\n{log}"
    );
    let client = zk::Client::connect(&zk_server.connect_string()).await.unwrap();
    assert!(
        client.check_stat("/ochopod/clusters/test.broken").await.unwrap().is_none(),
        "a pod without a placement touched ZooKeeper"
    );
}
