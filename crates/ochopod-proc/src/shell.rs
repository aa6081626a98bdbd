//! Running a shell command the way a pod must: `sh -c` in its own process group, registered with
//! the [`reaper`](crate::reaper), bounded in time, and gone entirely when the time is up.
//!
//! Why a group: a hook or probe is often a script that starts more processes (pipelines,
//! background jobs). Killing only `sh` on a timeout would leave them running, holding the
//! output pipes open. So the command leads its own group and the whole group gets SIGKILL.
//!
//! Why the reaper: ochopod reaps orphans; a child it did not register could have its exit status
//! taken by the reaper before tokio collects it.
//!
//! What the command prints is captured (bounded) and, with [`Shell::log_output`], also logged
//! line by line as it comes (bounded too), so a hook's output reaches the pod's log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::reaper;

/// The most output kept per stream; the rest is read and dropped so the command never blocks.
pub const MAX_CAPTURE: usize = 1 << 20;

/// The most of each stream that [`Shell::log_output`] logs per run; the rest is only counted.
pub const MAX_LOGGED: usize = 64 << 10;

/// The longest line [`Shell::log_output`] logs; longer ones are cut into pieces.
pub const MAX_LOGGED_LINE: usize = 4 << 10;

/// How long to wait for the killed group's leader to be collected after a timeout.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// A command to run with `sh -c`. The environment is the pod's own (inherited), plus [`env`],
/// minus [`env_remove`] (which wins over both), plus the run cookie (see [`crate::tree`]).
///
/// [`env`]: Shell::env
/// [`env_remove`]: Shell::env_remove
#[derive(Clone, Debug)]
pub struct Shell {
    pub command: String,
    pub stdin: Vec<u8>,
    pub env: BTreeMap<String, String>,
    /// Variables the command must not see, even if ochopod's own environment has them (secrets).
    pub env_remove: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
    /// Send what the command prints to the log, line by line, under this name (a hook's).
    pub log_as: Option<String>,
}

impl Shell {
    pub fn new(command: impl Into<String>, timeout: Duration) -> Self {
        Shell {
            command: command.into(),
            stdin: Vec::new(),
            env: BTreeMap::new(),
            env_remove: Vec::new(),
            cwd: None,
            timeout,
            log_as: None,
        }
    }

    pub fn stdin(mut self, stdin: impl Into<Vec<u8>>) -> Self {
        self.stdin = stdin.into();
        self
    }

    pub fn envs<K: Into<String>, V: Into<String>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        self.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn env_remove(mut self, name: impl Into<String>) -> Self {
        self.env_remove.push(name.into());
        self
    }

    pub fn cwd(mut self, dir: Option<impl Into<PathBuf>>) -> Self {
        self.cwd = dir.map(Into::into);
        self
    }

    /// Log what the command prints (both streams, as it comes, line by line, at most
    /// [`MAX_LOGGED`] bytes of each) under `name`: `hook=<name> stream=stdout|stderr`. The output
    /// is captured as well.
    pub fn log_output(mut self, name: impl Into<String>) -> Self {
        self.log_as = Some(name.into());
        self
    }

    pub async fn run(&self) -> Result<Output, ShellError> {
        run_shell(self).await
    }
}

/// How a command that ran to its end ended, and what it printed (each stream capped at
/// [`MAX_CAPTURE`]: stdout keeps its beginning, stderr its end, where the reason usually is).
#[derive(Clone, Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// `exit code 3`, or `killed by SIGKILL`.
    pub fn describe_status(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => match Signal::try_from(s) {
                Ok(sig) => format!("killed by {sig}"),
                Err(_) => format!("killed by signal {s}"),
            },
            (None, None) => self.status.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("cannot run sh: {0}")]
    Spawn(std::io::Error),
    #[error("cannot wait for sh: {0}")]
    Wait(std::io::Error),
    /// The command and its whole process group were killed.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// Run `shell`: see [`Shell`] and the module doc.
pub async fn run_shell(shell: &Shell) -> Result<Output, ShellError> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&shell.command)
        .envs(&shell.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // After `envs`: a removal wins over a variable given explicitly too.
    for name in &shell.env_remove {
        cmd.env_remove(name);
    }
    if let Some(dir) = &shell.cwd {
        cmd.current_dir(dir);
    }
    let (mut child, owned) = reaper::spawn(&mut cmd).map_err(ShellError::Spawn)?;
    let pid = child.id();
    let input = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let bytes = &shell.stdin;
    let feed = async move {
        if let Some(mut input) = input {
            // A command that does not read its stdin is fine: ignore the broken pipe.
            let _ = input.write_all(bytes).await;
        }
    };
    let run = async {
        let log = |stream| shell.log_as.as_deref().map(|name| LineLog::new(name, stream));
        let (_, out, err, status) = tokio::join!(
            feed,
            capture(stdout, Keep::Head, log("stdout")),
            capture(stderr, Keep::Tail, log("stderr")),
            child.wait()
        );
        status.map(|status| Output { status, stdout: out, stderr: err })
    };
    let result = match tokio::time::timeout(shell.timeout, run).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(ShellError::Wait(e)),
        Err(_) => {
            if let Some(pid) = pid {
                signal_group(pid, Signal::SIGKILL);
            }
            // Collect the leader ourselves while it is still registered, so neither the reaper
            // nor a zombie is left with it.
            let _ = tokio::time::timeout(AFTER_KILL, child.wait()).await;
            Err(ShellError::TimedOut(shell.timeout))
        }
    };
    drop(owned);
    result
}

#[derive(Clone, Copy)]
enum Keep {
    Head,
    Tail,
}

/// Logs a stream line by line as it comes (see [`Shell::log_output`]).
struct LineLog<'a> {
    name: &'a str,
    stream: &'static str,
    line: Vec<u8>,
    logged: usize,
    dropped: usize,
}

impl<'a> LineLog<'a> {
    fn new(name: &'a str, stream: &'static str) -> Self {
        LineLog { name, stream, line: Vec::new(), logged: 0, dropped: 0 }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LOGGED_LINE - self.line.len();
            match bytes.iter().take(room + 1).position(|b| *b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&bytes[..i]);
                    bytes = &bytes[i + 1..];
                    self.emit(false);
                }
                None if bytes.len() > room => {
                    self.line.extend_from_slice(&bytes[..room]);
                    bytes = &bytes[room..];
                    self.emit(true);
                }
                None => {
                    self.line.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    fn emit(&mut self, cut: bool) {
        let line = std::mem::take(&mut self.line);
        if self.logged + line.len() > MAX_LOGGED {
            self.dropped += line.len() + 1;
            return;
        }
        self.logged += line.len() + 1;
        let text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line)).into_owned();
        let marker = if cut { crate::lines::CUT_MARKER } else { "" };
        tracing::info!(target: "hook", hook = self.name, stream = self.stream, "{text}{marker}");
    }
}

/// At EOF, or when the command is cut by its timeout: the last partial line still goes out.
impl Drop for LineLog<'_> {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit(false);
        }
        if self.dropped > 0 {
            tracing::info!(
                target: "hook",
                hook = self.name,
                stream = self.stream,
                "[{} more bytes not logged: at most {} KiB of a hook's output go to the log]",
                self.dropped,
                MAX_LOGGED >> 10
            );
        }
    }
}

/// Read `stream` to EOF, keeping at most [`MAX_CAPTURE`] bytes of it, and logging it if asked.
async fn capture(stream: Option<impl AsyncRead + Unpin>, keep: Keep, mut log: Option<LineLog<'_>>) -> Vec<u8> {
    let Some(mut stream) = stream else { return Vec::new() };
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(log) = log.as_mut() {
            log.feed(&chunk[..n]);
        }
        match keep {
            Keep::Head => {
                let room = MAX_CAPTURE.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            Keep::Tail => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * MAX_CAPTURE {
                    kept.drain(..kept.len() - MAX_CAPTURE);
                }
            }
        }
    }
    drop(log);
    if kept.len() > MAX_CAPTURE {
        kept.drain(..kept.len() - MAX_CAPTURE);
    }
    kept
}

/// Signal the process group led by `pgid`. A group that is already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, ?signal, error = %e, "cannot signal the process group"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn stdin_env_and_cwd_reach_the_command_and_stderr_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = Shell::new("cat; echo \" $A $(pwd)\"; echo oops >&2; exit 4", Duration::from_secs(5))
            .stdin("{\"a\":1}")
            .envs([("A", "3")])
            .cwd(Some(dir.path()))
            .run()
            .await
            .unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{{\"a\":1}} 3 {}\n", cwd.display()));
        assert_eq!(out.stderr, b"oops\n");
        assert!(!out.success());
        assert_eq!(out.describe_status(), "exit code 4");
        let out = Shell::new("kill -9 $$", Duration::from_secs(5)).run().await.unwrap();
        assert_eq!(out.describe_status(), "killed by SIGKILL");
    }

    #[tokio::test]
    async fn removed_variables_are_not_seen_even_when_given() {
        // Inherited from ochopod's own environment (cargo sets it for tests).
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let out =
            Shell::new("echo \"${CARGO_MANIFEST_DIR:+inherited} ${B:-unset} ${C:-unset}\"", Duration::from_secs(5))
                .envs([("B", "secret"), ("C", "kept")])
                .env_remove("B")
                .env_remove("CARGO_MANIFEST_DIR")
                .run()
                .await
                .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), " unset kept\n");
    }

    #[tokio::test]
    async fn a_command_that_outlives_its_timeout_fails_and_its_whole_group_dies() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("m");
        let pids = dir.path().join("pids");
        // The background job keeps stdout open: only the group kill ends the wait.
        let cmd = format!("(sleep 1; touch {}) & echo $! > {}; sleep 5", marker.display(), pids.display());
        let started = Instant::now();
        let err = Shell::new(cmd, Duration::from_millis(300)).run().await.unwrap_err();
        assert!(matches!(err, ShellError::TimedOut(_)), "{err}");
        assert_eq!(err.to_string(), "timed out after 300ms");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        let job: i32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while crate::stat::alive(job) {
            assert!(Instant::now() < deadline, "the background job {job} survived the timeout");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!marker.exists(), "the background job ran to its end");
    }

    #[tokio::test]
    async fn output_larger_than_a_pipe_is_read_and_capped() {
        let cmd =
            format!("head -c {} /dev/zero; head -c {} /dev/zero >&2; echo end >&2", 3 * MAX_CAPTURE, 3 * MAX_CAPTURE);
        let out = Shell::new(cmd, Duration::from_secs(20)).run().await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout.len(), MAX_CAPTURE);
        assert_eq!(out.stderr.len(), MAX_CAPTURE);
        assert!(out.stderr.ends_with(b"end\n"), "stderr keeps its end");
    }

    #[tokio::test]
    async fn a_missing_cwd_is_a_spawn_error() {
        let err = Shell::new("true", Duration::from_secs(5)).cwd(Some("/nonexistent/dir")).run().await.unwrap_err();
        assert!(matches!(err, ShellError::Spawn(_)), "{err}");
        assert!(err.to_string().starts_with("cannot run sh: "), "{err}");
    }
}
