//! `/info` throughput: the control server with probe actors on 127.0.0.1:0, then keep-alive
//! HTTP/1.1 clients hammering `GET /info` for a fixed time; prints requests/s, p50, p99.
//!
//! `cargo run -p ochopod-control --release --example info_bench [connections] [seconds]`
//! (defaults: 16 connections, 10 s). Loopback only; bounded in time.

#[path = "../tests/common/probe.rs"]
mod probe;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    // The pod side: one actix System with the probe actors and the server (one worker, as `serve` runs it).
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server_thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let (state, _script) = probe::state(probe::Options::default());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
            let addr = listener.local_addr().unwrap();
            let server = ochopod_control::serve(listener, state, None).expect("the server starts");
            let handle = server.handle();
            actix_web::rt::spawn(server);
            addr_tx.send(addr).unwrap();
            let _ = actix_web::rt::task::spawn_blocking(move || stop_rx.recv()).await;
            handle.stop(true).await;
        })
    });
    let addr: SocketAddr = addr_rx.recv().expect("the server thread reports its address");

    // The client side: its own runtime, so the two compete for the cores as they would.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (count, mut latencies) = rt.block_on(async move {
        // Warm up connections and the server's allocations.
        run(addr, connections, Duration::from_secs(1)).await;
        run(addr, connections, Duration::from_secs(seconds)).await
    });
    stop_tx.send(()).unwrap();
    server_thread.join().unwrap();

    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    let us = |v: Option<&u32>| v.map(|v| *v as f64 / 1000.0).unwrap_or(f64::NAN);
    println!(
        "info_bench: {connections} connections, {seconds} s: {count} requests, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        count as f64 / seconds as f64,
        us(pct(0.50)),
        us(pct(0.99)),
        us(latencies.last()),
    );
}

/// Requests completed and their latencies in microseconds.
async fn run(addr: SocketAddr, connections: usize, length: Duration) -> (u64, Vec<u32>) {
    let until = Instant::now() + length;
    let tasks: Vec<_> = (0..connections).map(|_| tokio::spawn(client(addr, until))).collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a client task"));
    }
    (all.len() as u64, all)
}

async fn client(addr: SocketAddr, until: Instant) -> Vec<u32> {
    const REQUEST: &[u8] = b"GET /info HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut out = Vec::with_capacity(1 << 16);
    while Instant::now() < until {
        let start = Instant::now();
        s.write_all(REQUEST).await.expect("write");
        buf.clear();
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(total) = complete(&buf) {
                assert!(buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf));
                assert_eq!(total, buf.len(), "one response at a time");
                break;
            }
        }
        out.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    out
}

/// The length of the response in `buf` once it is all there.
fn complete(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse().ok())?;
    (buf.len() >= end + len).then_some(end + len)
}
