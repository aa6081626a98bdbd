//! `POST /v1/log` with `"follow": true`: `log -f` run on the portal
//! ([`crate::tools::remote::follow_lines`]: the follower the CLI runs without a portal, its events
//! as JSON lines, an empty line for a poll that found nothing), streamed until the client goes;
//! the follower (its ZooKeeper session, its polls) ends with the stream. At most [`MAX_FOLLOWS`]
//! run at once; more get 503.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use futures::StreamExt;

use super::server::ApiError;
use crate::tools::Tool;

/// `log -f` streams served at once.
pub const MAX_FOLLOWS: usize = 16;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many `log -f` streams are open now (`/healthz` says it).
pub fn open() -> usize {
    OPEN.load(Ordering::SeqCst)
}

/// One of the [`MAX_FOLLOWS`] places, given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        OPEN.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX_FOLLOWS).then_some(n + 1)).ok().map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::SeqCst);
    }
}

pub async fn log(tool: Tool) -> Result<HttpResponse, ApiError> {
    let slot = Slot::take().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_FOLLOWS} log -f streams are open on this portal: try again later"),
        )
    })?;
    let lines = crate::tools::remote::follow_lines(tool).await?;
    // The slot goes with the stream.
    let stream = lines.map(move |line| {
        let _held = &slot;
        Ok::<_, std::convert::Infallible>(web::Bytes::from(line))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}
