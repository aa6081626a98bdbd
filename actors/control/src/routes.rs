//! The routes. Each handler translates HTTP into one message (or a read of shared state) and
//! the answer back; the mappings themselves live in [`crate::reply`], [`crate::info`] and
//! [`crate::metrics`].

use std::time::Duration;

use actix::{MailboxError, Message, Recipient};
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, Resource};
use futures::StreamExt;
use ochopod_api::Task;
use ochopod_executor::{Command, GetStatus, JsonBody};
use ochopod_leader::{GetLeaderStatus, Reconfigure};
use ochopod_session::{GetSessionStatus, Reset};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Mutating, Reading};
use crate::info::{build_info, Snapshot};
use crate::{metrics, reply, sse, ControlError, ControlState};

/// The original's default when the URL carries no timeout.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// A day: longer makes no sense for a control verb and keeps deadline arithmetic far from overflow.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

type State = web::Data<ControlState>;

/// Every route of the control API. The server and the `init_service` tests both use this, with
/// the state registered as `web::Data<ControlState>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(read_only("/info", info))
        .service(read_only("/log", log))
        .service(read_only("/metrics", metrics))
        .service(read_only("/events", events))
        .service(mutating("/control/{task}", control))
        .service(mutating("/control/{task}/{timeout}", control))
        .service(mutating("/reset", reset))
        .service(mutating("/reconfigure", reconfigure))
        .default_service(web::to(not_found));
}

fn read_only<F, Args>(path: &str, handler: F) -> Resource
where
    F: actix_web::Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::post().to(handler))
        .default_service(web::to(|req: HttpRequest| wrong_method(req, "GET, POST")))
}

fn mutating<F, Args>(path: &str, handler: F) -> Resource
where
    F: actix_web::Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(|req: HttpRequest| wrong_method(req, "POST")))
}

async fn wrong_method(req: HttpRequest, allow: &'static str) -> Result<HttpResponse, ControlError> {
    Err(ControlError::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_string(), allow })
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ControlError> {
    Err(ControlError::NotFound { method: req.method().to_string(), path: req.path().to_string() })
}

/// `/control/<task>[/<timeout>]`: one [`Command`] to the executor, answered with its reply or
/// 408 once `timeout` passes (the command still runs: see the crate doc).
async fn control(
    _: Mutating,
    state: State,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ControlError> {
    let raw_task = req.match_info().get("task").unwrap_or_default();
    let task: Task = raw_task.parse().map_err(|_| ControlError::UnknownTask(raw_task.to_string()))?;
    let timeout = parse_timeout(req.match_info().get("timeout"))?;
    let body = read_json(&req, body, state.body_limit).await?;
    tracing::debug!(%task, timeout_s = timeout.as_secs(), "control request");

    let pending = actix_web::rt::spawn(state.executor.send(Command { task, body }));
    if timeout.is_zero() {
        // "Do not wait": queued, answered 408 at once rather than by a race with the timer.
        return Err(ControlError::Timeout { task, timeout });
    }
    let reply = match tokio::time::timeout(timeout, pending).await {
        Err(_) => return Err(ControlError::Timeout { task, timeout }),
        Ok(Ok(Ok(reply))) => reply,
        Ok(Ok(Err(MailboxError::Timeout))) => return Err(ControlError::Timeout { task, timeout }),
        // The executor is gone only while the pod shuts down: like the original's dead actor.
        Ok(Ok(Err(MailboxError::Closed))) | Ok(Err(_)) => return Err(ControlError::Gone("executor")),
    };
    let (code, body) = reply::control_reply(&reply);
    tracing::debug!(%task, code, "control reply");
    Ok(json_response(code, &body))
}

fn parse_timeout(raw: Option<&str>) -> Result<Duration, ControlError> {
    let Some(raw) = raw else { return Ok(Duration::from_secs(DEFAULT_TIMEOUT_SECS)) };
    match raw.parse::<u64>() {
        Ok(secs) if secs <= MAX_TIMEOUT_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(ControlError::BadTimeout(raw.to_string())),
    }
}

/// `None` for an empty body; otherwise the body must be JSON, within `limit` bytes.
async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Option<JsonBody>, ControlError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ControlError::TooLarge { limit });
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ControlError::Body(e.to_string()))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ControlError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    JsonBody::parse(&bytes).map(Some).map_err(ControlError::BadJson)
}

async fn info(_: Reading, state: State) -> HttpResponse {
    let now = snapshot(&state).await;
    let info = build_info(&state.identity, &state.dependencies, state.started.elapsed(), &now);
    HttpResponse::Ok().json(info)
}

#[derive(Deserialize)]
struct LogQuery {
    n: Option<usize>,
}

/// The original served the lines of its log file, each ending with a newline; so do we. The
/// reply holds one of [`crate::MAX_LOG_READERS`] permits until it is sent (or the client goes),
/// so slow readers cannot pile up copies of the ring.
async fn log(_: Reading, state: State, req: HttpRequest) -> Result<HttpResponse, ControlError> {
    let query =
        web::Query::<LogQuery>::from_query(req.query_string()).map_err(|e| ControlError::BadQuery(e.to_string()))?;
    let busy = || ControlError::Busy { what: "/log readers", limit: crate::MAX_LOG_READERS };
    let permit = state.log_readers.clone().try_acquire_owned().map_err(|_| busy())?;
    let lines: Vec<String> = state.log.tail(query.n).into_iter().map(|line| line + "\n").collect();
    let body = web::Bytes::from(serde_json::to_vec(&lines).unwrap_or_default());
    drop(lines);
    let body_len = body.len();
    // In pieces: actix asks for the next one only once the previous left its write buffer, so
    // the permit is released when the client has (nearly) read everything, not when the reply
    // was handed over.
    let pieces = futures::stream::unfold((body, permit), |(mut rest, permit)| async move {
        if rest.is_empty() {
            return None;
        }
        let piece = rest.split_to(rest.len().min(64 * 1024));
        Some((Ok::<_, std::convert::Infallible>(piece), (rest, permit)))
    });
    let length = body_len as u64;
    Ok(HttpResponse::Ok().content_type("application/json").no_chunking(length).streaming(pieces))
}

async fn metrics(_: Reading, state: State) -> HttpResponse {
    let now = snapshot(&state).await;
    let text = metrics::render(&now, state.started.elapsed(), state.sse_clients());
    HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(text)
}

async fn events(_: Reading, state: State) -> Result<HttpResponse, ControlError> {
    if state.sse_clients() >= crate::MAX_EVENT_STREAMS {
        return Err(ControlError::Busy { what: "/events streams", limit: crate::MAX_EVENT_STREAMS });
    }
    let stream = sse::stream(state.events.subscribe(), state.sse_keepalive, state.sse_counter());
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells a buffering reverse proxy (nginx) to pass events through as they come.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// `/reset`: a tell, as in the original: 200 once the session has it (or is on it).
async fn reset(_: Mutating, state: State, req: HttpRequest, body: web::Payload) -> Result<HttpResponse, ControlError> {
    read_json(&req, body, state.body_limit).await?;
    match finish(state.reset.send(Reset), state.query_timeout).await {
        Finished::Done(()) | Finished::StillRunning => Ok(json_response(200, &json!({}))),
        Finished::Gone => Err(ControlError::Unavailable("session")),
    }
}

/// `/reconfigure`: a round now on the leader; 409 naming the leader on a follower.
async fn reconfigure(
    _: Mutating,
    state: State,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ControlError> {
    read_json(&req, body, state.body_limit).await?;
    match finish(state.reconfigure.send(Reconfigure), state.query_timeout).await {
        Finished::Done(result) => {
            let (code, body) = reply::reconfigure_reply(&result);
            Ok(json_response(code, &body))
        }
        Finished::StillRunning => Err(ControlError::NoAnswer { actor: "leader", timeout: state.query_timeout }),
        Finished::Gone => Err(ControlError::Unavailable("leader")),
    }
}

enum Finished<T> {
    Done(T),
    StillRunning,
    Gone,
}

/// Awaits a request from a detached task, so it is still delivered if we stop waiting.
async fn finish<T: 'static>(
    request: impl std::future::Future<Output = Result<T, MailboxError>> + 'static,
    wait: Duration,
) -> Finished<T> {
    match tokio::time::timeout(wait, actix_web::rt::spawn(request)).await {
        Ok(Ok(Ok(v))) => Finished::Done(v),
        Err(_) | Ok(Ok(Err(MailboxError::Timeout))) => Finished::StillRunning,
        Ok(Ok(Err(MailboxError::Closed))) | Ok(Err(_)) => Finished::Gone,
    }
}

/// The three status queries at once, each bounded, so one stuck actor costs at most
/// `query_timeout` and never hides what the others said.
async fn snapshot(state: &ControlState) -> Snapshot {
    let wait = state.query_timeout;
    let (executor, leader, session) = futures::join!(
        ask(&state.executor_status, GetStatus, wait),
        ask(&state.leader_status, GetLeaderStatus, wait),
        ask(&state.session_status, GetSessionStatus, wait),
    );
    Snapshot { executor, leader, session }
}

async fn ask<M>(to: &Recipient<M>, msg: M, wait: Duration) -> Option<M::Result>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    tokio::time::timeout(wait, to.send(msg)).await.ok()?.ok()
}

fn json_response(code: u16, body: &Value) -> HttpResponse {
    let status =
        actix_web::http::StatusCode::from_u16(code).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_whole_seconds_within_a_day() {
        assert_eq!(parse_timeout(None).unwrap(), Duration::from_secs(60));
        assert_eq!(parse_timeout(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(parse_timeout(Some("86400")).unwrap(), Duration::from_secs(86_400));
        for bad in ["86401", "-1", "1.5", "abc", "", "99999999999999999999999"] {
            let e = parse_timeout(Some(bad)).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
