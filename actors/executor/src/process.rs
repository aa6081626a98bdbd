//! The I/O the actor performs for the machine: hooks and sanity commands through `sh -c`, HTTP
//! and TCP sanity checks, spawning the supervised child in its own process group, and signalling
//! that group.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use ochopod_config::SanityCheck;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::machine::Sig;
use crate::reaper;

/// How much of a failing command's stderr goes into its error (the end is where the reason is).
const TAIL: usize = 400;

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().rev().nth(TAIL) {
        Some((i, _)) => format!("…{}", &text[i..]),
        None => text.to_string(),
    }
}

/// Run `sh -c command` with `stdin` and `env` (added to the pod's own) in its own process group,
/// bounded by `timeout`. `Ok(stdout)` on exit 0, else what went wrong with the end of stderr.
pub async fn run_shell(
    command: &str,
    stdin: &str,
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<String, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let (mut child, owned) = reaper::spawn(&mut cmd).map_err(|e| format!("cannot run sh: {e}"))?;
    let pid = child.id();
    let input = child.stdin.take();
    let bytes = stdin.as_bytes().to_vec();
    let feed = async move {
        if let Some(mut input) = input {
            // A command that does not read its stdin is fine: ignore the broken pipe.
            let _ = input.write_all(&bytes).await;
        }
    };
    let run = async {
        let (_, output) = tokio::join!(feed, child.wait_with_output());
        output
    };
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(Ok(out)) => {
            let how = match out.status.code() {
                Some(c) => format!("exit code {c}"),
                None => format!("killed by {:?}", std::os::unix::process::ExitStatusExt::signal(&out.status)),
            };
            let err = tail(&out.stderr);
            Err(if err.is_empty() { how } else { format!("{how}: {err}") })
        }
        Ok(Err(e)) => Err(format!("cannot wait for sh: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                signal_group(pid, Sig::Kill);
            }
            Err(format!("timed out after {timeout:?}"))
        }
    };
    drop(owned);
    result
}

/// A JSON object printed or served by a check becomes the pod's metrics.
fn metrics(text: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

pub async fn run_sanity(
    check: &SanityCheck,
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<Option<Value>, String> {
    match check {
        SanityCheck::Command(command) => run_shell(command, "", env, cwd, timeout).await.map(|out| metrics(&out)),
        SanityCheck::Http(url) => {
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
            let resp = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("GET {url}: {status}"));
            }
            let body = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
            Ok(metrics(&body))
        }
        SanityCheck::Tcp(target) => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e)) => Err(format!("connect {target}: {e}")),
            Err(_) => Err(format!("connect {target}: timed out after {timeout:?}")),
        },
    }
}

/// Start the supervised child in a new process group (its pid is the group id), with exactly
/// `env`. With `pipe`, its stdout and stderr go line by line to the log (target `child`).
pub fn spawn_child(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    pipe: bool,
) -> std::io::Result<(Child, reaper::Owned)> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env).stdin(Stdio::null()).process_group(0).kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if pipe {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let (mut child, owned) =
        reaper::spawn(&mut cmd).map_err(|e| std::io::Error::new(e.kind(), format!("{program}: {e}")))?;
    let pid = child.id().unwrap_or(0);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(BufReader::new(out), pid, "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward(BufReader::new(err), pid, "stderr"));
    }
    Ok((child, owned))
}

async fn forward<R: tokio::io::AsyncBufRead + Unpin>(reader: R, pid: u32, stream: &'static str) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "child", pid, stream, "{line}");
    }
}

/// Signal the process group led by `pgid`. A group that is already gone is not an error.
pub fn signal_group(pgid: u32, sig: Sig) {
    let signal = match sig {
        Sig::Term => Signal::SIGTERM,
        Sig::Kill => Signal::SIGKILL,
    };
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, ?signal, error = %e, "cannot signal the process group"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hook_gets_stdin_and_env_and_fails_with_its_stderr() {
        let env = BTreeMap::from([("OCHOPOD_INDEX".to_string(), "3".to_string())]);
        let out = run_shell("cat; echo \" $OCHOPOD_INDEX\"", "{\"a\":1}", &env, None, Duration::from_secs(5)).await;
        assert_eq!(out.unwrap(), "{\"a\":1} 3\n");
        let err = run_shell("echo nope >&2; exit 4", "", &env, None, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err, "exit code 4: nope");
    }

    #[tokio::test]
    async fn a_hook_that_outlives_its_timeout_fails_and_its_group_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("m");
        let cmd = format!("(sleep 1; touch {}) & sleep 5", marker.display());
        let started = std::time::Instant::now();
        let err = run_shell(&cmd, "", &BTreeMap::new(), None, Duration::from_millis(200)).await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!marker.exists(), "the hook's background job survived the timeout");
    }

    #[tokio::test]
    async fn tcp_and_command_checks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let ok = run_sanity(&SanityCheck::Tcp(addr), &BTreeMap::new(), None, Duration::from_secs(1)).await;
        assert_eq!(ok, Ok(None));
        drop(listener);
        let m = run_sanity(
            &SanityCheck::Command("echo '{\"load\": 2}'".into()),
            &BTreeMap::new(),
            None,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(m, Ok(Some(serde_json::json!({"load": 2}))));
    }
}
