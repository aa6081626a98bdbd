//! The lifecycle event bus behind `/events` (server-sent events) and the metrics counters.
//!
//! Every actor publishes what happens to it (process state changes, restarts, session changes,
//! leadership, configuration rounds). Publishing never blocks and never fails: with no
//! subscriber the event is dropped, and a slow subscriber loses the oldest events (it is told so
//! by `RecvError::Lagged`), because observability must never slow the pod down.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The supervised process changed state (`stopped`, `running`, `terminating`, `dead`,
    /// `backoff`, `crashloop`).
    Process { state: String, pid: Option<u32> },
    /// The process exited with a failure and will be started again after `delay_ms`.
    Restart { restarts: u64, delay_ms: u64, exit_code: Option<i32> },
    /// A sanity check failed (`failures` consecutive so far) or recovered (`failures` = 0).
    Sanity { failures: u32, error: Option<String> },
    /// The ZooKeeper session changed state (`connected`, `suspended`, `expired`, `closed`).
    Session { state: String, generation: u64 },
    /// This pod became leader (with its fencing epoch) or stopped being one.
    Leadership { leader: bool, epoch: Option<u64> },
    /// A configuration round started, finished or failed on the leader. A failed round also says
    /// what kind of failure it was (`failure`) and, when a pod refused, with which HTTP `code`.
    Round {
        phase: String,
        epoch: u64,
        pods: usize,
        duration_ms: Option<u64>,
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        failure: Option<RoundFailureKind>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        /// Why the round started (`cluster changed`, `reconfiguration requested`, …), on
        /// `started` only.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Something is wrong that the pod works around but a human should fix (an unusable
    /// dependency snapshot, …).
    Warning { message: String },
    /// This pod accepted a configuration (`on` with a payload). `changed` names what differs from
    /// what the running process was started with (`command`, `env NAME`, `file PATH`; empty when
    /// nothing or no process runs), `restart` says the round restarts that process.
    Configured {
        epoch: Option<u64>,
        index: usize,
        size: usize,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        changed: Vec<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        restart: bool,
    },
    /// A hook (`tear_down`, `finalize`…) ran past its timeout and was cut off: its whole process
    /// group was killed.
    HookTimedOut { hook: String, timeout_ms: u64 },
}

/// What made a configuration round fail, as `/events` and `/metrics` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundFailureKind {
    /// A pod did not answer within the round's timeout.
    Timeout,
    /// A pod answered with a code the phase does not accept (the event carries it).
    Refused,
    /// A pod's hook failed (it answered 500).
    HookFailed,
    /// A pod could not be reached (connection refused, no route, TLS).
    Unreachable,
    /// A pod's reply was over the size limit.
    TooLarge,
    /// A pod's reply was not HTTP, or cut.
    BadReply,
    /// Pods applied a newer epoch than ours.
    Stale,
    /// We lost the lock during the round.
    Fenced,
    /// A pod registered without a reachable control port.
    NoControlPort,
    /// ZooKeeper failed the round's last step (writing `snapshot` and `hash`).
    Zookeeper,
    /// etcd failed the round's last step (the pods coordinate through etcd).
    Etcd,
    /// The round's own task failed (a bug).
    Internal,
}

impl RoundFailureKind {
    pub const ALL: [RoundFailureKind; 12] = [
        RoundFailureKind::Timeout,
        RoundFailureKind::Refused,
        RoundFailureKind::HookFailed,
        RoundFailureKind::Unreachable,
        RoundFailureKind::TooLarge,
        RoundFailureKind::BadReply,
        RoundFailureKind::Stale,
        RoundFailureKind::Fenced,
        RoundFailureKind::NoControlPort,
        RoundFailureKind::Zookeeper,
        RoundFailureKind::Etcd,
        RoundFailureKind::Internal,
    ];

    /// The name in `/events` and the `reason` label in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            RoundFailureKind::Timeout => "timeout",
            RoundFailureKind::Refused => "refused",
            RoundFailureKind::HookFailed => "hook_failed",
            RoundFailureKind::Unreachable => "unreachable",
            RoundFailureKind::TooLarge => "too_large",
            RoundFailureKind::BadReply => "bad_reply",
            RoundFailureKind::Stale => "stale",
            RoundFailureKind::Fenced => "fenced",
            RoundFailureKind::NoControlPort => "no_control_port",
            RoundFailureKind::Zookeeper => "zookeeper",
            RoundFailureKind::Etcd => "etcd",
            RoundFailureKind::Internal => "internal",
        }
    }
}

/// An event with the wall-clock time it was published at (unix milliseconds).
#[derive(Clone, Debug, Serialize)]
pub struct Stamped {
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Cheap to clone; every clone publishes to the same subscribers.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Stamped>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(256)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus { tx }
    }

    pub fn publish(&self, event: Event) {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        tracing::debug!(target: "ochopod::events", ?event, "event");
        // No subscriber is the normal case, not an error.
        let _ = self.tx.send(Stamped { at_ms, event });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_published_events_as_tagged_json() {
        let bus = EventBus::new(4);
        bus.publish(Event::Leadership { leader: true, epoch: Some(3) }); // nobody listens: dropped
        let mut rx = bus.subscribe();
        bus.publish(Event::Process { state: "running".into(), pid: Some(42) });
        let got = rx.recv().await.unwrap();
        let js = serde_json::to_value(&got).unwrap();
        assert_eq!(js["event"], "process");
        assert_eq!(js["state"], "running");
        assert_eq!(js["pid"], 42);
        assert!(js["at_ms"].as_u64().unwrap() > 0);
    }

    #[test]
    fn a_failed_round_names_its_kind_and_code_and_other_rounds_look_as_before() {
        let failed = Event::Round {
            phase: "failed".into(),
            epoch: 3,
            pods: 0,
            duration_ms: Some(12),
            error: Some("pod a (x): answered 406".into()),
            failure: Some(RoundFailureKind::Refused),
            code: Some(406),
            reason: None,
        };
        let js = serde_json::to_value(&failed).unwrap();
        assert_eq!(js["failure"], "refused");
        assert_eq!(js["code"], 406);
        assert_eq!(js["error"], "pod a (x): answered 406");
        for kind in RoundFailureKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        let done = Event::Round {
            phase: "done".into(),
            epoch: 3,
            pods: 2,
            duration_ms: Some(12),
            error: None,
            failure: None,
            code: None,
            reason: None,
        };
        let js = serde_json::to_value(&done).unwrap();
        let keys: Vec<&str> = js.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["duration_ms", "epoch", "error", "event", "phase", "pods"]);
        let started = Event::Round {
            phase: "started".into(),
            epoch: 4,
            pods: 2,
            duration_ms: None,
            error: None,
            failure: None,
            code: None,
            reason: Some("reconfiguration requested".into()),
        };
        assert_eq!(serde_json::to_value(&started).unwrap()["reason"], "reconfiguration requested");
    }

    #[test]
    fn a_configuration_says_what_changed_only_when_something_did() {
        let quiet = Event::Configured { epoch: Some(2), index: 0, size: 1, changed: vec![], restart: false };
        let js = serde_json::to_value(&quiet).unwrap();
        let keys: Vec<&str> = js.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["epoch", "event", "index", "size"]);
        let changed = Event::Configured {
            epoch: Some(2),
            index: 0,
            size: 1,
            changed: vec!["file conf/a.cfg".into()],
            restart: true,
        };
        let js = serde_json::to_value(&changed).unwrap();
        assert_eq!(js["changed"], serde_json::json!(["file conf/a.cfg"]));
        assert_eq!(js["restart"], true);
    }
}
