//! A typed client for one pod's control API, over plain HTTP (the default, and all that the
//! original Python pods speak) or HTTPS when the pods serve TLS (see [`crate::tls`]).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use hyper::body::Bytes;
use ochopod_core::ControlPayload;
use serde::Serialize;
use serde_json::Value;

use crate::tls::{Https, TlsSetupError};
use crate::wire::{Info, Task};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{address}: unreachable ({source})")]
    Unreachable { address: String, source: TransportError },
    #[error("{address}: no reply within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("{address}: unexpected reply ({0})", .source)]
    BadReply { address: String, source: TransportError },
}

/// Why a request got no usable reply: the error of the layer that failed (connect, TLS
/// handshake, HTTP, decoding), whose `source()` chain leads to the root cause.
#[derive(Debug)]
pub struct TransportError {
    context: Option<String>,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl TransportError {
    pub(crate) fn new(context: impl Into<String>, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        TransportError { context: Some(context.into()), inner: Box::new(e) }
    }

    fn bare(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        TransportError { context: None, inner: Box::new(e) }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(c) => write!(f, "{c}: {}", self.inner),
            None => self.inner.fmt(f),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// The status code and JSON body of a control request (bodies that are not JSON become `null`).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
}

/// Cheap to clone. Never goes through an HTTP proxy: pod-to-pod calls must not be hijacked by a
/// container's `HTTP_PROXY`.
#[derive(Clone, Debug)]
pub struct PodClient {
    transport: Transport,
    token: Option<String>,
}

#[derive(Clone, Debug)]
enum Transport {
    /// Shares one connection pool.
    Http(reqwest::Client),
    Https(Https),
}

impl PodClient {
    /// Plain HTTP.
    pub fn new(token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a plain HTTP client builds");
        PodClient { transport: Transport::Http(http), token }
    }

    /// HTTPS, trusting only the certificates in the PEM file `roots`: the CA that signs the pods'
    /// control certificates, or the pods' shared self-signed certificate. Pods are addressed by
    /// IP, so their certificates need no IP SANs: the chain is verified, the name is not (see
    /// [`crate::tls`] for why and what it costs).
    pub fn with_tls(token: Option<String>, roots: &Path) -> Result<Self, TlsSetupError> {
        Ok(PodClient { transport: Transport::Https(Https::from_pem_file(roots)?), token })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        match self.transport {
            Transport::Http(_) => "http",
            Transport::Https(_) => "https",
        }
    }

    /// `POST <scheme>://<address><path>` with an optional JSON body, waiting at most `timeout`
    /// for the whole reply.
    async fn post(
        &self,
        address: &str,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), ClientError> {
        let unreachable = |source| ClientError::Unreachable { address: address.to_string(), source };
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| unreachable(TransportError::new("request body", e)))?;
        match &self.transport {
            Transport::Http(http) => {
                let mut req = http.post(format!("http://{address}{path}")).timeout(timeout);
                if let Some(t) = &self.token {
                    req = req.bearer_auth(t);
                }
                if let Some(b) = body {
                    req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
                }
                let resp = req.send().await.map_err(|e| classify(address, timeout, e))?;
                let code = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| classify(address, timeout, e))?;
                Ok((code, bytes))
            }
            Transport::Https(https) => {
                match tokio::time::timeout(timeout, https.post(address, path, self.token.as_deref(), body)).await {
                    Ok(reply) => reply.map_err(unreachable),
                    Err(_) => Err(ClientError::Timeout { address: address.to_string(), timeout }),
                }
            }
        }
    }

    async fn send(
        &self,
        address: &str,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let (code, bytes) = self.post(address, path, body, timeout).await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { code, body })
    }

    /// `POST /control/<task>/<grace secs>` with the payload (or an empty body).
    /// The client waits `grace × 1.25`, as the original leader does, so the pod's own 408 wins.
    pub async fn control(
        &self,
        address: &str,
        task: Task,
        grace: Duration,
        payload: Option<&ControlPayload>,
    ) -> Result<Reply, ClientError> {
        self.control_with(address, task, grace, payload).await
    }

    /// `POST /control/<task>/<secs>` with any JSON body (`signal` takes user JSON).
    pub async fn control_raw(
        &self,
        address: &str,
        task: Task,
        grace: Duration,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        self.control_with(address, task, grace, body).await
    }

    async fn control_with<B: Serialize>(
        &self,
        address: &str,
        task: Task,
        grace: Duration,
        body: Option<&B>,
    ) -> Result<Reply, ClientError> {
        let secs = grace.as_secs().max(1);
        let wait = grace.mul_f64(1.25).max(Duration::from_secs(2));
        self.send(address, &format!("/control/{task}/{secs}"), body, wait).await
    }

    /// `POST /info`, parsed.
    pub async fn info(&self, address: &str, timeout: Duration) -> Result<Info, ClientError> {
        let (code, bytes) = self.post(address, "/info", None::<&Value>, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadReply {
            address: address.to_string(),
            // A 401 must not read as a mere parse error.
            source: if code == 200 { TransportError::bare(e) } else { TransportError::new(format!("HTTP {code}"), e) },
        })
    }

    /// `POST /<path>` with an optional JSON body: `/log`, `/reset`, `/reconfigure`….
    pub async fn call(
        &self,
        address: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        self.send(address, &format!("/{}", path.trim_start_matches('/')), body, timeout).await
    }
}

fn classify(address: &str, timeout: Duration, e: reqwest::Error) -> ClientError {
    if e.is_timeout() {
        return ClientError::Timeout { address: address.to_string(), timeout };
    }
    let source = match not_http(&e) {
        Some(parse) => TransportError::bare(NotHttp(parse)),
        None => TransportError::bare(e),
    };
    ClientError::Unreachable { address: address.to_string(), source }
}

/// A reply that is not HTTP/1 at all: most often a TLS port spoken to in plain HTTP, which
/// otherwise reads as a cryptic parse error.
#[derive(Debug, thiserror::Error)]
#[error("the reply is not HTTP ({0}); a pod with `control.tls` must be reached over HTTPS with its CA")]
struct NotHttp(String);

fn not_http(e: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_parse().then(|| h.to_string());
        }
        next = err.source();
    }
    None
}
