//! The portal's API against real pods: a real ZooKeeper on loopback, real `ochopod run` pods, and
//! the portal started as `ochopod portal` (itself a pod of cluster `portal`). Every tool route,
//! the token, bad input answered with JSON errors, the aggregated event stream, and the CLI
//! through `--portal` printing what it prints without one, with the same exit codes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::portal::{cli, Served};
use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "portal-s3cret";

async fn call(http: &reqwest::Client, url: &str, route: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http.post(format!("{url}{route}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("the portal answers");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_serves_every_tool_behind_its_token() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &yaml)).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let portal = Served::portal(&zk, TOKEN, &["--platform", "none"], &[]);
    portal.ready().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = portal.url.clone();
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

/// A pod whose process writes `tick <n>` to its log every 200 ms.
fn chatty_yaml() -> String {
    r#"cluster: chatty
namespace: test
zk_session_timeout: 5s
model:
  damper: 0s
  grace: 5s
process:
  command: i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done
  shell: true
  pipe_output: true
  grace: 2s
"#
    .to_string()
}

/// `ochopod log -f …` running, its stdout and stderr in files; killed when dropped.
struct Following {
    child: std::process::Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Following {
    fn start(dir: &std::path::Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Following {
        let (out, err) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("OCHOPOD_PORTAL")
            .env_remove("OCHOPOD_TOKEN")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Following { child: cmd.spawn().unwrap(), out, err }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGINT (what Ctrl-C sends), then its exit code.
    fn interrupt(&mut self) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let mut code = None;
        let _ =
            wait::until_blocking("log -f to end on SIGINT", Duration::from_secs(15), || match self.child.try_wait() {
                Ok(Some(status)) => {
                    code = status.code();
                    Ok(())
                }
                _ => Err("running".to_string()),
            });
        code
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per pod (`[test.chatty #n]`), its `tick <i>` lines: i → the whole line as printed.
fn ticks(out: &str) -> std::collections::BTreeMap<String, std::collections::BTreeMap<u64, String>> {
    let mut by_pod: std::collections::BTreeMap<String, std::collections::BTreeMap<u64, String>> = Default::default();
    for line in out.lines() {
        let Some((pod, rest)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else { continue };
        let Some(n) = rest.split("tick ").nth(1).and_then(|t| {
            t.split(|c: char| !c.is_ascii_digit()).next().filter(|d| !d.is_empty()).and_then(|d| d.parse().ok())
        }) else {
            continue;
        };
        by_pod.entry(pod.to_string()).or_default().insert(n, line.to_string());
    }
    by_pod
}

async fn log_follows(portal: &Served) -> u64 {
    portal.get("/healthz", "").await.1["log_follows"].as_u64().unwrap_or(u64::MAX)
}

/// `log -f --portal`: the portal follows the pods (the tails, then every new line, the pods that
/// join), the CLI prints what it prints without a portal, and the portal's follower ends when the
/// client goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_follow_goes_through_the_portal_with_the_same_output() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &chatty_yaml())).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let portal = Served::portal(&zk, TOKEN, &["--platform", "none"], &[]);
    portal.ready().await;
    let url = portal.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let zk_at = zk.connect_string();
    let direct = [("OCHOPOD_ZK", zk_at.as_str())];
    let through = [("OCHOPOD_PORTAL", url.as_str()), ("OCHOPOD_TOKEN", TOKEN), ("OCHOPOD_ZK", "127.0.0.1:1")];
    let args = ["log", "-f", "-n", "3", "chatty"];
    let mut a = Following::start(dir.path(), "direct", &args, &direct);
    let mut b = Following::start(dir.path(), "portal", &args, &through);

    // Both see the two pods' new lines, then a pod that joins.
    let enough = |f: &Following, pods: usize| {
        let t = ticks(&f.stdout());
        if t.len() >= pods && t.values().all(|lines| lines.len() >= 8) {
            Ok(())
        } else {
            Err(format!("stdout:\n{}\nstderr:\n{}", f.stdout(), f.stderr()))
        }
    };
    for f in [&a, &b] {
        wait::until("two pods' lines", Duration::from_secs(30), || async { enough(f, 2) }).await.unwrap();
    }
    assert_eq!(log_follows(&portal).await, 1, "the portal follows for the one client");
    let third = start_pod(&zk, &chatty_yaml());
    let seq = wait::until("the third pod's seq", Duration::from_secs(30), || async {
        third.info().await.map_err(|e| e.to_string())?.seq.ok_or_else(|| "no seq yet".to_string())
    })
    .await
    .unwrap();
    let joined = format!("test.chatty #{seq}: joined");
    for f in [&a, &b] {
        wait::until("the third pod joined", Duration::from_secs(30), || async {
            enough(f, 3)?;
            if f.stderr().contains(&joined) {
                Ok(())
            } else {
                Err(f.stderr())
            }
        })
        .await
        .unwrap();
    }
    assert_eq!((a.interrupt(), b.interrupt()), (Some(0), Some(0)), "Ctrl-C ends both cleanly");

    // The same lines, printed the same way: each pod's ticks without a gap, and the ticks both
    // saw identical to the byte.
    let (out_a, out_b) = (a.stdout(), b.stdout());
    for out in [&out_a, &out_b] {
        assert!(out.lines().all(|l| l.starts_with("[test.chatty #")), "{out}");
    }
    let (ta, tb) = (ticks(&out_a), ticks(&out_b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (pod, lines_a) in &ta {
        let lines_b = &tb[pod];
        for lines in [lines_a, lines_b] {
            let n: Vec<u64> = lines.keys().copied().collect();
            assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{pod}: a gap in {n:?}");
        }
        let both: Vec<u64> = lines_a.keys().filter(|n| lines_b.contains_key(n)).copied().collect();
        assert!(both.len() >= 5, "{pod}: {} lines seen by both", both.len());
        for n in both {
            assert_eq!(lines_a[&n], lines_b[&n], "{pod}: tick {n}");
        }
    }

    // The client is gone: so is the portal's follower.
    wait::until("the portal's follower to end", Duration::from_secs(15), || async {
        match log_follows(&portal).await {
            0 => Ok(()),
            n => Err(format!("{n} open")),
        }
    })
    .await
    .unwrap();

    // What cannot be followed fails as it does without a portal.
    for args in [&["log", "-f", "nosuch"][..], &["log", "-f", "chatty", "-i", "999"]] {
        assert_eq!(cli(args, &direct), cli(args, &through), "{args:?}");
    }
    drop(third);
}

/// The portal over HTTPS (`--tls-cert/--tls-key`, a certificate of a test CA): the CLI reaches
/// it with `--portal https://…` and the CA, and prints what it prints without a portal. The
/// portal pod's own control API is behind the pods' token, like any pod's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_serves_https_and_its_own_pod_is_behind_the_token() {
    const PODS_TOKEN: &str = "pods-s3cret";
    let pki = common::pki::pki();
    let zk = ZkServer::start().expect("ZooKeeper");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &simple_yaml("web", ""))).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    let (cert, key, ca) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let portal = Served::portal(
        &zk,
        TOKEN,
        &["--platform", "none", "--tls-cert", cert, "--tls-key", key],
        &[("OCHOPOD_TOKEN", PODS_TOKEN.to_string())],
    );
    portal.ready().await;
    let url = portal.url.clone();
    assert!(url.starts_with("https://"), "{url}");

    let zk_at = zk.connect_string();
    let direct = [("OCHOPOD_ZK", zk_at.as_str())];
    let through = [("OCHOPOD_PORTAL", url.as_str()), ("OCHOPOD_TOKEN", TOKEN), ("OCHOPOD_ZK", "127.0.0.1:1")];
    let with_ca = [through[0], through[1], through[2], ("OCHOPOD_CA", ca)];
    wait::until("the portal to answer over HTTPS", Duration::from_secs(30), || async {
        match cli(&["ls", "web", "--ca", ca], &through) {
            (0, out, _) => Ok(out),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", portal.log()));
    for args in [&["port", "8080", "web"][..], &["ls", "web"], &["grep", "nosuch"], &["port", "8080", "web", "--json"]]
    {
        let mut over_https = args.to_vec();
        over_https.extend(["--ca", ca]);
        assert_eq!(cli(args, &direct), cli(&over_https, &through), "{args:?}: direct vs through the HTTPS portal");
    }
    assert_eq!(cli(&["ls", "web"], &direct), cli(&["ls", "web"], &with_ca), "OCHOPOD_CA does the same");

    // Without the CA, or with one that did not sign the portal's certificate: said, nothing ran.
    let (code, _, err) = cli(&["ls"], &through);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HTTPS needs --ca"), "{err}");
    let (code, _, err) = cli(&["ls", "--ca", pki.other_ca.to_str().unwrap()], &through);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("TLS handshake") && err.contains("UnknownIssuer"), "{err}");
    // Plain HTTP gets no answer from it.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let answered = plain.get(format!("http://{}/healthz", portal.address())).send().await;
    assert!(answered.is_err(), "plain HTTP answered: {answered:?}");

    // The portal pod's control API: reads open, anything that changes it needs the pods' token.
    let control = format!("127.0.0.1:{}", portal.control);
    let open = ochopod_api::PodClient::new(None);
    let info = wait::until("the portal pod's control API", Duration::from_secs(30), || async {
        open.info(&control, Duration::from_secs(2)).await.map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    assert_eq!(info.cluster, "portal", "{info:?}");
    for token in [None, Some(TOKEN), Some("guess")] {
        let client = ochopod_api::PodClient::new(token.map(String::from));
        let reply = client.call(&control, "reconfigure", None, Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.code, 401, "reconfigure with {token:?}: {reply:?}");
    }
    let pods_client = ochopod_api::PodClient::new(Some(PODS_TOKEN.into()));
    let reply = pods_client.call(&control, "reconfigure", None, Duration::from_secs(5)).await.unwrap();
    assert_ne!(reply.code, 401, "{reply:?}");
    // The portal holds the pods' token: it drives its own pod as any other.
    let (code, out, err) = cli(&["reconfigure", "portal", "--ca", ca], &through);
    assert_eq!(code, 0, "{out}{err}");
}

/// ZooKeeper credentials given to the portal (`--zk`, `--deploy-zk`, as on a Marathon/Mesos
/// ensemble) reach its server in private files, not on any process's command line (where every
/// user of the host reads them), its log or its pod's `/info`; and the server uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_credentials_reach_the_portal_server_on_no_command_line() {
    const PASSWORD: &str = "zk-portal-pa55word";
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = simple_yaml("web", "");
    let pods: Vec<Pod> = (0..2).map(|_| start_pod(&zk, &yaml)).collect();
    wait_settled(&pods.iter().collect::<Vec<_>>(), 2, SETTLE).await;
    // ZooKeeper's digest provider accepts any `user:password`. `OCHOPOD_ZK` points nowhere: only
    // the `--zk` given finds the pods.
    let url = format!("zk://ochopod:{PASSWORD}@{}", zk.connect_string());
    let portal = Served::portal_with(
        tempfile::tempdir().unwrap(),
        &[("OCHOPOD_ZK", "127.0.0.1:1".to_string())],
        TOKEN,
        &["--platform", "none", "--zk", &url, "--deploy-zk", &url],
        &[],
    );
    portal.ready().await;
    let (code, stdout, stderr) = cli(&["ls", "web", "--portal", &portal.url], &[("OCHOPOD_TOKEN", TOKEN)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("test.web"), "{stdout}");
    let pids = std::iter::once(portal.child.id()).chain(ochopod_integration::pods::descendants(portal.child.id()));
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            pid == portal.child.id() || !String::from_utf8_lossy(&cmdline).contains(PASSWORD),
            "process {pid}'s command line: {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
    assert!(!portal.log().contains(PASSWORD), "the portal's log shows the password");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let info = http.get(format!("http://127.0.0.1:{}/info", portal.control)).bearer_auth(TOKEN).send().await.unwrap();
    let info = info.text().await.unwrap();
    assert!(info.contains("\"cluster\":\"portal\"") && !info.contains(PASSWORD), "the portal pod's /info: {info}");
}
