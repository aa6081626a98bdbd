//! A small HTTP/1.1 client for replies that never end: a pod's `/events` (the hub follows
//! hundreds at once) and a portal's `log -f` (the CLI). One request on a connection that
//! [`PodClient::open`] made (plain TCP, or TLS verified against the CA the tools use), then the
//! body line by line, each line bounded. reqwest would do for plain HTTP, but not over the
//! pods' TLS, and a 2 KiB buffer per stream keeps hundreds of them cheap.

use std::time::Duration;

use ochopod_api::client::PodStream;
use ochopod_api::PodClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The body of a reply, read line by line.
pub struct Body {
    io: BufReader<PodStream>,
    framing: Framing,
    /// Body bytes read but not yet returned as a line.
    pending: Vec<u8>,
}

enum Framing {
    /// Bytes left in the current chunk (0: a chunk size comes next).
    Chunked {
        left: usize,
    },
    Length(u64),
    UntilClose,
    Done,
}

fn bad(what: impl Into<String>) -> std::io::Error {
    std::io::Error::other(what.into())
}

/// `method path` on `address` with the client's token and an optional JSON body; the status code
/// and the body once the head has come, within `timeout`.
pub async fn request(
    client: &PodClient,
    address: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<(u16, Body)> {
    // Boxed: a TLS handshake's state is large, and the caller's future outlives it.
    let stream = Box::pin(client.open(address, timeout)).await.map_err(|e| bad(e.to_string()))?;
    let head = async {
        let mut io = BufReader::with_capacity(2048, stream);
        let auth = client.token().map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let content = body.map(|b| format!("content-type: application/json\r\ncontent-length: {}\r\n", b.len()));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {address}\r\naccept: text/event-stream, application/json\r\n{auth}{}\r\n",
            content.unwrap_or_default()
        );
        io.get_mut().write_all(request.as_bytes()).await?;
        if let Some(b) = body {
            io.get_mut().write_all(b).await?;
        }
        io.get_mut().flush().await?;
        let mut line = Vec::new();
        read_head_line(&mut io, &mut line).await?;
        let status = String::from_utf8_lossy(&line).into_owned();
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("not an HTTP reply: {:?}", status.trim())))?;
        let mut framing = Framing::UntilClose;
        loop {
            read_head_line(&mut io, &mut line).await?;
            let header = String::from_utf8_lossy(&line).trim().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("transfer-encoding:") {
                if v.contains("chunked") {
                    framing = Framing::Chunked { left: 0 };
                }
            } else if let Some(v) = header.strip_prefix("content-length:") {
                if !matches!(framing, Framing::Chunked { .. }) {
                    framing = Framing::Length(v.trim().parse().map_err(|_| bad("bad content-length"))?);
                }
            }
        }
        Ok((code, Body { io, framing, pending: Vec::new() }))
    };
    tokio::time::timeout(timeout, head).await.map_err(|_| bad(format!("{address}: no reply within {timeout:?}")))?
}

/// A line of the head, at most 8 KiB.
async fn read_head_line(io: &mut BufReader<PodStream>, line: &mut Vec<u8>) -> std::io::Result<()> {
    line.clear();
    let n = (&mut *io).take(8 << 10).read_until(b'\n', line).await?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(bad("the reply ended in its head"));
    }
    Ok(())
}

impl Body {
    /// The next line of the body, without its line end; `None` at the end of the body. A line
    /// longer than `max` bytes is an error.
    pub async fn line(&mut self, max: usize) -> std::io::Result<Option<String>> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.pending.len() > max {
                return Err(bad(format!("a line longer than {max} bytes")));
            }
            if !self.fill().await? {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                let last = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return Ok(Some(last));
            }
        }
    }

    /// The rest of the body, at most `max` bytes (an error reply's JSON).
    pub async fn rest(&mut self, max: usize) -> std::io::Result<Vec<u8>> {
        while self.pending.len() <= max && self.fill().await? {}
        self.pending.truncate(max);
        Ok(std::mem::take(&mut self.pending))
    }

    /// Appends the next bytes of the body to `pending`; false at its end.
    async fn fill(&mut self) -> std::io::Result<bool> {
        loop {
            let want = match &mut self.framing {
                Framing::Done => return Ok(false),
                Framing::Chunked { left: 0 } => {
                    let mut size = Vec::new();
                    read_head_line(&mut self.io, &mut size).await?;
                    let text = String::from_utf8_lossy(&size);
                    let n = usize::from_str_radix(text.trim().split(';').next().unwrap_or(""), 16)
                        .map_err(|_| bad("bad chunk size"))?;
                    self.framing = if n == 0 { Framing::Done } else { Framing::Chunked { left: n } };
                    continue;
                }
                Framing::Chunked { left } => *left,
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(false);
                }
                Framing::Length(left) => usize::try_from(*left).unwrap_or(usize::MAX),
                Framing::UntilClose => usize::MAX,
            };
            let buf = self.io.fill_buf().await?;
            if buf.is_empty() {
                return match self.framing {
                    Framing::UntilClose => {
                        self.framing = Framing::Done;
                        Ok(false)
                    }
                    _ => Err(bad("the stream ended")),
                };
            }
            let n = buf.len().min(want);
            self.pending.extend_from_slice(&buf[..n]);
            self.io.consume(n);
            match &mut self.framing {
                Framing::Chunked { left } => {
                    *left -= n;
                    if *left == 0 {
                        let mut end = [0u8; 2];
                        self.io.read_exact(&mut end).await?;
                        self.framing = Framing::Chunked { left: 0 };
                    }
                }
                Framing::Length(left) => *left -= n as u64,
                _ => {}
            }
            return Ok(true);
        }
    }
}
