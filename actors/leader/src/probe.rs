//! The leader's probe: a shell command run right after each round and then every `every`, whose
//! output becomes the cluster status shown by `/info` (the original's `probe()` callback).
//!
//! It gets the last configured cluster view as JSON on stdin and `OCHOPOD_*` variables. Exit 0:
//! the status is its stdout, kept to one line. Otherwise the status starts with `* ` (the
//! original's mark for a problem) followed by the tail of stderr (or stdout).
//!
//! It runs through the shared runner of `ochopod-proc`: in its own process group, killed whole
//! when it outlives its timeout (a probe script's `curl` does not linger), registered with the
//! orphan reaper so its exit status is never taken from us. Where it runs and what environment it
//! gets is the config's pod-wide policy, shared with the process and the hooks.

use ochopod_config::{Env, PodEnv, Probe, Settings};
use ochopod_proc::{Shell, ShellError};

/// The longest status we keep: it is shown by `/info` on one line.
const MAX_STATUS: usize = 200;

/// The probe as the pod runs it: in [`Settings::run_dir`] like the process and the hooks, with
/// what [`Settings::pod_env`] keeps of ochopod's environment (`env`) plus `vars`, and without its
/// hidden variables (the control token's, unusable ZooKeeper URLs), which `sh` would otherwise
/// inherit from ochopod.
pub fn shell(settings: &Settings, probe: &Probe, env: &PodEnv, vars: Env, stdin: String) -> Shell {
    let mut shell = Shell::new(&probe.command, probe.timeout)
        .stdin(stdin)
        .envs(env.vars.clone())
        .envs(vars)
        .cwd(settings.run_dir());
    for name in &env.hidden {
        shell = shell.env_remove(name.clone());
    }
    shell
}

/// Runs the probe and returns the status line. Never fails: a probe that cannot even start is a
/// status too.
pub async fn run(shell: Shell) -> String {
    match shell.run().await {
        Err(ShellError::TimedOut(_)) => "* probe timed out".to_string(),
        Err(ShellError::Spawn(e)) => format!("* probe could not start: {e}"),
        Err(ShellError::Wait(e)) => format!("* probe failed: {e}"),
        Ok(out) => {
            status_from(out.success(), &String::from_utf8_lossy(&out.stdout), &String::from_utf8_lossy(&out.stderr))
        }
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
    use std::time::Duration;

    fn sh(command: &str, timeout: Duration) -> Shell {
        Shell::new(command, timeout)
    }

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
        let s = run(sh("read line; echo \"$OCHOPOD_CLUSTER $line\"", Duration::from_secs(5))
            .stdin("{\"a\":1}\n")
            .envs(env))
        .await;
        assert_eq!(s, "zk {\"a\":1}");
        let s = run(sh("echo bad >&2; exit 3", Duration::from_secs(5))).await;
        assert_eq!(s, "* bad");
        let s = run(sh("sleep 5", Duration::from_millis(100))).await;
        assert_eq!(s, "* probe timed out");
    }

    #[tokio::test]
    async fn a_probe_that_times_out_is_killed_with_everything_it_started() {
        let pidfile = std::env::temp_dir().join(format!("ochopod-probe-timeout-{}", std::process::id()));
        let command = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let s = run(sh(&command, Duration::from_millis(300))).await;
        assert_eq!(s, "* probe timed out");
        let job: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        let _ = std::fs::remove_file(&pidfile);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while ochopod_proc::stat::alive(job) {
            if std::time::Instant::now() > deadline {
                let _ = std::process::Command::new("kill").arg("-9").arg(job.to_string()).status();
                panic!("the probe's background job {job} outlived the probe's timeout");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_probe_does_not_see_the_token_variable() {
        // CARGO_MANIFEST_DIR stands for the token variable: cargo sets it in this test's own
        // environment, which the probe inherits.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let yaml = "cluster: zk\ncontrol: { token_env: CARGO_MANIFEST_DIR }";
        let settings =
            ochopod_config::parse_str(std::path::Path::new("pod.yaml"), yaml, &ochopod_config::process_env()).unwrap();
        let probe = Probe {
            command: "echo \"${CARGO_MANIFEST_DIR:-hidden} ${OCHOPOD_CLUSTER}\"".into(),
            every: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        };
        let vars = settings.ochopod_vars(None);
        let env = settings.pod_env(&Env::new());
        let s = run(shell(&settings, &probe, &env, vars.clone(), String::new())).await;
        assert_eq!(s, "hidden zk");
        // Without hiding it, the probe inherits it: the test can tell.
        let s = run(shell(&settings, &probe, &PodEnv::default(), vars, String::new())).await;
        assert_ne!(s, "hidden zk");
    }
}
