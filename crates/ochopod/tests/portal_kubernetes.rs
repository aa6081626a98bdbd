//! The portal with `--platform kubernetes` against a fake Kubernetes API server on loopback
//! (`ochopod_platform::kubernetes::fake`): the portal finds it through `KUBECONFIG` as it would
//! find a real one, and every deploy, scale and delete goes through kube-rs to that server,
//! which records the requests and answers as the API server does. Nothing runs the pods (no
//! kubelet): a deploy cannot form, which is the failed-deploy path — everything it created is
//! deleted again —; scale and delete are checked on the API calls they make.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::portal::Served;
use common::*;
use ochopod_platform::kubernetes::fake::FakeApi;
use ochopod_platform::kubernetes::Kubernetes;
use ochopod_platform::{Platform, Spec};
use serde_json::{json, Value};

const TOKEN: &str = "portal-s3cret";
const LABEL: (&str, &str) = ("org.ochopod.test", "kube");

async fn call(http: &reqwest::Client, url: &str, route: &str, body: Option<Value>) -> (u16, Value) {
    let req = match body {
        Some(b) => http.post(format!("{url}{route}")).json(&b),
        None => http.get(format!("{url}{route}")),
    };
    let resp = req.bearer_auth(TOKEN).send().await.expect("the portal answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn calls(fake: &FakeApi, from: usize) -> Vec<String> {
    fake.requests()[from..]
        .iter()
        .filter(|r| !(r.method == "GET" && r.path.contains("/pods")))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_deploys_scales_and_deletes_through_the_kubernetes_api() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let fake = FakeApi::start("k8s-t0ken");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path(), "team");
    let label = format!("{}={}", LABEL.0, LABEL.1);
    let portal = Served::portal_in(
        dir,
        &zk,
        TOKEN,
        &["--platform", "kubernetes", "--label", &label],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    );
    portal.ready().await;
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let url = portal.url.clone();

    // The platform answers (no more 501): the portal asked the API server at start.
    let (code, body) = call(&http, &url, "/v1/platform", None).await;
    assert_eq!((code, &body), (200, &json!({"platform": "kubernetes", "members": []})), "{}", portal.log());

    // A bad declaration: refused before anything is sent to the API server.
    let before = fake.requests().len();
    let bad = json!({"declaration": "cluster: web\nnamespace: demo\nmodel:\n  dampr: 2s\n", "image": "x", "count": 2});
    let (code, body) = call(&http, &url, "/v1/deploy", Some(bad)).await;
    assert_eq!((code, body["kind"].as_str()), (422, Some("invalid_declaration")), "{body}");
    assert!(calls(&fake, before).is_empty(), "{:?}", calls(&fake, before));

    // A deploy that cannot form (nothing runs the pods here) removes what it created.
    let before = fake.requests().len();
    let yaml = simple_yaml("web", "");
    let deploy = json!({"declaration": yaml, "image": "ochopod-web:1", "count": 2, "timeout": "3s"});
    let (code, body) = call(&http, &url, "/v1/deploy", Some(deploy)).await;
    assert_eq!((code, body["kind"].as_str()), (502, Some("deploy_failed")), "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("not formed after 3s: 0 of 2 pods registered"), "{error}");
    assert!(error.contains("removed its 2 members and its ZooKeeper nodes"), "{error}");
    let sets = "/apis/apps/v1/namespaces/team/statefulsets";
    assert_eq!(
        calls(&fake, before),
        [
            "POST /api/v1/namespaces/team/configmaps".to_string(),
            "POST /api/v1/namespaces/team/services".into(),
            format!("POST {sets}"),
            format!("GET {sets}/test-web"),
            format!("DELETE {sets}/test-web"),
            "DELETE /api/v1/namespaces/team/services/test-web".into(),
            "DELETE /api/v1/namespaces/team/configmaps/test-web-declaration".into(),
        ]
    );
    assert_eq!(fake.rejected(), Vec::<String>::new());
    assert!(fake.objects("").is_empty(), "left: {:?}", fake.objects("").keys().collect::<Vec<_>>());
    // What the portal sent: its label on the pods, the portal's ZooKeeper as OCHOPOD_ZK.
    let set = fake.requests().into_iter().find(|r| r.method == "POST" && r.path == sets).unwrap().body.unwrap();
    assert_eq!(set["spec"]["template"]["metadata"]["labels"][LABEL.0], LABEL.1);
    let env = &set["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env.as_array().unwrap().contains(&json!({"name": "OCHOPOD_ZK", "value": zk.connect_string()})), "{env}");
    assert_eq!(set["spec"]["template"]["spec"]["containers"][0]["image"], "ochopod-web:1");

    // A cluster the portal manages (created here through the same trait: nothing could form
    // through the portal), scaled down: one step at a time, then the portal waits for forming.
    let labels = BTreeMap::from([(LABEL.0.to_string(), LABEL.1.to_string())]);
    let k = Kubernetes::new(fake.client(), "team", labels);
    let spec = Spec {
        cluster: "test.db".into(),
        image: "ochopod-db:1".into(),
        declaration: simple_yaml("db", ""),
        path: "/opt/ochopod/pod.yaml".into(),
        env: BTreeMap::from([("OCHOPOD_ZK".to_string(), zk.connect_string())]),
        ports: vec![8080],
        grace_secs: 7,
    };
    assert_eq!(k.create(&spec, 3).await.unwrap().len(), 3);
    let before = fake.requests().len();
    let (code, body) =
        call(&http, &url, "/v1/scale", Some(json!({"cluster": "db", "count": 1, "timeout": "2s"}))).await;
    assert_eq!((code, body["kind"].as_str()), (504, Some("not_formed")), "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("test.db scaled to 1 members but not formed"), "{body}");
    let patches: Vec<Value> =
        fake.requests()[before..].iter().filter(|r| r.method == "PATCH").map(|r| r.body.clone().unwrap()).collect();
    assert_eq!(patches, [json!({"spec": {"replicas": 2}}), json!({"spec": {"replicas": 1}})]);
    let (code, body) = call(&http, &url, "/v1/platform", None).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = body["members"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["test-db-0"]);

    // Delete: an unknown cluster names those that exist; then every object goes.
    let (code, body) = call(&http, &url, "/v1/delete", Some(json!({"cluster": "nosuch"}))).await;
    assert_eq!((code, body["kind"].as_str()), (404, Some("no_cluster")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("test.db"), "{body}");
    let (code, body) = call(&http, &url, "/v1/delete", Some(json!({"cluster": "db"}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["removed"].as_array().unwrap().len(), 1, "{body}");
    assert!(fake.objects("").is_empty(), "left: {:?}", fake.objects("").keys().collect::<Vec<_>>());
    let deleted = fake.requests().iter().find(|r| r.method == "DELETE" && r.path.ends_with("/test-db")).cloned();
    assert_eq!(deleted.unwrap().body.unwrap()["propagationPolicy"], "Foreground");
    assert_eq!(fake.rejected(), Vec::<String>::new());
}

#[test]
fn the_dry_run_prints_the_objects_for_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, simple_yaml("web", "")).unwrap();
    let out = Command::new(BIN)
        .args(["deploy", pod.to_str().unwrap(), "--image", "ochopod-web:1", "-n", "2"])
        .args(["--platform", "kubernetes", "--dry-run", "-e", "OCHOPOD_ZK=zk:2181"])
        .env_remove("OCHOPOD_PORTAL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = list["items"].as_array().unwrap().iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!((list["kind"].as_str(), kinds), (Some("List"), vec!["ConfigMap", "Service", "StatefulSet"]));
    let set = &list["items"][2];
    assert_eq!((set["metadata"]["name"].as_str(), set["spec"]["replicas"].as_u64()), (Some("test-web"), Some(2)));
    // The same objects the platform creates (no portal labels without a portal).
    let spec = Spec {
        cluster: "test.web".into(),
        image: "ochopod-web:1".into(),
        declaration: simple_yaml("web", ""),
        path: "/opt/ochopod/pod.yaml".into(),
        env: BTreeMap::from([("OCHOPOD_ZK".to_string(), "zk:2181".to_string())]),
        ports: vec![8080],
        grace_secs: 7,
    };
    assert_eq!(list, ochopod_platform::kubernetes::objects(&spec, 2));
}
