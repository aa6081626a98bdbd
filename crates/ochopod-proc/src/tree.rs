//! Everything a pod started, found again however it escaped, and ended.
//!
//! A process group is not enough to find what a pod started: a child may `setsid` a daemon, a
//! hook may leave a background job behind, a probe may still run when ochopod stops. Two marks
//! find them all:
//!
//! - **ancestry**: ochopod is PID 1 or a child subreaper (see [`crate::reaper`]), so every
//!   orphan of its descendants is re-parented to it while it lives, whatever its session or
//!   group: [`crate::stat::descendants`] of ochopod is everything it started that still runs;
//! - **the run cookie**: every process ochopod spawns (through [`crate::reaper::spawn`]) gets
//!   `OCHOPOD_RUN=<random>` in its environment, and its descendants inherit it, so they can be
//!   found in `/proc/<pid>/environ` even after ochopod died and they were re-parented elsewhere
//!   (the idea of Jenkins' ProcessTreeKiller). The value is random per run: it carries no
//!   secret and tells one pod's processes from another's on the same host.
//!
//! [`sweep`] ends both sets at a clean shutdown (SIGTERM, a short grace, SIGKILL);
//! [`crate::keeper`] ends the cookie's carriers when ochopod is gone without a shutdown.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpid, Pid};

/// The variable that carries the run cookie.
pub const COOKIE_VAR: &str = "OCHOPOD_RUN";

static COOKIE: OnceLock<String> = OnceLock::new();

/// Set this run's cookie, once, before anything is spawned. Later calls are ignored.
pub fn set_cookie(cookie: String) {
    let _ = COOKIE.set(cookie);
}

/// This run's cookie, if [`set_cookie`] was called (`ochopod run` does; tests of the libraries
/// may not).
pub fn cookie() -> Option<&'static str> {
    COOKIE.get().map(String::as_str)
}

/// A fresh cookie: 128 random bits as hex, from the kernel.
pub fn new_cookie() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Put the cookie in `cmd`'s environment (after any `env_clear`: the variable is set explicitly).
pub fn mark(cmd: &mut tokio::process::Command) {
    if let Some(cookie) = cookie() {
        cmd.env(COOKIE_VAR, cookie);
    }
}

/// The `COOKIE_VAR=cookie` entry as it appears, NUL-terminated, in `/proc/<pid>/environ`.
fn entry(cookie: &str) -> Vec<u8> {
    format!("{COOKIE_VAR}={cookie}").into_bytes()
}

/// Does this `environ` (NUL-separated) hold exactly `entry`?
fn carries(environ: &[u8], entry: &[u8]) -> bool {
    environ.split(|b| *b == 0).any(|var| var == entry)
}

/// Every live process whose environment carries `cookie`, but not the caller. Processes whose
/// environment cannot be read (another user's, without the privilege) are not seen.
pub fn carriers(cookie: &str) -> Vec<i32> {
    let me = getpid().as_raw();
    let entry = entry(cookie);
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| carries(&env, &entry)))
        .collect()
}

/// What this pod still runs: its live descendants and the live carriers of `cookie`, minus
/// `spare` (the keeper). Zombies are left to the reaper.
pub fn leftovers(cookie: Option<&str>, spare: &[i32]) -> Vec<i32> {
    let me = getpid().as_raw();
    let table = crate::stat::table();
    let mut found: BTreeSet<i32> = crate::stat::descendants_in(&table, me).into_iter().collect();
    if let Some(cookie) = cookie {
        found.extend(carriers(cookie));
    }
    found.into_iter().filter(|pid| *pid != me && !spare.contains(pid)).filter(|pid| crate::stat::alive(*pid)).collect()
}

/// Send `signal` to every pid; one that is gone already is not an error.
pub fn signal_all(pids: &[i32], signal: Signal) {
    for pid in pids {
        match kill(Pid::from_raw(*pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid, ?signal, error = %e, "cannot signal a leftover process"),
        }
    }
}

/// What [`sweep`] found and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Left running when the sweep started (they got SIGTERM).
    pub found: Vec<i32>,
    /// Still running after the grace (they got SIGKILL).
    pub killed: Vec<i32>,
    /// Still there after SIGKILL and its wait (a process stuck in the kernel).
    pub survivors: Vec<i32>,
}

/// How long SIGKILLed processes get to disappear.
const AFTER_KILL: Duration = Duration::from_secs(2);

/// End everything the pod still runs (see [`leftovers`]): SIGTERM, up to `grace` for them to
/// exit, then SIGKILL to whatever is left (new ones included) and a short wait. The caller,
/// ochopod itself, and `spare` are never signalled.
pub async fn sweep(cookie: Option<&str>, spare: &[i32], grace: Duration) -> Swept {
    sweep_with(|| leftovers(cookie, spare), grace).await
}

/// [`sweep`] over what `find` returns (it is called again after each signal).
pub async fn sweep_with(find: impl Fn() -> Vec<i32>, grace: Duration) -> Swept {
    let found = find();
    if found.is_empty() {
        return Swept::default();
    }
    signal_all(&found, Signal::SIGTERM);
    let left = wait_gone(&find, grace).await;
    if left.is_empty() {
        return Swept { found, ..Swept::default() };
    }
    // Anything that forked meanwhile is found again by each scan.
    let mut killed = BTreeSet::new();
    let deadline = Instant::now() + AFTER_KILL;
    let mut survivors = left;
    while !survivors.is_empty() && Instant::now() < deadline {
        signal_all(&survivors, Signal::SIGKILL);
        killed.extend(survivors.iter().copied());
        tokio::time::sleep(Duration::from_millis(20)).await;
        survivors = find();
    }
    Swept { found, killed: killed.into_iter().collect(), survivors }
}

/// Poll until nothing is left or `timeout` passed; returns what is left.
async fn wait_gone(find: &impl Fn() -> Vec<i32>, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = find();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_matches_only_whole() {
        let entry = entry("abc");
        assert!(carries(b"A=1\0OCHOPOD_RUN=abc\0B=2\0", &entry));
        assert!(carries(b"OCHOPOD_RUN=abc", &entry));
        assert!(!carries(b"OCHOPOD_RUN=abcd\0", &entry));
        assert!(!carries(b"XOCHOPOD_RUN=abc\0", &entry));
        assert!(!carries(b"", &entry));
    }

    #[test]
    fn cookies_are_fresh_hex() {
        let (a, b) = (new_cookie().unwrap(), new_cookie().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_sweep_ends_a_carrier_outside_our_tree_and_one_that_ignores_sigterm() {
        let cookie = new_cookie().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("daemon");
        // A double fork: the daemon is re-parented away from us (no subreaper in this test), so
        // only the cookie finds it.
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("(setsid sleep 300 & echo $! > {}) &", pidfile.display()))
            .env(COOKIE_VAR, &cookie)
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let daemon: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the daemon never wrote its pid");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // One that ignores SIGTERM: ended by SIGKILL.
        let mut stubborn = tokio::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' TERM; while :; do sleep 0.05; done")
            .env(COOKIE_VAR, &cookie)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stubborn_pid = stubborn.id().unwrap() as i32;
        let other = tokio::process::Command::new("sleep")
            .arg("300")
            .env(COOKIE_VAR, "another run")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let other_pid = other.id().unwrap() as i32;

        let deadline = Instant::now() + Duration::from_secs(5);
        while !carriers(&cookie).contains(&daemon) {
            assert!(Instant::now() < deadline, "the daemon does not carry the cookie");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Not `sweep`: the test binary's other tests are our descendants too.
        let find = || carriers(&cookie).into_iter().filter(|p| crate::stat::alive(*p)).collect();
        let swept = sweep_with(find, Duration::from_millis(300)).await;
        assert!(swept.found.contains(&daemon) && swept.found.contains(&stubborn_pid), "{swept:?}");
        assert!(swept.killed.contains(&stubborn_pid), "{swept:?}");
        assert!(!swept.killed.contains(&daemon), "the daemon obeys SIGTERM: {swept:?}");
        assert!(swept.survivors.is_empty(), "{swept:?}");
        assert!(!crate::stat::alive(daemon));
        let _ = stubborn.wait().await;
        assert!(crate::stat::alive(other_pid), "another run's process was signalled");
    }
}
