//! Leader actor: election, watches, hash and damper, configuration rounds, probe.
//!
//! Every call to the store goes through [`coord`], which dispatches on the session's
//! [`Link`](ochopod_session::Link) to [`zk`] (told below) or [`etcd`] (the same protocol on a
//! lease, create revisions and transactions).
//!
//! Theory of operation. The actor is told about the ZooKeeper session by the session actor
//! ([`SessionEvent`](ochopod_session::SessionEvent)): on `Up` it queues for the cluster's lock
//! (kazoo-compatible `coordinator/<hex>__lock__<seq>` nodes, lowest wins, each contender watching
//! its predecessor only, see [`election`]). The winner leads with the lock's sequence as fencing
//! epoch: it watches `pods/` and each dependency's `snapshot` (ZooKeeper watches, no polling),
//! feeds what it sees to the [`plan::Planner`], which compares the canonical hash of that state
//! with the stored `hash` node and arms the damper; when it elapses the actor runs a
//! [`round`] (`check` → `off` → `on` → `ok` over HTTP) and writes `snapshot` then `hash` in one
//! transaction that checks the lock node. The probe command then runs right away and every
//! `every`, its output becoming the cluster status of `/info`.
//!
//! Failure policy: leader work stops the moment the session is suspended (the lock node is kept,
//! and leadership resumes only on `Resumed` of the same generation after the queue was looked at
//! again); everything is dropped on `Lost`. Each step of a round re-checks that the lock is still
//! ours in a connected session. A failed round is logged pod by pod and retried after the damper.
//! Unreadable pod nodes are skipped, never a reason to drop leadership. `Shutdown` deletes the
//! lock node so a follower takes over at once, and drops every `Client` clone.

mod actor;
pub mod coord;
pub mod election;
pub mod etcd;
pub mod plan;
pub mod probe;
pub mod round;
pub mod zk;

pub use actor::{GetLeaderStatus, Leader, LeaderStatus, NotLeader, Reconfigure, Shutdown};
