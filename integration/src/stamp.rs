//! Where and on what a measurement was taken: the machine, the commit, the load. Stamped on
//! `bench/results.md` (the benchmark) and `bench/reliability.md` (the fault tests).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// The workspace root (this crate is `<root>/integration`).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(|p| p.to_path_buf()).unwrap_or(here)
}

/// `2 cores, 23.5 GiB memory, <CPU model>`.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map(|k| k.trim().to_string()).unwrap_or_default();
    format!("{cores} cores, {mem:.1} GiB memory, {cpu}, Linux {kernel}")
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(repo_root()).args(args).output().ok()?;
    // Only the end: porcelain lines start with a status column that may be a space.
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// The short commit, and whether tracked files outside `bench/` differed from it (the tree is
/// shared with other work in progress: the stamp says so rather than pretend).
pub fn commit() -> String {
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown commit".into() };
    let changed = git(&["status", "--porcelain", "--untracked-files=no"]).map_or(0, |s| changed_outside_bench(&s));
    if changed == 0 {
        format!("commit {head}")
    } else {
        format!("commit {head} + uncommitted changes in the tree")
    }
}

/// Lines of `git status --porcelain` naming a file outside `bench/` (the status is two columns
/// and a space: ` M bench/results.md` is the bench's own output).
fn changed_outside_bench(porcelain: &str) -> usize {
    porcelain.lines().filter(|l| !l.get(3..).unwrap_or("").starts_with("bench/")).count()
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
pub fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// `debug` or `release`: the profile this harness (and so the test or bench using it) was built with.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bench_output_is_no_uncommitted_change() {
        assert_eq!(super::changed_outside_bench(" M bench/results.md\n M bench/reliability.md"), 0);
        assert_eq!(super::changed_outside_bench(" M bench/results.md\nM  src/lib.rs"), 1);
    }
}
