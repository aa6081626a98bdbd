//! The bounded ring of recent log lines served by `/log`.
//!
//! A `tracing` layer ([`LogRingLayer`]) copies every event that passes the subscriber's filter
//! into a [`LogRing`] as one formatted line; child output piped by the executor arrives the same
//! way (as `tracing` events under the `child` target), so `/log` shows both in order. The ring
//! holds at most `capacity` lines and drops the oldest, so memory stays bounded whatever the
//! process prints.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

#[derive(Clone, Debug)]
pub struct LogRing {
    inner: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        LogRing { inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(4096)))), capacity: capacity.max(1) }
    }

    pub fn push(&self, line: String) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back(line);
    }

    /// The last `n` lines (all of them when `n` is `None`), oldest first.
    pub fn tail(&self, n: Option<usize>) -> Vec<String> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let skip = n.map(|n| q.len().saturating_sub(n)).unwrap_or(0);
        q.iter().skip(skip).cloned().collect()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Copies every event into the ring as `<rfc3339-ish time> - <LEVEL> - <message> k=v…`
/// (the original `/log` line format, plus structured fields).
pub struct LogRingLayer {
    ring: LogRing,
}

impl LogRingLayer {
    pub fn new(ring: LogRing) -> Self {
        LogRingLayer { ring }
    }
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

impl<S: Subscriber> Layer<S> for LogRingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = LineVisitor::default();
        event.record(&mut v);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.ring.push(format!(
            "{}.{:03} - {} - {}{}",
            now.as_secs(),
            now.subsec_millis(),
            event.metadata().level(),
            v.message,
            v.fields
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn the_ring_keeps_the_newest_lines() {
        let r = LogRing::new(3);
        for i in 0..5 {
            r.push(format!("l{i}"));
        }
        assert_eq!(r.tail(None), vec!["l2", "l3", "l4"]);
        assert_eq!(r.tail(Some(2)), vec!["l3", "l4"]);
        assert_eq!(r.tail(Some(10)).len(), 3);
    }

    #[test]
    fn the_layer_records_messages_and_fields() {
        let ring = LogRing::new(10);
        let sub = tracing_subscriber::registry().with(LogRingLayer::new(ring.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(pid = 42, "pid 42 : hello");
        });
        let lines = ring.tail(None);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains(" - INFO - pid 42 : hello pid=42"), "{}", lines[0]);
    }
}
