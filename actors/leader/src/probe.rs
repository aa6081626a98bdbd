//! The leader's probe: a shell command run right after each round and then every `every`, whose
//! output becomes the cluster status shown by `/info` (the original's `probe()` callback).
//!
//! It gets the last configured cluster view as JSON on stdin and `OCHOPOD_*` variables. Exit 0:
//! the status is its stdout, kept to one line. Otherwise the status starts with `* ` (the
//! original's mark for a problem) followed by the tail of stderr (or stdout).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The longest status we keep: it is shown by `/info` on one line.
const MAX_STATUS: usize = 200;

/// Runs the probe and returns the status line. Never fails: a probe that cannot even start is a
/// status too.
pub async fn run(command: &str, timeout: Duration, stdin_json: String, env: Vec<(String, String)>) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A probe that outlives its timeout must not linger.
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return format!("* probe could not start: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A probe that does not read stdin closes it early: that is not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(stdin_json.as_bytes()).await;
        });
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => "* probe timed out".to_string(),
        Ok(Err(e)) => format!("* probe failed: {e}"),
        Ok(Ok(out)) => status_from(
            out.status.success(),
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        ),
    }
}

/// Success: the last non-empty line of stdout. Failure: `* ` and the last non-empty line of
/// stderr, else of stdout, else a generic message.
pub fn status_from(success: bool, stdout: &str, stderr: &str) -> String {
    let last = |s: &str| s.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(str::to_string);
    let line = if success {
        last(stdout).unwrap_or_default()
    } else {
        format!("* {}", last(stderr).or_else(|| last(stdout)).unwrap_or_else(|| "probe failed".to_string()))
    };
    shorten(line)
}

fn shorten(mut s: String) -> String {
    if s.chars().count() > MAX_STATUS {
        s = s.chars().take(MAX_STATUS - 1).collect::<String>() + "…";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_keeps_the_last_line_of_stdout() {
        assert_eq!(status_from(true, "starting\n3 servers ok\n\n", ""), "3 servers ok");
        assert_eq!(status_from(true, "", "noise"), "");
    }

    #[test]
    fn failure_is_marked_and_prefers_stderr() {
        assert_eq!(status_from(false, "out", "boom\n"), "* boom");
        assert_eq!(status_from(false, "only out\n", ""), "* only out");
        assert_eq!(status_from(false, "", ""), "* probe failed");
    }

    #[test]
    fn long_output_is_cut() {
        let s = status_from(true, &"x".repeat(500), "");
        assert_eq!(s.chars().count(), MAX_STATUS);
    }

    #[tokio::test]
    async fn a_real_probe_reads_stdin_and_env() {
        let env = vec![("OCHOPOD_CLUSTER".to_string(), "zk".to_string())];
        let s =
            run("read line; echo \"$OCHOPOD_CLUSTER $line\"", Duration::from_secs(5), "{\"a\":1}\n".into(), env).await;
        assert_eq!(s, "zk {\"a\":1}");
        let s = run("echo bad >&2; exit 3", Duration::from_secs(5), String::new(), vec![]).await;
        assert_eq!(s, "* bad");
        let s = run("sleep 5", Duration::from_millis(100), String::new(), vec![]).await;
        assert_eq!(s, "* probe timed out");
    }
}
