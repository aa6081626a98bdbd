//! The keeper: whatever ochopod started dies with it, however ochopod dies.
//!
//! A SIGKILLed ochopod runs no code: its children, in their own process groups, would be
//! re-parented to init and keep running (a replicated store's old primary, still accepting
//! writes while a new one is promoted). As PID 1 the kernel ends the whole PID namespace; in
//! every other case (a sidecar, a host process) a keeper does.
//!
//! The keeper is the ochopod binary itself, re-executed with the hidden first argument [`ARG`]
//! before the runtime starts: a tiny single-threaded process (no runtime, no allocation beyond
//! a set of group ids) in its own process group, so a signal to ochopod's group does not reach
//! it. Its stdin is the read end of a pipe whose write end only ochopod holds (close-on-exec:
//! no child inherits it). Over the pipe ochopod sends the run cookie (see [`crate::tree`]),
//! then `+<pgid>` / `-<pgid>` as it starts and collects process groups. The keeper blocks
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT and reads. When the read ends (EOF: ochopod exited,
//! crashed, aborted or was SIGKILLed; the kernel closes the pipe in every case) it SIGKILLs the
//! groups still open and every process whose environment carries the cookie (again until a scan
//! finds none, so a process forking meanwhile is caught), and exits. After a clean shutdown
//! ochopod has already ended everything ([`crate::tree::sweep`]) and the keeper finds nothing.
//!
//! `PR_SET_PDEATHSIG` was rejected: it fires when the *thread* that forked the child exits, and
//! the runtime's blocking-pool threads that spawn come and go; it also covers direct children
//! only.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::{Mutex, OnceLock};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, killpg, SigSet, Signal};
use nix::unistd::Pid;

use crate::tree;

/// The hidden first argument that turns the ochopod binary into a keeper.
pub const ARG: &str = "__ochopod-keeper";

/// How many scans the keeper makes at most for processes that keep forking.
const MAX_ROUNDS: usize = 100;

struct Link {
    pid: u32,
    writer: Mutex<std::io::PipeWriter>,
}

static LINK: OnceLock<Link> = OnceLock::new();

/// Start the keeper for this run: `exe` is the ochopod binary, `cookie` the run cookie (set with
/// [`tree::set_cookie`]). Returns its pid. Call it before spawning anything; once only.
pub fn start(exe: &Path, cookie: &str) -> std::io::Result<u32> {
    let (reader, mut writer) = std::io::pipe()?;
    let child = std::process::Command::new(exe)
        .arg(ARG)
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        // A nested ochopod must not be mistaken for one of its parent pod's processes.
        .env_remove(tree::COOKIE_VAR)
        // Hold no mount busy.
        .current_dir("/")
        .process_group(0)
        .spawn()?;
    writer.write_all(format!("{cookie}\n").as_bytes())?;
    // A keeper that stopped reading (SIGSTOP) must never block ochopod: a full pipe drops a
    // report instead, and the cookie still finds that group's processes.
    let flags = OFlag::from_bits_truncate(fcntl(writer.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(writer.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let pid = child.id();
    // Never awaited: it outlives us by design; if it dies first the reaper collects it.
    drop(child);
    let _ = LINK.set(Link { pid, writer: Mutex::new(writer) });
    Ok(pid)
}

/// The keeper's pid, if one was started: a sweep must spare it.
pub fn pid() -> Option<u32> {
    LINK.get().map(|l| l.pid)
}

/// Tell the keeper a process group was started (`live`) or its leader collected. A no-op
/// without a keeper.
pub fn report_group(pgid: u32, live: bool) {
    let Some(link) = LINK.get() else { return };
    let line = format!("{}{pgid}\n", if live { '+' } else { '-' });
    let mut writer = link.writer.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = writer.write_all(line.as_bytes()) {
        tracing::warn!(error = %e, pgid, "cannot report a process group to the keeper");
    }
}

/// The keeper's whole life (see the module doc). Returns once the pod's processes are gone.
pub fn main() -> ExitCode {
    let mut quiet = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        quiet.add(sig);
    }
    // Single-threaded: blocking them here is ignoring them; they stay pending, never delivered.
    if let Err(e) = quiet.thread_block() {
        eprintln!("ochopod keeper: cannot block signals: {e}");
    }
    let mut input = std::io::stdin().lock();
    let mut line = String::new();
    if !matches!(input.read_line(&mut line), Ok(n) if n > 0) {
        return ExitCode::SUCCESS;
    }
    let cookie = line.trim().to_string();
    let mut groups = HashSet::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.trim();
        let (live, number) = match text.split_at_checked(1) {
            Some(("+", n)) => (true, n),
            Some(("-", n)) => (false, n),
            _ => continue,
        };
        let Ok(pgid) = number.parse::<i32>() else { continue };
        if pgid <= 1 {
            continue;
        }
        if live {
            groups.insert(pgid);
        } else {
            groups.remove(&pgid);
        }
    }
    let killed = end(&cookie, &groups);
    if killed > 0 {
        eprintln!("ochopod keeper: ochopod is gone; killed {killed} of its processes");
    }
    ExitCode::SUCCESS
}

/// SIGKILL the groups, then every carrier of the cookie until none is left. Returns how many
/// processes were signalled.
fn end(cookie: &str, groups: &HashSet<i32>) -> usize {
    for pgid in groups {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
    if cookie.is_empty() {
        return 0;
    }
    let mut killed = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let carriers = tree::carriers(cookie);
        if carriers.is_empty() {
            break;
        }
        for pid in carriers {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed.len()
}
