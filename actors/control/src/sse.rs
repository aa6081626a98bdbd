//! `/events`: the lifecycle event bus as a server-sent-events stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use futures::Stream;
use ochopod_core::events::Stamped;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

/// Counts itself in the open-streams gauge while alive; actix drops the body stream when the
/// client goes away, so the count drops with it.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Feed {
    rx: broadcast::Receiver<Stamped>,
    keepalive: Interval,
    greeted: bool,
    _open: Open,
}

/// `data: <json>\n\n` per event, a `: keep-alive` comment every `keepalive`, and
/// `{"event":"lagged","missed":N}` when this subscriber fell behind and lost events. The
/// stream ends when the bus closes or when actix drops it (client gone).
pub fn stream(
    rx: broadcast::Receiver<Stamped>,
    keepalive: Duration,
    open: Arc<AtomicUsize>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let period = keepalive.max(Duration::from_millis(10));
    let mut keepalive = interval_at(Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed { rx, keepalive, greeted: false, _open: Open::new(open) };
    futures::stream::unfold(feed, |mut feed| async move {
        if !feed.greeted {
            // Flushes the headers at once, so a client knows it is subscribed.
            feed.greeted = true;
            return Some((Ok(Bytes::from_static(b": subscribed\n\n")), feed));
        }
        let chunk = tokio::select! {
            got = feed.rx.recv() => match got {
                Ok(ev) => frame(&serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into())),
                Err(RecvError::Lagged(missed)) => frame(&format!("{{\"event\":\"lagged\",\"missed\":{missed}}}")),
                Err(RecvError::Closed) => return None,
            },
            _ = feed.keepalive.tick() => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(chunk), feed))
    })
}

fn frame(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use ochopod_core::events::{Event, EventBus};

    async fn next(s: &mut (impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Unpin)) -> String {
        let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("a chunk within 5 s");
        String::from_utf8(item.unwrap().unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn events_lag_and_keepalives_are_framed_and_the_gauge_follows_the_stream() {
        let bus = EventBus::new(2);
        let open = Arc::new(AtomicUsize::new(0));
        let mut s = Box::pin(stream(bus.subscribe(), Duration::from_millis(50), open.clone()));
        assert_eq!(open.load(Ordering::Relaxed), 1);
        assert_eq!(next(&mut s).await, ": subscribed\n\n");

        bus.publish(Event::Leadership { leader: true, epoch: Some(4) });
        let got = next(&mut s).await;
        let js: serde_json::Value = serde_json::from_str(got.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(js["event"], "leadership");
        assert_eq!(js["epoch"], 4);
        assert!(got.ends_with("\n\n"));

        for i in 0..5 {
            bus.publish(Event::Sanity { failures: i, error: None });
        }
        assert_eq!(next(&mut s).await, "data: {\"event\":\"lagged\",\"missed\":3}\n\n");
        assert!(next(&mut s).await.contains("\"failures\":3"));
        assert!(next(&mut s).await.contains("\"failures\":4"));
        assert_eq!(next(&mut s).await, ": keep-alive\n\n");

        drop(s);
        assert_eq!(open.load(Ordering::Relaxed), 0);
    }
}
