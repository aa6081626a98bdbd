//! A typed client for one pod's control API.

use std::time::Duration;

use ochopod_core::ControlPayload;
use serde_json::Value;

use crate::wire::{Info, Task};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{address}: unreachable ({source})")]
    Unreachable { address: String, source: reqwest::Error },
    #[error("{address}: no reply within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("{address}: unexpected reply ({0})", .source)]
    BadReply { address: String, source: reqwest::Error },
}

/// The status code and JSON body of a control request (bodies that are not JSON become `null`).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
}

/// Shares one connection pool; cheap to clone. Never goes through an HTTP proxy: pod-to-pod
/// calls must not be hijacked by a container's `HTTP_PROXY`.
#[derive(Clone, Debug)]
pub struct PodClient {
    http: reqwest::Client,
    token: Option<String>,
}

impl PodClient {
    pub fn new(token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a plain HTTP client builds");
        PodClient { http, token }
    }

    fn post(&self, url: String, timeout: Duration) -> reqwest::RequestBuilder {
        let req = self.http.post(url).timeout(timeout);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(&self, address: &str, req: reqwest::RequestBuilder, timeout: Duration) -> Result<Reply, ClientError> {
        let resp = req.send().await.map_err(|e| classify(address, timeout, e))?;
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| classify(address, timeout, e))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { code, body })
    }

    /// `POST http://<address>/control/<task>/<grace secs>` with the payload (or an empty body).
    /// The client waits `grace × 1.25`, as the original leader does, so the pod's own 408 wins.
    pub async fn control(
        &self,
        address: &str,
        task: Task,
        grace: Duration,
        payload: Option<&ControlPayload>,
    ) -> Result<Reply, ClientError> {
        let secs = grace.as_secs().max(1);
        let wait = grace.mul_f64(1.25).max(Duration::from_secs(2));
        let mut req = self.post(format!("http://{address}/control/{task}/{secs}"), wait);
        if let Some(p) = payload {
            req = req.json(p);
        }
        self.send(address, req, wait).await
    }

    /// `POST /control/<task>/<secs>` with any JSON body (`signal` takes user JSON).
    pub async fn control_raw(
        &self,
        address: &str,
        task: Task,
        grace: Duration,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let secs = grace.as_secs().max(1);
        let wait = grace.mul_f64(1.25).max(Duration::from_secs(2));
        let mut req = self.post(format!("http://{address}/control/{task}/{secs}"), wait);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(address, req, wait).await
    }

    /// `POST /info`, parsed.
    pub async fn info(&self, address: &str, timeout: Duration) -> Result<Info, ClientError> {
        let req = self.post(format!("http://{address}/info"), timeout);
        let resp = req.send().await.map_err(|e| classify(address, timeout, e))?;
        resp.json().await.map_err(|e| ClientError::BadReply { address: address.to_string(), source: e })
    }

    /// `POST /<path>` with an optional JSON body: `/log`, `/reset`, `/reconfigure`….
    pub async fn call(
        &self,
        address: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let mut req = self.post(format!("http://{address}/{}", path.trim_start_matches('/')), timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(address, req, timeout).await
    }
}

fn classify(address: &str, timeout: Duration, e: reqwest::Error) -> ClientError {
    if e.is_timeout() {
        ClientError::Timeout { address: address.to_string(), timeout }
    } else {
        ClientError::Unreachable { address: address.to_string(), source: e }
    }
}
