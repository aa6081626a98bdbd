//! `control.tls` end to end: pods that serve only HTTPS form their cluster (the leader's rounds
//! go over HTTPS, verified against the configured roots), plain HTTP gets no reply from them, and
//! the CLI reaches them with `--ca` (or `OCHOPOD_CA`) and reports them unreachable without it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::pki;
use common::*;
use ochopod_api::{ClientError, PodClient};
use serde_json::{json, Value};

fn tls_yaml(cluster: &str, cert: &Path, key: &Path, ca: Option<&Path>) -> String {
    let ca = ca.map(|c| format!(", ca: {}", c.display())).unwrap_or_default();
    format!("{}control:\n  tls: {{ cert: {}, key: {}{ca} }}\n", simple_yaml(cluster, ""), cert.display(), key.display())
}

/// `wait_settled` (the harness's definition), over HTTPS.
async fn wait_settled_tls(pods: &[Pod], client: &PodClient, size: usize) {
    let zk = settle::client(&pods[0].zk).await.expect("ZooKeeper");
    let addresses: Vec<String> = pods.iter().map(|p| p.address()).collect();
    if let Err(e) = settle::wait_settled(client, &zk, &addresses, size, SETTLE, |_| true).await {
        for p in pods {
            eprintln!("---- pod {} log tail:\n{}", p.address(), p.log_tail(40));
        }
        panic!("{e}");
    }
}

/// `ochopod <args>` against the test's ZooKeeper, with `extra_env`; (exit code, stdout, stderr).
fn ochopod(zk: &ZkServer, args: &[&str], extra_env: &[(&str, &Path)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("OCHOPOD_ZK", zk.connect_string())
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("OCHOPOD_CA")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    // The tools bound every pod request by --pod-timeout (5s) and ZooKeeper by its own timeouts.
    let out = cmd.output().expect("run ochopod");
    let run = (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ ochopod {}\n{}{}-> {:?}", args.join(" "), run.1, run.2, run.0);
    run
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_forms_over_https_and_the_cli_needs_the_ca() {
    let pki = pki();
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = tls_yaml("web", &pki.cert, &pki.key, Some(&pki.ca));
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();

    // The rounds can only have run over HTTPS: the pods serve nothing else.
    let https = PodClient::with_tls(None, &pki.ca).unwrap();
    wait_settled_tls(&pods, &https, 3).await;

    let plain = PodClient::new(None);
    let distrust = PodClient::with_tls(None, &pki.other_ca).unwrap();
    for p in &pods {
        match plain.info(&p.address(), Duration::from_secs(2)).await {
            Err(ClientError::Unreachable { .. }) => {}
            other => panic!("plain HTTP to a TLS pod should get no reply, got {other:?}"),
        }
        let e = distrust.info(&p.address(), Duration::from_secs(2)).await.unwrap_err().to_string();
        assert!(e.contains("TLS handshake") && e.contains("UnknownIssuer"), "{e}");
    }

    // The CLI with --ca: the cluster and its three pods, nothing failed.
    let ca = pki.ca.to_str().unwrap();
    let (code, out, _) = ochopod(&zk, &["ls", "--json", "--ca", ca], &[]);
    assert_eq!(code, Some(0));
    let ls = json_of(&out);
    assert_eq!(ls["ok"], true, "{ls}");
    let web = ls["clusters"].as_array().unwrap().iter().find(|c| c["cluster"] == "test.web").unwrap().clone();
    assert_eq!(
        (web["running"].clone(), web["total"].clone(), web["state"].clone()),
        (json!(3), json!(3), json!("leader"))
    );

    // OCHOPOD_CA does the same.
    let (code, out, _) = ochopod(&zk, &["grep", "--json"], &[("OCHOPOD_CA", &pki.ca)]);
    assert_eq!(code, Some(0));
    let grep = json_of(&out);
    let rows = grep["pods"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{grep}");
    assert!(rows.iter().all(|r| r["error"].is_null() && r["process"] == "running"), "{grep}");

    // Without the CA every pod is reported, as unreachable, and the tool fails.
    let (code, out, err) = ochopod(&zk, &["grep", "--json"], &[]);
    assert_eq!(code, Some(1));
    let grep = json_of(&out);
    let failed = grep["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 3, "{grep}");
    assert!(failed.iter().all(|f| f["kind"] == "unreachable"), "{grep}");
    assert!(err.contains("unreachable") && err.contains("must be reached over HTTPS"), "{err}");

    // A CA file that is not one is bad usage, named.
    let key = pki.key.to_str().unwrap();
    let (code, _, err) = ochopod(&zk, &["ls", "--ca", key], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains(key) && err.contains("no certificate"), "{err}");
}

/// Without `ca`, pods trust their own certificate: one self-signed certificate shared by every
/// pod, naming none of their addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_sharing_a_self_signed_certificate_trust_it_without_a_ca() {
    let dir = tempfile::Builder::new().prefix("ochopod-tls-").tempdir().unwrap();
    let shared = rcgen::generate_simple_self_signed(vec!["ochopod.invalid".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, shared.cert.pem()).unwrap();
    std::fs::write(&key, shared.key_pair.serialize_pem()).unwrap();

    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = tls_yaml("shared", &cert, &key, None);
    let pods: Vec<Pod> = (0..3).map(|_| start_pod(&zk, &yaml)).collect();
    wait_settled_tls(&pods, &PodClient::with_tls(None, &cert).unwrap(), 3).await;
}

/// The portal's event hub follows pods that serve their control API over HTTPS, verified with the
/// portal's `--ca` as the tools verify them: `GET /v1/events` relays their events and
/// `GET /v1/dashboard` shows their `/info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_follows_the_events_of_tls_pods() {
    const TOKEN: &str = "portal-s3cret";
    let pki = pki();
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = tls_yaml("web", &pki.cert, &pki.key, Some(&pki.ca));
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &yaml)).collect();
    wait_settled_tls(&pods, &PodClient::with_tls(None, &pki.ca).unwrap(), 2).await;
    let ca = pki.ca.to_str().unwrap();
    let portal = common::portal::Served::portal(&zk, TOKEN, &["--platform", "none", "--ca", ca], &[]);
    portal.ready().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = portal.url.clone();

    let mut stream = http.get(format!("{url}/v1/events?clusters=web")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let mut read_until = async |what: &str, done: &dyn Fn(&str) -> bool| {
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(chunk)) = stream.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if done(&seen) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(got, Ok(true), "{what}; seen: {seen}\n{}", portal.log());
    };
    // Both pods followed (the hub says so once a pod's /events answered), no TLS warning.
    read_until("both pods followed", &|s| {
        s.lines().filter(|l| l.contains("\"watching\":true") && l.contains("test.web #")).count() >= 2
    })
    .await;
    let reconfigure = http
        .post(format!("{url}/v1/reconfigure"))
        .bearer_auth(TOKEN)
        .json(&json!({"clusters": ["web"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reconfigure.status(), 200);
    read_until("the round's events from the TLS pods", &|s| {
        s.lines().any(|l| l.contains("\"event\":\"round\"") && l.contains("test.web #"))
    })
    .await;
    drop(stream);
    assert!(!seen.contains("control.tls"), "{seen}");

    // The dashboard's state: each pod's /info, read over TLS.
    let (code, state) = portal.get("/v1/dashboard?clusters=web", TOKEN).await;
    assert_eq!(code, 200, "{state}");
    let web = &state["clusters"][0];
    assert_eq!(
        (web["cluster"].as_str(), web["running"].as_u64(), web["total"].as_u64()),
        (Some("test.web"), Some(2), Some(2)),
        "{state}"
    );
    assert!(web["leader"].as_str().is_some_and(|l| l.starts_with("test.web #")), "{state}");
}
