//! Every way a control request can fail, and its JSON reply.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use ochopod_api::wire::status;
use ochopod_api::{ErrorBody, Task};

/// Errors of the HTTP layer itself (the executor's own outcomes are [`ochopod_executor::Reply`],
/// mapped by [`crate::reply::control_reply`]).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Deliberately the same message for a missing and a wrong token: no oracle for guessing.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("malformed JSON body: {0}")]
    BadJson(String),
    #[error("request body over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    Body(String),
    #[error("unknown task {0:?}")]
    UnknownTask(String),
    #[error("invalid timeout {0:?}: expected whole seconds from 0 to {max}", max = crate::routes::MAX_TIMEOUT_SECS)]
    BadTimeout(String),
    #[error("invalid query string: {0}")]
    BadQuery(String),
    #[error("no route {method} {path}")]
    NotFound { method: String, path: String },
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String, allow: &'static str },
    /// The command did not complete in time; it stays queued in the executor and runs later.
    #[error("task {task} did not complete within {timeout:?} (it stays queued and runs later)")]
    Timeout { task: Task, timeout: Duration },
    #[error("the {0} is not running")]
    Unavailable(&'static str),
    /// A bounded resource is in use by others (`/events` streams, `/log` readers): try later.
    #[error("{what}: {limit} at once at most, try again later")]
    Busy { what: &'static str, limit: usize },
    /// The original's dead actor: the leader drops this pod from the round.
    #[error("the {0} is gone: the pod is shutting down")]
    Gone(&'static str),
    #[error("the {actor} did not answer within {timeout:?}")]
    NoAnswer { actor: &'static str, timeout: Duration },
}

impl ControlError {
    pub fn body(&self) -> ErrorBody {
        let body = ErrorBody::new(self.to_string());
        match self {
            ControlError::UnknownTask(_) => {
                body.with("tasks", Task::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>())
            }
            ControlError::TooLarge { limit } => body.with("limit", *limit as u64),
            ControlError::MethodNotAllowed { allow, .. } => body.with("allow", *allow),
            ControlError::Timeout { timeout, .. } => body.with("timeout", timeout.as_secs()),
            _ => body,
        }
    }
}

impl ResponseError for ControlError {
    fn status_code(&self) -> StatusCode {
        let code = match self {
            ControlError::Unauthorized => status::UNAUTHORIZED,
            ControlError::BadJson(_)
            | ControlError::Body(_)
            | ControlError::UnknownTask(_)
            | ControlError::BadTimeout(_)
            | ControlError::BadQuery(_) => status::BAD_REQUEST,
            ControlError::TooLarge { .. } => status::TOO_LARGE,
            ControlError::NotFound { .. } => 404,
            ControlError::MethodNotAllowed { .. } => 405,
            ControlError::Timeout { .. } => status::TIMEOUT,
            ControlError::Unavailable(_) | ControlError::Busy { .. } => 503,
            ControlError::Gone(_) => status::DEAD,
            ControlError::NoAnswer { .. } => 504,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ControlError::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"ochopod\""));
            }
            ControlError::MethodNotAllowed { allow, .. } => {
                res.insert_header((header::ALLOW, *allow));
            }
            _ => {}
        }
        res.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_details_and_codes() {
        let e = ControlError::UnknownTask("reboot".into());
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        let b = serde_json::to_value(e.body()).unwrap();
        assert_eq!(b["error"], "unknown task \"reboot\"");
        assert_eq!(b["tasks"].as_array().unwrap().len(), 6);

        let e = ControlError::TooLarge { limit: 10 };
        assert_eq!(e.status_code().as_u16(), 413);
        assert_eq!(serde_json::to_value(e.body()).unwrap()["limit"], 10);

        let e = ControlError::Timeout { task: Task::On, timeout: Duration::from_secs(3) };
        assert_eq!(e.status_code().as_u16(), 408);
        assert!(e.to_string().contains("stays queued"));
    }

    #[test]
    fn unauthorized_and_wrong_method_carry_their_headers() {
        let r = ControlError::Unauthorized.error_response();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer realm=\"ochopod\"");
        let r = ControlError::MethodNotAllowed { method: "GET".into(), path: "/reset".into(), allow: "POST" }
            .error_response();
        assert_eq!(r.status().as_u16(), 405);
        assert_eq!(r.headers().get(header::ALLOW).unwrap(), "POST");
    }
}
