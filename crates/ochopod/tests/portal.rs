//! The portal's API against real pods: a real ZooKeeper on loopback, real `ochopod run` pods, and
//! the portal started as `ochopod portal` (itself a pod of cluster `portal`). Every tool route,
//! the token, bad input answered with JSON errors, the aggregated event stream, and the CLI
//! through `--portal` printing what it prints without one, with the same exit codes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use ochopod_integration::ports::free_port;
use serde_json::{json, Value};

const TOKEN: &str = "portal-s3cret";

/// `ochopod portal`, stopped with SIGTERM (and waited for) when dropped, also on panic.
struct Portal {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Portal {
    fn start(zk: &ZkServer) -> Portal {
        let dir = tempfile::tempdir().unwrap();
        let api = free_port();
        let log = std::fs::File::create(dir.path().join("portal.log")).unwrap();
        let child = Command::new(BIN)
            .args(["portal", "--platform", "none", "--listen", &format!("127.0.0.1:{api}"), "--namespace", "test"])
            .env("OCHOPOD_ZK", zk.connect_string())
            .env("OCHOPOD_PORTAL_TOKEN", TOKEN)
            .env("PORT_8080", free_port().to_string())
            .env("OCHOPOD_PLATFORM_ROOT", dir.path())
            .env_remove("OCHOPOD_TOKEN")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the portal");
        Portal { child, url: format!("http://127.0.0.1:{api}"), dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("portal.log")).unwrap_or_default()
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = ochopod_integration::wait::until_blocking("the portal to exit", Duration::from_secs(20), || match self
            .child
            .try_wait()
        {
            Ok(Some(_)) => Ok(()),
            _ => Err("running".to_string()),
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- portal log:\n{}", self.log());
        }
    }
}

async fn call(http: &reqwest::Client, url: &str, route: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http.post(format!("{url}{route}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("the portal answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("OCHOPOD_PORTAL").env_remove("OCHOPOD_TOKEN").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_serves_every_tool_behind_its_token() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &yaml)).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let portal = Portal::start(&zk);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = portal.url.clone();
    wait::until("the portal to serve", Duration::from_secs(40), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            match http.get(format!("{url}/healthz")).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", portal.log()));
    let ok = |(code, body): (u16, Value)| {
        assert_eq!(code, 200, "{body}");
        body
    };

    // The token: none, or a wrong one, is a 401 with a JSON error.
    let (code, body) = call(&http, &url, "/v1/ls", None, json!({})).await;
    assert_eq!((code, body["kind"].as_str()), (401, Some("unauthorized")), "{body}");
    let (code, _) = call(&http, &url, "/v1/ls", Some("wrong"), json!({})).await;
    assert_eq!(code, 401);
    let t = Some(TOKEN);

    // The portal is a pod of cluster `portal`, registered like any other.
    let ls = ok(call(&http, &url, "/v1/ls", t, json!({})).await);
    let clusters: Vec<&str> =
        ls["report"]["clusters"].as_array().unwrap().iter().filter_map(|c| c["cluster"].as_str()).collect();
    assert!(clusters.contains(&"test.web"), "{ls}");
    let portal_listed = wait::until("the portal's own pod to register", Duration::from_secs(20), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (_, ls) = call(&http, &url, "/v1/ls", Some(TOKEN), json!({"clusters": ["portal"]})).await;
            if ls["exit_code"] == 0 {
                Ok(ls)
            } else {
                Err(ls.to_string())
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(portal_listed["report"]["clusters"][0]["cluster"], "test.portal", "{portal_listed}");
    assert!(ls["text"].as_str().unwrap().contains("test.web"), "{ls}");

    // Every read tool.
    for (route, body, key) in [
        ("/v1/grep", json!({"clusters": ["web"]}), "pods"),
        ("/v1/info", json!({"clusters": ["web"]}), "pods"),
        ("/v1/poll", json!({"clusters": ["web"]}), "pods"),
        ("/v1/port", json!({"clusters": ["web"], "port": 8080}), "pods"),
        ("/v1/log", json!({"clusters": ["web"], "lines": 3}), "pods"),
        ("/v1/wait", json!({"clusters": ["web"], "count": 2, "timeout": "20s"}), "clusters"),
    ] {
        let reply = ok(call(&http, &url, route, t, body).await);
        assert_eq!(reply["exit_code"], 0, "{route}: {reply}");
        assert_eq!(
            reply["report"][key].as_array().map(Vec::len),
            Some(if key == "pods" { 2 } else { 1 }),
            "{route}: {reply}"
        );
    }
    let grep = ok(call(&http, &url, "/v1/grep", t, json!({"clusters": ["web"]})).await);
    let seqs: Vec<u64> =
        grep["report"]["pods"].as_array().unwrap().iter().map(|p| p["seq"].as_u64().unwrap()).collect();

    // Every drive tool, with the selection rules and per-pod results.
    let (code, body) = call(&http, &url, "/v1/off", t, json!({"clusters": ["web"]})).await;
    assert_eq!((code, body["exit_code"].as_u64()), (400, Some(2)), "{body}");
    assert!(body["error"].as_str().unwrap().contains("refusing to off every pod of web: add --force"), "{body}");
    let off =
        ok(call(&http, &url, "/v1/off", t, json!({"clusters": ["web"], "seq": [seqs[0]], "timeout": "10s"})).await);
    assert_eq!(
        (off["exit_code"].as_u64(), off["report"]["pods"].as_array().map(Vec::len)),
        (Some(0), Some(1)),
        "{off}"
    );
    assert_eq!(off["report"]["pods"][0]["code"], 200, "{off}");
    let on = ok(call(&http, &url, "/v1/on", t, json!({"clusters": ["web"], "force": true, "timeout": "10s"})).await);
    assert_eq!((on["exit_code"].as_u64(), on["report"]["pods"].as_array().map(Vec::len)), (Some(0), Some(2)), "{on}");
    let missing = ok(call(&http, &url, "/v1/reset", t, json!({"clusters": ["web"], "seq": [seqs[1], 999]})).await);
    assert_eq!(missing["exit_code"], 1, "a seq that matches nothing fails the call: {missing}");
    assert!(missing["message"].as_str().unwrap().contains("no pod has seq 999"), "{missing}");
    // The reset pod registers again; then every pod answers the signal, per pod.
    ok(call(&http, &url, "/v1/wait", t, json!({"clusters": ["web"], "count": 2, "timeout": "20s"})).await);
    let signal = ok(call(
        &http,
        &url,
        "/v1/signal",
        t,
        json!({"clusters": ["web"], "force": true, "data": {"a": 1}, "timeout": "5s"}),
    )
    .await);
    assert_eq!(signal["report"]["pods"].as_array().map(Vec::len), Some(2), "{signal}");
    let reconfigure = ok(call(&http, &url, "/v1/reconfigure", t, json!({"clusters": ["web"], "timeout": "10s"})).await);
    assert_eq!(reconfigure["exit_code"], 0, "{reconfigure}");
    let kill =
        ok(call(&http, &url, "/v1/kill", t, json!({"clusters": ["web"], "seq": [seqs[1]], "timeout": "10s"})).await);
    assert_eq!(kill["exit_code"], 0, "{kill}");

    // Bad input: JSON errors that say what is wrong.
    let (code, body) = call(&http, &url, "/v1/off", t, json!({"clusters": ["web"], "forse": true})).await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown field `forse`"), "{body}");
    let (code, body) =
        call(&http, &url, "/v1/on", t, json!({"clusters": ["web"], "force": true, "timeout": "soon"})).await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().starts_with("timeout \"soon\""), "{body}");
    let (code, body) = call(&http, &url, "/v1/grep", t, json!({"clusters": ["nosuch"]})).await;
    assert_eq!((code, body["kind"].as_str()), (404, Some("no_cluster")), "{body}");
    assert!(body["clusters"].as_array().unwrap().contains(&json!("test.web")), "the clusters that exist: {body}");
    let (code, body) = call(&http, &url, "/v1/nope", t, json!({})).await;
    assert_eq!(code, 404);
    assert!(body["routes"].as_array().unwrap().contains(&json!("POST /v1/grep")), "{body}");
    let (code, body) = call(&http, &url, "/v1/port", t, json!({"clusters": ["web"]})).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = call(&http, &url, "/v1/grep", t, json!("not an object")).await;
    assert_eq!(code, 400, "{body}");
    // A bad declaration is refused with `ochopod validate`'s file:line:column message.
    let (code, body) = call(
        &http,
        &url,
        "/v1/deploy",
        t,
        json!({"declaration": "cluster: x\nmodel:\n  dampr: 2s\n", "source": "bad.yaml", "image": "i", "count": 1}),
    )
    .await;
    assert_eq!((code, body["kind"].as_str()), (422, Some("invalid_declaration")), "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("bad.yaml:3:3"), "{body}");
    let (code, body) =
        call(&http, &url, "/v1/deploy", t, json!({"declaration": "cluster: x\n", "image": "i", "count": 1})).await;
    assert_eq!((code, body["kind"].as_str()), (501, Some("unsupported")), "--platform none: {body}");

    // The event stream: every watched pod's /events, tagged with the pod.
    let mut stream = http.get(format!("{url}/v1/events?clusters=web")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let (code, _) = call(&http, &url, "/v1/events", t, json!({})).await;
    assert_eq!(code, 404, "events is a GET");
    let unauthorized = http.get(format!("{url}/v1/events")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    ok(call(&http, &url, "/v1/reconfigure", t, json!({"clusters": ["web"]})).await);
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.lines().any(|l| l.starts_with("data: ") && l.contains("\"event\"") && l.contains("test.web #")) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "events seen: {seen}");
    drop(stream);

    // The CLI through the portal prints what it prints without one, with the same exit codes.
    let zk_at = zk.connect_string();
    let direct = [("OCHOPOD_ZK", zk_at.as_str())];
    let through = [("OCHOPOD_PORTAL", url.as_str()), ("OCHOPOD_TOKEN", TOKEN), ("OCHOPOD_ZK", "127.0.0.1:1")];
    for args in [
        &["port", "8080", "web"][..],
        &["ls", "web"],
        &["off", "web"],
        &["grep", "nosuch"],
        &["reset", "web", "-i", "999"],
        &["port", "8080", "web", "--json"],
    ] {
        let a = cli(args, &direct);
        let b = cli(args, &through);
        assert_eq!(a, b, "{args:?}: direct vs through the portal");
    }
    let (code, _, err) = cli(&["ls"], &[("OCHOPOD_PORTAL", url.as_str()), ("OCHOPOD_TOKEN", "wrong")]);
    // A wrong token is bad usage: nothing ran.
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing or wrong bearer token"), "{err}");
}
