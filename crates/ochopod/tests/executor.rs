//! What a pod does with its own process, hooks, templates and files, seen from outside a real
//! pod (issue 19): `restart: changed`, hook output in the log, templates that never end, files
//! behind symlinks, secrets in the logged command line, and what a SIGTERM shutdown says.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// A pod's `/log` lines.
async fn log_of(pod: &Pod) -> Result<Vec<String>, String> {
    let reply = pod.client().call(&pod.address(), "log", None, Duration::from_secs(5)).await;
    serde_json::from_value(reply.map_err(|e| e.to_string())?.body).map_err(|e| e.to_string())
}

/// What the pod printed on stdout (its log file).
fn stdout_of(pod: &Pod) -> String {
    std::fs::read_to_string(pod.dir.path().join("pod.log")).unwrap_or_default()
}

fn lines_in(pod: &Pod, file: &str) -> usize {
    std::fs::read_to_string(pod.dir.path().join(file)).map(|t| t.lines().count()).unwrap_or(0)
}

/// Waits until `file` in the pod's folder has `n` lines.
async fn wait_lines(pod: &Pod, file: &str, n: usize) {
    let res = wait::until(&format!("{n} lines in {file}"), SETTLE, || async {
        match lines_in(pod, file) {
            got if got == n => Ok(()),
            got => Err(format!("{got} lines")),
        }
    })
    .await;
    if let Err(e) = res {
        panic!("{e}\npod log:\n{}", pod.log_tail(40));
    }
}

/// The `/events` stream of a pod, read as text.
struct Events {
    stream: reqwest::Response,
    seen: String,
}

impl Events {
    async fn open(pod: &Pod) -> Events {
        let stream = wait::until("the /events stream", SETTLE, || async {
            reqwest::get(format!("http://{}/events", pod.address())).await.map_err(|e| e.to_string())
        })
        .await
        .unwrap();
        Events { stream, seen: String::new() }
    }

    /// The next JSON event for which `pick` holds, skipping the others.
    async fn next(&mut self, what: &str, pick: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            while let Some(end) = self.seen.find('\n') {
                let line: String = self.seen.drain(..=end).collect();
                let Some(data) = line.trim().strip_prefix("data:") else { continue };
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(data.trim()) {
                    if pick(&event) {
                        return event;
                    }
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.chunk()).await {
                Ok(Ok(Some(chunk))) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("no {what} on /events ({other:?}); left: {:?}", self.seen),
            }
        }
    }
}

/// The first `configuration failed` line of the pod's `/log` that mentions `text`: what the
/// executor answered the round's `on` with (406).
async fn failure_in_log(pod: &Pod, text: &str) -> String {
    wait::until(&format!("a failed configuration mentioning {text}"), SETTLE, || async {
        let lines = log_of(pod).await?;
        let found = lines.into_iter().find(|l| l.contains("configuration failed") && l.contains(text));
        found.ok_or_else(|| "not yet".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\npod log:\n{}", pod.log_tail(40)))
}

fn is_configured(e: &serde_json::Value) -> bool {
    e["event"] == "configured"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_changed_restarts_only_when_what_the_process_was_started_with_changed() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let db1 = start_pod(&zk, &simple_yaml("db", ""));
    let cache1 = start_pod(&zk, &simple_yaml("cache", ""));
    wait_settled(&[&db1], 1, SETTLE).await;
    wait_settled(&[&cache1], 1, SETTLE).await;
    // `web` uses `db` in a file, not `cache`; both are dependencies, so both trigger rounds.
    let web_yaml = r#"cluster: web
namespace: test
zk_session_timeout: 5s
model:
  depends_on: [db, cache]
  damper: 0s
  grace: 5s
process:
  command: echo start >> starts.log; exec sleep 3600
  shell: true
  grace: 2s
  restart: changed
files:
  - path: db.txt
    template: "{{ grep(\"db\", 8080) }}"
hooks:
  configured: echo done >> configured.log
"#;
    let web = start_pod(&zk, web_yaml);
    wait_settled(&[&web], 1, SETTLE).await;
    wait_lines(&web, "configured.log", 1).await;
    wait_lines(&web, "starts.log", 1).await;
    let mut events = Events::open(&web).await;

    // An unrelated dependency moves: a round, no restart.
    let cache2 = start_pod(&zk, &simple_yaml("cache", ""));
    wait_settled(&[&cache1, &cache2], 2, SETTLE).await;
    let quiet = events.next("a configuration", is_configured).await;
    assert!(quiet.get("restart").is_none() && quiet.get("changed").is_none(), "{quiet}");
    wait_lines(&web, "configured.log", 2).await;
    assert_eq!(lines_in(&web, "starts.log"), 1, "restarted for a dependency it does not use");
    assert!(stdout_of(&web).contains("the process keeps running: nothing it was started with changed"));

    // The dependency its file renders moves: the file changes, the process restarts, and both
    // `/events` and the log say why.
    let db2 = start_pod(&zk, &simple_yaml("db", ""));
    wait_settled(&[&db1, &db2], 2, SETTLE).await;
    let changed =
        events.next("a configuration that changed the file", |e| is_configured(e) && e["restart"] == true).await;
    assert_eq!(changed["changed"], serde_json::json!(["file db.txt"]), "{changed}");
    wait_lines(&web, "starts.log", 2).await;
    let log = stdout_of(&web);
    let said = log.lines().find(|l| l.contains("restarting the process: what it was started with changed"));
    assert!(said.is_some_and(|l| l.contains("file db.txt")), "{log}");
    drop((db2, cache2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_hooks_print_goes_to_the_pods_log_with_the_hooks_name() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let hooks = "hooks:\n  configured: echo 'out of configured'; echo 'err of configured' >&2\n";
    let pod = start_pod(&zk, &format!("{}{hooks}", simple_yaml("hooked", "")));
    wait_settled(&[&pod], 1, SETTLE).await;
    let lines = wait::until("the hook's output in /log", SETTLE, || async {
        let lines = log_of(&pod).await?;
        let both = ["out of configured", "err of configured"].iter().all(|t| lines.iter().any(|l| l.contains(t)));
        if both {
            Ok(lines)
        } else {
            Err("not yet".to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\npod log:\n{}", pod.log_tail(40)));
    for (text, stream) in [("out of configured", "stdout"), ("err of configured", "stderr")] {
        let line = lines.iter().find(|l| l.contains(text)).unwrap();
        assert!(line.contains("configured") && line.contains(stream), "{line}");
        let printed = stdout_of(&pod);
        assert!(printed.lines().any(|l| l.contains(text) && l.contains("hook")), "{printed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_never_ends_fails_the_round_by_name_and_sigterm_still_ends_the_pod() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let forever = "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}\
                   {{ a }}{% endfor %}{% endfor %}{% endfor %}";
    let yaml = format!("{}  - path: forever.txt\n    template: \"{forever}\"\n", simple_yaml("forever", ""));
    let mut pod = start_pod(&zk, &yaml);
    // The error the `on` answers with (406) is the one the executor logs.
    let failed = failure_in_log(&pod, "forever.txt").await;
    assert!(failed.contains("template files[1] (forever.txt)") && failed.contains("fuel"), "{failed}");
    pod.wait_info("the leader to report the failed round", SETTLE, |i| {
        if i.status.contains("configuration failed") {
            Ok(())
        } else {
            Err(format!("status {:?}", i.status))
        }
    })
    .await
    .unwrap();
    // The leader retries: a render is likely under way when SIGTERM comes.
    let asked = Instant::now();
    pod.signal(Signal::SIGTERM);
    let status = pod.wait_exit(Duration::from_secs(30)).expect("the pod exits on SIGTERM");
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status}; log:\n{}", pod.log_tail(40));
    // The process grace (2 s) bounds the stop; nothing runs here, so it should be far shorter.
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}; log:\n{}", pod.log_tail(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_behind_a_symlink_leading_outside_the_pods_folder_is_refused() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let outside = tempfile::tempdir().unwrap();
    // `initialize` runs before the first render, in the pod's folder: it plants the link.
    let yaml = format!(
        "{}  - path: conf/app.cfg\n    template: \"x={{{{ index }}}}\"\nhooks:\n  initialize: ln -s \"$OUTSIDE\" conf\n",
        simple_yaml("links", "")
    );
    let connect = zk.connect_string();
    let spec = PodSpec::new(bin(), &connect, &yaml).env("OUTSIDE", outside.path().display());
    let pod = Pod::start(spec).expect("start pod");
    let failed = failure_in_log(&pod, "symlink").await;
    assert!(failed.contains("conf is a symlink to") && failed.contains("outside the pod's folder"), "{failed}");
    let info = pod.info().await.unwrap();
    assert!(!outside.path().join("app.cfg").exists(), "written through the link");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_ne!(info.process, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_the_environment_are_masked_in_the_logged_command_unless_debug() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let yaml = |cluster: &str, debug: &str| {
        format!(
            "cluster: {cluster}\nnamespace: test\nzk_session_timeout: 5s\n{debug}model:\n  damper: 0s\n\
             process:\n  command: sh -c 'exec sleep 3600' sh --password={{{{ env.DB_PASSWORD }}}}\n  grace: 2s\n"
        )
    };
    let connect = zk.connect_string();
    let start = |yaml: &str| {
        let spec = PodSpec::new(bin(), &connect, yaml).env("DB_PASSWORD", "hunter2-xyz");
        Pod::start(spec).expect("start pod")
    };
    let quiet = start(&yaml("masked", ""));
    let debug = start(&yaml("shown", "debug: true\n"));
    wait_settled(&[&quiet], 1, SETTLE).await;
    wait_settled(&[&debug], 1, SETTLE).await;
    for (pod, shown) in [(&quiet, false), (&debug, true)] {
        let ring = log_of(pod).await.unwrap();
        let started = ring.iter().find(|l| l.contains("process started")).expect("process started in /log");
        let printed = stdout_of(pod);
        if shown {
            assert!(started.contains("--password=hunter2-xyz"), "{started}");
        } else {
            assert!(started.contains("--password=***"), "{started}");
            assert!(!ring.iter().any(|l| l.contains("hunter2-xyz")), "{ring:?}");
            assert!(!printed.contains("hunter2-xyz"), "{printed}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_shutdown_does_not_say_the_pod_idles_dead() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let mut pod = start_pod(&zk, &simple_yaml("stopping", ""));
    wait_settled(&[&pod], 1, SETTLE).await;
    pod.signal(Signal::SIGTERM);
    let status = pod.wait_exit(Duration::from_secs(30)).expect("the pod exits on SIGTERM");
    assert!(status.success(), "exit status {status}; log:\n{}", pod.log_tail(40));
    let printed = stdout_of(&pod);
    assert!(printed.contains("process exited"), "{printed}");
    assert!(!printed.contains("dead and idles"), "{printed}");
}
