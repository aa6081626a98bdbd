//! Nothing a pod started outlives it (issue 13, items 7–9): its child and the child's
//! grandchildren, a daemon the child detached with `setsid`, a hook's background job, the
//! leader's probe, whether ochopod shuts down or is SIGKILLed, and `finalize` never overlaps
//! `tear_down`.
//!
//! What a pod started is found by a mark the harness gives it: every process ochopod starts
//! inherits `POD_DIR=<the pod's own temp folder>`, unique to the test. A guard SIGKILLs whatever
//! still carries it when the test ends, passed or failed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// How long a pod's leftovers may take to disappear once ochopod is gone.
const GONE: Duration = Duration::from_secs(10);

/// Every live process carrying the pod's mark, but `except` (ochopod itself, while it runs).
fn marked(dir: &Path, except: Option<u32>) -> Vec<u32> {
    let entry = format!("POD_DIR={}", dir.display()).into_bytes();
    let Ok(proc) = std::fs::read_dir("/proc") else { return Vec::new() };
    proc.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Some(*pid) != except)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == entry))
        })
        .filter(|pid| ochopod_proc::stat::alive(*pid as i32))
        .collect()
}

fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd: Vec<String> =
                cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
            format!("{pid} {cmd:?}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// SIGKILLs everything carrying the pod's mark when dropped.
struct Marked(PathBuf);

impl Drop for Marked {
    fn drop(&mut self) {
        for pid in marked(&self.0, None) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// A one-pod cluster running `command` (a shell script), with `model` lines under `model:` and
/// `extra` declaration lines at the end.
fn start(zk: &ZkServer, cluster: &str, model: &str, command: &str, extra: &str) -> (Pod, Marked) {
    let script: String = command.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "cluster: {cluster}\nnamespace: test\nzk_session_timeout: 5s\nmodel:\n  damper: 0s\n{model}process:\n  shell: true\n  grace: 1s\n  command: |\n{script}{extra}"
    );
    let pod = start_pod(zk, &yaml);
    let guard = Marked(pod.dir.path().to_path_buf());
    (pod, guard)
}

/// Waits until every file holds the pid of a live process; returns the pids.
async fn pids(pod: &Pod, files: &[&str]) -> Vec<u32> {
    let dir = pod.dir.path();
    wait::until(&format!("pids in {files:?}"), SETTLE, || async {
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
            let pid: u32 = text.trim().parse().map_err(|e| format!("{f}: {e}"))?;
            if !ochopod_proc::stat::alive(pid as i32) {
                return Err(format!("{f}: {pid} is not running"));
            }
            out.push(pid);
        }
        Ok(out)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\npod log:\n{}", pod.log_tail(40)))
}

/// Waits until nothing carries the pod's mark any more.
async fn all_gone(pod: &Pod, what: &str) {
    let dir = pod.dir.path().to_path_buf();
    let res = wait::until(what, GONE, || async {
        match marked(&dir, None) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("still running: {}", describe(&left))),
        }
    })
    .await;
    if let Err(e) = res {
        panic!("{e}\npod log:\n{}", pod.log_tail(40));
    }
}

fn shut_down(pod: &mut Pod) {
    pod.signal(Signal::SIGTERM);
    let status = pod.wait_exit(Duration::from_secs(60)).expect("the pod exits on SIGTERM");
    assert!(status.success(), "exit status {status}; log:\n{}", pod.log_tail(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_pod_that_is_not_pid_1_takes_its_child_and_grandchildren_with_it() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // A grandchild in the child's group, and one that left it with setsid.
    let command = "sleep 3600 & echo $! > grandchild.pid\nsetsid sleep 3600 & echo $! > detached.pid\necho $$ > child.pid\nexec sleep 3600";
    let (mut pod, _guard) = start(&zk, "sigkill", "", command, "");
    let started = pids(&pod, &["child.pid", "grandchild.pid", "detached.pid"]).await;
    assert_ne!(pod.pid(), 1);
    let killed = std::time::Instant::now();
    pod.signal(Signal::SIGKILL);
    pod.wait_exit(Duration::from_secs(10)).expect("SIGKILL ends the pod");
    all_gone(&pod, &format!("the SIGKILLed pod's processes {started:?} to go")).await;
    eprintln!("everything the SIGKILLed pod started was gone {:?} after the SIGKILL", killed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_the_child_detached_is_ended_gracefully_at_shutdown() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // The daemon records the SIGTERM it gets: a graceful end, not only a kill.
    let daemon = r#"setsid sh -c 'trap "echo term > daemon.term; exit 0" TERM; echo $$ > daemon.pid; while :; do sleep 0.1; done' > /dev/null 2>&1 &"#;
    let command = format!("{daemon}\nexec sleep 3600");
    let (mut pod, _guard) = start(&zk, "daemon", "", &command, "");
    pids(&pod, &["daemon.pid"]).await;
    pod.wait_info("running", SETTLE, |i| if i.process == "running" { Ok(()) } else { Err(i.process.clone()) })
        .await
        .unwrap();
    shut_down(&mut pod);
    all_gone(&pod, "the detached daemon to go").await;
    assert!(pod.dir.path().join("daemon.term").exists(), "the daemon never got SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tear_down_hooks_background_job_is_ended_at_shutdown() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let hooks = "hooks:\n  tear_down: sleep 3600 > /dev/null 2>&1 & echo $! > job.pid; kill -TERM $OCHOPOD_PID\n";
    let (mut pod, _guard) = start(&zk, "teardown", "", "exec sleep 3600", hooks);
    pod.wait_info("running", SETTLE, |i| if i.process == "running" { Ok(()) } else { Err(i.process.clone()) })
        .await
        .unwrap();
    shut_down(&mut pod);
    assert!(pod.dir.path().join("job.pid").exists(), "tear_down did not run; log:\n{}", pod.log_tail(40));
    all_gone(&pod, "tear_down's background job to go").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_running_at_shutdown_is_ended() {
    let zk = ZkServer::start().expect("ZooKeeper");
    let model =
        "  probe:\n    command: echo $$ > probe.pid; sleep 3600; echo never\n    every: 60s\n    timeout: 120s\n";
    let (mut pod, _guard) = start(&zk, "probe", model, "exec sleep 3600", "");
    pids(&pod, &["probe.pid"]).await;
    shut_down(&mut pod);
    all_gone(&pod, "the probe to go").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_starts_only_after_tear_down_ended_and_a_cut_tear_down_is_reported() {
    let zk = ZkServer::start().expect("ZooKeeper");
    // tear_down stops the child at once, works past the grace (1 s), then hangs until its
    // timeout (4 s) cuts it off; finalize records when it starts.
    let hooks = "hooks:\n  tear_down:\n    command: date +%s%N > td.start; kill -TERM $OCHOPOD_PID; sleep 2; date +%s%N > td.end; sleep 60; touch td.never\n    timeout: 4s\n  finalize: date +%s%N > fin.start\n";
    let (mut pod, _guard) = start(&zk, "order", "", "exec sleep 3600", hooks);
    pod.wait_info("running", SETTLE, |i| if i.process == "running" { Ok(()) } else { Err(i.process.clone()) })
        .await
        .unwrap();
    shut_down(&mut pod);
    let ns = |name: &str| -> u128 {
        let path = pod.dir.path().join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}; log:\n{}", pod.log_tail(40)));
        text.trim().parse().unwrap()
    };
    assert!(
        pod.dir.path().join("td.end").exists(),
        "the pod exited while tear_down still worked; log:\n{}",
        pod.log_tail(40)
    );
    let (start, end, fin) = (ns("td.start"), ns("td.end"), ns("fin.start"));
    assert!(fin > end, "finalize started {} ms before tear_down's work ended", (end - fin.min(end)) / 1_000_000);
    assert!(
        // Well past tear_down's work (2 s): its 4 s timeout, less the shell's start-up.
        fin - start >= 3_500_000_000,
        "finalize started {} ms after tear_down, before its timeout",
        (fin - start) / 1_000_000
    );
    assert!(!pod.dir.path().join("td.never").exists(), "tear_down ran past its timeout");
    let log = std::fs::read_to_string(pod.dir.path().join("pod.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("hook cut by its timeout") && l.contains("tear_down")),
        "the cut is not in the log:\n{}",
        pod.log_tail(40)
    );
    all_gone(&pod, "the pod's processes to go").await;
}
