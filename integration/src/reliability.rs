//! `bench/reliability.md`, written by the fault tests themselves.
//!
//! Each test that injects a fault calls [`record`] with its row: what was injected, what it
//! asserted, what it measured and the bound it promises. Nothing is written unless
//! [`WRITE_ENV`] is `1` (`make reliability` sets it), so `make test` and CI leave the tree as
//! it is. When it is set, the row goes to its own file `bench/reliability.d/<order>-<id>.md`
//! (written to a temporary file, then renamed), and `bench/reliability.md` is rebuilt from every
//! row file, sorted by name, under an exclusive lock on `bench/reliability.d/.lock`: tests run
//! in parallel (nextest runs each in its own process) and every rebuild sees every row written
//! before it. A row is replaced by the next run of the same test; a test that did not run keeps
//! its last row, with that row's own stamp (commit, build, machine).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::stamp;

/// Set to `1` to write the rows (and `bench/results.md` from `make bench`).
pub const WRITE_ENV: &str = "OCHOPOD_WRITE_BENCH";

/// One row of the table.
pub struct Row<'a> {
    /// Position in the table (rows are sorted by it, then by `id`).
    pub order: u32,
    /// A file-name-safe name, usually the test's.
    pub id: &'a str,
    pub injected: &'a str,
    /// What the test asserts.
    pub asserted: &'a str,
    /// What it measured this run.
    pub measured: String,
    /// The bound the test enforces.
    pub bound: &'a str,
}

fn dir() -> PathBuf {
    stamp::repo_root().join("bench").join("reliability.d")
}

/// Whether rows are written this run.
pub fn enabled() -> bool {
    std::env::var(WRITE_ENV).is_ok_and(|v| v == "1")
}

/// Prints the row and, when [`enabled`], writes it and rebuilds `bench/reliability.md`.
/// Returns whether it wrote. A failure to write is an error: a test that was asked to record
/// and could not must say so.
pub fn record(row: Row<'_>) -> anyhow::Result<bool> {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let stamp = format!("{}, {} build, {}", stamp::commit(), stamp::profile(), stamp::machine());
    eprintln!("reliability: {} — measured {} (bound {})", row.injected, row.measured, row.bound);
    if !enabled() {
        return Ok(false);
    }
    let line = format!(
        "| {} | {} | {} | {} |\n<!-- {} -->\n",
        cell(row.injected),
        cell(row.asserted),
        cell(&row.measured),
        cell(row.bound),
        cell(&stamp)
    );
    let dir = dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock"))?;
    lock.lock().context("locking bench/reliability.d")?;
    write_atomically(&dir.join(format!("{:02}-{}.md", row.order, row.id)), &line)?;
    rebuild(&dir)?;
    drop(lock);
    Ok(true)
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// `bench/reliability.md` from the row files, with each row's stamp listed under the table.
fn rebuild(dir: &Path) -> anyhow::Result<()> {
    let mut names: Vec<PathBuf> =
        fs::read_dir(dir)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    names.sort();
    let mut table = String::from("| injected | what must hold (asserted) | measured | bound |\n|---|---|---|---|\n");
    let mut stamps: Vec<String> = Vec::new();
    for name in &names {
        let text = fs::read_to_string(name)?;
        for line in text.lines() {
            if let Some(s) = line.strip_prefix("<!-- ").and_then(|l| l.strip_suffix(" -->")) {
                if !stamps.iter().any(|x| x == s) {
                    stamps.push(s.to_string());
                }
            } else if line.starts_with('|') {
                table.push_str(line);
                table.push('\n');
            }
        }
    }
    let mut md = String::from(HEADER);
    md.push_str(&table);
    md.push_str("\nMeasured on: ");
    md.push_str(&stamps.join("; "));
    md.push_str(".\n");
    md.push_str(FOOTER);
    write_atomically(&dir.parent().unwrap_or(dir).join("reliability.md"), &md)
}

const HEADER: &str = "# ochopod reliability: the fault suite

Written by the tests themselves (`integration/src/reliability.rs`): each fault test of
`crates/ochopod/tests/{faults,chaos}.rs` records its row when run with `OCHOPOD_WRITE_BENCH=1`
(`make reliability`), into `bench/reliability.d/`, and this file is rebuilt from those rows. Every
row is an integration test with real processes (a real ZooKeeper 3.8 started by the harness,
real `ochopod` pods) that injects one fault and asserts the outcome and a time bound; the
measured column is that run's, the stamp below says on what. The same tests run in `make test`
without writing anything. `make soak` runs the churn test for 10 minutes (`SOAK_SECS`), and
`OCHOPOD_CHURN_SEED` replays a churn run.

";

const FOOTER: &str = "
Also asserted by the suite, without a row here (their tests do not record): a leader SIGKILLed
or stopped with SIGTERM is replaced (`cluster.rs`; the benchmark measures both, see
`bench/results.md`); a pod's session dropped and restored within the damper (`/reset`) runs no
round and restarts nothing; a pod joining after another left registers with a unique seq.

What the suite found: the churn test caught a real bug (after any pod had left, new pods could
never register, because ZooKeeper reports a child version that counts deletes while it names
sequential children after creates only); it is fixed and covered by `cluster.rs`
`a_pod_joins_after_another_one_left` and a unit test in the session.

Known limits: crash failover cannot be faster than ZooKeeper's session expiry (the server expires
sessions on tick boundaries, so a new leader takes the session timeout plus up to one tick); a pod
inside a network namespace could not reach host pods registered at 127.0.0.1, so the partition
test keeps the leader on the host.
";
