//! Leader actor: election, watches, hash and damper, configuration rounds, probe. (Interface
//! fixed; implementation in progress.)

use actix::prelude::*;
use serde::Serialize;

/// Run a configuration round now, even if the hash did not change (`POST /reconfigure`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), NotLeader>")]
pub struct Reconfigure;

/// `/reconfigure` on a follower: 409, naming the leader when known.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotLeader {
    /// The leader's control address `ip:port`, if it could be read.
    pub leader: Option<String>,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "LeaderStatus")]
pub struct GetLeaderStatus;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeaderStatus {
    /// `follower`, `leader`, `leader (configuration pending)`, `leader (configuring)`.
    pub state: String,
    /// Cluster status on the leader (probe output, `* configuring N pods`…), `""` otherwise.
    pub status: String,
    pub leader: bool,
    /// The fencing epoch of the current leadership.
    pub epoch: Option<u64>,
    pub rounds_ok: u64,
    pub rounds_failed: u64,
    pub last_round_ms: Option<u64>,
    /// Sum of the durations of every finished round, for the metrics' average.
    pub rounds_ms_total: u64,
}

/// Stop leading and release every ZooKeeper handle (lock, watches, client clones) while the
/// runtime is alive; replies once released.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Shutdown;
