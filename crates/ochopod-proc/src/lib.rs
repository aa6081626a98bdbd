//! Process utilities shared by the executor, the leader's probe and the tests.
//!
//! Theory of operation. A pod is a process supervisor, and everything that starts a process in it
//! must cooperate with the orphan [`reaper`]: ochopod is PID 1 or a child subreaper, so it must
//! reap orphans with `waitpid`, but must never take the exit status of a child somebody else
//! awaits. So every spawn goes through [`reaper::spawn`], which registers the pid under the lock
//! the reaper scans with.
//!
//! - [`shell`] runs `sh -c command` in its own process group, registered with the reaper, feeds
//!   it stdin, captures its output (bounded) and kills the whole group when it outlives its
//!   timeout: hooks, sanity commands and the leader's probe all go through it.
//! - [`stat`] is the one parser of `/proc/<pid>/stat` (pid, ppid, state), used by the reaper to
//!   find zombie children and by tests and harnesses to walk process trees.
//! - [`tree`] finds everything the pod started, whatever its session or group (its descendants,
//!   and every process carrying the run's cookie in its environment), and [`tree::sweep`] ends
//!   it at shutdown.
//! - [`keeper`] is a tiny watcher process that ends the cookie's carriers when ochopod dies
//!   without a shutdown (SIGKILL, abort), when ochopod is not PID 1.
//! - [`memory`] gives the heap pages a round freed back to the system.
//! - [`lines`] reads a child's piped output line by line whatever it contains (invalid UTF-8,
//!   endless lines) until EOF, so the child can never block on a full pipe.
//!
//! Linux only: `/proc`, process groups and `PR_SET_CHILD_SUBREAPER`.

pub mod keeper;
pub mod lines;
pub mod memory;
pub mod reaper;
pub mod shell;
pub mod stat;
pub mod tree;

pub use shell::{run_shell, signal_group, Output, Shell, ShellError};
