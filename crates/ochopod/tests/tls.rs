//! `control.tls` end to end: pods that serve only HTTPS form their cluster (the leader's rounds
//! go over HTTPS, verified against the configured roots), plain HTTP gets no reply from them, and
//! the CLI reaches them with `--ca` (or `OCHOPOD_CA`) and reports them unreachable without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ochopod_api::{ClientError, PodClient};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

/// Files of a test PKI, in a temp dir.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_ca: PathBuf,
}

fn self_signed_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

/// A cluster CA and one pod certificate it signed (IP SAN 127.0.0.1, shared by the test's pods),
/// plus an unrelated CA.
fn pki() -> Pki {
    let dir = tempfile::Builder::new().prefix("ochopod-tls-").tempdir().unwrap();
    let (ca, ca_key) = self_signed_ca("ochopod test ca");
    let (other, _) = self_signed_ca("someone else");
    let pod_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "ochopod test pod");
    let pod = params.signed_by(&pod_key, &ca, &ca_key).unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("pod-cert.pem", pod.pem()),
        key: write("pod-key.pem", pod_key.serialize_pem()),
        other_ca: write("other-ca.pem", other.pem()),
        _dir: dir,
    }
}

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
