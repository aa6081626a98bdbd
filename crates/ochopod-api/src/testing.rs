//! Hostile peers for the client's tests: loopback servers whose replies are too large.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a hostile server answers to every request.
#[derive(Clone, Copy, Debug)]
pub enum Hostile {
    /// `200`, chunked, then 64 KiB chunks without end (up to [`CAP`]).
    Endless,
    /// `200` with `content-length: 8 GiB`, then the body as it comes (up to [`CAP`]).
    LyingLength,
    /// `200` with no length and `connection: close`: the body runs until the server closes (it
    /// does not, before [`CAP`]).
    UntilClose,
    /// `200` with a JSON string of this many bytes (quotes included), well-formed.
    Json(usize),
}

/// The most a hostile server sends per connection: far past every limit, yet small enough that
/// a client without limits (a regression) fails its test instead of exhausting the machine.
/// Past it the server keeps the connection open and silent, so such a client times out.
pub const CAP: usize = 64 << 20;

/// Reads one request (head and `content-length` bytes of body), then answers as `how`.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, how: Hostile) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !request_complete(&seen) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let head = match how {
        Hostile::Endless => {
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
        }
        Hostile::LyingLength => {
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8589934592\r\n\r\n".to_string()
        }
        Hostile::UntilClose => {
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n".to_string()
        }
        Hostile::Json(n) => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n"
        ),
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if let Hostile::Json(n) = how {
        let body = format!("\"{}\"", "x".repeat(n.saturating_sub(2)));
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < CAP {
        let written = match how {
            Hostile::Endless => {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                stream.write_all(&framed).await
            }
            _ => stream.write_all(&chunk).await,
        };
        if written.is_err() {
            return;
        }
        sent += chunk.len();
    }
    // Silent from here on: only the client's timeout ends it.
    let _ = stream.flush().await;
    std::future::pending::<()>().await;
}

/// Whether `seen` holds a whole request: the head and `content-length` bytes of body.
pub fn request_complete(seen: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seen);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

/// A plain-HTTP hostile server on loopback; its address.
pub async fn serve_plain(how: Hostile) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move { answer(&mut tcp, how).await });
        }
    });
    address
}
