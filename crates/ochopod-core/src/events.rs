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
    /// A configuration round started, finished or failed on the leader.
    Round { phase: String, epoch: u64, pods: usize, duration_ms: Option<u64>, error: Option<String> },
    /// Something is wrong that the pod works around but a human should fix (an unusable
    /// dependency snapshot, …).
    Warning { message: String },
    /// This pod accepted a configuration (`on` with a payload).
    Configured { epoch: Option<u64>, index: usize, size: usize },
    /// A hook (`tear_down`, `finalize`…) ran past its timeout and was cut off: its whole process
    /// group was killed.
    HookTimedOut { hook: String, timeout_ms: u64 },
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
}
