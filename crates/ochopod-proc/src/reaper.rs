//! Reaping orphans, as PID 1 or as a child subreaper.
//!
//! When ochopod is a container's PID 1, every orphaned process in the container is re-parented
//! to it; when it is not, [`install`] makes it a *child subreaper* (`PR_SET_CHILD_SUBREAPER`), so
//! the orphans of its own descendants (a shell's background jobs, double-forked daemons) are
//! re-parented to it instead of to the real init. Either way, an orphan that exits stays a zombie
//! until ochopod waits for it.
//!
//! The catch: tokio reaps the children *it* spawned with `waitpid(<their pid>)`. A reaper that
//! calls `waitpid(-1)` would steal their exit status, and the supervisor would see `ECHILD`
//! instead of the child's exit code. So the reaper only reaps zombies it knows are not awaited
//! by anyone else:
//!
//! - spawns that go through [`spawn`] register their pid under the same lock the reaper holds
//!   while it scans, so even a child that exits at once is never taken ([`crate::shell`] and the
//!   executor's supervised child spawn this way);
//! - a zombie child found in `/proc` that is not registered is reaped only if it is still a
//!   zombie [`GRACE`] after it was first seen. A child spawned elsewhere with tokio (a library's
//!   helper command) is reaped by tokio within milliseconds of its exit, so the grace keeps it
//!   safe too, but only as a heuristic: code of ours registers its spawns.
//!
//! The scan runs on a dedicated thread with its own small runtime, woken by SIGCHLD (and by a
//! timer only while an unregistered zombie waits out its grace), so [`install`] can be called
//! before the actix system exists.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

/// How long a zombie that is not ours to reap may wait for its real owner.
pub const GRACE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// We are PID 1: every orphan of the container comes to us.
    Init,
    /// We asked the kernel to re-parent our descendants' orphans to us.
    Subreaper,
    /// Neither worked (not Linux, or prctl refused): orphans go to the real init.
    Off,
}

fn owned() -> MutexGuard<'static, HashSet<i32>> {
    static OWNED: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    // A panic while holding the lock leaves a plain set behind: still usable.
    OWNED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks a spawned child as awaited by its spawner; dropping it hands the pid back to the reaper.
/// Drop it only after the child's exit status was collected.
#[derive(Debug)]
pub struct Owned(i32);

impl Drop for Owned {
    fn drop(&mut self) {
        owned().remove(&self.0);
        if self.0 > 0 {
            crate::keeper::report_group(self.0 as u32, false);
        }
    }
}

/// Spawn through tokio with the pid registered before the reaper can see the child exit. The
/// child leads a new process group, carries the run cookie and is reported to the keeper (see
/// [`crate::tree`] and [`crate::keeper`]), so it ends with the pod however the pod ends.
pub fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<(tokio::process::Child, Owned)> {
    cmd.process_group(0);
    crate::tree::mark(cmd);
    let mut set = owned();
    let child = cmd.spawn()?;
    let pid = child.id().map(|p| p as i32).unwrap_or(-1);
    set.insert(pid);
    drop(set);
    if pid > 0 {
        crate::keeper::report_group(pid as u32, true);
    }
    Ok((child, Owned(pid)))
}

/// Become the reaper of orphans (see the module doc) and start the reaping thread. Idempotent.
pub fn install() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| {
        let mode = if getpid().as_raw() == 1 {
            Mode::Init
        } else {
            match set_subreaper() {
                Ok(()) => Mode::Subreaper,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot become a child subreaper: orphans go to the real init");
                    return Mode::Off;
                }
            }
        };
        if let Err(e) = std::thread::Builder::new().name("ochopod-reaper".into()).spawn(reap_forever) {
            tracing::warn!(error = %e, "cannot start the reaper thread");
            return Mode::Off;
        }
        tracing::debug!(?mode, "reaping orphans");
        mode
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_subreaper() -> nix::Result<()> {
    Err(nix::errno::Errno::ENOSYS)
}

fn reap_forever() {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the reaper runtime");
            return;
        }
    };
    rt.block_on(async {
        let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen to SIGCHLD: orphans will not be reaped");
                return;
            }
        };
        let mut pending = HashMap::new();
        loop {
            let waiting = reap_once(&mut pending, Instant::now());
            match waiting {
                // Come back when the oldest unregistered zombie has waited its grace.
                Some(delay) => {
                    let _ = tokio::time::timeout(delay, sigchld.recv()).await;
                }
                None => {
                    sigchld.recv().await;
                }
            }
        }
    });
}

/// One scan: reap the zombies that are ours to reap. Returns how long until an unregistered
/// zombie's grace runs out, if one is waiting.
pub fn reap_once(first_seen: &mut HashMap<i32, Instant>, now: Instant) -> Option<Duration> {
    // Most wake-ups find no zombie at all (the child that exited was reaped by its owner, or this
    // is the first look): one `waitid` that reaps nothing says so. The scan below reads every
    // process of the host in /proc; done by every pod at start it made 500 pods starting together
    // on one host cost O(pods²) (bench/findings.md, "Scale").
    if !any_zombie_child() {
        first_seen.clear();
        return None;
    }
    let me = getpid().as_raw();
    let set = owned();
    let zombies = zombie_children(me);
    first_seen.retain(|pid, _| zombies.contains(pid));
    let mut next: Option<Duration> = None;
    for pid in zombies {
        if set.contains(&pid) {
            continue;
        }
        let seen = *first_seen.entry(pid).or_insert(now);
        let waited = now.duration_since(seen);
        if waited < GRACE {
            let left = GRACE - waited;
            next = Some(next.map_or(left, |n| n.min(left)));
            continue;
        }
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => tracing::debug!(pid, ?status, "reaped an orphan"),
            Err(e) => tracing::debug!(pid, error = %e, "orphan already reaped"),
        }
        first_seen.remove(&pid);
    }
    next
}

/// Whether some child of ours is a zombie, without reaping it (`WNOWAIT`). On an error other than
/// "no child", says yes: the caller then looks in /proc.
pub fn any_zombie_child() -> bool {
    use nix::sys::wait::{waitid, Id};
    match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT) {
        Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => false,
        Ok(_) | Err(_) => true,
    }
}

/// The pids of our children that are zombies (see [`crate::stat`]).
pub use crate::stat::zombie_children;
