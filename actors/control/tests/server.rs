//! The real server on 127.0.0.1 port 0: random requests and garbage bytes, the `/events`
//! stream over a socket, and TLS with a self-signed certificate.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use common::probe::{self, Options};
use common::schema::{info_schema, validate};
use ochopod_control::{serve, ControlState};
use ochopod_core::events::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start(state: ControlState, tls: Option<&ochopod_config::Tls>) -> (SocketAddr, ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().unwrap();
    let server = serve(listener, state, tls).expect("the server starts");
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

/// A parsed HTTP/1.1 response (the server answers `Connection: close` requests with a sized body).
#[derive(Debug)]
struct Response {
    code: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    parse_reply(raw, false)
}

/// `head`: the reply to a HEAD request, whose content-length describes a body never sent.
fn parse_reply(raw: &[u8], to_head: bool) -> Result<Response, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| format!("head not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().ok_or("no status line")?;
    let code = status
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status:?}"))?;
    let headers: Vec<(String, String)> = lines
        .map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect::<Option<_>>()
        .ok_or("bad header line")?;
    let body = raw[split + 4..].to_vec();
    let res = Response { code, headers, body };
    if let (Some(len), false) = (res.header("content-length"), to_head) {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        if len != res.body.len() {
            return Err(format!("content-length {len} but {} body bytes", res.body.len()));
        }
    }
    Ok(res)
}

async fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    if half_close {
        s.shutdown().await?;
    }
    let mut buf = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await {
        Ok(r) => r.map(|_| buf),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply within 10 s")),
    }
}

const TOKEN: &str = "fuzz-token";

fn random_segment(rng: &mut StdRng) -> String {
    const SAFE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";
    let len = rng.random_range(0..12);
    (0..len)
        .map(|_| {
            if rng.random_bool(0.2) {
                format!("%{:02X}", rng.random::<u8>())
            } else {
                (SAFE[rng.random_range(0..SAFE.len())] as char).to_string()
            }
        })
        .collect()
}

fn random_path(rng: &mut StdRng) -> String {
    let tasks = ["check", "on", "off", "ok", "kill", "signal", "reboot", ""];
    let timeouts = ["0", "0", "1", "5", "-3", "abc", "99999999999", "1.5"];
    match rng.random_range(0..10) {
        0 => "/info".into(),
        1 => format!("/log?n={}", random_segment(rng)),
        2 => "/metrics".into(),
        3 => "/reset".into(),
        4 => "/reconfigure".into(),
        5 | 6 => format!(
            "/control/{}/{}",
            tasks[rng.random_range(0..tasks.len())],
            timeouts[rng.random_range(0..timeouts.len())]
        ),
        7 => format!("/control/{}", random_segment(rng)),
        _ => {
            let n = rng.random_range(0..5);
            let mut p: String = (0..n).map(|_| format!("/{}", random_segment(rng))).collect();
            if p.is_empty() || rng.random_bool(0.1) {
                p.push('/');
            }
            p
        }
    }
}

fn random_body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..5) {
        0 => Vec::new(),
        1 => br#"{"pods": {}, "dependencies": {}, "key": "k"}"#.to_vec(),
        2 => br#"{"pods": {"#.to_vec(),
        _ => (0..rng.random_range(1..600)).map(|_| rng.random::<u8>()).collect(),
    }
}

#[actix_web::test]
async fn random_requests_and_garbage_never_break_the_server() {
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0c70_90d5);
    let mut rng = StdRng::seed_from_u64(seed);
    let (state, _script) = probe::state(Options { token: Some(TOKEN), body_limit: 256, ..Default::default() });
    let (addr, handle) = start(state, None);
    let methods = ["POST", "POST", "POST", "POST", "POST", "GET", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];
    let expected = [200, 400, 401, 404, 405, 408, 413];
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();

    for i in 0..2_000 {
        let method = methods[rng.random_range(0..methods.len())];
        let path = random_path(&mut rng);
        let body = random_body(&mut rng);
        let auth = match rng.random_range(0..4) {
            0 => String::new(),
            1 | 2 => format!("Authorization: Bearer {TOKEN}\r\n"),
            _ => format!("Authorization: Bearer {}\r\n", random_segment(&mut rng)),
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: pod\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let ctx = format!("seed {seed:#x} request {i}: {method} {path} ({} body bytes)", body.len());

        let raw = exchange(addr, &req, false).await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let res = parse_reply(&raw, method == "HEAD")
            .unwrap_or_else(|e| panic!("{ctx}: {e}: {:?}", String::from_utf8_lossy(&raw)));
        assert!(expected.contains(&res.code), "{ctx}: unexpected {}", res.code);
        *seen.entry(res.code).or_default() += 1;
        if method == "HEAD" {
            continue;
        }
        let content_type = res.header("content-type").unwrap_or_default();
        if res.code == 200 && path == "/metrics" {
            assert!(content_type.starts_with("text/plain"), "{ctx}: {content_type}");
            continue;
        }
        assert_eq!(content_type, "application/json", "{ctx}");
        let js: Value = serde_json::from_slice(&res.body)
            .unwrap_or_else(|e| panic!("{ctx}: body not JSON ({e}): {:?}", String::from_utf8_lossy(&res.body)));
        if res.code != 200 {
            assert!(js["error"].is_string(), "{ctx}: {js}");
        }
    }
    eprintln!("seed {seed:#x}: status codes seen {seen:?}");
    for code in expected {
        assert!(seen.get(&code).is_some_and(|n| *n > 0), "status {code} never came up: {seen:?}");
    }

    // Garbage on the wire: the HTTP parser may answer 4xx or just close; never hang or die.
    for i in 0..300 {
        let len = rng.random_range(1..400);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
        if rng.random_bool(0.5) {
            // Starts like a request, so the parser gets further before it fails.
            let mut start = b"POST /control/on HTTP/1.1\r\n".to_vec();
            start.append(&mut junk);
            junk = start;
        }
        let raw = exchange(addr, &junk, true).await.unwrap_or_else(|e| panic!("seed {seed:#x} junk {i}: {e}"));
        if !raw.is_empty() {
            let res =
                parse_response(&raw).unwrap_or_else(|e| panic!("junk {i}: {e}: {:?}", String::from_utf8_lossy(&raw)));
            assert!((400..500).contains(&res.code), "junk {i}: {}", res.code);
        }
    }

    let raw = exchange(addr, b"GET /info HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", false).await.unwrap();
    let res = parse_response(&raw).unwrap();
    assert_eq!(res.code, 200);
    let js: Value = serde_json::from_slice(&res.body).unwrap();
    assert!(validate(&info_schema(), &js).is_empty(), "{js}");
    handle.stop(true).await;
}

#[actix_web::test]
async fn events_stream_lifecycle_events_and_end_when_the_client_leaves() {
    let (mut state, _script) = probe::state(Options::default());
    state.sse_keepalive = Duration::from_millis(100);
    let bus = state.events.clone();
    let open = state.sse_counter();
    let (addr, handle) = start(state, None);

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: pod\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    read_until_contains(&mut s, &mut got, ": subscribed").await;
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 1);

    bus.publish(Event::Leadership { leader: true, epoch: Some(8) });
    bus.publish(Event::Process { state: "running".into(), pid: Some(77) });
    read_until_contains(&mut s, &mut got, "\"pid\":77").await;
    let text = String::from_utf8_lossy(&got).to_string();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!((events[0]["event"].as_str(), events[0]["epoch"].as_u64()), (Some("leadership"), Some(8)));
    assert_eq!(events[1]["state"], "running");
    read_until_contains(&mut s, &mut got, ": keep-alive").await;

    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open.load(std::sync::atomic::Ordering::SeqCst) != 0 {
        assert!(Instant::now() < deadline, "the stream outlived its client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop(true).await;
}

async fn read_until_contains(s: &mut TcpStream, got: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within 5 s; got {:?}", String::from_utf8_lossy(got)))
            .unwrap();
        assert!(n > 0, "the stream closed before {needle:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[actix_web::test]
async fn tls_serves_the_api_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tls = ochopod_config::Tls { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem"), ca: None };
    std::fs::write(&tls.cert, ck.cert.pem()).unwrap();
    std::fs::write(&tls.key, ck.key_pair.serialize_pem()).unwrap();
    let (state, _script) = probe::state(Options { token: Some("tls-token"), ..Default::default() });
    let (addr, handle) = start(state, Some(&tls));

    let cert_der = ck.cert.der().clone();
    let replies = tokio::task::spawn_blocking(move || {
        let info = https(addr, &cert_der, "GET /info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let reset = https(
            addr,
            &cert_der,
            "POST /reset HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tls-token\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        (info, reset)
    })
    .await
    .unwrap();
    let info = parse_response(&replies.0).unwrap();
    assert_eq!(info.code, 200);
    let js: Value = serde_json::from_slice(&info.body).unwrap();
    assert!(validate(&info_schema(), &js).is_empty(), "{js}");
    assert_eq!(parse_response(&replies.1).unwrap().code, 200);

    // Plain HTTP on the TLS port gets no answer from the API.
    let raw = exchange(addr, b"GET /info HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", false).await;
    assert!(raw.map(|r| !String::from_utf8_lossy(&r).contains("\"process\"")).unwrap_or(true));
    handle.stop(true).await;
}

/// One request over rustls that trusts exactly `cert`.
fn https(addr: SocketAddr, cert: &rustls_pki_types::CertificateDer<'static>, request: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // The server may close without close_notify once the reply is out.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => panic!("TLS read: {e}"),
    }
    out
}

#[actix_web::test]
async fn event_streams_are_capped_and_info_keeps_answering() {
    let (state, _script) = probe::state(Options::default());
    let open = state.sse_counter();
    let (addr, handle) = start(state, None);
    let mut streams = Vec::new();
    for _ in 0..ochopod_control::MAX_EVENT_STREAMS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: pod\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        read_until_contains(&mut s, &mut got, ": subscribed").await;
        streams.push(s);
    }
    assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), ochopod_control::MAX_EVENT_STREAMS);
    let one_more =
        exchange(addr, b"GET /events HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", false).await.unwrap();
    let one_more = parse_response(&one_more).unwrap();
    assert_eq!(one_more.code, 503);
    let body: Value = serde_json::from_slice(&one_more.body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("/events streams: 64 at once"), "{body}");
    let info = exchange(addr, b"GET /info HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", false).await.unwrap();
    assert_eq!(parse_response(&info).unwrap().code, 200);
    drop(streams);
    handle.stop(true).await;
}

#[actix_web::test]
async fn slow_log_readers_hold_a_bounded_number_of_copies() {
    let (mut state, _script) = probe::state(Options::default());
    state.log = ochopod_core::logring::LogRing::new(100_000);
    // A full ring of characters JSON escapes six times over: a reply of ~12 MB, more than the
    // kernel buffers for a client that never reads.
    for i in 0..100_000 {
        state.log.push(format!("{i} {}", "\u{1}".repeat(4000)));
    }
    let (addr, handle) = start(state, None);
    let mut slow = Vec::new();
    for _ in 0..ochopod_control::MAX_LOG_READERS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /log HTTP/1.1\r\nHost: pod\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        read_until_contains(&mut s, &mut got, "200 OK").await;
        slow.push(s);
    }
    let busy = exchange(addr, b"GET /log HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", false).await.unwrap();
    let busy = parse_response(&busy).unwrap();
    assert_eq!(busy.code, 503, "{:?}", String::from_utf8_lossy(&busy.body));
    // One slow reader finishes reading: its permit comes back.
    let mut first = slow.remove(0);
    let mut sink = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        assert!(Instant::now() < deadline, "no /log permit came back");
        // Drain the first reader a bit, then ask again.
        let _ = tokio::time::timeout(Duration::from_millis(50), first.read(&mut sink)).await;
        let again = exchange(addr, b"GET /log?n=1 HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", false);
        let again = parse_reply(&again.await.unwrap(), false);
        if let Ok(r) = again {
            if r.code == 200 {
                break r;
            }
        }
    };
    let lines: Vec<String> = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(lines.len(), 1);
    handle.stop(false).await;
}
