//! Session actor: the ZooKeeper session and the pod's registration. (Interface fixed;
//! implementation in progress.)

use actix::prelude::*;
use serde::Serialize;

/// Emitted to every subscriber (`Recipient<SessionEvent>`, wired in `run.rs`). Each session
/// gets a new, increasing `generation`; subscribers drop events of older generations.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum SessionEvent {
    /// Connected and registered. `client` is valid for this generation only; `node` is the full
    /// path of the pod's registration znode; `seq` is the pod's life-long sequence.
    Up { generation: u64, client: zookeeper_client::Client, seq: u64, node: String },
    /// Connection lost; the session may still come back. Leader duties must stop now.
    Suspended { generation: u64 },
    /// Reconnected within the same session (ephemerals and watches kept).
    Resumed { generation: u64 },
    /// The session is gone (expired, closed, reset). A new `Up` follows unless shutting down.
    Lost { generation: u64 },
}

/// Drop the session and register again with a new one (same uuid and seq); the process is
/// untouched. Backs `/reset`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Reset;

/// Close the session while the runtime is alive, so peers see the pod leave at once; replies
/// once closed (or after a short timeout).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

#[derive(Debug, Clone, Message)]
#[rtype(result = "SessionStatus")]
pub struct GetSessionStatus;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionStatus {
    /// `connecting`, `connected`, `suspended`, `expired`, `closed`.
    pub state: String,
    pub generation: u64,
    pub seq: Option<u64>,
    pub node: Option<String>,
}
