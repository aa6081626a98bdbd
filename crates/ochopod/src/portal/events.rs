//! `GET /v1/events?clusters=a,b`: every watched pod's `/events`, as one server-sent-events
//! stream. Each pod's events arrive as `data: {"pod": "<ns.cluster #seq>", "event": {…}}`; the
//! portal looks the pods up again every 2 s, so pods that join are followed (`{"pod":…,
//! "watching": true}`) and pods whose stream ends are dropped (`{"pod":…, "watching": false}`).

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::server::{ApiError, Authorized, Portal};
use crate::tools::discovery::Zk;

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
    let globs: Vec<String> = query
        .clusters
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(String::from)
        .collect();
    let target = ochopod_config::ZkTarget::parse(&portal.common.zk).map_err(ApiError::bad)?;
    let token = crate::tools::reach::token(&portal.common).map_err(ApiError::bad)?;
    let tls = portal.common.ca.is_some();
    let (tx, rx) = mpsc::channel::<Value>(256);
    actix_web::rt::spawn(watch(target, globs, token, tls, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(web::Bytes::from(format!("data: {ev}\n\n"))), rx))
    });
    let greeting = futures::stream::once(async { Ok(web::Bytes::from_static(b": subscribed\n\n")) });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(greeting.chain(stream)))
}

/// Looks the pods up every 2 s and follows each new one, until the client is gone.
async fn watch(
    target: ochopod_config::ZkTarget,
    globs: Vec<String>,
    token: Option<String>,
    tls: bool,
    tx: mpsc::Sender<Value>,
) {
    if tls {
        let _ = tx.send(json!({"warning": "the portal does not relay /events from pods with control.tls yet"})).await;
        return;
    }
    let http = reqwest::Client::builder().no_proxy().build().expect("a plain HTTP client builds");
    let (done_tx, mut done_rx) = mpsc::channel::<String>(64);
    let mut followed: BTreeSet<String> = BTreeSet::new();
    let mut zk: Option<Zk> = None;
    while !tx.is_closed() {
        while let Ok(gone) = done_rx.try_recv() {
            followed.remove(&gone);
        }
        if zk.is_none() {
            match Zk::connect(target.clone()).await {
                Ok(z) => zk = Some(z),
                Err(e) => {
                    let _ = tx.send(json!({"warning": format!("ZooKeeper: {e}")})).await;
                }
            }
        }
        if let Some(z) = &zk {
            match z.find(&globs).await {
                Ok(found) => {
                    for pod in found.pods {
                        let (Some(address), key) = (pod.address.clone(), pod.key()) else { continue };
                        if followed.insert(address.clone()) {
                            actix_web::rt::spawn(follow(
                                http.clone(),
                                token.clone(),
                                address,
                                key,
                                tx.clone(),
                                done_tx.clone(),
                            ));
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(json!({"warning": e})).await;
                    if let Some(z) = zk.take() {
                        z.close().await;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tx.closed() => break,
        }
    }
    if let Some(z) = zk {
        z.close().await;
    }
}

async fn follow(
    http: reqwest::Client,
    token: Option<String>,
    address: String,
    pod: String,
    tx: mpsc::Sender<Value>,
    done: mpsc::Sender<String>,
) {
    let mut req = http.get(format!("http://{address}/events"));
    if let Some(t) = &token {
        req = req.bearer_auth(t);
    }
    if tx.send(json!({"pod": pod, "watching": true})).await.is_ok() {
        if let Ok(mut resp) = req.send().await {
            let mut pending = String::new();
            'read: while let Ok(Some(chunk)) = tokio::select! {
                c = resp.chunk() => c,
                _ = tx.closed() => Ok(None),
            } {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let frame: String = pending.drain(..end + 2).collect();
                    for line in frame.lines() {
                        if let Some(data) = line.strip_prefix("data:") {
                            let event: Value = serde_json::from_str(data.trim()).unwrap_or_else(|_| json!(data.trim()));
                            if tx.send(json!({"pod": pod, "event": event})).await.is_err() {
                                break 'read;
                            }
                        }
                    }
                }
            }
        }
        let _ = tx.send(json!({"pod": pod, "watching": false})).await;
    }
    let _ = done.send(address).await;
}
