//! HTTPS to pods whose control port speaks TLS (`control.tls`).
//!
//! Trust: the peers' certificates must chain to the roots read from one PEM file (the cluster's
//! CA, or, without a CA, the pods' own shared certificate). Nothing else is trusted: no system
//! roots, no platform verifier.
//!
//! Names are NOT checked, on purpose. Pods are reached at the IP they registered in ZooKeeper,
//! which the platform assigns when the container is scheduled (Kubernetes, Marathon, Docker), long
//! after a certificate was issued or baked into an image; a shared self-signed certificate cannot
//! list every pod's IP either. Requiring IP SANs would make TLS unusable in exactly the places
//! ochopod runs. The trade-off: any holder of a key whose certificate chains to the CA can pose as
//! any pod to a client that an attacker can route to it. With a CA dedicated to the cluster that
//! holder is a pod of the cluster anyway, and which address *is* a pod is already decided by
//! ZooKeeper, so a name check would add little. Do not point `ca` at a CA that also signs
//! certificates for parties that must not pose as pods. Everything else is verified as usual:
//! the chain and its signatures, validity dates, and the server-auth usage when the certificate
//! restricts usages.
//!
//! One connection per request (`Connection: close`): a round sends a handful of requests per pod
//! and a TLS handshake on a LAN costs about a millisecond, so a pool would buy little.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::client::{Bounded, TransportError};

/// Why an HTTPS exchange gave no reply: the transport failed, or the body was over the limit.
#[derive(Debug)]
pub(crate) enum HttpsError {
    Transport(TransportError),
    TooLarge,
}

impl From<TransportError> for HttpsError {
    fn from(e: TransportError) -> Self {
        HttpsError::Transport(e)
    }
}

/// The roots file could not be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("CA file {path}: {reason}")]
    Roots { path: PathBuf, reason: String },
    #[error("TLS client: {0}")]
    Config(String),
}

/// Opens TLS connections to pods, verifying them against fixed roots (see the module doc).
#[derive(Clone)]
pub(crate) struct Https {
    connector: tokio_rustls::TlsConnector,
}

impl fmt::Debug for Https {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Https")
    }
}

impl Https {
    /// Every certificate in `roots` (PEM) becomes a trust anchor.
    pub(crate) fn from_pem_file(roots: &Path) -> Result<Self, TlsSetupError> {
        let err = |reason: String| TlsSetupError::Roots { path: roots.to_path_buf(), reason };
        let certs = CertificateDer::pem_file_iter(roots)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in the file".into()));
        }
        let mut store = RootCertStore::empty();
        for cert in certs {
            store.add(cert).map_err(|e| err(format!("not a usable certificate: {e}")))?;
        }
        let provider = Arc::new(ring::default_provider());
        let verifier = ChainOnly { roots: Arc::new(store), algorithms: provider.signature_verification_algorithms };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Https { connector: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// `POST https://<address><path>`: connect, handshake, one request, the whole reply, read
    /// frame by frame and given up past `limit` bytes. The caller bounds the time.
    pub(crate) async fn post(
        &self,
        address: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
        limit: usize,
    ) -> Result<(u16, Bytes), HttpsError> {
        let tls = self.connect(address).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| TransportError::new("HTTP", e))?;
        // The connection is driven by its own task; abort it if we give up (timeout, drop).
        let driver = AbortOnDrop(tokio::spawn(conn));

        let mut req = hyper::Request::post(path).header(HOST, address).header(CONNECTION, "close");
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| TransportError::new("request", e))?;
        let resp = sender.send_request(req).await.map_err(|e| TransportError::new("HTTP", e))?;
        let code = resp.status().as_u16();
        let declared = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut bytes = Bounded::new(limit, declared).map_err(|_| HttpsError::TooLarge)?;
        let mut incoming = resp.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| TransportError::new("HTTP", e))?;
            if let Some(data) = frame.data_ref() {
                bytes.push(data).map_err(|_| HttpsError::TooLarge)?;
            }
        }
        // Dropping the driver (here or on an early return) closes the connection.
        drop(driver);
        Ok((code, bytes.into_bytes()))
    }
}

impl Https {
    /// A TCP connection to `address` with the TLS handshake done and the peer verified.
    pub(crate) async fn connect(
        &self,
        address: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TransportError> {
        let name = server_name(address)?;
        let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| TransportError::new("connect", e))?;
        // Requests are small and answered at once; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        self.connector.connect(name, tcp).await.map_err(|e| TransportError::new("TLS handshake", e))
    }
}

/// The SNI/verification name for `host:port` (an IP sends no SNI; names are not checked anyway).
fn server_name(address: &str) -> Result<ServerName<'static>, TransportError> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| TransportError::new("address", e))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Verifies the chain to the roots, dates and usage, and skips only the name check (module doc).
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, self.algorithms.all)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::ServerConfig;
    use rustls_pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use crate::client::limits;
    use crate::testing::{answer, request_complete, Hostile};
    use crate::{ClientError, PodClient};

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca { cert: params.self_signed(&key).unwrap(), key }
    }

    /// A server certificate for `names`, signed by `ca`, optionally already expired.
    fn leaf(ca: &Ca, names: &[&str], expired: bool) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        (params.signed_by(&key, &ca.cert, &ca.key).unwrap(), key)
    }

    fn write(dir: &tempfile::TempDir, name: &str, pem: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    }

    fn acceptor(cert: &rcgen::Certificate, key: &KeyPair) -> tokio_rustls::TlsAcceptor {
        let config = ServerConfig::builder_with_provider(std::sync::Arc::new(super::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .unwrap();
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
    }

    /// A one-route HTTPS server on loopback: answers every request with `{"ok": true}` and
    /// reports each request (head and body, as text) on the channel.
    async fn serve(cert: &rcgen::Certificate, key: &KeyPair) -> (String, mpsc::UnboundedReceiver<String>) {
        let acceptor = acceptor(cert, key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = tls.read(&mut buf).await.unwrap_or(0);
                        seen.extend_from_slice(&buf[..n]);
                        if n == 0 || request_complete(&seen) {
                            break;
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
                    let body = r#"{"ok": true}"#;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (address, rx)
    }

    /// An HTTPS server on loopback whose every reply is too large, as `how` says.
    async fn serve_hostile(cert: &rcgen::Certificate, key: &KeyPair, how: Hostile) -> String {
        let acceptor = acceptor(cert, key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    answer(&mut tls, how).await;
                });
            }
        });
        address
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn verifies_the_chain_to_the_ca_but_not_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("cluster ca");
        let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
        // Neither 127.0.0.1 nor `localhost`: the pod's address is not in the certificate.
        let (cert, key) = leaf(&ca, &["pod.invalid"], false);
        let (address, mut requests) = serve(&cert, &key).await;

        let client = PodClient::with_tls(Some("s3cret".into()), &ca_file).unwrap();
        assert_eq!(client.scheme(), "https");
        let body = serde_json::json!({"lines": 3});
        let reply = client.call(&address, "log", Some(&body), WAIT).await.unwrap();
        assert_eq!((reply.code, reply.body), (200, serde_json::json!({"ok": true})));

        let request = requests.recv().await.unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(request.starts_with("POST /log HTTP/1.1\r\n"), "{request}");
        assert!(lower.contains(&format!("host: {address}\r\n")), "{request}");
        assert!(lower.contains("authorization: bearer s3cret\r\n"), "{request}");
        assert!(lower.contains("content-type: application/json\r\n"), "{request}");
        assert!(request.ends_with(r#"{"lines":3}"#), "{request}");
    }

    #[tokio::test]
    async fn a_shared_self_signed_certificate_is_its_own_root() {
        let dir = tempfile::tempdir().unwrap();
        let shared = rcgen::generate_simple_self_signed(vec!["ochopod".to_string()]).unwrap();
        let cert_file = write(&dir, "cert.pem", &shared.cert.pem());
        let (address, _requests) = serve(&shared.cert, &shared.key_pair).await;

        let client = PodClient::with_tls(None, &cert_file).unwrap();
        let reply = client.control_raw(&address, crate::Task::Check, Duration::from_secs(1), None).await.unwrap();
        assert_eq!(reply.code, 200);
    }

    #[tokio::test]
    async fn rejects_a_certificate_of_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = ca("trusted");
        let other = ca("other");
        let ca_file = write(&dir, "ca.pem", &trusted.cert.pem());
        let (cert, key) = leaf(&other, &["127.0.0.1"], false);
        let (address, _requests) = serve(&cert, &key).await;

        let client = PodClient::with_tls(None, &ca_file).unwrap();
        match client.call(&address, "/info", None, WAIT).await {
            Err(e @ ClientError::Unreachable { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&address) && text.contains("TLS handshake"), "{text}");
                assert!(text.contains("UnknownIssuer"), "{text}");
            }
            other => panic!("expected the handshake to fail, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rejects_an_expired_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("cluster ca");
        let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
        let (cert, key) = leaf(&ca, &["127.0.0.1"], true);
        let (address, _requests) = serve(&cert, &key).await;

        let client = PodClient::with_tls(None, &ca_file).unwrap();
        let e = client.call(&address, "/info", None, WAIT).await.unwrap_err().to_string();
        assert!(e.contains("certificate expired"), "{e}");
    }

    #[tokio::test]
    async fn plain_http_gets_no_reply_from_a_tls_server() {
        let ca = ca("cluster ca");
        let (cert, key) = leaf(&ca, &["127.0.0.1"], false);
        let (address, _requests) = serve(&cert, &key).await;

        let client = PodClient::new(None);
        assert_eq!(client.scheme(), "http");
        let e = client.call(&address, "/info", None, WAIT).await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("the reply is not HTTP"), "{e}");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("cluster ca");
        let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
        // Accepts TCP (the kernel does, from the backlog) but never answers the handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();

        let client = PodClient::with_tls(None, &ca_file).unwrap();
        let e = client.call(&address, "/info", None, Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        drop(listener);
    }

    #[tokio::test]
    async fn an_endless_or_lying_reply_over_tls_is_cut_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("cluster ca");
        let ca_file = write(&dir, "ca.pem", &ca.cert.pem());
        let (cert, key) = leaf(&ca, &["pod.invalid"], false);
        let client = PodClient::with_tls(None, &ca_file).unwrap();
        for how in [Hostile::Endless, Hostile::UntilClose, Hostile::LyingLength] {
            let address = serve_hostile(&cert, &key, how).await;
            let started = std::time::Instant::now();
            for (reply, limit) in [
                (client.info(&address, Duration::from_secs(20)).await.map(|_| ()), limits::INFO),
                (client.call(&address, "log", None, Duration::from_secs(20)).await.map(|_| ()), limits::LOG),
                (
                    client.control_raw(&address, crate::Task::Check, Duration::from_secs(16), None).await.map(|_| ()),
                    limits::CONTROL,
                ),
            ] {
                match reply {
                    Err(e @ ClientError::TooLarge { .. }) => {
                        assert_eq!(e.to_string(), format!("{address}: reply larger than {limit} bytes"))
                    }
                    other => panic!("{how:?}: expected a size error, got {other:?}"),
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{how:?}: took {:?}", started.elapsed());
        }
    }

    #[test]
    fn unusable_roots_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = PodClient::with_tls(None, &missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("CA file {}: ", missing.display())), "{e}");

        let key_only = write(&dir, "key.pem", &KeyPair::generate().unwrap().serialize_pem());
        let e = PodClient::with_tls(None, &key_only).unwrap_err().to_string();
        assert!(e.contains("key.pem") && e.contains("no certificate"), "{e}");

        let garbage = write(&dir, "garbage.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let e = PodClient::with_tls(None, &garbage).unwrap_err().to_string();
        assert!(e.contains("garbage.pem") && e.contains("not a usable certificate"), "{e}");
    }
}
