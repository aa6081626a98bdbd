//! The I/O the actor performs for the machine: hooks and sanity commands through `sh -c` (the
//! shared runner of `ochopod-proc`), HTTP and TCP sanity checks, spawning the supervised child in
//! its own process group, and signalling that group.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::Signal;
use ochopod_config::SanityCheck;
use ochopod_proc::lines::{for_each_line, MAX_LINE};
use ochopod_proc::{reaper, Shell, ShellError};
use serde_json::Value;
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::machine::{HookError, Sig};

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

/// Run a sanity command (see [`Shell`]: own process group, group killed on timeout).
/// `Ok(stdout)` on exit 0, else what went wrong with the end of stderr.
pub async fn run_shell(shell: &Shell) -> Result<String, String> {
    run_hook(shell).await.map_err(|e| e.to_string())
}

/// Run a hook as [`run_shell`], telling a failure from a timeout.
pub async fn run_hook(shell: &Shell) -> Result<String, HookError> {
    match shell.run().await {
        Ok(out) if out.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(HookError::Failed { status: out.describe_status(), stderr: tail(&out.stderr) }),
        Err(ShellError::TimedOut(after)) => Err(HookError::TimedOut(after)),
        Err(e) => Err(HookError::NotRun(e.to_string())),
    }
}

/// A JSON object printed or served by a check becomes the pod's metrics.
fn metrics(text: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// The client HTTP checks share: one per executor, so checks reuse their connection instead of
/// opening one (and building a client, with its pool and resolver) every period.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder().no_proxy().build().map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Run a sanity check. `shell` carries the environment, folder and timeout; a command check
/// runs as it, with its command.
pub async fn run_sanity(
    check: &SanityCheck,
    http: &Result<reqwest::Client, String>,
    shell: Shell,
) -> Result<Option<Value>, String> {
    let timeout = shell.timeout;
    match check {
        SanityCheck::Command(command) => {
            run_shell(&Shell { command: command.clone(), ..shell }).await.map(|out| metrics(&out))
        }
        SanityCheck::Http(url) => {
            let client = http.as_ref().map_err(Clone::clone)?;
            let resp = client.get(url).timeout(timeout).send().await.map_err(|e| format!("GET {url}: {e}"))?;
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
    // Exactly `env`, plus the run cookie that `reaper::spawn` adds (see `ochopod_proc::tree`).
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

/// Log the child's output until EOF, whatever it is: a reader that gave up (on bytes that are
/// not UTF-8, say) would leave the pipe full and the child blocked in its next write.
async fn forward<R: tokio::io::AsyncBufRead + Unpin>(reader: R, pid: u32, stream: &'static str) {
    for_each_line(reader, MAX_LINE, |line| tracing::info!(target: "child", pid, stream, "{line}")).await;
}

/// Signal the process group led by `pgid`. A group that is already gone is not an error.
pub fn signal_group(pgid: u32, sig: Sig) {
    let signal = match sig {
        Sig::Term => Signal::SIGTERM,
        Sig::Kill => Signal::SIGKILL,
    };
    ochopod_proc::signal_group(pgid, signal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shell(command: &str, timeout: Duration) -> Shell {
        Shell::new(command, timeout)
    }

    #[tokio::test]
    async fn a_hook_gets_stdin_and_env_and_fails_with_its_stderr() {
        let out = run_shell(
            &shell("cat; echo \" $OCHOPOD_INDEX\"", Duration::from_secs(5))
                .stdin("{\"a\":1}")
                .envs([("OCHOPOD_INDEX", "3")]),
        )
        .await;
        assert_eq!(out.unwrap(), "{\"a\":1} 3\n");
        let err = run_shell(&shell("echo nope >&2; exit 4", Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err, "exit code 4: nope");
    }

    #[tokio::test]
    async fn a_hook_that_outlives_its_timeout_fails_and_its_group_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("m");
        let cmd = format!("(sleep 1; touch {}) & sleep 5", marker.display());
        let started = std::time::Instant::now();
        let err = run_shell(&shell(&cmd, Duration::from_millis(200))).await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!marker.exists(), "the hook's background job survived the timeout");
    }

    #[tokio::test]
    async fn tcp_and_command_checks() {
        let http = http_client();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let ok = run_sanity(&SanityCheck::Tcp(addr), &http, shell("", Duration::from_secs(1))).await;
        assert_eq!(ok, Ok(None));
        drop(listener);
        let m =
            run_sanity(&SanityCheck::Command("echo '{\"load\": 2}'".into()), &http, shell("", Duration::from_secs(5)))
                .await;
        assert_eq!(m, Ok(Some(serde_json::json!({"load": 2}))));
    }
}
