//! The portal on etcd: real pods on a real etcd (Debian's etcd-server, started by the harness on
//! free loopback ports), and the portal started as `ochopod portal` with `OCHOPOD_ETCD` (its own
//! pod registers in etcd as cluster `portal`; `OCHOPOD_ZK` points nowhere). Through the portal:
//! the CLI's `--portal` prints what the CLI prints on etcd directly, `reconfigure` runs a round,
//! `/v1/events` relays the pods' events, `/v1/dashboard` shows the cluster with its leader and
//! hash; with etcd gone, errors name etcd. On an etcd with authentication, the portal's server
//! reaches it without the password on any command line, in the store or in `/info`; deploy
//! hands the members `OCHOPOD_ETCD` and delete removes the cluster's keys (against a fake
//! Kubernetes API: nothing here runs containers).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::portal::{cli, Served};
use common::*;
use ochopod_integration::etcd::{self, EtcdCluster};
use ochopod_integration::settle::Store;
use ochopod_platform::kubernetes::fake::FakeApi;
use ochopod_platform::kubernetes::Kubernetes;
use ochopod_platform::{Platform, Spec};
use serde_json::{json, Value};

const TOKEN: &str = "portal-s3cret";
const PASSWORD: &str = "etcd-pa55word";

/// A pod on etcd `url` (and a ZooKeeper that is not there).
fn start_on(url: &str, yaml: &str) -> Pod {
    Pod::start(PodSpec::new(bin(), "127.0.0.1:1", yaml).env("OCHOPOD_ETCD", url)).expect("start pod")
}

async fn settled(client: &ochopod_etcd::etcd_client::Client, pods: &[&Pod], size: usize) -> settle::Settled {
    let store = Store::Etcd { client, root: "/ochopod" };
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    match settle::wait_settled_on(pods[0].client(), &store, &addresses, size, SETTLE, |_| true).await {
        Ok(s) => s,
        Err(e) => {
            for p in pods {
                eprintln!("---- pod {} log tail:\n{}", p.address(), p.log_tail(40));
            }
            panic!("{e}");
        }
    }
}

async fn call(url: &str, route: &str, body: Value) -> (u16, Value) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http.post(format!("{url}{route}")).bearer_auth(TOKEN).json(&body).send().await.expect("it answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until the portal's own pod is listed (through the portal) as `test.portal`.
async fn portal_registered(portal: &Served) {
    let url = portal.url.clone();
    wait::until("the portal's own pod to register in etcd", Duration::from_secs(40), || {
        let url = url.clone();
        async move {
            let (_, ls) = call(&url, "/v1/ls", json!({"clusters": ["portal"]})).await;
            match ls["report"]["clusters"][0]["cluster"].as_str() {
                Some("test.portal") if ls["exit_code"] == 0 => Ok(()),
                _ => Err(ls.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", portal.log()));
}

/// The cluster `test.web` as `GET /v1/dashboard` shows it, once it has a leader and a hash.
async fn dashboard_web(portal: &Served) -> Value {
    wait::until("the dashboard to show test.web's leader and hash", Duration::from_secs(30), || async {
        let (code, state) = portal.get("/v1/dashboard?clusters=web", TOKEN).await;
        let web = &state["clusters"][0];
        if code == 200 && web["cluster"] == "test.web" && web["leader"].is_string() && web["hash"].is_string() {
            Ok(web.clone())
        } else {
            Err(format!("{code} {state}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", portal.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_on_etcd_serves_the_tools_events_and_the_dashboard() {
    let mut server = EtcdCluster::start().expect("etcd");
    let url = server.url("ochopod");
    let client = etcd::client(&server.endpoints()).await.expect("etcd client");
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_on(&url, &yaml)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = settled(&client, &refs, 2).await;
    let portal = Served::portal_on_etcd(&url, TOKEN, &["--platform", "none"], &[]);
    portal.ready().await;
    portal_registered(&portal).await;
    let keys = etcd::get_prefix(&client, "/ochopod/clusters/test.portal/pods/").await.unwrap();
    assert_eq!(keys.len(), 1, "the portal pod registered in etcd: {keys:?}");

    // The CLI through the portal prints what it prints on etcd directly, with the same codes.
    let direct = [("OCHOPOD_ETCD", url.as_str()), ("OCHOPOD_ZK", "127.0.0.1:1")];
    let through = [("OCHOPOD_PORTAL", portal.url.as_str()), ("OCHOPOD_TOKEN", TOKEN), ("OCHOPOD_ZK", "127.0.0.1:1")];
    for args in [&["ls", "web"][..], &["ls"], &["grep", "web"], &["grep", "nosuch"], &["port", "8080", "web", "--json"]]
    {
        let a = cli(args, &direct);
        assert_eq!(a.0, if args[1..].contains(&"nosuch") { 1 } else { 0 }, "{args:?}: {a:?}");
        assert_eq!(a, cli(args, &through), "{args:?}: direct vs through the portal");
    }
    // `info` says how long each process has run: the same pods, states and fields.
    let strip = |text: &str| -> Value {
        let mut v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        for p in v["pods"].as_array_mut().into_iter().flatten() {
            for volatile in ["uptime", "uptime_s", "at_ms", "since_ms"] {
                p["info"].as_object_mut().map(|o| o.remove(volatile));
            }
        }
        v
    };
    let (code, a, _) = cli(&["info", "web", "--json"], &direct);
    let (code_b, b, _) = cli(&["info", "web", "--json"], &through);
    assert_eq!((code, code_b), (0, 0), "{a}\n{b}");
    assert_eq!(strip(&a)["pods"].as_array().map(Vec::len), Some(2), "{a}");
    let keys_of =
        |v: &Value| -> Vec<Value> { v["pods"].as_array().unwrap().iter().map(|p| p["pod"].clone()).collect() };
    assert_eq!(keys_of(&strip(&a)), keys_of(&strip(&b)), "info: the same pods\n{a}\n{b}");

    // The dashboard: the cluster, its leader and its hash, the time of which etcd does not keep.
    let web = dashboard_web(&portal).await;
    let leader_key = web["leader"].as_str().unwrap().to_string();
    assert_eq!(web["total"], 2, "{web}");
    assert_eq!(web["hash"].as_str().map(|h| h.replace(':', "")), Some(first.hash.replace(':', "")), "{web}");
    assert_eq!(web["hash_ms"], Value::Null, "etcd keeps no write time: unknown, not 1970: {web}");

    // The event stream relays the pods' events; a reconfigure through the portal runs a round.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut stream =
        http.get(format!("{}/v1/events?clusters=web", portal.url)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let watching = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.matches("\"watching\":true").count() >= 2 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(watching, Ok(true), "both pods followed: {seen}");
    let (code, reconfigure) =
        call(&portal.url, "/v1/reconfigure", json!({"clusters": ["web"], "timeout": "20s"})).await;
    assert_eq!((code, reconfigure["exit_code"].as_u64()), (200, Some(0)), "{reconfigure}");
    let round = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            let done = seen.lines().filter_map(|l| l.strip_prefix("data: ")).any(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                v["pod"] == leader_key.as_str() && v["event"]["event"] == "round" && v["event"]["phase"] == "done"
            });
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(round, Ok(true), "the leader's round, relayed: {seen}");
    drop(stream);
    // The round is on the dashboard too.
    wait::until("the round on the dashboard", Duration::from_secs(20), || async {
        let web = dashboard_web(&portal).await;
        let rounds = web["rounds"].as_array().cloned().unwrap_or_default();
        if rounds.iter().any(|r| r["phase"] == "done" && r["leader"] == leader_key.as_str()) {
            Ok(())
        } else {
            Err(web.to_string())
        }
    })
    .await
    .unwrap();

    // etcd gone: the tools' 503 and the dashboard's warning name the store, not ZooKeeper.
    server.stop_member(0);
    let (code, ls) = call(&portal.url, "/v1/ls", json!({})).await;
    assert_eq!(code, 503, "{ls}");
    assert!(ls["error"].as_str().unwrap_or("").contains("etcd") && !ls.to_string().contains("ZooKeeper"), "{ls}");
    let warned = wait::until("the dashboard to warn that etcd is gone", Duration::from_secs(40), || async {
        let (_, state) = portal.get("/v1/dashboard", TOKEN).await;
        let warnings = state["warnings"].to_string();
        if warnings.contains("on etcd etcd://") {
            Ok(warnings)
        } else {
            Err(state.to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", portal.log()));
    assert!(!warned.contains("ZooKeeper"), "{warned}");
}

/// Nothing the portal shows or logs holds `secret`: its log (the server's logged command line
/// included), the command lines of its processes, every value in etcd, its pod's `/info`.
async fn nowhere(portal: &Served, client: &ochopod_etcd::etcd_client::Client, secret: &str) {
    assert!(!portal.log().contains(secret), "the portal's log shows the password");
    let pids = std::iter::once(portal.child.id()).chain(ochopod_integration::pods::descendants(portal.child.id()));
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(secret), "process {pid}'s command line");
    }
    for (key, value) in etcd::get_prefix(client, "/").await.unwrap() {
        assert!(!value.contains(secret), "{key} holds the password");
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let info = http.get(format!("http://127.0.0.1:{}/info", portal.control)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(info.status(), 200);
    let info = info.text().await.unwrap();
    assert!(info.contains("\"cluster\":\"portal\"") && !info.contains(secret), "the portal pod's /info: {info}");
}

/// On an etcd with authentication: the portal pod registers with the credentials of its
/// `OCHOPOD_ETCD`, its server (whose own `OCHOPOD_ETCD` comes without them, as any pod
/// process's) reads through the 0600 file the pod wrote; deployed members get `OCHOPOD_ETCD`
/// with the credentials; delete removes the cluster's keys. The password is nowhere shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_on_an_authenticated_etcd_reads_deploys_and_deletes_without_showing_the_password() {
    let mut server = EtcdCluster::start().expect("etcd");
    etcd::enable_auth(&server.endpoints(), PASSWORD).await.expect("etcd authentication on");
    let url = format!("etcd://root:{PASSWORD}@{}/ochopod", server.endpoints());
    let client = etcd::client_as(&server.endpoints(), "root", PASSWORD).await.expect("etcd client");
    let fake = FakeApi::start("k8s-t0ken");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path(), "team");
    let store = [("OCHOPOD_ETCD", url.clone()), ("OCHOPOD_ZK", "127.0.0.1:1".to_string())];
    let portal = Served::portal_with(
        dir,
        &store,
        TOKEN,
        &["--platform", "kubernetes", "--label", "org.ochopod.test=etcd"],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    );
    portal.ready().await;
    // Read through the server: it reaches the authenticated etcd.
    portal_registered(&portal).await;

    // A deploy (nothing runs the pods: it cannot form) hands the members etcd, credentials
    // included, and removes what it created; its error says which store, without the password.
    let deploy = json!({"declaration": simple_yaml("api", ""), "image": "ochopod-api:1", "count": 1, "timeout": "3s"});
    let (code, body) = call(&portal.url, "/v1/deploy", deploy).await;
    assert_eq!((code, body["kind"].as_str()), (502, Some("deploy_failed")), "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("removed its 1 members and its etcd keys"), "{error}");
    assert!(!error.contains("ZooKeeper") && !error.contains(PASSWORD), "{error}");
    let sets = "/apis/apps/v1/namespaces/team/statefulsets";
    let set = fake.requests().into_iter().find(|r| r.method == "POST" && r.path == sets).unwrap().body.unwrap();
    let env = set["spec"]["template"]["spec"]["containers"][0]["env"].as_array().cloned().unwrap();
    assert!(env.contains(&json!({"name": "OCHOPOD_ETCD", "value": url})), "{env:?}");
    assert!(!env.iter().any(|v| v["name"] == "OCHOPOD_ZK"), "{env:?}");

    // Delete: the members, then every key of the cluster (and no other cluster's).
    let mut kv = client.kv_client();
    for key in ["/ochopod/clusters/test.db/hash", "/ochopod/clusters/test.db/seq", "/ochopod/clusters/test.dbx/hash"] {
        kv.put(key, "x", None).await.unwrap();
    }
    let labels = BTreeMap::from([("org.ochopod.test".to_string(), "etcd".to_string())]);
    let spec = Spec {
        cluster: "test.db".into(),
        image: "ochopod-db:1".into(),
        declaration: simple_yaml("db", ""),
        path: "/opt/ochopod/pod.yaml".into(),
        env: BTreeMap::from([("OCHOPOD_ETCD".to_string(), url.clone())]),
        ports: vec![8080],
        grace_secs: 7,
    };
    Kubernetes::new(fake.client(), "team", labels).create(&spec, 1).await.unwrap();
    let (code, body) = call(&portal.url, "/v1/delete", json!({"cluster": "db"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["zookeeper_nodes_deleted"].as_u64(), body["store"].as_str()),
        (Some(2), Some("etcd keys")),
        "{body}"
    );
    assert_eq!(etcd::get_prefix(&client, "/ochopod/clusters/test.db/").await.unwrap(), vec![], "test.db's keys");
    assert_eq!(etcd::get_prefix(&client, "/ochopod/clusters/test.dbx/").await.unwrap().len(), 1, "another cluster's");

    nowhere(&portal, &client, PASSWORD).await;

    // etcd gone before the dashboard's first lookup: its 503 names the store, not ZooKeeper,
    // and not the password.
    server.stop_member(0);
    let (code, state) = portal.get("/v1/dashboard", TOKEN).await;
    assert_eq!(code, 503, "{state}");
    let error = state["error"].as_str().unwrap_or("");
    assert!(error.starts_with("the coordination store (etcd etcd://127.0.0.1:"), "{state}");
    assert!(!error.contains("ZooKeeper") && !error.contains(PASSWORD), "{state}");
}

/// `--deploy-etcd` on a portal that reads ZooKeeper is refused at start: the portal would wait
/// for pods to form where they are not. The URL is not echoed.
#[test]
fn deploy_etcd_needs_the_portal_on_etcd() {
    let url = format!("etcd://root:{PASSWORD}@127.0.0.1:1/ochopod");
    let (code, out, err) = cli(
        &["portal", "--serve", "--listen", "127.0.0.1:0", "--platform", "none", "--deploy-etcd", &url],
        &[("OCHOPOD_PORTAL_TOKEN", TOKEN), ("OCHOPOD_ZK", "127.0.0.1:1")],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--deploy-etcd: this portal reads ZooKeeper") && err.contains("OCHOPOD_ETCD"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    // The pod around it says so too, before it registers anywhere.
    let (code, out, err) = cli(
        &["portal", "--listen", "127.0.0.1:0", "--platform", "none", "--deploy-etcd", &url],
        &[("OCHOPOD_PORTAL_TOKEN", TOKEN), ("OCHOPOD_ZK", "127.0.0.1:1")],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--deploy-etcd: this portal reads ZooKeeper") && !err.contains(PASSWORD), "{err}");
}
