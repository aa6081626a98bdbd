//! `GET /v1/events?clusters=a,b`: every watched pod's `/events`, as one server-sent-events
//! stream, from the process's [`super::hub`] (each pod followed once, over TLS with `--ca`,
//! however many clients listen). Each pod's events arrive as `data: {"pod": "<ns.cluster #seq>",
//! "event": {…}}`; the pods followed when the client subscribes, and those that join later, as
//! `{"pod":…, "watching": true}`, pods whose stream ends as `{"pod":…, "watching": false}`,
//! clusters whose pods came or went as `{"cluster":…, "changed": true}`, and `{"resync": true}`
//! when the client fell behind (events were dropped for it).

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast;

use super::hub::{hub, Relayed};
use super::server::{globs_of, ApiError, Authorized, Portal};
use crate::tools::discovery::match_clusters;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma-separated cluster globs (every cluster when absent).
    clusters: Option<String>,
}

pub async fn events(
    _: Authorized,
    portal: web::Data<Portal>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let globs = globs_of(query.clusters.as_deref());
    hub().start(&portal.common)?;
    let rx = hub().subscribe();
    let first = hub().watched(&globs);
    Ok(sse(rx, globs, first))
}

/// The hub's messages about the clusters matching `globs` (all with none) as server-sent
/// events, after `first`.
pub fn sse(rx: broadcast::Receiver<Arc<Relayed>>, globs: Vec<String>, first: Vec<Value>) -> HttpResponse {
    let wanted = move |r: &Relayed| match &r.cluster {
        Some(c) if !globs.is_empty() => !match_clusters(std::slice::from_ref(c), &globs).is_empty(),
        _ => true,
    };
    let relayed = futures::stream::unfold((rx, wanted), |(mut rx, wanted)| async move {
        loop {
            let frame = match rx.recv().await {
                Ok(r) if wanted(&r) => format!("data: {}\n\n", r.text),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => "data: {\"resync\":true}\n\n".to_string(),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok::<_, std::convert::Infallible>(web::Bytes::from(frame)), (rx, wanted)));
        }
    });
    let mut greeting = String::from(": subscribed\n\n");
    for v in first {
        greeting.push_str(&format!("data: {v}\n\n"));
    }
    let greeting = futures::stream::once(async move { Ok(web::Bytes::from(greeting)) });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(greeting.chain(relayed))
}
