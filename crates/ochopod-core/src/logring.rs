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

/// Longest line kept: a child printing megabytes without a newline must not fill the ring.
pub const MAX_LINE: usize = 8 * 1024;
/// The ring's size in bytes at most, whatever `capacity` says: `/log` copies it per reply.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct LogRing {
    inner: Arc<Mutex<Lines>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Lines {
    lines: VecDeque<String>,
    bytes: usize,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        let lines = Lines { lines: VecDeque::with_capacity(capacity.min(4096)), bytes: 0 };
        LogRing { inner: Arc::new(Mutex::new(lines)), capacity: capacity.max(1) }
    }

    /// Adds a line (cut to [`MAX_LINE`] bytes), dropping the oldest ones past `capacity` lines
    /// or [`MAX_BYTES`] bytes.
    pub fn push(&self, mut line: String) {
        if line.len() > MAX_LINE {
            let cut = line.len() - MAX_LINE;
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            let _ = write!(line, "… ({cut} bytes cut)");
        }
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.bytes += line.len();
        q.lines.push_back(line);
        while q.lines.len() > self.capacity || q.bytes > MAX_BYTES {
            let Some(old) = q.lines.pop_front() else { break };
            q.bytes -= old.len();
        }
    }

    /// The last `n` lines (all of them when `n` is `None`), oldest first.
    pub fn tail(&self, n: Option<usize>) -> Vec<String> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let skip = n.map(|n| q.lines.len().saturating_sub(n)).unwrap_or(0);
        q.lines.iter().skip(skip).cloned().collect()
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
    fn long_lines_are_cut_and_the_ring_is_bounded_in_bytes() {
        let r = LogRing::new(100_000);
        r.push(format!("é{}", "x".repeat(10 * 1024 * 1024)));
        let kept = r.tail(None);
        assert!(kept[0].len() < MAX_LINE + 64 && kept[0].ends_with("bytes cut)"), "{}", kept[0].len());
        for _ in 0..2000 {
            r.push("y".repeat(4000));
        }
        let bytes: usize = r.tail(None).iter().map(String::len).sum();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert!(r.tail(None).len() > 400, "the newest lines stay");
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
