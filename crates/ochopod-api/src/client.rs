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
    /// The reply's body (or its declared `content-length`) is over the limit of its route
    /// (see [`limits`]): reading stopped there, whatever the peer still had to send.
    #[error("{address}: reply larger than {limit} bytes")]
    TooLarge { address: String, limit: usize },
}

/// The largest reply body read from a peer, per route. A pod's replies are read whole into
/// memory (they are JSON), so without a bound a pod that answers with gigabytes would take the
/// leader or the CLI down with it. Reading stops as soon as a limit is passed, and a declared
/// `content-length` over it is refused before any of the body is read.
pub mod limits {
    /// `/control/*`, `/reset`, `/reconfigure` and anything else: `{}` or `{"error": ...}`, or
    /// for `signal` the `signaled` hook's JSON output, which the pod captures up to 1 MiB
    /// (`ochopod_proc::shell::MAX_CAPTURE`); re-serialised it stays about that size. 4 MiB
    /// leaves room for that and for original pods.
    pub const CONTROL: usize = 4 << 20;
    /// `/info`: a dozen short fields plus `metrics`, the last sanity check's JSON output,
    /// captured up to 1 MiB like the hook's; same bound as control replies.
    pub const INFO: usize = 4 << 20;
    /// `/log`: the pod's ring of the last `control.log_lines` lines (1000 by default), child
    /// lines cut at 16 KiB each (`ochopod_proc::lines::MAX_LINE`): at most ~16 MiB by default,
    /// usually far less. 32 MiB allows for JSON escaping; a pod configured with a much larger
    /// ring can exceed it, and then says so (`reply larger than …`).
    pub const LOG: usize = 32 << 20;

    /// The limit for `POST /<path>`: [`LOG`] for `/log` (with or without a query), else [`CONTROL`].
    pub fn for_path(path: &str) -> usize {
        let route = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        match route {
            "/log" => LOG,
            "/info" => INFO,
            _ => CONTROL,
        }
    }
}

/// Collects a reply body chunk by chunk, refusing to grow past `limit`. It never allocates from
/// the peer's `content-length` beyond a small start: a lying header costs nothing.
pub(crate) struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

/// The body, or its declared length, is over the limit.
#[derive(Debug)]
pub(crate) struct OverLimit;

impl Bounded {
    /// Refuses at once a declared length over `limit`.
    pub(crate) fn new(limit: usize, declared: Option<u64>) -> Result<Self, OverLimit> {
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(OverLimit);
        }
        let start = declared.map_or(0, |n| n.min(64 * 1024) as usize);
        Ok(Bounded { buf: Vec::with_capacity(start), limit })
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), OverLimit> {
        if chunk.len() > self.limit - self.buf.len() {
            return Err(OverLimit);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf)
    }
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

impl Reply {
    fn read(code: u16, bytes: &[u8]) -> Self {
        Reply { code, body: serde_json::from_slice(bytes).unwrap_or(Value::Null) }
    }
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
    /// for the whole reply and reading at most `limit` bytes of it.
    async fn post(
        &self,
        address: &str,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Duration,
        limit: usize,
    ) -> Result<(u16, Bytes), ClientError> {
        let body = body.map(serde_json::to_vec).transpose().map_err(|e| ClientError::Unreachable {
            address: address.to_string(),
            source: TransportError::new("request body", e),
        })?;
        self.post_bytes(address, path, body.map(Bytes::from), timeout, limit).await
    }

    /// [`Self::post`] with a body already serialised (JSON).
    async fn post_bytes(
        &self,
        address: &str,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
        limit: usize,
    ) -> Result<(u16, Bytes), ClientError> {
        let unreachable = |source| ClientError::Unreachable { address: address.to_string(), source };
        let too_large = || ClientError::TooLarge { address: address.to_string(), limit };
        match &self.transport {
            Transport::Http(http) => {
                let mut req = http.post(format!("http://{address}{path}")).timeout(timeout);
                if let Some(t) = &self.token {
                    req = req.bearer_auth(t);
                }
                if let Some(b) = body {
                    req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
                }
                // The request's own timeout covers the body too; this one bounds the whole
                // exchange whatever reqwest does, like the HTTPS path.
                let exchange = async {
                    let mut resp = req.send().await.map_err(|e| classify(address, timeout, e))?;
                    let code = resp.status().as_u16();
                    let mut body = Bounded::new(limit, resp.content_length()).map_err(|_| too_large())?;
                    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(address, timeout, e))? {
                        body.push(&chunk).map_err(|_| too_large())?;
                    }
                    Ok((code, body.into_bytes()))
                };
                match tokio::time::timeout(timeout, exchange).await {
                    Ok(reply) => reply,
                    Err(_) => Err(ClientError::Timeout { address: address.to_string(), timeout }),
                }
            }
            Transport::Https(https) => {
                let exchange = https.post(address, path, self.token.as_deref(), body, limit);
                match tokio::time::timeout(timeout, exchange).await {
                    Ok(Ok(reply)) => Ok(reply),
                    Ok(Err(crate::tls::HttpsError::TooLarge)) => Err(too_large()),
                    Ok(Err(crate::tls::HttpsError::Transport(e))) => Err(unreachable(e)),
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
        let (code, bytes) = self.post(address, path, body, timeout, limits::for_path(path)).await?;
        Ok(Reply::read(code, &bytes))
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

    /// `POST /control/<task>/<grace secs>` with a payload serialised by the caller: a leader
    /// sends the same pods to every pod of a round and serialises them once, not once per pod.
    pub async fn control_serialized(
        &self,
        address: &str,
        task: Task,
        grace: Duration,
        payload: Bytes,
    ) -> Result<Reply, ClientError> {
        let (secs, wait) = control_wait(grace);
        let path = format!("/control/{task}/{secs}");
        let (code, bytes) = self.post_bytes(address, &path, Some(payload), wait, limits::CONTROL).await?;
        Ok(Reply::read(code, &bytes))
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
        let (secs, wait) = control_wait(grace);
        self.send(address, &format!("/control/{task}/{secs}"), body, wait).await
    }

    /// `POST /info`, parsed.
    pub async fn info(&self, address: &str, timeout: Duration) -> Result<Info, ClientError> {
        let (code, bytes) = self.post(address, "/info", None::<&Value>, timeout, limits::INFO).await?;
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

/// The grace in whole seconds for the path, and how long the client waits: `grace × 1.25`, as
/// the original leader does, so that the pod's own 408 wins.
fn control_wait(grace: Duration) -> (u64, Duration) {
    (grace.as_secs().max(1), grace.mul_f64(1.25).max(Duration::from_secs(2)))
}

/// A connection to a pod opened by [`PodClient::open`]: plain TCP, or TLS verified as every
/// request of that client is. For exchanges the caller speaks itself, such as a stream
/// (`/events`) that the whole-reply calls cannot read.
pub enum PodStream {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// What both kinds of [`PodStream`] are.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl PodStream {
    fn io(self: std::pin::Pin<&mut Self>) -> std::pin::Pin<&mut dyn Io> {
        match self.get_mut() {
            PodStream::Tcp(s) => std::pin::Pin::new(s),
            PodStream::Tls(s) => std::pin::Pin::new(s.as_mut()),
        }
    }
}

impl tokio::io::AsyncRead for PodStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PodStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

impl PodClient {
    /// A connection to `address` (TLS, verified against this client's roots, when it was built
    /// with [`PodClient::with_tls`]), within `timeout`. The caller writes the request, with
    /// [`PodClient::token`], and reads the reply itself.
    pub async fn open(&self, address: &str, timeout: Duration) -> Result<PodStream, ClientError> {
        let unreachable = |source| ClientError::Unreachable { address: address.to_string(), source };
        let opened = async {
            match &self.transport {
                Transport::Http(_) => {
                    let tcp = tokio::net::TcpStream::connect(address)
                        .await
                        .map_err(|e| unreachable(TransportError::new("connect", e)))?;
                    let _ = tcp.set_nodelay(true);
                    Ok(PodStream::Tcp(tcp))
                }
                Transport::Https(https) => {
                    Ok(PodStream::Tls(Box::new(https.connect(address).await.map_err(unreachable)?)))
                }
            }
        };
        match tokio::time::timeout(timeout, opened).await {
            Ok(stream) => stream,
            Err(_) => Err(ClientError::Timeout { address: address.to_string(), timeout }),
        }
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::limits;
    use crate::testing::{serve_plain, Hostile};
    use crate::{ClientError, PodClient, Task};

    /// Far longer than reading a limit's worth of loopback takes: a client that stops on size
    /// answers well within it; one that does not would run into it.
    const PATIENCE: Duration = Duration::from_secs(20);
    const QUICK: Duration = Duration::from_secs(10);

    fn assert_too_large<T: std::fmt::Debug>(reply: Result<T, ClientError>, address: &str, limit: usize) {
        match reply {
            Err(e @ ClientError::TooLarge { .. }) => {
                assert_eq!(e.to_string(), format!("{address}: reply larger than {limit} bytes"));
            }
            other => {
                let seen: String = format!("{other:?}").chars().take(200).collect();
                panic!("expected the reply to be refused as too large, got {seen}")
            }
        }
    }

    #[tokio::test]
    async fn an_endless_reply_is_cut_at_the_routes_limit() {
        let client = PodClient::new(Some("t".into()));
        for how in [Hostile::Endless, Hostile::UntilClose] {
            let address = serve_plain(how).await;
            let started = Instant::now();
            assert_too_large(client.info(&address, PATIENCE).await, &address, limits::INFO);
            let grace = Duration::from_secs(16); // waits 20 s
            assert_too_large(client.control(&address, Task::Check, grace, None).await, &address, limits::CONTROL);
            assert_too_large(client.call(&address, "log", None, PATIENCE).await, &address, limits::LOG);
            assert!(started.elapsed() < QUICK, "{how:?}: took {:?}", started.elapsed());
        }
    }

    #[tokio::test]
    async fn a_lying_content_length_is_refused_before_reading() {
        let client = PodClient::new(None);
        let address = serve_plain(Hostile::LyingLength).await;
        let started = Instant::now();
        assert_too_large(client.info(&address, PATIENCE).await, &address, limits::INFO);
        assert_too_large(client.call(&address, "reset", None, PATIENCE).await, &address, limits::CONTROL);
        assert_too_large(client.call(&address, "/log?n=5", None, PATIENCE).await, &address, limits::LOG);
        assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn log_replies_may_be_larger_than_control_replies() {
        let client = PodClient::new(None);
        let address = serve_plain(Hostile::Json(limits::CONTROL + 1)).await;
        let log = client.call(&address, "log", None, PATIENCE).await.unwrap();
        assert_eq!(log.code, 200);
        assert_eq!(log.body.as_str().map(str::len), Some(limits::CONTROL - 1));
        assert_too_large(client.call(&address, "reset", None, PATIENCE).await, &address, limits::CONTROL);
        let fits = serve_plain(Hostile::Json(limits::CONTROL)).await;
        let reply = client.control_raw(&fits, Task::Signal, Duration::from_secs(5), None::<&Value>).await.unwrap();
        assert_eq!(reply.code, 200);
    }

    #[test]
    fn limits_follow_the_route() {
        assert_eq!(limits::for_path("/log"), limits::LOG);
        assert_eq!(limits::for_path("/log?n=3"), limits::LOG);
        assert_eq!(limits::for_path("/info"), limits::INFO);
        assert_eq!(limits::for_path("/control/on/5"), limits::CONTROL);
        assert_eq!(limits::for_path("/logs"), limits::CONTROL);
    }
}
